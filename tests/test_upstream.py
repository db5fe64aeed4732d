"""Headers across the gateway: the client's key and account routing never reach upstream, and
upstream's account identity, rate limits and hop-by-hop headers never reach the client."""

from __future__ import annotations

from multidict import CIMultiDict, CIMultiDictProxy

from gateway.logs import redact_secret
from gateway.upstream import client_response_headers, upstream_request_headers


def test_upstream_gets_the_gateway_s_key_and_nothing_of_the_client_s_account() -> None:
    sent = upstream_request_headers(
        {
            "Authorization": "Bearer sk-gw-client",
            "OpenAI-Organization": "org-client",
            "Cookie": "a=b",
            "Connection": "keep-alive, X-Secret-Hop",
            "X-Secret-Hop": "1",
            "Content-Type": "application/json",
            "X-Stainless-Lang": "python",
        },
        "sk-upstream",
    )
    assert sent["Authorization"] == "Bearer sk-upstream"
    assert set(sent) == {"Authorization", "Content-Type", "X-Stainless-Lang"}


def test_the_client_gets_no_upstream_account_limits_or_hops_and_no_key() -> None:
    redact_secret("sk-upstream-secret-value")
    received = CIMultiDictProxy(
        CIMultiDict(
            {
                "Content-Type": "application/json",
                "x-ratelimit-remaining-requests": "4999",
                "openai-organization": "org-gateway",
                "Set-Cookie": "s=1",
                "Transfer-Encoding": "chunked",
                "x-request-id": "req_1",
                "x-echo": "key sk-upstream-secret-value leaked",
            }
        )
    )
    relayed = client_response_headers(received)
    assert set(relayed) == {"Content-Type", "x-request-id", "x-echo"}
    assert "sk-upstream-secret-value" not in relayed["x-echo"]
