-- Scores at or above the threshold that are not in the outbox yet enter it as pending alerts.
-- Parameters: :threshold.
INSERT INTO fraud_alerts (transaction_id, score, model_version, reasons, status, attempts, enqueued_at)
SELECT s.transaction_id, s.score, s.model_version, s.reasons, 'pending', 0, getdate()
FROM fraud_scores s
WHERE s.score >= CAST(:threshold AS float8)
  AND NOT EXISTS (SELECT 1 FROM fraud_alerts a WHERE a.transaction_id = s.transaction_id);
