-- Operational views: is data flowing, is scoring keeping up, what was dropped.

-- Ingestion: how far the transaction stream's MV is behind Kinesis arrival, over the last hour.
CREATE OR REPLACE VIEW ops_ingestion_lag AS
SELECT COUNT(*) AS records_last_hour,
       MAX(approximate_arrival_timestamp) AS last_arrival,
       MAX(refresh_time) AS last_refresh,
       AVG(DATEDIFF(millisecond, approximate_arrival_timestamp, refresh_time)) / 1000.0 AS avg_lag_seconds,
       MAX(DATEDIFF(millisecond, approximate_arrival_timestamp, refresh_time)) / 1000.0 AS max_lag_seconds
FROM cust_payment_tx_stream
WHERE approximate_arrival_timestamp > DATEADD(hour, -1, getdate());

-- Scoring: arrival-to-score latency over the last hour, and stream transactions still unscored.
CREATE OR REPLACE VIEW ops_scoring_lag AS
SELECT (SELECT COUNT(*) FROM fraud_scores WHERE scored_at > DATEADD(hour, -1, getdate())) AS scored_last_hour,
       (SELECT AVG(DATEDIFF(millisecond, arrived_at, scored_at)) / 1000.0
        FROM fraud_scores WHERE scored_at > DATEADD(hour, -1, getdate())) AS avg_arrival_to_score_seconds,
       (SELECT MAX(DATEDIFF(millisecond, arrived_at, scored_at)) / 1000.0
        FROM fraud_scores WHERE scored_at > DATEADD(hour, -1, getdate())) AS max_arrival_to_score_seconds,
       (SELECT COUNT(*) FROM stream_transactions s
        WHERE NOT EXISTS (SELECT 1 FROM fraud_scores f WHERE f.transaction_id = s.transaction_id)) AS unscored,
       (SELECT COUNT(*) FROM fraud_alerts WHERE status = 'pending') AS pending_alerts;

-- Dropped records, by reason: not UTF-8 / not JSON / over 64 KB (rejects MV), parsed but a required
-- field missing or of the wrong type, and duplicate deliveries of a transaction id (kept once).
CREATE OR REPLACE VIEW ops_dropped_records AS
SELECT 'unparseable record' AS reason, COUNT(*) AS records FROM cust_payment_tx_rejects
UNION ALL
SELECT 'missing or invalid field', COUNT(*) FROM cust_payment_tx_stream
WHERE transaction_id IS NULL OR tx_datetime IS NULL OR customer_id IS NULL OR terminal_id IS NULL
   OR tx_amount IS NULL
UNION ALL
SELECT 'duplicate transaction id',
       (SELECT COUNT(*) FROM cust_payment_tx_stream WHERE transaction_id IS NOT NULL)
       - (SELECT COUNT(DISTINCT transaction_id) FROM cust_payment_tx_stream WHERE transaction_id IS NOT NULL);
