-- Small bodies live in the index itself. Creating a file costs a syscall that, on some disks,
-- takes more CPU than the rest of a request; SQLite stores a small blob in the row it writes
-- anyway. `data` is the body when it is at most the cache's inline limit, NULL when the body is
-- a file under <data dir>/cache/bodies.
ALTER TABLE cache_bodies ADD COLUMN data BLOB;

-- Storing an entry with its body, in one statement: `INSERT INTO cache_puts (...) VALUES ...`
-- registers each inline body first, then upserts the entry (its triggers do the rest, as
-- before). A body already known keeps what it is (a file stays a file).
CREATE VIEW cache_puts AS
SELECT e.key, e.scope, e.team_id, e.key_id, e.endpoint, e.model, e.stream, e.body_sha256,
       e.content_type, e.headers, e.size, e.images, e.cost_nanos, e.created_at, e.expires_at,
       e.last_hit_at, e.hits, b.data AS body
FROM cache_entries e JOIN cache_bodies b ON b.sha256 = e.body_sha256;

CREATE TRIGGER cache_put INSTEAD OF INSERT ON cache_puts
BEGIN
    INSERT INTO cache_bodies (sha256, size, created_at, data)
    SELECT NEW.body_sha256, NEW.size, NEW.created_at, NEW.body WHERE NEW.body IS NOT NULL
    ON CONFLICT (sha256) DO NOTHING;
    INSERT INTO cache_entries (key, scope, team_id, key_id, endpoint, model, stream,
                               body_sha256, content_type, headers, size, images, cost_nanos,
                               created_at, expires_at, last_hit_at, hits)
    VALUES (NEW.key, NEW.scope, NEW.team_id, NEW.key_id, NEW.endpoint, NEW.model, NEW.stream,
            NEW.body_sha256, NEW.content_type, NEW.headers, NEW.size, NEW.images,
            NEW.cost_nanos, NEW.created_at, NEW.expires_at, NEW.last_hit_at, NEW.hits)
    ON CONFLICT (key) DO UPDATE SET
        scope = excluded.scope, team_id = excluded.team_id, key_id = excluded.key_id,
        endpoint = excluded.endpoint, model = excluded.model, stream = excluded.stream,
        body_sha256 = excluded.body_sha256, content_type = excluded.content_type,
        headers = excluded.headers, size = excluded.size, images = excluded.images,
        cost_nanos = excluded.cost_nanos, created_at = excluded.created_at,
        expires_at = excluded.expires_at, last_hit_at = excluded.last_hit_at,
        hits = excluded.hits;
END;

-- A body that leaves is queued for its file to be removed only when it has one.
DROP TRIGGER cache_entry_frees_body;
CREATE TRIGGER cache_entry_frees_body AFTER DELETE ON cache_entries
WHEN NOT EXISTS (SELECT 1 FROM cache_entries WHERE body_sha256 = OLD.body_sha256)
BEGIN
    INSERT OR IGNORE INTO cache_unused (sha256)
    SELECT sha256 FROM cache_bodies WHERE sha256 = OLD.body_sha256 AND data IS NULL;
    DELETE FROM cache_bodies WHERE sha256 = OLD.body_sha256;
END;

DROP TRIGGER cache_entry_changes_body;
CREATE TRIGGER cache_entry_changes_body AFTER UPDATE OF body_sha256 ON cache_entries
WHEN OLD.body_sha256 <> NEW.body_sha256
    AND NOT EXISTS (SELECT 1 FROM cache_entries WHERE body_sha256 = OLD.body_sha256)
BEGIN
    INSERT OR IGNORE INTO cache_unused (sha256)
    SELECT sha256 FROM cache_bodies WHERE sha256 = OLD.body_sha256 AND data IS NULL;
    DELETE FROM cache_bodies WHERE sha256 = OLD.body_sha256;
END;
