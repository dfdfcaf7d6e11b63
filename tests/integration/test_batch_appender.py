"""`BatchAppender` on real Delta tables: a restarted query (a new appender, knowing nothing of what it wrote) finds
in the table's own commits whether a micro-batch is already there, so a re-run batch is never appended twice and a
new one always is. The checkpoint is a directory with the query's `offsets/N` files, as Spark writes them before a
batch runs (only their modification time is read)."""

from __future__ import annotations

import os
import time

from pyspark.sql import functions as F

from pipelines.engine.delta_io import BatchAppender, append_once, commit_info, table_version


def _batch(spark, batch_id: int, rows: int = 3):  # noqa: ANN001, ANN202
    return spark.range(rows).select(F.lit(batch_id).alias("batch"), F.col("id"))


def _offsets(checkpoint, *batch_ids: int, age_s: float = 0.0) -> None:  # noqa: ANN001
    for b in batch_ids:
        f = checkpoint / "offsets" / str(b)
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("v1\n{}\n{}\n")
        if age_s:
            then = time.time() - age_s
            os.utime(f, (then, then))


def _rows_of(spark, path: str, batch_id: int) -> int:  # noqa: ANN001
    return spark.read.format("delta").load(path).where(F.col("batch") == batch_id).count()


def test_a_restarted_query_skips_a_batch_it_wrote_and_appends_the_next(spark, tmp_path):
    table, checkpoint = str(tmp_path / "t"), tmp_path / "ckpt"
    _offsets(checkpoint, 0, 1)
    first = BatchAppender(spark, str(checkpoint))
    assert first.append(_batch(spark, 0), table, "app-a", 0)
    assert first.append(_batch(spark, 1), table, "app-a", 1)
    BatchAppender(spark, str(checkpoint)).append(_batch(spark, 7), table, "app-b", 0)  # another query's commit after

    restarted = BatchAppender(spark, str(checkpoint))  # batch 1 is re-run: its write is in the table
    assert not restarted.append(_batch(spark, 1), table, "app-a", 1)
    assert _rows_of(spark, table, 1) == 3
    _offsets(checkpoint, 2)
    assert restarted.append(_batch(spark, 2), table, "app-a", 2)
    assert _rows_of(spark, table, 2) == 3

    again = BatchAppender(spark, str(checkpoint))  # batch 3 was planned, and crashed before its write
    _offsets(checkpoint, 3)
    assert again.append(_batch(spark, 3), table, "app-a", 3)
    assert [_rows_of(spark, table, b) for b in range(4)] == [3, 3, 3, 3]
    info = commit_info(spark, table, table_version(spark, table))
    assert '"app_id":"app-a","batch_id":3' in info["userMetadata"]


def test_only_commits_since_the_batch_began_are_read(spark, tmp_path):
    """A write of batch N can only follow its offsets file: the search for it stops at the first commit older than
    that file (here another query's), so an older commit of the same query id and batch is not taken for it."""
    table, checkpoint = str(tmp_path / "t"), tmp_path / "ckpt"
    _offsets(checkpoint, 4)
    BatchAppender(spark, str(checkpoint)).append(_batch(spark, 4), table, "app-a", 4)
    BatchAppender(spark, str(checkpoint)).append(_batch(spark, 9), table, "app-b", 0)
    _offsets(checkpoint, 4, age_s=-3600)  # batch 4's offsets written after both commits (an hour ahead of them)
    assert BatchAppender(spark, str(checkpoint)).append(_batch(spark, 4), table, "app-a", 4)
    assert _rows_of(spark, table, 4) == 6


def test_appends_without_a_marker_in_the_window_leave_the_decision_to_delta(spark, tmp_path):
    """An older lakepipe appended with Delta's own txnAppId/txnVersion and no marker: the window is uncertain, so the
    re-run write goes through Delta's check, which skips the batch it already holds and takes a new one."""
    table, checkpoint = str(tmp_path / "t"), tmp_path / "ckpt"
    _offsets(checkpoint, 5, 6)
    append_once(_batch(spark, 5), table, "app-a", 5)
    BatchAppender(spark, str(checkpoint)).append(_batch(spark, 5), table, "app-a", 5)  # Delta skips it
    assert _rows_of(spark, table, 5) == 3
    assert BatchAppender(spark, str(checkpoint)).append(_batch(spark, 6), table, "app-a", 6)
    assert _rows_of(spark, table, 6) == 3


def test_a_batch_behind_many_commits_of_others_is_found_in_delta_history(spark, tmp_path, monkeypatch):
    """A shared table (the quality results) or a long stop: more commits since the batch's write than the restart reads
    file by file. Delta's history then answers, and the batch is still not appended twice."""
    from pipelines.engine import delta_io

    monkeypatch.setattr(delta_io, "FILES_READ_ALONE", 3)
    table, checkpoint = str(tmp_path / "t"), tmp_path / "ckpt"
    _offsets(checkpoint, 1)
    BatchAppender(spark, str(checkpoint)).append(_batch(spark, 1), table, "app-a", 1)
    others = BatchAppender(spark, str(tmp_path / "other-ckpt"))
    _offsets(tmp_path / "other-ckpt", *range(5))
    for b in range(5):
        others.append(_batch(spark, 90 + b, rows=1), table, "app-b", b)

    restarted = BatchAppender(spark, str(checkpoint))
    assert not restarted.append(_batch(spark, 1), table, "app-a", 1)
    assert _rows_of(spark, table, 1) == 3
    _offsets(checkpoint, 2)
    assert restarted.append(_batch(spark, 2), table, "app-a", 2)
    assert _rows_of(spark, table, 2) == 3
