"""`lakepipe status` on the local broker and real Delta tables: bronze's lag is the broker's end offsets minus
where bronze's next micro-batch starts (the whole topic before the first run, then exactly the records sent while
the pipeline was stopped), and each table's last commit is seen."""

from __future__ import annotations

import datetime as dt
import itertools
import json

import pytest

from pipelines.domains.clickstream.simulator import ClickstreamGenerator
from pipelines.ops.status import committed_offsets, pipeline_status
from pipelines.platform import kafka_admin
from tests.integration.test_cli_errors import lakepipe
from tests.support import pipeline, run_once, send

pytestmark = [pytest.mark.kafka]


def test_lag_is_what_the_stopped_pipeline_has_not_taken(spark, test_settings, tmp_path):
    gen = ClickstreamGenerator(seed=5, start=dt.datetime(2026, 11, 30, 8, tzinfo=dt.UTC), events_per_second=5)
    events = gen.events()
    send(test_settings, itertools.islice(events, 300))
    p = pipeline(test_settings, "clickstream")
    before = pipeline_status(test_settings, p)
    assert before.lag == 300  # starting_offsets: earliest, and no checkpoint yet
    assert all(t.last_commit_ms is None for t in before.tables)

    run_once(spark, test_settings, ["clickstream"])
    caught_up = pipeline_status(test_settings, p)
    assert caught_up.lag == 0
    ages = {t.name: t.age_s for t in caught_up.tables}
    assert ages[p.layout.bronze.name] is not None and ages[p.layout.silver.name] is not None
    assert 0 <= ages[p.layout.bronze.name] < 600

    send(test_settings, itertools.islice(events, 120))
    behind = pipeline_status(test_settings, p)
    assert behind.lag == 120
    ends = kafka_admin.end_offsets(test_settings.kafka, p.topic)
    committed = committed_offsets(p.layout.checkpoint("bronze"))[p.topic]
    assert {x.partition: x.lag for x in behind.partitions} == {k: ends[k] - committed[k] for k in ends}

    out = lakepipe("status", "clickstream", "--json", "--env", "test", "--conf-dir", str(tmp_path / "conf"))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["pipelines"][0]["lag_records"] == 120
