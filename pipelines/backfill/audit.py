"""The `backfills` audit table and backfill ids.

A backfill's id is a hash of its arguments, the spec, contract, suite and output function it ran with, and
the version of the table it read: the same backfill over unchanged input has the same id, and a run whose id
already succeeded is skipped (it would change nothing). A changed input or code gives a new id.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import inspect
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from pipelines.engine.delta_io import ensure_table
from pipelines.model.project import Pipeline, Project

SCHEMA = T.StructType(
    [T.StructField(n, t) for n, t in [
        ("backfill_id", T.StringType()), ("pipeline", T.StringType()), ("layer", T.StringType()),
        ("table_name", T.StringType()), ("range", T.StringType()), ("rows_read", T.LongType()),
        ("rows_written", T.LongType()), ("rows_replaced", T.LongType()), ("started", T.TimestampType()),
        ("ended", T.TimestampType()), ("status", T.StringType()), ("detail", T.StringType())]]  # fmt: skip
)


@dataclass
class Record:
    backfill_id: str
    pipeline: str
    layer: str
    table_name: str
    range: str
    rows_read: int = 0
    rows_written: int = 0
    rows_replaced: int = 0
    started: dt.datetime = field(default_factory=lambda: now())
    ended: dt.datetime | None = None
    status: str = "running"
    detail: str = ""

    def summary(self) -> str:
        return (f"backfill {self.backfill_id} {self.status}: {self.pipeline} {self.layer} {self.table_name} {self.range}: "
                f"{self.rows_read:,} rows read, {self.rows_written:,} written, {self.rows_replaced:,} replaced"
                + (f"; {self.detail}" if self.detail else ""))  # fmt: skip


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def backfill_id(p: Pipeline, args: dict, input_version: int | None = None, function: str | None = None) -> str:
    """A stable id for `args` run with `p`'s spec, contract and suite (and output function) over `input_version`."""
    code = [repr(p.spec), repr(p.contract), repr(p.suite)]
    if function is not None:
        code.append(inspect.getsource(p.functions[function]))
    text = json.dumps({"args": args, "code": code, "input_version": input_version}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def succeeded_before(spark: SparkSession, project: Project, bid: str) -> dt.datetime | None:
    path = _ensure(spark, project)
    row = spark.read.format("delta").load(path).where((F.col("backfill_id") == bid) & (F.col("status") == "succeeded"))
    first = row.orderBy("ended").select("ended").first()
    return first.ended if first else None


def write(spark: SparkSession, project: Project, record: Record) -> None:
    """Append the record's row once it has an outcome (a run killed before that leaves none: its writes are
    exactly-once, so running it again is the way to finish it)."""
    path = _ensure(spark, project)
    spark.createDataFrame([asdict(record)], SCHEMA).write.format("delta").mode("append").save(path)


@contextmanager
def recording(spark: SparkSession, project: Project, record: Record) -> Iterator[Record]:
    """Append the record's row when the work inside ends: succeeded, or failed with the error's first line."""
    try:
        yield record
    except Exception as exc:
        record.status, record.ended = "failed", now()
        record.detail = "; ".join(x for x in (record.detail, str(exc).strip().splitlines()[0][:300]) if x)
        write(spark, project, record)
        raise
    record.status, record.ended = "succeeded", now()
    write(spark, project, record)


def _ensure(spark: SparkSession, project: Project) -> str:
    path = project.backfills_table.path
    ensure_table(spark, path, SCHEMA)
    return path
