-- Attribution: a request's tags (X-Gateway-Tags) and the end user its body names (`user`), kept
-- on its ledger row; each tag also in ledger_tags, indexed, so reports filter and group by one.
ALTER TABLE ledger ADD COLUMN tags TEXT;          -- JSON object, keys sorted
ALTER TABLE ledger ADD COLUMN end_user TEXT;
CREATE INDEX ledger_end_user ON ledger (end_user, created_at) WHERE end_user IS NOT NULL;

CREATE TABLE ledger_tags (
    request_id  TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (request_id, key)
);
CREATE INDEX ledger_tags_value ON ledger_tags (key, value, request_id);
