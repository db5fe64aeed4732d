-- The Responses API's image tool: each response the gateway relayed, owned by its team (and, for
-- a background one, tracked until it ends and is charged); the ledger keeps both parts of a
-- response's cost.
ALTER TABLE ledger ADD COLUMN response_id TEXT;
ALTER TABLE ledger ADD COLUMN text_model TEXT;
ALTER TABLE ledger ADD COLUMN text_cost_nanos BIGINT;
ALTER TABLE ledger ADD COLUMN image_cost_nanos BIGINT;

CREATE TABLE responses (
    id              TEXT    PRIMARY KEY,           -- upstream's response id
    team_id         BIGINT  NOT NULL REFERENCES teams (id),
    key_id          TEXT    NOT NULL,
    request_id      TEXT    NOT NULL,              -- the request that made it (its hold's name)
    created_at      BIGINT  NOT NULL,
    background      INTEGER NOT NULL DEFAULT 0,
    status          TEXT    NOT NULL,
    model           TEXT    NOT NULL,              -- the text model
    image_model     TEXT    NOT NULL,
    estimate_nanos  BIGINT  NOT NULL DEFAULT 0,
    text_estimate_nanos BIGINT  NOT NULL DEFAULT 0, -- the text model's part
    image_each_nanos BIGINT  NOT NULL DEFAULT 0,   -- one image's estimate (a cut's charge)
    reservation_id  BIGINT ,
    deleted_at      BIGINT ,
    settled_at      BIGINT ,                       -- a background one: charged
    polled_at       DOUBLE PRECISION    NOT NULL DEFAULT 0,
    lease_owner     TEXT,
    lease_until     DOUBLE PRECISION    NOT NULL DEFAULT 0
);
CREATE INDEX responses_pending ON responses (polled_at) WHERE background = 1 AND settled_at IS NULL;
