"""Silver: bronze records parsed against the contract, deduplicated, and split from the rejects.

Each micro-batch of bronze is parsed (`pipelines.engine.validation`) and checked against the row-level rules of the
pipeline's expectation suite (`pipelines.quality`), then every record gets one outcome:
- `silver`: valid, and the first copy of its dedup key. Silver itself is the dedup state, read only around
  the batch's event times (`pipelines.engine.dedup`): an exact re-send carries its first copy's event time, so it is
  caught whatever its delay, across restarts and replays; a copy with other content is caught when its
  event time is within the spec's `dedup_horizon` (default 1 hour) of the first copy's;
- `exact_duplicate`: the same key with the same payload as the first copy: counted, not stored again;
- `quarantine`: invalid (with every reason: contract codes and quarantine rules' names), or the same key
  with a different payload (`duplicate_conflict`; the first copy wins: the one already in silver, else the
  earliest by Kafka timestamp, partition and offset);
- `dropped`: valid but broken a rule whose action is `drop`: counted, not stored.
A broken `fail` rule (row or batch level) stops the query before anything of the batch is written except its
quality results; so a suite's batch rules (Great Expectations, several Spark jobs) run before the writes when one
of them may fail the batch, and beside them otherwise. The writes of a batch (quality results, audit row,
quarantine, silver) are exactly-once Delta appends keyed by the query's id and the batch id (`BatchAppender`),
so a batch re-run after a crash writes nothing twice. As soon as the silver append has committed, the pipeline's inline outputs (SCD tables: rebuilds
from its own silver alone) are recomputed for the batch's keys (`refresh_inline`), beside the batch's other
writes, so they are current as soon as silver is, without a query and a hop of their own.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.streaming import StreamingQuery

from pipelines.engine import batch_time
from pipelines.engine.dedup import DEDUP_HASH, LookupSizes, existing_rows, key_hash
from pipelines.engine.delta_io import (
    BatchAppender,
    checkpoint_query_id,
    committed_by_others,
    read_stream,
    table_columns,
    table_version,
    warm_state,
)  # fmt: skip
from pipelines.engine.gold.rebuild import RebuildWriter, rebuild_all
from pipelines.engine.pii import Privacy
from pipelines.engine.table_files import TableFiles
from pipelines.engine.validation import parse_records
from pipelines.errors import ConcurrentSilverWriteError, QualityFailedError
from pipelines.model import durations
from pipelines.model.contract import Contract
from pipelines.model.layout import PipelineLayout
from pipelines.model.spec import PipelineSpec
from pipelines.quality.batch_rules import BatchValidator, RuleResult
from pipelines.quality.results import ResultRow, results_frame, row_rule_success
from pipelines.quality.row_rules import DROPPED, FAILED, WARNINGS, apply_row_rules
from pipelines.quality.suite import QualitySuite, Rule

SILVER, QUARANTINE, EXACT_DUPLICATE, DROPPED_OUTCOME = "silver", "quarantine", "exact_duplicate", "dropped"
TOMBSTONE = "tombstone"  # a null value (a CDC delete's tombstone) in a pipeline whose spec says `tombstones: skip`
OUTCOMES = (SILVER, QUARANTINE, EXACT_DUPLICATE, DROPPED_OUTCOME, TOMBSTONE)
OUTCOME = "_outcome"
LINEAGE = (
    T.StructField("topic", T.StringType()),
    T.StructField("partition", T.IntegerType()),
    T.StructField("offset", T.LongType()),
    T.StructField("kafka_timestamp", T.TimestampType()),
)


def silver_schema(contract: Contract) -> T.StructType:
    return T.StructType(
        [
            *contract.spark_schema.fields,
            T.StructField("extra", T.StringType()),
            *LINEAGE,
            T.StructField("payload_hash", T.StringType()),
            T.StructField(DEDUP_HASH, T.LongType()),  # the dedup keys hashed (`pipelines.engine.dedup.key_hash`)
            T.StructField("warnings", T.ArrayType(T.StringType())),  # warn rules this row broke
            T.StructField("silver_time", T.TimestampType()),
            T.StructField("event_date", T.DateType()),
        ]
    )


def quarantine_schema(contract: Contract, spec: PipelineSpec) -> T.StructType:
    return T.StructType(
        [
            *[T.StructField(k, contract.field(k).spark_type) for k in spec.dedup_keys],
            T.StructField("key", T.BinaryType()),
            T.StructField("value", T.BinaryType()),
            *LINEAGE,
            T.StructField("reasons", T.ArrayType(T.StringType())),
            T.StructField("quarantined_at", T.TimestampType()),
            T.StructField("replay_id", T.StringType()),
            T.StructField("replayed_at", T.TimestampType()),
        ]
    )


BATCHES_SCHEMA = T.StructType(
    [
        T.StructField("query_id", T.StringType()),
        T.StructField("batch_id", T.LongType()),
        T.StructField("bronze_records", T.LongType()),
        T.StructField("silver_records", T.LongType()),
        T.StructField("quarantined_records", T.LongType()),
        T.StructField("exact_duplicates", T.LongType()),
        T.StructField("dropped_records", T.LongType()),
        T.StructField("tombstones", T.LongType()),  # counted and skipped (spec `tombstones: skip`)
        T.StructField("processed_at", T.TimestampType()),
    ]
)


def classify(parsed: DataFrame, existing: DataFrame, keys: str | Sequence[str], broadcast_keys: bool = False) -> DataFrame:
    """Give each parsed record its outcome (pure).

    `existing` holds the dedup keys and payload hashes already in silver (columns `keys`, `payload_hash`);
    records with the same values of every key are copies of one another. Conflicting duplicates get
    `reasons = ['duplicate_conflict']`. With `broadcast_keys` (a micro-batch, not a backfill's millions), the
    batch's keys are broadcast into a semi join with `existing`, so that only its rows of those keys reach the join:
    the others are dropped where they are read instead of shuffled and sorted (a busy hour holds millions: bench
    S2d). That costs one more read of the batch, pruned to its key fields.
    """
    keys = [keys] if isinstance(keys, str) else list(keys)
    valid = F.size("reasons") == 0
    # Rank the copies of each key valid ones first, then by arrival: the first valid copy gets rank 1 (invalid
    # ones make no use of theirs). One window partitioned by the keys alone, which the join below reuses: a
    # window partitioned by (keys, valid) cost two more exchanges of the whole batch.
    order = Window.partitionBy(*keys).orderBy(
        valid.desc(), F.col("kafka_timestamp").asc_nulls_last(), "partition", "offset"
    )
    ranked = parsed.select("*", F.row_number().over(order).alias("_rank"),
                           F.first("payload_hash").over(order).alias("_batch_first_hash"))  # fmt: skip
    matched = existing.join(F.broadcast(parsed.select(*keys)), keys, "left_semi") if broadcast_keys else existing
    joined = ranked.join(matched.select(*keys, F.col("payload_hash").alias("_silver_hash")), keys, "left")
    winner = F.coalesce("_silver_hash", "_batch_first_hash")
    outcome = (
        F.when(~valid, F.lit(QUARANTINE))
        .when((F.col("_rank") == 1) & F.col("_silver_hash").isNull(), F.lit(SILVER))
        .when(F.col("payload_hash") == winner, F.lit(EXACT_DUPLICATE))
        .otherwise(F.lit(QUARANTINE))
    )
    conflict = valid & (outcome == QUARANTINE)
    reasons = F.when(conflict, F.array(F.lit("duplicate_conflict"))).otherwise(F.col("reasons"))
    return joined.withColumn(OUTCOME, outcome).withColumn("reasons", reasons).select(*parsed.columns, OUTCOME)


def validate(raw: DataFrame, contract: Contract, suite: QualitySuite | None) -> DataFrame:
    """Parse raw records against the contract and apply the suite's row-level rules, in one pass (pure)."""
    parsed = parse_records(raw, contract)
    if suite is not None:
        return apply_row_rules(parsed, suite.row_rules)
    empty = F.array().cast("array<string>")
    return parsed.withColumn(WARNINGS, empty).withColumn(DROPPED, empty).withColumn(FAILED, empty)


def classify_validated(
    validated: DataFrame, existing: DataFrame, keys: Sequence[str], skip_tombstones: bool = False,
    broadcast_keys: bool = False,
) -> DataFrame:  # fmt: skip
    """`classify`, then valid first copies broken by a `drop` rule become `dropped`, and with `skip_tombstones`
    records with a null value become `tombstone` instead of being quarantined (pure)."""
    out = classify(validated, existing, keys, broadcast_keys)
    dropped = (F.col(OUTCOME) == SILVER) & (F.size(DROPPED) > 0)
    outcome = F.when(dropped, F.lit(DROPPED_OUTCOME))
    if skip_tombstones:
        outcome = outcome.when(F.col("value").isNull(), F.lit(TOMBSTONE))
    return out.withColumn(OUTCOME, outcome.otherwise(F.col(OUTCOME)))


def to_silver_rows(
    classified: DataFrame, contract: Contract, spec: PipelineSpec, at: dt.datetime | None = None, hashed: bool = True
) -> DataFrame:  # fmt: skip
    """The batch's rows for silver, written at `at` (default: now); without DEDUP_HASH unless `hashed` (a silver
    created before that column keeps its columns: adding one would stop every stream reading silver)."""
    rows = batch_time.stamp(classified.where(F.col(OUTCOME) == SILVER), at or batch_time.now(), "silver_time")
    rows = rows.withColumn("event_date", F.to_date(spec.event_time)).withColumn(DEDUP_HASH, key_hash(spec.dedup_keys))
    return rows.select(*[f.name for f in silver_schema(contract).fields if hashed or f.name != DEDUP_HASH])


def to_quarantine_rows(
    classified: DataFrame, contract: Contract, spec: PipelineSpec, at: dt.datetime | None = None
) -> DataFrame:
    """The batch's rows for quarantine, quarantined at `at` (default: now)."""
    rows = batch_time.stamp(classified.where(F.col(OUTCOME) == QUARANTINE), at or batch_time.now(), "quarantined_at")
    rows = rows.withColumn("replay_id", F.lit(None).cast("string")).withColumn(
        "replayed_at", F.lit(None).cast("timestamp")
    )
    return rows.select(*[f.name for f in quarantine_schema(contract, spec).fields])


class SilverBatchWriter:
    """The foreachBatch function of the silver query.

    A light job finds the hours the batch's event times fall in, so that the dedup lookup reads only the silver
    rows around them (`pipelines.engine.dedup`); one pass then parses, checks and classifies the batch (kept in
    memory for the counts, the quality rules and the writes). The batch's writes then go
    to their tables side by side, each an exactly-once append (`BatchAppender`); the silver commit also
    carries the batch's counts in its userMetadata.
    """

    def __init__(
        self, contract: Contract, spec: PipelineSpec, layout: PipelineLayout, checkpoint: str,
        suite: QualitySuite | None = None, query_name: str = "", rebuilds: Sequence[RebuildWriter] = (),
        privacy: Privacy = Privacy(),
    ) -> None:  # fmt: skip
        self.contract = contract
        self.privacy = privacy
        self.rebuilds = list(rebuilds)
        self.spec = spec
        self.layout = layout
        self.checkpoint = checkpoint
        self.suite = suite
        self.query_name = query_name
        self.validator = BatchValidator(suite) if suite is not None else None
        self.horizon_s = int(durations.seconds(spec.dedup_horizon))
        self._query_id: str | None = None
        self._appender: BatchAppender | None = None
        self._hashed = True  # whether silver has DEDUP_HASH (known at the first batch)
        self._lookup_sizes = LookupSizes()
        self._silver_files = TableFiles(layout.silver.path, spec.event_time)
        self._pool = ThreadPoolExecutor(max_workers=7, thread_name_prefix="silver-write")  # 4 appends, 2 SCD refreshes, bronze

    def __call__(self, batch: DataFrame, batch_id: int, alongside: Callable[[DataFrame], object] | None = None) -> None:
        """Write micro-batch `batch_id`; `alongside` (bronze's append, when one query writes both) gets the batch as
        kept in memory and runs beside the batch's classification; the batch ends when both have."""
        spark = batch.sparkSession
        at = batch_time.now()  # the batch's silver_time, quarantined_at, processed_at and evaluated_at
        if self._appender is None:
            self._query_id = checkpoint_query_id(spark, self.checkpoint)
            self._appender = BatchAppender(spark, self.checkpoint)
            self._hashed = DEDUP_HASH in table_columns(spark, self.layout.silver.path)
        app_id = f"silver-{self._query_id}"
        keys = self.spec.dedup_keys
        event_time = self.contract.field(self.spec.event_time)
        raw = batch.persist(StorageLevel.MEMORY_AND_DISK)  # read from bronze once (and counted once by Spark)
        side = self._pool.submit(alongside, raw) if alongside is not None else None
        # their replaceWhere needs the table's state: computed while the batch is classified (joined at the batch's end)
        warming = [warm_state(spark, w.path) for w in self.rebuilds]
        classified = None
        try:
            validated = validate(raw, self.contract, self.suite)
            lookup = existing_rows(spark, self.layout.silver.path, raw, event_time, keys, self.horizon_s, self._lookup_sizes,
                                   self._silver_files, validated.select(*keys))  # fmt: skip
            skip = self.spec.tombstones == "skip"
            classified = classify_validated(validated, lookup.rows, keys, skip, lookup.broadcast_keys)
            classified = classified.persist(StorageLevel.MEMORY_AND_DISK)
            counts, rule_counts, checked, touched = self._count(classified)
            if side is None:
                raw.unpersist()
            silver = to_silver_rows(classified, self.contract, self.spec, at, self._hashed)
            results, failures, deferred = self._check_quality(classified, silver, counts[SILVER], batch_id, rule_counts, checked)
            append = self._appender.append
            quality_app = f"quality-{self._query_id}"
            if failures:
                append(self._results_frame(spark, batch_id, results, at), self.layout.quality.path, quality_app, batch_id)
                raise QualityFailedError(f"{self.spec.name} silver batch {batch_id}: " + "; ".join(failures))
            facts = {"bronze_records": sum(counts.values()), **{f"{o}_records": counts[o] for o in OUTCOMES}}
            audit = spark.createDataFrame(
                [(app_id, batch_id, sum(counts.values()), *[counts[o] for o in OUTCOMES], at)], BATCHES_SCHEMA
            )
            silver_written = self._pool.submit(self._append_silver, self.privacy.silver(silver), app_id, batch_id, facts,
                                               lookup.version)  # fmt: skip
            writes = [lambda: append(audit, self.layout.batches.path, app_id, batch_id, merge_schema=True)]
            if self.suite is not None:  # batch rules that cannot fail the batch run beside the other writes
                writes.append(lambda: append(self._results_frame(spark, batch_id, results + deferred(), at),
                                             self.layout.quality.path, quality_app, batch_id))  # fmt: skip
            if counts[QUARANTINE]:  # an empty append still costs a Delta commit
                quarantined = self.privacy.quarantine(to_quarantine_rows(classified, self.contract, self.spec, at))
                writes.append(lambda: append(quarantined, self.layout.quarantine.path, app_id, batch_id))
            others = [self._pool.submit(w) for w in writes]
            try:
                silver_written.result()
                if any(touched.values()):  # as soon as silver holds the batch
                    rebuild_all(spark, self.rebuilds, touched, self._pool)
            finally:
                for done in others:
                    done.exception()  # every write has ended before the cached batch is dropped
            for done in others:
                done.result()  # the first failure fails the batch; a re-run skips what was written
        finally:
            if side is not None:
                side.result()
            for thread in warming:  # a batch without keys to refresh would otherwise end before them
                thread.join()
            raw.unpersist()
            if classified is not None:
                classified.unpersist()

    def _append_silver(
        self, rows: DataFrame, app_id: str, batch_id: int, facts: dict, read_at: int, attempts: int = 4
    ) -> None:  # fmt: skip
        """Append the batch's new rows to silver, whose version `read_at` the dedup lookup read. When another writer
        (a silver backfill) has committed since, or Delta refuses the commit for one, the batch's rows are appended
        only if silver still holds none of their keys in their days (the backfill rewrote what was there), else the
        batch fails, and its re-run classifies it against the new rows. (The lookup reads silver's files as
        Parquet, `pipelines.engine.table_files`, so Delta itself does not know what it read.)"""
        from delta.exceptions import ConcurrentAppendException, ConcurrentDeleteReadException

        path = self.layout.silver.path
        latest = table_version(rows.sparkSession, path)
        if latest > read_at and committed_by_others(rows.sparkSession, path, read_at, latest, app_id):
            if self._keys_taken_meanwhile(rows):
                raise ConcurrentSilverWriteError(
                    f"{self.spec.name} silver batch {batch_id}: another writer (a silver backfill?) committed rows with "
                    f"this batch's keys to {path} after the batch read it; restart the query to classify the batch again"
                )
        for attempt in range(attempts):
            try:
                self._appender.append(rows, self.layout.silver.path, app_id, batch_id, merge_schema=True, facts=facts)
                return
            except (ConcurrentAppendException, ConcurrentDeleteReadException):
                if attempt == attempts - 1 or self._keys_taken_meanwhile(rows):
                    raise
                time.sleep(0.5 * (attempt + 1))

    def _keys_taken_meanwhile(self, rows: DataFrame) -> bool:
        """Whether silver now holds a dedup key of `rows` (new rows: none of their keys was there), in their days."""
        keys = list(self.spec.dedup_keys)
        days = [r[0] for r in rows.select("event_date").distinct().collect()]
        silver = rows.sparkSession.read.format("delta").load(self.layout.silver.path)
        if not days:
            return False
        return silver.where(F.col("event_date").isin(days)).join(rows.select(*keys), keys, "left_semi").limit(1).count() > 0

    def _count(self, classified: DataFrame) -> tuple[dict[str, int], list[int], int, dict[str, list]]:
        """Rows per outcome, rows breaking each row rule, rows the rules were checked on, and the values of each
        inline output's key to refresh (`touched_values`): one pass."""
        rules = self.suite.row_rules if self.suite else ()
        column = {"quarantine": "reasons", "warn": WARNINGS, "drop": DROPPED, "fail": FAILED}
        aggs = [F.count(F.when(F.col(OUTCOME) == o, 1)).alias(o) for o in OUTCOMES]
        aggs += [F.count(F.when(F.array_contains(column[r.action], r.name), 1)).alias(f"_r{i}") for i, r in enumerate(rules)]
        keys = sorted({w.key for w in self.rebuilds})
        aggs += [touched_values(k).alias(f"_k{i}") for i, k in enumerate(keys)]
        parsed = ~F.array_contains("reasons", "invalid_json") & ~F.array_contains("reasons", "not_an_object")
        frame = self.privacy.silver(classified) if keys else classified  # key values as silver stores them
        row = frame.agg(*aggs, F.count(F.when(parsed, 1)).alias("_checked")).first()
        touched = {k: list(row[f"_k{i}"]) for i, k in enumerate(keys)}
        return {o: row[o] for o in OUTCOMES}, [row[f"_r{i}"] for i in range(len(rules))], row["_checked"], touched

    def _check_quality(
        self, classified: DataFrame, silver: DataFrame, silver_rows: int, batch_id: int, rule_counts: list[int], checked: int
    ) -> tuple[list[ResultRow], list[str], Callable[[], list[ResultRow]]]:
        """This batch's quality results so far, a message per broken `fail` rule, and a function giving the
        results of the batch rules left to run: the suite's batch rules, when none of them may fail the batch,
        run beside the batch's writes instead of before them (Great Expectations runs several Spark jobs)."""
        if self.suite is None:
            return [], [], list
        results = [
            ResultRow(r.name, r.type, r.action, row_rule_success(n, checked, r.kwargs.get("mostly")), checked, n,
                      None if not checked else str(round(n / checked, 6)))
            for r, n in zip(self.suite.row_rules, rule_counts)
        ]  # fmt: skip
        failures = [self._row_failure(classified, r, n) for r, n in zip(self.suite.row_rules, rule_counts)
                    if r.action == "fail" and n]  # fmt: skip
        rules = self.suite.batch_rules
        if not rules or batch_id % self.spec.quality.batch_every != 0:
            return results, failures, list
        if all(r.action != "fail" for r in rules):
            return results, failures, lambda: [_result_row(b) for b in self.validator.validate(silver, silver_rows)]
        for b in self.validator.validate(silver, silver_rows):
            results.append(_result_row(b))
            if b.rule.action == "fail" and not b.success:
                failures.append(f"quality rule '{b.rule.name}' ({b.rule.type}) failed: observed {b.observed_value}")
        return results, failures, list

    def _results_frame(self, spark: SparkSession, batch_id: int, results: list[ResultRow], at: dt.datetime) -> DataFrame:
        return results_frame(spark, self.spec.name, self.layout.silver.name, self._query_id, self._run_id(spark),
                             batch_id, results, at)  # fmt: skip

    def _row_failure(self, classified: DataFrame, rule: Rule, broken: int) -> str:
        """The rule, how many rows broke it, and the first 5: Kafka coordinates and the values it checks."""
        rows = (
            classified.where(F.array_contains(FAILED, rule.name))
            .orderBy("partition", "offset")
            .select("topic", "partition", "offset", *rule.columns)
            .limit(5)
            .collect()
        )
        shown = ", ".join(
            f"{r.topic}/{r.partition}/{r.offset} (" + ", ".join(f"{c}={r[c]!r}" for c in rule.columns) + ")" for r in rows
        )
        return f"quality rule '{rule.name}' (action fail) broken by {broken} rows; first {len(rows)}: {shown}"

    def _run_id(self, spark: SparkSession) -> str:
        """The run id of this query's current run (a restart gets a new one)."""
        for q in spark.streams.active:
            if q.name == self.query_name:
                return str(q.runId)
        return spark.sparkContext.applicationId


def _result_row(b: RuleResult) -> ResultRow:
    return ResultRow(b.rule.name, b.rule.type, b.rule.action, b.success, b.element_count, b.unexpected_count,
                     b.observed_value)  # fmt: skip


def touched_values(key: str) -> Column:
    """The aggregate of the values of `key` whose inline output rows a batch refreshes: those of its valid records,
    first copies and exact re-sends alike, so that a batch re-run after a crash between its silver append and the
    refresh (its rows then all re-sends of what it appended) still refreshes them."""
    return F.collect_set(F.when(F.col(OUTCOME).isin(SILVER, EXACT_DUPLICATE), F.col(key)))


def refresh_inline(
    spark: SparkSession, rebuilds: Sequence[RebuildWriter], classified: DataFrame, pool: ThreadPoolExecutor | None = None
) -> None:  # fmt: skip
    """Recompute the inline outputs (SCD tables) for every key value of the batch's valid records (`touched_values`).
    Side by side, each one Delta commit; outputs of the same key read silver's rows of the batch's keys once."""
    if not rebuilds:
        return
    keys = sorted({w.key for w in rebuilds})
    row = classified.agg(*[touched_values(k).alias(k) for k in keys]).first()
    if any(row[k] for k in keys):
        rebuild_all(spark, rebuilds, {k: list(row[k]) for k in keys}, pool)


def start_silver(
    spark: SparkSession, contract: Contract, spec: PipelineSpec, layout: PipelineLayout, trigger: dict, name: str,
    suite: QualitySuite | None = None, rebuilds: Sequence[RebuildWriter] = (), privacy: Privacy = Privacy(),
    max_bytes: str | None = None, starting_version: int | None = None, keep: Column | None = None,
) -> StreamingQuery:  # fmt: skip
    """The silver query reading bronze; `rebuilds` are the pipeline's inline outputs, refreshed after each
    micro-batch's writes; `privacy` protects the contract's pii fields in what it writes; `max_bytes` bounds what a
    micro-batch takes of bronze (so that one catching up on a backlog fits in memory); `starting_version` and `keep`:
    bronze's changes from that version on, and only its rows where `keep` holds (after bronze and silver in one
    query, `pipelines.engine.bronze_silver`)."""
    checkpoint = layout.checkpoint("silver")
    bronze = read_stream(spark, layout.bronze.path, max_bytes, starting_version=starting_version)
    return (
        (bronze if keep is None else bronze.where(keep))
        .writeStream.queryName(name)
        .foreachBatch(SilverBatchWriter(contract, spec, layout, checkpoint, suite, name, rebuilds, privacy))
        .option("checkpointLocation", checkpoint)
        .trigger(**trigger)
        .start()
    )
