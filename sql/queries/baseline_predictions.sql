-- The article's prediction view (cust_payment_tx_fraud_predictions), bugs kept, for the comparison:
-- every stream transaction with the baseline's getdate()-relative features, scored by
-- ${MODEL_FUNCTION}, a model trained on the handbook's 15 inputs (create_model_handbook).
SELECT a.approximate_arrival_timestamp,
  d.full_name, d.email_address, d.phone_number,
  a.TRANSACTION_ID, a.TX_DATETIME, a.CUSTOMER_ID, a.TERMINAL_ID,
  a.TX_AMOUNT, a.TX_TIME_SECONDS, a.TX_TIME_DAYS,
  ${MODEL_FUNCTION}(a.TX_AMOUNT, a.TX_DURING_WEEKEND, a.TX_DURING_NIGHT,
    c.CUSTOMER_ID_NB_TX_1DAY_WINDOW, c.CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW,
    c.CUSTOMER_ID_NB_TX_7DAY_WINDOW, c.CUSTOMER_ID_AVG_AMOUNT_7DAY_WINDOW,
    c.CUSTOMER_ID_NB_TX_30DAY_WINDOW, c.CUSTOMER_ID_AVG_AMOUNT_30DAY_WINDOW,
    t.TERMINAL_ID_NB_TX_1DAY_WINDOW, t.TERMINAL_ID_RISK_1DAY_WINDOW,
    t.TERMINAL_ID_NB_TX_7DAY_WINDOW, t.TERMINAL_ID_RISK_7DAY_WINDOW,
    t.TERMINAL_ID_NB_TX_30DAY_WINDOW, t.TERMINAL_ID_RISK_30DAY_WINDOW) AS Fraud_prediction
FROM (
  SELECT approximate_arrival_timestamp, TRANSACTION_ID, TX_DATETIME, CUSTOMER_ID, TERMINAL_ID,
    TX_AMOUNT, TX_TIME_SECONDS, TX_TIME_DAYS,
    CASE WHEN extract(dow FROM cast(TX_DATETIME AS timestamp)) IN (1,7) THEN 1 ELSE 0 END AS TX_DURING_WEEKEND,
    CASE WHEN extract(hour FROM cast(TX_DATETIME AS timestamp)) BETWEEN 00 AND 06 THEN 1 ELSE 0 END AS TX_DURING_NIGHT
  FROM cust_payment_tx_stream
) a
JOIN baseline_terminal_transformations t ON a.terminal_id = t.terminal_id
JOIN baseline_customer_transformations c ON a.customer_id = c.customer_id
JOIN customer_info d ON a.customer_id = d.customer_id;
