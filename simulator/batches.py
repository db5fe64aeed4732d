"""The Files and Batches APIs, as OpenAI serves them for image lines, so that the gateway's Batch
support can be tested (and `make run` demonstrated) without an OpenAI account.

`POST /v1/files` (multipart `file` and `purpose`), `GET /v1/files`, `GET|DELETE /v1/files/{id}`,
`GET /v1/files/{id}/content`; `POST /v1/batches` `{input_file_id, endpoint, completion_window,
metadata}`, `GET /v1/batches`, `GET /v1/batches/{id}`, `POST /v1/batches/{id}/cancel`.

A batch's lines are answered one after another over `SimulatorConfig.batch_ms` (all at once when
0): line i of n is done at `created_at + batch_ms * (i + 1) / n`, answered exactly as the online
endpoint answers the same body (the same images and `usage`). When it ends, the output file holds
the lines that succeeded and the error file those that did not, each `{id, custom_id, response:
{status_code, request_id, body}, error}`. Markers drive the other endings: a line whose prompt
holds `[batch-fail]` fails with a 400; a batch with `metadata.simulate = "expire"` expires at its
end with only its first half of lines done; `cancel` ends it with the lines done by then. A file
with a line that is not JSON, or names another endpoint, fails the batch at validation.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aiohttp import web

from simulator.billing import bill_images
from simulator.errors import ApiError
from simulator.params import parse_edit, parse_generation
from simulator.respond import image_body
from simulator.state import SIMULATOR_STATE, SimulatorState
from simulator.wire import RECORDED, RecordedRequest

IMAGE_ENDPOINTS = ("/v1/images/generations", "/v1/images/edits")
FAIL_MARKER = "[batch-fail]"
WINDOW_S = 24 * 3600


@dataclass
class Upload:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }


@dataclass
class Batch:
    id: str
    endpoint: str
    input_file_id: str
    completion_window: str
    metadata: dict[str, str] | None
    created_at: float
    lines: list[dict[str, Any]]
    duration_s: float
    status: str = "in_progress"
    errors: dict[str, Any] | None = None
    ended_at: float | None = None
    cancelling_at: float | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    counts: dict[str, int] = field(
        default_factory=lambda: {"total": 0, "completed": 0, "failed": 0}
    )

    def as_json(self) -> dict[str, Any]:
        created = int(self.created_at)
        ended = None if self.ended_at is None else int(self.ended_at)
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "errors": self.errors,
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": created,
            "in_progress_at": None if self.status == "failed" else created,
            "expires_at": created + WINDOW_S,
            "finalizing_at": ended if self.status == "completed" else None,
            "completed_at": ended if self.status == "completed" else None,
            "failed_at": ended if self.status == "failed" else None,
            "expired_at": ended if self.status == "expired" else None,
            "cancelling_at": None if self.cancelling_at is None else int(self.cancelling_at),
            "cancelled_at": ended if self.status == "cancelled" else None,
            "request_counts": dict(self.counts),
            "metadata": self.metadata,
        }


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/files", _upload)
    app.router.add_get("/v1/files", _list_files)
    app.router.add_get("/v1/files/{file_id}", _get_file)
    app.router.add_delete("/v1/files/{file_id}", _delete_file)
    app.router.add_get("/v1/files/{file_id}/content", _file_content)
    app.router.add_post("/v1/batches", _create_batch)
    app.router.add_get("/v1/batches", _list_batches)
    app.router.add_get("/v1/batches/{batch_id}", _get_batch)
    app.router.add_post("/v1/batches/{batch_id}/cancel", _cancel_batch)


def _recorded(request: web.Request) -> RecordedRequest:
    return request[RECORDED]


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(body, indent=2).encode(), status=status, content_type="application/json"
    )


def _new_id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(12)}"


# Files


async def _upload(request: web.Request) -> web.StreamResponse:
    recorded = _recorded(request)
    if not recorded.is_multipart:
        raise ApiError(400, "Uploads must be multipart/form-data.", code="invalid_value")
    purpose = dict(recorded.fields).get("purpose")
    if not purpose:
        raise ApiError(400, "Missing required parameter: 'purpose'.", param="purpose")
    files = [f for f in recorded.files if f.field == "file"]
    if not files:
        raise ApiError(400, "Missing required parameter: 'file'.", param="file")
    state = request.app[SIMULATOR_STATE]
    upload = Upload(
        _new_id("file-"), files[0].filename or "upload", purpose, files[0].data, int(time.time())
    )
    state.uploads[upload.id] = upload
    return _json(upload.as_json())


def _upload_of(state: SimulatorState, file_id: str) -> Upload:
    upload = state.uploads.get(file_id)
    if not isinstance(upload, Upload):
        raise ApiError(404, f"No such File object: {file_id}", param="id")
    return upload


async def _list_files(request: web.Request) -> web.StreamResponse:
    state = request.app[SIMULATOR_STATE]
    purpose = request.query.get("purpose")
    data = [u.as_json() for u in state.uploads.values() if purpose in (None, u.purpose)]
    return _json({"object": "list", "data": data, "has_more": False})


async def _get_file(request: web.Request) -> web.StreamResponse:
    return _json(_upload_of(request.app[SIMULATOR_STATE], request.match_info["file_id"]).as_json())


async def _delete_file(request: web.Request) -> web.StreamResponse:
    state = request.app[SIMULATOR_STATE]
    upload = _upload_of(state, request.match_info["file_id"])
    del state.uploads[upload.id]
    return _json({"id": upload.id, "object": "file", "deleted": True})


async def _file_content(request: web.Request) -> web.StreamResponse:
    upload = _upload_of(request.app[SIMULATOR_STATE], request.match_info["file_id"])
    return web.Response(body=upload.data, content_type="application/octet-stream")


# Batches


async def _create_batch(request: web.Request) -> web.StreamResponse:
    state = request.app[SIMULATOR_STATE]
    body = _recorded(request).json or {}
    endpoint = body.get("endpoint")
    if endpoint not in IMAGE_ENDPOINTS:
        raise ApiError(
            400,
            f"Invalid 'endpoint': {endpoint!r}. This simulator batches"
            f" {' and '.join(IMAGE_ENDPOINTS)}.",
            param="endpoint",
            code="invalid_value",
        )
    if body.get("completion_window") != "24h":
        raise ApiError(400, "'completion_window' must be '24h'.", param="completion_window")
    upload = _upload_of(state, str(body.get("input_file_id")))
    batch = Batch(
        id=_new_id("batch_"),
        endpoint=endpoint,
        input_file_id=upload.id,
        completion_window="24h",
        metadata=body.get("metadata"),
        created_at=time.time(),
        lines=[],
        duration_s=state.config.batch_ms / 1000,
    )
    try:
        batch.lines = _lines(upload.data, endpoint)
    except ValueError as exc:
        batch.status, batch.ended_at = "failed", batch.created_at
        batch.errors = {"object": "list", "data": [json.loads(str(exc))]}
    batch.counts["total"] = len(batch.lines)
    state.batches[batch.id] = batch
    return _json(_advance(state, batch, request).as_json())


def _lines(data: bytes, endpoint: str) -> list[dict[str, Any]]:
    """The input file's requests; a line that is not one fails the batch (ValueError holding
    the error object as JSON)."""
    lines = []
    for number, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
            assert isinstance(line, dict) and isinstance(line.get("body"), dict)
        except (ValueError, AssertionError):
            problem = {
                "code": "invalid_json_line",
                "line": number,
                "message": "This line is not a JSON request object.",
            }
            raise ValueError(json.dumps(problem)) from None
        if line.get("url") != endpoint:
            problem = {
                "code": "mismatched_endpoint",
                "line": number,
                "message": f"The line's url is not the batch's {endpoint}.",
            }
            raise ValueError(json.dumps(problem))
        lines.append(line)
    return lines


def _advance(state: SimulatorState, batch: Batch, request: web.Request) -> Batch:
    """Bring `batch` up to now: when its time (or its cancel) has come, answer its lines and
    write its output and error files."""
    if batch.status not in ("in_progress", "cancelling"):
        return batch
    now = time.time()
    end = batch.created_at + batch.duration_s
    expire = (batch.metadata or {}).get("simulate") == "expire"
    if batch.status == "cancelling":
        assert batch.cancelling_at is not None
        done = _done_by(batch, batch.cancelling_at)
        _finish(state, batch, request, done, "cancelled", batch.cancelling_at)
    elif now >= end:
        done = len(batch.lines) // 2 if expire else len(batch.lines)
        _finish(state, batch, request, done, "expired" if expire else "completed", end)
    return batch


def _done_by(batch: Batch, moment: float) -> int:
    """How many lines were answered by `moment` (one after another over the batch's time)."""
    if batch.duration_s <= 0:
        return len(batch.lines)
    share = (moment - batch.created_at) / batch.duration_s
    return max(0, min(len(batch.lines), int(share * len(batch.lines))))


def _finish(
    state: SimulatorState,
    batch: Batch,
    request: web.Request,
    done: int,
    status: str,
    at: float,
) -> None:
    base_url = f"{request.scheme}://{request.host}"
    output: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for line in batch.lines[:done]:
        answered = _answer_line(state, line, batch.endpoint, base_url)
        (output if answered["response"]["status_code"] == 200 else errors).append(answered)
    if status == "expired":
        for line in batch.lines[done:]:
            errors.append(_expired_line(line))
    batch.counts["completed"] = len(output)
    batch.counts["failed"] = len(errors)
    batch.output_file_id = _keep(state, batch.id, "output", output)
    batch.error_file_id = _keep(state, batch.id, "error", errors)
    batch.status, batch.ended_at = status, at


def _keep(
    state: SimulatorState, batch_id: str, kind: str, lines: list[dict[str, Any]]
) -> str | None:
    if not lines:
        return None
    data = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    upload = Upload(
        _new_id("file-"), f"{batch_id}_{kind}.jsonl", "batch_output", data, int(time.time())
    )
    state.uploads[upload.id] = upload
    return upload.id


def _answer_line(
    state: SimulatorState, line: dict[str, Any], endpoint: str, base_url: str
) -> dict[str, Any]:
    """The line answered as the online endpoint answers the same body."""
    body = line["body"]
    recorded = RecordedRequest(
        method="POST",
        path=endpoint,
        headers={},
        query={},
        content_type="application/json",
        body=json.dumps(body).encode(),
        json=body,
    )
    request_id = f"req_{secrets.token_hex(16)}"
    try:
        if FAIL_MARKER in str(body.get("prompt", "")):
            raise ApiError(
                400,
                "This request was refused (simulated by [batch-fail]).",
                code="content_policy_violation",
            )
        parse = parse_generation if endpoint.endswith("generations") else parse_edit
        job = parse(recorded)
        if job.stream:
            raise ApiError(400, "Batch lines cannot stream.", param="stream")
        status, answer = 200, image_body(state, job, base_url)
        bill_images(state, job.model, answer, job.prompt or "", share=Decimal("0.5"))
    except ApiError as exc:
        status, answer = exc.status, exc.body()
    return {
        "id": _new_id("batch_req_"),
        "custom_id": line.get("custom_id"),
        "response": {"status_code": status, "request_id": request_id, "body": answer},
        "error": None,
    }


def _expired_line(line: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": _new_id("batch_req_"),
        "custom_id": line.get("custom_id"),
        "response": None,
        "error": {
            "code": "batch_expired",
            "message": "This request could not be executed before the completion window expired.",
        },
    }


def _batch_of(state: SimulatorState, batch_id: str) -> Batch:
    batch = state.batches.get(batch_id)
    if not isinstance(batch, Batch):
        raise ApiError(404, f"No such Batch object: {batch_id}", param="id")
    return batch


async def _get_batch(request: web.Request) -> web.StreamResponse:
    state = request.app[SIMULATOR_STATE]
    batch = _batch_of(state, request.match_info["batch_id"])
    return _json(_advance(state, batch, request).as_json())


async def _list_batches(request: web.Request) -> web.StreamResponse:
    state = request.app[SIMULATOR_STATE]
    batches = [_advance(state, b, request).as_json() for b in state.batches.values()]
    batches.reverse()  # newest first, as the API lists them
    return _json({"object": "list", "data": batches, "has_more": False})


async def _cancel_batch(request: web.Request) -> web.StreamResponse:
    state = request.app[SIMULATOR_STATE]
    batch = _advance(state, _batch_of(state, request.match_info["batch_id"]), request)
    if batch.status != "in_progress":
        raise ApiError(409, f"Cannot cancel a batch with status '{batch.status}'.")
    batch.status, batch.cancelling_at = "cancelling", time.time()
    shown = batch.as_json()
    _advance(state, batch, request)  # cancelled from the next read on
    return _json(shown)
