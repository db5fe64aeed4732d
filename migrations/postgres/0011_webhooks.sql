-- Budget alerts by webhook: teams and keys take alert thresholds (fractions of their budget;
-- NULL: the default, 0.8 and 1.0); crossing one queues one event per threshold per budget
-- period in a durable outbox, delivered to every subscribed webhook until a 2xx or 24 hours.
ALTER TABLE teams ADD COLUMN alert_thresholds TEXT;     -- JSON list
ALTER TABLE api_keys ADD COLUMN alert_thresholds TEXT;

CREATE TABLE webhooks (
    id          TEXT    PRIMARY KEY,
    url         TEXT    NOT NULL,
    events      TEXT,                   -- JSON list of event types; NULL: every type
    secret      TEXT    NOT NULL,       -- signs each delivery (HMAC-SHA256)
    created_at  TEXT    NOT NULL,
    deleted_at  TEXT
);

CREATE TABLE webhook_events (
    id          TEXT    PRIMARY KEY,    -- evt_…: X-Gateway-Event-Id
    type        TEXT    NOT NULL,
    body        TEXT    NOT NULL,       -- the JSON delivered, byte for byte
    dedupe      TEXT    NOT NULL UNIQUE, -- scope, period and threshold: once each
    created_at  DOUBLE PRECISION    NOT NULL
);

CREATE TABLE webhook_deliveries (
    event_id    TEXT    NOT NULL,
    webhook_id  TEXT    NOT NULL,
    status      TEXT    NOT NULL,       -- pending, delivered, gave_up
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     DOUBLE PRECISION    NOT NULL,
    last_status INTEGER,
    last_error  TEXT,
    delivered_at DOUBLE PRECISION,
    lease_owner TEXT,
    lease_until DOUBLE PRECISION    NOT NULL DEFAULT 0,
    PRIMARY KEY (event_id, webhook_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at) WHERE status = 'pending';
