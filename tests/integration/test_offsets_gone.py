"""Records bronze has not read that are gone from Kafka (issue 14): retention, then a topic deleted and created
again. The run stops before it starts, in one line naming partitions, offsets and the ways forward; never a
Java stack trace, never a silent skip. `--from-earliest-available` reads past an expired range and records it."""

from __future__ import annotations

import datetime as dt
import itertools
import time

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from pipelines.domains.clickstream.simulator import ClickstreamGenerator
from pipelines.engine import kafka_gaps, runner
from pipelines.engine.kafka_gaps import OffsetsGoneError
from pipelines.model.layout import events_table
from pipelines.model.project import load_project
from pipelines.platform import kafka_admin
from tests.integration.test_cli_errors import lakepipe, one_line_error
from tests.support import pipeline, run_once, send, table, without_gold

pytestmark = [pytest.mark.kafka]


def test_expired_then_recreated_topic_stops_the_run_in_one_line(spark, tmp_path, unique_topic, kafka):
    test_settings = without_gold(tmp_path, unique_topic)
    gen = ClickstreamGenerator(seed=21, start=dt.datetime(2026, 11, 30, 8, tzinfo=dt.UTC), events_per_second=5)
    events = gen.events()
    p = pipeline(test_settings, "clickstream")
    send(test_settings, itertools.islice(events, 100))
    run_once(spark, test_settings, ["clickstream"])
    read = kafka_admin.end_offsets(test_settings.kafka, p.topic)  # where bronze's next batch starts

    send(test_settings, itertools.islice(events, 60))
    high = kafka_admin.end_offsets(test_settings.kafka, p.topic)
    cut = read[0] + (high[0] - read[0]) // 2  # retention takes half of what bronze has not read of partition 0
    admin = AdminClient({"bootstrap.servers": test_settings.kafka.bootstrap_servers})
    for f in admin.delete_records([TopicPartition(p.topic, 0, cut)]).values():
        f.result(30)
    expected = (rf"clickstream: records bronze has not read are gone from topic '{p.topic}': partition 0: offsets "
                rf"{read[0]:,}-{cut - 1:,} \({cut - read[0]:,} records\) expired before bronze read them\. Either accept "
                r"the gap: `lakepipe run clickstream --from-earliest-available`")  # fmt: skip
    with pytest.raises(OffsetsGoneError, match=expected):
        run_once(spark, test_settings, ["clickstream"])
    conf = ("--env", "test", "--conf-dir", str(test_settings.source.parent))
    line = one_line_error(lakepipe("run", "clickstream", "--once", *conf), f"partition 0: offsets {read[0]:,}-{cut - 1:,}")
    assert "partition 1" not in line, "a partition bronze can still read is not named"
    assert table(spark, p, p.layout.bronze.name).count() == 100, "nothing was read past the gap without the flag"

    result = runner.run(spark, load_project(test_settings, ["clickstream"]), ["clickstream"], once=True,
                        from_earliest_available=True)  # fmt: skip
    assert [(g.partition, g.missing) for g in result.gaps["clickstream"]] == [(0, cut - read[0])]
    bronze = table(spark, p, p.layout.bronze.name)
    assert bronze.count() == 160 - (cut - read[0]), "everything still in the topic, once"
    assert bronze.where(f"partition = 0 AND offset >= {read[0]} AND offset < {cut}").count() == 0
    log = spark.read.format("delta").load(events_table(test_settings).path).where("event = 'gap_accepted'").collect()
    assert [(r.query_name, r.layer) for r in log] == [("clickstream.bronze", "bronze")]
    assert f"partition 0: offsets {read[0]:,}-{cut - 1:,} ({cut - read[0]:,} records) expired" in log[0].error
    assert kafka_gaps.gaps(test_settings.kafka, p.topic, p.layout.checkpoint("bronze")) == [], "behind it now: a plain run goes on"

    # The topic deleted and created again: offsets start over below what bronze has read; no flag makes it safe.
    assert kafka_admin.delete_topic(test_settings.kafka, p.topic)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            kafka_admin.ensure_topic(test_settings.kafka, p.topic)
            break
        except Exception:  # noqa: BLE001 - the deletion is still under way
            time.sleep(1)
    send(test_settings, itertools.islice(events, 10))
    for accept in (False, True):
        with pytest.raises(OffsetsGoneError, match=rf"topic '{p.topic}' starts over below what bronze has read: partition "
                                                   r"\d: the topic ends at offset \d+, below the \d+ bronze has read"):  # fmt: skip
            runner.run(spark, load_project(test_settings, ["clickstream"]), ["clickstream"], True, accept)
    assert bronze.count() == 160 - (cut - read[0])
