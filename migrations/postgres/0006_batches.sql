-- The Batch API: files a team uploaded (checked line by line), their lines' estimates and cache
-- keys, and batches with the hold they keep until they are settled, line by line, in the ledger.
ALTER TABLE ledger ADD COLUMN batch_id TEXT;
ALTER TABLE ledger ADD COLUMN custom_id TEXT;
CREATE INDEX ledger_batch ON ledger (batch_id) WHERE batch_id IS NOT NULL;

CREATE TABLE batch_files (
    id              TEXT    PRIMARY KEY,           -- upstream's file id
    team_id         BIGINT  NOT NULL REFERENCES teams (id),
    key_id          TEXT    NOT NULL,
    purpose         TEXT    NOT NULL,
    filename        TEXT    NOT NULL,
    bytes           BIGINT  NOT NULL,
    created_at      BIGINT  NOT NULL,              -- unix seconds
    endpoint        TEXT,                          -- an input file's image endpoint
    lines           INTEGER NOT NULL DEFAULT 0,
    estimate_nanos  BIGINT  NOT NULL DEFAULT 0,    -- the sum of its lines' (batch prices)
    deleted_at      BIGINT 
);
CREATE INDEX batch_files_team ON batch_files (team_id, created_at);

CREATE TABLE batch_lines (
    file_id         TEXT    NOT NULL,
    line            INTEGER NOT NULL,              -- from 1
    custom_id       TEXT    NOT NULL,
    model           TEXT    NOT NULL,
    size            TEXT,
    quality         TEXT,
    cache_key       TEXT,                          -- as an identical online request's
    estimate_nanos  BIGINT  NOT NULL,
    PRIMARY KEY (file_id, line)
);

CREATE TABLE batches (
    id               TEXT    PRIMARY KEY,          -- the gateway's: batch_gw_…
    upstream_id      TEXT,                         -- NULL: every line came from the cache
    team_id          BIGINT  NOT NULL REFERENCES teams (id),
    key_id           TEXT    NOT NULL,
    input_file_id    TEXT    NOT NULL,
    endpoint         TEXT    NOT NULL,
    created_at       BIGINT  NOT NULL,
    lines            INTEGER NOT NULL,
    cached_lines     INTEGER NOT NULL DEFAULT 0,
    cached_file_id   TEXT,                         -- upstream file: the cached lines' answers
    cache_write      INTEGER NOT NULL DEFAULT 1,
    held_nanos       BIGINT  NOT NULL,
    reservation_id   BIGINT ,
    metadata         TEXT,
    status           TEXT    NOT NULL,             -- upstream's last word (or ours)
    upstream         TEXT,                         -- upstream's last batch object, JSON
    output_file_id   TEXT,
    error_file_id    TEXT,
    completed_lines  INTEGER NOT NULL DEFAULT 0,
    failed_lines     INTEGER NOT NULL DEFAULT 0,
    charged_nanos    BIGINT  NOT NULL DEFAULT 0,
    saved_nanos      BIGINT  NOT NULL DEFAULT 0,
    settled_at       BIGINT ,
    polled_at        DOUBLE PRECISION    NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_until      DOUBLE PRECISION    NOT NULL DEFAULT 0
);
CREATE INDEX batches_team ON batches (team_id, created_at);
CREATE INDEX batches_open ON batches (polled_at) WHERE settled_at IS NULL;
