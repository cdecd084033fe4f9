"""Shared fixtures: a real moto server on loopback and AWS settings that point boto3 at it."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"

FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
MOTO_SERVICES = ("KINESIS", "S3", "SNS", "SQS", "DYNAMODB")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach AWS: fake credentials everywhere, no profile from the developer's machine."""
    for key, value in FAKE_AWS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A moto server (AWS wire protocol) on a free loopback port for the whole session."""
    from moto.server import ThreadedMotoServer

    from local import moto_speedups

    moto_speedups.apply()

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_endpoints(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point boto3's standard endpoint configuration at the moto server (no code branches)."""
    for service in MOTO_SERVICES:
        monkeypatch.setenv(f"AWS_ENDPOINT_URL_{service}", moto_server)
    return moto_server


@pytest.fixture
def redshift_server(tmp_path: Path) -> Iterator[object]:
    """The Redshift Data API emulator (a `local.redshift.server.ServerHandle`: .url, .port,
    .store.engine) on a free loopback port over a fresh DuckDB file in tmp_path."""
    from local.redshift.engine import Engine
    from local.redshift.server import start_server

    engine = Engine(tmp_path / "redshift.duckdb")
    handle = start_server(engine)
    try:
        yield handle
    finally:
        handle.shutdown()
        engine.close()


@pytest.fixture
def redshift_endpoint(redshift_server, monkeypatch: pytest.MonkeyPatch) -> str:
    """URL of the Data API emulator, exported as AWS_ENDPOINT_URL_REDSHIFT_DATA so that an unchanged
    boto3.client("redshift-data") reaches it (use any WorkgroupName/ClusterIdentifier and Database)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_REDSHIFT_DATA", redshift_server.url)
    return redshift_server.url


@contextmanager
def stubbed_client(service: str) -> Iterator[Any]:
    """A boto3 client answered by botocore's Stubber (`client.stub`: queue responses on it); every queued
    response must have been used by the end."""
    client = boto3.client(service, region_name="us-east-1")
    with Stubber(client) as stub:
        client.stub = stub
        yield client
        stub.assert_no_pending_responses()
