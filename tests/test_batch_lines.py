"""A batch's input file, checked as the online endpoint checks each request (no server): every
line estimated at its model's batch share, and a bad line refusing the whole file by its number."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.accounting.quote import quote
from gateway.batch.lines import check_file, check_lines
from gateway.edge.params import read_params
from gateway.errors import GatewayError
from gateway.pricing import load_prices
from gateway.settings import SHIPPED_PRICES
from tests.images import png

TABLE = load_prices(SHIPPED_PRICES)
GEN = "/v1/images/generations"


def line(custom_id: str, url: str = GEN, **body: Any) -> bytes:
    fields = {"model": "gpt-image-2", "prompt": "a kite", "quality": "low", **body}
    request = {"custom_id": custom_id, "method": "POST", "url": url, "body": fields}
    return json.dumps(request).encode() + b"\n"


def test_each_line_is_estimated_at_half_its_online_estimate(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(line("a") + b"\n" + line("b", n=3, quality="high"))
    checked = check_file(path, TABLE)
    assert checked.url == GEN and [c.custom_id for c in checked.lines] == ["a", "b"]
    assert [c.number for c in checked.lines] == [1, 3]  # the blank line is counted, skipped
    for checked_line, body in zip(checked.lines, ({}, {"n": 3, "quality": "high"}), strict=True):
        online = quote(TABLE, "generations", read_params({"prompt": "a kite", "quality": "low",
                                                          **body}, "gpt-image-2"), [])  # fmt: skip
        assert online is not None
        assert checked_line.estimate_nanos == -(-online.estimate.nanos // 2)  # half, rounded up
    assert checked.estimate_nanos == sum(c.estimate_nanos for c in checked.lines)


def test_an_edit_line_reads_its_images_from_their_data_urls() -> None:
    def edit(width: int, height: int) -> int:
        image = "data:image/png;base64," + base64.b64encode(png(width, height)).decode()
        images = [{"image_url": image}]
        lines = [line("a", "/v1/images/edits", model="gpt-image-1", images=images)]
        return check_lines(lines, TABLE).estimate_nanos

    assert edit(1536, 1024) > edit(64, 64) > 0  # more input image tiles, a dearer estimate


@pytest.mark.parametrize(
    ("lines", "number", "code"),
    [
        ([line("a"), b"not json\n"], 2, "invalid_json"),
        ([line("a"), line("a")], 2, "duplicate_custom_id"),
        ([line("a", "/v1/chat/completions")], 1, "unsupported_batch_endpoint"),
        ([line("a"), line("b", "/v1/images/edits")], 2, "mismatched_endpoint"),
        ([line("a", model="no-such-model")], 1, "model_not_priced"),
        ([line("a", stream=True)], 1, "invalid_value"),
        ([line("a", n=99)], 1, "invalid_value"),
        ([line("a", prompt="  ")], 1, "invalid_value"),
    ],
)
def test_a_bad_line_refuses_the_file_by_its_number(
    lines: list[bytes], number: int, code: str
) -> None:
    with pytest.raises(GatewayError) as refused:
        check_lines(lines, TABLE)
    error = refused.value
    assert (error.status, error.code, error.param) == (400, code, f"line {number}")
    assert error.message.startswith(f"Line {number}")


def test_an_empty_file_is_refused() -> None:
    with pytest.raises(GatewayError) as refused:
        check_lines([b"\n"], TABLE)
    assert refused.value.code == "empty_file"
