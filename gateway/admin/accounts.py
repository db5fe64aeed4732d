"""Teams and keys as people manage them: input models, operations and their JSON view.

The admin API and the CLI both call these functions, so the two can never disagree about what a
valid budget is or how a key is shown.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from gateway.accounting.chargeback import MAX_MULTIPLIER, multiplier
from gateway.accounting.periods import Periods, next_reset
from gateway.accounting.policy import FIELDS as POLICY
from gateway.accounting.policy import merged, read_policy
from gateway.admin import audit
from gateway.alerts.thresholds import thresholds_of
from gateway.edge.auth import IssuedKey, issue_key
from gateway.edge.auth import rotate_key as rotate_secret
from gateway.edge.params import is_valid_unicode
from gateway.money import nanos_to_usd, usd_to_nanos
from gateway.store import ApiKey, Store, Team
from gateway.store.base import Spend

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
BudgetPeriod = Literal["day", "week", "month", "total"]
# The largest budget and limits: a budget in nano-dollars, and every count, fit the store's
# 64-bit integers with room to add.
MAX_BUDGET_USD = Decimal(10**9)
MAX_RATE = 10**9


def _storable_text(value: str) -> str:
    if not is_valid_unicode(value):
        raise ValueError("must be valid Unicode text (no lone surrogates)")
    return value


# Text that goes into the store: a lone surrogate would fail there, after the fact.
Text = Annotated[str, AfterValidator(_storable_text)]


class NotFound(Exception):
    """The named team or key does not exist."""


class Limits(BaseModel):
    """Budget and rate limits; on PATCH only the fields present change (null clears one)."""

    model_config = ConfigDict(extra="forbid")

    budget_usd: Decimal | None = Field(default=None, ge=0, le=MAX_BUDGET_USD, allow_inf_nan=False)
    budget_period: BudgetPeriod | None = None
    rpm: int | None = Field(default=None, ge=0, le=MAX_RATE)
    ipm: int | None = Field(default=None, ge=0, le=MAX_RATE)
    # Policy (accounting/policy.py): what the key's or team's requests may ask for.
    allowed_models: list[Text] | None = Field(default=None, max_length=200)
    allowed_qualities: list[Text] | None = Field(default=None, max_length=20)
    max_n: int | None = Field(default=None, ge=1, le=MAX_RATE)
    max_pixels: int | None = Field(default=None, ge=1, le=MAX_RATE)
    max_frame_count: int | None = Field(default=None, ge=1, le=MAX_RATE)
    max_partial_images: int | None = Field(default=None, ge=0, le=MAX_RATE)
    # Budget alerts (alerts/): fractions of the budget that send an event when reached.
    alert_thresholds: list[Decimal] | None = Field(default=None, max_length=10)

    @field_validator("alert_thresholds")
    @classmethod
    def _fractions(cls, value: list[Decimal] | None) -> list[Decimal] | None:
        if value is not None and any(not 0 < v <= 10 for v in value):
            raise ValueError("each alert threshold is a fraction of the budget, above 0")
        return value

    @field_validator("budget_usd")
    @classmethod
    def _at_most_nano_precision(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and value.as_tuple().exponent < -9:  # type: ignore[operator]
            raise ValueError("budget_usd has more than 9 decimal places")
        return value

    def store_changes(self, policy: str | None = None) -> dict[str, Any]:
        """The fields that were given, as store columns; policy fields merged into `policy`
        (the current one)."""
        changes: dict[str, Any] = {}
        given = {name: getattr(self, name) for name in self.model_fields_set & set(POLICY)}
        if given:
            changes["policy"] = merged(policy, given)
        if "alert_thresholds" in self.model_fields_set:
            thresholds = self.alert_thresholds
            changes["alert_thresholds"] = (
                None if thresholds is None else json.dumps(sorted(str(t) for t in thresholds))
            )
        for name in self.model_fields_set & {"budget_usd", "budget_period", "rpm", "ipm"}:
            value = getattr(self, name)
            if name == "budget_usd":
                changes["budget_nanos"] = None if value is None else usd_to_nanos(value)
            elif name == "budget_period":
                changes["budget_period"] = value or "total"
            else:
                changes[name] = value
        return changes


class TeamLimits(Limits):
    """A team's limits, and its price multiplier (chargeback.py; null: 1)."""

    price_multiplier: Decimal | None = Field(
        default=None, ge=0, le=MAX_MULTIPLIER, allow_inf_nan=False
    )

    @field_validator("price_multiplier")
    @classmethod
    def _at_most_six_places(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and value.as_tuple().exponent < -6:  # type: ignore[operator]
            raise ValueError("price_multiplier has more than 6 decimal places")
        return value

    def store_changes(self, policy: str | None = None) -> dict[str, Any]:
        changes = super().store_changes(policy)
        if "price_multiplier" in self.model_fields_set:
            value = self.price_multiplier
            changes["price_multiplier"] = None if value is None else f"{value.normalize():f}"
        return changes


class TeamCreate(TeamLimits):
    name: str = Field(pattern=NAME_PATTERN)


class KeyCreate(Limits):
    team: Text
    name: Text | None = Field(default=None, max_length=200)


class KeyPatch(Limits):
    name: Text | None = Field(default=None, max_length=200)

    def store_changes(self, policy: str | None = None) -> dict[str, Any]:
        changes = super().store_changes(policy)
        if "name" in self.model_fields_set:
            changes["name"] = self.name
        return changes


def _thresholds(text: str | None) -> list[str]:
    return [str(t) for t in thresholds_of(text)]


def _money(nanos: int | None) -> str | None:
    return None if nanos is None else nanos_to_usd(nanos)


def spend_view(spend: Spend) -> dict[str, Any]:
    """Spent and held in the budget's current period, and what remains (None: no budget)."""
    return {
        "spent_usd": nanos_to_usd(spend.spent_nanos),
        "reserved_usd": nanos_to_usd(spend.reserved_nanos),
        "remaining_usd": _money(spend.remaining_nanos),
    }


async def scope_spend(store: Store, scope: str, scope_id: str) -> Spend:
    now = dt.datetime.now(dt.UTC)
    return await store.spend(scope, scope_id, Periods.at(now), now.timestamp())


def team_view(team: Team, spend: Spend) -> dict[str, Any]:
    return {
        **team_record(team),
        "alert_thresholds": _thresholds(team.alert_thresholds),
        "created_at": team.created_at,
        **spend_view(spend),
    }


async def team_view_now(store: Store, team: Team) -> dict[str, Any]:
    return team_view(team, await scope_spend(store, "team", str(team.id)))


async def key_view_now(store: Store, key: ApiKey) -> dict[str, Any]:
    return key_view(key, await scope_spend(store, "key", key.id))


def key_view(key: ApiKey, spend: Spend) -> dict[str, Any]:
    return {
        **key_record(key),
        "alert_thresholds": _thresholds(key.alert_thresholds),
        "created_at": key.created_at,
        "revoked_at": key.revoked_at,
        **spend_view(spend),
    }


def renews_at(budget_period: str, now: dt.datetime) -> str | None:
    """When a budget with this period starts afresh (ISO 8601, UTC); None for `total`."""
    reset = next_reset(budget_period, now)
    return None if reset is None else reset.isoformat().replace("+00:00", "Z")


async def own_standing(store: Store, key: ApiKey, team: Team) -> dict[str, Any]:
    """What a key holder may see of their own key and its team: budgets, spend, what is held
    and left, limits, and when each budget renews. No other key, no admin detail."""
    now = dt.datetime.now(dt.UTC)
    key_view = await key_view_now(store, key)
    team_view = await team_view_now(store, team)
    return {
        "key": {
            **{k: key_view[k] for k in ("id", "name", "prefix", "created_at")},
            **_standing(key_view, now),
        },
        "team": {"name": team_view["name"], **_standing(team_view, now)},
    }


def _standing(view: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    fields = ("budget_usd", "budget_period", "spent_usd", "reserved_usd", "remaining_usd")
    return {
        **{k: view[k] for k in (*fields, "rpm", "ipm", "policy")},
        "renews_at": renews_at(view["budget_period"], now) if view["budget_usd"] else None,
    }


def team_record(team: Team) -> dict[str, Any]:
    """A team as the audit trail keeps it."""
    return {
        "name": team.name,
        "budget_usd": _money(team.budget_nanos),
        "budget_period": team.budget_period,
        "rpm": team.rpm,
        "ipm": team.ipm,
        "policy": read_policy(team.policy),
        "price_multiplier": f"{multiplier(team).normalize():f}",
    }


def key_record(key: ApiKey) -> dict[str, Any]:
    """A key as the audit trail keeps it: never its secret, nor its hash."""
    return {
        "id": key.id,
        "team": key.team_name,
        "name": key.name,
        "prefix": key.prefix,
        "budget_usd": _money(key.budget_nanos),
        "budget_period": key.budget_period,
        "rpm": key.rpm,
        "ipm": key.ipm,
        "policy": read_policy(key.policy),
        "revoked": key.revoked,
    }


async def create_team(store: Store, spec: TeamCreate, *, actor: str = audit.SYSTEM) -> Team:
    team = await store.create_team(spec.name, **spec.store_changes())
    await audit.record(store, actor, "team.create", team.name, None, team_record(team))
    return team


async def get_team(store: Store, name: str) -> Team:
    team = await store.get_team(name)
    if team is None:
        raise NotFound(f"No team named {name!r}.")
    return team


async def update_team(
    store: Store, name: str, changes: TeamLimits, *, actor: str = audit.SYSTEM
) -> Team:
    current = await get_team(store, name)
    team = await store.update_team(name, **changes.store_changes(current.policy))
    if team is None:
        raise NotFound(f"No team named {name!r}.")
    await audit.record(store, actor, "team.update", name, team_record(current), team_record(team))
    return team


async def create_key(store: Store, spec: KeyCreate, *, actor: str = audit.SYSTEM) -> IssuedKey:
    team = await get_team(store, spec.team)
    issued = await issue_key(store, team, spec.name, **spec.store_changes())
    record = key_record(issued.record)
    await audit.record(store, actor, "key.create", issued.record.id, None, record)
    return issued


async def get_key(store: Store, key_id: str) -> ApiKey:
    key = await store.get_key(key_id)
    if key is None:
        raise NotFound(f"No key with id {key_id!r}.")
    return key


async def list_keys(store: Store, team_name: str | None = None) -> list[ApiKey]:
    team_id = (await get_team(store, team_name)).id if team_name else None
    return await store.list_keys(team_id)


async def update_key(
    store: Store, key_id: str, changes: KeyPatch, *, actor: str = audit.SYSTEM
) -> ApiKey:
    current = await get_key(store, key_id)
    key = await store.update_key(key_id, **changes.store_changes(current.policy))
    assert key is not None
    await audit.record(store, actor, "key.update", key_id, key_record(current), key_record(key))
    return key


async def purge_cache(
    store: Store, cache: Any, *, team: str | None, key: str | None, actor: str = audit.SYSTEM
) -> int:
    """Drop a team's or a key's cache entries (every entry with neither); how many went."""
    purged: int = await cache.purge_for(team=team, key=key)
    target = f"team:{team}" if team else f"key:{key}" if key else "all"
    await audit.record(store, actor, "cache.purge", target, None, {"purged": purged})
    return purged


class HasLiveKeys(Exception):
    """The team still has keys in use: deleting it would cut them off."""


async def delete_team(
    store: Store, name: str, *, force: bool = False, actor: str = audit.SYSTEM
) -> int:
    """Delete a team (its ledger rows stay); refused while it has live keys unless `force`, which
    revokes them. How many keys were revoked."""
    team = await get_team(store, name)
    live = [key for key in await store.list_keys(team.id) if not key.revoked]
    if live and not force:
        raise HasLiveKeys(
            f"Team {name!r} has {len(live)} live key(s); revoke them first, or delete with force"
            " (which revokes them)."
        )
    revoked = await store.delete_team(name)
    await audit.record(
        store, actor, "team.delete", name, team_record(team), {"revoked_keys": revoked or 0}
    )
    return revoked or 0


class Revoked(Exception):
    """The key is revoked: it cannot be given a new secret."""


async def rotate_key(store: Store, key_id: str, *, actor: str = audit.SYSTEM) -> IssuedKey:
    """A new secret for the key, same id, budgets and history; the old secret stops working."""
    key = await get_key(store, key_id)
    issued = await rotate_secret(store, key)
    if issued is None:
        raise Revoked(f"Key {key_id!r} is revoked; issue a new key instead.")
    await audit.record(
        store, actor, "key.rotate", key_id, key_record(key), key_record(issued.record)
    )
    return issued


async def revoke_key(store: Store, key_id: str, *, actor: str = audit.SYSTEM) -> ApiKey:
    current = await get_key(store, key_id)
    key = await store.revoke_key(key_id)
    assert key is not None
    await audit.record(store, actor, "key.revoke", key_id, key_record(current), key_record(key))
    return key
