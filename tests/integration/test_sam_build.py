"""`sam build` of template.yaml, and the built artifacts loaded by a Python of the Lambda runtime's version.

Needs aws-sam-cli (`make install` puts it in .venv-sam) and python3.13 (the runtime) on PATH or in pyenv;
skipped with the reason when either is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FUNCTIONS = ("ApplySqlFunction", "TrainModelFunction", "ScoreAndAlertFunction", "ActOnAlertFunction")


def find_sam() -> str | None:
    local = REPO / ".venv-sam" / "bin" / "sam"
    return str(local) if local.exists() else shutil.which("sam")


def find_python313() -> Path | None:
    """The bin directory of a working python3.13: pyenv's 3.13 first (its shim alone may not run), then PATH."""
    candidates = []
    if shutil.which("pyenv"):
        result = subprocess.run(["pyenv", "prefix", "3.13"], capture_output=True, text=True, check=False)
        if result.returncode == 0 and result.stdout.strip():
            candidates.append(Path(result.stdout.split()[0]) / "bin")
    if shutil.which("python3.13"):
        candidates.append(Path(shutil.which("python3.13")).parent)
    for bin_dir in candidates:
        check = subprocess.run([bin_dir / "python3.13", "--version"], capture_output=True, check=False)
        if check.returncode == 0:
            return bin_dir
    return None


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    sam, python_bin = find_sam(), find_python313()
    if sam is None:
        pytest.skip("aws-sam-cli not installed (make install creates .venv-sam)")
    if python_bin is None:
        pytest.skip("no python3.13 (the Lambda runtime) on PATH or in pyenv")
    out = tmp_path_factory.mktemp("sam-build")
    env = {**os.environ, "PATH": f"{python_bin}:{os.environ['PATH']}", "SAM_CLI_TELEMETRY": "0"}
    result = subprocess.run(
        [
            sam,
            "build",
            "--template-file",
            str(REPO / "template.yaml"),
            "--build-dir",
            str(out / "build"),
            "--cache-dir",
            str(out / "cache"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out / "build", python_bin


def test_layer_carries_fraud_common_the_sql_and_powertools(built) -> None:
    build, _ = built
    python = build / "FraudCommonLayer" / "python"
    for sub in ("migrations", "queries"):
        expected = sorted(p.name for p in (REPO / "sql" / sub).glob("*.sql"))
        assert (
            expected
            and sorted(p.name for p in (python / "fraud_common" / "sql" / sub).glob("*.sql")) == expected
        )
    assert (python / "fraud_common" / "dataapi.py").is_file()
    assert (python / "aws_lambda_powertools").is_dir() and (python / "boto3").is_dir()
    for function in FUNCTIONS:
        assert (build / function / "app.py").is_file()
    assert "FraudCommonLayer" in (build / "template.yaml").read_text()


def test_handlers_import_on_the_runtime_python_with_only_the_layer(built) -> None:
    """Each app.py imports under python3.13 with the layer on its path, and finds the packaged SQL."""
    build, python_bin = built
    layer = build / "FraudCommonLayer" / "python"
    for function in FUNCTIONS:
        # -I: no user site, no PYTHONPATH, no current directory: only the function's code and the layer.
        code = (
            f"import sys; sys.path[:0] = [{str(build / function)!r}, {str(layer)!r}]; import app; "
            "from fraud_common.sqlfiles import sql_dir; print(app.lambda_handler.__name__, sql_dir())"
        )
        result = subprocess.run(
            [str(python_bin / "python3.13"), "-I", "-c", code],
            env={"PATH": os.environ["PATH"], "AWS_DEFAULT_REGION": "us-east-1"},
            capture_output=True,
            text=True,
            check=False,
            cwd=build,
        )
        assert result.returncode == 0, f"{function}: {result.stderr[-2000:]}"
        assert result.stdout.split() == ["lambda_handler", str(layer / "fraud_common" / "sql")]
