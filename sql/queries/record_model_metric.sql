-- SHOW MODEL's validation metric for a version. Parameters: :model_name, :metric.
UPDATE model_registry
SET validation_metric = CAST(:metric AS float8)
WHERE model_name = :model_name;
