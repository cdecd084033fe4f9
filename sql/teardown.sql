-- Drop every object sql/migrations creates, run by apply_sql on stack Delete only when the stack's
-- DropWarehouseObjectsOnDelete parameter is "true" (otherwise the warehouse keeps its data).
-- Dependants first (no CASCADE: an object someone else built on ours stops the teardown with an
-- error instead of vanishing with it). IF EXISTS everywhere, so a partly applied or partly torn
-- down warehouse tears down cleanly and a second run is harmless.
--
-- Models: train_model names every version <MODEL_NAME>_v<UTC timestamp> (fraud_common.training), so
-- no model name is fixed and static SQL cannot name them; the versions listed in model_registry
-- (dropped below) stay in the database until dropped one by one with DROP MODEL <model_name>.

-- 007: the article's views
DROP VIEW IF EXISTS baseline_terminal_transformations;
DROP VIEW IF EXISTS baseline_customer_transformations;

-- 006: operational views
DROP VIEW IF EXISTS ops_dropped_records;
DROP VIEW IF EXISTS ops_scoring_lag;
DROP VIEW IF EXISTS ops_ingestion_lag;

-- 005: training set (over history_features, fraud_scores, stream_labels)
DROP VIEW IF EXISTS training_set;

-- 004: features (tx_features -> feature_targets -> tx_events -> stream views), then its tables
DROP VIEW IF EXISTS tx_features;
DROP VIEW IF EXISTS feature_targets;
DROP VIEW IF EXISTS tx_events;
DROP VIEW IF EXISTS stream_ids_in_history;
DROP VIEW IF EXISTS stream_labels;
DROP VIEW IF EXISTS stream_transactions;
DROP TABLE IF EXISTS fraud_scores;
DROP TABLE IF EXISTS history_features;

-- 003: the product's tables
DROP TABLE IF EXISTS fraud_alerts;
DROP TABLE IF EXISTS model_registry;

-- 002: history and customers
DROP TABLE IF EXISTS customer_info;
DROP TABLE IF EXISTS cust_payment_tx_history;

-- 001: streaming MVs, then the external schemas they read
DROP MATERIALIZED VIEW IF EXISTS cust_payment_tx_rejects;
DROP MATERIALIZED VIEW IF EXISTS cust_payment_label_stream;
DROP MATERIALIZED VIEW IF EXISTS cust_payment_tx_stream;
DROP SCHEMA IF EXISTS kinesis_labels;
DROP SCHEMA IF EXISTS kinesis_tx;

-- The migration ledger last: a teardown that stops halfway leaves it, and the next Create re-applies
-- nothing it still records (rerun the teardown instead).
DROP TABLE IF EXISTS schema_migrations;
