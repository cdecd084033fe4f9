-- Streaming ingestion: the transaction and label streams as external schemas, parsed by streaming
-- materialized views. Malformed records (not UTF-8, not JSON) are kept out of the parsed views by
-- their WHERE and land in the *_rejects view, so they are counted and never stop ingestion. A missing
-- field becomes NULL (NULLIF '': json_extract_path_text returns '' for a missing key, which would not
-- cast); such rows stay in the MV, are counted by ops_dropped_records and are never scored.
CREATE EXTERNAL SCHEMA IF NOT EXISTS kinesis_tx
FROM KINESIS
IAM_ROLE ${IAM_ROLE};

CREATE EXTERNAL SCHEMA IF NOT EXISTS kinesis_labels
FROM KINESIS
IAM_ROLE ${IAM_ROLE};

CREATE MATERIALIZED VIEW cust_payment_tx_stream
AUTO REFRESH YES
AS
SELECT approximate_arrival_timestamp,
       partition_key,
       shard_id,
       sequence_number,
       refresh_time,
       NULLIF(json_extract_path_text(from_varbyte(kinesis_data, 'utf-8'), 'TRANSACTION_ID'), '')::bigint AS transaction_id,
       NULLIF(json_extract_path_text(from_varbyte(kinesis_data, 'utf-8'), 'TX_DATETIME'), '')::timestamp AS tx_datetime,
       NULLIF(json_extract_path_text(from_varbyte(kinesis_data, 'utf-8'), 'CUSTOMER_ID'), '')::int AS customer_id,
       NULLIF(json_extract_path_text(from_varbyte(kinesis_data, 'utf-8'), 'TERMINAL_ID'), '')::int AS terminal_id,
       NULLIF(json_extract_path_text(from_varbyte(kinesis_data, 'utf-8'), 'TX_AMOUNT'), '')::decimal(18, 2) AS tx_amount,
       NULLIF(json_extract_path_text(from_varbyte(kinesis_data, 'utf-8'), 'TX_TIME_SECONDS'), '')::int AS tx_time_seconds,
       NULLIF(json_extract_path_text(from_varbyte(kinesis_data, 'utf-8'), 'TX_TIME_DAYS'), '')::int AS tx_time_days,
       NULLIF(json_extract_path_text(from_varbyte(kinesis_data, 'utf-8'), 'PRODUCED_AT'), '')::bigint AS produced_at
FROM kinesis_tx."${TX_STREAM}"
WHERE is_utf8(kinesis_data) AND can_json_parse(kinesis_data);

CREATE MATERIALIZED VIEW cust_payment_label_stream
AUTO REFRESH YES
AS
SELECT approximate_arrival_timestamp,
       partition_key,
       shard_id,
       sequence_number,
       refresh_time,
       NULLIF(json_extract_path_text(from_varbyte(kinesis_data, 'utf-8'), 'TRANSACTION_ID'), '')::bigint AS transaction_id,
       NULLIF(json_extract_path_text(from_varbyte(kinesis_data, 'utf-8'), 'TX_FRAUD'), '')::int AS tx_fraud,
       NULLIF(json_extract_path_text(from_varbyte(kinesis_data, 'utf-8'), 'LABELLED_AT'), '')::varchar(40) AS labelled_at
FROM kinesis_labels."${LABEL_STREAM}"
WHERE is_utf8(kinesis_data) AND can_json_parse(kinesis_data);

-- The records the parsed views leave out, kept (metadata only) so they are counted, not lost silently.
CREATE MATERIALIZED VIEW cust_payment_tx_rejects
AUTO REFRESH YES
AS
SELECT approximate_arrival_timestamp, partition_key, shard_id, sequence_number, refresh_time
FROM kinesis_tx."${TX_STREAM}"
WHERE NOT (is_utf8(kinesis_data) AND can_json_parse(kinesis_data));
