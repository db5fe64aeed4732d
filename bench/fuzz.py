"""Fuzz the gateway through its own OpenAPI description with schemathesis.

Starts the simulator and a gateway (admin API on, a client key issued), then runs
`schemathesis run <gateway>/openapi.json` with the client key and the admin token set per
security scheme, and these checks on every response: no 5xx from the gateway
(`not_a_server_error`), a status, a content type and a body the description allows
(`status_code_conformance`, `content_type_conformance`, `response_schema_conformance`: an error
that is not JSON in OpenAI's shape fails here). Prints schemathesis' report and a summary line;
exits with schemathesis' code.

Run: .venv/bin/python bench/fuzz.py [--max-examples 100] [--max-time 600] [--seed 1]
(`make test` runs a bounded version of this through tests/test_openapi.py.)
"""

from __future__ import annotations

import argparse
import re
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import running_stack

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)


@dataclass
class FuzzRun:
    returncode: int
    output: str
    seconds: float

    @property
    def cases(self) -> int:
        """How many requests schemathesis sent, from its summary line."""
        found = re.search(r"(\d+) generated", self.output)
        return int(found.group(1)) if found else 0


def fuzz_gateway(*, max_examples: int, max_time_s: float, seed: int) -> FuzzRun:
    admin = "admin-" + secrets.token_hex(8)
    with running_stack(gateway_env={"GATEWAY_ADMIN_TOKEN": admin}) as stack:
        config = stack.tmp_dir / "schemathesis.toml"
        config.write_text(
            f'[auth.openapi.gatewayKey]\nbearer = "{stack.key}"\n\n'
            f'[auth.openapi.adminToken]\nbearer = "{admin}"\n'
        )
        command = [
            str(Path(sys.executable).with_name("st")),
            "--config-file",
            str(config),
            "--no-color",
            "run",
            f"{stack.gateway.base_url}/openapi.json",
            "--checks",
            ",".join(CHECKS),
            "--max-examples",
            str(max_examples),
            "--max-time",
            str(int(max_time_s)),
            "--seed",
            str(seed),
            "--request-timeout",
            "30",
        ]
        started = time.monotonic()
        # Run in the scratch dir: schemathesis keeps its database and reports where it runs.
        done = subprocess.run(
            command, capture_output=True, text=True, cwd=stack.tmp_dir, check=False
        )
        return FuzzRun(done.returncode, done.stdout + done.stderr, time.monotonic() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=100)
    parser.add_argument("--max-time", type=float, default=600)
    parser.add_argument("--seed", type=int, default=1)
    ns = parser.parse_args()
    run = fuzz_gateway(max_examples=ns.max_examples, max_time_s=ns.max_time, seed=ns.seed)
    print(run.output)
    verdict = "no failures" if run.returncode == 0 else f"FAILED (exit {run.returncode})"
    print(f"fuzz: {run.cases} requests in {run.seconds:.0f} s: {verdict}")
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
