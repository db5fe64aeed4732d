-- The reservation in one round trip: a function whose statements each see what committed before
-- them (PL/pgSQL, READ COMMITTED), called as one statement. It locks the key's row, then the
-- team's (every reservation locks in this order, so none waits on another in a cycle), and only
-- then reads what is spent and held, so two reservations on one budget never both pass.
CREATE FUNCTION gateway_reserve(
    p_key_id TEXT, p_team_id BIGINT, p_amount BIGINT, p_created_at TEXT,
    p_expires_at DOUBLE PRECISION, p_now DOUBLE PRECISION, p_request_id TEXT, p_owner TEXT,
    p_endpoint TEXT, p_model TEXT, p_day TEXT, p_week TEXT, p_month TEXT
) RETURNS BIGINT LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    held BIGINT;
BEGIN
    PERFORM 1 FROM api_keys WHERE id = p_key_id FOR UPDATE;
    PERFORM 1 FROM teams WHERE id = p_team_id FOR UPDATE;
    INSERT INTO reservations
        (key_id, team_id, amount_nanos, created_at, expires_at, request_id, owner, endpoint, model)
    SELECT p_key_id, p_team_id, p_amount, p_created_at, p_expires_at, p_request_id, p_owner,
           p_endpoint, p_model
    FROM api_keys k JOIN teams t ON t.id = k.team_id
    WHERE k.id = p_key_id
      AND (k.budget_nanos IS NULL OR
           COALESCE((SELECT spent_nanos FROM spend WHERE scope = 'key' AND scope_id = p_key_id
                     AND period = CASE k.budget_period WHEN 'total' THEN 'total'
                         WHEN 'day' THEN p_day WHEN 'week' THEN p_week ELSE p_month END), 0)
           + COALESCE((SELECT SUM(amount_nanos) FROM reservations
                       WHERE key_id = p_key_id AND expires_at > p_now), 0)
           + p_amount <= k.budget_nanos)
      AND (t.budget_nanos IS NULL OR
           COALESCE((SELECT spent_nanos FROM spend WHERE scope = 'team'
                     AND scope_id = p_team_id::text
                     AND period = CASE t.budget_period WHEN 'total' THEN 'total'
                         WHEN 'day' THEN p_day WHEN 'week' THEN p_week ELSE p_month END), 0)
           + COALESCE((SELECT SUM(amount_nanos) FROM reservations
                       WHERE team_id = p_team_id AND expires_at > p_now), 0)
           + p_amount <= t.budget_nanos)
    RETURNING id INTO held;
    RETURN held;
END $$;
