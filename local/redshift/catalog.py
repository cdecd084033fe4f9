"""The emulator's own metadata, kept in the DuckDB file (schema `redshift_sys`) so that a restart keeps
external schemas, materialized views and their stream checkpoints; and the Redshift system views
an operator reads (SYS_STREAM_SCAN_STATES, SYS_STREAM_SCAN_ERRORS, SYS_MV_REFRESH_HISTORY, STV_MV_INFO),
with Redshift's column names. Every connection has `redshift_sys` on its search path, so the views
resolve unqualified, as system views do on Redshift.
"""

from __future__ import annotations

import duckdb

SCHEMA = "redshift_sys"

_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE SEQUENCE IF NOT EXISTS {SCHEMA}.query_ids START 1000;
CREATE TABLE IF NOT EXISTS {SCHEMA}.external_schemas (
    schema_name VARCHAR PRIMARY KEY, source VARCHAR NOT NULL, iam_role VARCHAR, created_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS {SCHEMA}.materialized_views (
    mv_name VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL, auto_refresh BOOLEAN NOT NULL,
    definition VARCHAR NOT NULL, query_sql VARCHAR NOT NULL, filter_sql VARCHAR,
    external_schema VARCHAR, stream_name VARCHAR, created_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS {SCHEMA}.stream_checkpoints (
    mv_name VARCHAR, shard_id VARCHAR, sequence_number VARCHAR, updated_at TIMESTAMP,
    PRIMARY KEY (mv_name, shard_id));
CREATE TABLE IF NOT EXISTS {SCHEMA}.sys_stream_scan_states (
    external_schema_name VARCHAR, stream_name VARCHAR, mv_name VARCHAR, transaction_id BIGINT,
    query_id BIGINT, record_time TIMESTAMP, partition_id VARCHAR, latest_position VARCHAR,
    scanned_rows BIGINT, skipped_rows BIGINT, scanned_bytes BIGINT,
    stream_record_time_min TIMESTAMP, stream_record_time_max TIMESTAMP);
CREATE TABLE IF NOT EXISTS {SCHEMA}.sys_stream_scan_errors (
    external_schema_name VARCHAR, stream_name VARCHAR, mv_name VARCHAR, transaction_id BIGINT,
    query_id BIGINT, stream_timestamp_type VARCHAR, stream_timestamp TIMESTAMP, record_time TIMESTAMP,
    partition_id VARCHAR, "position" VARCHAR, error_code INTEGER, error_reason VARCHAR);
CREATE TABLE IF NOT EXISTS {SCHEMA}.sys_mv_refresh_history (
    user_id INTEGER, session_id INTEGER, transaction_id BIGINT, database_name VARCHAR,
    schema_name VARCHAR, mv_id BIGINT, mv_name VARCHAR, refresh_type VARCHAR, status VARCHAR,
    start_time TIMESTAMP, end_time TIMESTAMP, duration BIGINT);
CREATE OR REPLACE VIEW {SCHEMA}.stv_mv_info AS
    SELECT 'dev' AS db_name, 'public' AS schema, mv_name AS name, 0::BIGINT AS updated_upto_xid,
           CASE WHEN kind = 'streaming' THEN 'f' ELSE 't' END AS is_stale, 'admin' AS owner_user_name,
           CASE WHEN kind = 'streaming' THEN 1 ELSE 0 END AS state,
           CASE WHEN auto_refresh THEN 't' ELSE 'f' END AS autorefresh, 'f' AS autorewrite
    FROM {SCHEMA}.materialized_views;
"""

SEARCH_PATH = f"main,{SCHEMA}"


def install(con: duckdb.DuckDBPyConnection) -> None:
    """Create the emulator's catalog tables and system views if they do not exist yet."""
    con.execute(_DDL)


def next_query_id(con: duckdb.DuckDBPyConnection) -> int:
    return con.execute(f"SELECT nextval('{SCHEMA}.query_ids')").fetchone()[0]
