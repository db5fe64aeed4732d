-- The response cache's index. Bodies are files named by the SHA-256 of their content (under
-- <data dir>/cache/bodies); an identical body is stored once, however many entries point at it.

CREATE TABLE cache_bodies (
    sha256      TEXT    PRIMARY KEY,
    size        INTEGER NOT NULL CHECK (size >= 0),
    created_at  REAL    NOT NULL  -- unix seconds
) WITHOUT ROWID;

-- One entry per request key (which already includes its scope). `team_id` and `key_id` name the
-- request that stored it, so purges by team or key find it whatever the scope.
CREATE TABLE cache_entries (
    key             TEXT    PRIMARY KEY,
    scope           TEXT    NOT NULL,  -- 'team:<id>', 'key:<id>' or 'global'
    team_id         INTEGER NOT NULL,
    key_id          TEXT    NOT NULL,
    endpoint        TEXT    NOT NULL,
    model           TEXT,
    stream          INTEGER NOT NULL,
    body_sha256     TEXT    NOT NULL REFERENCES cache_bodies (sha256),
    content_type    TEXT    NOT NULL,
    headers         TEXT    NOT NULL DEFAULT '{}',  -- JSON object of the headers worth keeping
    size            INTEGER NOT NULL,
    images          INTEGER NOT NULL DEFAULT 0,
    cost_nanos      INTEGER NOT NULL DEFAULT 0,     -- what the original response cost
    created_at      REAL    NOT NULL,
    expires_at      REAL    NOT NULL,
    last_hit_at     REAL    NOT NULL,
    hits            INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX cache_entries_lru ON cache_entries (last_hit_at);
CREATE INDEX cache_entries_expiry ON cache_entries (expires_at);
CREATE INDEX cache_entries_body ON cache_entries (body_sha256);
CREATE INDEX cache_entries_team ON cache_entries (team_id);
CREATE INDEX cache_entries_key ON cache_entries (key_id);

-- Storing an entry registers its body in the same statement.
CREATE TRIGGER cache_entry_registers_body BEFORE INSERT ON cache_entries
BEGIN
    INSERT OR IGNORE INTO cache_bodies (sha256, size, created_at)
    VALUES (NEW.body_sha256, NEW.size, NEW.created_at);
END;
