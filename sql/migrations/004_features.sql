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
-- an outer join rather than NOT EXISTS: the engine may then build on the (small) stream side and
-- skip most of the history by the ids' range, instead of hashing the whole history every pass
LEFT JOIN cust_payment_tx_history h ON h.transaction_id = s.transaction_id
WHERE h.transaction_id IS NULL;

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
    terminal_id_last_known_label integer NOT NULL,
    terminal_id_risk_since_first_fraud float8 NOT NULL
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
    terminal_id_risk_since_first_fraud float8 NOT NULL,
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
LEFT JOIN fraud_scores f ON f.transaction_id = s.transaction_id
LEFT JOIN cust_payment_tx_history h ON h.transaction_id = s.transaction_id
WHERE s.refresh_time >= (SELECT COALESCE(MAX(stream_refresh_time), '1900-01-01'::timestamp) FROM fraud_scores)
  AND f.transaction_id IS NULL
  AND h.transaction_id IS NULL;

-- THE feature definition: the handbook's 14 features plus point-in-time extras, for every row of
-- feature_targets. Customer windows (t - n days, t] include the transaction; terminal windows
-- (t - 7 - n days, t - 7 days] skip the label delay. Baseline: the card's spending over
-- (t - 30 days, t - 14 days], before any current compromise (one lasts up to 14 days).
--
-- How: a window is a difference of running sums (ROWS UNBOUNDED PRECEDING over a card's, or a
-- terminal's, rows in time order), read at t and at the window's lower bound t - n days. Among the
-- transactions, each day of the scope has a start-of-day row (second -1) that carries the sums of the
-- days before. The bound falls on day D - n at t's second of the day, so the sums there are those of
-- the one row of that card-day whose [moment, next row's moment) holds the bound: an equality join on
-- (card, day), checked against the few rows of that day. One sort per side, no RANGE frame, no range
-- self-join. Ties keep the handbook's (pandas') order: rows at the same second count up to the
-- transaction itself (by transaction_id); a lower bound excludes every row at its second.
-- A moment is one sortable number: day number * 100000 + second of the day (0 .. 86399).
CREATE OR REPLACE VIEW tx_features AS
WITH targets AS (
    SELECT transaction_id, tx_datetime, customer_id, terminal_id, tx_amount, tx_fraud, source,
           produced_at, arrived_at, stream_refresh_time,
           DATEDIFF(day, '1900-01-01'::timestamp, tx_datetime) AS day_number,
           DATEDIFF(day, '1900-01-01'::timestamp, tx_datetime) * 100000
               + DATEDIFF(second, DATE_TRUNC('day', tx_datetime), tx_datetime) AS moment
    FROM feature_targets
),
digits AS (
    SELECT 0 AS digit UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4
    UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9
),
-- 0 .. 9999: the days of a scope (27 years)
day_offsets AS (
    SELECT a.digit + 10 * b.digit + 100 * c.digit + 1000 * d.digit AS day_offset
    FROM digits a CROSS JOIN digits b CROSS JOIN digits c CROSS JOIN digits d
),
customer_scope AS (
    SELECT customer_id, DATEADD(day, -30, MIN(tx_datetime)) AS since, MAX(tx_datetime) AS until,
           DATEDIFF(day, '1900-01-01'::timestamp, DATEADD(day, -30, MIN(tx_datetime))) AS first_day
    FROM targets
    GROUP BY customer_id
),
customer_rows AS (
    SELECT s.customer_id, s.first_day, s.first_day + o.day_offset AS day_number,
           (s.first_day + o.day_offset) * 100000 - 1 AS moment, NULL::bigint AS transaction_id,
           NULL::float8 AS amount
    FROM customer_scope s
    JOIN day_offsets o ON o.day_offset <= DATEDIFF(day, s.since, s.until)
    UNION ALL
    SELECT e.customer_id, s.first_day, DATEDIFF(day, '1900-01-01'::timestamp, e.tx_datetime),
           DATEDIFF(day, '1900-01-01'::timestamp, e.tx_datetime) * 100000
               + DATEDIFF(second, DATE_TRUNC('day', e.tx_datetime), e.tx_datetime),
           e.transaction_id, e.tx_amount::float8
    FROM tx_events e
    JOIN customer_scope s ON s.customer_id = e.customer_id AND e.tx_datetime > s.since AND e.tx_datetime <= s.until
),
-- position: the card's transactions so far (the row number minus the start-of-day rows so far)
customer_points AS (
    SELECT customer_id::bigint * 100000 + day_number AS customer_day, transaction_id, moment,
           COALESCE(LEAD(moment) OVER (PARTITION BY customer_id ORDER BY moment, transaction_id),
                    moment + 100000) AS next_moment,
           ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY moment, transaction_id)
               - (day_number - first_day + 1) AS position,
           COALESCE(SUM(amount) OVER (PARTITION BY customer_id ORDER BY moment, transaction_id
                                      ROWS UNBOUNDED PRECEDING), 0) AS amount_so_far
    FROM customer_rows
),
terminal_scope AS (
    SELECT terminal_id, DATEADD(day, -37, MIN(tx_datetime)) AS since, DATEADD(day, -7, MAX(tx_datetime)) AS until,
           DATEDIFF(day, '1900-01-01'::timestamp, DATEADD(day, -37, MIN(tx_datetime))) AS first_day
    FROM targets
    GROUP BY terminal_id
),
terminal_rows AS (
    SELECT s.terminal_id, s.first_day, s.first_day + o.day_offset AS day_number,
           (s.first_day + o.day_offset) * 100000 - 1 AS moment, NULL::bigint AS transaction_id,
           NULL::timestamp AS tx_datetime, NULL::integer AS fraud
    FROM terminal_scope s
    JOIN day_offsets o ON o.day_offset <= DATEDIFF(day, s.since, s.until)
    UNION ALL
    SELECT e.terminal_id, s.first_day, DATEDIFF(day, '1900-01-01'::timestamp, e.tx_datetime),
           DATEDIFF(day, '1900-01-01'::timestamp, e.tx_datetime) * 100000
               + DATEDIFF(second, DATE_TRUNC('day', e.tx_datetime), e.tx_datetime),
           e.transaction_id, e.tx_datetime, COALESCE(e.tx_fraud, 0)
    FROM tx_events e
    JOIN terminal_scope s ON s.terminal_id = e.terminal_id AND e.tx_datetime > s.since AND e.tx_datetime <= s.until
),
terminal_points AS (
    SELECT terminal_id, terminal_id::bigint * 100000 + day_number AS terminal_day, moment, tx_datetime, fraud,
           COALESCE(LEAD(moment) OVER (PARTITION BY terminal_id ORDER BY moment, transaction_id),
                    moment + 100000) AS next_moment,
           ROW_NUMBER() OVER (PARTITION BY terminal_id ORDER BY moment, transaction_id)
               - (day_number - first_day + 1) AS position,
           COALESCE(SUM(fraud) OVER (PARTITION BY terminal_id ORDER BY moment, transaction_id
                                     ROWS UNBOUNDED PRECEDING), 0) AS frauds_so_far
    FROM terminal_rows
),
-- the running sums at t and at each window's lower bound (n days back: moment - n * 100000), narrow
-- so the chain of joins carries little
bounds AS (
    SELECT t.transaction_id,
           c0.position AS position_0, c0.amount_so_far AS amount_0,
           c1.position AS position_1, c1.amount_so_far AS amount_1,
           c7.position AS position_7, c7.amount_so_far AS amount_7,
           c14.position AS position_14, c14.amount_so_far AS amount_14,
           c30.position AS position_30, c30.amount_so_far AS amount_30,
           m7.position AS terminal_position_7, m8.position AS terminal_position_8,
           m14.position AS terminal_position_14, m37.position AS terminal_position_37,
           m7.frauds_so_far AS frauds_7, m8.frauds_so_far AS frauds_8, m14.frauds_so_far AS frauds_14,
           m37.frauds_so_far AS frauds_37
    FROM targets t
    JOIN customer_points c0 ON c0.transaction_id = t.transaction_id
    JOIN customer_points c1 ON c1.customer_day = t.customer_id::bigint * 100000 + t.day_number - 1
         AND c1.moment <= t.moment - 100000 AND t.moment - 100000 < c1.next_moment
    JOIN customer_points c7 ON c7.customer_day = t.customer_id::bigint * 100000 + t.day_number - 7
         AND c7.moment <= t.moment - 700000 AND t.moment - 700000 < c7.next_moment
    JOIN customer_points c14 ON c14.customer_day = t.customer_id::bigint * 100000 + t.day_number - 14
         AND c14.moment <= t.moment - 1400000 AND t.moment - 1400000 < c14.next_moment
    JOIN customer_points c30 ON c30.customer_day = t.customer_id::bigint * 100000 + t.day_number - 30
         AND c30.moment <= t.moment - 3000000 AND t.moment - 3000000 < c30.next_moment
    JOIN terminal_points m7 ON m7.terminal_day = t.terminal_id::bigint * 100000 + t.day_number - 7
         AND m7.moment <= t.moment - 700000 AND t.moment - 700000 < m7.next_moment
    JOIN terminal_points m8 ON m8.terminal_day = t.terminal_id::bigint * 100000 + t.day_number - 8
         AND m8.moment <= t.moment - 800000 AND t.moment - 800000 < m8.next_moment
    JOIN terminal_points m14 ON m14.terminal_day = t.terminal_id::bigint * 100000 + t.day_number - 14
         AND m14.moment <= t.moment - 1400000 AND t.moment - 1400000 < m14.next_moment
    JOIN terminal_points m37 ON m37.terminal_day = t.terminal_id::bigint * 100000 + t.day_number - 37
         AND m37.moment <= t.moment - 3700000 AND t.moment - 3700000 < m37.next_moment
),
windows AS (
    SELECT t.transaction_id, t.tx_datetime, t.customer_id, t.terminal_id, t.tx_amount, t.tx_fraud, t.source,
           t.produced_at, t.arrived_at, t.stream_refresh_time,
           b.position_0 - b.position_1 AS nb_1, b.amount_0 - b.amount_1 AS amount_1,
           b.position_0 - b.position_7 AS nb_7, b.amount_0 - b.amount_7 AS amount_7,
           b.position_0 - b.position_14 AS nb_14, b.amount_0 - b.amount_14 AS amount_14,
           b.position_0 - b.position_30 AS nb_30, b.amount_0 - b.amount_30 AS amount_30,
           b.terminal_position_7 AS position_7, b.terminal_position_8 AS position_8,
           b.terminal_position_14 AS position_14, b.terminal_position_37 AS position_37,
           b.frauds_7, b.frauds_8, b.frauds_14, b.frauds_37
    FROM targets t
    JOIN bounds b ON b.transaction_id = t.transaction_id
),
-- the terminal's known frauds numbered, so a window's first and last fraud are equality joins
terminal_frauds AS (
    SELECT terminal_id, frauds_so_far AS fraud_number, tx_datetime, position
    FROM terminal_points
    WHERE fraud = 1
)
SELECT w.transaction_id, w.tx_datetime, w.customer_id, w.terminal_id, w.tx_amount, w.tx_fraud, w.source,
       w.produced_at, w.arrived_at, w.stream_refresh_time,
       CASE WHEN EXTRACT(DOW FROM w.tx_datetime) IN (0, 6) THEN 1 ELSE 0 END AS tx_during_weekend,
       CASE WHEN EXTRACT(HOUR FROM w.tx_datetime) <= 6 THEN 1 ELSE 0 END AS tx_during_night,
       w.nb_1::float8 AS customer_id_nb_tx_1day_window,
       w.amount_1 / w.nb_1 AS customer_id_avg_amount_1day_window,
       w.nb_7::float8 AS customer_id_nb_tx_7day_window,
       w.amount_7 / w.nb_7 AS customer_id_avg_amount_7day_window,
       w.nb_30::float8 AS customer_id_nb_tx_30day_window,
       w.amount_30 / w.nb_30 AS customer_id_avg_amount_30day_window,
       (w.position_7 - w.position_8)::float8 AS terminal_id_nb_tx_1day_window,
       CASE WHEN w.position_7 = w.position_8 THEN 0
            ELSE (w.frauds_7 - w.frauds_8)::float8 / (w.position_7 - w.position_8) END
           AS terminal_id_risk_1day_window,
       (w.position_7 - w.position_14)::float8 AS terminal_id_nb_tx_7day_window,
       CASE WHEN w.position_7 = w.position_14 THEN 0
            ELSE (w.frauds_7 - w.frauds_14)::float8 / (w.position_7 - w.position_14) END
           AS terminal_id_risk_7day_window,
       (w.position_7 - w.position_37)::float8 AS terminal_id_nb_tx_30day_window,
       CASE WHEN w.position_7 = w.position_37 THEN 0
            ELSE (w.frauds_7 - w.frauds_37)::float8 / (w.position_7 - w.position_37) END
           AS terminal_id_risk_30day_window,
       (w.nb_30 - w.nb_14)::float8 AS customer_id_nb_tx_baseline_window,
       CASE WHEN w.nb_30 = w.nb_14 THEN 0 ELSE (w.amount_30 - w.amount_14) / (w.nb_30 - w.nb_14) END
           AS customer_id_avg_amount_baseline_window,
       -- no baseline yet (a new card): compare with the 30-day mean instead
       w.tx_amount::float8 / CASE WHEN w.nb_30 = w.nb_14 OR w.amount_30 = w.amount_14 THEN w.amount_30 / w.nb_30
                                  ELSE (w.amount_30 - w.amount_14) / (w.nb_30 - w.nb_14) END
           AS amount_to_baseline_ratio,
       CASE WHEN w.nb_30 = w.nb_14 OR w.amount_30 = w.amount_14 THEN 1
            ELSE (w.amount_14 / w.nb_14) / ((w.amount_30 - w.amount_14) / (w.nb_30 - w.nb_14)) END
           AS customer_avg_amount_14day_to_baseline_ratio,
       -- 31: no known fraud at the terminal in its 30-day known window
       CASE WHEN w.frauds_7 = w.frauds_37 THEN 31
            ELSE DATEDIFF(second, last_fraud.tx_datetime, DATEADD(day, -7, w.tx_datetime)) / 86400.0 END::float8
           AS terminal_id_days_since_last_fraud,
       CASE WHEN w.frauds_7 = w.frauds_37 THEN 31
            ELSE DATEDIFF(second, first_fraud.tx_datetime, DATEADD(day, -7, w.tx_datetime)) / 86400.0 END::float8
           AS terminal_id_days_since_first_fraud,
       -- the label of the last known transaction (before the delay): a fraud iff it is the last known fraud
       CASE WHEN last_fraud.position = w.position_7 THEN 1 ELSE 0 END AS terminal_id_last_known_label,
       -- share of the terminal's known transactions that were frauds since its first known fraud:
       -- 1 for a compromised terminal (all its transactions are frauds), low for a stray fraud
       CASE WHEN w.frauds_7 = w.frauds_37 THEN 0
            ELSE (w.frauds_7 - w.frauds_37)::float8 / (w.position_7 - first_fraud.position + 1) END
           AS terminal_id_risk_since_first_fraud
FROM windows w
LEFT JOIN terminal_frauds last_fraud
    ON last_fraud.terminal_id = w.terminal_id AND last_fraud.fraud_number = w.frauds_7 AND w.frauds_7 > w.frauds_37
LEFT JOIN terminal_frauds first_fraud
    ON first_fraud.terminal_id = w.terminal_id AND first_fraud.fraud_number = w.frauds_37 + 1
   AND w.frauds_7 > w.frauds_37;
