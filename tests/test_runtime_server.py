"""What `gateway serve` checks before it changes anything: a port taken, named with the setting
that moves it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from gateway.errors import CannotStart
from gateway.runtime.server import check_can_start
from gateway.settings import Settings


def test_a_taken_port_is_refused_naming_the_setting_that_moves_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CannotStart, match=f"port {port}.*GATEWAY_PORT"):
            check_can_start(Settings(data_dir=tmp_path), [("127.0.0.1", port, "GATEWAY_PORT")])
