"""A policy read, merged field by field, and checked: the first field outside it refuses."""

from __future__ import annotations

import pytest

from gateway.accounting.policy import check, merged, read_policy
from gateway.edge.params import read_params
from gateway.errors import GatewayError


def test_fields_are_merged_and_null_clears_one() -> None:
    policy = merged(None, {"max_n": 2, "allowed_models": ["b", "a"]})
    assert read_policy(policy) == {"allowed_models": ["a", "b"], "max_n": 2}
    assert merged(policy, {"max_n": None, "allowed_models": None}) is None
    assert read_policy(None) == {}


@pytest.mark.parametrize(
    ("fields", "policy", "param"),
    [
        ({"size": "1024x1536"}, {"max_pixels": 1024 * 1024}, "size"),
        ({"size": "auto"}, {"max_pixels": 1536 * 1024 - 1}, "size"),
        ({"quality": "high"}, {"allowed_qualities": ["low"]}, "quality"),
        ({}, {"allowed_qualities": ["low"]}, "quality"),  # unset is auto
        ({"n": 3}, {"max_n": 2}, "n"),
        ({"output_format": "gif", "frame_count": 12}, {"max_frame_count": 9}, "frame_count"),
        ({"stream": True, "partial_images": 2}, {"max_partial_images": 1}, "partial_images"),
        ({}, {"allowed_models": ["other"]}, "model"),
    ],
)
def test_the_first_field_outside_refuses(
    fields: dict[str, object], policy: dict[str, object], param: str
) -> None:
    params = read_params({"prompt": "p", **fields}, "gpt-image-2")
    with pytest.raises(GatewayError) as caught:
        check(policy, "key", [("gpt-image-2", "model")], params, params.n)
    assert (caught.value.status, caught.value.param) == (403, param)
    check({}, "key", [("gpt-image-2", "model")], params, params.n)  # no policy: anything goes
