"""params: the fields the gateway relies on are typed and bounded, or a 400 names them."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.edge.params import check_depth, read_params
from gateway.errors import GatewayError


def refused(fields: dict[str, Any]) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        read_params(fields, "m")
    assert caught.value.status == 400
    return caught.value


def test_form_strings_and_json_numbers_read_alike() -> None:
    form = read_params({"prompt": "p", "n": " 3 ", "stream": "true", "partial_images": "2"}, "m")
    body = read_params({"prompt": "p", "n": 3.0, "stream": True, "partial_images": 2}, "m")
    assert (form.n, form.stream, form.partial_images) == (body.n, body.stream, body.partial_images)
    assert (form.n, form.stream, form.partial_images) == (3, True, 2)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 0}, "n"),
        ({"n": True}, "n"),
        ({"n": "1e3"}, "n"),
        ({"n": "9" * 40}, "n"),
        ({"n": float("inf")}, "n"),
        ({"n": 2.5}, "n"),
        ({"partial_images": 4}, "partial_images"),
        ({"frame_count": 1}, "frame_count"),
        ({"size": 1024}, "size"),
        ({"quality": "hi\udc80gh"}, "quality"),
        ({"output_format": "x" * 300}, "output_format"),
        ({"svg": "gpt-5"}, "svg"),
        ({"svg": {"model": 5}}, "svg.model"),
    ],
)
def test_what_the_gateway_cannot_rely_on_is_refused_by_name(
    fields: dict[str, Any], param: str
) -> None:
    assert refused({"prompt": "p", **fields}).param == param


def test_empty_values_are_absent_and_svg_model_is_read() -> None:
    params = read_params(
        {"prompt": "p", "size": "", "quality": None, "svg": {"model": "gpt-5"}}, "m"
    )
    assert (params.size, params.quality, params.svg_model, params.n) == (None, None, "gpt-5", 1)


def test_depth_is_checked_without_recursion() -> None:
    shallow: Any = []
    for _ in range(63):
        shallow = [shallow]
    check_depth(shallow)
    deep: Any = []
    for _ in range(100_000):  # far past Python's recursion limit
        deep = [deep]
    with pytest.raises(GatewayError):
        check_depth(deep)
