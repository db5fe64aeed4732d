-- Each serving process writes its heartbeat here every housekeeping round, so a replica on
-- another host can tell that the owner of a hold has died (gateway/heartbeats.py).
CREATE TABLE heartbeats (
    owner   TEXT PRIMARY KEY,         -- host:pid:start, as on its holds
    seen_at DOUBLE PRECISION NOT NULL -- unix seconds
);
