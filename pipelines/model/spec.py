"""Pipeline specs (`conf/pipelines/<name>.yaml`): what a pipeline reads, how it parses, what it derives.

A spec plus a contract in `schemas/` is all a pipeline needs; the engine (`pipelines.engine.runner`) turns them into
streams. `resolve_spec` checks everything that can be checked before Spark starts (the contract exists, the
roles name contract fields, the event-time column is a timestamp, every output function imports) and names
the file and key of the first problem.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.errors import ConfigError
from pipelines.model import durations
from pipelines.model.contract import Contract, load_contract
from pipelines.model.typed_config import load_typed
from pipelines.quality.suite import QualitySuite, load_suite

LAYERS = ("silver", "gold")
DERIVED_SILVER_COLUMNS = ("event_date",)  # computed by silver from the event-time column
SILVER_EXTRA_COLUMNS = ("extra", "topic", "partition", "offset", "kafka_timestamp")


@dataclass(frozen=True)
class Upsert:
    """`function(events, **options)` over the watermarked silver stream, MERGEd by `keys` so open windows
    update in place; rows whose `delete_flag` column is true delete their key instead."""

    keys: tuple[str, ...]
    delete_flag: str | None = None

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("upsert needs at least one key")


@dataclass(frozen=True)
class Append:
    """The same rows appended: for rows final once the watermark passes (alerts, closed windows)."""


@dataclass(frozen=True)
class Rebuild:
    """For each micro-batch, every value of `key` it touches is recomputed from all the silver rows with that
    value: `function(rows, **lookups, **options)` is a pure batch function and the table's rows for those values
    are replaced in one commit. For results that depend on order rather than arrival (SCD history) or on other
    tables: `source` reads another pipeline's silver, `lookups` maps an argument to "<pipeline>.<table>"."""

    key: str
    source: str | None = None
    lookups: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for arg, table in self.lookups.items():
            if table.count(".") != 1:
                raise ValueError(f"lookup '{arg}' must be <pipeline>.<table>, not '{table}'")

    def lookup(self, arg: str) -> tuple[str, str]:
        """(pipeline, table) that lookup `arg` names."""
        pipeline, table = self.lookups[arg].split(".")
        return pipeline, table

    @property
    def reads(self) -> list[tuple[str, str]]:
        """(spec key, pipeline) of every pipeline this output reads besides its own silver."""
        out = [("source", self.source)] if self.source else []
        return out + [(f"lookups.{arg}", self.lookup(arg)[0]) for arg in self.lookups]


Write = Upsert | Append | Rebuild


@dataclass(frozen=True)
class OutputSpec:
    """A table derived from silver by `function`, written in exactly one way: `upsert`, `append` or `rebuild`."""

    name: str
    function: str  # dotted path, e.g. pipelines.domains.clickstream.gold.revenue_per_minute
    upsert: Upsert | None = None
    append: Append | None = None
    rebuild: Rebuild | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    layer: str = "gold"  # silver for cleaned-up views of silver (SCD tables), gold for aggregates
    description: str = ""

    def __post_init__(self) -> None:
        if sum(w is not None for w in (self.upsert, self.append, self.rebuild)) != 1:
            raise ValueError(f"output '{self.name}' needs exactly one of upsert, append, rebuild")
        if self.layer not in LAYERS:
            raise ValueError(f"output '{self.name}': layer '{self.layer}' is not one of {', '.join(LAYERS)}")

    @property
    def write(self) -> Write:
        return self.upsert or self.append or self.rebuild

    @property
    def keys(self) -> tuple[str, ...]:
        """The columns that identify a row: an upsert's keys, a rebuild's key, none for appends."""
        if self.upsert:
            return self.upsert.keys
        return (self.rebuild.key,) if self.rebuild else ()

    @property
    def delete_flag(self) -> str | None:
        return self.upsert.delete_flag if self.upsert else None

    @property
    def derived(self) -> bool:
        """Reads other tables (so it runs after the other outputs in a `--once` run)."""
        return bool(self.rebuild and (self.rebuild.source or self.rebuild.lookups))

    @property
    def inline(self) -> bool:
        """A rebuild from the pipeline's own silver alone (SCD tables): written by the silver query itself, in the
        micro-batch that appends the rows it derives from, instead of by a query of its own."""
        return bool(self.rebuild) and not self.derived


@dataclass(frozen=True)
class QualitySpec:
    """The expectation suite of the pipeline's silver table, and how often its batch-level rules run."""

    suite: str  # relative to the schemas folder, e.g. clickstream/expectations.json
    batch_every: int = 1  # run batch-level expectations on every Nth micro-batch

    def __post_init__(self) -> None:
        if self.batch_every < 1:
            raise ValueError("quality.batch_every must be at least 1")


@dataclass(frozen=True)
class SloSpec:
    """Freshness objectives, checked by `lakepipe status` (exit code 1 when one is breached). A table is behind
    while its source holds data it has not taken: bronze behind Kafka, silver behind bronze, an output behind the
    silver it reads. Each layer's value bounds how long the oldest such data may wait."""

    bronze: str | None = None
    silver: str | None = None  # also the SCD tables the silver query refreshes
    gold: str | None = None
    lag_records: int | None = None  # records in Kafka not yet in bronze

    def __post_init__(self) -> None:
        for layer in ("bronze", "silver", "gold"):
            if getattr(self, layer) is not None:
                durations.seconds(getattr(self, layer))  # a ValueError names a bad value
        if self.lag_records is not None and self.lag_records < 0:
            raise ValueError(f"slo.lag_records must be 0 or more, not {self.lag_records}")

    def max_behind_s(self, layer: str) -> float | None:
        value = getattr(self, layer, None)
        return None if value is None else durations.seconds(value)


@dataclass(frozen=True)
class FilesSpec:
    """Delta's own remedies for the small files a stream writes, per table (each entry a layer or a table name).

    `auto_compact`: after a commit that leaves many small files (50 by default), Delta compacts them in the same
    writer (`delta.autoOptimize.autoCompact`); `optimize_write`: a write is shuffled so that it makes one file per
    partition value instead of one per task (`delta.autoOptimize.optimizeWrite`). `checkpoint_interval`: commits
    between two checkpoints of each table's log (`delta.checkpointInterval`, Delta's default 10): the commit that
    writes one waits for it (1-4 s on 2 cores, against ~0.2 s for a small append). Set as table properties when
    a run starts (before its queries), and the first two taken off a table no longer listed.
    """

    auto_compact: tuple[str, ...] = ()
    optimize_write: tuple[str, ...] = ()
    checkpoint_interval: int = 100

    PROPERTIES = {"auto_compact": "delta.autoOptimize.autoCompact", "optimize_write": "delta.autoOptimize.optimizeWrite"}
    CHECKPOINT_INTERVAL = "delta.checkpointInterval"

    def __post_init__(self) -> None:
        if self.checkpoint_interval < 1:
            raise ValueError(f"files.checkpoint_interval must be 1 or more, not {self.checkpoint_interval}")

    def properties(self, name: str, layer: str) -> dict[str, str]:
        """The table properties a table named `name` of `layer` gets."""
        wanted = {prop: "true" for key, prop in self.PROPERTIES.items() if {name, layer} & set(getattr(self, key))}
        return {**wanted, **self.log_properties()}

    def log_properties(self) -> dict[str, str]:
        """The properties of a table's log, the same for every table (those that no one pipeline owns get the defaults)."""
        return {self.CHECKPOINT_INTERVAL: str(self.checkpoint_interval)}


@dataclass(frozen=True)
class PipelineSpec:
    name: str
    topic: str
    key: str
    contract: str  # relative to the schemas folder
    events_table: str
    event_time: str
    dedup_key: str | tuple[str, ...]  # the field, or fields, that identify a record (e.g. [lsn, customer_id])
    watermark: str | None = None  # default: the environment's streaming.watermark
    dedup_horizon: str = "1 hour"  # a conflicting copy is caught when event times are closer (pipelines.engine.dedup)
    tombstones: str = "quarantine"  # a record with a null value (a CDC delete's tombstone): quarantine or skip
    partition_by: tuple[str, ...] = ("event_date",)
    outputs: tuple[OutputSpec, ...] = ()
    quality: QualitySpec | None = None
    slo: SloSpec | None = None
    files: FilesSpec = FilesSpec()
    # Spark SQL settings of this pipeline's streaming queries alone (each query keeps a copy of its session's
    # settings from its start), e.g. code generation off for a pipeline of small micro-batches.
    spark_conf: Mapping[str, str] = field(default_factory=dict)
    description: str = ""

    @property
    def dedup_keys(self) -> tuple[str, ...]:
        return (self.dedup_key,) if isinstance(self.dedup_key, str) else tuple(self.dedup_key)

    def __post_init__(self) -> None:
        if not self.dedup_keys:
            raise ValueError("dedup_key needs at least one field")
        if self.tombstones not in ("quarantine", "skip"):
            raise ValueError(f"tombstones is '{self.tombstones}', not one of quarantine, skip")
        if self.watermark is not None:
            durations.seconds(self.watermark)
        durations.seconds(self.dedup_horizon)
        for key in self.spark_conf:
            if not key.startswith("spark.sql."):
                raise ValueError(f"spark_conf: '{key}' is not a Spark SQL setting (spark.sql.*), which is all a query can "
                                 "have of its own: set it in the environment's spark.conf")  # fmt: skip
        names = [o.name for o in self.outputs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"outputs listed twice: {', '.join(dupes)}")


@dataclass(frozen=True)
class ResolvedSpec:
    """A spec with its contract loaded and its gold functions imported."""

    spec: PipelineSpec
    contract: Contract
    functions: Mapping[str, Callable]
    source: Path
    suite: QualitySuite | None = None


def load_spec(path: Path) -> PipelineSpec:
    spec = load_typed(PipelineSpec, path)
    if spec.name != path.stem:
        raise ConfigError(f"{path}: key 'name' is '{spec.name}' but the file is named {path.name}")
    return spec


def resolve_spec(path: Path, schemas_dir: Path) -> ResolvedSpec:
    spec = load_spec(path)
    contract_file = schemas_dir / spec.contract
    if not contract_file.is_file():
        raise ConfigError(f"{path}: key 'contract' names {contract_file}, which does not exist")
    contract = load_contract(contract_file)
    fields = set(contract.field_names)
    roles = [("key", spec.key), ("event_time", spec.event_time)] + [("dedup_key", k) for k in spec.dedup_keys]
    for role, name in roles:
        if name not in fields:
            raise ConfigError(f"{path}: key '{role}' names '{name}', which is not a field of {contract_file.name}")
    if contract.field(spec.event_time).type != "timestamp":
        raise ConfigError(
            f"{path}: key 'event_time' names '{spec.event_time}', which is "
            f"{contract.field(spec.event_time).type} in {contract_file.name}, not timestamp"
        )
    for k in dict.fromkeys([*spec.dedup_keys, *spec.partition_by]):
        if k in fields and contract.field(k).pii:
            raise ConfigError(f"{contract_file}: field '{k}' is `pii: {contract.field(k).pii}` and {path.name} "
                              f"{'deduplicates' if k in spec.dedup_keys else 'partitions'} silver by it: silver "
                              "would hold only its protected form; choose another dedup key or partition column")  # fmt: skip
    for col in spec.partition_by:
        if col not in fields and col not in DERIVED_SILVER_COLUMNS:
            raise ConfigError(f"{path}: key 'partition_by' names '{col}', which is not a silver column")
    functions = {o.name: _import_function(path, i, o) for i, o in enumerate(spec.outputs)}
    suite = _load_suite(path, spec, contract, schemas_dir) if spec.quality else None
    return ResolvedSpec(spec, contract, functions, path, suite)


def _load_suite(path: Path, spec: PipelineSpec, contract: Contract, schemas_dir: Path) -> QualitySuite:
    suite_file = schemas_dir / spec.quality.suite
    if not suite_file.is_file():
        raise ConfigError(f"{path}: key 'quality.suite' names {suite_file}, which does not exist")
    suite = load_suite(suite_file)
    columns = {*contract.field_names, *DERIVED_SILVER_COLUMNS, *SILVER_EXTRA_COLUMNS}
    for rule in suite.rules:
        for column in rule.columns:
            if column not in columns:
                raise ConfigError(f"{suite_file}: rule '{rule.name}' names column '{column}', which silver does not have")
    return suite


def _import_function(path: Path, index: int, g: OutputSpec) -> Callable:
    key = f"outputs[{index}].function"
    module_name, _, attr = g.function.rpartition(".")
    try:
        fn = getattr(importlib.import_module(module_name), attr) if module_name else None
    except ImportError as exc:
        raise ConfigError(f"{path}: key '{key}': cannot import module '{module_name}' ({exc})") from None
    except AttributeError:
        fn = None
    if not callable(fn):
        raise ConfigError(f"{path}: key '{key}': '{g.function}' is not a function lakepipe can import")
    params = inspect.signature(fn).parameters
    lookups = g.rebuild.lookups if g.rebuild else {}
    for what, names in (("options", g.options), ("rebuild.lookups", lookups)):
        unknown = [o for o in names if o not in params]
        if unknown:
            raise ConfigError(f"{path}: key 'outputs[{index}].{what}': {g.function} takes no argument '{unknown[0]}'")
    return fn
