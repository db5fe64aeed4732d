-- Usage reports over whole days read a summary instead of the ledger (as SQLite's migration
-- 0010): one row per day, team, key, model, outcome and cache status with the ledger's sums,
-- grown by the statement that writes each ledger row (gateway/store/postgres.py, _RECORD).
-- (`model` is '' where the ledger's is NULL.)
CREATE TABLE usage_daily (
    day                         TEXT    NOT NULL,
    team_id                     BIGINT  NOT NULL,
    key_id                      TEXT    NOT NULL,
    model                       TEXT    NOT NULL,
    outcome                     TEXT    NOT NULL,
    cache_status                TEXT    NOT NULL,
    requests                    BIGINT  NOT NULL,
    images                      BIGINT  NOT NULL,
    text_input_tokens           BIGINT  NOT NULL,
    cached_text_input_tokens    BIGINT  NOT NULL,
    image_input_tokens          BIGINT  NOT NULL,
    cached_image_input_tokens   BIGINT  NOT NULL,
    image_output_tokens         BIGINT  NOT NULL,
    text_output_tokens          BIGINT  NOT NULL,
    cost_nanos                  BIGINT  NOT NULL,
    saved_nanos                 BIGINT  NOT NULL,
    PRIMARY KEY (day, team_id, key_id, model, outcome, cache_status)
);
CREATE INDEX usage_daily_team ON usage_daily (team_id, cache_status);

INSERT INTO usage_daily
SELECT day, team_id, key_id, COALESCE(model, ''), outcome, cache_status, COUNT(*), SUM(images),
       SUM(text_input_tokens), SUM(cached_text_input_tokens), SUM(image_input_tokens),
       SUM(cached_image_input_tokens), SUM(image_output_tokens), SUM(text_output_tokens),
       SUM(cost_nanos), SUM(saved_nanos)
FROM ledger GROUP BY day, team_id, key_id, COALESCE(model, ''), outcome, cache_status;
