"""Redshift ML on the local Redshift emulator: CREATE/SHOW/DROP MODEL, XGBoost training, prediction UDFs.

The engine hands CREATE MODEL / SHOW MODEL / DROP MODEL statements to `ModelManager.execute` and calls
`register_functions` on its connections. Training runs in a background thread per model
(TRAINING -> READY | FAILED); a READY model's prediction function(s) are vectorised Arrow UDFs.

DuckDB detail that shapes this module: a Python UDF lands in the database-wide system catalog
(every cursor sees it) but its Python callable lives only as long as the connection that
registered it; calling it after that connection is closed crashes the process. So every UDF is
registered on one long-lived connection owned by the manager, never on the engine's short-lived
cursors, and `register_functions(con)` only makes sure that has happened.
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa
import sqlglot

from local.redshift import engine as rs

from . import statements as st
from .models import FAILED, READY, TRAINING, ModelRecord, ModelStore, Predictor

if TYPE_CHECKING:
    from local.redshift.engine import Engine, Result

    from . import training

log = logging.getLogger(__name__)

OWNER = "awsuser"
EXPLAIN_FUNCTION = "explain_model"
PROBABILITIES_SUFFIX = "_probabilities"


class ModelManager:
    def __init__(self, engine: Engine, data_dir: Path) -> None:
        self.engine = engine
        self.store = ModelStore(Path(data_dir))
        self._lock = threading.RLock()
        self._models: dict[str, ModelRecord] = {}
        self._predictors: dict[str, Predictor] = {}
        self._threads: dict[str, tuple[threading.Thread, threading.Event]] = {}
        self._registered: dict[str, list[str]] = {}  # model -> UDF names registered for it
        self._closed = False
        self._anchor = engine.cursor()  # owns every UDF (see module docstring)
        self._anchor.create_function(
            EXPLAIN_FUNCTION,
            self._explain_udf,
            [duckdb.sqltypes.VARCHAR],
            duckdb.sqltype("JSON"),
            type="arrow",
            null_handling="special",
            side_effects=True,
        )
        for record, booster in self.store.load_all():
            if record.state == TRAINING:  # the process stopped mid-training: that job is gone
                record.state = FAILED
                record.reason = "the emulator stopped while this model was training; drop and re-create it"
                self.store.save(record)
            self._models[record.name] = record
            if record.state == READY and booster is not None:
                self._activate(record, booster)

    # -- the engine's hook -----------------------------------------------------------------------

    def handles(self, sql: str) -> bool:
        return st.is_model_statement(sql)

    def execute(self, sql: str, con: duckdb.DuckDBPyConnection) -> Result:
        try:
            statement = st.parse(sql)
            if isinstance(statement, st.CreateModel):
                return self._create(statement, con)
            if isinstance(statement, st.ShowModel):
                return self._show(statement.name)
            return self._drop(statement)
        except st.MLStatementError as exc:
            raise rs.RedshiftError(exc.message, exc.code) from exc

    def register_functions(self, con: duckdb.DuckDBPyConnection) -> None:
        """Make the model functions callable on `con`.

        They already are: every READY model's UDFs live in the shared system catalog, registered on
        the manager's own connection (registering on `con` itself would crash once `con` closes).
        """
        if self._closed:
            raise rs.RedshiftError("the Redshift ML emulation is shut down", "57P01")

    def function_names(self) -> set[str]:
        """Names of the callable model functions (for engines that strip schema qualifiers)."""
        with self._lock:
            return {name for names in self._registered.values() for name in names} | {EXPLAIN_FUNCTION}

    def wait(self, name: str, timeout: float = 60.0) -> str:
        """Block until a model leaves TRAINING (tests, benchmarks); returns its state."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                record = self._models.get(name.lower())
                if record is None or record.state != TRAINING:
                    return record.state if record else "DROPPED"
            time.sleep(0.05)
        raise TimeoutError(f"model {name} still TRAINING after {timeout} s")

    def predictor(self, name: str) -> Predictor:
        """The READY model itself, to compare the SQL function with direct predictions."""
        with self._lock:
            return self._predictors[name.lower()]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            threads = list(self._threads.values())
        for _, stop in threads:
            stop.set()
        for thread, _ in threads:
            thread.join(timeout=30)
        with self._lock:
            # Unregister before closing the owning connection: a late call then fails cleanly
            # ("function does not exist") instead of reaching a freed Python callable.
            for function in [EXPLAIN_FUNCTION, *(n for names in self._registered.values() for n in names)]:
                try:
                    self._anchor.remove_function(function)
                except duckdb.Error:
                    pass
            self._registered.clear()
            try:
                self._anchor.close()
            except duckdb.Error:
                pass

    # -- CREATE MODEL --------------------------------------------------------------------------

    def _create(self, s: st.CreateModel, con: duckdb.DuckDBPyConnection) -> Result:
        with self._lock:
            existing = self._models.get(s.name)
            if existing is not None:
                hint = " and is FAILED: drop it before creating it again" if existing.state == FAILED else ""
                raise st.MLStatementError(f'model "{s.name}" already exists{hint}', "42710")
            self._check_function_names(s.function, con)
            # Reserve the name while the query runs, so a concurrent CREATE of the same name fails.
            self._models[s.name] = placeholder = _placeholder(s)
        try:
            table = self._run_query(s.source_sql, con)
            from . import training  # xgboost and sklearn load on first use, not with every Engine

            data = training.prepare(table, s)
            training.check_target(data, s)
        except BaseException:
            with self._lock:
                if self._models.get(s.name) is placeholder:
                    del self._models[s.name]
            raise
        record = _record(s, data)
        stop = threading.Event()
        thread = threading.Thread(
            target=self._train, args=(record, data, s, stop), name=f"train-{s.name}", daemon=True
        )
        with self._lock:
            self._models[s.name] = record
            self.store.save(record)
            self._threads[s.name] = (thread, stop)
        thread.start()
        return rs.Result()

    def _check_function_names(self, function: str, con: duckdb.DuckDBPyConnection) -> None:
        for name in (function, function + PROBABILITIES_SUFFIX):
            for record in self._models.values():
                if name in (record.function, record.function + PROBABILITIES_SUFFIX):
                    raise st.MLStatementError(
                        f'function "{name}" already exists (it belongs to model "{record.name}")', "42723"
                    )
        found = con.execute(
            "SELECT count(*) FROM duckdb_functions() WHERE lower(function_name) = ?", [function]
        ).fetchall()[0][0]
        if found:
            raise st.MLStatementError(f'function "{function}" already exists', "42723")

    def _run_query(self, sql: str, con: duckdb.DuckDBPyConnection) -> pa.Table:
        try:
            duck_sql = _translate(sql)
            return con.sql(duck_sql).to_arrow_table()
        except (duckdb.Error, sqlglot.errors.SqlglotError) as exc:
            raise st.MLStatementError(f"the training query failed: {exc}", "42601") from exc

    def _train(
        self, record: ModelRecord, data: training.TrainingData, s: st.CreateModel, stop: threading.Event
    ) -> None:
        started = time.monotonic()
        try:
            from . import training

            trained = training.train(data, s, stop)
        except (
            Exception
        ) as exc:  # any training failure becomes FAILED with the reason, as Redshift reports it
            log.exception("training model %s failed", record.name)
            self._finish(record, stop, None, f"{type(exc).__name__}: {exc}", time.monotonic() - started)
            return
        self._finish(record, stop, trained, None, time.monotonic() - started)

    def _finish(
        self,
        record: ModelRecord,
        stop: threading.Event,
        trained: training.TrainedModel | None,
        reason: str | None,
        seconds: float,
    ) -> None:
        with self._lock:
            self._threads.pop(record.name, None)
            if self._models.get(record.name) is not record or (stop.is_set() and self._closed):
                return  # dropped while training, or shutting down: leave nothing behind / stay TRAINING on disk
            record.training_seconds = round(seconds, 3)
            if trained is None:
                record.state, record.reason = FAILED, reason
                self.store.save(record)
                return
            record.problem_type = trained.problem_type
            record.objective = trained.objective
            record.xgb_objective = trained.xgb_objective
            record.algorithm = trained.algorithm
            record.classes = _typed_classes(trained.classes, record.target_redshift_type)
            record.metrics = trained.metrics
            record.params = trained.params
            record.num_round = trained.num_round
            record.candidates = trained.candidates
            record.explanation = trained.explanation
            try:
                self._activate(record, trained.booster)
                record.state = READY
            except Exception as exc:  # e.g. a function name DuckDB refuses: the model cannot serve
                log.exception("registering the functions of model %s failed", record.name)
                record.state, record.reason = FAILED, f"registering the prediction function failed: {exc}"
            self.store.save(record, trained.booster if record.state == READY else None)

    # -- prediction functions ------------------------------------------------------------------

    def _activate(self, record: ModelRecord, booster: Any) -> None:
        from . import training

        predictor = Predictor(record, booster)
        params = [duckdb.sqltype(t) for t in record.feature_duck_types]
        n_args = len(params)

        def predict(*columns: pa.Array) -> pa.Array:
            _check_arity(record.function, columns, n_args)
            return predictor.predict(training.features_matrix(list(columns), record.vocabularies))

        _declare_arity(predict, n_args)
        names = [record.function]
        self._anchor.create_function(
            record.function,
            predict,
            params,
            duckdb.sqltype(record.return_duck_type),
            type="arrow",
            null_handling="special",
        )
        if record.has_probabilities:

            def probabilities(*columns: pa.Array) -> pa.Array:
                _check_arity(record.function + PROBABILITIES_SUFFIX, columns, n_args)
                rows = predictor.probabilities(training.features_matrix(list(columns), record.vocabularies))
                return pa.ExtensionArray.from_storage(pa.json_(), pa.array(rows, type=pa.string()))

            _declare_arity(probabilities, n_args)
            self._anchor.create_function(
                record.function + PROBABILITIES_SUFFIX,
                probabilities,
                params,
                duckdb.sqltype("JSON"),
                type="arrow",
                null_handling="special",
            )
            names.append(record.function + PROBABILITIES_SUFFIX)
        self._predictors[record.name] = predictor
        self._registered[record.name] = names

    def _explain_udf(self, names: pa.Array) -> pa.Array:
        out = []
        for qualified in names.to_pylist():
            if qualified is None:
                out.append(None)
                continue
            name = qualified.split(".")[-1].strip('"').lower()
            record = self._models.get(name)  # no lock: training threads hold it while touching the catalog
            if record is None:
                raise ValueError(f'model "{qualified}" does not exist')
            if record.state == READY:
                report: Any = record.explanation
            elif record.state == TRAINING:
                report = {"explanations": "waiting for training job to complete", "version": "1.0"}
            else:
                report = {"explanations": "Processing job failed", "version": "1.0"}
            out.append(json.dumps(report, separators=(",", ":")))
        return pa.ExtensionArray.from_storage(pa.json_(), pa.array(out, type=pa.string()))

    # -- SHOW / DROP ---------------------------------------------------------------------------

    def _show(self, name: str | None) -> Result:
        with self._lock:
            if name is None:
                rows = [
                    (r.schema, r.name)
                    for r in sorted(self._models.values(), key=lambda r: (r.schema, r.name))
                ]
                return rs.Result(
                    [rs.Column("Schema Name", "varchar"), rs.Column("Model Name", "varchar")], rows
                )
            record = self._models.get(name)
            if record is None:
                raise st.MLStatementError(f'model "{name}" does not exist', "42704")
            rows = _show_rows(record)
        return rs.Result([rs.Column("Key", "varchar"), rs.Column("Value", "varchar")], rows)

    def _drop(self, s: st.DropModel) -> Result:
        with self._lock:
            record = self._models.pop(s.name, None)
            if record is None:
                if s.if_exists:
                    return rs.Result()
                raise st.MLStatementError(f'model "{s.name}" does not exist', "42704")
            running = self._threads.pop(s.name, None)
            if running:
                running[1].set()
            for function in self._registered.pop(s.name, []):
                self._anchor.remove_function(function)
            self._predictors.pop(s.name, None)
            self.store.delete(s.name)
        return rs.Result()


def _translate(sql: str) -> str:
    """Redshift SQL -> DuckDB SQL with the engine's translation (sqlglot alone as a fallback)."""
    try:
        from local.redshift.translate import translate
    except ImportError:
        return sqlglot.transpile(sql, read="redshift", write="duckdb")[0]
    return translate(sql)


def _declare_arity(function: Any, n_args: int) -> None:
    """DuckDB counts a UDF's parameters from its signature; *columns would count as one."""
    kind = inspect.Parameter.POSITIONAL_ONLY
    function.__signature__ = inspect.Signature([inspect.Parameter(f"arg{i}", kind) for i in range(n_args)])


def _check_arity(function: str, columns: tuple, expected: int) -> None:
    # DuckDB's binder already refuses a wrong argument count or type; this guards direct calls.
    if len(columns) != expected:
        raise ValueError(f"function {function} takes {expected} arguments, got {len(columns)}")


def _placeholder(s: st.CreateModel) -> ModelRecord:
    return ModelRecord(
        name=s.name,
        schema=s.schema,
        owner=OWNER,
        created_at=_now(),
        state=TRAINING,
        query=s.query_text,
        target=s.target,
        target_duck_type="",
        target_redshift_type="",
        function=s.function,
        feature_names=[],
        feature_duck_types=[],
        feature_redshift_types=[],
        auto=s.auto,
        model_type="",
        iam_role=s.iam_role,
        settings=s.settings,
        hyperparameters=s.hyperparameters,
    )


def _record(s: st.CreateModel, data: training.TrainingData) -> ModelRecord:
    record = _placeholder(s)
    record.target_duck_type = data.target.duck_type
    record.target_redshift_type = data.target.redshift_type
    record.feature_names = [c.name for c in data.features]
    record.feature_duck_types = [c.duck_type for c in data.features]
    record.feature_redshift_types = [c.redshift_type for c in data.features]
    record.vocabularies = [c.vocabulary for c in data.features]
    record.model_type = "auto" if s.auto and s.model_type is None else (s.model_type or "").lower()
    record.problem_type = {
        "BINARY_CLASSIFICATION": "BinaryClassification",
        "MULTICLASS_CLASSIFICATION": "MulticlassClassification",
        "REGRESSION": "Regression",
    }.get(s.problem_type or "")
    record.objective = s.objective
    record.rows_total, record.rows_used = data.rows_total, data.rows_used
    record.job_name = "redshiftml-" + dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S") + uuid.uuid4().hex[:6]
    return record


def _typed_classes(classes: list[Any] | None, redshift_type: str) -> list[Any] | None:
    if classes is None:
        return None
    if redshift_type in ("int2", "int4", "int8"):
        return [int(c) for c in classes]
    if redshift_type == "bool":
        return [bool(c) for c in classes]
    return [c.item() if isinstance(c, np.generic) else c for c in classes]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _show_rows(r: ModelRecord) -> list[tuple[str, str]]:
    created = dt.datetime.fromisoformat(r.created_at).strftime("%a, %d.%m.%Y %H:%M:%S")
    rows = [
        ("Model Name", r.name),
        ("Schema Name", r.schema),
        ("Owner", r.owner),
        ("Creation Time", created),
        ("Model State", r.state),
    ]
    if r.state == FAILED:
        rows.append(("Failure Reason", r.reason or ""))
    for key, value in r.metrics.items():
        rows.append((key, f"{value:.6f}"))
    if r.state == READY:
        rows.append(("Estimated Cost", "0.000000"))
        rows.append(("Training Time", f"{r.training_seconds:.3f} s"))
    rows += [
        ("", ""),
        ("TRAINING DATA:", ""),
        ("Query", r.query),
        ("Target Column", r.target.upper()),
        ("Training Rows", f"{r.rows_used} of {r.rows_total}" if r.rows_total is not None else ""),
        ("", ""),
        ("PARAMETERS:", ""),
        ("Model Type", r.model_type),
    ]
    if r.auto:
        rows += [("Problem Type", r.problem_type or ""), ("Objective", r.objective or "")]
        if r.algorithm:
            rows.append(("Selected Algorithm", r.algorithm))
        rows.append(("AutoML Job Name", r.job_name))
    else:
        rows.append(("Training Job Name", r.job_name))
    rows += [
        ("Function Name", r.function),
    ]
    if r.has_probabilities:
        rows.append(("Probability Function Name", r.function + PROBABILITIES_SUFFIX))
    rows += [
        ("Function Parameters", " ".join(r.feature_names)),
        ("Function Parameter Types", " ".join(r.feature_redshift_types)),
        ("Function Return Type", "float8" if r.returns_probability else r.target_redshift_type),
        ("IAM Role", "default-aws-iam-role" if r.iam_role == "default" else r.iam_role),
        ("S3 Bucket", r.settings.get("S3_BUCKET", "")),
        ("Max Runtime", str(int(r.settings.get("MAX_RUNTIME", st.DEFAULT_MAX_RUNTIME)))),
        ("Max Cells", str(int(r.settings.get("MAX_CELLS", st.DEFAULT_MAX_CELLS)))),
    ]
    if not r.auto:
        rows += [("", ""), ("HYPERPARAMETERS:", "")]
        hyper = {"NUM_ROUND": "100", **r.hyperparameters}
        rows += [(key.lower(), value) for key, value in hyper.items()]
        rows.append(("objective", r.objective or ""))
    return rows
