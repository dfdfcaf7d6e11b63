"""Shared fixtures: one local Spark session and one local Kafka broker per test run; tmp dirs per test."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

from pipelines.model.config import SparkSettings

PROJECT_DIR = Path(__file__).resolve().parents[1]
CONTRACTS = PROJECT_DIR / "schemas"

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

# A pytest-xdist worker's __main__ has neither a spec nor a file, which PySpark takes for a doctest run: importing
# pyspark.sql.connect (Great Expectations does) would then exit the worker. Give it a file name.
_main = sys.modules["__main__"]
if getattr(_main, "__spec__", None) is None and not hasattr(_main, "__file__"):
    _main.__file__ = "<pytest-xdist worker>"


@pytest.fixture(scope="session")
def spark():
    from pipelines.platform.session import get_spark

    session = get_spark(SparkSettings(master="local[2]", shuffle_partitions=2, driver_memory="3g"), "lakepipe-tests")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def clickstream_contract():
    from pipelines.model.contract import contract_path, load_contract

    return load_contract(contract_path(CONTRACTS, "clickstream"))


@pytest.fixture(scope="session")
def local_settings():
    from pipelines.model.config import load_settings

    return load_settings("local", PROJECT_DIR / "conf")


@pytest.fixture(scope="session")
def kafka(local_settings):
    """The local broker (started once if it is not running), as the settings' KafkaSettings."""
    from pipelines.platform import local_broker

    print(local_broker.start(local_settings))
    return local_settings.kafka


@pytest.fixture(scope="session")
def metastore(local_settings):
    """The local catalog's metastore server (started once if it is not running)."""
    from pipelines.platform import local_metastore

    print(local_metastore.start(local_settings))
    return local_settings.local_metastore


@pytest.fixture
def unique_topic():
    return f"test.{uuid.uuid4().hex[:10]}"


def write_conf(
    folder: Path, topic: str, env: str = "test", topics: dict[str, str] | None = None, catalog: bool = False,
    extra: str = "", kafka_extra: str = "", one_query: bool = True, **overrides: str,
) -> Path:  # fmt: skip
    """A conf file for one test: its own lake root and topic, the local broker, fast triggers.

    `topic` is clickstream's; `topics` gives other pipelines theirs. The catalog is off unless `catalog` (the
    tests' shared Spark session keeps Spark's in-memory catalog; the catalog's own test turns it on). `extra` is
    appended to the file (more top-level keys), `kafka_extra` to its `kafka:` section (indented lines); not
    `one_query`: a bronze query and a silver query reading bronze (`streaming.bronze_with_silver: false`).
    """
    folder.mkdir(parents=True, exist_ok=True)
    values = {
        "bootstrap": "localhost:9092",
        "trigger": "1 second",
        "watermark": "10 minutes",
        "schemas": CONTRACTS,
        "specs": PROJECT_DIR / "conf" / "pipelines",
        **overrides,
    }
    (folder / f"{env}.yaml").write_text(
        f"""
kafka:
  bootstrap_servers: {values['bootstrap']}
  topic_partitions: 2
{kafka_extra}lake:
  root: {folder / 'lake'}
streaming:
  trigger_interval: {values['trigger']}
  watermark: {values['watermark']}
  bronze_with_silver: {str(one_query).lower()}
spark:
  master: local[2]
  shuffle_partitions: 2
catalog:
  enabled: {str(catalog).lower()}
schemas_dir: {values['schemas']}
specs_dir: {values['specs']}
pipelines:
  clickstream:
    topic: {topic}
"""
        + "".join(f"  {name}:\n    topic: {t}\n" for name, t in (topics or {}).items())
        + extra
    )
    return folder


@pytest.fixture
def domain_settings(tmp_path, kafka):
    """Settings for a test of several pipelines: a fresh lake and a new topic for every pipeline."""
    from pipelines.model.config import load_settings

    suffix = uuid.uuid4().hex[:10]
    topics = {name: f"test.{name}.{suffix}" for name in ("iot", "payments", "customers", "orders")}
    return load_settings("test", write_conf(tmp_path / "conf", f"test.clickstream.{suffix}", topics=topics))


@pytest.fixture
def test_settings(tmp_path, unique_topic, kafka):
    """Settings for one test: a fresh lake under tmp_path and a topic of its own on the local broker."""
    from pipelines.model.config import load_settings

    return load_settings("test", write_conf(tmp_path / "conf", unique_topic))
