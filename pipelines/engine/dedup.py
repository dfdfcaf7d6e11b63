"""Which silver rows a micro-batch is deduplicated against: a window around the batch's event times.

A record's earlier copies are looked up by its dedup key among the silver rows whose event time lies within
`horizon` of the hour the record's event time falls in. So:
- an exact re-send (same key, same content) carries the event time of its first copy and is always caught,
  whatever its delay: weeks later it reads the silver files of that hour again;
- a conflicting copy (same key, other content) is caught when the two event times are less than `horizon`
  apart (and may be caught further apart); beyond that both are kept.
The lookup reads only silver's date partitions, and within them only the files whose event-time statistics
overlap those windows, so its cost follows the batch's own hours, not silver's size; but it grows with the
traffic of those hours (millions of rows in a busy one), of which a micro-batch keeps only its own keys' rows
when that traffic is large (`Lookup.broadcast_keys`, used by `pipelines.engine.silver.classify`). Such a large
lookup first finds which files hold one of the batch's keys, reading only keys and event times, then reads the
payload hashes of those files alone (`files_holding`): usually none, since a re-send is rare.

A silver query reads silver's data files of those windows as Parquet, listed at silver's newest version by its
`TableFiles` (`pipelines.engine.table_files`): Delta would rebuild the table's state for each new version first.
Where that list cannot serve, it reads silver through Delta by version (the newest when the batch begins), not as
"the table". Spark re-caches every cached plan that reads a table when a write to that table commits; a micro-batch
keeps its classification cached for its writes, and its own silver append would otherwise throw that away.
Whatever then used the batch (its quarantine append, its deferred batch rules, its SCD refresh) would parse and
classify it again, against a silver that now holds the batch: every new row an exact re-send of itself. (A read of
the files as Parquet is no plan of the table: a write to silver does not re-cache it.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import NamedTuple

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.engine.delta_io import scanned_rows, table_snapshot
from pipelines.engine.table_files import DataFile, TableFiles, overlapping, rows_of
from pipelines.model.contract import FieldSpec

HOUR = 3600
MAX_RANGES = 64  # a batch spread over more hours is looked up in this many merged ranges
# A micro-batch's keys are broadcast into the lookup (`pipelines.engine.silver.classify`) when the lookup is
# estimated to hold at least BROADCAST_LOOKUP_MIN rows (below that, reading the batch's keys once more costs more
# than the shuffle it saves: ~0.4 s per 50,000 records against ~0.6 s saved at 2M rows, on 2 cores), and the batch
# has at most BROADCAST_KEYS_MAX records (~20-40 MB of keys; a raised `kafka.max_offsets_per_trigger` is not).
BROADCAST_LOOKUP_MIN = 1_000_000
BROADCAST_KEYS_MAX = 1_000_000
# Every silver row holds a SHA-256 payload hash: 32 bytes of entropy that no encoding compresses. A silver smaller than
# BROADCAST_LOOKUP_MIN rows of that size cannot hold a lookup that large, so its lookup's size is not asked of Delta.
MIN_ROW_BYTES = 32
FILE = "_file"  # the column naming the silver file a lookup row was read from (`files_holding`)
# Silver's column of each row's dedup keys hashed to 64 bits (`key_hash`), and the table property naming the keys it
# hashes. A large lookup first finds which files hold one of the batch's keys; it reads this column there instead of
# the keys: an event id is 36 bytes of text, the hash 8, and a probe on a long is a cheaper join (10M rows: ~0.7 s
# against ~1.9 s on 2 cores). Only a table created with the property has the column (one created before keeps its
# columns, and reads the keys: a new column in silver would stop every stream reading it).
DEDUP_HASH = "dedup_hash"
DEDUP_HASH_PROPERTY = "lakepipe.dedupHash"


def key_hash(keys: Sequence[str]) -> Column:
    """The 64-bit hash of a row's dedup `keys` (silver's DEDUP_HASH): equal keys, equal hashes; a hash shared by
    other keys only makes a lookup read one file more."""
    return F.xxhash64(*[F.col(k) for k in keys])


def hashed_keys(properties: dict[str, str], keys: Sequence[str]) -> bool:
    """Whether a silver table of these `properties` holds DEDUP_HASH of `keys` in every row (created so; a spec whose
    dedup keys changed since has other keys, and reads them)."""
    return properties.get(DEDUP_HASH_PROPERTY) == ",".join(keys)


def lookup_ranges(hours: list[int], horizon_s: int, max_ranges: int = MAX_RANGES) -> list[tuple[int, int]]:
    """Epoch-second ranges [start, end) covering each hour (epoch hour numbers) widened by the horizon (pure).

    Overlapping ranges are merged; beyond `max_ranges`, the closest neighbours are merged too.
    """
    ranges: list[list[int]] = []
    for h in sorted(set(hours)):
        start, end = h * HOUR - horizon_s, (h + 1) * HOUR + horizon_s
        if ranges and start <= ranges[-1][1]:
            ranges[-1][1] = max(ranges[-1][1], end)
        else:
            ranges.append([start, end])
    while len(ranges) > max_ranges:
        i = min(range(len(ranges) - 1), key=lambda j: ranges[j + 1][0] - ranges[j][1])
        ranges[i : i + 2] = [[ranges[i][0], ranges[i + 1][1]]]
    return [(a, b) for a, b in ranges]


def in_ranges(event_time: str, ranges: list[tuple[int, int]], with_nulls: bool, dates: bool = True) -> Column:
    """Rows whose `event_time` is in one of `ranges`, with the `event_date` bounds that prune partitions (unless not
    `dates`: data files, which do not hold their partition's value)."""
    t = F.col(event_time)
    cond = F.lit(False)
    for a, b in ranges:
        lo, hi = F.timestamp_seconds(F.lit(a)), F.timestamp_seconds(F.lit(b))
        in_days = F.col("event_date").between(F.to_date(lo), F.to_date(hi)) if dates else F.lit(True)
        cond = cond | (in_days & (t >= lo) & (t < hi))
    return cond | t.isNull() if with_nulls else cond


def rough_event_time(raw: DataFrame, f: FieldSpec) -> Column:
    """The event time of raw records read cheaply from the JSON text, without the contract's checks.

    Every record whose contract parse yields an event time gets the same value here (others may get one
    too, which only widens the lookup), so the lookup covers every valid record's hour.
    """
    return F.expr(rough_event_time_sql(f))


def rough_event_time_sql(f: FieldSpec, value: str = "value") -> str:
    """`rough_event_time` as a SQL expression over the bytes column `value` (for a Delta replaceWhere)."""
    paths = ", ".join(f"get_json_object(CAST(`{value}` AS STRING), '$.{p}')" for p in f.json_paths)
    text = f"coalesce({paths})"
    if f.unit in ("ms", "us"):
        return f"timestamp_{'millis' if f.unit == 'ms' else 'micros'}(try_cast({text} AS BIGINT))"
    return f"try_cast({text} AS TIMESTAMP)"


def batch_hours(raw: DataFrame, f: FieldSpec) -> Counter:
    """Records per epoch hour of the raw records' event times (None: records without one), in one light job."""
    hour = F.floor(F.unix_seconds(rough_event_time(raw, f)) / HOUR)
    return Counter({r.h: r["count"] for r in raw.groupBy(hour.alias("h")).count().collect()})


class LookupSizes:
    """A silver query's lookup sizes that cost Delta's planning or a Spark job to know, by window (its epoch-second
    ranges): silver read through Delta (`scanned_rows`: the first batch of a query into a table whose checksum does
    not list its files; a table with deletion vectors), or files whose statistics hold no row count (counted). Asked
    the first time the query looks a window up, then each of its batches' records added. Listed files with
    statistics need none of this: theirs are known every batch."""

    KEPT = 64  # windows remembered (a batch's window changes with its hours)

    def __init__(self) -> None:
        self._rows: dict[tuple, int] = {}

    def rows(self, ranges: list[tuple[int, int]], ask: Callable[[], int]) -> int:
        key = tuple(ranges)
        if key not in self._rows:
            if len(self._rows) >= self.KEPT:
                self._rows.pop(next(iter(self._rows)))
            self._rows[key] = ask()
        return self._rows[key]

    def add(self, ranges: list[tuple[int, int]], records: int) -> None:
        if (key := tuple(ranges)) in self._rows:
            self._rows[key] += records


def too_small_to_broadcast(size_bytes: int | None) -> bool:
    """Whether a silver of `size_bytes` (None: not known) holds fewer than BROADCAST_LOOKUP_MIN rows for certain."""
    return size_bytes is not None and size_bytes < BROADCAST_LOOKUP_MIN * MIN_ROW_BYTES


class Lookup(NamedTuple):
    rows: DataFrame  # the (dedup keys, payload_hash) of the silver rows to compare the batch with
    broadcast_keys: bool  # whether to broadcast the batch's keys into them (a large lookup, a batch of bounded size)
    version: int = -1  # silver's version they are read at (at least)


def existing_rows(
    spark: SparkSession, silver_path: str, raw: DataFrame, event_time: FieldSpec, keys: Sequence[str], horizon_s: int,
    sizes: LookupSizes | None = None, files: TableFiles | None = None, batch_keys: DataFrame | None = None,
) -> Lookup:  # fmt: skip
    """The (dedup keys, payload hash) of the silver rows that the `raw` records are compared with, as of silver's
    newest version now (see above); with `sizes` (a silver query's own), whether the lookup is large enough to
    broadcast the batch's keys into it. With `files` (the query's own), silver's data files are read as they are
    listed there (`pipelines.engine.table_files`) where they can be, instead of through Delta; a large lookup then
    reads only the files that hold one of `batch_keys` (the batch's keys as parsed), found first (`files_holding`).

    A lookup is large when the files it reads hold BROADCAST_LOOKUP_MIN rows or more by their Delta statistics (the
    rows of every file whose event times overlap the window: an upper bound). Listed files give it every batch
    without a Spark job; otherwise `sizes` asks once per window (`LookupSizes`)."""
    counts = batch_hours(raw, event_time)
    hours = [h for h in counts if h is not None]
    snapshot = table_snapshot(spark, silver_path, [DEDUP_HASH_PROPERTY])
    hashed = hashed_keys(snapshot.properties, keys)
    ranges = lookup_ranges(hours, horizon_s)
    with_nulls = None in counts
    listed = files.at(spark, snapshot.version) if files is not None else None
    window = None  # the window's rows read through Delta, where the listed files cannot serve
    if listed is None:
        window = spark.read.format("delta").option("versionAsOf", snapshot.version).load(silver_path)
        window = window.where(in_ranges(event_time.name, ranges, with_nulls))
        rows = window.select(*keys, "payload_hash")
    else:
        chosen = overlapping(listed, ranges, with_nulls)
        rows = window_rows(spark, files, chosen, [*keys, "payload_hash"], event_time.name, ranges, with_nulls)
    if sizes is None or too_small_to_broadcast(snapshot.size_bytes):
        return Lookup(rows, False, snapshot.version)

    def asked() -> int:
        n = scanned_rows(window) if window is not None else None
        return rows.count() if n is None else n

    size = rows_of(chosen) if listed is not None else None
    size = sizes.rows(ranges, asked) if size is None else size
    sizes.add(ranges, sum(counts.values()))  # appended by this batch (an estimate: its records)
    large = size >= BROADCAST_LOOKUP_MIN and sum(counts.values()) <= BROADCAST_KEYS_MAX
    if not large or batch_keys is None:
        return Lookup(rows, large, snapshot.version)
    if listed is not None:
        found = files_holding(spark, files, chosen, keys, event_time.name, ranges, with_nulls, batch_keys, hashed)
        rows = window_rows(spark, files, found, [*keys, "payload_hash"], event_time.name, ranges, with_nulls)
        return Lookup(rows, bool(found), snapshot.version)
    probe = [DEDUP_HASH] if hashed else list(keys)
    paths = holding(window.select(*probe, F.col("_metadata.file_path").alias(FILE)), keys, batch_keys, hashed)
    rows = window.where(F.col("_metadata.file_path").isin(sorted(paths))).select(*keys, "payload_hash")
    return Lookup(rows, bool(paths), snapshot.version)


def window_rows(
    spark: SparkSession, files: TableFiles, chosen: list[DataFile], columns: list[str], event_time: str,
    ranges: list[tuple[int, int]], with_nulls: bool, file_name: bool = False,
) -> DataFrame:  # fmt: skip
    """`columns` of the rows of `chosen` (silver's data files) whose event time is in `ranges`; with `file_name`, each
    row's file name too (column FILE)."""
    rows = files.read(spark, chosen, list(dict.fromkeys([*columns, event_time])))
    if file_name:
        rows, columns = rows.withColumn(FILE, F.col("_metadata.file_name")), [*columns, FILE]
    return rows.where(in_ranges(event_time, ranges, with_nulls, dates=False)).select(*columns)


def files_holding(
    spark: SparkSession, files: TableFiles, chosen: list[DataFile], keys: Sequence[str], event_time: str,
    ranges: list[tuple[int, int]], with_nulls: bool, batch_keys: DataFrame, hashed: bool = False,
) -> list[DataFile]:  # fmt: skip
    """The files of `chosen` that hold a row of the window with one of `batch_keys`, found in one Spark job that reads
    only the keys (with `hashed`: their DEDUP_HASH) and event times of the window's rows (broadcasting the batch's
    keys into them), not their payload hashes: a SHA-256 in hex is most of a lookup row's bytes, and most batches
    match few silver rows or none (a re-send is rare), so the lookup then reads the hashes of a few files or of none.
    Files are told apart by name (Delta names every data file with a UUID); a name that names no file of `chosen`,
    or several, keeps them all."""
    if not chosen:
        return []
    probe = [DEDUP_HASH] if hashed else list(keys)
    names = holding(window_rows(spark, files, chosen, probe, event_time, ranges, with_nulls, file_name=True), keys,
                    batch_keys, hashed)  # fmt: skip
    by_name = Counter(_name(f) for f in chosen)
    if any(by_name[n] != 1 for n in names):
        return chosen
    return [f for f in chosen if _name(f) in names]


def holding(probe: DataFrame, keys: Sequence[str], batch_keys: DataFrame, hashed: bool = False) -> set[str]:
    """The values of column FILE of the `probe` rows that have one of `batch_keys` (one Spark job). With `hashed`,
    `probe` has DEDUP_HASH instead of the keys: its rows whose hash is one of the batch keys' hashes, or null (a row
    written without one, by hand or by an older lakepipe: its file is read as any other that may hold a key)."""
    if hashed:
        hits = batch_keys.select(key_hash(keys).alias(DEDUP_HASH), F.lit(True).alias("_hit"))
        found = probe.join(F.broadcast(hits), DEDUP_HASH, "left").where(F.col("_hit") | F.col(DEDUP_HASH).isNull())
    else:
        found = probe.join(F.broadcast(batch_keys), list(keys), "left_semi")
    return {r[0] for r in found.select(FILE).distinct().collect()}


def _name(f: DataFile) -> str:
    return f.path.rsplit("/", 1)[-1]
