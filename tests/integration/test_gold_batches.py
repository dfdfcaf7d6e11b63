"""A continuous upsert (gold in update mode) runs a micro-batch only when silver has new rows, on the local broker
with real Delta tables; the same query with Spark's default runs another, without input, after each one."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pipelines.domains.clickstream.simulator import ClickstreamGenerator, FaultRates
from pipelines.engine import runner
from pipelines.engine.gold.outputs import output_checkpoint, start_output
from pipelines.engine.silver import start_silver
from pipelines.engine.tables import create_tables
from pipelines.model.project import load_project
from tests.support import pipeline, send

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ONCE = {"availableNow": True}
CONTINUOUS = {"processingTime": "0 seconds"}


def batches(checkpoint: str) -> int:
    """Micro-batches a query's checkpoint records as done."""
    commits = Path(checkpoint.removeprefix("file:")) / "commits"
    return len([f for f in commits.iterdir() if f.name.isdigit()]) if commits.exists() else 0


def run_until_idle(query, seconds: float = 4) -> None:  # noqa: ANN001
    """Let a continuous query take what is there, then idle for `seconds` (where a batch without input would run)."""
    try:
        query.processAllAvailable()
        time.sleep(seconds)
        query.processAllAvailable()
    finally:
        query.stop()


def test_a_continuous_upsert_runs_no_batch_without_input(spark, domain_settings, tmp_path):
    events = ClickstreamGenerator(seed=8, faults=FaultRates()).events()
    send(domain_settings, [next(events) for _ in range(300)])
    p = pipeline(domain_settings, "clickstream")
    create_tables(spark, load_project(domain_settings, ["clickstream"]), p)
    runner._bronze(spark, domain_settings, p, ONCE).awaitTermination()  # noqa: SLF001
    start_silver(spark, p.contract, p.spec, p.layout, ONCE, "clickstream.silver", p.suite).awaitTermination()
    revenue = next(o for o in p.spec.outputs if o.name == "clickstream_revenue_per_minute")
    run_until_idle(start_output(spark, p, revenue, CONTINUOUS))
    assert batches(output_checkpoint(p, revenue)) == 1  # the batch with silver's rows, none after it

    # The same query with Spark's default: after its batch with rows, one without (the watermark moved).
    events_with_watermark = spark.readStream.format("delta").load(p.layout.silver.path).withWatermark(
        p.spec.event_time, p.watermark
    )
    checkpoint = str(tmp_path / "default-checkpoint")
    default = (
        p.output_rows(revenue, events_with_watermark).writeStream.outputMode("update")
        .foreachBatch(lambda batch, _id: batch.count()).option("checkpointLocation", checkpoint)
        .trigger(**CONTINUOUS).start()
    )  # fmt: skip
    run_until_idle(default)
    assert batches(checkpoint) >= 2
