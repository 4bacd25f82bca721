"""Fixtures shared by every test: plans, and the real servers of the backend tests."""

from __future__ import annotations

import os

import pytest

import cheerful as cf


@pytest.fixture
def restore_plan():
    """Put back the plan levels in force before the test (for bare ``cf.plan(p)`` calls)."""
    with cf.plan():
        yield


@pytest.fixture
def two() -> cf.Plan:
    """Two local worker processes: parallel even on a 2-core machine; its pool is reused."""
    return cf.processes(2)


# Real AWS-compatible servers (tests/servers.py), one per test session.


@pytest.fixture(scope="session")
def aws_env():
    """Made-up credentials and a region in the environment (inherited by subprocesses)."""
    from servers import TEST_CREDENTIALS

    saved = {name: os.environ.get(name) for name in TEST_CREDENTIALS}
    os.environ.update(TEST_CREDENTIALS)
    try:
        yield TEST_CREDENTIALS
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="session")
def moto_server(aws_env, tmp_path_factory):
    """A ``moto_server`` on a free loopback port for the whole session."""
    from servers import MotoServer, running

    with running(MotoServer(tmp_path_factory.mktemp("moto")), "moto_server") as server:
        yield server


@pytest.fixture(scope="session")
def seaweed_server(aws_env, tmp_path_factory):
    """SeaweedFS (a real S3 implementation) on free loopback ports for the whole session."""
    from servers import SeaweedServer, running

    with running(SeaweedServer(tmp_path_factory.mktemp("seaweed")), "SeaweedFS") as server:
        yield server


@pytest.fixture
def new_s3_backend(moto_server):
    """A function ``(prefix) -> URL``: a new bucket on the moto server with its queues
    made by ``cheerful init`` (each call, its own bucket: tests never see each other's)."""
    import uuid

    from click.testing import CliRunner

    from cheerful.cli import main

    def make(prefix: str) -> str:
        bucket = f"t{uuid.uuid4().hex[:10]}"
        url = f"s3://{bucket}/{prefix}?region=us-east-1&endpoint_url={moto_server.endpoint}"
        result = CliRunner().invoke(main, ["init", "--backend", url, "--create-bucket"])
        assert result.exit_code == 0, result.output
        return url

    return make


@pytest.fixture
def new_seaweed_backend(moto_server, seaweed_server):
    """A function ``(prefix) -> URL``: a new bucket on SeaweedFS with its queues on the moto
    server, made by ``cheerful init`` (each call, its own bucket)."""
    import uuid

    from click.testing import CliRunner

    from cheerful.cli import main

    def make(prefix: str) -> str:
        bucket = f"w{uuid.uuid4().hex[:10]}"
        url = (
            f"s3://{bucket}/{prefix}?region=us-east-1&s3_endpoint={seaweed_server.endpoint}"
            f"&sqs_endpoint={moto_server.endpoint}"
        )
        result = CliRunner().invoke(main, ["init", "--backend", url, "--create-bucket"])
        assert result.exit_code == 0, result.output
        return url

    return make
