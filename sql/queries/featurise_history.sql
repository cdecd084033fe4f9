-- Features of history transactions not featurised yet, by THE definition (tx_features).
-- Used by backfills (`python -m local features`) and before training on newly loaded history.
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
