-- The article's first analysis: fraud and non-fraud transactions of the history, per month.
SELECT TO_CHAR(tx_datetime, 'YYYYMM') AS year_month,
       SUM(CASE WHEN tx_fraud = 1 THEN 1 ELSE 0 END) AS fraud_tx,
       SUM(CASE WHEN tx_fraud = 0 THEN 1 ELSE 0 END) AS non_fraud_tx,
       COUNT(*) AS total_tx
FROM cust_payment_tx_history
GROUP BY 1
ORDER BY 1;
