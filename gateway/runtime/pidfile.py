"""The pid file in the data dir: how `gateway prices reload` finds the server, and how a second
start knows one is already serving from the same data dir."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from gateway.settings import Settings

PID_FILE = "gateway.pid"


def read_pid(settings: Settings) -> int | None:
    """The pid of the gateway serving from this data dir, if one is running."""
    try:
        pid = int((settings.data_dir / PID_FILE).read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


@contextlib.contextmanager
def pid_file(settings: Settings) -> Iterator[None]:
    """`gateway prices reload` finds the server through this file in the data dir. It is removed
    on the way out only if it is still this process's."""
    path = settings.data_dir / PID_FILE
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    mine = f"{os.getpid()}\n"
    path.write_text(mine)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if path.read_text() == mine:
                path.unlink()
