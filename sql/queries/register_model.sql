-- A new model version, before CREATE MODEL starts. Parameters: :model_name, :function_name.
INSERT INTO model_registry (model_name, function_name, status, created_at)
VALUES (:model_name, :function_name, 'training', getdate());
