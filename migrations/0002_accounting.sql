-- Accounting: reservations held while a request is in flight, one ledger row per request, and
-- spend counters per scope and budget period that the ledger keeps current by trigger.

-- A reservation holds an estimate against the key's and the team's budgets until its request is
-- settled (its ledger row deletes it) or it expires (a process that died cannot hold it forever).
CREATE TABLE reservations (
    id              INTEGER PRIMARY KEY,
    key_id          TEXT    NOT NULL,
    team_id         INTEGER NOT NULL,
    amount_nanos    INTEGER NOT NULL CHECK (amount_nanos >= 0),
    created_at      TEXT    NOT NULL,
    expires_at      REAL    NOT NULL  -- unix seconds
);
CREATE INDEX reservations_key ON reservations (key_id, expires_at);
CREATE INDEX reservations_team ON reservations (team_id, expires_at);

CREATE TABLE ledger (
    id                          INTEGER PRIMARY KEY,
    request_id                  TEXT    NOT NULL,
    created_at                  TEXT    NOT NULL,  -- ISO 8601, UTC
    day                         TEXT    NOT NULL,  -- UTC calendar periods of created_at:
    week                        TEXT    NOT NULL,  --   2026-11-21, 2026-11-16 (its Monday),
    month                       TEXT    NOT NULL,  --   2026-11
    key_id                      TEXT    NOT NULL,
    team_id                     INTEGER NOT NULL,
    endpoint                    TEXT    NOT NULL,
    model                       TEXT,
    size                        TEXT,
    quality                     TEXT,
    n                           INTEGER,
    stream                      INTEGER NOT NULL DEFAULT 0,
    status                      INTEGER NOT NULL,
    outcome                     TEXT    NOT NULL,  -- ok, refused_budget, refused_rpm, ...
    cache_status                TEXT    NOT NULL DEFAULT 'bypass',
    text_input_tokens           INTEGER NOT NULL DEFAULT 0,
    cached_text_input_tokens    INTEGER NOT NULL DEFAULT 0,
    image_input_tokens          INTEGER NOT NULL DEFAULT 0,
    cached_image_input_tokens   INTEGER NOT NULL DEFAULT 0,
    image_output_tokens         INTEGER NOT NULL DEFAULT 0,
    text_output_tokens          INTEGER NOT NULL DEFAULT 0,
    images                      INTEGER NOT NULL DEFAULT 0,
    estimate_nanos              INTEGER NOT NULL DEFAULT 0,
    cost_nanos                  INTEGER NOT NULL DEFAULT 0 CHECK (cost_nanos >= 0),
    saved_nanos                 INTEGER NOT NULL DEFAULT 0,
    latency_ms                  REAL,
    upstream_request_id         TEXT,
    price_version               TEXT,
    reservation_id              INTEGER
);
CREATE INDEX ledger_created ON ledger (created_at);
CREATE INDEX ledger_team_created ON ledger (team_id, created_at);
CREATE INDEX ledger_key_created ON ledger (key_id, created_at);

-- Spend per scope ('team' or 'key') and period ('total', 'day:2026-11-21', 'week:2026-11-16',
-- 'month:2026-11'). Every period is kept, so changing a budget's period takes effect at once.
CREATE TABLE spend (
    scope           TEXT    NOT NULL,
    scope_id        TEXT    NOT NULL,
    period          TEXT    NOT NULL,
    spent_nanos     INTEGER NOT NULL,
    PRIMARY KEY (scope, scope_id, period)
) WITHOUT ROWID;

-- Writing a ledger row settles its request in the same statement: the reservation goes and the
-- spend counters grow, atomically.
CREATE TRIGGER ledger_settles AFTER INSERT ON ledger
BEGIN
    DELETE FROM reservations WHERE id = NEW.reservation_id;
    INSERT INTO spend (scope, scope_id, period, spent_nanos)
    SELECT scope, scope_id, period, NEW.cost_nanos FROM (
        SELECT 'team' AS scope, CAST(NEW.team_id AS TEXT) AS scope_id, 'total' AS period
        UNION ALL SELECT 'team', CAST(NEW.team_id AS TEXT), 'day:' || NEW.day
        UNION ALL SELECT 'team', CAST(NEW.team_id AS TEXT), 'week:' || NEW.week
        UNION ALL SELECT 'team', CAST(NEW.team_id AS TEXT), 'month:' || NEW.month
        UNION ALL SELECT 'key', NEW.key_id, 'total'
        UNION ALL SELECT 'key', NEW.key_id, 'day:' || NEW.day
        UNION ALL SELECT 'key', NEW.key_id, 'week:' || NEW.week
        UNION ALL SELECT 'key', NEW.key_id, 'month:' || NEW.month
    ) WHERE NEW.cost_nanos > 0
    ON CONFLICT (scope, scope_id, period) DO UPDATE SET spent_nanos = spent_nanos + excluded.spent_nanos;
END;
