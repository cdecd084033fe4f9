-- The article's second analysis: predictions against ground truth on a test period, as a
-- confusion matrix. Labelled transactions of the period (history and labelled stream), scored by
-- ${MODEL_FUNCTION}. Parameters: :start_time, :end_time (tx_datetime range, end excluded), :threshold.
SELECT actual, predicted, COUNT(*) AS transactions
FROM (
    SELECT tx_fraud AS actual,
           CASE WHEN ${MODEL_FUNCTION}(
                    tx_amount,
                    tx_during_weekend, tx_during_night, customer_id_nb_tx_1day_window,
       customer_id_avg_amount_1day_window, customer_id_nb_tx_7day_window, customer_id_avg_amount_7day_window,
       customer_id_nb_tx_30day_window, customer_id_avg_amount_30day_window, terminal_id_nb_tx_1day_window,
       terminal_id_risk_1day_window, terminal_id_nb_tx_7day_window, terminal_id_risk_7day_window,
       terminal_id_nb_tx_30day_window, terminal_id_risk_30day_window, customer_id_nb_tx_baseline_window,
       customer_id_avg_amount_baseline_window, amount_to_baseline_ratio, customer_avg_amount_14day_to_baseline_ratio,
       terminal_id_days_since_last_fraud, terminal_id_days_since_first_fraud, terminal_id_last_known_label, terminal_id_risk_since_first_fraud,
       terminal_id_compromise_day, customer_quartic_mean_amount_14day_to_baseline_ratio,
       terminal_id_min_fraud_amount_30day_window, terminal_id_max_fraud_amount_30day_window
                ) >= CAST(:threshold AS float8) THEN 1 ELSE 0 END AS predicted
    FROM training_set
    WHERE tx_datetime >= CAST(:start_time AS timestamp) AND tx_datetime < CAST(:end_time AS timestamp)
) predictions
GROUP BY actual, predicted
ORDER BY actual, predicted;
