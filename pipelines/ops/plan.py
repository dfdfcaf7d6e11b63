"""The change-impact check (`lakepipe plan`): the current spec and contract against what the pipeline's existing
tables and checkpoints were built with, per table, before anything starts.

What they were built with: silver's schema as its Delta log holds it now (so a schema change made by hand counts),
and the spec's identity of a record and of each output as the last run recorded them (`_built_with.json` beside
the pipeline's checkpoints, written at each start). Verdicts, per table:

- compatible: nothing to do. A new contract field (silver gains the column, null in older rows), a field the
  contract dropped (the column stays, null from now on), a new output (built from all of silver), one removed
  (its table stays, no longer updated), any change whose query starts on a new checkpoint anyway;
- schema change: a type Delta can widen in place (int -> bigint, float -> double, a decimal's precision): the
  command that widens it;
- new checkpoint: the dedup key, the event time or an output's definition (keys, mode, window options, function)
  changed while its checkpoint holds state and progress built with the old one: the checkpoint to move aside (the
  query then rebuilds its table from all of its source);
- impossible: a type narrowed or changed to another kind (long -> int, string -> int), or the partitioning of
  silver changed: Delta cannot do either in place; a new table instead.

`lakepipe run` refuses the last three with the same line. An output function whose *code* changed under the same
name is not seen: the check compares definitions, not code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import types as T

from pipelines.engine.bronze_silver import SOURCE_FILE
from pipelines.engine.dedup import DEDUP_HASH
from pipelines.engine.silver import silver_schema
from pipelines.model.project import Pipeline
from pipelines.ops.status import local_path

RECORD = "_built_with.json"
COMPATIBLE, SCHEMA_CHANGE, NEW_CHECKPOINT, IMPOSSIBLE = "compatible", "schema change", "new checkpoint", "impossible"
BLOCKING = (SCHEMA_CHANGE, NEW_CHECKPOINT, IMPOSSIBLE)
_WIDER = {  # what Delta's type widening allows in place: old -> new
    ("byte", "short"), ("byte", "integer"), ("byte", "long"), ("short", "integer"), ("short", "long"),
    ("integer", "long"), ("float", "double"), ("byte", "double"), ("short", "double"), ("integer", "double"),
    ("date", "timestamp_ntz"),
}  # fmt: skip


_SHOWN = {"function": "function", "mode": "write mode", "how": "keys or write settings", "options": "options"}


@dataclass(frozen=True)
class Verdict:
    table: str
    verdict: str
    detail: str

    def line(self) -> str:
        return f"{self.table}: {self.verdict}: {self.detail}"


def identity(p: Pipeline) -> dict:
    """What a run of `p` builds its checkpoints with (pure): the record's identity and each output's definition."""
    outputs = {}
    for o in p.spec.outputs:
        mode = "upsert" if o.upsert else "append" if o.append else "rebuild"
        how = o.upsert or o.append or o.rebuild
        outputs[o.name] = {"function": o.function, "mode": mode, "how": _plain(how),
                           "options": dict(o.options)}  # fmt: skip
    return {"dedup_key": list(p.spec.dedup_keys), "event_time": p.spec.event_time,
            "partition_by": list(p.spec.partition_by), "outputs": outputs}  # fmt: skip


def _plain(value: object) -> object:
    """JSON-ready data of a spec value (dataclasses, read-only mappings, tuples)."""
    from collections.abc import Mapping
    from dataclasses import fields, is_dataclass

    if is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def record_path(p: Pipeline) -> Path | None:
    root = local_path(p.layout.checkpoints)
    return None if root is None else root / RECORD


def record(p: Pipeline) -> None:
    """Write what this run builds with (at each start, once its checks passed)."""
    path = record_path(p)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(identity(p), indent=1, sort_keys=True))


def recorded(p: Pipeline) -> dict | None:
    path = record_path(p)
    return json.loads(path.read_text()) if path is not None and path.is_file() else None


def table_schema(path: str) -> T.StructType | None:
    """A Delta table's schema as its log holds it now (no Spark): the newest metaData action of its JSON commits,
    else of its last checkpoint; None when there is no such table here."""
    root = local_path(path)
    log = root / "_delta_log" if root is not None else None
    if log is None or not log.is_dir():
        return None
    last = log / "_last_checkpoint"
    checkpointed = json.loads(last.read_text())["version"] if last.is_file() else -1
    # only the commits since the last checkpoint (a streaming table has thousands), newest first
    for commit in sorted((c for c in log.glob("*.json") if c.stem.isdigit() and int(c.stem) > checkpointed), reverse=True):
        for line in commit.read_text().splitlines():
            if line.startswith('{"metaData"'):
                return T.StructType.fromJson(json.loads(json.loads(line)["metaData"]["schemaString"]))
    if checkpointed >= 0:
        import pyarrow.parquet as pq

        for part in log.glob(f"{checkpointed:020d}.checkpoint*.parquet"):
            for row in pq.read_table(part, columns=["metaData"]).column("metaData").to_pylist():
                if row and row.get("schemaString"):
                    return T.StructType.fromJson(json.loads(row["schemaString"]))
    return None


def _type(dt: T.DataType) -> str:
    return dt.typeName() if not isinstance(dt, T.DecimalType) else "decimal"


def silver_verdicts(p: Pipeline, current: T.StructType | None, built: dict | None, started: bool) -> list[Verdict]:
    """Silver's table (and its quarantine, made from the same contract) against the contract now."""
    name = p.layout.silver.name
    if current is None:
        return [Verdict(name, COMPATIBLE, "no table yet: the first run creates it")]
    old = {f.name: f.dataType for f in current.fields}
    new = {f.name: f.dataType for f in silver_schema(p.contract).fields}
    found: list[Verdict] = []
    for field, dt in new.items():
        was = old.get(field)
        if was is None and field == DEDUP_HASH:
            continue  # lakepipe's own, which a silver created before it goes without (its dedup lookup reads the keys)
        if was is None:
            found.append(Verdict(name, COMPATIBLE, f"gains column {field} ({dt.simpleString()}; null in the rows before)"))
        elif was != dt:
            found.append(_type_change(p, name, field, was, dt))
    for field in old.keys() - new.keys():
        found.append(Verdict(name, COMPATIBLE, f"column {field} is no longer in the contract: it stays, null from now on"))
    if built is not None and started:
        aside = f"move {p.layout.checkpoint('silver')} and {p.layout.checkpoints}/{SOURCE_FILE} aside (those that exist) " \
                "and give the pipeline a new events_table: the new silver is built from all of bronze"
        for key, what in (("dedup_key", "dedup key"), ("event_time", "event time")):
            now = identity(p)[key]
            if built.get(key) != now:
                found.append(Verdict(name, NEW_CHECKPOINT, f"the {what} changed ({built.get(key)} -> {now}): the rows so "
                                                           f"far were deduplicated and placed by the old one; {aside}"))
        if built.get("partition_by") not in (None, list(p.spec.partition_by)):
            found.append(Verdict(name, IMPOSSIBLE, f"the partitioning changed ({built['partition_by']} -> "
                                                   f"{list(p.spec.partition_by)}): Delta cannot repartition a table in "
                                                   f"place; {aside}"))  # fmt: skip
    return found or [Verdict(name, COMPATIBLE, "unchanged")]


def _type_change(p: Pipeline, table: str, field: str, was: T.DataType, now: T.DataType) -> Verdict:
    widen = (_type(was), _type(now)) in _WIDER or (
        isinstance(was, T.DecimalType) and isinstance(now, T.DecimalType)
        and now.precision - now.scale >= was.precision - was.scale and now.scale >= was.scale
    )  # fmt: skip
    change = f"{field} {was.simpleString()} -> {now.simpleString()}"
    if widen:
        path = p.layout.silver.path
        return Verdict(table, SCHEMA_CHANGE, f"{change} widens in place: lakepipe sql \"ALTER TABLE delta.`{path}` SET "
                                             "TBLPROPERTIES ('delta.enableTypeWidening' = 'true')\" then lakepipe sql "
                                             f"\"ALTER TABLE delta.`{path}` ALTER COLUMN {field} TYPE "
                                             f"{now.simpleString().upper()}\"")  # fmt: skip
    return Verdict(table, IMPOSSIBLE, f"{change} would change stored values (narrower or another kind): keep "
                                      f"{was.simpleString()} in the contract, or a new events_table and a silver backfill")


def output_verdicts(p: Pipeline, built: dict | None) -> list[Verdict]:
    """Each output's table against its definition when its checkpoint was built."""
    from pipelines.engine.gold.outputs import output_checkpoint

    before = (built or {}).get("outputs", {})
    now = identity(p)["outputs"]
    found = []
    for o in p.spec.outputs:
        name, definition = o.name, now[o.name]
        checkpoint = local_path(output_checkpoint(p, o))
        started = checkpoint is not None and (checkpoint / "offsets").is_dir()
        if o.inline:  # refreshed by the silver query per key, no state of its own
            changed = name in before and before[name] != definition
            found.append(Verdict(name, COMPATIBLE, "its definition changed: the keys refreshed from now on follow it, "
                                                   "the others keep their rows until their next change" if changed
                                 else "unchanged" if name in before else "refreshed by the silver query"))  # fmt: skip
        elif not started or name not in before:
            found.append(Verdict(name, COMPATIBLE, "new: its first run builds it from all of its source"
                                 if not started else "no record of its definition yet (the next run records it)"))
        elif before[name] != definition:
            what = " and ".join(_SHOWN[k] for k in definition if definition[k] != before[name].get(k))
            found.append(Verdict(name, NEW_CHECKPOINT, f"its {what} changed, and its checkpoint holds state and progress "
                                                       f"of the old definition: move {checkpoint} aside (and empty the "
                                                       "table if its keys changed): the query rebuilds it from all of "
                                                       "its source"))  # fmt: skip
        else:
            found.append(Verdict(name, COMPATIBLE, "unchanged"))
    for name in before.keys() - now.keys():
        found.append(Verdict(name, COMPATIBLE, "no longer in the spec: the table and its checkpoint stay, not updated"))
    return found


def plan(p: Pipeline) -> list[Verdict]:
    """Every table's verdict for pipeline `p` (local lakes; elsewhere what the record alone tells)."""
    built = recorded(p)
    silver_cp = local_path(p.layout.checkpoint("silver"))
    source = local_path(f"{p.layout.checkpoints}/{SOURCE_FILE}")  # bronze and silver in one query: it reads Kafka
    started = silver_cp is not None and (silver_cp / "offsets").is_dir() or source is not None and source.is_file()
    return silver_verdicts(p, table_schema(p.layout.silver.path), built, started) + output_verdicts(p, built)
