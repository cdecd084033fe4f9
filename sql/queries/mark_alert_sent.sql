-- One alert leaves the outbox after SNS accepted it. Parameters: :transaction_id, :message_id.
UPDATE fraud_alerts
SET status = 'sent', message_id = :message_id, sent_at = getdate(), attempts = attempts + 1
WHERE transaction_id = CAST(:transaction_id AS bigint) AND status = 'pending';
