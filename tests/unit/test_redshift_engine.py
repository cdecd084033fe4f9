"""Engine behaviour without Kinesis/S3: views, CTAS, regular MVs, restart on the same file, concurrency."""

from __future__ import annotations

import threading
from datetime import datetime

import pytest

from local.redshift.engine import Engine, RedshiftError

pytestmark = pytest.mark.unit


def test_regular_materialized_view_is_recomputed_on_refresh(tmp_path):
    with Engine(tmp_path / "db.duckdb", auto_refresh_interval=None) as engine:
        engine.execute("CREATE TABLE sales (region varchar(10), amount int)")
        engine.execute("INSERT INTO sales VALUES ('eu', 10), ('eu', 5), ('us', 7)")
        engine.execute(
            "CREATE MATERIALIZED VIEW sales_by_region BACKUP NO AUTO REFRESH NO AS "
            "SELECT region, sum(amount) AS total FROM sales GROUP BY region"
        )
        engine.execute("INSERT INTO sales VALUES ('us', 100)")
        # Stale until refreshed, as on Redshift.
        assert engine.execute("SELECT total FROM sales_by_region WHERE region = 'us'").rows == [(7,)]
        engine.execute("REFRESH MATERIALIZED VIEW sales_by_region")
        assert engine.execute("SELECT total FROM sales_by_region WHERE region = 'us'").rows == [(107,)]
        info = engine.execute("SELECT name, state, autorefresh FROM stv_mv_info").rows
        assert info == [("sales_by_region", 0, "f")]
        history = engine.execute("SELECT refresh_type, status FROM sys_mv_refresh_history").rows
        assert history == [("Manual", "Refresh successfully recomputed MV from scratch")]
        with pytest.raises(RedshiftError, match='relation "sales_by_region" already exists'):
            engine.execute("CREATE MATERIALIZED VIEW sales_by_region AS SELECT 1")


def test_restart_keeps_tables_views_mvs_and_external_schemas(tmp_path):
    path = tmp_path / "db.duckdb"
    with Engine(path, auto_refresh_interval=None) as engine:
        engine.execute("CREATE TABLE t (a int) DISTSTYLE EVEN")
        engine.execute("INSERT INTO t VALUES (1), (2)")
        engine.execute(
            "CREATE VIEW v AS SELECT a * 10 AS b FROM t WHERE a <= (SELECT extract(day FROM getdate()))"
        )
        engine.execute("CREATE TABLE t2 AS SELECT a + 1 AS c FROM t")
        engine.execute("CREATE MATERIALIZED VIEW mv AS SELECT count(*) AS n FROM t")
        engine.execute("CREATE EXTERNAL SCHEMA kin FROM KINESIS IAM_ROLE default")
    with Engine(path, auto_refresh_interval=None) as engine:
        engine.set_clock(datetime(2018, 1, 2))
        assert sorted(engine.execute("SELECT b FROM v").rows) == [(10,), (20,)]
        assert sorted(engine.execute("SELECT c FROM t2").rows) == [(2,), (3,)]
        engine.execute("INSERT INTO t VALUES (3)")
        engine.refresh("mv")
        assert engine.execute("SELECT n FROM mv").rows == [(3,)]
        with pytest.raises(RedshiftError, match='schema "kin" already exists'):
            engine.execute("CREATE EXTERNAL SCHEMA kin FROM KINESIS IAM_ROLE default")


def test_unsupported_external_source_is_a_clear_error():
    with Engine(":memory:", auto_refresh_interval=None) as engine:
        with pytest.raises(RedshiftError, match="FROM MSK is not supported"):
            engine.execute(
                "CREATE EXTERNAL SCHEMA m FROM MSK IAM_ROLE default AUTHENTICATION none CLUSTER_ARN 'x'"
            )
        with pytest.raises(RedshiftError, match="IAM_ROLE must be specified"):
            engine.execute("CREATE EXTERNAL SCHEMA k FROM KINESIS")


def test_concurrent_statements_from_worker_threads(tmp_path):
    """Data API workers call execute() from many threads at once; each gets its own connection."""
    with Engine(tmp_path / "db.duckdb", auto_refresh_interval=0.05) as engine:
        engine.execute("CREATE TABLE events (worker int, n int)")
        engine.execute(
            "CREATE MATERIALIZED VIEW per_worker AUTO REFRESH YES AS SELECT worker, count(*) AS c FROM events GROUP BY worker"
        )
        errors: list[Exception] = []

        def work(worker: int) -> None:
            try:
                for n in range(40):
                    engine.execute("INSERT INTO events VALUES (:w, :n)", {"w": str(worker), "n": str(n)})
                    engine.execute("SELECT count(*) FROM events WHERE worker = :w", {"w": str(worker)})
                engine.set_clock(datetime(2018, 1, 1 + worker))
                engine.execute("SELECT getdate()")
            except Exception as exc:  # collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(w,)) for w in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert engine.execute("SELECT worker, count(*) FROM events GROUP BY worker ORDER BY worker").rows == [
            (w, 40) for w in range(6)
        ]
        engine.refresh("per_worker")
        assert engine.execute("SELECT sum(c) FROM per_worker").rows == [(240,)]


def test_ml_plugin_hook_gets_statements_and_every_connection(monkeypatch):
    """The engine hands CREATE/SHOW/DROP MODEL to the plugin and registers its functions on every connection."""
    import sys
    import types

    calls: dict[str, list] = {"handles": [], "registered": [], "executed": []}

    class FakeManager:
        def __init__(self, engine, data_dir):
            self.data_dir = data_dir

        def handles(self, sql):
            calls["handles"].append(sql)
            return sql.upper().startswith("SHOW MODEL")

        def execute(self, sql, con):
            calls["executed"].append(sql)
            from local.redshift.engine import Column, Result

            return Result(
                columns=[Column("Key", "varchar"), Column("Value", "varchar")], rows=[("Model Name", "m")]
            )

        def register_functions(self, con):
            calls["registered"].append(con)
            import duckdb

            try:
                con.create_function("fake_predict", lambda x: x * 2, ["BIGINT"], "BIGINT")
            except duckdb.CatalogException:
                pass  # DuckDB shares Python UDFs between cursors of one database

        def close(self):
            pass

    module = types.ModuleType("local.redshift.ml")
    module.ModelManager = FakeManager
    monkeypatch.setitem(sys.modules, "local.redshift.ml", module)
    with Engine(":memory:", auto_refresh_interval=None) as engine:
        assert engine.ml.data_dir.name.startswith("redshift-models-")
        assert engine.execute("SHOW MODEL m").rows == [("Model Name", "m")]
        assert engine.execute("SELECT fake_predict(21)").rows == [(42,)]
        other: list = []
        thread = threading.Thread(target=lambda: other.append(engine.execute("SELECT fake_predict(1)").rows))
        thread.start()
        thread.join()
        assert other == [[(2,)]]
        assert len(calls["registered"]) >= 2
        assert calls["executed"] == ["SHOW MODEL m"]


def test_repeated_statements_reuse_their_translation_until_the_schema_changes():
    with Engine(":memory:", auto_refresh_interval=None) as engine:
        engine.execute("CREATE TABLE prices (amount decimal(10, 2))")
        engine.execute("INSERT INTO prices VALUES (10.00)")
        query = "SELECT amount / 3 AS third FROM prices WHERE amount > :floor"
        first = engine.execute(query, {"floor": "1"})
        again = engine.execute(query, {"floor": "1"})
        assert (first.columns, first.rows) == (again.columns, again.rows)
        assert first.columns[0].type_name == "numeric"  # Redshift's DECIMAL division, typed from the table
        assert engine.execute(query, {"floor": "20"}).rows == [], "parameters are part of what is reused"
        # DDL through the engine: the same text is translated again against the new column type
        engine.execute("DROP TABLE prices")
        engine.execute("CREATE TABLE prices (amount float8)")
        engine.execute("INSERT INTO prices VALUES (10.0)")
        retyped = engine.execute(query, {"floor": "1"})
        assert retyped.columns[0].type_name == "float8"
        assert retyped.rows[0][0] == pytest.approx(10 / 3)
        # a batch whose DDL is rolled back leaves no translation made against its schema
        with pytest.raises(RedshiftError, match="missing_table"):
            engine.execute_batch(
                [
                    "DROP TABLE prices",
                    "CREATE TABLE prices (amount decimal(10, 2))",
                    "INSERT INTO prices VALUES (10.00)",
                    query,
                    "SELECT * FROM missing_table",
                ],
                {"floor": "1"},
            )
        assert engine.execute(query, {"floor": "1"}).columns[0].type_name == "float8"
        # a failing statement is not kept: it fails again with the same clear error
        for _ in range(2):
            with pytest.raises(RedshiftError, match="missing_table"):
                engine.execute("SELECT * FROM missing_table")
