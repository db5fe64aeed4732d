-- Storing a cache entry must not scan the cache. Triggers keep what a store needs to know:
--   cache_bodies  only the bodies some entry uses (a body no entry uses leaves it at once),
--   cache_usage   their total size, one row,
--   cache_unused  the bodies that left, whose files are still to be removed.
-- So the size check after a store reads one row, and a sweep takes only what is queued.

CREATE TABLE cache_usage (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    bytes  INTEGER NOT NULL CHECK (bytes >= 0)
);

CREATE TABLE cache_unused (
    sha256  TEXT PRIMARY KEY
) WITHOUT ROWID;

INSERT INTO cache_unused (sha256)
SELECT sha256 FROM cache_bodies b
WHERE NOT EXISTS (SELECT 1 FROM cache_entries e WHERE e.body_sha256 = b.sha256);
DELETE FROM cache_bodies WHERE sha256 IN (SELECT sha256 FROM cache_unused);
INSERT INTO cache_usage (id, bytes) SELECT 1, COALESCE(SUM(size), 0) FROM cache_bodies;

CREATE TRIGGER cache_body_counts AFTER INSERT ON cache_bodies
BEGIN
    UPDATE cache_usage SET bytes = bytes + NEW.size WHERE id = 1;
END;

CREATE TRIGGER cache_body_uncounts AFTER DELETE ON cache_bodies
BEGIN
    UPDATE cache_usage SET bytes = bytes - OLD.size WHERE id = 1;
END;

-- An entry's body is registered (and no longer queued for removal) as the entry is written.
DROP TRIGGER cache_entry_registers_body;
CREATE TRIGGER cache_entry_registers_body BEFORE INSERT ON cache_entries
BEGIN
    INSERT OR IGNORE INTO cache_bodies (sha256, size, created_at)
    VALUES (NEW.body_sha256, NEW.size, NEW.created_at);
    DELETE FROM cache_unused WHERE sha256 = NEW.body_sha256;
END;

CREATE TRIGGER cache_entry_frees_body AFTER DELETE ON cache_entries
WHEN NOT EXISTS (SELECT 1 FROM cache_entries WHERE body_sha256 = OLD.body_sha256)
BEGIN
    DELETE FROM cache_bodies WHERE sha256 = OLD.body_sha256;
    INSERT OR IGNORE INTO cache_unused (sha256) VALUES (OLD.body_sha256);
END;

-- An entry written again (an upsert) with another body frees the old one the same way.
CREATE TRIGGER cache_entry_changes_body AFTER UPDATE OF body_sha256 ON cache_entries
WHEN OLD.body_sha256 <> NEW.body_sha256
    AND NOT EXISTS (SELECT 1 FROM cache_entries WHERE body_sha256 = OLD.body_sha256)
BEGIN
    DELETE FROM cache_bodies WHERE sha256 = OLD.body_sha256;
    INSERT OR IGNORE INTO cache_unused (sha256) VALUES (OLD.body_sha256);
END;
