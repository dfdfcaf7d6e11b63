"""Inline outputs (the SCD tables: rebuilds from a pipeline's own silver alone) are written by the silver query,
on the local broker with real Delta tables: a batch re-run after a crash between its silver append and the refresh
still refreshes them, and an upgrade from the query each used to have misses no change."""

from __future__ import annotations

import datetime as dt
import itertools
import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from pyspark import StorageLevel

from pipelines.domains.customers.simulator import CdcFaults, CdcGenerator
from pipelines.engine import runner
from pipelines.engine.dedup import existing_rows
from pipelines.engine.gold.outputs import inline_rebuilds, output_checkpoint, start_output
from pipelines.engine.silver import classify_validated, refresh_inline, start_silver, validate
from pipelines.simulators.base import KafkaSink, Tally, publish
from tests.cdc_reference import apply_in_order, payloads
from tests.support import pipeline, run_once

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ONCE = {"availableNow": True}


@pytest.fixture
def changes(domain_settings):
    """A source of clean customer changes, and a function that sends the next `n` (all sent kept in order)."""
    cdc = CdcGenerator(seed=3, start=dt.datetime(2026, 11, 20, 6, tzinfo=dt.UTC), customers=200, changes_per_hour=600,
                       faults=CdcFaults())  # no faults  # fmt: skip
    events, sent = cdc.events(), []
    topic = pipeline(domain_settings, "customers").topic

    def send(n: int) -> list:
        wave = list(itertools.islice(events, n))
        publish(wave, KafkaSink(domain_settings.kafka, topic, Tally()))
        sent.extend(wave)
        return sent

    return send


def scd1(spark, p) -> dict:  # noqa: ANN001
    rows = spark.read.format("delta").load(p.layout.output("customers").path).collect()
    return {r.customer_id: (r.email, r.full_name, r.tier, r.country, r.lsn) for r in rows}


def scd2_size(spark, p) -> int:  # noqa: ANN001
    return spark.read.format("delta").load(p.layout.output("customers_history").path).count()


def ours_cached(spark) -> list[str]:  # noqa: ANN001
    """The names of the cached data sets, but Delta's own (each table version's state, a stream's source snapshot)."""
    rdds = spark.sparkContext._jsc.getPersistentRDDs()  # noqa: SLF001
    return sorted(name for i in rdds.keySet() if not (name := str(rdds.get(i).name())).startswith("Delta "))


def test_a_batch_re_run_after_its_silver_append_still_refreshes_the_scd_tables(spark, domain_settings, changes):
    cached = ours_cached(spark)
    sent = changes(300)
    run_once(spark, domain_settings, ["customers"])
    p = pipeline(domain_settings, "customers")
    current, history = apply_in_order(payloads(sent))
    assert scd1(spark, p) == current
    # The crash: silver holds the batch, the SCD tables do not (emptied here).
    for o in ("customers", "customers_history"):
        path = p.layout.output(o).path
        spark.read.format("delta").load(path).limit(0).write.format("delta").mode("overwrite").save(path)
    assert scd1(spark, p) == {}
    # The re-run: the same bronze records, classified against silver, are all exact re-sends of what it holds.
    raw = spark.read.format("delta").load(p.layout.bronze.path).persist(StorageLevel.MEMORY_AND_DISK)
    event_time = p.contract.field(p.spec.event_time)
    existing = existing_rows(spark, p.layout.silver.path, raw, event_time, p.spec.dedup_keys, 3600).rows
    classified = classify_validated(validate(raw, p.contract, p.suite), existing, p.spec.dedup_keys, True)
    assert classified.where("_outcome = 'silver'").count() == 0
    with ThreadPoolExecutor(2) as pool:  # as the silver query runs it: side by side, one read of silver for both
        refresh_inline(spark, inline_rebuilds(p), classified, pool)
    raw.unpersist()
    assert ours_cached(spark) == cached  # the refreshes' shared reads of silver are dropped (a later one would reuse them)
    assert scd1(spark, p) == current
    assert scd2_size(spark, p) == len(history)


def test_an_upgrade_drains_the_query_an_scd_table_used_to_have(spark, domain_settings, changes):
    changes(200)
    run_once(spark, domain_settings, ["customers"])
    p = pipeline(domain_settings, "customers")
    old = [o for o in p.spec.outputs if o.inline]
    assert [o.name for o in old] == ["customers", "customers_history"]
    for o in old:  # the queries of a lakepipe from before inline outputs, caught up with silver
        start_output(spark, p, o, ONCE).awaitTermination()
    sent = changes(250)
    # That lakepipe's silver query (no inline refresh) takes the new changes; its SCD queries never ran again.
    runner._bronze(spark, domain_settings, p, ONCE).awaitTermination()  # noqa: SLF001
    start_silver(spark, p.contract, p.spec, p.layout, ONCE, "customers.silver", p.suite).awaitTermination()
    current, history = apply_in_order(payloads(sent))
    assert scd1(spark, p) != current
    run_once(spark, domain_settings, ["customers"])  # this lakepipe: nothing new in Kafka, the old queries drained
    assert scd1(spark, p) == current
    assert scd2_size(spark, p) == len(history)
    for o in old:
        checkpoint = output_checkpoint(p, o).removeprefix("file:")
        assert not os.path.exists(checkpoint) and os.path.exists(checkpoint + ".retired")
