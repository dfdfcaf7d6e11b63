"""The arguments of a backfill, shared by `lakepipe backfill` and `jobs/backfill.py`, and the dispatch by layer."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable

from pyspark.sql import SparkSession

from pipelines.backfill import audit
from pipelines.errors import LakepipeError
from pipelines.model.project import Project


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pipeline", help="pipeline name")
    p.add_argument("--layer", required=True, choices=("bronze", "silver", "gold"), help="bronze: from Kafka; silver: re-derive "
                   "the events table from bronze, or with --table a derived silver table (SCD); gold: a derived table")  # fmt: skip
    p.add_argument("--table", help="the output to recompute (gold/silver layers)")
    p.add_argument("--from", dest="start", help="start, ISO-8601, inclusive: event time (Kafka time for bronze)")
    p.add_argument("--to", dest="end", help="end, ISO-8601, exclusive")
    p.add_argument("--offsets", help="bronze: Kafka offsets instead of times, partition:start-end,... (end exclusive)")
    p.add_argument("--dry-run", action="store_true", help="say what would be read and replaced, write nothing")
    p.add_argument("--allow-gaps", action="store_true", help="bronze: load the rest when part of the range expired from the topic")
    p.add_argument("--force", action="store_true", help="run even if the same backfill already succeeded over the same input")
    p.add_argument("--kafka-time", action="store_true", help="silver: select records by Kafka timestamp, not event time "
                   "(reaches records whose event time cannot be read, e.g. invalid JSON)")  # fmt: skip
    p.add_argument("--chunk-records", type=int, default=1_000_000, help="bronze: Kafka offsets per commit (default 1,000,000)")


def progress_bar() -> Callable[[int, int], None] | None:
    """A one-line progress bar on a terminal (nothing when the output is a file or a pipe)."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        filled = int(30 * done / max(total, 1))
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done:,}/{total:,} records" + ("\n" if done >= total else ""))
        sys.stderr.flush()

    return show


def parse_time(text: str | None, flag: str) -> dt.datetime | None:
    if text is None:
        return None
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise LakepipeError(f"{flag} '{text}' is not an ISO-8601 date or time (e.g. 2026-11-29 or 2026-11-29T10:00:00Z)") from None
    return (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).astimezone(dt.UTC).replace(tzinfo=None)


def run_backfill(spark: SparkSession, project: Project, args: argparse.Namespace) -> audit.Record:
    from pipelines.engine.tables import create_tables

    start, end = parse_time(args.start, "--from"), parse_time(args.end, "--to")
    create_tables(spark, project, project.pipeline(args.pipeline))
    if args.layer == "bronze":
        from pipelines.backfill.bronze import backfill_bronze, parse_offsets, plan

        if args.offsets:
            parts, text = plan(project, args.pipeline, offsets=parse_offsets(args.offsets)), f"offsets {args.offsets}"
        else:
            ms = lambda t: None if t is None else int(t.replace(tzinfo=dt.UTC).timestamp() * 1000)  # noqa: E731
            parts = plan(project, args.pipeline, start_ms=ms(start), end_ms=ms(end))
            text = f"Kafka time [{args.start or 'first kept record'}, {args.end or 'now'})"
        return backfill_bronze(spark, project, args.pipeline, parts, text, args.dry_run, args.allow_gaps,
                               getattr(args, "chunk_records", 1_000_000), progress_bar())  # fmt: skip
    from pipelines.backfill.gold import backfill_output
    from pipelines.backfill.silver import backfill_silver

    if start is None or end is None:
        raise LakepipeError(f"--layer {args.layer} needs --from and --to")
    events = project.pipeline(args.pipeline).layout.silver.name
    if args.layer == "silver" and args.table in (None, events):
        return backfill_silver(spark, project, args.pipeline, start, end, args.dry_run, args.force,
                               getattr(args, "kafka_time", False))  # fmt: skip
    if not args.table:
        raise LakepipeError("--layer gold needs --table (the output to recompute)")
    if project.table(args.table).layer != args.layer:
        raise LakepipeError(f"{args.table} is a {project.table(args.table).layer} table, not {args.layer}")
    return backfill_output(spark, project, args.pipeline, args.table, start, end, args.dry_run, args.force)
