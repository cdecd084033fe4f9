-- Point-in-time features: THE definition (tx_features), used for the training set (history) and for
-- scoring new stream transactions. Every window is relative to the transaction's own tx_datetime.
--
-- Redshift has no RANGE window frames, and a range self-join on 1.75M rows is quadratic per card.
-- So a window (t - n days, t] is computed as the difference of two running sums (ROWS UNBOUNDED
-- PRECEDING) read at "probe" rows placed at t and at t - n days in the same ordered partition:
-- O(N log N), exact for counts and decimal amounts. Ties keep the handbook's (pandas') order: rows at
-- the same second count up to the transaction itself (by transaction_id); a lower bound excludes
-- every row at its second. Work is restricted to the customers and terminals of feature_targets and
-- to the time span their windows reach, so a scoring pass of a few thousand transactions stays small.

-- One row per stream transaction id: the first copy received wins (Kinesis delivers at least once).
CREATE OR REPLACE VIEW stream_transactions AS
SELECT transaction_id, tx_datetime, customer_id, terminal_id, tx_amount, tx_time_seconds, tx_time_days,
       produced_at, approximate_arrival_timestamp, refresh_time
FROM (
    SELECT s.*,
           ROW_NUMBER() OVER (PARTITION BY transaction_id
                              ORDER BY approximate_arrival_timestamp, sequence_number) AS copy_number
    FROM cust_payment_tx_stream s
    WHERE transaction_id IS NOT NULL AND tx_datetime IS NOT NULL AND customer_id IS NOT NULL
      AND terminal_id IS NOT NULL AND tx_amount IS NOT NULL
) numbered
WHERE copy_number = 1;

-- The latest label received per transaction id (a chargeback can be corrected).
CREATE OR REPLACE VIEW stream_labels AS
SELECT transaction_id, tx_fraud, labelled_at
FROM (
    SELECT l.*,
           ROW_NUMBER() OVER (PARTITION BY transaction_id
                              ORDER BY approximate_arrival_timestamp DESC, sequence_number DESC) AS recency
    FROM cust_payment_label_stream l
    WHERE transaction_id IS NOT NULL AND tx_fraud IN (0, 1)
) numbered
WHERE recency = 1;

-- Every known transaction with its label when known (NULL: not labelled yet). A stream row whose id
-- is already in the history is the history's.
CREATE OR REPLACE VIEW tx_events AS
SELECT transaction_id, tx_datetime, customer_id, terminal_id, tx_amount, tx_fraud,
       'history'::varchar(8) AS source
FROM cust_payment_tx_history
UNION ALL
SELECT s.transaction_id, s.tx_datetime, s.customer_id, s.terminal_id, s.tx_amount, l.tx_fraud,
       'stream'::varchar(8) AS source
FROM stream_transactions s
LEFT JOIN stream_labels l ON l.transaction_id = s.transaction_id
WHERE NOT EXISTS (SELECT 1 FROM cust_payment_tx_history h WHERE h.transaction_id = s.transaction_id);

-- Features of history transactions, kept once computed (the training material).
CREATE TABLE IF NOT EXISTS history_features (
    transaction_id bigint NOT NULL,
    tx_datetime timestamp NOT NULL,
    customer_id integer NOT NULL,
    terminal_id integer NOT NULL,
    tx_amount decimal(18, 2) NOT NULL,
    tx_fraud integer,
    source varchar(8) NOT NULL,
    tx_during_weekend integer NOT NULL,
    tx_during_night integer NOT NULL,
    customer_id_nb_tx_1day_window float8 NOT NULL,
    customer_id_avg_amount_1day_window float8 NOT NULL,
    customer_id_nb_tx_7day_window float8 NOT NULL,
    customer_id_avg_amount_7day_window float8 NOT NULL,
    customer_id_nb_tx_30day_window float8 NOT NULL,
    customer_id_avg_amount_30day_window float8 NOT NULL,
    terminal_id_nb_tx_1day_window float8 NOT NULL,
    terminal_id_risk_1day_window float8 NOT NULL,
    terminal_id_nb_tx_7day_window float8 NOT NULL,
    terminal_id_risk_7day_window float8 NOT NULL,
    terminal_id_nb_tx_30day_window float8 NOT NULL,
    terminal_id_risk_30day_window float8 NOT NULL,
    customer_id_nb_tx_baseline_window float8 NOT NULL,
    customer_id_avg_amount_baseline_window float8 NOT NULL,
    amount_to_baseline_ratio float8 NOT NULL,
    customer_avg_amount_14day_to_baseline_ratio float8 NOT NULL,
    terminal_id_days_since_last_fraud float8 NOT NULL,
    terminal_id_days_since_first_fraud float8 NOT NULL,
    terminal_id_last_known_label integer NOT NULL
)
DISTKEY (customer_id)
SORTKEY (tx_datetime);

-- Every stream transaction scored, once: the features the model saw, the score and why.
CREATE TABLE IF NOT EXISTS fraud_scores (
    transaction_id bigint NOT NULL,
    tx_datetime timestamp NOT NULL,
    customer_id integer NOT NULL,
    terminal_id integer NOT NULL,
    tx_amount decimal(18, 2) NOT NULL,
    tx_during_weekend integer NOT NULL,
    tx_during_night integer NOT NULL,
    customer_id_nb_tx_1day_window float8 NOT NULL,
    customer_id_avg_amount_1day_window float8 NOT NULL,
    customer_id_nb_tx_7day_window float8 NOT NULL,
    customer_id_avg_amount_7day_window float8 NOT NULL,
    customer_id_nb_tx_30day_window float8 NOT NULL,
    customer_id_avg_amount_30day_window float8 NOT NULL,
    terminal_id_nb_tx_1day_window float8 NOT NULL,
    terminal_id_risk_1day_window float8 NOT NULL,
    terminal_id_nb_tx_7day_window float8 NOT NULL,
    terminal_id_risk_7day_window float8 NOT NULL,
    terminal_id_nb_tx_30day_window float8 NOT NULL,
    terminal_id_risk_30day_window float8 NOT NULL,
    customer_id_nb_tx_baseline_window float8 NOT NULL,
    customer_id_avg_amount_baseline_window float8 NOT NULL,
    amount_to_baseline_ratio float8 NOT NULL,
    customer_avg_amount_14day_to_baseline_ratio float8 NOT NULL,
    terminal_id_days_since_last_fraud float8 NOT NULL,
    terminal_id_days_since_first_fraud float8 NOT NULL,
    terminal_id_last_known_label integer NOT NULL,
    score float8 NOT NULL,
    prediction integer NOT NULL,
    threshold float8 NOT NULL,
    model_version varchar(127) NOT NULL,
    reasons varchar(1000),
    produced_at bigint,
    arrived_at timestamp,
    stream_refresh_time timestamp,
    scored_at timestamp NOT NULL DEFAULT getdate()
)
DISTKEY (transaction_id)
SORTKEY (stream_refresh_time);

-- What needs features: stream transactions not scored yet (from the scoring watermark on), and
-- history transactions newer than the last computed history feature.
CREATE OR REPLACE VIEW feature_targets AS
SELECT transaction_id, tx_datetime, customer_id, terminal_id, tx_amount, tx_fraud,
       'history'::varchar(8) AS source, NULL::bigint AS produced_at, NULL::timestamp AS arrived_at,
       NULL::timestamp AS stream_refresh_time
FROM cust_payment_tx_history
WHERE tx_datetime > (SELECT COALESCE(MAX(tx_datetime), '1900-01-01'::timestamp) FROM history_features)
UNION ALL
SELECT s.transaction_id, s.tx_datetime, s.customer_id, s.terminal_id, s.tx_amount, NULL::integer AS tx_fraud,
       'stream'::varchar(8) AS source, s.produced_at, s.approximate_arrival_timestamp AS arrived_at,
       s.refresh_time AS stream_refresh_time
FROM stream_transactions s
WHERE s.refresh_time >= (SELECT COALESCE(MAX(stream_refresh_time), '1900-01-01'::timestamp) FROM fraud_scores)
  AND NOT EXISTS (SELECT 1 FROM fraud_scores f WHERE f.transaction_id = s.transaction_id)
  AND NOT EXISTS (SELECT 1 FROM cust_payment_tx_history h WHERE h.transaction_id = s.transaction_id);

-- THE feature definition: the handbook's 14 features plus point-in-time extras, for every row of
-- feature_targets. Customer windows (t - n days, t] include the transaction; terminal windows
-- (t - 7 - n days, t - 7 days] skip the label delay. Baseline: the card's spending over
-- (t - 44 days, t - 14 days], before any current compromise (which lasts up to 14 days).
CREATE OR REPLACE VIEW tx_features AS
WITH targets AS (
    SELECT transaction_id, tx_datetime, customer_id, terminal_id, tx_amount, tx_fraud, source,
           produced_at, arrived_at, stream_refresh_time
    FROM feature_targets
),
customer_scope AS (
    SELECT customer_id, DATEADD(day, -44, MIN(tx_datetime)) AS since, MAX(tx_datetime) AS until
    FROM targets
    GROUP BY customer_id
),
customer_points AS (
    -- the card's transactions: they move the running sums, and each reads them at its own t
    SELECT e.customer_id, e.tx_datetime AS point_at, e.transaction_id AS tiebreak, 1 AS n,
           e.tx_amount::float8 AS amount, e.transaction_id AS target_id, 0 AS days_back
    FROM tx_events e
    JOIN customer_scope s ON s.customer_id = e.customer_id AND e.tx_datetime > s.since AND e.tx_datetime <= s.until
    UNION ALL
    -- probes: read the running sums at t - n days, after every transaction of that second
    SELECT t.customer_id, DATEADD(day, -w.days_back, t.tx_datetime), 9223372036854775807, 0, 0::float8,
           t.transaction_id, w.days_back
    FROM targets t
    CROSS JOIN (SELECT 1 AS days_back UNION ALL SELECT 7 UNION ALL SELECT 14
                UNION ALL SELECT 30 UNION ALL SELECT 44) w
),
customer_running AS (
    SELECT target_id, days_back,
           SUM(n) OVER (PARTITION BY customer_id ORDER BY point_at, tiebreak, n DESC ROWS UNBOUNDED PRECEDING) AS nb,
           SUM(amount) OVER (PARTITION BY customer_id ORDER BY point_at, tiebreak, n DESC ROWS UNBOUNDED PRECEDING) AS amt
    FROM customer_points
),
customer_sums AS (
    SELECT target_id AS transaction_id,
           MAX(CASE WHEN days_back = 0 THEN nb END) AS nb_0,
           MAX(CASE WHEN days_back = 1 THEN nb END) AS nb_1,
           MAX(CASE WHEN days_back = 7 THEN nb END) AS nb_7,
           MAX(CASE WHEN days_back = 14 THEN nb END) AS nb_14,
           MAX(CASE WHEN days_back = 30 THEN nb END) AS nb_30,
           MAX(CASE WHEN days_back = 44 THEN nb END) AS nb_44,
           MAX(CASE WHEN days_back = 0 THEN amt END) AS amt_0,
           MAX(CASE WHEN days_back = 1 THEN amt END) AS amt_1,
           MAX(CASE WHEN days_back = 7 THEN amt END) AS amt_7,
           MAX(CASE WHEN days_back = 14 THEN amt END) AS amt_14,
           MAX(CASE WHEN days_back = 30 THEN amt END) AS amt_30,
           MAX(CASE WHEN days_back = 44 THEN amt END) AS amt_44
    FROM customer_running
    GROUP BY target_id
),
terminal_scope AS (
    SELECT terminal_id, DATEADD(day, -37, MIN(tx_datetime)) AS since, DATEADD(day, -7, MAX(tx_datetime)) AS until
    FROM targets
    GROUP BY terminal_id
),
terminal_points AS (
    SELECT e.terminal_id, e.tx_datetime AS point_at, e.transaction_id AS tiebreak, 1 AS n,
           COALESCE(e.tx_fraud, 0) AS fraud, NULL::bigint AS target_id, NULL::integer AS days_back
    FROM tx_events e
    JOIN terminal_scope s ON s.terminal_id = e.terminal_id AND e.tx_datetime > s.since AND e.tx_datetime <= s.until
    UNION ALL
    SELECT t.terminal_id, DATEADD(day, -w.days_back, t.tx_datetime), 9223372036854775807, 0, 0,
           t.transaction_id, w.days_back
    FROM targets t
    CROSS JOIN (SELECT 7 AS days_back UNION ALL SELECT 8 UNION ALL SELECT 14 UNION ALL SELECT 37) w
),
terminal_running AS (
    SELECT terminal_id, point_at, n, fraud, target_id, days_back,
           SUM(n) OVER (PARTITION BY terminal_id ORDER BY point_at, tiebreak, n DESC ROWS UNBOUNDED PRECEDING) AS nb,
           SUM(fraud) OVER (PARTITION BY terminal_id ORDER BY point_at, tiebreak, n DESC ROWS UNBOUNDED PRECEDING) AS frauds
    FROM terminal_points
),
terminal_sums AS (
    SELECT target_id AS transaction_id, terminal_id,
           MAX(CASE WHEN days_back = 7 THEN nb END) AS nb_7,
           MAX(CASE WHEN days_back = 8 THEN nb END) AS nb_8,
           MAX(CASE WHEN days_back = 14 THEN nb END) AS nb_14,
           MAX(CASE WHEN days_back = 37 THEN nb END) AS nb_37,
           MAX(CASE WHEN days_back = 7 THEN frauds END) AS frauds_7,
           MAX(CASE WHEN days_back = 8 THEN frauds END) AS frauds_8,
           MAX(CASE WHEN days_back = 14 THEN frauds END) AS frauds_14,
           MAX(CASE WHEN days_back = 37 THEN frauds END) AS frauds_37
    FROM terminal_running
    WHERE target_id IS NOT NULL
    GROUP BY target_id, terminal_id
),
-- known terminal transactions numbered by position and by fraud count, so the first/last known
-- fraud and the last known label of a window are found by equality joins
terminal_known AS (
    SELECT terminal_id, point_at, nb, frauds, fraud FROM terminal_running WHERE n = 1
)
SELECT t.transaction_id, t.tx_datetime, t.customer_id, t.terminal_id, t.tx_amount, t.tx_fraud, t.source,
       t.produced_at, t.arrived_at, t.stream_refresh_time,
       CASE WHEN EXTRACT(DOW FROM t.tx_datetime) IN (0, 6) THEN 1 ELSE 0 END AS tx_during_weekend,
       CASE WHEN EXTRACT(HOUR FROM t.tx_datetime) <= 6 THEN 1 ELSE 0 END AS tx_during_night,
       (c.nb_0 - c.nb_1)::float8 AS customer_id_nb_tx_1day_window,
       (c.amt_0 - c.amt_1)::float8 / (c.nb_0 - c.nb_1) AS customer_id_avg_amount_1day_window,
       (c.nb_0 - c.nb_7)::float8 AS customer_id_nb_tx_7day_window,
       (c.amt_0 - c.amt_7)::float8 / (c.nb_0 - c.nb_7) AS customer_id_avg_amount_7day_window,
       (c.nb_0 - c.nb_30)::float8 AS customer_id_nb_tx_30day_window,
       (c.amt_0 - c.amt_30)::float8 / (c.nb_0 - c.nb_30) AS customer_id_avg_amount_30day_window,
       (m.nb_7 - m.nb_8)::float8 AS terminal_id_nb_tx_1day_window,
       CASE WHEN m.nb_7 = m.nb_8 THEN 0 ELSE (m.frauds_7 - m.frauds_8)::float8 / (m.nb_7 - m.nb_8) END
           AS terminal_id_risk_1day_window,
       (m.nb_7 - m.nb_14)::float8 AS terminal_id_nb_tx_7day_window,
       CASE WHEN m.nb_7 = m.nb_14 THEN 0 ELSE (m.frauds_7 - m.frauds_14)::float8 / (m.nb_7 - m.nb_14) END
           AS terminal_id_risk_7day_window,
       (m.nb_7 - m.nb_37)::float8 AS terminal_id_nb_tx_30day_window,
       CASE WHEN m.nb_7 = m.nb_37 THEN 0 ELSE (m.frauds_7 - m.frauds_37)::float8 / (m.nb_7 - m.nb_37) END
           AS terminal_id_risk_30day_window,
       (c.nb_14 - c.nb_44)::float8 AS customer_id_nb_tx_baseline_window,
       CASE WHEN c.nb_14 = c.nb_44 THEN 0 ELSE (c.amt_14 - c.amt_44)::float8 / (c.nb_14 - c.nb_44) END
           AS customer_id_avg_amount_baseline_window,
       -- no baseline yet (a new card): compare with the 30-day mean instead
       t.tx_amount::float8 / CASE WHEN c.nb_14 = c.nb_44 THEN (c.amt_0 - c.amt_30)::float8 / (c.nb_0 - c.nb_30)
                                  ELSE (c.amt_14 - c.amt_44)::float8 / (c.nb_14 - c.nb_44) END
           AS amount_to_baseline_ratio,
       CASE WHEN c.nb_14 = c.nb_44 OR c.amt_14 = c.amt_44 THEN 1
            ELSE ((c.amt_0 - c.amt_14)::float8 / (c.nb_0 - c.nb_14))
                 / ((c.amt_14 - c.amt_44)::float8 / (c.nb_14 - c.nb_44)) END
           AS customer_avg_amount_14day_to_baseline_ratio,
       -- 31: no known fraud at the terminal in its 30-day known window
       COALESCE(DATEDIFF(second, last_fraud.point_at, DATEADD(day, -7, t.tx_datetime)) / 86400.0, 31)::float8
           AS terminal_id_days_since_last_fraud,
       COALESCE(DATEDIFF(second, first_fraud.point_at, DATEADD(day, -7, t.tx_datetime)) / 86400.0, 31)::float8
           AS terminal_id_days_since_first_fraud,
       COALESCE(last_known.fraud, 0) AS terminal_id_last_known_label
FROM targets t
JOIN customer_sums c ON c.transaction_id = t.transaction_id
JOIN terminal_sums m ON m.transaction_id = t.transaction_id
LEFT JOIN terminal_known last_fraud
    ON last_fraud.terminal_id = m.terminal_id AND last_fraud.fraud = 1
   AND last_fraud.frauds = m.frauds_7 AND m.frauds_7 > m.frauds_37
LEFT JOIN terminal_known first_fraud
    ON first_fraud.terminal_id = m.terminal_id AND first_fraud.fraud = 1
   AND first_fraud.frauds = m.frauds_37 + 1 AND m.frauds_7 > m.frauds_37
LEFT JOIN terminal_known last_known
    ON last_known.terminal_id = m.terminal_id AND last_known.nb = m.nb_7 AND m.nb_7 > m.nb_37;
