-- The product's own tables: model versions, scores (one row per transaction id) and the alert outbox.
CREATE TABLE IF NOT EXISTS model_registry (
    model_name varchar(127) NOT NULL,
    function_name varchar(127) NOT NULL,
    status varchar(16) NOT NULL,  -- training / ready / failed / promoted / retired
    validation_metric float8,
    created_at timestamp NOT NULL DEFAULT getdate(),
    promoted_at timestamp
);

CREATE TABLE IF NOT EXISTS fraud_alerts (
    transaction_id bigint NOT NULL,
    score float8 NOT NULL,
    model_version varchar(127) NOT NULL,
    reasons varchar(1000),
    status varchar(16) NOT NULL DEFAULT 'pending',  -- pending / sent
    attempts integer NOT NULL DEFAULT 0,
    message_id varchar(128),
    enqueued_at timestamp NOT NULL DEFAULT getdate(),
    sent_at timestamp
)
DISTKEY (transaction_id);
