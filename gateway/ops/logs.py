"""Logging: one structured line per request, and secrets kept out of every line.

`configure_logging` sends every logger's records to one stream (stdout when serving), as JSON
lines, as text, or (the default, `auto`, at a terminal) as a compact line per request. The
upstream key is registered at start; whatever line would contain it (ours, aiohttp's, a
library's, a logged prompt) has it replaced, because the redaction runs on the formatted line.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import IO, Any

# Longest first: a secret that contains another must be replaced whole.
_secrets: tuple[str, ...] = ()
REDACTED = "[redacted]"
REQUEST_LOG = logging.getLogger("gateway.requests")
MAX_LOGGED_PROMPT = 4000  # characters; a prompt can be 32k
MAX_LOGGED_MODEL = 100  # the model is what the client typed


def redact_secret(secret: str) -> None:
    global _secrets
    if len(secret) >= 8 and secret not in _secrets:
        _secrets = tuple(sorted({*_secrets, secret}, key=len, reverse=True))


def redact_bytes(data: bytes | bytearray) -> bytes:
    """`data` with every registered secret replaced (for small bodies: an upstream error)."""
    data = bytes(data)
    for secret in _secrets:
        encoded = secret.encode()
        if encoded in data:
            data = data.replace(encoded, REDACTED.encode())
    return data


def redact(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


class JsonFormatter(logging.Formatter):
    """A JSON object per record: ts, level, logger, message, the record's `fields`, and the
    exception if there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        line.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(line, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message key=value …` for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, "fields", None)
        if fields:
            text += "".join(f" {name}={json.dumps(value)}" for name, value in fields.items())
        return redact(text)


class ConsoleFormatter(logging.Formatter):
    """For a person at a terminal: a compact line per request (`time status endpoint model
    cache cost latency team`), and `time LEVEL message` for the rest."""

    def format(self, record: logging.LogRecord) -> str:
        when = dt.datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        fields = getattr(record, "fields", None) or {}
        if record.name == REQUEST_LOG.name and fields:
            line = (
                f"{when} {fields['status']} {fields['method']} {fields['endpoint']}"
                f" {fields['model'] or '-'} {fields['cache']} ${fields['cost_usd']}"
                f" {fields['latency_ms']:.0f}ms team={fields['team'] or '-'}"
            )
            if fields["outcome"] != "ok":
                line += f" ({fields['outcome']})"
        else:
            line = f"{when} {record.levelname} {record.getMessage()}"
            if record.exc_info:
                line += "\n" + self.formatException(record.exc_info)
        return redact(line)


def configure_logging(level: str, fmt: str = "text", stream: IO[str] | None = None) -> None:
    """`fmt`: json, text, or auto (console lines when `stream` is a terminal, JSON otherwise)."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    formatters = {"json": JsonFormatter, "console": ConsoleFormatter}
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatters.get(fmt, TextFormatter)())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
