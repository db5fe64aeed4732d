"""The simulator's configuration and per-app state (recorded requests, served files, images)."""

from __future__ import annotations

import hashlib
import random
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from simulator.faults import Fault, parse_fault
from simulator.images import render_png
from simulator.params import ImageJob
from simulator.wire import RecordedRequest

__all__ = ["FILE_CACHE_SIZE", "SIMULATOR_STATE", "SimulatorConfig", "SimulatorState"]

FILE_CACHE_SIZE = 512
_IMAGE_CACHE_SIZE = 256


@dataclass
class SimulatorConfig:
    """How the simulator behaves. Invalid values raise ValueError at construction."""

    latency_ms: float = 0.0  # delay before a response's headers (and before the first event)
    partial_interval_ms: float = 0.0  # delay between stream events
    fault: str | None = None  # a fault applied to requests (syntax of x-simulator-fault)
    fault_rate: float = 0.0  # probability that `fault` applies to a request; seeded RNG
    api_key: str | None = None  # when set, requests must carry "Authorization: Bearer <key>"
    record: bool = False  # keep every /v1 request in state.requests
    image_px: int = 64  # side of the generated PNGs
    seed: int = 0
    batch_ms: float = 0.0  # how long a batch takes to answer all its lines (batches.py)
    background_ms: float = 0.0  # how long a background response takes (responses.py)

    def __post_init__(self) -> None:
        if self.fault is not None:
            parse_fault(self.fault)
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError(f"fault_rate must be within 0..1, got {self.fault_rate}")
        if (
            self.latency_ms < 0
            or self.partial_interval_ms < 0
            or self.batch_ms < 0
            or self.background_ms < 0
        ):
            raise ValueError("latencies must not be negative")
        if not 1 <= self.image_px <= 4096:
            raise ValueError(f"image_px must be within 1..4096, got {self.image_px}")


class SimulatorState:
    """The mutable state of one simulator app: recorded requests, served files, the fault RNG."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0  # /v1 requests being handled right now (tests wait for 0)
        self.files: OrderedDict[str, bytes] = OrderedDict()  # LRU of images answered as url
        # The Files and Batches APIs' objects (batches.py's Upload and Batch), by id.
        self.uploads: dict[str, Any] = {}
        self.batches: dict[str, Any] = {}
        self.responses: dict[str, Any] = {}  # the Responses API's stored responses, by id
        self.bills: list[Any] = []  # what was billed (billing.py's Bill), in order
        self._images: OrderedDict[tuple[bytes, int], bytes] = OrderedDict()
        self._fault = parse_fault(config.fault) if config.fault else None
        self._rng = random.Random(config.seed)

    def draw_fault(self) -> Fault | None:
        """The configured fault with probability `fault_rate`, else None."""
        if self._fault is None or self.config.fault_rate <= 0.0:
            return None
        return self._fault if self._rng.random() < self.config.fault_rate else None

    def store_file(self, png: bytes) -> str:
        """Keep `png` for `GET /files/<id>.png` and return its id (content-derived)."""
        file_id = hashlib.sha256(png).hexdigest()[:32]
        self.files[file_id] = png
        self.files.move_to_end(file_id)
        while len(self.files) > FILE_CACHE_SIZE:
            self.files.popitem(last=False)
        return file_id

    def image(self, job: ImageJob, index: int, partial: int | None = None) -> bytes:
        """The PNG for image `index` of `job`, or its partial image number `partial`.

        Partials are pixelated previews of the final image, coarsest first.
        """
        digest = hashlib.sha256(
            job.seed + self.config.seed.to_bytes(8, "big", signed=True) + index.to_bytes(2, "big")
        ).digest()
        px = self.config.image_px
        block = 1 if partial is None else max(2, px // (4 << partial))
        key = (digest, block)
        png = self._images.get(key)
        if png is None:
            transparent = job.background == "transparent"
            png = render_png(digest, px, block=block, transparent=transparent)
            self._images[key] = png
            if len(self._images) > _IMAGE_CACHE_SIZE:
                self._images.popitem(last=False)
        else:
            self._images.move_to_end(key)
        return png


SIMULATOR_STATE = web.AppKey("simulator_state", SimulatorState)
