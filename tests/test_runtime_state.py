"""Where the app is in its life: stopping from the moment shutdown begins."""

from __future__ import annotations

import time

from gateway.runtime.state import ENDING_S, Lifecycle


def test_the_app_is_stopping_once_shutdown_has_begun() -> None:
    lifecycle = Lifecycle()
    assert not lifecycle.stopping and lifecycle.deadline is None
    lifecycle.stopping_at = time.monotonic()
    assert lifecycle.stopping and ENDING_S > 0
