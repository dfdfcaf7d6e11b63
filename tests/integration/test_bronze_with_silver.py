"""Bronze and silver in one query (`streaming.bronze_with_silver`), and switching to it and back.

Waves of a known mix (exact and conflicting duplicates, malformed records) go through the clickstream pipeline
in both modes, with a switch in each direction at the awkward moment: silver behind bronze when it becomes one
query, and a last micro-batch of the one query left unfinished (its commit file gone, as a kill between Spark's
offsets and commit files leaves it) when it becomes two again. After all of it, every Kafka record is in bronze
once, every event in silver once, every reject in quarantine once, and the audit balances.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from pathlib import Path

import pytest

from pipelines.domains.clickstream.simulator import ClickstreamGenerator, FaultRates
from pipelines.engine import runner
from pipelines.errors import ChangeRefusedError
from pipelines.model.config import Settings
from pipelines.model.project import load_project
from pipelines.ops.status import pipeline_status
from pipelines.platform import kafka_admin
from pipelines.simulators.base import KafkaSink, Tally, publish
from tests.support import pipeline, run_once, without_gold

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

WAVE = 300


def mode(settings: Settings, one_query: bool) -> Settings:
    streaming = dataclasses.replace(settings.file.streaming, bronze_with_silver=one_query)
    return dataclasses.replace(settings, file=dataclasses.replace(settings.file, streaming=streaming))


def bronze_only(spark, settings: Settings) -> None:  # noqa: ANN001
    """Bronze's query alone, AvailableNow: bronze takes what Kafka holds, silver stays behind it."""
    p = load_project(settings, ["clickstream"]).pipeline("clickstream")
    runner._await_all([runner._bronze(spark, settings, p, {"availableNow": True})], runner.RunResult())  # noqa: SLF001


def test_switching_between_one_and_two_queries_keeps_every_record_exactly_once(spark, tmp_path, unique_topic, kafka):
    settings = without_gold(tmp_path, unique_topic)
    kafka = dataclasses.replace(settings.kafka, max_offsets_per_trigger=200)
    settings = dataclasses.replace(settings, file=dataclasses.replace(settings.file, kafka=kafka))
    two, one = mode(settings, False), mode(settings, True)
    faults = FaultRates(exact_duplicate=0.05, conflicting_duplicate=0.03, malformed=0.08)
    gen = ClickstreamGenerator(seed=7, start=dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC), faults=faults).events()
    kafka_admin.ensure_topic(settings.kafka, unique_topic)
    tally = Tally()
    sink = KafkaSink(settings.kafka, unique_topic, tally)
    p = pipeline(settings, "clickstream")
    bronze_ckpt = Path(p.layout.checkpoint("bronze"))

    publish(gen, sink, count=WAVE)
    result = run_once(spark, two, ["clickstream"])
    assert "clickstream.bronze" in result.queries, "two queries: bronze has its own"
    publish(gen, sink, count=WAVE)
    bronze_only(spark, two)  # bronze holds the second wave, silver not yet

    result = run_once(spark, one, ["clickstream"])  # silver catches up on bronze, then one query reads Kafka
    assert "clickstream.bronze" not in result.queries, "one query: no bronze query"
    publish(gen, sink, count=WAVE)
    time.sleep(0.5)
    behind = {t.name: t.behind_s for t in pipeline_status(one, pipeline(one, "clickstream")).tables}
    assert behind[p.layout.silver.name] == behind[p.layout.bronze.name] > 0, "silver waits for what bronze waits for"
    result = run_once(spark, one, ["clickstream"])
    assert result.queries["clickstream.silver"].input_rows == WAVE, "the one query reads Kafka's records"
    assert result.queries["clickstream.silver"].batches == 2, "at most kafka.max_offsets_per_trigger per micro-batch"
    last = max(int(f.name) for f in (bronze_ckpt / "commits").iterdir() if f.name.isdigit())
    for name in (str(last), f".{last}.crc"):  # what a kill between Spark's offsets and commit files leaves
        (bronze_ckpt / "commits" / name).unlink()
    with pytest.raises(ChangeRefusedError, match=r"did not finish: finish it with `lakepipe run clickstream --once`"):
        run_once(spark, two, ["clickstream"])
    result = run_once(spark, one, ["clickstream"])  # runs that batch again: bronze and silver hold it already
    assert result.queries["clickstream.silver"].batches == 1 and 0 < result.queries["clickstream.silver"].input_rows < WAVE

    publish(gen, sink, count=WAVE)
    run_once(spark, two, ["clickstream"])  # silver reads bronze again, from where the one query left off

    assert not tally.failed, tally.errors
    expected = tally.expected()
    read = lambda t: spark.read.format("delta").load(t.path)  # noqa: E731
    bronze = read(p.layout.bronze)
    assert bronze.count() == bronze.select("partition", "offset").distinct().count() == 4 * WAVE
    silver = read(p.layout.silver)
    assert silver.count() == silver.select("event_id").distinct().count() == expected["silver"]
    quarantine = read(p.layout.quarantine)
    assert quarantine.count() == quarantine.select("partition", "offset").distinct().count() == expected["quarantine"]
    audit = read(p.layout.batches).groupBy().sum("bronze_records", "exact_duplicates").first()
    assert tuple(audit) == (4 * WAVE, expected["exact_duplicates"]), "each record is accounted for exactly once"
    assert quarantine.where("reasons[0] = 'duplicate_conflict'").count() == tally.delivered["conflicting_duplicate"]
