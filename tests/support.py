"""Helpers shared by the end-to-end tests (fixtures stay in conftest.py)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.domains.clickstream.gold import activity_per_minute, revenue_per_minute
from pipelines.engine import runner
from pipelines.model.config import Settings, load_settings
from pipelines.model.project import Pipeline, load_project
from pipelines.platform import kafka_admin
from pipelines.simulators.base import EXACT_DUPLICATE, KafkaSink, SimEvent, Tally, publish


def run_once(spark: SparkSession, settings: Settings, names: Sequence[str]) -> runner.RunResult:
    """`lakepipe run NAMES --once` in this session."""
    return runner.run(spark, load_project(settings, list(names)), list(names), once=True)


def lakepipe_here(capsys, *args: str) -> str:  # noqa: ANN001 - pytest's capsys fixture
    """`lakepipe ARGS` run by the CLI's `main` in this process and its Spark session, which it leaves running (a
    subprocess would start a JVM of its own: a minute or more on a loaded 2-core machine); what it printed. For
    tests of what a command does; those of its console (one line, no stack trace) run it as a process."""
    from pipelines.cli import main

    capsys.readouterr()
    code = main(list(args))
    printed = capsys.readouterr()
    assert code == 0, printed.out + printed.err[-3000:]
    return printed.out


def pipeline(settings: Settings, name: str) -> Pipeline:
    return load_project(settings, [name]).pipeline(name)


def clickstream_tables(spark: SparkSession, folder: Path) -> Pipeline:
    """The clickstream pipeline with its tables created (empty) in a lake of its own under `folder`."""
    from pipelines.engine.tables import create_tables
    from tests.conftest import write_conf

    settings = load_settings("test", write_conf(folder / "conf", "unused"))
    p = pipeline(settings, "clickstream")
    create_tables(spark, load_project(settings, ["clickstream"]), p)
    return p


def send(settings: Settings, events: Iterable[SimEvent], name: str = "clickstream") -> Tally:
    """Publish `events` to pipeline `name`'s topic; every one must be delivered."""
    tally = publish(iter(events), KafkaSink(settings.kafka, pipeline(settings, name).topic, Tally()))
    assert not tally.failed, tally.errors
    return tally


def table(spark: SparkSession, p: Pipeline, name: str) -> DataFrame:
    """The rows of table `name` of pipeline `p`."""
    return spark.read.format("delta").load(p.layout.table(name).path)


def reaching_silver(events: Iterable[SimEvent]) -> list[dict]:
    """The payloads silver must hold: every event with no quarantine reason, exact re-sends left out."""
    return [json.loads(e.value) for e in events if not e.reasons and e.kind != EXACT_DUPLICATE]


def assert_exactly_once(spark: SparkSession, settings: Settings, topic: str, events: int, tally: Tally) -> None:
    """After crashes and a final drain of the clickstream pipeline: bronze holds every Kafka offset of `topic` once,
    silver every event once, quarantine every reject once, the audit balances, quality results are one row per
    rule per silver batch, and gold equals a batch recomputation over silver."""
    p = pipeline(settings, "clickstream")
    read = lambda t: spark.read.format("delta").load(t.path)  # noqa: E731
    expected = tally.expected()

    bronze = read(p.layout.bronze)
    offsets = kafka_admin.end_offsets(settings.kafka, topic)
    assert sum(offsets.values()) == events
    assert bronze.count() == events, "bronze has one row per Kafka record, no more, no less"
    assert bronze.select("topic", "partition", "offset").distinct().count() == events
    per_partition = {r.partition: (r.lo, r.hi, r.n) for r in bronze.groupBy("partition").agg(
        F.min("offset").alias("lo"), F.max("offset").alias("hi"), F.count("*").alias("n")).collect()}  # fmt: skip
    assert per_partition == {pt: (0, end - 1, end) for pt, end in offsets.items() if end}, "offsets have no gaps"

    silver = read(p.layout.silver)
    assert silver.count() == expected["silver"]
    assert silver.select("event_id").distinct().count() == expected["silver"], "event_id is unique in silver"
    quarantine = read(p.layout.quarantine)
    assert quarantine.count() == expected["quarantine"]
    assert quarantine.select("partition", "offset").distinct().count() == expected["quarantine"]
    audit = read(p.layout.batches).groupBy().sum("bronze_records", "exact_duplicates").first()
    assert tuple(audit) == (events, expected["exact_duplicates"]), "each batch is accounted for exactly once"
    silver_batches = {(r.query_id.removeprefix("silver-"), r.batch_id) for r in read(p.layout.batches).collect()}
    quality = read(p.layout.quality)
    assert quality.count() == len(silver_batches) * len(p.suite.rules), "one quality row per rule per batch, across kills"
    assert {(r.query_id, r.batch_id) for r in quality.select("query_id", "batch_id").distinct().collect()} == silver_batches

    gold = {t.name: read(t) for t in p.layout.outputs}
    assert_df_equality(gold["clickstream_revenue_per_minute"], revenue_per_minute(silver), ignore_row_order=True,
                       ignore_nullable=True)  # fmt: skip
    assert_df_equality(gold["clickstream_activity_per_minute"], activity_per_minute(silver), ignore_row_order=True,
                       ignore_nullable=True)  # fmt: skip
    assert_df_equality(gold["clickstream_sessions"], batch_sessions(silver).select(*gold["clickstream_sessions"].columns),
                       ignore_row_order=True, ignore_nullable=True)  # fmt: skip


def batch_sessions(silver: DataFrame) -> DataFrame:
    """Clickstream's sessions recomputed over all of silver in one batch (Spark's session_window), to compare with
    the gold table the stream merged batch by batch."""
    return silver.groupBy("session_id", F.session_window("event_time", "30 minutes")).agg(
        F.min_by("user_id", "event_time").alias("user_id"),
        F.min("event_time").alias("session_start"),
        F.max("event_time").alias("session_end"),
        F.count("*").alias("events"),
        F.sum(F.when(F.col("event_type") == "page_view", 1).otherwise(0)).cast("long").alias("page_views"),
        F.sum(F.when(F.col("event_type") == "purchase", 1).otherwise(0)).cast("long").alias("purchases"),
        F.coalesce(F.sum(F.when(F.col("event_type") == "purchase", F.col("price") * F.col("quantity"))),
                   F.lit(0)).cast("decimal(38,4)").alias("revenue"),
    ).withColumn("converted", F.col("purchases") > 0).drop("session_window")  # fmt: skip


def lakepipe_code(capsys, conf: Path, *args: str) -> tuple[int, str, str]:  # noqa: ANN001 - pytest's capsys
    """`lakepipe --conf-dir CONF --env test ARGS` by the CLI's `main` in this process: (exit code, stdout, stderr),
    for commands expected to fail as well."""
    from pipelines.cli import main

    capsys.readouterr()
    code = main(["--conf-dir", str(conf), "--env", "test", *args])
    printed = capsys.readouterr()
    return code, printed.out, printed.err


def without_gold(folder: Path, topic: str, **conf: object) -> Settings:
    """Settings of a conf folder whose clickstream spec has no gold outputs (bronze, silver and its checks only;
    the other pipelines' specs as they are): for tests of what happens before clickstream's gold, at half the cost
    of a run. `conf`: more arguments of write_conf."""
    import shutil

    import yaml

    from pipelines.model.config import load_settings
    from tests.conftest import PROJECT_DIR, write_conf

    spec = yaml.safe_load((PROJECT_DIR / "conf/pipelines/clickstream.yaml").read_text())
    specs = folder / "specs"
    shutil.copytree(PROJECT_DIR / "conf/pipelines", specs, dirs_exist_ok=True)
    files = {k: [x for x in v if x != "gold"] for k, v in spec.get("files", {}).items()}
    (specs / "clickstream.yaml").write_text(yaml.safe_dump({**spec, "outputs": [], "files": files}))
    return load_settings("test", write_conf(folder / "conf", topic, specs=specs, **conf))
