"""Logging setup, with a filter that keeps secrets out of every log line.

The upstream key is registered at start; any record that would contain it is rewritten with the
key replaced, whichever logger (ours, aiohttp's, a library's) produced it.
"""

from __future__ import annotations

import logging

_secrets: set[str] = set()
REDACTED = "[redacted]"


def redact_secret(secret: str) -> None:
    if len(secret) >= 8:
        _secrets.add(secret)


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not _secrets:
            return True
        message = record.getMessage()
        if any(secret in message for secret in _secrets):
            for secret in _secrets:
                message = message.replace(secret, REDACTED)
            record.msg, record.args = message, None
        return True


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
