"""Which paths go upstream, and with which methods: nothing a client sends may leave
/v1/images/, however it is encoded."""

from __future__ import annotations

import pytest

from gateway.edge.endpoints import check_forwarded_method, endpoint_for, upstream_path
from gateway.errors import GatewayError


@pytest.mark.parametrize(
    ("raw", "sent"),
    [
        ("/v1/images/generations", "images/generations"),
        ("/v1/images/edits?x=%2F", "images/edits?x=%2F"),  # the query is upstream's to read
        ("/v1/images/some/new/thing", "images/some/new/thing"),
        ("/v1/images/a%20b", "images/a%20b"),
        ("/v1/images/caf%C3%A9;v=2", "images/caf%C3%A9;v=2"),  # UTF-8, a path parameter
    ],
)
def test_paths_under_images_go_upstream_as_sent(raw: str, sent: str) -> None:
    assert upstream_path(raw) == sent


@pytest.mark.parametrize(
    "raw",
    [
        "/v1/images/",
        "/v1/images/../chat/completions",
        "/v1/images/%2e%2e/models",
        "/v1/images/%252e%252e/models",  # a dot segment two decodes away
        "/v1/images//x",
        "/v1/images/./x",
        "/v1/images/a%2fb",
        "/v1/images/a%5cb",
        "/v1/images/..;/models",  # read as `..` by servers that strip path parameters
        "/v1/images/..%00/models",  # a control character
        "/v1/images/%c0%ae%c0%ae/models",  # an overlong UTF-8 dot: not UTF-8 at all
        "/v1/models",
    ],
)
def test_paths_that_could_leave_images_are_refused(raw: str) -> None:
    with pytest.raises(GatewayError) as refused:
        upstream_path(raw)
    assert refused.value.code == "invalid_path" and refused.value.status == 400


def test_known_endpoints_take_post_and_others_get_or_post() -> None:
    generations, other = endpoint_for("generations"), endpoint_for("some/new/thing")
    assert generations.known and generations.requires_prompt and not other.known
    check_forwarded_method("POST", generations)
    check_forwarded_method("GET", other)
    for method, endpoint in (("GET", generations), ("DELETE", other), ("PUT", other)):
        with pytest.raises(GatewayError) as refused:
            check_forwarded_method(method, endpoint)
        assert refused.value.status == 405
