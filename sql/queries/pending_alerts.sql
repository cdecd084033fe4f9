-- The outbox's pending alerts, oldest first, with what the alert message carries.
-- Parameters: :limit.
SELECT a.transaction_id, s.tx_datetime, s.customer_id, s.terminal_id, s.tx_amount,
       a.score, a.model_version, a.reasons, a.attempts,
       c.full_name, c.email_address, c.phone_number,
       s.produced_at, s.arrived_at, s.scored_at, a.enqueued_at
FROM fraud_alerts a
JOIN fraud_scores s ON s.transaction_id = a.transaction_id
LEFT JOIN customer_info c ON c.customer_id = s.customer_id
WHERE a.status = 'pending'
ORDER BY a.enqueued_at, a.transaction_id
LIMIT :limit;
