-- The Responses API's image tool: each response the gateway relayed, owned by its team (and, for
-- a background one, tracked until it ends and is charged); the ledger keeps both parts of a
-- response's cost.
ALTER TABLE ledger ADD COLUMN response_id TEXT;
ALTER TABLE ledger ADD COLUMN text_model TEXT;
ALTER TABLE ledger ADD COLUMN text_cost_nanos INTEGER;
ALTER TABLE ledger ADD COLUMN image_cost_nanos INTEGER;

CREATE TABLE responses (
    id              TEXT    PRIMARY KEY,           -- upstream's response id
    team_id         INTEGER NOT NULL REFERENCES teams (id),
    key_id          TEXT    NOT NULL,
    request_id      TEXT    NOT NULL,              -- the request that made it (its hold's name)
    created_at      INTEGER NOT NULL,
    background      INTEGER NOT NULL DEFAULT 0,
    status          TEXT    NOT NULL,
    model           TEXT    NOT NULL,              -- the text model
    image_model     TEXT    NOT NULL,
    estimate_nanos  INTEGER NOT NULL DEFAULT 0,
    text_estimate_nanos INTEGER NOT NULL DEFAULT 0, -- the text model's part
    image_each_nanos INTEGER NOT NULL DEFAULT 0,   -- one image's estimate (a cut's charge)
    reservation_id  INTEGER,
    deleted_at      INTEGER,
    settled_at      INTEGER,                       -- a background one: charged
    polled_at       REAL    NOT NULL DEFAULT 0,
    lease_owner     TEXT,
    lease_until     REAL    NOT NULL DEFAULT 0
);
CREATE INDEX responses_pending ON responses (polled_at) WHERE background = 1 AND settled_at IS NULL;
