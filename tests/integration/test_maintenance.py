"""Compaction (`lakepipe optimize`), VACUUM (`lakepipe maintain`: an unsafe retention refused, streams carry on
after one) and the Delta-log facts the latency benchmark reads, on real Delta tables."""

from __future__ import annotations

import datetime as dt
import itertools
import time
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from pipelines.domains.clickstream.simulator import ClickstreamGenerator
from pipelines.engine.delta_log import commit_times, data_files, file_versions, latest_version
from pipelines.errors import LakepipeError
from pipelines.model.layout import Table
from pipelines.ops.maintenance import compact, file_count, vacuum
from tests.integration.test_cli_errors import lakepipe
from tests.support import lakepipe_here, pipeline, reaching_silver, run_once, send, table, without_gold


def _appends(spark, path: str, batches: int, partitioned: bool = False) -> None:
    for b in range(batches):
        df = spark.createDataFrame([(b * 10 + i, f"day{i % 2}") for i in range(10)], "id long, day string")
        writer = df.coalesce(1).write.format("delta").mode("append")
        (writer.partitionBy("day") if partitioned else writer).save(path)


def test_compaction_leaves_one_file_per_partition_and_the_same_rows(spark, tmp_path):
    flat, parted = str(tmp_path / "flat"), str(tmp_path / "parted")
    _appends(spark, flat, 6)
    _appends(spark, parted, 5, partitioned=True)
    before = {p: sorted(spark.read.format("delta").load(p).collect()) for p in (flat, parted)}
    tables = [Table("flat", "gold", "t", flat), Table("parted", "silver", "t", parted),
              Table("never_written", "gold", "t", str(tmp_path / "none"))]  # fmt: skip

    done = {c.table: c for c in compact(spark, tables)}

    assert set(done) == {"flat", "parted"}, "a table not written yet is skipped, not created"
    assert (done["flat"].files_before, done["flat"].files_after) == (6, 1)
    assert (done["parted"].files_before, done["parted"].files_after) == (10, 2), "one file per day partition"
    assert file_count(spark, flat) == (1, done["flat"].bytes_after)
    for p in (flat, parted):
        assert sorted(spark.read.format("delta").load(p).collect()) == before[p], "compaction changes no row"


def test_delta_log_names_the_version_and_commit_time_of_every_file(spark, tmp_path):
    path = str(tmp_path / "t")
    assert latest_version(path) == -1
    start_ms = time.time() * 1000
    _appends(spark, path, 3)

    versions = file_versions(path)
    by_file = {r.f: r.id // 10 for r in spark.read.format("delta").load(path).selectExpr("_metadata.file_name AS f", "id").collect()}
    assert by_file and all(versions[f] == batch for f, batch in by_file.items()), "append b is version b"
    times = commit_times(path)
    assert latest_version(path) == 2 and sorted(times) == [0, 1, 2]
    assert start_ms - 1000 <= times[0] <= times[1] <= times[2] <= time.time() * 1000


def test_delta_log_keeps_each_row_with_the_version_that_first_added_it_after_compaction(spark, tmp_path):
    """Compaction rewrites rows (`dataChange: false`): their first commit still says when they became readable."""
    path = str(tmp_path / "t")
    _appends(spark, path, 3)
    compact(spark, [Table("t", "gold", "t", path)])
    assert latest_version(path) == 3
    current = {r.f for r in spark.read.format("delta").load(path).selectExpr("_metadata.file_name AS f").collect()}
    assert not current & set(file_versions(path)), "the compacted file added no new rows"

    first = spark.read.parquet(*[f"{path}/{p}" for p in data_files(path)]).selectExpr("_metadata.file_name AS f", "id")
    by_id = {r.id: file_versions(path)[r.f] for r in first.collect()}
    assert by_id == {i: i // 10 for i in range(30)}


@pytest.mark.kafka
def test_vacuum_refuses_an_unsafe_retention_and_streams_carry_on_after_it(spark, tmp_path, unique_topic, kafka, capsys):
    test_settings = without_gold(tmp_path, unique_topic)  # bronze and silver: a stream of a Delta table after VACUUM
    gen = ClickstreamGenerator(seed=12, start=dt.datetime(2026, 11, 30, 8, tzinfo=dt.UTC), events_per_second=5)
    events = gen.events()
    first = list(itertools.islice(events, 200))
    send(test_settings, first)
    run_once(spark, test_settings, ["clickstream"])
    p = pipeline(test_settings, "clickstream")
    tables = list(p.layout.tables)
    conf = ("--env", "test", "--conf-dir", str(tmp_path / "conf"))

    with pytest.raises(LakepipeError, match="below Delta's safety limit of 168"):
        vacuum(spark, tables, 1)
    refused = lakepipe("maintain", "clickstream", "--vacuum-retention", "1", *conf)
    assert refused.returncode == 2 and len(refused.stdout.strip().splitlines() + refused.stderr.strip().splitlines()) == 1
    assert "--force" in refused.stdout + refused.stderr

    quality = spark.read.format("delta").load(p.layout.quality.path)
    recent = quality.count()
    old = quality.limit(1).withColumn("evaluated_at", F.expr("current_timestamp() - INTERVAL 100 DAYS"))
    old.withColumn("run_id", F.lit("old")).write.format("delta").mode("append").save(p.layout.quality.path)
    out = lakepipe_here(capsys, "maintain", "clickstream", *conf)  # OPTIMIZE, then VACUUM keeping 7 days
    after = spark.read.format("delta").load(p.layout.quality.path)
    assert after.where("run_id = 'old'").count() == 0 and after.count() == recent, "quality results past 90 days go"
    lines = {ln.split(":")[0]: ln for ln in out.splitlines()}
    assert all("VACUUM (retain 168 h) deleted 0 files" in lines[t.name] for t in tables if t.name in lines)
    assert p.layout.silver.name in lines and "pipeline_events" in lines

    forced = {v.table: v.files_deleted for v in vacuum(spark, tables, 0, force=True)}  # every stream has caught up
    assert forced[p.layout.bronze.name] > 0, "the files OPTIMIZE replaced are gone"
    second = list(itertools.islice(events, 150))
    send(test_settings, second)
    run_once(spark, test_settings, ["clickstream"])  # the streams read on from their checkpoints
    assert table(spark, p, p.layout.bronze.name).count() == 350
    assert table(spark, p, p.layout.silver.name).count() == len(reaching_silver(first + second))


def test_small_file_properties_follow_the_spec_both_ways(spark, tmp_path):
    import yaml

    from pipelines.engine.tables import apply_file_properties, create_tables
    from pipelines.model.config import load_settings
    from pipelines.model.project import load_project
    from tests.conftest import PROJECT_DIR, write_conf

    specs = tmp_path / "specs"
    specs.mkdir()
    spec = yaml.safe_load((PROJECT_DIR / "conf/pipelines/clickstream.yaml").read_text())
    spec.pop("files", None)

    def load(files: dict | None):
        (specs / "clickstream.yaml").write_text(yaml.safe_dump({**spec, **({"files": files} if files else {})}))
        project = load_project(load_settings("test", write_conf(tmp_path / "conf", "test.unused", specs=specs)), ["clickstream"])
        return project, project.pipeline("clickstream")

    project, p = load({"auto_compact": ["bronze", "clickstream_sessions"], "optimize_write": ["silver"]})
    create_tables(spark, project, p)  # a new table is created with them: no metadata commit of its own
    properties = lambda t: spark.sql(f"DESCRIBE DETAIL delta.`{t.path}`").first().properties  # noqa: E731
    assert properties(p.layout.bronze)["delta.autoOptimize.autoCompact"] == "true"
    assert properties(p.layout.silver)["delta.autoOptimize.optimizeWrite"] == "true"
    assert "delta.autoOptimize.autoCompact" not in properties(p.layout.silver)
    assert apply_file_properties(spark, p) == [], "a start with the same spec changes nothing"

    _, p = load({"auto_compact": ["bronze"]})  # the spec changed: existing tables follow it at the next start
    assert sorted(apply_file_properties(spark, p)) == [
        "clickstream_events: delta.autoOptimize.optimizeWrite off", "clickstream_sessions: delta.autoOptimize.autoCompact off"
    ]  # fmt: skip
    assert "delta.autoOptimize.optimizeWrite" not in properties(p.layout.silver)
    _, p = load({"auto_compact": ["bronze", "gold"]})
    assert sorted(apply_file_properties(spark, p)) == [
        f"{o.name}: delta.autoOptimize.autoCompact=true" for o in sorted(p.layout.outputs, key=lambda t: t.name)
    ]
    assert properties(p.layout.output("clickstream_sessions"))["delta.autoOptimize.autoCompact"] == "true"
    assert properties(p.layout.bronze)["delta.autoOptimize.autoCompact"] == "true"

    interval = lambda t: properties(t).get("delta.checkpointInterval")  # noqa: E731
    assert {t.name: interval(t) for t in p.layout.tables} == {t.name: "100" for t in p.layout.tables}, (
        "each table checkpoints its log every 100 commits, the shared quality table too")
    _, p = load({"auto_compact": ["bronze", "gold"], "checkpoint_interval": 25})
    owned = [t for t in p.layout.tables if t.pipeline == p.name]
    assert sorted(apply_file_properties(spark, p)) == sorted(f"{t.name}: delta.checkpointInterval=25" for t in owned)
    assert {t.name: interval(t) for t in owned} == {t.name: "25" for t in owned}


def test_a_new_silver_table_keeps_statistics_only_of_the_columns_lakepipe_reads_it_by(spark, tmp_path):
    import json

    from pipelines.engine.silver import silver_schema
    from pipelines.engine.tables import create_tables
    from pipelines.model.config import load_settings
    from pipelines.model.project import load_project
    from tests.conftest import write_conf

    project = load_project(load_settings("test", write_conf(tmp_path / "conf", "test.unused")), ["customers"])
    p = project.pipeline("customers")
    create_tables(spark, project, p)
    path = p.layout.silver.path
    props = spark.sql(f"DESCRIBE DETAIL delta.`{path}`").first().properties
    assert props["delta.dataSkippingStatsColumns"] == "change_time,lsn,customer_id"
    row = {"lsn": 7, "customer_id": "c1", "email": "a@b.c", "change_time": dt.datetime(2026, 11, 22, 9, tzinfo=dt.UTC),
           "event_date": dt.date(2026, 11, 22)}  # fmt: skip
    spark.createDataFrame([row], silver_schema(p.contract)).write.format("delta").mode("append").save(path)
    log = Path(path.removeprefix("file:"), "_delta_log", f"{latest_version(path):020d}.json")
    stats = [json.loads(json.loads(line)["add"]["stats"]) for line in log.read_text().splitlines() if '"add"' in line]
    assert [sorted(s["minValues"]) for s in stats] == [["change_time", "customer_id", "lsn"]]  # not email, nor the rest
    rows = spark.read.format("delta").load(path).where("customer_id = 'c1' AND change_time >= '2026-11-22'").collect()
    assert [(r.lsn, r.email) for r in rows] == [(7, "a@b.c")]


def test_new_tables_write_the_columns_unique_to_each_record_without_a_dictionary(spark, tmp_path):
    """Bronze's raw value and offset, and silver's payload hash and dedup key, are written plain: Parquet tries no
    dictionary for them. Shown with values that repeat, where it would otherwise use one (as it still does for the
    topic). Timestamps are INT64 microseconds, not Spark's default INT96."""
    import pyarrow.parquet as pq

    from pipelines.engine.bronze import BRONZE_SCHEMA
    from pipelines.engine.tables import create_tables
    from pipelines.model.config import load_settings
    from pipelines.model.project import load_project
    from tests.conftest import write_conf

    project = load_project(load_settings("test", write_conf(tmp_path / "conf", "test.unused")), ["clickstream"])
    p = project.pipeline("clickstream")
    create_tables(spark, project, p)
    now = dt.datetime(2026, 11, 22, 9)
    rows = [(b"u1", b'{"n":%d}' % (i % 3), "t", 0, i % 5, now, 0, [], now, now.date()) for i in range(2000)]
    path = p.layout.bronze.path
    spark.createDataFrame(rows, BRONZE_SCHEMA).coalesce(1).write.format("delta").mode("append").save(path)
    files = list(Path(path.removeprefix("file:")).rglob("*.parquet"))
    meta = pq.ParquetFile(files[0]).metadata.row_group(0)
    encodings = {meta.column(i).path_in_schema: meta.column(i).encodings for i in range(meta.num_columns)}
    assert not any("DICTIONARY" in e for e in encodings["value"] + encodings["offset"]), encodings
    assert any("DICTIONARY" in e for e in encodings["topic"]), encodings
    schema = pq.ParquetFile(files[0]).schema
    column = next(schema.column(i) for i in range(len(schema)) if schema.column(i).name == "kafka_timestamp")
    assert (column.physical_type, column.logical_type.type) == ("INT64", "TIMESTAMP"), column
    assert '"timeUnit":"microseconds"' in column.logical_type.to_json().replace(" ", ""), column.logical_type.to_json()
    assert spark.read.format("delta").load(path).where("offset = 3").first().kafka_timestamp == now
    props = spark.sql(f"DESCRIBE DETAIL delta.`{p.layout.silver.path}`").first().properties
    assert (props["parquet.enable.dictionary#payload_hash"], props["parquet.enable.dictionary#event_id"]) == ("false", "false")
