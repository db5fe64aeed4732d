"""What `gateway serve` checks before it changes anything: a gateway already serving from the
data dir, a port taken; and the pid file that `gateway prices reload` finds it by."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.errors import CannotStart
from gateway.runtime.pidfile import PID_FILE, pid_file, read_pid
from gateway.runtime.server import check_can_start
from gateway.settings import Settings


def test_the_pid_file_names_this_process_while_it_serves_and_only_then(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert read_pid(settings) is None
    with pid_file(settings):
        assert read_pid(settings) == os.getpid()
        with pytest.raises(CannotStart, match="already serving"):
            check_can_start(settings, [])
    assert not (tmp_path / PID_FILE).exists() and read_pid(settings) is None
    (tmp_path / PID_FILE).write_text("not a pid\n")
    assert read_pid(settings) is None  # garbage is no gateway
