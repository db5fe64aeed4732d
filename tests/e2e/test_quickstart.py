"""`make run`'s command twice: the second says in one line what is in the way, and changes
nothing the first one owns (its pid file, its key)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx2 as httpx

from tests.e2e.test_shutdown import free_port, wait_until_up

MODEL = {"model": "gpt-image-2", "prompt": "a lighthouse", "quality": "low"}


def environment(data: Path, port: int, sim_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return env | {
        "GATEWAY_DATA_DIR": str(data),
        "GATEWAY_PORT": str(port),
        "GATEWAY_SIMULATOR_PORT": str(sim_port),
        "GATEWAY_LOG_LEVEL": "WARNING",
    }


def quickstart(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway", "quickstart"], env=env, stdout=out, stderr=out
        )


def start_once(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`make run`'s command, run to its end (a start that cannot serve ends at once)."""
    return subprocess.run(
        [sys.executable, "-m", "gateway", "quickstart"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_second_start_says_what_is_in_the_way_and_changes_nothing(tmp_path: Path) -> None:
    port, sim_port = free_port(), free_port()
    env = environment(tmp_path / "data", port, sim_port)
    first = quickstart(env, tmp_path / "first.log")
    try:
        wait_until_up(port)
        wait_until_up(sim_port)
        banner = (tmp_path / "first.log").read_text()
        key = next(w for w in banner.split() if w.startswith("sk-gw-"))
        pid_file = tmp_path / "data" / "gateway.pid"
        assert pid_file.read_text().strip() == str(first.pid)

        # The same data dir: a gateway is already serving from it.
        again = start_once(env)
        assert again.returncode == 1
        assert again.stderr.count("\n") == 1 and "already serving" in again.stderr
        assert "Traceback" not in again.stderr and "sk-gw-" not in again.stdout
        # Another data dir, same ports: the port is named, and the setting that moves it.
        elsewhere = environment(tmp_path / "other", port, free_port())
        blocked = start_once(elsewhere)
        assert blocked.returncode == 1
        assert f"port {port}" in blocked.stderr and "GATEWAY_PORT" in blocked.stderr
        simulator_taken = environment(tmp_path / "third", free_port(), sim_port)
        blocked = start_once(simulator_taken)
        assert "GATEWAY_SIMULATOR_PORT" in blocked.stderr

        # Nothing the first one owns changed: its pid file, and its key still works.
        assert pid_file.read_text().strip() == str(first.pid)
        answer = httpx.post(
            f"http://127.0.0.1:{port}/v1/images/generations",
            json=MODEL,
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert answer.status_code == 200
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=30)
    assert not (tmp_path / "data" / "gateway.pid").exists()


def test_the_banner_works_as_printed_and_ctrl_c_says_what_it_finished(tmp_path: Path) -> None:
    port, sim_port = free_port(), free_port()
    env = environment(tmp_path / "data", port, sim_port)
    log = tmp_path / "run.log"
    run = quickstart(env, log)
    try:
        wait_until_up(port)
        banner = log.read_text()
        assert ".venv/bin/gateway keys list" in banner
        assert "Admin API: off; set GATEWAY_ADMIN_TOKEN=" in banner
        assert "(and the web console at /console with it)" in banner
        # The Python example, pasted as printed: it saves the image and prints its cost.
        lines = banner.splitlines()
        start = lines.index("  import base64")
        snippet = "\n".join(line[2:] for line in lines[start : start + 7])
        pasted = subprocess.run(
            [sys.executable, "-c", snippet],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert pasted.returncode == 0, pasted.stderr
        assert pasted.stdout.startswith("saved lighthouse.png; cost $0.0")
        assert (tmp_path / "lighthouse.png").read_bytes().startswith(b"\x89PNG")
    finally:
        run.send_signal(signal.SIGINT)
        run.wait(timeout=30)
    assert run.returncode == 0
    last = log.read_text().strip().splitlines()[-1]
    assert last.startswith("gateway stopped: served 1 request (1 image, $0.0")


def test_with_an_admin_token_the_banner_leads_to_the_console(tmp_path: Path) -> None:
    port, sim_port = free_port(), free_port()
    token = "quickstart-admin-token-0123456789"
    env = environment(tmp_path / "data", port, sim_port) | {"GATEWAY_ADMIN_TOKEN": token}
    run = quickstart(env, tmp_path / "run.log")
    try:
        wait_until_up(port)
        banner = (tmp_path / "run.log").read_text()
        console = f"http://127.0.0.1:{port}/console"
        assert f"the web console at {console} (sign in with the admin token)" in banner
        assert token not in banner
        with httpx.Client(follow_redirects=True, timeout=30) as browser:
            sign_in = browser.get(console)
            assert sign_in.status_code == 200 and sign_in.url.path == "/console/login"
            signed_in = browser.post(f"{console}/login", data={"token": token})
            assert signed_in.status_code == 200 and signed_in.url.path == "/console/"
            teams = browser.get(f"{console}/teams")
            assert teams.status_code == 200 and ">default<" in teams.text
    finally:
        run.send_signal(signal.SIGINT)
        run.wait(timeout=30)
