"""Shared fixtures: one local Spark session and one local Kafka broker per test run; tmp dirs per test."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from pipelines.config import SparkSettings

PROJECT_DIR = Path(__file__).resolve().parents[1]
CONTRACTS = PROJECT_DIR / "schemas"

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def spark():
    from pipelines.session import get_spark

    session = get_spark(SparkSettings(master="local[2]", shuffle_partitions=2, driver_memory="3g"), "lakepipe-tests")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def clickstream_contract():
    from pipelines.contract import contract_path, load_contract

    return load_contract(contract_path(CONTRACTS, "clickstream"))


@pytest.fixture(scope="session")
def local_settings():
    from pipelines.config import load_settings

    return load_settings("local", PROJECT_DIR / "conf")


@pytest.fixture(scope="session")
def kafka(local_settings):
    """The local broker (started once if it is not running), as the settings' KafkaSettings."""
    from pipelines import local_broker

    print(local_broker.start(local_settings))
    return local_settings.kafka


@pytest.fixture
def unique_topic():
    return f"test.{uuid.uuid4().hex[:10]}"
