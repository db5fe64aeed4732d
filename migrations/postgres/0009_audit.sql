-- Every change made through the admin API, the console or the CLI: who, what, on what, and the
-- record before and after (never a key's secret or hash).
CREATE TABLE audit (
    id      BIGSERIAL PRIMARY KEY,
    at      TEXT    NOT NULL,        -- ISO 8601, UTC
    actor   TEXT    NOT NULL,        -- admin-api (address), console (session), cli (OS user)
    action  TEXT    NOT NULL,        -- team.create, key.revoke, cache.purge, ...
    target  TEXT    NOT NULL,
    before  TEXT,                    -- JSON
    after   TEXT                     -- JSON
);
CREATE INDEX audit_at ON audit (at);
