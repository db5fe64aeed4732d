-- Every hold is settled by a ledger row, whatever becomes of its request.
-- A reservation knows its request and the process that holds it: the request's ledger row
-- settles it even when the hold was made after the client left, and a hold whose process died
-- becomes a row of its own (outcome `orphaned`, charged its estimate).
ALTER TABLE reservations ADD COLUMN request_id TEXT;
ALTER TABLE reservations ADD COLUMN owner TEXT;       -- host:pid of the process holding it
ALTER TABLE reservations ADD COLUMN endpoint TEXT;
ALTER TABLE reservations ADD COLUMN model TEXT;
CREATE INDEX reservations_request ON reservations (request_id);
CREATE INDEX reservations_expiry ON reservations (expires_at);

-- One row per request: a row replayed from the journal, or an orphan settled twice, is a no-op.
CREATE UNIQUE INDEX ledger_request ON ledger (request_id);

DROP TRIGGER ledger_settles;
CREATE TRIGGER ledger_settles AFTER INSERT ON ledger
BEGIN
    DELETE FROM reservations WHERE id = NEW.reservation_id OR request_id = NEW.request_id;
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
