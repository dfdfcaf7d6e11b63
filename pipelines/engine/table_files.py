"""The data files of a Delta table, kept current from its commits: what silver's dedup lookup reads each micro-batch.

To read a Delta table at a new version, Delta first rebuilds the table's state (every data file, with its
statistics) from its log with Spark jobs, then picks the files a filter needs: ~0.5 s and ~0.8 s of CPU on 2 cores.
Silver's every micro-batch reads silver at a new version (its own previous append made one), so each paid that.
`TableFiles` has Delta build the state once per query, then applies each newer commit's added and removed files,
read from the commit's own JSON file (the Delta protocol's log, no Spark job), and picks the files by their
event-time statistics as Delta's data skipping does. The lookup then reads those files as Parquet.

Where a file cannot be read as plain Parquet (a deletion vector; a table with column mapping), or the log cannot be
followed (a commit file already cleaned up: then the state is built again), the table is read through Delta.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from typing import NamedTuple
from urllib.parse import unquote

from py4j.protocol import Py4JError
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from pipelines.engine.delta_io import jvm_snapshot, read_text

log = logging.getLogger(__name__)

_GLOB = re.compile(r"[{}\[\]*?\\]")  # characters Spark would take as a file-name pattern
_MAPPING = "delta.columnMapping.mode"
_MS = dt.timedelta(milliseconds=1)  # Delta's timestamp statistics are cut to milliseconds


class DataFile(NamedTuple):
    path: str  # absolute
    date: str | None  # the file's `event_date` partition value (None: null or not partitioned by it)
    low: dt.datetime | None  # the least and greatest event time in the file, and how many rows have none:
    high: dt.datetime | None  # None where the file has no statistics of it
    nulls: int | None
    rows: int | None = None  # its row count (`numRecords`), None where its statistics do not say


class Unreadable(Exception):
    """The table's files cannot be read as plain Parquet (the reason is the message)."""


class TableFiles:
    """The data files of the Delta table at `path`, at the newest version asked for so far (see above)."""

    def __init__(self, path: str, event_time: str, partition: str = "event_date") -> None:
        self.path = path.rstrip("/")
        self.event_time = event_time
        self.partition = partition
        self.version: int | None = None
        self.schema: T.StructType | None = None
        self._files: dict[str, DataFile] = {}  # by the path the log names it with
        self.unreadable: str | None = None  # why the table is read through Delta instead
        self._asked = False

    def at(self, spark: SparkSession, version: int) -> list[DataFile] | None:
        """The table's files at `version` or a newer one; None when the table must be read through Delta."""
        if self.unreadable is not None:
            return None
        try:
            if self.version is None:
                first, self._asked = not self._asked, True
                if not self._load(spark, checksum_only=first):
                    return None  # a large table: its first batch reads it through Delta (see `_load`)
            elif version > self.version:
                try:
                    self._follow(spark, version)
                except (OSError, Py4JError) as exc:  # a commit file gone (log clean-up): the state once more
                    log.info("%s: commits after version %s not read (%s); reading the table's state", self.path,
                             self.version, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)  # fmt: skip
                    self._load(spark)
        except Unreadable as exc:
            self.unreadable = str(exc)
            log.info("%s is read through Delta: %s", self.path, exc)
            return None
        return list(self._files.values())

    def read(self, spark: SparkSession, files: list[DataFile], columns: list[str]) -> DataFrame:
        """`columns` of `files`, read as Parquet (none: an empty frame)."""
        schema = T.StructType([self.schema[c] for c in columns])
        if not files:
            return spark.createDataFrame([], schema)
        return spark.read.schema(schema).parquet(*[f.path for f in files])

    def _load(self, spark: SparkSession, checksum_only: bool = False) -> bool:
        """The newest version's files; False (nothing loaded) with `checksum_only` when the checksum file does not
        list them. A query's first batch asks only that: listing a large table from Delta's state (Spark jobs, then
        every file's statistics into Python) cost a `--once` run into 10M rows 0.9-1.1 s more than Delta's own read
        (bench S2d); a continuous query lists it at its second batch, once."""
        snapshot = jvm_snapshot(spark, self.path)
        listed = self._listed(spark, snapshot, checksum_only)
        if listed is None:
            return False
        metadata = snapshot.metadata()
        mode = metadata.configuration().get(_MAPPING)
        self._metadata(metadata.schemaString(), mode.get() if mode.isDefined() else None)
        files = {}
        for path, date, stats, dv in listed:
            if dv:
                raise Unreadable(f"file {path} has a deletion vector")
            files[path] = self._file(path, date, stats)
        self._files, self.version = files, int(snapshot.version())
        return True

    def _listed(self, spark: SparkSession, snapshot, checksum_only: bool) -> list[tuple] | None:  # noqa: ANN001 - a JVM Snapshot
        """(path, date, stats, has a deletion vector) of each file of `snapshot`: from its checksum file, where
        Delta keeps the list of a small table (under 50 files), else (unless `checksum_only`: None) from the state
        Delta builds."""
        crc = snapshot.checksumOpt()
        kept = crc.get().allFiles() if crc.isDefined() else None
        if kept is not None and kept.isDefined():
            adds = kept.get()
            out = []
            for i in range(adds.length()):
                add = adds.apply(i)
                date = add.partitionValues().get(self.partition)
                out.append((add.path(), date.get() if date.isDefined() else None, add.stats(), add.deletionVector() is not None))
            return out
        if checksum_only:
            return None
        state = DataFrame(snapshot.allFiles().toDF(), spark).selectExpr(
            "path", f"partitionValues['{self.partition}'] AS date", "stats", "deletionVector IS NOT NULL AS dv"
        )
        return [tuple(r) for r in state.collect()]

    def _follow(self, spark: SparkSession, version: int) -> None:
        """Apply the commits after the version known up to `version`, from their JSON files."""
        for v in range(self.version + 1, version + 1):
            text = read_text(spark, f"{self.path}/_delta_log/{v:020d}.json")
            for line in text.splitlines():
                action = json.loads(line) if line.strip() else {}
                if "add" in action:
                    add = action["add"]
                    if add.get("deletionVector"):
                        raise Unreadable(f"file {add['path']} has a deletion vector")
                    self._files[add["path"]] = self._file(add["path"], (add.get("partitionValues") or {}).get(self.partition),
                                                          add.get("stats"))  # fmt: skip
                elif "remove" in action:
                    self._files.pop(action["remove"]["path"], None)
                elif "metaData" in action:
                    metadata = action["metaData"]
                    self._metadata(metadata["schemaString"], (metadata.get("configuration") or {}).get(_MAPPING))
            self.version = v

    def _metadata(self, schema_json: str, mapping: str | None) -> None:
        if mapping not in (None, "none"):  # files name their columns otherwise than the table does
            raise Unreadable(f"column mapping ({mapping})")
        self.schema = T.StructType.fromJson(json.loads(schema_json))

    def _file(self, path: str, date: str | None, stats: str | None) -> DataFile:
        full = unquote(path)
        if "://" not in full and not full.startswith("/"):
            full = f"{self.path}/{full}"
        if _GLOB.search(full):
            raise Unreadable(f"file name {full} holds a pattern character")
        low = high = nulls = rows = None
        if stats:
            s = json.loads(stats)
            low = _timestamp((s.get("minValues") or {}).get(self.event_time))
            high = _timestamp((s.get("maxValues") or {}).get(self.event_time))
            nulls = (s.get("nullCount") or {}).get(self.event_time)
            rows = s.get("numRecords")
        return DataFile(full, date, low, high, nulls, rows if isinstance(rows, int) else None)


def _timestamp(text: object) -> dt.datetime | None:
    try:
        t = dt.datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        return None
    return t if t is not None and t.tzinfo is not None else None  # (without an offset: not comparable)


def overlapping(files: list[DataFile], ranges: list[tuple[int, int]], with_nulls: bool) -> list[DataFile]:
    """The files that may hold a row whose event time is in one of the epoch-second `ranges` [start, end), or none
    when `with_nulls` (pure). A file without statistics is kept unless its date partition rules it out."""
    spans = [(dt.datetime.fromtimestamp(a, dt.UTC), dt.datetime.fromtimestamp(b, dt.UTC)) for a, b in ranges]
    days = [(lo.date().isoformat(), hi.date().isoformat()) for lo, hi in spans]

    def wanted(f: DataFile) -> bool:
        if with_nulls and (f.nulls is None or f.nulls > 0):
            return True
        if f.date is not None and not any(a <= f.date <= b for a, b in days):
            return False
        if f.low is None or f.high is None:
            return f.date is not None or f.nulls is None
        return any(f.low < hi and f.high + _MS >= lo for lo, hi in spans)

    return [f for f in files if wanted(f)]


def rows_of(files: list[DataFile]) -> int | None:
    """The rows of `files` by their statistics; None when a file's statistics do not count them (pure)."""
    counts = [f.rows for f in files]
    return None if None in counts else sum(counts)
