"""A throwaway S3-compatible server for the tests: moto's standalone server (a real HTTP server
speaking the S3 API) on a free port, with a bucket of its own; stopped at the end."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.redis_server import free_port

BUCKET = "gateway-test"


class S3Server:
    def __init__(self) -> None:
        binary = Path(sys.executable).parent / "moto_server"
        found = str(binary) if binary.exists() else shutil.which("moto_server")
        if found is None:
            raise RuntimeError("moto_server is missing: `make test` installs it (moto[server])")
        self.binary = found
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("moto_server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None
