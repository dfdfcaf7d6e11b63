"""A backlog drains in bounded micro-batches, exactly once (local broker, real Delta tables).

`streaming.max_bytes_per_trigger` bounds what silver takes of bronze, and each gold query of silver, per
micro-batch, also in a `--once` run (`availableNow`). With a bound below one bronze file, silver runs one batch per
bronze file (bronze takes 300 records per batch, in a file per Kafka partition), every gold query more than one,
and every table still holds every event exactly once. Silver reads bronze's table with two queries
(`streaming.bronze_with_silver: false`); in one query it takes what bronze takes (test_bronze_with_silver).
"""

from __future__ import annotations

import dataclasses

import pytest

from pipelines.domains.clickstream.simulator import ClickstreamGenerator, FaultRates
from pipelines.engine.gold.outputs import output_checkpoint
from tests.integration.test_gold_batches import batches
from tests.support import assert_exactly_once, pipeline, run_once, send

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

FAULTS = FaultRates(exact_duplicate=0.04, conflicting_duplicate=0.03, malformed=0.05, out_of_order=0.05)


def test_a_backlog_drains_in_bounded_batches_exactly_once(spark, domain_settings):
    streaming = dataclasses.replace(domain_settings.streaming, max_bytes_per_trigger="1k", bronze_with_silver=False)
    kafka = dataclasses.replace(domain_settings.kafka, max_offsets_per_trigger=300)  # bronze: a file per 300 records
    settings = dataclasses.replace(domain_settings, file=dataclasses.replace(domain_settings.file, streaming=streaming,
                                                                             kafka=kafka))
    p = pipeline(settings, "clickstream")
    assert p.max_bytes_per_trigger == "1k"
    events = ClickstreamGenerator(seed=21, faults=FAULTS).events()
    sent = [next(events) for _ in range(600)]
    tally = send(settings, sent)

    run_once(spark, settings, ["clickstream"])

    bronze_files = len(spark.read.format("delta").load(p.layout.bronze.path).inputFiles())
    assert bronze_files >= 2, "bronze took at most 300 records per micro-batch"
    silver_batches = spark.read.format("delta").load(p.layout.batches.path).count()
    assert silver_batches == bronze_files, "silver took one bronze file per micro-batch (each larger than 1k)"
    for o in p.spec.outputs:
        assert batches(output_checkpoint(p, o)) >= 2, f"{o.name} read silver in more than one micro-batch"
    assert_exactly_once(spark, settings, p.topic, len(sent), tally)
