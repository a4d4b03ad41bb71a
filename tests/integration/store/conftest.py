"""Fixtures of the store contract suite: ``store`` runs each test against every adapter.

``STORE_FACTORIES`` maps an adapter name to a *generator function* that takes a fresh
temporary directory, yields a ready, empty :class:`~aios.store.port.Store`, and cleans up
after the ``yield`` (close the store, stop a mock). Add an adapter by adding an entry; the
tests are parametrized over the dict when they are collected.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from cloud_stack import CloudStack
from moto import mock_aws

from aios.store.dynamodb import DynamoStore
from aios.store.port import Store
from aios.store.sqlite import SqliteStore

StoreFactory = Callable[[Path], Iterator[Store]]


def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    """A SQLite store in a new file."""
    store = SqliteStore(tmp_path / "aios.db")
    try:
        yield store
    finally:
        store.close()


class AtomicRequests:
    """A boto3 client whose requests run one at a time: DynamoDB applies each request
    atomically, moto's in-memory backend does not lock (concurrent UpdateItems race)."""

    def __init__(self, client: Any) -> None:
        self._client, self._lock = client, threading.Lock()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return method(*args, **kwargs)

        return call


@functools.cache
def moto_client() -> Any:
    """One DynamoDB client for every test (creating one costs ~0.3 s); used only in moto."""
    return boto3.client(
        "dynamodb", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )


def dynamodb_store(tmp_path: Path) -> Iterator[Store]:
    """A DynamoDB store on the DataTable of ``template.yaml``, created in moto (no network):
    the contract holds for the table the deployment creates."""
    with mock_aws():
        stack = CloudStack.create(only={"DataTable"})
        yield DynamoStore(stack.physical["DataTable"], client=AtomicRequests(moto_client()))


STORE_FACTORIES: dict[str, StoreFactory] = {
    "sqlite": sqlite_store,
    "dynamodb": dynamodb_store,
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every test that takes ``store`` once per adapter of ``STORE_FACTORIES``."""
    if "store" in metafunc.fixturenames:
        metafunc.parametrize("store", list(STORE_FACTORIES), indirect=True)


@pytest.fixture
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """An empty store of the adapter named by the test's parameter."""
    factory = STORE_FACTORIES[request.param]
    with contextlib.contextmanager(factory)(tmp_path) as opened:
        yield opened
