"""The local Lambda runtime loads every function as in its own container (local/lambdas.py)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from types import ModuleType

import pytest

from local.bootstrap import FunctionSpec
from local.lambdas import invoke, load_handler
from local.template import REPO

pytestmark = pytest.mark.unit


def spec(function: str, level: str) -> FunctionSpec:
    return FunctionSpec(
        logical_id=f"{function.title().replace('_', '')}Function",
        name=f"test-{function}",
        code_dir=REPO / "functions" / function,
        handler="app.lambda_handler",
        timeout_s=30,
        memory_mb=256,
        environment={"POWERTOOLS_SERVICE_NAME": function, "POWERTOOLS_LOG_LEVEL": level},
    )


def load_actions(function_spec: FunctionSpec) -> ModuleType:
    """fraud_common.actions, as this load of act_on_alert imported it."""
    load_handler(function_spec)
    return sys.modules[f"lambda_{function_spec.logical_id}"].actions


def test_a_later_stack_gets_its_own_log_level_and_service_names() -> None:
    quiet = load_actions(spec("act_on_alert", "WARNING"))
    assert logging.getLogger("act_on_alert").level == logging.WARNING
    assert quiet.logger._logger.getEffectiveLevel() == logging.WARNING

    load_handler(spec("apply_sql", "INFO"))  # another function imports the layer in between
    chatty = load_actions(spec("act_on_alert", "INFO"))

    assert chatty is not quiet  # the layer imported afresh, as by a new container
    assert logging.getLogger("act_on_alert").level == logging.INFO
    assert chatty.logger._logger.getEffectiveLevel() == logging.INFO
    # the layer's logs are the importing function's, as in its own Lambda container
    assert chatty.logger._logger.name == "act_on_alert.fraud_common.actions"


COUNTING_HANDLER = """
from aws_lambda_powertools import Metrics

metrics = Metrics(namespace="Test")


@metrics.log_metrics
def lambda_handler(event, context):
    metrics.add_metric(name="Calls", unit="Count", value=1)
"""


def test_disabled_metrics_are_never_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "app.py").write_text(COUNTING_HANDLER)
    counting = FunctionSpec(
        logical_id="CountingFunction",
        name="test-counting",
        code_dir=tmp_path,
        handler="app.lambda_handler",
        timeout_s=30,
        memory_mb=128,
        environment={"POWERTOOLS_SERVICE_NAME": "counting"},
    )
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    for _ in range(150):  # past EMF's 100 values per metric, where Powertools prints regardless
        invoke(counting, {})
    assert "CloudWatchMetrics" not in capsys.readouterr().out

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    invoke(counting, {})
    assert '"Calls":[1.0]' in capsys.readouterr().out  # enabled: one value, nothing left over
