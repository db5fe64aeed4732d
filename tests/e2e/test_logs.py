"""The request log: one structured line per request, with what an operator needs and nothing a
user would not want in a log (no key, no prompt unless configured, never the upstream key)."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import openai
import pytest

from gateway.ops.logs import configure_logging
from tests.conftest import UPSTREAM_KEY

LOW: dict[str, Any] = {"model": "gpt-image-1", "quality": "low", "size": "1024x1024"}


@pytest.fixture
def log_lines() -> Any:
    """Every log line, formatted as `gateway serve` formats it (JSON), in a list of dicts."""
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging("INFO", "json", stream)

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in stream.getvalue().splitlines()]

    yield lines
    root.handlers[:], level = saved
    root.setLevel(level)


def requests_logged(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line["logger"] == "gateway.requests"]


async def test_each_request_is_one_json_line_with_what_operators_need(
    gateway: Any, key: str, sdk: openai.AsyncOpenAI, log_lines: Any
) -> None:
    raw = await sdk.images.with_raw_response.generate(prompt="a private thought", **LOW)
    with pytest.raises(openai.AuthenticationError):
        bad = openai.AsyncOpenAI(
            base_url=str(gateway.make_url("/v1")), api_key="sk-gw-wrong", max_retries=0
        )
        await bad.images.generate(prompt="x", **LOW)
    await bad.close()

    ok, refused = requests_logged(log_lines())
    assert ok["message"] == "request" and ok["level"] == "info"
    assert ok["request_id"] == raw.headers["x-gateway-request-id"]
    assert ok["upstream_request_id"] == raw.headers["x-request-id"]
    assert ok["key_id"].startswith("key_") and ok["team"] == "team-a"
    assert (ok["endpoint"], ok["model"], ok["status"], ok["cache"]) == (
        "generations",
        "gpt-image-1",
        200,
        "bypass",
    )
    assert ok["cost_usd"] == raw.headers["x-gateway-cost-usd"]
    assert ok["latency_ms"] > 0 and ok["images"] == 1
    assert (
        refused["status"],
        refused["outcome"],
        refused["error_code"],
        refused["key_id"],
    ) == (401, "refused_auth", "invalid_api_key", None)
    everything = json.dumps(log_lines())
    assert "private thought" not in everything
    assert key not in everything and "sk-gw-wrong" not in everything


@pytest.mark.parametrize("gateway_overrides", [{"log_prompts": True}])
async def test_prompts_are_logged_only_when_configured_and_the_upstream_key_never(
    sdk: openai.AsyncOpenAI, log_lines: Any
) -> None:
    await sdk.images.generate(prompt=f"a poem about {UPSTREAM_KEY}", **LOW)
    (line,) = requests_logged(log_lines())
    assert line["prompt"] == "a poem about [redacted]"
    assert UPSTREAM_KEY not in json.dumps(log_lines())


def test_text_format_keeps_the_fields_readable() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("INFO", "text", stream)
        logging.getLogger("gateway.requests").info(
            "request", extra={"fields": {"status": 200, "team": "a b"}}
        )
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    assert stream.getvalue().rstrip().endswith('gateway.requests: request status=200 team="a b"')
