"""Damaged checkpoint files (issue 14): a run refuses to start with one line naming the file and the command that
fixes it; `lakepipe repair` sets aside what is safe to set aside (the batch runs or is planned again, nothing lost
or doubled) and refuses, with the reason, what is not. Real runs, real checkpoints, real Delta tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.domains.clickstream.simulator import ClickstreamGenerator
from pipelines.model.project import load_project
from pipelines.ops.checkpoints import file_problem
from pipelines.simulators.base import KafkaSink, Tally, publish
from tests.support import lakepipe_code, run_once, without_gold

pytestmark = [pytest.mark.kafka]


def newest(folder: Path) -> Path:
    return folder / str(max(int(f.name) for f in folder.iterdir() if f.name.isdigit()))


def test_a_damaged_checkpoint_file_is_named_and_repaired_where_safe(spark, tmp_path, unique_topic, kafka, capsys):
    settings = without_gold(tmp_path, unique_topic)
    conf = settings.source.parent
    p = load_project(settings, ["clickstream"]).pipeline("clickstream")
    gen = ClickstreamGenerator(seed=3).events()
    sink = KafkaSink(settings.kafka, unique_topic, Tally())
    publish(gen, sink, count=200)
    sink.close()
    run_once(spark, settings, ["clickstream"])
    assert p.bronze_with_silver, "one query writes bronze and silver: its checkpoint is bronze's"
    bronze_cp = silver_cp = Path(p.layout.checkpoint("bronze"))
    count = spark.read.format("delta").load(p.layout.bronze.path).count
    assert count() == 200

    # 1. the newest commit file of bronze, damaged: the run refuses in one line; repair sets it aside safely
    commit = newest(bronze_cp / "commits")
    commit.write_text('v1\n{"nextBatchWatermarkMs":0')
    code, out, err = lakepipe_code(capsys, conf, "run", "clickstream", "--once")
    assert code == 2 and out == "", out
    assert err == (f"lakepipe: clickstream: checkpoint file {commit} is damaged (line 2 is not JSON (Expecting ',' "
                   "delimiter at column 26)): `lakepipe repair clickstream` sets it aside safely\n")  # fmt: skip
    code, out, _ = lakepipe_code(capsys, conf, "repair", "clickstream")
    assert code == 0 and f"{commit} was damaged" in out and f"batch {commit.name} runs again" in out, out
    assert not commit.exists() and list((bronze_cp / "_damaged").iterdir())

    # 2. an offsets file of the next batch, damaged before it wrote anything: set aside, planned again
    planned = silver_cp / "offsets" / str(int(newest(silver_cp / "offsets").name) + 1)
    planned.write_bytes(b"v1\n\xff\xfe")
    code, _, err = lakepipe_code(capsys, conf, "run", "clickstream", "--once")
    assert code == 2 and f"checkpoint file {planned} is damaged (not UTF-8 text)" in err, err
    code, out, _ = lakepipe_code(capsys, conf, "repair")
    assert code == 0 and f"batch {planned.name} wrote nothing yet" in out and "iot: no damaged checkpoint file" in out

    # the runs after the repair: bronze's batch ran again and was recognised as written, nothing doubled or lost
    publish(gen, sink := KafkaSink(settings.kafka, unique_topic, Tally()), count=100)
    sink.close()
    run_once(spark, settings, ["clickstream"])
    bronze = spark.read.format("delta").load(p.layout.bronze.path)
    assert bronze.count() == 300 == bronze.select("partition", "offset").distinct().count()
    silver = spark.read.format("delta").load(p.layout.silver.path)
    quarantined = spark.read.format("delta").load(p.layout.quarantine.path).count()
    audit = spark.read.format("delta").load(p.layout.batches.path)
    assert audit.groupBy().sum("bronze_records").first()[0] == 300
    assert audit.groupBy().sum("silver_records").first()[0] == silver.count()
    assert audit.groupBy().sum("quarantined_records").first()[0] == quarantined

    # 3. the offsets of a batch that wrote bronze but did not finish (its commit file gone), damaged: refused
    last = newest(bronze_cp / "offsets")
    (bronze_cp / "commits" / last.name).unlink()
    (bronze_cp / "commits" / f".{last.name}.crc").unlink(missing_ok=True)
    last.write_text("")
    code, out, _ = lakepipe_code(capsys, conf, "repair", "clickstream")
    assert code == 2 and last.exists(), out
    assert f"{last} is damaged (empty); not touched: " in out and f" holds a write of batch {last.name}" in out, out
    code, _, err = lakepipe_code(capsys, conf, "run", "clickstream", "--once")
    assert code == 2 and "`lakepipe repair clickstream` cannot set it aside safely" in err, err

    # 4. the query's id: refused
    (silver_cp / "metadata").write_text("{}")
    code, out, _ = lakepipe_code(capsys, conf, "repair", "clickstream")
    assert code == 2 and "metadata is damaged (line 1 is not the JSON object Spark wrote (no 'id'))" in out, out
    assert "which names its writes in every table" in out


@pytest.mark.parametrize(
    "kind, text, problem",
    [
        ("offsets", "v1\n{}\n{\"t\":{\"0\":5}}\n-\n", None),  # a second source without an offset yet
        ("offsets", "v1\n{}\n", "cut short (no source offsets)"),
        ("commits", "V1\n{}", "its first line 'V1' is not a log version such as v1"),
        ("commits", "\n\n", "empty"),
        ("commits", "v1\n[1]", "line 2 is not the JSON object Spark wrote"),
        ("metadata", '{"id":"x"}', None),
    ],
)
def test_file_problems(tmp_path, kind, text, problem):
    f = tmp_path / "0"
    f.write_text(text)
    assert file_problem(f, kind) == problem


def test_the_files_spark_writes_are_read_as_intact(spark, test_settings):
    sink = KafkaSink(test_settings.kafka, test_settings.pipeline("clickstream").topic, Tally())
    publish(ClickstreamGenerator(seed=4).events(), sink, count=10)
    sink.close()
    run_once(spark, test_settings, ["clickstream"])
    root = Path(test_settings.checkpoints_root)
    files = [f for f in root.rglob("*") if f.is_file() and f.parent.name in ("offsets", "commits") and f.name.isdigit()]
    assert len(files) >= 8  # bronze and silver's query and three gold queries
    assert [str(f) for f in files if file_problem(f, f.parent.name)] == []
    queries = {f.parent.parent for f in files}
    assert len(queries) == 4 and all(file_problem(q / "metadata", "metadata") is None for q in queries)
    assert json.loads((root / "clickstream" / "bronze" / "metadata").read_text())["id"]
