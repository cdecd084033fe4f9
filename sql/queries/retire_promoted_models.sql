-- Run with promote_model in one transaction: every other promoted version retires.
-- Parameters: :model_name (the version being promoted).
UPDATE model_registry
SET status = 'retired'
WHERE status = 'promoted' AND model_name <> :model_name;
