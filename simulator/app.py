"""A faithful fake of the OpenAI Images API upstream, for tests, benchmarks and `gateway simulator`.

Routes: `POST /v1/images/generations` (JSON), `POST /v1/images/edits` (multipart or JSON),
`POST /v1/images/variations` (multipart), `GET /files/<id>.png` for images answered as `url`, and
the Files and Batches APIs for image lines (batches.py).
Anything else under /v1 is a 404 in OpenAI's error shape.

Every /v1 request is parsed (and, with `record`, kept in `state.requests`) before anything else
happens to it; then, in order: a fault may apply (`disconnect` and `timeout` act here, before
authentication, like network trouble would), the configured latency passes, the API key is
checked, an `error:<status>` fault answers, and finally the endpoint answers — with `cut` or
`hang-stream` faults applied to how the answer is written. Images are small real PNGs,
deterministic in the request; GPT image models get usage from `simulator.usage`.

Streaming: one `<prefix>.partial_image` event per partial image and one `<prefix>.completed`
event for each of the n images (prefix `image_generation` or `image_edit`). The last completed
event carries the whole request's usage; an earlier one (n > 1) carries that image's usage, i.e.
the whole input plus that image's output, so consumers must take the last event's usage, not
add them up. `partial_image_index` counts from 0 for each image.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import signal
import time
import uuid

from aiohttp import web
from aiohttp.typedefs import Handler

from simulator import batches, billing, responses
from simulator.errors import ApiError, simulated_status_error
from simulator.faults import ACCEPTED_FAULTS, FAULT, FAULT_HEADER, parse_fault
from simulator.params import parse_edit, parse_generation, parse_variation
from simulator.respond import (
    answer,
    drop_connection,
    send_half_body,
    send_headers_and_hang,
    sleep_while_connected,
)
from simulator.state import SIMULATOR_STATE, SimulatorConfig, SimulatorState
from simulator.wire import RECORDED, RecordedFile, RecordedRequest, read_request

__all__ = [
    "SIMULATOR_STATE",
    "RecordedFile",
    "RecordedRequest",
    "SimulatorConfig",
    "SimulatorState",
    "add_simulator_arguments",
    "config_from_args",
    "create_simulator_app",
    "run_simulator",
]

_MAX_BODY = 1024 * 1024 * 1024  # an edit may carry 16 images of up to 50 MB each
_TIMEOUT_S = 3600.0
_OPENAI_VERSION = "2020-10-01"

_STARTED = web.RequestKey("simulator_started", float)


def create_simulator_app(config: SimulatorConfig | None = None) -> web.Application:
    """Build the simulator's aiohttp application; its state is at `app[SIMULATOR_STATE]`."""
    app = web.Application(middlewares=[_v1_middleware], client_max_size=_MAX_BODY)
    app[SIMULATOR_STATE] = SimulatorState(config or SimulatorConfig())
    app.on_response_prepare.append(_add_openai_headers)
    app.router.add_post("/v1/images/generations", _generations)
    app.router.add_post("/v1/images/edits", _edits)
    app.router.add_post("/v1/images/variations", _variations)
    batches.add_routes(app)
    responses.add_routes(app)
    billing.add_routes(app)
    app.router.add_route("*", "/v1/{tail:.*}", _not_found)
    app.router.add_route("*", "/v1", _not_found)
    app.router.add_get("/files/{file_id}.png", _get_file)
    return app


@web.middleware
async def _v1_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request[_STARTED] = time.monotonic()
    if request.path != "/v1" and not request.path.startswith("/v1/"):
        return await handler(request)
    state = request.app[SIMULATOR_STATE]
    state.in_flight += 1
    try:
        return await _handle_v1(request, handler, state)
    finally:
        state.in_flight -= 1


async def _handle_v1(
    request: web.Request, handler: Handler, state: SimulatorState
) -> web.StreamResponse:
    try:
        recorded = await read_request(request)
    except web.HTTPRequestEntityTooLarge as exc:
        return ApiError(413, exc.text or "Request body too large.").response()
    request[RECORDED] = recorded
    if state.config.record:
        state.requests.append(recorded)

    header = request.headers.get(FAULT_HEADER)
    if header is None:
        fault = state.draw_fault()
    else:
        try:
            fault = parse_fault(header)
        except ValueError:
            accepted = ", ".join(ACCEPTED_FAULTS)
            message = f"Unknown {FAULT_HEADER} {header!r}. Accepted: {accepted}."
            return ApiError(400, message, param=FAULT_HEADER, code="invalid_value").response()
    if fault is not None:
        request[FAULT] = fault
    kind = fault.kind if fault is not None else None
    if kind == "disconnect":
        drop_connection(request)
        return web.Response()  # never reaches the client; aiohttp drops it quietly

    delay = state.config.latency_ms / 1000
    if fault is not None and kind == "slow":
        delay += fault.value / 1000
    elif kind == "timeout":
        delay += _TIMEOUT_S
    if not await sleep_while_connected(request, delay):
        return web.Response()  # the client gave up; there is nobody to answer

    try:
        _check_api_key(request, state.config.api_key)
        if fault is not None and kind == "error":
            raise simulated_status_error(int(fault.value))
        response = await handler(request)
    except ApiError as exc:
        response = exc.response()
    # Faults on how a plain (not yet sent) response is written; streams apply their own.
    if not response.prepared and isinstance(response, web.Response):
        if kind == "cut":
            return await send_half_body(request, response)
        if kind == "hang-stream":
            return await send_headers_and_hang(request, response)
    return response


async def _add_openai_headers(request: web.Request, response: web.StreamResponse) -> None:
    started = request.get(_STARTED)
    elapsed_ms = 0 if started is None else int((time.monotonic() - started) * 1000)
    response.headers["x-request-id"] = f"req_{uuid.uuid4().hex}"
    response.headers["openai-processing-ms"] = str(elapsed_ms)
    response.headers["openai-version"] = _OPENAI_VERSION


def _check_api_key(request: web.Request, api_key: str | None) -> None:
    if api_key is None:
        return
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(
            401,
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            code="invalid_api_key",
        )
    if not hmac.compare_digest(token.encode(), api_key.encode()):
        shown = f"{token[:3]}***{token[-4:]}" if len(token) > 10 else "***"
        raise ApiError(
            401,
            f"Incorrect API key provided: {shown}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )


async def _generations(request: web.Request) -> web.StreamResponse:
    return await answer(request, parse_generation(request[RECORDED]), request.get(FAULT))


async def _edits(request: web.Request) -> web.StreamResponse:
    return await answer(request, parse_edit(request[RECORDED]), request.get(FAULT))


async def _variations(request: web.Request) -> web.StreamResponse:
    return await answer(request, parse_variation(request[RECORDED]), request.get(FAULT))


async def _not_found(request: web.Request) -> web.StreamResponse:
    raise ApiError(404, f"Invalid URL ({request.method} {request.path})")


async def _get_file(request: web.Request) -> web.StreamResponse:
    png = request.app[SIMULATOR_STATE].files.get(request.match_info["file_id"])
    if png is None:
        raise web.HTTPNotFound(text="no such file")
    return web.Response(body=png, content_type="image/png")


def add_simulator_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `gateway simulator` to `parser`."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8090, help="port to listen on")
    parser.add_argument(
        "--latency-ms",
        type=_non_negative,
        default=0.0,
        help="delay before each response's headers (and first stream event)",
    )
    parser.add_argument(
        "--partial-interval-ms", type=_non_negative, default=0.0, help="delay between stream events"
    )
    parser.add_argument(
        "--fault", type=_fault, default=None, help="fault to inject: " + ", ".join(ACCEPTED_FAULTS)
    )
    parser.add_argument(
        "--fault-rate",
        type=_probability,
        default=None,
        help="probability that --fault applies (default 1.0 with --fault)",
    )
    parser.add_argument("--api-key", default=None, help="require this Bearer key")
    parser.add_argument("--image-px", type=_image_px, default=64, help="side of generated PNGs")
    parser.add_argument("--seed", type=int, default=0, help="seed for images and faults")
    parser.add_argument(
        "--batch-ms",
        type=_non_negative,
        default=0.0,
        help="how long a batch takes to answer all its lines (0: at once)",
    )
    parser.add_argument(
        "--background-ms",
        type=_non_negative,
        default=0.0,
        help="how long a background response takes (0: done when first asked about)",
    )


def config_from_args(ns: argparse.Namespace) -> SimulatorConfig:
    """Build the config from parsed `add_simulator_arguments` options.

    A `--fault` without `--fault-rate` applies to every request.
    """
    rate = ns.fault_rate
    if rate is None:
        rate = 1.0 if ns.fault is not None else 0.0
    return SimulatorConfig(
        latency_ms=ns.latency_ms,
        partial_interval_ms=ns.partial_interval_ms,
        fault=ns.fault,
        fault_rate=rate,
        api_key=ns.api_key,
        image_px=ns.image_px,
        seed=ns.seed,
        batch_ms=ns.batch_ms,
        background_ms=ns.background_ms,
    )


def run_simulator(host: str, port: int, config: SimulatorConfig) -> None:
    """Serve the simulator until Ctrl-C or SIGTERM (blocking)."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(host, port, config))


async def _serve(host: str, port: int, config: SimulatorConfig) -> None:
    runner = web.AppRunner(create_simulator_app(config), handler_cancellation=True)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1] if runner.addresses else port
        print(f"OpenAI Images API simulator listening on http://{host}:{bound}", flush=True)
        stop = asyncio.Event()
        with contextlib.suppress(NotImplementedError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within 0..1, got {text!r}")
    return value


def _image_px(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 4096:
        raise argparse.ArgumentTypeError(f"must be within 1..4096, got {text!r}")
    return value


def _fault(text: str) -> str:
    try:
        parse_fault(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text
