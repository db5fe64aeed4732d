"""The console log format: what a person at a terminal sees after the banner."""

from __future__ import annotations

import io
import logging

from gateway.ops.logs import configure_logging


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_is_a_compact_line_at_a_terminal_and_json_elsewhere() -> None:
    fields = {
        "status": 200,
        "method": "POST",
        "endpoint": "generations",
        "model": "gpt-image-2",
        "cache": "miss",
        "cost_usd": "0.008185",
        "latency_ms": 208.4,
        "team": "default",
        "outcome": "ok",
    }
    terminal = Terminal()
    configure_logging("INFO", "auto", terminal)
    logging.getLogger("gateway.requests").info("request", extra={"fields": fields})
    line = terminal.getvalue().strip()
    assert line.endswith("200 POST generations gpt-image-2 miss $0.008185 208ms team=default")
    pipe = io.StringIO()
    configure_logging("INFO", "auto", pipe)
    logging.getLogger("gateway.requests").info("request", extra={"fields": fields})
    assert pipe.getvalue().startswith('{"ts": ')
    configure_logging("WARNING", "text")
