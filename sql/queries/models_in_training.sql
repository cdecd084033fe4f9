-- Versions whose CREATE MODEL has not settled yet.
SELECT model_name, function_name, created_at
FROM model_registry
WHERE status = 'training'
ORDER BY created_at;
