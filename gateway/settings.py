"""The one Settings class.

Precedence, highest first: keyword arguments (tests), environment variables `GATEWAY_*`, the TOML
file named by `GATEWAY_CONFIG` (default `config/gateway.toml` in the working directory; a missing
file is no error), the defaults below.

What the gateway ships (the default price table, the migrations, a config file listing every
setting) is package data (gateway.config, gateway.migrations: `config/` and `migrations/` at the
top of the repository), so no default depends on the working directory but the data dir's, which
the contract sets to `./data`.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_CONFIG_FILE = "config/gateway.toml"
# `config/` at the top of the repository, installed as the package gateway.config.
SHIPPED_DIR = Path(str(resources.files("gateway.config")))
# The price table in force unless `GATEWAY_PRICES` names another.
SHIPPED_PRICES = SHIPPED_DIR / "prices.toml"
# Every setting with its default and a comment: what `gateway config --example` prints.
SHIPPED_CONFIG_EXAMPLE = SHIPPED_DIR / "gateway.toml"
MiB = 1024 * 1024
GiB = 1024 * MiB
# Kept here rather than imported from the cache package, so settings import nothing of the app.
DEFAULT_IGNORED_FIELDS = ("user", "safety_identifier")


class Settings(BaseSettings):
    """Everything the gateway can be told. Field names are the contract's `GATEWAY_*` names."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # `make run` without an upstream key serves the built-in simulator here, as its upstream.
    simulator_port: int = Field(default=8090, ge=0, le=65535)
    upstream_url: str = "https://api.openai.com/v1"
    upstream_api_key: SecretStr | None = None
    # An organization admin key: reads upstream's Costs API for `gateway reconcile`.
    upstream_admin_key: SecretStr | None = None
    admin_token: SecretStr | None = None
    data_dir: Path = Path("./data")
    database_url: str | None = None
    # PostgreSQL connections per process, and the longest a store call may wait (for a
    # connection, a lock or its statement) before the request fails cleanly (503).
    database_pool_size: int = Field(default=10, ge=1, le=1000)
    database_timeout_s: float = Field(default=5.0, gt=0)
    # Redis, shared by every process and replica: rate limits counted once for all of them.
    redis_url: SecretStr | None = None
    # The longest a Redis call may wait; past it the process goes on without Redis for a while.
    redis_timeout_s: float = Field(default=0.25, gt=0)
    # The most connections a process opens to Redis (calls, followers' reads, the listener).
    redis_max_connections: int = Field(default=64, ge=4, le=10_000)
    # While Redis cannot be reached: count limits in each process (`local`) or not at all.
    redis_limits_on_failure: Literal["local", "open"] = "local"
    # Where ledger rows wait while the store cannot take them (None: <data dir>/journal). On a
    # volume of its own, a full data disk loses no row.
    journal_dir: Path | None = None
    prices: Path = SHIPPED_PRICES
    # Worker processes serving one port (SO_REUSEPORT); their metrics are summed.
    workers: int = Field(default=1, ge=1, le=64)

    # Logs: to stdout when serving, one JSON line per request (and per message).
    log_level: str = "INFO"
    # auto: a compact line per request when stdout is a terminal, JSON lines otherwise.
    log_format: Literal["auto", "json", "text"] = "auto"
    # Prompts are the users' data: logged only when the operator asks for it.
    log_prompts: bool = False

    # Metrics. Key ids as labels multiply the series by the number of keys: opt in.
    metrics_key_labels: bool = False
    # When set, GET /metrics asks for `Authorization: Bearer <token>`.
    metrics_token: SecretStr | None = None
    # /readyz asks upstream whether it is reachable at most this often, within this timeout.
    readiness_cache_s: float = Field(default=5.0, ge=0)
    readiness_timeout_s: float = Field(default=3.0, gt=0)

    # Request bodies. An edit may carry 16 images of 50 MB; multipart bodies are spooled to disk
    # past `spool_threshold_bytes`. JSON bodies are parsed whole, so they get their own limit.
    max_body_bytes: int = Field(default=900 * MiB, gt=0)
    max_json_body_bytes: int = Field(default=64 * MiB, gt=0)
    spool_threshold_bytes: int = Field(default=1 * MiB, gt=0)

    # The edge. A request's head must arrive within header_timeout_s of connecting (or of its
    # first byte, on a kept-alive connection); an idle kept-alive connection closes after
    # keepalive_timeout_s; a body must keep arriving: no pause over body_timeout_s, and at least
    # body_min_bytes_per_s on average once it has taken that long. Past max_connections open
    # connections (0: as many as the file-descriptor limit carries), new ones get a 503 at once.
    header_timeout_s: float = Field(default=10.0, gt=0)
    keepalive_timeout_s: float = Field(default=15.0, gt=0)
    body_timeout_s: float = Field(default=30.0, gt=0)
    body_min_bytes_per_s: int = Field(default=1024, ge=0)
    max_connections: int = Field(default=0, ge=0)
    # Proxies (addresses or networks) whose X-Forwarded-For and X-Forwarded-Proto are believed:
    # the client address admin throttling counts, and whether the console's cookie is Secure.
    trusted_proxies: list[str] = Field(default_factory=list)

    # Upstream. Image generation can take two minutes, so the read timeout is per read, not total.
    upstream_connect_timeout_s: float = Field(default=10.0, gt=0)
    upstream_read_timeout_s: float = Field(default=300.0, gt=0)
    # Each open stream holds one for its whole life: room for 1,000 streams and the rest.
    upstream_max_connections: int = Field(default=1100, gt=0)
    # Upstream answers are bounded: a whole body (after decompression), one stream event, and a
    # stream's whole life. Past one, the answer ends as `upstream_error` (a body) or `stream_cut`
    # (a stream) with its ledger row. A stream must end before its hold's TTL would settle it.
    upstream_max_body_bytes: int = Field(default=512 * MiB, gt=0)
    upstream_max_event_bytes: int = Field(default=64 * MiB, gt=0)
    upstream_max_stream_s: float = Field(default=600.0, gt=0)

    # The model a request that names none is for, per endpoint. None: the request must name one.
    # Shipped as the current API reference has it: generations and edits ask for an explicit
    # model; variations (a retired endpoint) only ever served dall-e-2.
    default_model_generations: str | None = None
    default_model_edits: str | None = None
    default_model_variations: str | None = "dall-e-2"

    # Accounting. A model missing from the price table is refused unless this is set; then it
    # is forwarded and charged $0, and its ledger rows say so.
    allow_unpriced_models: bool = False
    # A reservation a dead process left behind stops counting after this long.
    reservation_ttl_s: float = Field(default=900.0, gt=0)
    # Non-stream responses are read whole before they are relayed (their cost must be known
    # first); past this they wait in a temporary file rather than in memory.
    response_memory_bytes: int = Field(default=16 * MiB, gt=0)
    # On SIGTERM: how long requests and streams in flight may take to finish (those still
    # running then are cancelled, and their ledger rows written).
    shutdown_grace_s: float = Field(default=30.0, ge=0)

    # The Batch API. An input file may be this large (OpenAI's limit); batches in flight are
    # polled upstream this often (by one replica each), and on a client's retrieve.
    batch_max_file_bytes: int = Field(default=200 * MiB, gt=0)
    batch_poll_s: float = Field(default=30.0, gt=0)

    # The Responses API's image tool. The image model a tool that names none uses (the API's
    # documented default); how many images one response is held for, unless it says
    # (`max_tool_calls`); how long a background response's hold may wait to be charged.
    default_image_tool_model: str = "gpt-image-2.6-sunburst"
    responses_max_images: int = Field(default=1, ge=1, le=16)
    background_hold_s: float = Field(default=7 * 86400.0, gt=0)

    # Budget alerts by webhook (alerts/): webhook URLs that resolve to loopback or private
    # addresses are refused unless allowed; each delivery attempt may take this long; a failed
    # one is tried again after GATEWAY_WEBHOOK_RETRY_S, doubling, at most 10 minutes apart.
    webhook_allow_private: bool = False
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_retry_s: float = Field(default=2.0, gt=0, le=600)

    # Response cache. Entries belong to a team by default ("key" narrows, "global" widens).
    cache_enabled: bool = True
    cache_scope: Literal["team", "key", "global"] = "team"
    cache_ttl_s: float = Field(default=7 * 86400.0, gt=0)
    # dall-e `url`s stop working 60 minutes after they are issued; cached answers carrying them
    # expire sooner than that.
    cache_url_ttl_s: float = Field(default=50 * 60.0, gt=0)
    cache_max_bytes: int = Field(default=10 * GiB, ge=0)
    # Where body files live: unset, <data dir>/cache; a directory every replica mounts, or an
    # S3-compatible object store (s3://bucket/prefix), shares them (the index is shared through
    # GATEWAY_DATABASE_URL).
    cache_store: str | None = None
    cache_s3_endpoint_url: str | None = None  # MinIO, R2, GCS...; unset: AWS S3
    cache_s3_region: str = "us-east-1"
    # Bodies up to this size live in the store's index, not as files (0: every body a file).
    cache_inline_max_bytes: int = Field(default=64 * 1024, ge=0, le=1024 * 1024)
    # Request fields that do not change the image, left out of the cache key.
    cache_ignored_fields: list[str] = Field(default_factory=lambda: list(DEFAULT_IGNORED_FIELDS))
    # Teams (by name) whose requests are never answered from, nor stored in, the cache.
    cache_disabled_teams: list[str] = Field(default_factory=list)

    @field_validator("cache_store", mode="before")
    @classmethod
    def _directory_or_s3(cls, value: object) -> object:
        if isinstance(value, Path):
            return str(value)
        named_by_url = isinstance(value, str) and "://" in value
        if named_by_url and not (str(value).startswith("s3://") and str(value)[5:].strip("/")):
            raise ValueError("use a directory, or an object store as s3://bucket/prefix")
        return value

    @field_validator("trusted_proxies", mode="after")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for proxy in value:
            ipaddress.ip_network(proxy, strict=False)  # ValueError names the bad one
        return value

    @field_validator(
        "upstream_api_key", "upstream_admin_key", "admin_token", "metrics_token", mode="after"
    )
    @classmethod
    def _blank_secret_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        """A token is sent in a header, whose value has no surrounding whitespace: a token made
        only of whitespace is no token (the surface it guards stays off), and the rest is
        stripped."""
        if value is None:
            return None
        stripped = value.get_secret_value().strip()
        return SecretStr(stripped) if stripped else None

    def default_model(self, endpoint: str) -> str | None:
        """The model assumed for a request to `endpoint` that names none."""
        defaults = {
            "generations": self.default_model_generations,
            "edits": self.default_model_edits,
            "variations": self.default_model_variations,
        }
        return defaults.get(endpoint) or None

    @property
    def resolved_database_url(self) -> str:
        """The store URL: `GATEWAY_DATABASE_URL`, or a SQLite file inside the data dir."""
        return self.database_url or f"sqlite:///{self.data_dir / 'gateway.db'}"

    @property
    def spool_dir(self) -> Path:
        """Where request bodies past the threshold are spooled; emptied at start."""
        return self.data_dir / "tmp"

    @property
    def ledger_journal_dir(self) -> Path:
        """Ledger rows the store could not take, until they are replayed into it:
        `GATEWAY_JOURNAL_DIR`, or `journal/` in the data dir."""
        return self.journal_dir or self.data_dir / "journal"

    @property
    def cache_dir(self) -> Path:
        """Cached response bodies (`bodies/`, named by content hash) and their partial writes
        (`tmp/`, emptied at start; when shared, only of what is older than an hour)."""
        if self.cache_store is None or self.cache_object_store is not None:
            return self.data_dir / "cache"  # with an object store: partial writes only
        return Path(self.cache_store)

    @property
    def cache_object_store(self) -> str | None:
        """The s3:// URL of the object store that holds body files, if one does."""
        if self.cache_store is not None and self.cache_store.startswith("s3://"):
            return self.cache_store
        return None

    @property
    def cache_shared(self) -> bool:
        """Whether other gateways may be writing into the cache directory right now."""
        return self.cache_store is not None and self.cache_object_store is None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = config_file()
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=toml_file),
        )


def config_file() -> Path:
    """The TOML file settings are read from (it need not exist)."""
    return Path(os.environ.get("GATEWAY_CONFIG") or DEFAULT_CONFIG_FILE)
