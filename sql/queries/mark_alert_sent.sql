-- Alerts leave the outbox after SNS accepted them: one statement per PublishBatch, not one per alert.
-- Parameters: :message_ids, a JSON object {"<transaction id>": "<SNS message id>", ...}.
UPDATE fraud_alerts
SET status = 'sent', message_id = json_extract_path_text(:message_ids, CAST(transaction_id AS varchar)),
    sent_at = getdate(), attempts = attempts + 1
WHERE status = 'pending' AND json_extract_path_text(:message_ids, CAST(transaction_id AS varchar)) <> '';
