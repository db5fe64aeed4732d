"""Server-sent events: split a byte stream into whole events, and read the few we care about.

The relay forwards each event as soon as its closing blank line arrives, byte for byte. Splitting
on event boundaries (rather than forwarding raw chunks) means that if upstream stops mid-event,
the client never holds half an event: it gets the complete ones and then our `error` event.
"""

from __future__ import annotations

import json
from typing import Any

_TERMINATORS = (b"\n\n", b"\r\n\r\n", b"\r\r")


class EventSplitter:
    """Feed bytes in; get whole events (each with its terminating blank line) out."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._scanned = 0  # bytes already known to hold no terminator

    @property
    def pending(self) -> int:
        """Bytes of an event that has not ended yet."""
        return len(self._buffer)

    def feed(self, chunk: bytes) -> list[bytearray]:
        self._buffer += chunk
        if b"\n" not in chunk and b"\r" not in chunk:
            # Most chunks of an image event are base64 with no line break at all. A terminator is
            # made only of line breaks, so none can end here: two memchr scans settle it.
            self._scanned = len(self._buffer)
            return []
        events: list[bytearray] = []
        while (end := self._find_end()) >= 0:
            # The buffer itself becomes the event and only the (short) rest is copied: an image
            # event of megabytes is never copied (a fresh copy costs ~1 ms of page faults).
            event, self._buffer = self._buffer, self._buffer[end:]
            del event[end:]
            events.append(event)
            self._scanned = 0
        # A terminator may straddle chunks: rescan the last three bytes next time.
        self._scanned = max(0, len(self._buffer) - 3)
        return events

    def _find_end(self) -> int:
        """The end of the first whole event in the buffer, or -1."""
        begin = self._scanned
        best = -1
        for terminator in _TERMINATORS:
            found = self._buffer.find(terminator, begin)
            if found >= 0 and (best < 0 or found + len(terminator) < best):
                best = found + len(terminator)
        return best


def event_name(raw: bytes | bytearray) -> str | None:
    """The `event:` field of one whole event, found without copying its (large) data lines."""
    position, size = 0, len(raw)
    while position < size:
        end = raw.find(b"\n", position)
        end = size if end < 0 else end
        if raw.startswith(b"event:", position):
            return raw[position + 6 : end].strip().decode("utf-8", "replace")
        position = end + 1
    return None


def format_event(name: str, payload: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()
