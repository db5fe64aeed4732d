-- Teams own keys; both may carry a budget (integer nano-dollars) and rate limits.
CREATE TABLE teams (
    id              INTEGER PRIMARY KEY,
    name            TEXT    NOT NULL UNIQUE,
    budget_nanos    INTEGER CHECK (budget_nanos IS NULL OR budget_nanos >= 0),
    budget_period   TEXT    NOT NULL DEFAULT 'total'
                    CHECK (budget_period IN ('day', 'week', 'month', 'total')),
    rpm             INTEGER CHECK (rpm IS NULL OR rpm >= 0),
    ipm             INTEGER CHECK (ipm IS NULL OR ipm >= 0),
    created_at      TEXT    NOT NULL
);

-- Keys are stored only as SHA-256 hashes; `prefix` is the first characters, for people to
-- recognise a key in listings.
CREATE TABLE api_keys (
    id              TEXT    PRIMARY KEY,
    team_id         INTEGER NOT NULL REFERENCES teams (id),
    name            TEXT,
    key_hash        TEXT    NOT NULL UNIQUE,
    prefix          TEXT    NOT NULL,
    budget_nanos    INTEGER CHECK (budget_nanos IS NULL OR budget_nanos >= 0),
    budget_period   TEXT    NOT NULL DEFAULT 'total'
                    CHECK (budget_period IN ('day', 'week', 'month', 'total')),
    rpm             INTEGER CHECK (rpm IS NULL OR rpm >= 0),
    ipm             INTEGER CHECK (ipm IS NULL OR ipm >= 0),
    created_at      TEXT    NOT NULL,
    revoked_at      TEXT
);

CREATE INDEX api_keys_team ON api_keys (team_id);
