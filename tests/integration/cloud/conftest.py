"""Fixtures of the cloud tests: an AWS environment that can only reach moto, and moto itself.

- ``aws_env`` (autouse): dummy credentials, region ``us-east-1``, no profile or endpoint
  from the machine, X-Ray tracing off, no ``AIOS_*`` variable inherited from the shell.
- ``moto``: an active ``mock_aws`` that executes state machines (``MOTO_CONFIG``); Lambda
  functions run no code unless a test binds them (``CloudStack.bind_handlers``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from moto import mock_aws

REGION = "us-east-1"

MOTO_CONFIG = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
}
"""moto's configuration: ASL executed, Lambda without Docker."""


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """An environment in which nothing can reach real AWS (moto intercepts the calls)."""
    for name in list(os.environ):
        if name.startswith("AIOS_") or name in {
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_SESSION_TOKEN",
            "AWS_SECURITY_TOKEN",
            "AWS_ENDPOINT_URL",
            "AWS_LAMBDA_FUNCTION_NAME",
            "LAMBDA_TASK_ROOT",
        }:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("AIOS_DATA_DIR", str(tmp_path_factory.mktemp("aios-data")))


@pytest.fixture
def moto(aws_env: None) -> Iterator[None]:
    """An active ``mock_aws`` (:data:`MOTO_CONFIG`)."""
    with mock_aws(config=MOTO_CONFIG):  # type: ignore[arg-type]
        yield
