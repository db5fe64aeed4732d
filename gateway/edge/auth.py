"""Gateway keys: issued as `sk-gw-…`, stored only as SHA-256 hashes, checked on every request.

Keys are 256 random bits, so a plain SHA-256 is the right hash: nothing to brute-force, and a
lookup by hash stays an index probe.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from gateway.errors import invalid_api_key
from gateway.store import ApiKey, Store, Team

KEY_PREFIX = "sk-gw-"
_SHOWN_PREFIX_LENGTH = len(KEY_PREFIX) + 6


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class IssuedKey:
    """A key just created: `secret` is shown to its owner this once and never stored."""

    record: ApiKey
    secret: str


def new_secret() -> tuple[str, str, str]:
    """A fresh key: (secret, its hash, the prefix shown in listings)."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    return secret, hash_key(secret), secret[:_SHOWN_PREFIX_LENGTH]


async def issue_key(
    store: Store, team: Team, name: str | None = None, **limits: object
) -> IssuedKey:
    secret, key_hash, prefix = new_secret()
    record = await store.create_key(
        key_id="key_" + secrets.token_hex(8),
        team_id=team.id,
        name=name,
        key_hash=key_hash,
        prefix=prefix,
        **limits,
    )
    return IssuedKey(record, secret)


async def rotate_key(store: Store, key: ApiKey) -> IssuedKey | None:
    """A new secret for the same key (id, team, budgets, limits, history); the old secret stops
    working at once. None when the key is revoked (a revoked key stays revoked)."""
    secret, key_hash, prefix = new_secret()
    record = await store.rotate_key(key.id, key_hash=key_hash, prefix=prefix)
    return None if record is None else IssuedKey(record, secret)


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def authenticate(store: Store, authorization: str | None) -> tuple[ApiKey, Team]:
    """The live key and its team for an Authorization header; GatewayError 401 otherwise.

    The messages never echo the presented key, so a key pasted in the wrong place does not end
    up in a log or a client's error report.
    """
    token = bearer_token(authorization)
    if token is None:
        raise invalid_api_key(
            "You didn't provide an API key. Send your gateway key (sk-gw-…) as"
            " 'Authorization: Bearer <key>'."
        )
    found = await store.find_key_by_hash(hash_key(token))
    if found is None:
        raise invalid_api_key("Incorrect API key provided. Use a key issued by this gateway.")
    key, team = found
    if key.revoked:
        raise invalid_api_key(f"API key {key.id} has been revoked.")
    return key, team
