"""The records every part of the gateway reads: a team and an API key (never its secret: the
store keeps only its hash)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Team:
    id: int
    name: str
    budget_nanos: int | None
    budget_period: str
    rpm: int | None
    ipm: int | None
    created_at: str
    policy: str | None = None  # what its keys may ask for, JSON (accounting/policy.py)
    alert_thresholds: str | None = None  # JSON list of fractions; None: 0.8 and 1.0 (alerts/)
    price_multiplier: str | None = None  # chargeback: what it is charged, times upstream's cost


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    team_id: int
    team_name: str
    name: str | None
    prefix: str
    budget_nanos: int | None
    budget_period: str
    rpm: int | None
    ipm: int | None
    created_at: str
    revoked_at: str | None
    policy: str | None = None  # what it may ask for, JSON (accounting/policy.py)
    alert_thresholds: str | None = None  # JSON list of fractions; None: 0.8 and 1.0 (alerts/)

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True, slots=True)
class BatchFile:
    """A file a team uploaded for the Batch API (or one the gateway made for a batch: its output
    merged with the cache's answers). `id` is upstream's."""

    id: str
    team_id: int
    key_id: str
    purpose: str
    filename: str
    bytes: int
    created_at: int  # unix seconds
    endpoint: str | None = None  # an input file's image endpoint
    lines: int = 0
    estimate_nanos: int = 0  # the sum of its lines' estimates, at batch prices


@dataclass(frozen=True, slots=True)
class BatchLine:
    """One line of an input file, as it was checked."""

    file_id: str
    line: int  # from 1
    custom_id: str
    model: str
    size: str | None
    quality: str | None
    cache_key: str | None  # the key an identical online request would have
    estimate_nanos: int  # at batch prices


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """A batch the gateway created upstream (or answered from the cache), until and after it is
    settled. `status` is upstream's last word; `settled_at` says the ledger has its lines."""

    id: str
    upstream_id: str | None
    team_id: int
    key_id: str
    input_file_id: str
    endpoint: str
    created_at: int
    lines: int
    cached_lines: int
    cached_file_id: str | None
    cache_write: bool
    held_nanos: int
    reservation_id: int | None
    metadata: str | None  # JSON
    status: str
    upstream: str | None  # upstream's last batch object, JSON
    output_file_id: str | None = None
    error_file_id: str | None = None
    completed_lines: int = 0
    failed_lines: int = 0
    charged_nanos: int = 0
    saved_nanos: int = 0
    settled_at: int | None = None
    polled_at: float = 0.0  # when upstream was last asked about it (unix seconds)


@dataclass(frozen=True, slots=True)
class ResponseRecord:
    """A response made through the gateway (`id` is upstream's), owned by its team; a background
    one is tracked here until it ends and is charged (`settled_at`)."""

    id: str
    team_id: int
    key_id: str
    request_id: str  # the gateway request that made it: its hold and its ledger row's name
    created_at: int
    background: bool
    status: str
    model: str  # the text model
    image_model: str
    estimate_nanos: int = 0
    text_estimate_nanos: int = 0  # the text model's part of it
    image_each_nanos: int = 0  # one image's part of it
    reservation_id: int | None = None
    deleted_at: int | None = None
    settled_at: int | None = None
