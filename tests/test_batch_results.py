"""A batch's result lines read from disk, and each line's charge: its own usage at the model's
batch share, $0 when it failed or never ran or came from the cache, the estimate when its usage
cannot be read, per-image models by their images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gateway.batch.results import Source, line_charge, read_results
from gateway.outcome import Outcome
from gateway.pricing import load_prices
from gateway.settings import SHIPPED_PRICES
from gateway.store.records import BatchLine

TABLE = load_prices(SHIPPED_PRICES)
LINE = BatchLine("file-1", 1, "a", "gpt-image-1-mini", "1024x1024", "low", None, 999)
USAGE = {
    "input_tokens": 10,
    "input_tokens_details": {"text_tokens": 10, "image_tokens": 0},
    "output_tokens": 272,
}


def output_line(custom_id: str, status: int = 200, **body: Any) -> dict[str, Any]:
    return {
        "id": "r",
        "custom_id": custom_id,
        "response": {"status_code": status, "request_id": "req_1", "body": body},
        "error": None,
    }


def written(tmp_path: Path, *lines: dict[str, Any]) -> Path:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b"".join(json.dumps(line).encode() + b"\n" for line in lines))
    return path


def test_lines_are_read_with_where_they_lie(tmp_path: Path) -> None:
    path = written(
        tmp_path,
        output_line("a", data=[{"b64_json": "x"}], usage=USAGE),
        output_line("b", 400, error={"code": "content_policy_violation"}),
    )
    first, second = list(read_results(path, Source.OUTPUT))
    assert (first.custom_id, first.images, first.status, first.request_id) == ("a", 1, 200, "req_1")
    assert first.usage is not None and first.usage.image_output == 272
    assert second.error_code == "content_policy_violation" and not second.succeeded
    with path.open("rb") as file:
        file.seek(second.offset)
        assert json.loads(file.read(second.length))["custom_id"] == "b"


def test_a_line_is_charged_its_usage_at_half_the_online_price(tmp_path: Path) -> None:
    path = written(tmp_path, output_line("a", data=[{}], usage=USAGE))
    (result,) = read_results(path, Source.OUTPUT)
    # gpt-image-1-mini: $2.00 / 1M text input, $8.00 / 1M image output; half of it.
    expected = (10 * 2_000 + 272 * 8_000) // 2  # nano-dollars
    assert line_charge(TABLE, LINE, result).cost_nanos == expected


def test_failed_unrun_and_cached_lines_cost_nothing(tmp_path: Path) -> None:
    path = written(tmp_path, output_line("a", 500), output_line("c", data=[{}], usage=USAGE))
    failed, _ = read_results(path, Source.OUTPUT)
    (cached,) = read_results(written(tmp_path, output_line("c", data=[{}])), Source.CACHED)
    assert line_charge(TABLE, LINE, failed).cost_nanos == 0
    assert line_charge(TABLE, LINE, None).outcome is Outcome.UPSTREAM_ERROR
    assert line_charge(TABLE, LINE, None).cost_nanos == 0
    assert line_charge(TABLE, LINE, cached).cost_nanos == 0


def test_unreadable_usage_is_charged_the_estimate(tmp_path: Path) -> None:
    path = written(tmp_path, output_line("a", data=[{}], usage={"input_tokens": -1}))
    (result,) = read_results(path, Source.OUTPUT)
    charge = line_charge(TABLE, LINE, result)
    assert (charge.cost_nanos, charge.outcome) == (999, Outcome.USAGE_MISSING)


def test_a_per_image_model_is_charged_by_its_images(tmp_path: Path) -> None:
    line = BatchLine("file-1", 1, "a", "dall-e-3", "1024x1024", "standard", None, 1)
    path = written(tmp_path, output_line("a", data=[{"url": "u"}]))
    (result,) = read_results(path, Source.OUTPUT)
    # dall-e-3 standard 1024x1024 is $0.04 an image online.
    assert line_charge(TABLE, line, result).cost_nanos == 20_000_000


def test_lines_that_are_not_results_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'not json\n["a list"]\n{"custom_id": 3}\n\n')
    assert list(read_results(path, Source.ERRORS)) == []
