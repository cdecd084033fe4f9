"""Run the project's Lambda handlers in-process, as the Lambda runtime would call them.

Each function's module is loaded from its CodeUri under a unique module name (every function has an
`app.py`), the fraud_common layer is importable as on Lambda (/opt/python), and the handler gets a
context object with the function's real timeout, so handlers that loop "until shortly before the
timeout" behave as on AWS. A stop request makes the remaining time drop to zero, which ends such
loops promptly on Ctrl-C.

Every function loads as in its own container: its module and the layer's modules are imported afresh
under its own environment, so Powertools loggers carry its service name and log level, even when an
earlier stack in the same process ran the same functions with other settings.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from local.bootstrap import FunctionSpec
from local.template import ACCOUNT, REPO

LAYER_DIRS = [REPO / "layers" / "fraud_common"]
LAYER_PACKAGES = {init.parent.name for layer in LAYER_DIRS for init in layer.glob("*/__init__.py")}
# Every Metrics instance reads and writes one set per process (Powertools' class-level store).
_POWERTOOLS_METRICS = Metrics()
Handler = Callable[[dict[str, Any], Any], Any]


class LambdaContext:
    """The attributes and method of the Lambda Python runtime's context object."""

    def __init__(self, spec: FunctionSpec, region: str, stop: threading.Event | None = None) -> None:
        self.function_name = spec.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{ACCOUNT}:function:{spec.name}"
        self.memory_limit_in_mb = spec.memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{spec.name}"
        self.log_stream_name = f"local/{self.aws_request_id}"
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + spec.timeout_s
        self._stop = stop

    def get_remaining_time_in_millis(self) -> int:
        if self._stop is not None and self._stop.is_set():
            return 0
        return max(0, int((self._deadline - time.monotonic()) * 1000))


# One "container" per FunctionSpec: a new stack (new specs) imports fresh modules, so settings cached at
# cold start never point at a previous stack's endpoints.
_loaded: dict[int, tuple[FunctionSpec, Handler]] = {}
_load_lock = threading.Lock()


def load_handler(spec: FunctionSpec) -> Handler:
    """The function's handler, imported once per process (a warm container)."""
    with _load_lock:
        if id(spec) in _loaded:
            return _loaded[id(spec)][1]
        for layer in LAYER_DIRS:
            if layer.is_dir() and str(layer) not in sys.path:
                sys.path.append(str(layer))
        module_name, _, attr = spec.handler.rpartition(".")
        path = spec.code_dir / (module_name.replace(".", "/") + ".py")
        if not path.exists():
            raise FileNotFoundError(f"{spec.logical_id}: handler file {path.relative_to(REPO)} not found")
        # Module-level objects (Powertools Logger's service name, ...) read the environment at import:
        # give them this function's own values, as its own Lambda container would.
        saved = {key: os.environ.get(key) for key in spec.environment}
        os.environ.update(spec.environment)
        try:
            _forget_layer_modules()
            module = _import(f"lambda_{spec.logical_id}", path)
            _apply_log_level(spec.environment)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        handler = getattr(module, attr)
        _loaded[id(spec)] = (spec, handler)
        return handler


def _forget_layer_modules() -> None:
    """Drop the layer's modules from the import cache, so the next import runs them afresh.

    A layer's module-level objects are per container on Lambda: its Powertools child loggers, for
    one, are named after the service of the function that imported them.
    """
    for name in [name for name in sys.modules if name.split(".")[0] in LAYER_PACKAGES]:
        del sys.modules[name]


def _apply_log_level(environment: dict[str, str]) -> None:
    """Give the function's service logger its POWERTOOLS_LOG_LEVEL.

    Powertools configures a service's logger once per process: a later Logger of the same service
    keeps the first one's level (an earlier stack's), where a new container would read its own.
    """
    service, level = environment.get("POWERTOOLS_SERVICE_NAME"), environment.get("POWERTOOLS_LOG_LEVEL")
    if service and level:
        logging.getLogger(service).setLevel(level.upper())


def _import(name: str, path: Path) -> ModuleType:
    module_spec = importlib.util.spec_from_file_location(name, path)
    assert module_spec and module_spec.loader
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    module_spec.loader.exec_module(module)
    return module


def invoke(
    spec: FunctionSpec,
    event: dict[str, Any],
    *,
    region: str = "us-east-1",
    stop: threading.Event | None = None,
) -> Any:
    """Call the handler with the event and a fresh context; exceptions propagate like a failed invoke."""
    try:
        return load_handler(spec)(event, LambdaContext(spec, region, stop))
    finally:
        if is_metrics_disabled():
            # Powertools keeps disabled metrics in a set shared by the whole process, and prints that
            # set once a metric holds 100 values (EMF's limit), disabled or not: drop them instead.
            _POWERTOOLS_METRICS.clear_metrics()
