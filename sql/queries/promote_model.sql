-- Parameters: :model_name.
UPDATE model_registry
SET status = 'promoted', promoted_at = getdate()
WHERE model_name = :model_name;
