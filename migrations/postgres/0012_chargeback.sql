-- Chargeback (as SQLite's migration 0018): a team's price multiplier; a ledger row's cost_nanos
-- is what its team is charged, upstream_cost_nanos what upstream charges; the daily summary
-- keeps both (grown by _RECORD).
ALTER TABLE teams ADD COLUMN price_multiplier TEXT;
ALTER TABLE ledger ADD COLUMN upstream_cost_nanos BIGINT NOT NULL DEFAULT 0;
UPDATE ledger SET upstream_cost_nanos = cost_nanos;
ALTER TABLE usage_daily ADD COLUMN upstream_cost_nanos BIGINT NOT NULL DEFAULT 0;
UPDATE usage_daily SET upstream_cost_nanos = cost_nanos;
