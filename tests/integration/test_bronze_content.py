"""Bronze stores any record as received: null and empty values, invalid UTF-8, a 1 MB value, headers."""

from __future__ import annotations

import json

import pytest

from pipelines.model.project import load_project
from pipelines.ops.catalog import list_tables
from pipelines.simulators.base import KafkaSink, SimEvent, Tally, publish
from tests.support import pipeline, run_once

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

BIG = {
    "event_id": "big-1", "event_type": "page_view", "event_time": "2026-11-22T08:00:00Z",
    "user_id": "u1", "session_id": "s1", "page_url": "/" + "x" * (1024 * 1024),
}  # fmt: skip
RECORDS = [
    SimEvent("null", b"u1", None, ("invalid_json",)),
    SimEvent("empty", b"u1", b"", ("invalid_json",)),
    SimEvent("bad_utf8", None, b'{"event_id": "\xff\xfe"}', ("invalid_json",), (("h", b"\x00\x01"),)),
    SimEvent("big", b"u1", json.dumps(BIG).encode()),
]


def test_bronze_never_rejects_content(spark, test_settings):
    topic = pipeline(test_settings, "clickstream").topic
    tally = publish(iter(RECORDS), KafkaSink(test_settings.kafka, topic, Tally()))
    assert sum(tally.delivered.values()) == 4, tally.to_dict()

    run_once(spark, test_settings, ["clickstream"])
    p = pipeline(test_settings, "clickstream")
    bronze = {(r.partition, r.offset): r for r in spark.read.format("delta").load(p.layout.bronze.path).collect()}
    values = sorted((bytes(r.value) if r.value is not None else None for r in bronze.values()), key=lambda v: len(v or b""))
    assert values == [None, b"", RECORDS[2].value, RECORDS[3].value], "every value is stored byte for byte"
    with_header = [r for r in bronze.values() if r.key is None]
    assert [(h.key, bytes(h.value)) for h in with_header[0].headers] == [("h", b"\x00\x01")]
    assert all(r.ingestion_date is not None and r.kafka_timestamp is not None for r in bronze.values())

    quarantine = spark.read.format("delta").load(p.layout.quarantine.path).collect()
    assert sorted(tuple(r.reasons) for r in quarantine) == [("invalid_json",)] * 3
    silver = spark.read.format("delta").load(p.layout.silver.path).collect()
    assert [len(r.page_url) for r in silver] == [1024 * 1024 + 1], "a 1 MB event flows through to silver"

    listed = {t["name"]: t for t in list_tables(spark, load_project(test_settings))}
    assert listed["clickstream_events_raw"] == {
        "name": "clickstream_events_raw", "layer": "bronze", "catalog_name": None, "location": p.layout.bronze.path, "rows": 4,
        "keys": ["topic", "partition", "offset"], "partition_by": [], "comment": p.layout.bronze.comment,
    }  # fmt: skip
    assert listed["clickstream_events"]["partition_by"] == ["event_date"]  # the tests' catalog is off: no names
    assert listed["clickstream_events_quarantine"]["rows"] == 3
    assert {t["layer"] for t in listed.values()} == {"bronze", "silver", "quarantine", "gold", "audit"}
