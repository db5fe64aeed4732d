from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from gateway.proxy.sse import EventSplitter, event_name, format_event

PARTIAL = b'event: image_generation.partial_image\ndata: {"type":"x","b64_json":"QUJD"}\n\n'
DONE = b'event: image_generation.completed\ndata: {"usage":{"output_tokens":272}}\n\n'


def test_whole_events_come_out_whole() -> None:
    splitter = EventSplitter()
    assert splitter.feed(PARTIAL + DONE) == [PARTIAL, DONE]
    assert splitter.pending == 0


def test_an_event_split_anywhere_is_held_until_its_blank_line() -> None:
    stream = PARTIAL + DONE
    for cut in range(1, len(stream)):
        splitter = EventSplitter()
        events = splitter.feed(stream[:cut]) + splitter.feed(stream[cut:])
        assert events == [PARTIAL, DONE], cut


@given(st.lists(st.integers(min_value=1, max_value=40), max_size=30))
def test_any_chunking_yields_the_same_events(sizes: list[int]) -> None:
    stream = PARTIAL + b": a comment\n\n" + DONE
    splitter, events, pos = EventSplitter(), [], 0
    for size in sizes:
        events += splitter.feed(stream[pos : pos + size])
        pos += size
    events += splitter.feed(stream[pos:])
    assert b"".join(events) == stream
    assert splitter.pending == 0


def test_crlf_events_and_a_truncated_tail() -> None:
    splitter = EventSplitter()
    crlf = b"event: a\r\ndata: 1\r\n\r\n"
    assert splitter.feed(crlf + b'event: b\r\ndata: {"tru') == [crlf]
    assert splitter.pending == len(b'event: b\r\ndata: {"tru')
    assert event_name(crlf) == "a"


def test_format_event_round_trips() -> None:
    raw = format_event("error", {"error": {"message": "m"}})
    assert raw == b'event: error\ndata: {"error":{"message":"m"}}\n\n'
    assert event_name(raw) == "error"
    assert json.loads(raw.split(b"data: ")[1]) == {"error": {"message": "m"}}


def test_event_name_is_read_without_parsing_the_data() -> None:
    assert event_name(PARTIAL) == "image_generation.partial_image"
    assert event_name(b"data: x\r\nevent: error\r\n\r\n") == "error"
    assert event_name(b": comment only\n\n") is None


def test_chunks_without_line_breaks_are_held_cheaply_and_still_split_right() -> None:
    splitter = EventSplitter()
    big = b"event: image_generation.partial_image\ndata: " + b"A" * 200_000 + b"\n\n"
    events: list[bytes] = []
    for i in range(0, len(big), 4096):
        events += [bytes(event) for event in splitter.feed(big[i : i + 4096])]
    assert events == [big] and splitter.pending == 0
