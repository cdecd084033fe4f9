-- The training set: every labelled transaction with the features it had at its own time, from the
-- history (history_features) and from the stream once its label arrived (fraud_scores + stream_labels).
CREATE OR REPLACE VIEW training_set AS
SELECT transaction_id, tx_datetime, 'history'::varchar(8) AS source, tx_amount,
       tx_during_weekend, tx_during_night, customer_id_nb_tx_1day_window,
       customer_id_avg_amount_1day_window, customer_id_nb_tx_7day_window, customer_id_avg_amount_7day_window,
       customer_id_nb_tx_30day_window, customer_id_avg_amount_30day_window, terminal_id_nb_tx_1day_window,
       terminal_id_risk_1day_window, terminal_id_nb_tx_7day_window, terminal_id_risk_7day_window,
       terminal_id_nb_tx_30day_window, terminal_id_risk_30day_window, customer_id_nb_tx_baseline_window,
       customer_id_avg_amount_baseline_window, amount_to_baseline_ratio, customer_avg_amount_14day_to_baseline_ratio,
       terminal_id_days_since_last_fraud, terminal_id_days_since_first_fraud, terminal_id_last_known_label,
       terminal_id_risk_since_first_fraud, terminal_id_compromise_day, customer_quartic_mean_amount_14day_to_baseline_ratio,
       terminal_id_min_fraud_amount_30day_window, terminal_id_max_fraud_amount_30day_window,
       tx_fraud
FROM history_features
WHERE tx_fraud IS NOT NULL
UNION ALL
SELECT s.transaction_id, s.tx_datetime, 'stream'::varchar(8) AS source, s.tx_amount,
       s.tx_during_weekend, s.tx_during_night, s.customer_id_nb_tx_1day_window,
       s.customer_id_avg_amount_1day_window, s.customer_id_nb_tx_7day_window, s.customer_id_avg_amount_7day_window,
       s.customer_id_nb_tx_30day_window, s.customer_id_avg_amount_30day_window, s.terminal_id_nb_tx_1day_window,
       s.terminal_id_risk_1day_window, s.terminal_id_nb_tx_7day_window, s.terminal_id_risk_7day_window,
       s.terminal_id_nb_tx_30day_window, s.terminal_id_risk_30day_window, s.customer_id_nb_tx_baseline_window,
       s.customer_id_avg_amount_baseline_window, s.amount_to_baseline_ratio, s.customer_avg_amount_14day_to_baseline_ratio,
       s.terminal_id_days_since_last_fraud, s.terminal_id_days_since_first_fraud, s.terminal_id_last_known_label,
       s.terminal_id_risk_since_first_fraud, s.terminal_id_compromise_day,
       s.customer_quartic_mean_amount_14day_to_baseline_ratio, s.terminal_id_min_fraud_amount_30day_window, s.terminal_id_max_fraud_amount_30day_window,
       l.tx_fraud
FROM fraud_scores s
JOIN stream_labels l ON l.transaction_id = s.transaction_id;

-- Featurise the history loaded by COPY (002), so the first CREATE MODEL has a training set. Later
-- history loads are featurised by the named query featurise_history (same statement).
INSERT INTO history_features
SELECT transaction_id, tx_datetime, customer_id, terminal_id, tx_amount, tx_fraud, source,
       tx_during_weekend, tx_during_night, customer_id_nb_tx_1day_window,
       customer_id_avg_amount_1day_window, customer_id_nb_tx_7day_window, customer_id_avg_amount_7day_window,
       customer_id_nb_tx_30day_window, customer_id_avg_amount_30day_window, terminal_id_nb_tx_1day_window,
       terminal_id_risk_1day_window, terminal_id_nb_tx_7day_window, terminal_id_risk_7day_window,
       terminal_id_nb_tx_30day_window, terminal_id_risk_30day_window, customer_id_nb_tx_baseline_window,
       customer_id_avg_amount_baseline_window, amount_to_baseline_ratio, customer_avg_amount_14day_to_baseline_ratio,
       terminal_id_days_since_last_fraud, terminal_id_days_since_first_fraud, terminal_id_last_known_label,
       terminal_id_risk_since_first_fraud, terminal_id_compromise_day, customer_quartic_mean_amount_14day_to_baseline_ratio,
       terminal_id_min_fraud_amount_30day_window, terminal_id_max_fraud_amount_30day_window
FROM tx_features
WHERE source = 'history';
