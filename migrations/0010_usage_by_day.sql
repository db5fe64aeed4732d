-- Usage reports over whole days read a summary instead of the ledger: one row per day, team,
-- key, model, outcome and cache status with the ledger's sums, kept by trigger as each ledger
-- row is written (in the same statement), so it is always exactly the ledger's sums. Its size
-- grows with days x keys x variety, not with requests: a month of a busy gateway is thousands
-- of rows where the ledger holds millions. (`model` is '' where the ledger's is NULL.)
CREATE TABLE usage_daily (
    day                         TEXT    NOT NULL,
    team_id                     INTEGER NOT NULL,
    key_id                      TEXT    NOT NULL,
    model                       TEXT    NOT NULL,
    outcome                     TEXT    NOT NULL,
    cache_status                TEXT    NOT NULL,
    requests                    INTEGER NOT NULL,
    images                      INTEGER NOT NULL,
    text_input_tokens           INTEGER NOT NULL,
    cached_text_input_tokens    INTEGER NOT NULL,
    image_input_tokens          INTEGER NOT NULL,
    cached_image_input_tokens   INTEGER NOT NULL,
    image_output_tokens         INTEGER NOT NULL,
    text_output_tokens          INTEGER NOT NULL,
    cost_nanos                  INTEGER NOT NULL,
    saved_nanos                 INTEGER NOT NULL,
    PRIMARY KEY (day, team_id, key_id, model, outcome, cache_status)
) WITHOUT ROWID;
CREATE INDEX usage_daily_team ON usage_daily (team_id, cache_status);

INSERT INTO usage_daily
SELECT day, team_id, key_id, COALESCE(model, ''), outcome, cache_status, COUNT(*), SUM(images),
       SUM(text_input_tokens), SUM(cached_text_input_tokens), SUM(image_input_tokens),
       SUM(cached_image_input_tokens), SUM(image_output_tokens), SUM(text_output_tokens),
       SUM(cost_nanos), SUM(saved_nanos)
FROM ledger GROUP BY day, team_id, key_id, COALESCE(model, ''), outcome, cache_status;

CREATE TRIGGER ledger_sums_by_day AFTER INSERT ON ledger
BEGIN
    INSERT INTO usage_daily VALUES (
        NEW.day, NEW.team_id, NEW.key_id, COALESCE(NEW.model, ''), NEW.outcome, NEW.cache_status,
        1, NEW.images, NEW.text_input_tokens, NEW.cached_text_input_tokens,
        NEW.image_input_tokens, NEW.cached_image_input_tokens, NEW.image_output_tokens,
        NEW.text_output_tokens, NEW.cost_nanos, NEW.saved_nanos)
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
        saved_nanos = saved_nanos + excluded.saved_nanos;
END;
