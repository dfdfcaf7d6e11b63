"""Facts read straight from a local Delta table's `_delta_log`: when each version was committed, which version
added each data file. Used to measure how soon written rows become readable (see pipelines/bench/latency.py).
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
from pathlib import Path


def _commits(table: str) -> list[Path]:
    log = Path(table.removeprefix("file:")) / "_delta_log"
    return sorted(log.glob("[0-9]" * 20 + ".json"))


def commit_times(table: str) -> dict[int, float]:
    """Version -> when its log entry was written (epoch milliseconds): from then on readers see it."""
    return {int(p.stem): p.stat().st_mtime_ns / 1e6 for p in _commits(table)}


def data_files(table: str) -> dict[str, int]:
    """Data file path (relative to the table, as the log writes it) -> the version whose commit added it with new
    rows. Files that only rewrite rows already there (compaction: `dataChange: false`) are left out: their rows were
    readable before, in the files they replace, which stay on disk until a VACUUM."""
    out = {}
    for p in _commits(table):
        for line in p.read_text().splitlines():
            add = json.loads(line).get("add")
            if add and add.get("dataChange", True):
                out[add["path"]] = int(p.stem)
    return out


def file_versions(table: str) -> dict[str, int]:
    """Data file name -> the version whose commit added it with new rows (see `data_files`)."""
    return {path.rsplit("/", 1)[-1]: v for path, v in data_files(table).items()}


def newest_value_ms(table: str, column: str) -> float | None:
    """The highest value of timestamp `column` in the table (epoch ms), from the per-file statistics of the add
    actions in its log (no data read); None when no file has them."""
    best = None
    for p in _commits(table):
        for line in p.read_text().splitlines():
            add = json.loads(line).get("add")
            if add and add.get("stats"):
                value = json.loads(add["stats"]).get("maxValues", {}).get(column)
                if value and (best is None or value > best):
                    best = value
    if best is None:
        return None
    return dt.datetime.fromisoformat(best.replace("Z", "+00:00")).timestamp() * 1000


def latest_version(table: str) -> int:
    """The newest committed version, -1 if there is none."""
    commits = _commits(table)
    return int(commits[-1].stem) if commits else -1


def followed_by(table: str, follower: str) -> dict[int, float]:
    """Version of `table` -> when `follower` (a table written after it in the same micro-batch, e.g. an SCD table
    after silver) first committed at or after it (epoch ms); versions not followed yet are left out."""
    after = sorted(commit_times(follower).values())
    out = {}
    for version, t in commit_times(table).items():
        i = bisect.bisect_left(after, t)
        if i < len(after):
            out[version] = after[i]
    return out
