-- Chargeback: a team's price multiplier (a decimal string; NULL: 1). A ledger row's cost_nanos
-- is what its team is charged (upstream's cost times the multiplier: what budgets, reports and
-- x-gateway-cost-usd use); upstream_cost_nanos what upstream charges. The daily summary keeps
-- both.
ALTER TABLE teams ADD COLUMN price_multiplier TEXT;
ALTER TABLE ledger ADD COLUMN upstream_cost_nanos INTEGER NOT NULL DEFAULT 0;
UPDATE ledger SET upstream_cost_nanos = cost_nanos;
ALTER TABLE usage_daily ADD COLUMN upstream_cost_nanos INTEGER NOT NULL DEFAULT 0;
UPDATE usage_daily SET upstream_cost_nanos = cost_nanos;

DROP TRIGGER ledger_sums_by_day;
CREATE TRIGGER ledger_sums_by_day AFTER INSERT ON ledger
BEGIN
    INSERT INTO usage_daily (day, team_id, key_id, model, outcome, cache_status, requests, images,
        text_input_tokens, cached_text_input_tokens, image_input_tokens,
        cached_image_input_tokens, image_output_tokens, text_output_tokens, cost_nanos,
        saved_nanos, upstream_cost_nanos)
    VALUES (
        NEW.day, NEW.team_id, NEW.key_id, COALESCE(NEW.model, ''), NEW.outcome, NEW.cache_status,
        1, NEW.images, NEW.text_input_tokens, NEW.cached_text_input_tokens,
        NEW.image_input_tokens, NEW.cached_image_input_tokens, NEW.image_output_tokens,
        NEW.text_output_tokens, NEW.cost_nanos, NEW.saved_nanos, NEW.upstream_cost_nanos)
    ON CONFLICT (day, team_id, key_id, model, outcome, cache_status) DO UPDATE SET
        requests = requests + 1,
        images = images + excluded.images,
        text_input_tokens = text_input_tokens + excluded.text_input_tokens,
        cached_text_input_tokens = cached_text_input_tokens + excluded.cached_text_input_tokens,
        image_input_tokens = image_input_tokens + excluded.image_input_tokens,
        cached_image_input_tokens = cached_image_input_tokens + excluded.cached_image_input_tokens,
        image_output_tokens = image_output_tokens + excluded.image_output_tokens,
        text_output_tokens = text_output_tokens + excluded.text_output_tokens,
        cost_nanos = cost_nanos + excluded.cost_nanos,
        saved_nanos = saved_nanos + excluded.saved_nanos,
        upstream_cost_nanos = upstream_cost_nanos + excluded.upstream_cost_nanos;
END;
