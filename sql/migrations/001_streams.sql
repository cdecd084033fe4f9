-- Streaming ingestion: the transaction and label streams as external schemas, parsed by streaming
-- materialized views. No record can make a refresh fail, since a failed refresh would stop ingestion
-- for every record behind it:
-- - records that are not UTF-8, not JSON, or over JSON_EXTRACT_PATH_TEXT's 64 KB input limit are
--   kept out of the parsed views by their WHERE and land in the *_rejects view, so they are counted;
-- - a field is cast with TRY_CAST, so a wrong type becomes NULL instead of an error. A missing field
--   is NULL too (NULLIF '': json_extract_path_text returns '' for a missing key, and TRY_CAST refuses
--   blank input). Such rows stay in the MV, are counted by ops_dropped_records and are never scored.
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
       TRY_CAST(NULLIF(TRIM(json_extract_path_text(from_varbyte(kinesis_data, 'utf-8'), 'TRANSACTION_ID')), '') AS bigint) AS transaction_id,
       TRY_CAST(NULLIF(TRIM(json_extract_path_text(from_varbyte(kinesis_data, 'utf-8'), 'TX_DATETIME')), '') AS timestamp) AS tx_datetime,
       TRY_CAST(NULLIF(TRIM(json_extract_path_text(from_varbyte(kinesis_data, 'utf-8'), 'CUSTOMER_ID')), '') AS int) AS customer_id,
       TRY_CAST(NULLIF(TRIM(json_extract_path_text(from_varbyte(kinesis_data, 'utf-8'), 'TERMINAL_ID')), '') AS int) AS terminal_id,
       TRY_CAST(NULLIF(TRIM(json_extract_path_text(from_varbyte(kinesis_data, 'utf-8'), 'TX_AMOUNT')), '') AS decimal(18, 2)) AS tx_amount,
       TRY_CAST(NULLIF(TRIM(json_extract_path_text(from_varbyte(kinesis_data, 'utf-8'), 'TX_TIME_SECONDS')), '') AS int) AS tx_time_seconds,
       TRY_CAST(NULLIF(TRIM(json_extract_path_text(from_varbyte(kinesis_data, 'utf-8'), 'TX_TIME_DAYS')), '') AS int) AS tx_time_days,
       TRY_CAST(NULLIF(TRIM(json_extract_path_text(from_varbyte(kinesis_data, 'utf-8'), 'PRODUCED_AT')), '') AS bigint) AS produced_at
FROM kinesis_tx."${TX_STREAM}"
WHERE is_utf8(kinesis_data) AND can_json_parse(kinesis_data) AND OCTET_LENGTH(kinesis_data) <= 65535;

CREATE MATERIALIZED VIEW cust_payment_label_stream
AUTO REFRESH YES
AS
SELECT approximate_arrival_timestamp,
       partition_key,
       shard_id,
       sequence_number,
       refresh_time,
       TRY_CAST(NULLIF(TRIM(json_extract_path_text(from_varbyte(kinesis_data, 'utf-8'), 'TRANSACTION_ID')), '') AS bigint) AS transaction_id,
       TRY_CAST(NULLIF(TRIM(json_extract_path_text(from_varbyte(kinesis_data, 'utf-8'), 'TX_FRAUD')), '') AS int) AS tx_fraud,
       NULLIF(json_extract_path_text(from_varbyte(kinesis_data, 'utf-8'), 'LABELLED_AT'), '')::varchar(40) AS labelled_at
FROM kinesis_labels."${LABEL_STREAM}"
WHERE is_utf8(kinesis_data) AND can_json_parse(kinesis_data) AND OCTET_LENGTH(kinesis_data) <= 65535;

-- The records the parsed views leave out, kept (metadata only) so they are counted, not lost silently.
CREATE MATERIALIZED VIEW cust_payment_tx_rejects
AUTO REFRESH YES
AS
SELECT approximate_arrival_timestamp, partition_key, shard_id, sequence_number, refresh_time
FROM kinesis_tx."${TX_STREAM}"
WHERE NOT (is_utf8(kinesis_data) AND can_json_parse(kinesis_data) AND OCTET_LENGTH(kinesis_data) <= 65535);
