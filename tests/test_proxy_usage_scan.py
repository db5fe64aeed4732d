"""usage_scan: members found wherever they are, images counted, nothing raised on bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gateway.proxy.usage_scan import WHOLE_DECODE_BYTES, event_data, scan_file, scan_object

DECODE = frozenset({"usage", "svg_usage"})
COUNT = frozenset({"data"})
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=6), st.booleans(), st.booleans())
def test_it_agrees_with_json_loads(document: dict[str, Any], pretty: bool, large: bool) -> None:
    """Small documents are decoded whole, large ones walked: both find the same."""
    if large:
        document = {"padding": "x" * WHOLE_DECODE_BYTES, **document}
    raw = json.dumps(document, indent=2 if pretty else None).encode()
    assert len(raw) > WHOLE_DECODE_BYTES or not large
    found = scan_object(raw, decode=frozenset(document), count=COUNT)
    assert found.complete
    expected = {k: v for k, v in document.items() if not (k == "data" and isinstance(v, list))}
    assert found.members == expected
    if isinstance(document.get("data"), list):
        assert found.counts == {"data": len(document["data"])}


def test_usage_before_or_after_the_images_and_escaped_quotes_in_strings() -> None:
    image = 'iVBOR\\"w0KGgo' + "A" * 100_000  # an escaped quote must not end the string early
    for order in (("usage", "data"), ("data", "usage")):
        members = {"usage": {"input_tokens": 3}, "data": [{"b64_json": image}, {"url": "x"}]}
        raw = "{" + ", ".join(f'"{k}": {json.dumps(members[k])}' for k in order) + "}"
        found = scan_object(raw.encode(), decode=DECODE, count=COUNT)
        assert found.members == {"usage": {"input_tokens": 3}}
        assert found.counts == {"data": 2}


@given(st.binary(max_size=200))
def test_garbage_never_raises(raw: bytes) -> None:
    scan_object(raw, decode=DECODE, count=COUNT)


def test_a_truncated_body_keeps_what_came_before_the_cut() -> None:
    raw = json.dumps({"usage": {"output_tokens": 5}, "data": [{"b64_json": "A" * 1000}]}).encode()
    found = scan_object(raw[:-100], decode=DECODE, count=COUNT)
    assert not found.complete
    assert found.members == {"usage": {"output_tokens": 5}}


def test_files_are_mapped_and_empty_ones_are_no_object(tmp_path: Path) -> None:
    path = tmp_path / "body.json"
    path.write_bytes(b'{"data": [1, 2, 3], "usage": {"a": 1}}')
    found = scan_file(path, decode=DECODE, count=COUNT)
    assert (found.counts, found.members) == ({"data": 3}, {"usage": {"a": 1}})
    path.write_bytes(b"")
    assert not scan_file(path, decode=DECODE, count=COUNT).complete


def test_event_data_in_place_or_joined() -> None:
    raw = bytearray(b'event: image_generation.completed\ndata: {"usage": {}}\n\n')
    buffer, start, end = event_data(raw)
    assert buffer is raw and raw[start:end] == b'{"usage": {}}'
    joined, start, end = event_data(b'event: x\r\ndata: {"a":\r\ndata: 1}\r\n\r\n')
    assert json.loads(joined[start:end]) == {"a": 1}
