"""Redshift functions DuckDB lacks, as DuckDB macros installed on every connection the engine opens.

Macros (not Python UDFs) so that they run vectorised inside DuckDB: streaming ingestion evaluates
a view's projection over whole batches with them. Typed overloads give VARBYTE and VARCHAR
arguments Redshift's behaviour for each.
"""

from __future__ import annotations

import duckdb

# JSON_EXTRACT_PATH_TEXT refuses documents over 64 KB on Redshift; so does the emulator.
JSON_TEXT_LIMIT = 65535
JSON_TEXT_LIMIT_ERROR = "JSON document exceeds the 64 KB limit of JSON_EXTRACT_PATH_TEXT"

# The clock override lives in a per-connection variable (set by the engine before each statement
# when the simulated clock changed); NULL means "use the wall clock". Redshift's clock is UTC.
_MACROS = [
    """redshift_sysdate() AS coalesce(getvariable('emulator_clock'),
        CAST(timezone('UTC', current_timestamp) AS TIMESTAMP))""",
    # GETDATE has no fractional seconds on Redshift; SYSDATE has microseconds.
    "redshift_getdate() AS date_trunc('second', redshift_sysdate())",
    "from_varbyte(b BLOB, enc VARCHAR) AS decode(b), (s VARCHAR, enc VARCHAR) AS s",
    "to_varbyte(s VARCHAR, enc VARCHAR) AS encode(s), (b BLOB, enc VARCHAR) AS b",
    "is_utf8(b BLOB) AS coalesce(try(decode(b)) IS NOT NULL, b IS NULL AND NULL), (s VARCHAR) AS s IS NOT NULL",
    """can_json_parse(b BLOB) AS coalesce(json_valid(try(decode(b))), false),
       (s VARCHAR) AS coalesce(json_valid(s), false)""",
    # Redshift returns '' for a path that is absent; an invalid document is an error (as on Redshift),
    # and so is one over 64 KB, JSON_EXTRACT_PATH_TEXT's input limit (a streaming MV skips that record).
    f"""redshift_json_text(j, path) AS CASE WHEN strlen(CAST(j AS VARCHAR)) > {JSON_TEXT_LIMIT}
       THEN error('{JSON_TEXT_LIMIT_ERROR}')
       ELSE coalesce(json_extract_string(CAST(j AS VARCHAR), path), '') END""",
    "json_serialize(j) AS CAST(j AS VARCHAR)",
    "json_extract_array_element_text(j, i) AS coalesce(json_extract_string(CAST(j AS VARCHAR), i), '')",
    "is_valid_json(s) AS coalesce(json_valid(s), false)",
    "charindex(needle, hay) AS strpos(hay, needle)",
    "redshift_trunc(ts TIMESTAMP) AS CAST(ts AS DATE), (x) AS trunc(x)",
]


def install(con: duckdb.DuckDBPyConnection) -> None:
    """Create the Redshift function macros on one connection (they are per-connection temp objects)."""
    for macro in _MACROS:
        con.execute(f"CREATE OR REPLACE TEMP MACRO {macro}")
