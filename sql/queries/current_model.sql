-- The promoted model version: its name (written in every score), function and validation metric.
SELECT model_name, function_name, validation_metric, promoted_at
FROM model_registry
WHERE status = 'promoted'
ORDER BY promoted_at DESC, created_at DESC
LIMIT 1;
