-- Score every new stream transaction exactly once: THE feature definition (tx_features, restricted
-- to unscored stream rows from the watermark on), the promoted model's function, and the reasons:
-- up to three signals that most explain the score, in an analyst's words, strongest first.
-- Parameters: :threshold (alert threshold on the probability). Placeholders: ${MODEL_FUNCTION},
-- ${MODEL_NAME} (the version written in every score). scored_at is SYSDATE, the start of the
-- transaction with microseconds (GETDATE() has whole seconds); this statement runs alone (one Data API
-- ExecuteStatement, autocommit), so that is its own start and arrival -> scoring lag reads true to the ms.
INSERT INTO fraud_scores (
    transaction_id, tx_datetime, customer_id, terminal_id, tx_amount,
    tx_during_weekend, tx_during_night, customer_id_nb_tx_1day_window,
    customer_id_avg_amount_1day_window, customer_id_nb_tx_7day_window,
    customer_id_avg_amount_7day_window, customer_id_nb_tx_30day_window,
    customer_id_avg_amount_30day_window, terminal_id_nb_tx_1day_window,
    terminal_id_risk_1day_window, terminal_id_nb_tx_7day_window, terminal_id_risk_7day_window,
    terminal_id_nb_tx_30day_window, terminal_id_risk_30day_window,
    customer_id_nb_tx_baseline_window, customer_id_avg_amount_baseline_window,
    amount_to_baseline_ratio, customer_avg_amount_14day_to_baseline_ratio,
    terminal_id_days_since_last_fraud, terminal_id_days_since_first_fraud,
    terminal_id_last_known_label, terminal_id_risk_since_first_fraud,
    terminal_id_compromise_day, customer_quartic_mean_amount_14day_to_baseline_ratio,
    terminal_id_min_fraud_amount_30day_window, terminal_id_max_fraud_amount_30day_window,
    score, prediction, threshold, model_version, reasons, produced_at, arrived_at, stream_refresh_time, scored_at
)
WITH scored AS (
    SELECT f.*,
           ${MODEL_FUNCTION}(
           f.tx_amount, f.tx_during_weekend, f.tx_during_night, f.customer_id_nb_tx_1day_window,
           f.customer_id_avg_amount_1day_window, f.customer_id_nb_tx_7day_window,
           f.customer_id_avg_amount_7day_window, f.customer_id_nb_tx_30day_window,
           f.customer_id_avg_amount_30day_window, f.terminal_id_nb_tx_1day_window,
           f.terminal_id_risk_1day_window, f.terminal_id_nb_tx_7day_window,
           f.terminal_id_risk_7day_window, f.terminal_id_nb_tx_30day_window,
           f.terminal_id_risk_30day_window, f.customer_id_nb_tx_baseline_window,
           f.customer_id_avg_amount_baseline_window, f.amount_to_baseline_ratio,
           f.customer_avg_amount_14day_to_baseline_ratio, f.terminal_id_days_since_last_fraud,
           f.terminal_id_days_since_first_fraud, f.terminal_id_last_known_label, f.terminal_id_risk_since_first_fraud,
           f.terminal_id_compromise_day, f.customer_quartic_mean_amount_14day_to_baseline_ratio,
           f.terminal_id_min_fraud_amount_30day_window, f.terminal_id_max_fraud_amount_30day_window
           ) AS score
    FROM tx_features f
    WHERE f.source = 'stream'
),
signals AS (
    SELECT transaction_id, amount_to_baseline_ratio AS strength,
           'amount ' || CAST(ROUND(amount_to_baseline_ratio, 1) AS decimal(12, 1))::varchar
           || 'x this card''s usual spending' AS reason
    FROM scored WHERE amount_to_baseline_ratio >= 2
    UNION ALL
    SELECT transaction_id, 10 * terminal_id_risk_30day_window,
           'terminal had ' || CAST(ROUND(100 * terminal_id_risk_30day_window) AS integer)::varchar
           || '% fraud in the 30 days before the label delay'
    FROM scored WHERE terminal_id_risk_30day_window >= 0.05
    UNION ALL
    SELECT transaction_id, 10 * terminal_id_risk_7day_window,
           'terminal had ' || CAST(ROUND(100 * terminal_id_risk_7day_window) AS integer)::varchar
           || '% fraud in the 7 days before the label delay'
    FROM scored WHERE terminal_id_risk_7day_window >= 0.1
    UNION ALL
    SELECT transaction_id, 4 - terminal_id_days_since_last_fraud / 10,
           'terminal''s last known fraud was ' || CAST(ROUND(terminal_id_days_since_last_fraud + 7) AS integer)::varchar
           || ' days ago'
    FROM scored WHERE terminal_id_days_since_last_fraud < 14
    UNION ALL
    SELECT transaction_id, customer_avg_amount_14day_to_baseline_ratio,
           'card''s last 14 days average ' || CAST(ROUND(customer_avg_amount_14day_to_baseline_ratio, 1) AS decimal(12, 1))::varchar
           || 'x its usual amount'
    FROM scored WHERE customer_avg_amount_14day_to_baseline_ratio >= 1.5
    UNION ALL
    SELECT transaction_id, customer_quartic_mean_amount_14day_to_baseline_ratio,
           'card''s other amounts in the last 14 days ' || CAST(ROUND(customer_quartic_mean_amount_14day_to_baseline_ratio, 1) AS decimal(12, 1))::varchar
           || 'x its usual (quartic mean: spikes weigh most)'
    FROM scored WHERE customer_quartic_mean_amount_14day_to_baseline_ratio >= 2
    UNION ALL
    SELECT transaction_id, customer_id_nb_tx_1day_window / 3,
           CAST(customer_id_nb_tx_1day_window AS integer)::varchar || ' transactions on this card in the last day'
    FROM scored WHERE customer_id_nb_tx_1day_window >= 6
),
ranked AS (
    SELECT transaction_id, reason, strength,
           ROW_NUMBER() OVER (PARTITION BY transaction_id ORDER BY strength DESC, reason) AS signal_rank
    FROM signals
),
reasons AS (
    SELECT transaction_id, LISTAGG(reason, '; ') WITHIN GROUP (ORDER BY signal_rank) AS reasons
    FROM ranked
    WHERE signal_rank <= 3
    GROUP BY transaction_id
)
SELECT s.transaction_id, s.tx_datetime, s.customer_id, s.terminal_id, s.tx_amount,
       s.tx_during_weekend, s.tx_during_night, s.customer_id_nb_tx_1day_window,
       s.customer_id_avg_amount_1day_window, s.customer_id_nb_tx_7day_window,
       s.customer_id_avg_amount_7day_window, s.customer_id_nb_tx_30day_window,
       s.customer_id_avg_amount_30day_window, s.terminal_id_nb_tx_1day_window,
       s.terminal_id_risk_1day_window, s.terminal_id_nb_tx_7day_window,
       s.terminal_id_risk_7day_window, s.terminal_id_nb_tx_30day_window,
       s.terminal_id_risk_30day_window, s.customer_id_nb_tx_baseline_window,
       s.customer_id_avg_amount_baseline_window, s.amount_to_baseline_ratio,
       s.customer_avg_amount_14day_to_baseline_ratio, s.terminal_id_days_since_last_fraud,
       s.terminal_id_days_since_first_fraud, s.terminal_id_last_known_label, s.terminal_id_risk_since_first_fraud,
       s.terminal_id_compromise_day, s.customer_quartic_mean_amount_14day_to_baseline_ratio,
       s.terminal_id_min_fraud_amount_30day_window, s.terminal_id_max_fraud_amount_30day_window,
       s.score,
       CASE WHEN s.score >= CAST(:threshold AS float8) THEN 1 ELSE 0 END,
       CAST(:threshold AS float8),
       '${MODEL_NAME}',
       r.reasons,
       s.produced_at, s.arrived_at, s.stream_refresh_time, SYSDATE
FROM scored s
LEFT JOIN reasons r ON r.transaction_id = s.transaction_id;
