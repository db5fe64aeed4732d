"""The stages a Responses request runs in place of an image request's (proxy/pipeline.py has
the whole list): its path, its fields, the ids it names, its estimate.

What holds: by the time anything is held or sent, the request can make images with models the
table prices, names only its own team's responses, and its estimate is the text model's part
plus the image tool's (responses/estimate.py).
"""

from __future__ import annotations

from gateway.errors import invalid_request, not_found
from gateway.proxy.flow import Flow
from gateway.responses.estimate import quote_response
from gateway.responses.request import read_ask


async def check_response_path(flow: Flow) -> None:
    """Always `responses` upstream, with the client's query."""
    query = flow.request.query_string
    flow.upstream_path = "responses" + (f"?{query}" if query else "")


async def inspect_response(flow: Flow) -> None:
    """`flow.ask` holds what the gateway relies on; `flow.model` is the text model, `flow.n`
    the images the response is held for, `flow.parsed` the image tool's settings."""
    body = flow.body
    assert body is not None
    if not isinstance(body.json, dict):
        raise invalid_request("The JSON body must be an object.", code="invalid_json")
    flow.params = body.json
    settings = flow.services.settings
    try:
        ask = read_ask(body.json, settings.default_image_tool_model, settings.responses_max_images)
    except RecursionError:
        raise invalid_request("The body nests too deeply.", code="invalid_json") from None
    flow.ask, flow.parsed = ask, ask.image
    flow.model, flow.stream, flow.n = ask.model, ask.stream, ask.max_images


async def check_ownership(flow: Flow) -> None:
    """A `previous_response_id` must be one of the team's responses; a `conversation` none can
    be (the gateway does not serve /v1/conversations): both are 404, exactly as for an id that
    does not exist, and nothing reaches upstream."""
    ask, caller = flow.ask, flow.caller
    assert ask is not None and caller is not None
    if ask.previous_response_id is not None:
        found = await flow.services.store.get_response(ask.previous_response_id, caller.team.id)
        if found is None:
            raise not_found("response", ask.previous_response_id, param="previous_response_id")
    if ask.conversation is not None:
        raise not_found("conversation", ask.conversation, param="conversation")


async def estimate_response(flow: Flow) -> None:
    """`flow.bill` holds the estimate (text part plus images), the image tool's prices as the
    request's `price`, and the text model's."""
    assert flow.ask is not None
    table = flow.services.prices.table
    quoted = quote_response(table, flow.ask)
    bill = flow.bill
    bill.price_version = table.version
    bill.price, bill.text_price = quoted.image_price, quoted.text_price
    bill.estimate_nanos = quoted.nanos
    bill.text_input_nanos = quoted.text_input_nanos
    bill.image_each_nanos = quoted.image_each_nanos
