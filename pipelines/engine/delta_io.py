"""Delta table helpers shared by every layer: create, idempotent append, upsert, and checkpoint identity."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple, TypeVar

from delta.tables import DeltaTable
from py4j.protocol import Py4JError
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from pipelines.model.spec import FilesSpec

T_ = TypeVar("T_")
log = logging.getLogger(__name__)


def ensure_table(
    spark: SparkSession, path: str, schema: T.StructType, partition_by: tuple[str, ...] = (), comment: str = "",
    properties: dict[str, str] | None = None,
) -> bool:  # fmt: skip
    """Create an empty Delta table at `path` with `schema` unless one exists there; whether this call created it.

    `comment`, the comments in the fields' metadata (`{"comment": ...}`) and `properties` (table properties) go
    into the table's Delta metadata, where the catalog shows them; a table that exists keeps what it has
    (changing them is a metadata commit, which would conflict with the streams writing it). Properties of the
    log that `properties` leaves out get lakepipe's defaults (`FilesSpec.log_properties`: a checkpoint every
    100 commits, not Delta's 10).
    """
    if is_delta_table(spark, path):  # a look for its log: ~0.7 s less per table than createIfNotExists on a restart
        return False
    builder = DeltaTable.createIfNotExists(spark).location(path).addColumns(schema)
    if partition_by:
        builder = builder.partitionedBy(*partition_by)
    if comment:
        builder = builder.comment(comment)
    for key, value in {**FilesSpec().log_properties(), **(properties or {})}.items():
        builder = builder.property(key, value)
    builder.execute()
    return True


def read_stream(
    spark: SparkSession, path: str, max_bytes: str | None = None, skip_change_commits: bool = False,
    starting_version: int | None = None,
) -> DataFrame:  # fmt: skip
    """The Delta table at `path` as a stream. `max_bytes` bounds what one micro-batch admits (Delta's soft
    `maxBytesPerTrigger`, also honoured by `availableNow`, which then drains a backlog in several batches);
    `skip_change_commits`: commits that rewrite rows (a backfill's replaceWhere) are passed over; `starting_version`:
    the changes from that version on, not the whole table (a checkpoint that has begun overrides it)."""
    reader = spark.readStream.format("delta")
    if starting_version is not None:
        reader = reader.option("startingVersion", str(starting_version))
    if max_bytes:
        reader = reader.option("maxBytesPerTrigger", max_bytes)
    if skip_change_commits:
        reader = reader.option("skipChangeCommits", "true")
    return reader.load(path)


def is_delta_table(spark: SparkSession, path: str) -> bool:
    return DeltaTable.isDeltaTable(spark, path)


def append_once(df: DataFrame, path: str, app_id: str, version: int, merge_schema: bool = False) -> None:
    """Append `df` to the Delta table at `path` exactly once for (app_id, version).

    Delta records the highest version committed per app id in the table's log and skips a write whose
    version is not higher, so a micro-batch that is re-run after a crash does not append twice.
    `merge_schema` lets a table made by an older lakepipe gain the columns added since.
    """
    (
        df.write.format("delta")
        .mode("append")
        .option("txnAppId", app_id)
        .option("txnVersion", version)
        .option("mergeSchema", str(merge_schema).lower())
        .save(path)
    )


MARKER = "lakepipe"  # the key of our facts in a commit's userMetadata
LOOKBACK_MARGIN_MS = 120_000  # clock differences between the checkpoint's and the table's storage
FILES_READ_ALONE = 50  # commits a restart's check reads file by file (a few ms each) before asking Delta's history


class BatchAppender:
    """Exactly-once appends of one streaming query's micro-batches, without Delta's per-commit state rebuild.

    Delta's own idempotent write (`txnAppId`/`txnVersion`) looks the app id up in the table's full state,
    which Delta 4.4 rebuilds with Spark jobs on every such commit (~0.6 s on 2 cores, most of a small
    commit). Here each commit instead carries `{"lakepipe": {"app_id", "batch_id", ...facts}}` as its
    userMetadata, and whether batch N was already written is known:
    - from this process, when it wrote batch N-1 itself (a query's batches run one after another);
    - else (a restart) from the table's commits made since the query's checkpoint logged batch N's offsets
      (a write of batch N can only come after that): a commit of ours with batch >= N means written;
    - else, when that window also holds appends without our marker (an older lakepipe wrote them with
      Delta's txnAppId/txnVersion), by Delta's own check (one state rebuild per table per restart).
    This relies on Spark never rewriting a checkpoint's offsets/N file (a re-run batch reuses it).
    A write that fails leaves the table unknown to this process, so the next attempt looks again.
    """

    def __init__(self, spark: SparkSession, checkpoint: str) -> None:
        self.spark = spark
        self.checkpoint = checkpoint.rstrip("/")
        self._written: dict[tuple[str, str], int] = {}  # (path, app_id) -> batch id this process committed
        self._lock = threading.Lock()

    def append(
        self, df: DataFrame, path: str, app_id: str, batch_id: int, merge_schema: bool = False,
        facts: dict | None = None,
    ) -> bool:  # fmt: skip
        """Append `df` unless batch `batch_id` of `app_id` is already in the table; True if written."""
        key = (path, app_id)
        with self._lock:
            known = self._written.pop(key, None)  # unknown again until this write succeeds
        if known is not None and known >= batch_id:
            with self._lock:
                self._written[key] = known
            return False
        use_delta_txn = False
        if known != batch_id - 1:
            last, certain = self._last_batch_in_log(path, app_id, batch_id)
            if last is not None and last >= batch_id:
                with self._lock:
                    self._written[key] = last
                return False
            use_delta_txn = not certain
        marker = {MARKER: {"app_id": app_id, "batch_id": batch_id, **(facts or {})}}
        writer = (
            df.write.format("delta")
            .mode("append")
            .option("mergeSchema", str(merge_schema).lower())
            .option("userMetadata", json.dumps(marker, separators=(",", ":")))
        )
        if use_delta_txn:
            writer = writer.option("txnAppId", app_id).option("txnVersion", batch_id)
        writer.save(path)
        with self._lock:
            self._written[key] = batch_id
        return True

    def _last_batch_in_log(self, path: str, app_id: str, batch_id: int) -> tuple[int | None, bool]:
        """The newest batch id of `app_id` among the table's commits since batch `batch_id` began (None if
        none), and whether that is certain: False when the window holds appends without our marker (an
        older lakepipe's) or cannot be bounded, so that Delta's own check must decide."""
        since_ms = _modification_ms(self.spark, f"{self.checkpoint}/offsets/{batch_id}")
        if since_ms is None:
            return None, False
        return _newest_batch_of(app_id, self._commits(path), since_ms - LOOKBACK_MARGIN_MS)

    def _commits(self, path: str) -> Iterator[tuple[str | None, float | None, str] | None]:
        """The table's commits newest first as (userMetadata, time in ms, operation), read lazily: from each commit's
        own file, then, past FILES_READ_ALONE of them (a shared table, a long stop), from Delta's history in growing
        pages (its first commits again, which changes nothing). None where a commit file cannot be read."""
        newest = table_version(self.spark, path)
        for version in range(newest, -1, -1):
            if newest - version >= FILES_READ_ALONE:
                yield from self._history(path)
                return
            info = commit_info(self.spark, path, version)
            if info is None:
                yield None
                return
            ms = info.get("inCommitTimestamp", info.get("timestamp"))
            if ms is None:  # a commit without its info (another engine's): when its file was written
                ms = _modification_ms(self.spark, f"{path.rstrip('/')}/_delta_log/{version:020d}.json")
            yield info.get("userMetadata"), ms, info.get("operation", "WRITE")

    def _history(self, path: str) -> Iterator[tuple[str | None, float, str]]:
        table, limit, seen = DeltaTable.forPath(self.spark, path), 100, 0
        while True:
            rows = table.history(limit).select("timestamp", "operation", "userMetadata").collect()
            for c in rows[seen:]:
                yield c.userMetadata, c.timestamp.timestamp() * 1000, c.operation
            if len(rows) < limit:
                return
            seen, limit = len(rows), limit * 10


def _newest_batch_of(app_id: str, commits: Iterable, since_ms: float) -> tuple[int | None, bool]:
    """`BatchAppender._last_batch_in_log` over `commits` (newest first; None: one could not be read, the window
    cannot be bounded)."""
    certain = True
    for commit in commits:
        if commit is None:
            return None, False
        user_metadata, ms, operation = commit
        mine = _marker(user_metadata)
        if mine and mine.get("app_id") == app_id:
            return int(mine["batch_id"]), True
        if ms is not None and float(ms) < since_ms:
            return None, certain
        if mine is None and operation in ("WRITE", "STREAMING UPDATE"):
            certain = False
    return None, certain


def commit_info(spark: SparkSession, path: str, version: int) -> dict | None:
    """The `commitInfo` of version `version` of the Delta table at `path`, read from the commit's own file in the
    table's log (a few ms, no Spark job; Delta's history is a DataFrame over every commit it lists); {} for a
    commit without one, None where the file cannot be read (cleaned up after the log's retention)."""
    try:
        lines = read_text(spark, f"{path.rstrip('/')}/_delta_log/{version:020d}.json").splitlines()
    except Py4JError:
        return None
    return next((a["commitInfo"] for a in map(json.loads, filter(str.strip, lines)) if "commitInfo" in a), {})


def committed_by_others(spark: SparkSession, path: str, after: int, until: int, app_id: str) -> bool:
    """Whether a commit of the table at `path` after version `after`, up to `until`, was not one of `app_id`'s
    appends: read from the commits' own files in the table's log (True where one cannot be read)."""
    for v in range(after + 1, until + 1):
        info = commit_info(spark, path, v)
        mine = _marker(info.get("userMetadata")) if info is not None else None
        if not mine or mine.get("app_id") != app_id:
            return True
    return False


def _marker(user_metadata: str | None) -> dict | None:
    if not user_metadata or MARKER not in user_metadata:
        return None
    try:
        value = json.loads(user_metadata).get(MARKER)
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, dict) else None


def _modification_ms(spark: SparkSession, path: str) -> int | None:
    jvm = spark._jvm  # noqa: SLF001 - Hadoop FS is only reachable through the JVM gateway
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    fs = hpath.getFileSystem(spark._jsc.hadoopConfiguration())  # noqa: SLF001
    if not fs.exists(hpath):
        return None
    return int(fs.getFileStatus(hpath).getModificationTime())


def replace_where(df: DataFrame, path: str, predicate: str, tag: str | None = None) -> tuple[int, int] | None:
    """Replace the rows of the table at `path` that match `predicate` by `df`, in one commit.

    Delta checks that every row of `df` matches the predicate, so a rebuild can never write outside the
    key values it replaces. With `tag` (stored as the commit's userMetadata), returns (rows written, rows
    replaced) from the commit's metrics, without reading the data again.
    """
    writer = df.write.format("delta").mode("overwrite").option("replaceWhere", predicate)
    if tag is None:
        writer.save(path)
        return None
    writer.option("userMetadata", tag).save(path)
    history = df.sparkSession.sql(f"DESCRIBE HISTORY delta.`{path}` LIMIT 20").where(F.col("userMetadata") == tag)
    row = history.select("operationMetrics").first()
    if row is None:  # nothing to add or remove: Delta made no commit
        return 0, 0
    m = row[0]
    return int(m.get("numOutputRows", 0)) - int(m.get("numCopiedRows", 0)), int(m.get("numDeletedRows", 0))


def upsert(batch: DataFrame, path: str, keys: tuple[str, ...], delete_flag: str | None = None) -> None:
    """MERGE `batch` into the table at `path` by `keys`: update matches, insert the rest.

    With `delete_flag`, rows of `batch` where that column is true delete their match instead (and are
    never inserted); the flag column itself is not stored. Upserting absolute values is idempotent, so a
    re-run micro-batch leaves the same result.
    """
    target = DeltaTable.forPath(batch.sparkSession, path)
    cond = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys)
    columns = [c for c in batch.columns if c != delete_flag]
    values = {f"`{c}`": f"s.`{c}`" for c in columns}
    merge = target.alias("t").merge(batch.alias("s"), cond)
    if delete_flag:
        merge = (
            merge.whenMatchedDelete(condition=f"s.`{delete_flag}`")
            .whenMatchedUpdate(set=values)
            .whenNotMatchedInsert(condition=f"NOT s.`{delete_flag}`", values=values)
        )
    else:
        merge = merge.whenMatchedUpdate(set=values).whenNotMatchedInsert(values=values)
    merge.execute()


def upsert_nonempty(batch: DataFrame, path: str, keys: tuple[str, ...], delete_flag: str | None = None,
                    warm: bool = True) -> None:
    """`upsert` for a foreachBatch: skips empty batches (a MERGE costs seconds even when empty).

    The batch is persisted so that checking for rows and merging evaluate a stateful plan only once; with `warm`,
    the target's state is computed meanwhile (`warm_state`). An empty batch waits for that computation rather than
    end with it still running: the work of a micro-batch ends with it, so a run that stops, or a caller that removes
    the table after it, meets no Spark job of the batch still reading the table. A batch known to bring no input
    (`batch_brings_input`: the last of a `--once` run, which only moves the watermark) passes `warm=False`: it
    rarely has rows to MERGE, and when it does the MERGE computes the state itself.
    """
    batch = batch.persist()
    warming = warm_state(batch.sparkSession, path) if warm else None
    try:
        if not batch.isEmpty():
            upsert(batch, path, keys, delete_flag)
        elif warming is not None:
            warming.join()
    finally:
        batch.unpersist()


def batch_brings_input(spark: SparkSession, checkpoint: str, batch_id: int) -> bool:
    """Whether micro-batch `batch_id` of the streaming query checkpointed at `checkpoint` reads source input: False
    for a no-data batch, which Spark runs after the input ends when the watermark moved (to drop expired state; in a
    `--once` run, its last batch), whose sources' offsets in the checkpoint's offset log are those of the batch
    before it. Two small files read (the log's first two lines are its version and the batch's watermark and
    settings, one line per source follows); True when that cannot be told (the first batch, a file missing)."""
    if batch_id <= 0:
        return True
    fs, this = hadoop_path(spark, f"{checkpoint.rstrip('/')}/offsets/{batch_id}")
    before = spark._jvm.org.apache.hadoop.fs.Path(this.getParent(), str(batch_id - 1))  # noqa: SLF001
    if not (fs.exists(this) and fs.exists(before)):
        return True
    return read_text(spark, this.toString()).splitlines()[2:] != read_text(spark, before.toString()).splitlines()[2:]


class TableSnapshot(NamedTuple):
    version: int  # the table's newest version
    size_bytes: int | None  # the size of its data files, where Delta knows it without a Spark job (its checksum file)
    properties: dict[str, str] = {}  # the table properties asked for that it has, where the log API gives them


def table_snapshot(spark: SparkSession, path: str, properties: Sequence[str] = ()) -> TableSnapshot:
    """The latest version of the Delta table at `path` (its newest commit), its size and those of its table
    `properties` it has (no data read).

    Asked of Delta's log object in the JVM, as a read of the table does (a listing of the log, ~15 ms, no Spark
    job): a silver micro-batch asks it every time, and the table's history is a Spark job (0.4-0.6 s on 2 cores),
    which in a busy application waits behind the other queries' tasks. The size comes from the version's checksum
    file, which Delta writes with each commit. Where that API is not there (another Delta, no JVM gateway), the
    history answers, without a size or properties."""
    try:
        snapshot = jvm_snapshot(spark, path)
        crc = snapshot.checksumOpt()  # (its `sizeInBytesIfKnown` may compute the state: ~1 s of Spark jobs)
        size = int(crc.get().tableSizeBytes()) if crc.isDefined() else None
        configuration = snapshot.metadata().configuration()
        found = {k: v.get() for k, v in ((k, configuration.get(k)) for k in properties) if v.isDefined()}
        return TableSnapshot(int(snapshot.version()), size, found)
    except (Py4JError, TypeError, AttributeError) as exc:  # TypeError: no such class (py4j gives a package)
        log.debug("Delta's log API not reachable (%s): the version of %s from its history", exc, path)
    return TableSnapshot(int(DeltaTable.forPath(spark, path).history(1).select("version").first()[0]), None)


def table_columns(spark: SparkSession, path: str) -> list[str]:
    """The column names of the Delta table at `path`, from Delta's log object in the JVM (no Spark job)."""
    try:
        return list(jvm_snapshot(spark, path).schema().fieldNames())
    except (Py4JError, TypeError, AttributeError):  # (as in `table_snapshot`)
        return spark.read.format("delta").load(path).columns


def jvm_snapshot(spark: SparkSession, path: str):  # noqa: ANN201 - a JVM org.apache.spark.sql.delta.Snapshot
    """The newest snapshot of the Delta table at `path`, from Delta's log object in the JVM (no Spark job)."""
    jvm = spark._jvm  # noqa: SLF001 - Delta's log is only reachable through the JVM gateway
    none = jvm.scala.Option.empty()
    return jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, path).update(False, none, none)  # noqa: SLF001


def scanned_rows(df: DataFrame) -> int | None:
    """The rows of the Delta files a read of one Delta table (`df`, filtered) would scan, by their statistics: what
    Delta's planning found when it skipped files by the filter (planning only, no data read; it builds the table's
    state, as the read itself would). None where Delta does not say (a file without statistics, another Delta)."""
    try:
        leaf = df._jdf.queryExecution().optimizedPlan().collectLeaves().head()  # noqa: SLF001 - Delta's scan
        rows = leaf.relation().location().preparedScan().scanned().rows()
        return int(rows.get()) if rows.isDefined() else None
    except (Py4JError, TypeError, AttributeError) as exc:  # (as in `table_snapshot`)
        log.debug("Delta's scan of the plan not reachable: %s", exc)
    return None


def table_version(spark: SparkSession, path: str) -> int:
    """The latest version of the Delta table at `path` (`table_snapshot`)."""
    return table_snapshot(spark, path).version


def warm_state(spark: SparkSession, path: str) -> threading.Thread:
    """Compute the current state of the Delta table at `path` (its file count and size) in a thread of its own.

    Delta 4.4 computes it before a MERGE, DELETE, UPDATE or `replaceWhere` on each new version of a table (three
    Spark jobs replaying the log, ~0.7 s on 2 cores, for the operation's metrics; an append does not need it). Begun
    while a micro-batch does its other work, the commit that follows finds it done (or waits for it, never computing
    it twice). Best effort: a failure here is left for that commit to meet, with its own message."""

    def compute() -> None:
        try:
            DeltaTable.forPath(spark, path).detail().collect()  # DESCRIBE DETAIL reads the state's file count
        except Exception as exc:  # noqa: BLE001 - the commit that needs the state reports what is wrong
            log.debug("state of %s not computed ahead: %s", path, exc)

    thread = threading.Thread(target=compute, name="delta-state", daemon=True)
    thread.start()
    return thread


def read_text(spark: SparkSession, path: str) -> str:
    """Read a small text file through Hadoop's file system API (works for local, HDFS and object stores)."""
    jvm = spark._jvm  # noqa: SLF001 - Hadoop FS is only reachable through the JVM gateway
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    fs = hpath.getFileSystem(spark._jsc.hadoopConfiguration())  # noqa: SLF001
    stream = fs.open(hpath)
    try:
        return jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
    finally:
        stream.close()


def checkpoint_query_id(spark: SparkSession, checkpoint: str) -> str:
    """The streaming query id stored in a checkpoint: stable across restarts, new for a new checkpoint.

    Used as the Delta `txnAppId` of a query's idempotent writes, so that deleting a checkpoint (which
    restarts batch ids at 0) can never make Delta skip the new writes as already done.
    """
    metadata = read_text(spark, checkpoint.rstrip("/") + "/metadata")
    return json.loads(metadata.splitlines()[0])["id"]


def hadoop_path(spark: SparkSession, path: str):  # noqa: ANN201
    """(Hadoop file system, Hadoop path) of `path`: local, HDFS and object stores alike."""
    jvm = spark._jvm  # noqa: SLF001 - Hadoop FS is only reachable through the JVM gateway
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    return hpath.getFileSystem(spark._jsc.hadoopConfiguration()), hpath  # noqa: SLF001


def stream_start_offsets(spark: SparkSession, checkpoint: str) -> dict[str, dict[int, int]] | None:
    """The Kafka offsets a streaming query started from ({topic: {partition: offset}}), from its checkpoint
    (None when it never started): it reads every record from there on, and none before."""
    fs, first = hadoop_path(spark, checkpoint.rstrip("/") + "/sources/0/0")
    if not fs.exists(first):
        return None
    lines = read_text(spark, first.toString()).splitlines()
    return {t: {int(p): int(o) for p, o in parts.items()} for t, parts in json.loads(lines[1]).items()}


def committed_watermark_ms(spark: SparkSession, checkpoint: str) -> int | None:
    """The event-time watermark a streaming query's next micro-batch will use, from its checkpoint's commit log
    (None when the query never finished a batch). A window ending at or before it is final: any row for it from
    now on is late, so the query will not write it again."""
    fs, commits = hadoop_path(spark, checkpoint.rstrip("/") + "/commits")
    if not fs.exists(commits):
        return None
    batches = [int(s.getPath().getName()) for s in fs.listStatus(commits) if s.getPath().getName().isdigit()]
    if not batches:
        return None
    lines = read_text(spark, f"{commits.toString()}/{max(batches)}").splitlines()
    return int(json.loads(lines[1]).get("nextBatchWatermarkMs", 0)) if len(lines) > 1 else 0


def retry_on_conflict(write: Callable[[], T_], attempts: int = 6) -> T_:
    """Run a Delta write, again (after a short, growing pause) when a concurrent commit conflicts with it: a
    backfill beside a running stream."""
    from delta.exceptions import (
        ConcurrentAppendException,
        ConcurrentDeleteReadException,
        ConcurrentTransactionException,
        ConcurrentWriteException,
        MetadataChangedException,
    )

    conflicts = (ConcurrentAppendException, ConcurrentDeleteReadException, ConcurrentTransactionException,
                 ConcurrentWriteException, MetadataChangedException)  # fmt: skip
    for attempt in range(attempts):
        try:
            return write()
        except conflicts:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")
