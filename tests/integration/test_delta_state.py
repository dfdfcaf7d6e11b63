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
