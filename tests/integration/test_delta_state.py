"""`warm_state` on real Delta tables: the state a MERGE or `replaceWhere` needs is computed ahead of the commit, so
the commit runs fewer Spark jobs of its own (Delta 4.4 replays the log for each new version's file count)."""

from __future__ import annotations

import itertools

from pyspark.sql import functions as F

from pipelines.engine.delta_io import ensure_table, replace_where, upsert, warm_state

_groups = itertools.count()


def jobs_run_by(spark, action) -> int:  # noqa: ANN001
    """How many Spark jobs `action` ran (in this thread, under a job group of its own)."""
    group = f"probe-{next(_groups)}"
    sc = spark.sparkContext
    sc.setJobGroup(group, group)
    try:
        action()
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
    return len(sc.statusTracker().getJobIdsForGroup(group))


def test_a_commit_after_warm_state_runs_fewer_jobs_and_writes_the_same(spark, tmp_path):
    rows = spark.range(200).select(F.format_string("k%03d", "id").alias("k"), F.col("id").alias("v"))
    cold, warm = str(tmp_path / "cold"), str(tmp_path / "warm")
    for path in (cold, warm):
        ensure_table(spark, path, rows.schema)
        rows.write.format("delta").mode("append").save(path)  # a new version: its state not computed yet
    counts = {}
    for path in (cold, warm):
        if path == warm:
            warm_state(spark, path).join()
        pred = "k IN ('k001', 'k002', 'k150')"
        counts[path] = jobs_run_by(spark, lambda p=path, pred=pred: replace_where(rows.where(pred).withColumn("v", F.lit(-1).cast("long")), p, pred))
    assert counts[warm] < counts[cold], f"replaceWhere ran {counts[warm]} jobs after warm_state, {counts[cold]} without"

    for path in (cold, warm):  # the same for a MERGE, on the version the replaceWhere made
        if path == warm:
            warm_state(spark, path).join()
        batch = rows.where("v < 3").withColumn("v", F.col("v") + 1000)
        counts[path] = jobs_run_by(spark, lambda p=path, b=batch: upsert(b, p, ("k",)))
    assert counts[warm] < counts[cold], f"MERGE ran {counts[warm]} jobs after warm_state, {counts[cold]} without"
    table = lambda p: sorted(map(tuple, spark.read.format("delta").load(p).collect()))  # noqa: E731
    assert table(warm) == table(cold)
    assert dict(table(warm))["k001"] == 1001 and dict(table(warm))["k150"] == -1


def test_warm_state_of_a_missing_table_fails_nothing(spark, tmp_path):
    thread = warm_state(spark, str(tmp_path / "nothing-here"))
    thread.join(timeout=60)
    assert not thread.is_alive()


def test_an_empty_upsert_batch_ends_with_the_state_computation_it_began(spark, tmp_path):
    import threading

    from pipelines.engine.delta_io import upsert_nonempty

    path = str(tmp_path / "gold")
    rows = spark.range(50).select(F.format_string("k%03d", "id").alias("k"), F.col("id").alias("v"))
    ensure_table(spark, path, rows.schema)
    for i in range(3):  # a few versions whose state is not computed yet
        rows.where(F.col("id") % 3 == i).write.format("delta").mode("append").save(path)
    upsert_nonempty(rows.limit(0), path, ("k",))
    running = [t.name for t in threading.enumerate() if t.name == "delta-state" and t.is_alive()]
    assert running == [], "a state computation of the batch outlived it"
    assert spark.read.format("delta").load(path).count() == 50  # nothing written by the empty batch


def test_a_no_data_batch_is_told_from_the_offset_log(spark, tmp_path):
    """A watermarked aggregation's `--once` run ends with a batch that only moves the watermark: `batch_brings_input`
    says so from the checkpoint, and says True for every batch that reads rows (also after more rows arrive)."""
    from pipelines.engine.delta_io import batch_brings_input

    source, checkpoint = str(tmp_path / "source"), str(tmp_path / "checkpoint")
    seen = []  # (batch id, rows read, what batch_brings_input said)

    def record(batch, batch_id):  # noqa: ANN001
        seen.append((batch_id, batch.count(), batch_brings_input(batch.sparkSession, checkpoint, batch_id)))

    def run(first_minute: int) -> None:
        minutes = spark.range(first_minute, first_minute + 5).select(F.timestamp_seconds(F.col("id") * 60).alias("t"))
        minutes.write.format("delta").mode("append").save(source)
        counts = (spark.readStream.format("delta").load(source).withWatermark("t", "1 minute")
                  .groupBy(F.window("t", "1 minute")).count())  # fmt: skip
        query = counts.writeStream.outputMode("update").foreachBatch(record)
        query.option("checkpointLocation", checkpoint).trigger(availableNow=True).start().awaitTermination()

    run(0)
    run(10)
    told = {batch_id: brings for batch_id, _, brings in seen}
    assert [b for b, _, _ in seen] == sorted(told) and len(told) >= 3, f"batches seen: {seen}"
    assert [b for b, brings in told.items() if not brings], f"no batch was told to bring no input: {seen}"
    for batch_id, rows, brings in seen:
        assert brings == (rows > 0), f"batch {batch_id} emitted {rows} rows, told brings input={brings}: {seen}"
    assert told[0] and batch_brings_input(spark, checkpoint, 0)
    assert batch_brings_input(spark, str(tmp_path / "no-checkpoint"), 3)  # cannot tell: True
