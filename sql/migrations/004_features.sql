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

-- Stream transaction ids the history holds too (a history load overlapping the stream). An inner join
-- from the stream: the engine hashes the (small) stream side and probes the history, skipping most of
-- it by the ids' range, instead of hashing every history id on each scoring pass (an anti-join against
-- the history did that: about 25 ms each, three times per pass, measured with EXPLAIN ANALYZE).
CREATE OR REPLACE VIEW stream_ids_in_history AS
SELECT DISTINCT h.transaction_id
FROM cust_payment_tx_history h
JOIN cust_payment_tx_stream s ON s.transaction_id = h.transaction_id;

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
LEFT JOIN stream_ids_in_history h ON h.transaction_id = s.transaction_id
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
    terminal_id_risk_since_first_fraud float8 NOT NULL,
    terminal_id_compromise_day integer NOT NULL,
    customer_quartic_mean_amount_14day_to_baseline_ratio float8 NOT NULL,
    terminal_id_min_fraud_amount_30day_window float8 NOT NULL,
    terminal_id_max_fraud_amount_30day_window float8 NOT NULL
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
    terminal_id_compromise_day integer NOT NULL,
    customer_quartic_mean_amount_14day_to_baseline_ratio float8 NOT NULL,
    terminal_id_min_fraud_amount_30day_window float8 NOT NULL,
    terminal_id_max_fraud_amount_30day_window float8 NOT NULL,
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
LEFT JOIN stream_ids_in_history h ON h.transaction_id = s.transaction_id
WHERE s.refresh_time >= (SELECT COALESCE(MAX(stream_refresh_time), '1900-01-01'::timestamp) FROM fraud_scores)
  AND f.transaction_id IS NULL
  AND h.transaction_id IS NULL;

-- THE feature definition: the handbook's 14 features plus point-in-time extras, for every row of
-- feature_targets. Customer windows (t - n days, t] include the transaction; terminal windows
-- (t - 7 - n days, t - 7 days] skip the label delay. Baseline: the card's spending over
-- (t - 30 days, t - 14 days], before any current compromise (one lasts up to 14 days).
--
-- How: each card's (terminal's) transactions are numbered in time order with running sums
-- (ROWS UNBOUNDED PRECEDING). A window's lower bound t - n days is a "probe" sorted among the
-- transactions (after every transaction of its second); the last transaction before it carries the
-- running count and sums there (LAST_VALUE ... IGNORE NULLS over the probes' partition: no join back,
-- and no running SUM over the probes, which DuckDB computes far more slowly than LAST_VALUE).
-- A card's transactions between the spans of its targets' bounds lie inside every window that reaches
-- them: each such stretch is summed into one row before the sort (a scoring pass sorts a few rows per
-- card instead of its 30 days; measured: the features of a 2,000-row pass -15 to -30 % CPU).
-- A terminal's known frauds are few: a range join finds those of each target's window (cheaper than
-- a running count of frauds over every transaction carried through the probe sort).
-- A window is then a difference of running sums: O(N log N), no range self-join, no RANGE frame.
-- (Measured dead ends: start-of-day rows with an equality join on (card, day) per bound halved the
-- full-history time but doubled a scoring pass; each transaction listed on every day up to its next
-- one, found by an equality join per bound, traded the probe sorts for as much join work; one sort of
-- transactions and probes with running SUMs instead of LAST_VALUE was 3x slower in DuckDB. See
-- bench/features.py and bench/scoring.py.)
CREATE OR REPLACE VIEW tx_features AS
WITH targets AS (
    SELECT transaction_id, tx_datetime, customer_id, terminal_id, tx_amount, tx_fraud, source,
           produced_at, arrived_at, stream_refresh_time
    FROM feature_targets
),
customer_scope AS (
    SELECT customer_id, MIN(tx_datetime) AS first_at, MAX(tx_datetime) AS last_at
    FROM targets
    GROUP BY customer_id
),
-- the span of each lag's bounds per card, computed once per card rather than per transaction
customer_spans AS (
    SELECT customer_id,
           DATEADD(day, -1, first_at) AS first_1, DATEADD(day, -1, last_at) AS last_1,
           DATEADD(day, -7, first_at) AS first_7, DATEADD(day, -7, last_at) AS last_7,
           DATEADD(day, -14, first_at) AS first_14, DATEADD(day, -14, last_at) AS last_14,
           DATEADD(day, -30, first_at) AS first_30, DATEADD(day, -30, last_at) AS last_30, first_at, last_at
    FROM customer_scope
),
customer_lags AS (
    SELECT 1 AS days_back UNION ALL SELECT 7 UNION ALL SELECT 14 UNION ALL SELECT 30
),
-- a card's transactions its targets' windows reach lie near a bound (within the span of some lag's
-- bounds: may be the last transaction before a bound), near a target (within the span of the targets: a
-- target, or counted up to one), or in a stretch between spans, which lies inside every window that
-- reaches it, so only its count and sums matter: each stretch is one row at its last transaction (no
-- bound or target falls inside it, so nothing reads a running sum within it). None when featurising the
-- whole history (every transaction is near a target); in a scoring pass most of a card's 30 days.
-- Stretches are numbered by how many spans of bounds (30, 14, 7, 1 days back, in that order) end before.
customer_stretches AS (
    SELECT e.customer_id, MAX(e.tx_datetime) AS tx_datetime, COUNT(*) AS transactions,
           SUM(e.tx_amount::float8) AS amount, SUM(POWER(e.tx_amount::float8, 4)) AS fourth_powers
    FROM tx_events e
    JOIN customer_spans s
      ON s.customer_id = e.customer_id AND e.tx_datetime > s.last_30 AND e.tx_datetime < s.first_at
    WHERE NOT (e.tx_datetime >= s.first_14 AND e.tx_datetime <= s.last_14)
      AND NOT (e.tx_datetime >= s.first_7 AND e.tx_datetime <= s.last_7)
      AND NOT (e.tx_datetime >= s.first_1 AND e.tx_datetime <= s.last_1)
    GROUP BY e.customer_id,
             CASE WHEN e.tx_datetime > s.last_14 THEN 1 ELSE 0 END + CASE WHEN e.tx_datetime > s.last_7 THEN 1 ELSE 0 END
             + CASE WHEN e.tx_datetime > s.last_1 THEN 1 ELSE 0 END
),
-- positions and running sums in time order over the transactions near a bound or target and the
-- stretches. A position counts transactions: its row number plus what the stretches so far hold
-- beyond their one row each (hidden_so_far, carried from the last stretch; none when featurising the
-- whole history, where this is a plain row number).
customer_events AS (
    SELECT customer_id, transaction_id, tx_datetime, near_bound,
           ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY tx_datetime, transaction_id)
           + COALESCE(LAST_VALUE(hidden_so_far) IGNORE NULLS OVER (PARTITION BY customer_id
                                                                  ORDER BY tx_datetime, transaction_id
                                                                  ROWS UNBOUNDED PRECEDING), 0) AS position,
           SUM(amount) OVER (PARTITION BY customer_id ORDER BY tx_datetime, transaction_id
                             ROWS UNBOUNDED PRECEDING) AS amount_so_far,
           -- amounts to the 4th power: a quartic mean over a window, a spike measure running sums give
           SUM(fourth_powers) OVER (PARTITION BY customer_id ORDER BY tx_datetime, transaction_id
                                    ROWS UNBOUNDED PRECEDING) AS fourth_powers_so_far
    FROM (
        -- each transaction near a bound or a target (the stretches' complement); those up to the last
        -- bound may be the last transaction before one
        SELECT e.customer_id, e.transaction_id, e.tx_datetime,
               CASE WHEN e.tx_datetime <= s.last_1 THEN 1 ELSE 0 END AS near_bound,
               e.tx_amount::float8 AS amount, POWER(e.tx_amount::float8, 4) AS fourth_powers,
               NULL::bigint AS hidden_so_far
        FROM tx_events e
        JOIN customer_spans s
          ON s.customer_id = e.customer_id AND e.tx_datetime > s.first_30 AND e.tx_datetime <= s.last_at
        WHERE e.tx_datetime <= s.last_30 OR e.tx_datetime >= s.first_at
           OR (e.tx_datetime >= s.first_14 AND e.tx_datetime <= s.last_14)
           OR (e.tx_datetime >= s.first_7 AND e.tx_datetime <= s.last_7)
           OR (e.tx_datetime >= s.first_1 AND e.tx_datetime <= s.last_1)
        UNION ALL
        -- a stretch may hold the last transaction before a bound
        SELECT customer_id, NULL::bigint, tx_datetime, 1, amount, fourth_powers,
               SUM(transactions - 1) OVER (PARTITION BY customer_id ORDER BY tx_datetime
                                           ROWS UNBOUNDED PRECEDING)::bigint
        FROM customer_stretches
    ) kept
),
-- each window bound (t - n days) sorted among the card's transactions (after those of its second: a
-- bound has no position, NULLS LAST): the last transaction before it gives the running sums there.
-- Only rows that can be that last one enter the sort: transactions near a bound and the stretches (the
-- whole history when featurising it; a few hours per lag in a scoring pass, instead of the card's 30
-- days).
customer_probes AS (
    SELECT customer_id, target_id, days_back,
           COALESCE(LAST_VALUE(position) IGNORE NULLS OVER (PARTITION BY customer_id
                                                           ORDER BY point_at, position NULLS LAST
                                                           ROWS UNBOUNDED PRECEDING), 0) AS position,
           COALESCE(LAST_VALUE(amount_so_far) IGNORE NULLS OVER (PARTITION BY customer_id
                                                                ORDER BY point_at, position NULLS LAST
                                                                ROWS UNBOUNDED PRECEDING), 0) AS amount_so_far
    FROM (
        SELECT e.customer_id, e.tx_datetime AS point_at, NULL::bigint AS target_id,
               NULL::integer AS days_back, e.position, e.amount_so_far
        FROM customer_events e
        WHERE e.near_bound = 1
        UNION ALL
        SELECT t.customer_id, DATEADD(day, -w.days_back, t.tx_datetime), t.transaction_id, w.days_back,
               NULL::bigint, NULL::float8
        FROM targets t
        CROSS JOIN customer_lags w
    ) points
),
customer_bounds AS (
    SELECT target_id AS transaction_id,
           MAX(CASE WHEN days_back = 1 THEN position END) AS position_1,
           MAX(CASE WHEN days_back = 7 THEN position END) AS position_7,
           MAX(CASE WHEN days_back = 14 THEN position END) AS position_14,
           MAX(CASE WHEN days_back = 30 THEN position END) AS position_30,
           MAX(CASE WHEN days_back = 1 THEN amount_so_far END) AS amount_1,
           MAX(CASE WHEN days_back = 7 THEN amount_so_far END) AS amount_7,
           MAX(CASE WHEN days_back = 14 THEN amount_so_far END) AS amount_14,
           MAX(CASE WHEN days_back = 30 THEN amount_so_far END) AS amount_30
    FROM customer_probes
    WHERE target_id IS NOT NULL
    GROUP BY target_id
),
customer_windows AS (
    SELECT b.transaction_id,
           e.position - b.position_1 AS nb_1, e.amount_so_far - b.amount_1 AS amount_1,
           e.position - b.position_7 AS nb_7, e.amount_so_far - b.amount_7 AS amount_7,
           e.position - b.position_14 AS nb_14, e.amount_so_far - b.amount_14 AS amount_14,
           e.position - b.position_30 AS nb_30, e.amount_so_far - b.amount_30 AS amount_30,
           e.fourth_powers_so_far - COALESCE(e14.fourth_powers_so_far, 0) AS fourth_powers_14
    FROM customer_bounds b
    JOIN customer_events e ON e.transaction_id = b.transaction_id
    -- the running sum of 4th powers at the 14-day bound, by its position (only this window needs it;
    -- as fast as carrying it with the probes, measured)
    LEFT JOIN customer_events e14 ON e14.customer_id = e.customer_id AND e14.position = b.position_14
),
terminal_scope AS (
    SELECT terminal_id, MIN(tx_datetime) AS first_at, MAX(tx_datetime) AS last_at
    FROM targets
    GROUP BY terminal_id
),
terminal_spans AS (
    SELECT terminal_id,
           DATEADD(day, -7, first_at) AS first_7, DATEADD(day, -7, last_at) AS last_7,
           DATEADD(day, -8, first_at) AS first_8, DATEADD(day, -8, last_at) AS last_8,
           DATEADD(day, -14, first_at) AS first_14, DATEADD(day, -14, last_at) AS last_14,
           DATEADD(day, -37, first_at) AS first_37, DATEADD(day, -37, last_at) AS last_37
    FROM terminal_scope
),
terminal_lags AS (
    SELECT 7 AS days_back UNION ALL SELECT 8 UNION ALL SELECT 14 UNION ALL SELECT 37
),
terminal_events AS (
    SELECT e.terminal_id, e.tx_datetime, COALESCE(e.tx_fraud, 0) AS fraud, e.tx_amount,
           ROW_NUMBER() OVER (PARTITION BY e.terminal_id ORDER BY e.tx_datetime, e.transaction_id) AS position,
           LEAD(e.tx_datetime) OVER (PARTITION BY e.terminal_id
                                     ORDER BY e.tx_datetime, e.transaction_id) AS next_at
    FROM tx_events e
    JOIN terminal_spans s
      ON s.terminal_id = e.terminal_id AND e.tx_datetime > s.first_37 AND e.tx_datetime <= s.last_7
),
terminal_probes AS (
    SELECT target_id, days_back,
           COALESCE(LAST_VALUE(position) IGNORE NULLS OVER (PARTITION BY terminal_id
                                                           ORDER BY point_at, position NULLS LAST
                                                           ROWS UNBOUNDED PRECEDING), 0) AS position
    FROM (
        SELECT e.terminal_id, e.tx_datetime AS point_at, NULL::bigint AS target_id,
               NULL::integer AS days_back, e.position
        FROM terminal_events e
        JOIN terminal_spans s ON s.terminal_id = e.terminal_id
        WHERE (e.tx_datetime <= s.last_7 AND (e.next_at IS NULL OR e.next_at > s.first_7))
           OR (e.tx_datetime <= s.last_8 AND (e.next_at IS NULL OR e.next_at > s.first_8))
           OR (e.tx_datetime <= s.last_14 AND (e.next_at IS NULL OR e.next_at > s.first_14))
           OR (e.tx_datetime <= s.last_37 AND (e.next_at IS NULL OR e.next_at > s.first_37))
        UNION ALL
        SELECT t.terminal_id, DATEADD(day, -w.days_back, t.tx_datetime), t.transaction_id, w.days_back,
               NULL::bigint
        FROM targets t
        CROSS JOIN terminal_lags w
    ) points
),
terminal_bounds AS (
    SELECT target_id AS transaction_id,
           MAX(CASE WHEN days_back = 7 THEN position END) AS position_7,
           MAX(CASE WHEN days_back = 8 THEN position END) AS position_8,
           MAX(CASE WHEN days_back = 14 THEN position END) AS position_14,
           MAX(CASE WHEN days_back = 37 THEN position END) AS position_37
    FROM terminal_probes
    WHERE target_id IS NOT NULL
    GROUP BY target_id
),
-- each target's known frauds at its terminal, (t - 37 days, t - 7 days]: a range join, as frauds are
-- few (the default 1.78M-row history: 2.8M candidate pairs, 0.4M in windows; cheaper than a running
-- count of frauds over every transaction carried through the 9M-row probe sort, measured)
terminal_fraud_windows AS (
    SELECT t.transaction_id,
           SUM(CASE WHEN f.tx_datetime > DATEADD(day, -8, t.tx_datetime) THEN 1 ELSE 0 END) AS frauds_1,
           SUM(CASE WHEN f.tx_datetime > DATEADD(day, -14, t.tx_datetime) THEN 1 ELSE 0 END) AS frauds_7,
           COUNT(*) AS frauds_30,
           MIN(f.tx_datetime) AS first_fraud_at, MIN(f.position) AS first_fraud_position,
           MAX(f.tx_datetime) AS last_fraud_at, MAX(f.position) AS last_fraud_position,
           MIN(f.tx_amount) AS min_fraud_amount, MAX(f.tx_amount) AS max_fraud_amount
    FROM targets t
    JOIN terminal_events f
      ON f.terminal_id = t.terminal_id AND f.fraud = 1
     AND f.tx_datetime > DATEADD(day, -37, t.tx_datetime) AND f.tx_datetime <= DATEADD(day, -7, t.tx_datetime)
    GROUP BY t.transaction_id
)
SELECT t.transaction_id, t.tx_datetime, t.customer_id, t.terminal_id, t.tx_amount, t.tx_fraud, t.source,
       t.produced_at, t.arrived_at, t.stream_refresh_time,
       CASE WHEN EXTRACT(DOW FROM t.tx_datetime) IN (0, 6) THEN 1 ELSE 0 END AS tx_during_weekend,
       CASE WHEN EXTRACT(HOUR FROM t.tx_datetime) <= 6 THEN 1 ELSE 0 END AS tx_during_night,
       c.nb_1::float8 AS customer_id_nb_tx_1day_window,
       c.amount_1 / c.nb_1 AS customer_id_avg_amount_1day_window,
       c.nb_7::float8 AS customer_id_nb_tx_7day_window,
       c.amount_7 / c.nb_7 AS customer_id_avg_amount_7day_window,
       c.nb_30::float8 AS customer_id_nb_tx_30day_window,
       c.amount_30 / c.nb_30 AS customer_id_avg_amount_30day_window,
       (m.position_7 - m.position_8)::float8 AS terminal_id_nb_tx_1day_window,
       CASE WHEN m.position_7 = m.position_8 THEN 0
            ELSE COALESCE(f.frauds_1, 0)::float8 / (m.position_7 - m.position_8) END
           AS terminal_id_risk_1day_window,
       (m.position_7 - m.position_14)::float8 AS terminal_id_nb_tx_7day_window,
       CASE WHEN m.position_7 = m.position_14 THEN 0
            ELSE COALESCE(f.frauds_7, 0)::float8 / (m.position_7 - m.position_14) END
           AS terminal_id_risk_7day_window,
       (m.position_7 - m.position_37)::float8 AS terminal_id_nb_tx_30day_window,
       CASE WHEN m.position_7 = m.position_37 THEN 0
            ELSE COALESCE(f.frauds_30, 0)::float8 / (m.position_7 - m.position_37) END
           AS terminal_id_risk_30day_window,
       (c.nb_30 - c.nb_14)::float8 AS customer_id_nb_tx_baseline_window,
       CASE WHEN c.nb_30 = c.nb_14 THEN 0 ELSE (c.amount_30 - c.amount_14) / (c.nb_30 - c.nb_14) END
           AS customer_id_avg_amount_baseline_window,
       -- no baseline yet (a new card): compare with the 30-day mean instead
       t.tx_amount::float8 / CASE WHEN c.nb_30 = c.nb_14 OR c.amount_30 = c.amount_14 THEN c.amount_30 / c.nb_30
                                  ELSE (c.amount_30 - c.amount_14) / (c.nb_30 - c.nb_14) END
           AS amount_to_baseline_ratio,
       CASE WHEN c.nb_30 = c.nb_14 OR c.amount_30 = c.amount_14 THEN 1
            ELSE (c.amount_14 / c.nb_14) / ((c.amount_30 - c.amount_14) / (c.nb_30 - c.nb_14)) END
           AS customer_avg_amount_14day_to_baseline_ratio,
       -- 31: no known fraud at the terminal in its 30-day known window
       CASE WHEN f.transaction_id IS NULL THEN 31
            ELSE DATEDIFF(second, f.last_fraud_at, DATEADD(day, -7, t.tx_datetime))::float8 / 86400 END
           AS terminal_id_days_since_last_fraud,
       CASE WHEN f.transaction_id IS NULL THEN 31
            ELSE DATEDIFF(second, f.first_fraud_at, DATEADD(day, -7, t.tx_datetime))::float8 / 86400 END
           AS terminal_id_days_since_first_fraud,
       -- the label of the last known transaction (before the delay): a fraud iff it is the last known fraud
       CASE WHEN f.last_fraud_position = m.position_7 THEN 1 ELSE 0 END AS terminal_id_last_known_label,
       -- share of the terminal's known transactions that were frauds since its first known fraud:
       -- 1 for a compromised terminal (all its transactions are frauds), low for a stray fraud
       CASE WHEN f.transaction_id IS NULL THEN 0
            ELSE f.frauds_30::float8 / (m.position_7 - f.first_fraud_position + 1) END
           AS terminal_id_risk_since_first_fraud,
       -- calendar day of the terminal's compromise its first known fraud opened (day 0 = that day;
       -- -1: no known fraud): a compromise covers whole days, so its end is sharp in days, not seconds
       CASE WHEN f.transaction_id IS NULL THEN -1
            ELSE DATEDIFF(day, f.first_fraud_at, t.tx_datetime) END AS terminal_id_compromise_day,
       -- quartic mean (4th root of the mean 4th power) of the card's other amounts in the last 14 days
       -- (t - 14 days, t] over its usual amount (the baseline, or the 30-day mean for a new card): a
       -- stolen card's earlier spikes, even unlabelled, weigh almost as in a maximum, which running sums
       -- cannot give (prototype: AP as with the maximum, above the root mean square). 0: no other
       -- transaction in those 14 days
       CASE WHEN c.nb_14 <= 1 THEN 0
            ELSE POWER(GREATEST(c.fourth_powers_14 - POWER(t.tx_amount::float8, 4), 0) / (c.nb_14 - 1), 0.25)
                 / CASE WHEN c.nb_30 = c.nb_14 OR c.amount_30 = c.amount_14 THEN c.amount_30 / c.nb_30
                        ELSE (c.amount_30 - c.amount_14) / (c.nb_30 - c.nb_14) END END
           AS customer_quartic_mean_amount_14day_to_baseline_ratio,
       -- the smallest and largest known fraud amounts at the terminal in its 30-day known window (-1:
       -- none): a compromised terminal's frauds have its customers' ordinary amounts, while a stray
       -- fraud there (a stolen card's x5 amount, a fraud over 220) is large, so a large smallest known
       -- fraud says the terminal itself may not be compromised (prototype: ch5 AP +0.007)
       COALESCE(f.min_fraud_amount, -1)::float8 AS terminal_id_min_fraud_amount_30day_window,
       COALESCE(f.max_fraud_amount, -1)::float8 AS terminal_id_max_fraud_amount_30day_window
FROM targets t
JOIN customer_windows c ON c.transaction_id = t.transaction_id
JOIN terminal_bounds m ON m.transaction_id = t.transaction_id
LEFT JOIN terminal_fraud_windows f ON f.transaction_id = t.transaction_id;
