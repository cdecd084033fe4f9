"""The local endpoints listen on loopback only; nothing in the repository looks like a secret."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
SECRET_PATTERNS = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "private key": re.compile(r"-----BEGIN (RSA |EC |OPENSSH )?PRIVATE KEY-----"),
    "AWS secret key assignment": re.compile(r"aws_secret_access_key\s*=\s*['\"]?[A-Za-z0-9/+]{40}"),
    "password literal": re.compile(r"(?i)\bpassword\s*[:=]\s*['\"][^'\"$\{]{6,}['\"]"),
}


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", ""])
def test_data_api_emulator_refuses_to_bind_beyond_loopback(host: str, tmp_path: Path) -> None:
    from local.redshift.engine import Engine
    from local.redshift.server import start_server

    engine = Engine(tmp_path / "w.duckdb", auto_refresh_interval=None)
    try:
        with pytest.raises(ValueError, match="loopback only"):
            start_server(engine, host)
    finally:
        engine.close()


def test_command_lines_offer_no_bind_address() -> None:
    import argparse

    from local import stack
    from local.redshift import server

    for module in (server, stack):
        parser = argparse.ArgumentParser()
        module.add_arguments(parser)
        options = {o for action in parser._actions for o in action.option_strings}
        assert not options & {"--host", "--bind", "--address", "--ip"}, module.__name__


def test_no_secrets_in_tracked_files() -> None:
    files = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert len(files) > 20
    found = []
    for name in files:
        path = REPO / name
        if not path.is_file() or path.suffix in {".png", ".gz", ".duckdb", ".parquet", ".zip"}:
            continue
        text = path.read_text(encoding="utf-8", errors="ignore")
        found += [f"{name}: {label}" for label, pattern in SECRET_PATTERNS.items() if pattern.search(text)]
    assert found == []
