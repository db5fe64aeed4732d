"""Server-sent events: split a byte stream into whole events, and read the few we care about.

The relay forwards each event as soon as its closing blank line arrives, byte for byte. Splitting
on event boundaries (rather than forwarding raw chunks) means that if upstream stops mid-event,
the client never holds half an event: it gets the complete ones and then our `error` event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

_TERMINATORS = (b"\n\n", b"\r\n\r\n", b"\r\r")


@dataclass(frozen=True, slots=True)
class Event:
    name: str | None
    data: bytes

    @property
    def is_completed(self) -> bool:
        """`image_generation.completed`, `image_edit.completed`, and what future APIs call so."""
        return self.name is not None and self.name.endswith(".completed")

    @property
    def is_error(self) -> bool:
        return self.name == "error"

    def json(self) -> Any:
        return json.loads(self.data)


class EventSplitter:
    """Feed bytes in; get whole events (each with its terminating blank line) out."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._scanned = 0  # bytes already known to hold no terminator

    @property
    def pending(self) -> int:
        """Bytes of an event that has not ended yet."""
        return len(self._buffer)

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buffer += chunk
        events: list[bytes] = []
        start = 0
        while True:
            end = self._find_end(start)
            if end < 0:
                break
            events.append(bytes(self._buffer[start:end]))
            start = end
            self._scanned = start
        if start:
            del self._buffer[:start]
        # A terminator may straddle chunks: rescan the last three bytes next time.
        self._scanned = max(0, len(self._buffer) - 3)
        return events

    def _find_end(self, start: int) -> int:
        begin = max(start, self._scanned)
        best = -1
        for terminator in _TERMINATORS:
            found = self._buffer.find(terminator, begin)
            if found >= 0 and (best < 0 or found + len(terminator) < best):
                best = found + len(terminator)
        return best


def parse_event(raw: bytes) -> Event:
    """The event name and data of one whole event; comments and unknown fields are ignored."""
    name: str | None = None
    data: list[bytes] = []
    for line in raw.splitlines():
        if line.startswith(b"data:"):
            data.append(line[6:] if line[5:6] == b" " else line[5:])
        elif line.startswith(b"event:"):
            name = line[6:].strip().decode("utf-8", "replace")
    return Event(name, b"\n".join(data))


def format_event(name: str, payload: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()
