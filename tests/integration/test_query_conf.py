"""A pipeline spec's `spark_conf` reaches that pipeline's streaming queries and no other's (local broker, real
Delta tables): each query keeps a copy of its session's settings from its start, and the session is left as it was."""

from __future__ import annotations

import pytest

from pipelines.engine import runner
from pipelines.model.project import POLLING_DELAY, load_project
from pipelines.platform import kafka_admin

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def query_conf(query, key: str) -> str | None:  # noqa: ANN001 - a pyspark StreamingQuery
    """`key` in the settings the query's micro-batches run with (its own copy of the session's)."""
    value = query._jsq.streamingQuery().sparkSessionForStream().conf().getOption(key)  # noqa: SLF001
    return value.get() if value.isDefined() else None


def set_in_session(spark, key: str) -> str | None:  # noqa: ANN001
    value = spark._jsparkSession.conf().getOption(key)  # noqa: SLF001 - the value set, not Spark's default
    return value.get() if value.isDefined() else None


def test_a_pipelines_spark_conf_reaches_its_queries_alone(spark, domain_settings):
    project = load_project(domain_settings, ["customers", "clickstream"])
    customers, clickstream = project.pipeline("customers"), project.pipeline("clickstream")
    wanted = dict(customers.spec.spark_conf)
    assert wanted, "the customers spec sets Spark settings of its own (code generation off)"
    assert not clickstream.spec.spark_conf
    for p in (customers, clickstream):
        kafka_admin.ensure_topic(domain_settings.kafka, p.topic)
    before = {key: set_in_session(spark, key) for key in wanted}

    queries = runner.start_all(spark, project, ["customers", "clickstream"], {"availableNow": True})
    for q in queries:
        q.awaitTermination()

    names = sorted(q.name for q in queries)
    assert [n for n in names if n.startswith("customers.")] == ["customers.gold.revenue_per_tier_per_hour",
                                                               "customers.silver"]  # fmt: skip  bronze: with silver
    for q in queries:
        for key, value in wanted.items():
            expected = value if q.name.startswith("customers.") else before[key]
            assert query_conf(q, key) == expected, f"{q.name}: {key}"
    assert {key: set_in_session(spark, key) for key in wanted} == before, "the session keeps its own settings"


def test_every_query_waits_the_idle_poll_interval_when_its_source_has_nothing_new(spark, domain_settings):
    """Spark's 10 ms made the five idle clickstream queries use ~0.46 of a core with a trigger interval of 0."""
    project = load_project(domain_settings, ["clickstream"])
    assert domain_settings.streaming.idle_poll_interval == "100ms"
    kafka_admin.ensure_topic(domain_settings.kafka, project.pipeline("clickstream").topic)
    before = set_in_session(spark, POLLING_DELAY)

    queries = runner.start_all(spark, project, ["clickstream"], {"availableNow": True})
    for q in queries:
        q.awaitTermination()

    assert len(queries) == 4  # bronze with silver, three gold
    for q in queries:
        assert query_conf(q, POLLING_DELAY) == "100ms", q.name
        assert q._jsq.streamingQuery().pollingDelayMs() == 100, q.name  # noqa: SLF001 - what the query's loop sleeps
    assert set_in_session(spark, POLLING_DELAY) == before
