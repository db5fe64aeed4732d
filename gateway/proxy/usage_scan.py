"""Find what accounting needs in an images response, wherever it is, without decoding the images.

An images response is a JSON object of a few small members (`usage`, `svg_usage`, `created`, …)
and one huge one (`data`, megabytes of base64). `scan_object` walks the top level of the object:
strings are skipped with `find` (a memchr over the bytes, never a Python str of the base64),
containers by scanning only for their delimiters, and only the members asked for are decoded.
So `usage` is found before the images as well as after them, `data` is counted, and the cost is
a handful of scans over the buffer whatever its size.

What holds: `scan_object` never raises on what upstream sent; it returns what it could read
before the document stopped making sense (`complete` says whether it read the whole object).
Works on `bytes`, `bytearray` and `mmap` alike, between `start` and `end`.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Buffer = bytes | bytearray | mmap.mmap

_WHITESPACE = b" \t\r\n"
# The next byte that matters inside a container: a string opens, or a container opens or closes.
_CONTAINER_DELIMITER = re.compile(rb'["{}\[\]]')
# The end of a number or literal.
_SCALAR_END = re.compile(rb"[,}\]\s]")
SMALL_MEMBER_BYTES = 1024 * 1024  # a decoded member larger than this is not usage: ignored
# A whole document this small is decoded at once (json's C scanner is faster than the walk on a
# few KiB); larger ones are walked, so their images are never decoded.
WHOLE_DECODE_BYTES = 16 * 1024


class _Malformed(Exception):
    pass


@dataclass
class ScannedObject:
    """The members asked for (decoded), and how many elements each array member asked to count
    has. `complete` is False when the document ended early or was not a JSON object."""

    members: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    # Where the members asked for by `span` lie (start, end): to scan inside one without
    # decoding it (a Responses event's large `response` object).
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)
    complete: bool = False


def scan_object(
    buf: Buffer,
    *,
    decode: frozenset[str],
    count: frozenset[str] = frozenset(),
    span: frozenset[str] = frozenset(),
    start: int = 0,
    end: int | None = None,
) -> ScannedObject:
    """Walk the top-level JSON object in `buf[start:end]`: decode the members named in `decode`,
    count the elements of the arrays named in `count`. A later duplicate member wins, as in
    `json.loads`."""
    end = len(buf) if end is None else end
    if not span and end - start <= WHOLE_DECODE_BYTES:
        decoded = _decoded_whole(buf, start, end, decode, count)
        if decoded is not None:
            return decoded
    found = ScannedObject()
    scanner = _Scanner(buf, start, end)
    with contextlib.suppress(_Malformed, IndexError, ValueError, RecursionError):
        scanner.walk(found, decode, count, span)
    return found


def _decoded_whole(
    buf: Buffer, start: int, end: int, decode: frozenset[str], count: frozenset[str]
) -> ScannedObject | None:
    """What the walk would find, from a small document decoded whole; None when it is not a
    whole JSON object (the walk then reads what it can)."""
    try:
        document = json.loads(bytes(buf[start:end]))
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict):
        return None
    return ScannedObject(
        members={
            name: document[name]
            for name in decode
            if name in document and not (name in count and isinstance(document[name], list))
        },
        counts={
            name: len(value) for name in count if isinstance(value := document.get(name), list)
        },
        complete=True,
    )


def scan_file(path: Path, *, decode: frozenset[str], count: frozenset[str]) -> ScannedObject:
    """`scan_object` over a file, mapped rather than read (call it on a thread)."""
    with path.open("rb") as handle:
        try:
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file cannot be mapped
            return ScannedObject()
        with mapped:
            return scan_object(mapped, decode=decode, count=count)


def event_data(raw: bytes | bytearray) -> tuple[bytes | bytearray, int, int]:
    """The `data` of one whole server-sent event, as (buffer, start, end): in place when the
    event has one data line (the usual case, so a large event is not copied), joined otherwise."""
    spans: list[tuple[int, int]] = []
    position, size = 0, len(raw)
    while position < size:
        line_end = raw.find(b"\n", position)
        line_end = size if line_end < 0 else line_end
        if raw.startswith(b"data:", position):
            begin = position + 5
            if begin < line_end and raw[begin] == 0x20:  # one optional space after the colon
                begin += 1
            stop = line_end - 1 if line_end > begin and raw[line_end - 1] == 0x0D else line_end
            spans.append((begin, stop))
        position = line_end + 1
    if len(spans) == 1:
        return raw, spans[0][0], spans[0][1]
    joined = b"\n".join(bytes(raw[begin:stop]) for begin, stop in spans)
    return joined, 0, len(joined)


class _Scanner:
    def __init__(self, buf: Buffer, start: int, end: int) -> None:
        self.buf = buf
        self.pos = start
        self.end = end

    def walk(
        self,
        found: ScannedObject,
        decode: frozenset[str],
        count: frozenset[str],
        span: frozenset[str] = frozenset(),
    ) -> None:
        self.expect(b"{")
        self.skip_whitespace()
        if self.peek() == b"}":
            found.complete = True
            return
        while True:
            self.skip_whitespace()
            key_start = self.pos
            self.skip_string()
            key = json.loads(bytes(self.buf[key_start : self.pos]))
            self.skip_whitespace()
            self.expect(b":")
            self.skip_whitespace()
            value_start = self.pos
            if key in count and self.peek() == b"[":
                found.counts[key] = self.count_array()
            else:
                self.skip_value()
                if key in span:
                    found.spans[key] = (value_start, self.pos)
                if key in decode and self.pos - value_start <= SMALL_MEMBER_BYTES:
                    found.members[key] = json.loads(bytes(self.buf[value_start : self.pos]))
            self.skip_whitespace()
            separator = self.take()
            if separator == b"}":
                found.complete = True
                return
            if separator != b",":
                raise _Malformed

    def peek(self) -> bytes:
        if self.pos >= self.end:
            raise _Malformed
        return bytes(self.buf[self.pos : self.pos + 1])

    def take(self) -> bytes:
        byte = self.peek()
        self.pos += 1
        return byte

    def expect(self, byte: bytes) -> None:
        if self.take() != byte:
            raise _Malformed

    def skip_whitespace(self) -> None:
        while self.pos < self.end and self.buf[self.pos] in _WHITESPACE:
            self.pos += 1

    def skip_string(self) -> None:
        """From an opening quote to just past its closing quote."""
        self.expect(b'"')
        while True:
            quote = self.buf.find(b'"', self.pos, self.end)
            if quote < 0:
                raise _Malformed
            backslashes = 0
            while self.buf[quote - 1 - backslashes] == 0x5C:  # an escaped quote: keep looking
                backslashes += 1
            self.pos = quote + 1
            if backslashes % 2 == 0:
                return

    def skip_value(self) -> None:
        first = self.peek()
        if first == b'"':
            self.skip_string()
        elif first in (b"{", b"["):
            self.skip_container()
        else:
            match = _SCALAR_END.search(self.buf, self.pos, self.end)
            self.pos = self.end if match is None else match.start()

    def skip_container(self) -> None:
        depth = 0
        while True:
            match = _CONTAINER_DELIMITER.search(self.buf, self.pos, self.end)
            if match is None:
                raise _Malformed
            self.pos = match.start()
            delimiter = match.group()
            if delimiter == b'"':
                self.skip_string()
                continue
            self.pos += 1
            depth += 1 if delimiter in (b"{", b"[") else -1
            if depth == 0:
                return

    def count_array(self) -> int:
        self.expect(b"[")
        self.skip_whitespace()
        if self.peek() == b"]":
            self.pos += 1
            return 0
        elements = 0
        while True:
            self.skip_whitespace()
            self.skip_value()
            elements += 1
            self.skip_whitespace()
            separator = self.take()
            if separator == b"]":
                return elements
            if separator != b",":
                raise _Malformed
