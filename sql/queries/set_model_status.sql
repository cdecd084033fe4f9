-- Parameters: :model_name, :status (training / ready / failed / promoted / retired).
UPDATE model_registry
SET status = :status
WHERE model_name = :model_name;
