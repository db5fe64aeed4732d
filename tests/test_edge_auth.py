"""Keys: issued secrets, their hashes (the only form stored), and the bearer header."""

from __future__ import annotations

import hashlib

from gateway.edge.auth import KEY_PREFIX, bearer_token, hash_key, new_secret


def test_a_new_secret_is_stored_only_as_its_hash_and_shown_by_a_short_prefix() -> None:
    secret, key_hash, prefix = new_secret()
    assert secret.startswith(KEY_PREFIX) and len(secret) > 40
    assert key_hash == hashlib.sha256(secret.encode()).hexdigest() == hash_key(secret)
    assert secret.startswith(prefix) and len(prefix) == len(KEY_PREFIX) + 6
    assert new_secret()[0] != secret


def test_the_bearer_token_is_read_from_the_header_only_when_well_formed() -> None:
    assert bearer_token("Bearer sk-gw-abc") == "sk-gw-abc"
    assert bearer_token("bearer   sk-gw-abc  ") == "sk-gw-abc"
    for header in (None, "", "Bearer", "Bearer   ", "Basic abc", "sk-gw-abc"):
        assert bearer_token(header) is None
