"""Damaged checkpoint files: found before a run starts, named in one line, and set aside by `lakepipe repair` when
that is safe.

A restart of a streaming query reads three files of its checkpoint: `metadata` (the query's id, which also names
its writes in every table), the newest `offsets/N` (the batch planned last) with the one before it, and the
newest `commits/M` (the batch finished last). Spark writes each atomically, but a disk or a hand can still damage
one, and Spark then fails deep in its start with a stack trace. Here each is read the way Spark reads it (a
version line, then JSON) before any query starts:

- a damaged newest `commits/M` is set aside safely: batch M runs again over the offsets `offsets/M` recorded, and
  every table recognises what that batch already wrote (nothing doubled);
- a damaged newest `offsets/N` of a batch not finished is set aside safely when no table holds a write of that
  batch (the query's id and batch N in a commit since the file was written): the batch is planned again from
  where batch N-1 ended. When a table does hold one, the range batch N read is known only to that file, and
  planning again could skip records: repair refuses and says so;
- any other damaged file the restart needs (the offsets of a finished batch, the one before the newest,
  `metadata`) is refused in the same way: restore it from a copy of the checkpoint.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from pipelines.engine.delta_io import LOOKBACK_MARGIN_MS, MARKER
from pipelines.ops.status import local_path

_VERSION = re.compile(r"^v\d+$")
ASIDE = "_damaged"  # where repair moves files, inside the query's checkpoint


@dataclass(frozen=True)
class Damage:
    path: Path
    why: str
    remedy: str | None  # what `lakepipe repair` does about it; None when it cannot do it safely
    refusal: str = ""  # why not, then


def file_problem(path: Path, kind: str) -> str | None:
    """Why Spark could not read this checkpoint file (`kind`: offsets, commits or metadata), or None."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8 text"
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    if not text.strip():
        return "empty"
    lines = text.rstrip("\n").split("\n")
    if kind == "metadata":
        return _json_problem(lines[0], 1, need="id")
    if not _VERSION.match(lines[0]):
        return f"its first line {lines[0][:20]!r} is not a log version such as v1"
    if len(lines) < (3 if kind == "offsets" else 2):
        return "cut short (no " + ("source offsets" if kind == "offsets" else "batch record") + ")"
    for n, line in enumerate(lines[1:], start=2):
        if kind == "offsets" and n > 2 and line == "-":  # a source without an offset yet
            continue
        if (problem := _json_problem(line, n)) is not None:
            return problem
    return None


def _json_problem(line: str, n: int, need: str | None = None) -> str | None:
    try:
        value = json.loads(line)
    except ValueError as exc:
        return f"line {n} is not JSON ({exc.msg} at column {exc.colno})"
    if not isinstance(value, dict) or (need and need not in value):
        return f"line {n} is not the JSON object Spark wrote" + (f" (no '{need}')" if need else "")
    return None


def _batches(folder: Path) -> list[int]:
    return sorted(int(f.name) for f in folder.iterdir() if f.name.isdigit()) if folder.is_dir() else []


def query_damage(root: Path, tables_root: Path) -> list[Damage]:
    """The damaged files a restart of the query checkpointed at `root` would read."""
    found: list[Damage] = []
    restore = "restore it from a copy of the checkpoint (or start this query on a new checkpoint and backfill)"
    query_id = None
    if (root / "metadata").is_file():
        if (why := file_problem(root / "metadata", "metadata")) is not None:
            found.append(Damage(root / "metadata", why, None, "it holds the query's id, which names its writes in "
                                                                 f"every table: {restore}"))  # fmt: skip
        else:
            query_id = json.loads((root / "metadata").read_text().split("\n")[0])["id"]
    offsets, commits = _batches(root / "offsets"), _batches(root / "commits")
    if offsets:
        n = offsets[-1]
        path = root / "offsets" / str(n)
        if (why := file_problem(path, "offsets")) is not None:
            if n in commits:
                found.append(Damage(path, why, None, f"batch {n} is finished, and the next one starts where this file "
                                                     f"says: {restore}"))  # fmt: skip
            elif query_id is None or (table := _table_with_batch(tables_root, query_id, n, path)) is not None:
                where = f"{table} holds a write of batch {n}" if query_id else "the query's id is unknown"
                found.append(Damage(path, why, None, f"{where}, and the range of Kafka offsets or table versions it "
                                                     f"read is known only to this file: {restore}"))  # fmt: skip
            else:
                found.append(Damage(path, why, f"set aside: batch {n} wrote nothing yet, and is planned again from "
                                                f"where batch {n - 1} ended"))  # fmt: skip
        if n not in commits and len(offsets) > 1:
            before = root / "offsets" / str(offsets[-2])
            if (why := file_problem(before, "offsets")) is not None:
                found.append(Damage(before, why, None, f"a restart reads it to know where batch {n} starts: {restore}"))
    if commits:
        m = commits[-1]
        path = root / "commits" / str(m)
        if (why := file_problem(path, "commits")) is not None:
            intact = m in offsets and file_problem(root / "offsets" / str(m), "offsets") is None
            found.append(Damage(path, why, f"set aside: batch {m} runs again over the offsets it recorded, and each "
                                           "table recognises what it already wrote" if intact else None,
                                "its batch's offsets are damaged too: " + restore))  # fmt: skip
    return found


def _table_with_batch(tables_root: Path, query_id: str, batch: int, offsets_file: Path) -> Path | None:
    """A table (under `tables_root`) with a commit of batch `batch` of the query `query_id`, written since its
    offsets file was: our marker in the commit's userMetadata, or Delta's own transaction id."""
    since = offsets_file.stat().st_mtime - LOOKBACK_MARGIN_MS / 1000
    for log in tables_root.rglob("_delta_log"):
        for commit in log.glob("*.json"):
            if commit.stat().st_mtime < since:
                continue
            for line in commit.read_text(errors="replace").splitlines():
                if query_id in line and _holds_batch(line, query_id, batch):
                    return log.parent
    return None


def _holds_batch(line: str, query_id: str, batch: int) -> bool:
    try:
        action = json.loads(line)
    except ValueError:
        return False
    txn = action.get("txn")
    if isinstance(txn, dict) and query_id in str(txn.get("appId")) and txn.get("version") == batch:
        return True
    info = action.get("commitInfo")
    if isinstance(info, dict) and info.get("userMetadata"):
        try:
            mine = json.loads(info["userMetadata"]).get(MARKER) or {}
        except (ValueError, AttributeError):
            return False
        return query_id in str(mine.get("app_id")) and mine.get("batch_id") == batch
    return False


def pipeline_damage(checkpoints: str, tables_root: str) -> list[Damage]:
    """Damaged files of every query checkpointed under a pipeline's checkpoint folder (local lakes only)."""
    root, tables = local_path(checkpoints), local_path(tables_root)
    if root is None or tables is None or not root.is_dir():
        return []
    # <pipeline>/<query>/offsets and <pipeline>/gold/<output>/offsets; never into the state stores' many files
    queries = sorted({p.parent for p in [*root.glob("*/offsets"), *root.glob("*/*/offsets")] if p.is_dir()})
    return [d for q in queries for d in query_damage(q, tables)]


def describe(pipeline: str, damage: Damage) -> str:
    """The one line that stops a run."""
    how = (f"`lakepipe repair {pipeline}` sets it aside safely" if damage.remedy is not None
           else f"`lakepipe repair {pipeline}` cannot set it aside safely ({damage.refusal})")  # fmt: skip
    return f"{pipeline}: checkpoint file {damage.path} is damaged ({damage.why}): {how}"


def set_aside(damage: Damage) -> Path:
    """Move a damaged file into `_damaged/` of its query's checkpoint (kept, for a post-mortem)."""
    query = damage.path.parent.parent
    target = query / ASIDE / f"{damage.path.parent.name}-{damage.path.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    target.parent.mkdir(exist_ok=True)
    crc = damage.path.with_name(f".{damage.path.name}.crc")  # Hadoop's checksum of it, damaged with it
    damage.path.rename(target)
    crc.unlink(missing_ok=True)
    return target
