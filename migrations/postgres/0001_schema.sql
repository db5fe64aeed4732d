-- The gateway's schema on PostgreSQL: the same tables, columns and meanings as the SQLite
-- migrations 0001-0008 arrive at (so `gateway db copy` moves rows as they are). Timestamps stay
-- ISO 8601 text (UTC) and unix seconds as in SQLite; money is integer nano-dollars (BIGINT).

CREATE TABLE teams (
    id              BIGSERIAL PRIMARY KEY,
    name            TEXT    NOT NULL UNIQUE,
    budget_nanos    BIGINT  CHECK (budget_nanos IS NULL OR budget_nanos >= 0),
    budget_period   TEXT    NOT NULL DEFAULT 'total'
                    CHECK (budget_period IN ('day', 'week', 'month', 'total')),
    rpm             INTEGER CHECK (rpm IS NULL OR rpm >= 0),
    ipm             INTEGER CHECK (ipm IS NULL OR ipm >= 0),
    created_at      TEXT    NOT NULL,
    deleted_at      TEXT
);

CREATE TABLE api_keys (
    id              TEXT    PRIMARY KEY,
    team_id         BIGINT  NOT NULL REFERENCES teams (id),
    name            TEXT,
    key_hash        TEXT    NOT NULL UNIQUE,
    prefix          TEXT    NOT NULL,
    budget_nanos    BIGINT  CHECK (budget_nanos IS NULL OR budget_nanos >= 0),
    budget_period   TEXT    NOT NULL DEFAULT 'total'
                    CHECK (budget_period IN ('day', 'week', 'month', 'total')),
    rpm             INTEGER CHECK (rpm IS NULL OR rpm >= 0),
    ipm             INTEGER CHECK (ipm IS NULL OR ipm >= 0),
    created_at      TEXT    NOT NULL,
    revoked_at      TEXT
);
CREATE INDEX api_keys_team ON api_keys (team_id);

CREATE TABLE reservations (
    id              BIGSERIAL PRIMARY KEY,
    key_id          TEXT    NOT NULL,
    team_id         BIGINT  NOT NULL,
    amount_nanos    BIGINT  NOT NULL CHECK (amount_nanos >= 0),
    created_at      TEXT    NOT NULL,
    expires_at      DOUBLE PRECISION NOT NULL,  -- unix seconds
    request_id      TEXT,
    owner           TEXT,   -- host:pid of the process holding it
    endpoint        TEXT,
    model           TEXT
);
CREATE INDEX reservations_key ON reservations (key_id, expires_at);
CREATE INDEX reservations_team ON reservations (team_id, expires_at);
CREATE INDEX reservations_request ON reservations (request_id);
CREATE INDEX reservations_expiry ON reservations (expires_at);

CREATE TABLE ledger (
    id                          BIGSERIAL PRIMARY KEY,
    request_id                  TEXT    NOT NULL UNIQUE,
    created_at                  TEXT    NOT NULL,
    day                         TEXT    NOT NULL,
    week                        TEXT    NOT NULL,
    month                       TEXT    NOT NULL,
    key_id                      TEXT    NOT NULL,
    team_id                     BIGINT  NOT NULL,
    endpoint                    TEXT    NOT NULL,
    model                       TEXT,
    size                        TEXT,
    quality                     TEXT,
    n                           INTEGER,
    stream                      INTEGER NOT NULL DEFAULT 0,
    status                      INTEGER NOT NULL,
    outcome                     TEXT    NOT NULL,
    cache_status                TEXT    NOT NULL DEFAULT 'bypass',
    text_input_tokens           BIGINT  NOT NULL DEFAULT 0,
    cached_text_input_tokens    BIGINT  NOT NULL DEFAULT 0,
    image_input_tokens          BIGINT  NOT NULL DEFAULT 0,
    cached_image_input_tokens   BIGINT  NOT NULL DEFAULT 0,
    image_output_tokens         BIGINT  NOT NULL DEFAULT 0,
    text_output_tokens          BIGINT  NOT NULL DEFAULT 0,
    images                      INTEGER NOT NULL DEFAULT 0,
    estimate_nanos              BIGINT  NOT NULL DEFAULT 0,
    cost_nanos                  BIGINT  NOT NULL DEFAULT 0 CHECK (cost_nanos >= 0),
    saved_nanos                 BIGINT  NOT NULL DEFAULT 0,
    latency_ms                  DOUBLE PRECISION,
    upstream_request_id         TEXT,
    price_version               TEXT,
    reservation_id              BIGINT,
    error_code                  TEXT
);
CREATE INDEX ledger_created ON ledger (created_at);
CREATE INDEX ledger_team_created ON ledger (team_id, created_at);
CREATE INDEX ledger_key_created ON ledger (key_id, created_at);

CREATE TABLE spend (
    scope           TEXT    NOT NULL,
    scope_id        TEXT    NOT NULL,
    period          TEXT    NOT NULL,
    spent_nanos     BIGINT  NOT NULL,
    PRIMARY KEY (scope, scope_id, period)
);

-- The cache index. `data` is the body itself when small; NULL: a body file (or object).
CREATE TABLE cache_bodies (
    sha256      TEXT    PRIMARY KEY,
    size        BIGINT  NOT NULL CHECK (size >= 0),
    created_at  DOUBLE PRECISION NOT NULL,
    data        BYTEA
);

CREATE TABLE cache_entries (
    key             TEXT    PRIMARY KEY,
    scope           TEXT    NOT NULL,
    team_id         BIGINT  NOT NULL,
    key_id          TEXT    NOT NULL,
    endpoint        TEXT    NOT NULL,
    model           TEXT,
    stream          BOOLEAN NOT NULL,
    body_sha256     TEXT    NOT NULL REFERENCES cache_bodies (sha256),
    content_type    TEXT    NOT NULL,
    headers         TEXT    NOT NULL DEFAULT '{}',
    size            BIGINT  NOT NULL,
    images          INTEGER NOT NULL DEFAULT 0,
    cost_nanos      BIGINT  NOT NULL DEFAULT 0,
    created_at      DOUBLE PRECISION NOT NULL,
    expires_at      DOUBLE PRECISION NOT NULL,
    last_hit_at     DOUBLE PRECISION NOT NULL,
    hits            BIGINT  NOT NULL DEFAULT 0
);
CREATE INDEX cache_entries_lru ON cache_entries (last_hit_at);
CREATE INDEX cache_entries_expiry ON cache_entries (expires_at);
CREATE INDEX cache_entries_body ON cache_entries (body_sha256);
CREATE INDEX cache_entries_team ON cache_entries (team_id);
CREATE INDEX cache_entries_key ON cache_entries (key_id);

-- The bodies' total size, one row, and the body files still to remove: kept by triggers, so a
-- store reads one row and a sweep takes only what is queued (as in SQLite's migration 0006).
CREATE TABLE cache_usage (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    bytes  BIGINT  NOT NULL CHECK (bytes >= 0)
);
INSERT INTO cache_usage (id, bytes) VALUES (1, 0);

CREATE TABLE cache_unused (
    sha256  TEXT PRIMARY KEY
);

CREATE FUNCTION cache_body_counts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE cache_usage SET bytes = bytes + NEW.size WHERE id = 1;
        DELETE FROM cache_unused WHERE sha256 = NEW.sha256;
    ELSE
        UPDATE cache_usage SET bytes = bytes - OLD.size WHERE id = 1;
        IF OLD.data IS NULL THEN
            INSERT INTO cache_unused (sha256) VALUES (OLD.sha256) ON CONFLICT DO NOTHING;
        END IF;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER cache_body_counts AFTER INSERT OR DELETE ON cache_bodies
    FOR EACH ROW EXECUTE FUNCTION cache_body_counts();

-- A body no entry uses any more leaves, when its last entry leaves or moves to another body.
CREATE FUNCTION cache_entry_frees_body() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.body_sha256 = NEW.body_sha256 THEN
        RETURN NULL;
    END IF;
    DELETE FROM cache_bodies b WHERE b.sha256 = OLD.body_sha256
        AND NOT EXISTS (SELECT 1 FROM cache_entries e WHERE e.body_sha256 = OLD.body_sha256);
    RETURN NULL;
END $$;
CREATE TRIGGER cache_entry_frees_body AFTER DELETE OR UPDATE OF body_sha256 ON cache_entries
    FOR EACH ROW EXECUTE FUNCTION cache_entry_frees_body();
