"""The project model: every pipeline of an environment with its spec, contract, suite, output functions and
tables, loaded and checked once. The CLI, jobs, notebooks, the bench and the engine all receive a `Project`.

    project = load_project(load_settings("local"))
    project.pipeline("clickstream").layout.silver.path
    project.table("payments_fraud_alerts").path
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pyspark.sql import DataFrame

from pipelines.errors import ConfigError, TableNotFoundError
from pipelines.model import durations
from pipelines.model.config import Settings
from pipelines.model.contract import Contract
from pipelines.model.layout import PipelineLayout, Table, backfills_table, events_table, pipeline_layout, quality_table
from pipelines.model.spec import OutputSpec, PipelineSpec, load_spec, resolve_spec
from pipelines.quality.suite import QualitySuite

POLLING_DELAY = "spark.sql.streaming.pollingDelay"  # how long a query that found nothing new waits to look again


@dataclass(frozen=True)
class Pipeline:
    """A pipeline ready to run: its spec, contract, output functions, topic and table layout."""

    spec: PipelineSpec
    contract: Contract
    functions: Mapping[str, Callable[..., DataFrame]]
    topic: str
    watermark: str
    layout: PipelineLayout
    sources: Mapping[str, PipelineLayout]  # pipeline name -> layout, of every pipeline that outputs read
    suite: QualitySuite | None = None
    max_bytes_per_trigger: str | None = None  # of each micro-batch reading a Delta table (environment's streaming)
    idle_poll_interval: str | None = None  # the environment's streaming.idle_poll_interval
    bronze_with_silver: bool = False  # the environment's streaming.bronze_with_silver: one query writes both

    @property
    def name(self) -> str:
        return self.spec.name

    def output_rows(self, o: OutputSpec, events: DataFrame) -> DataFrame:
        return self.functions[o.name](events, **o.options)

    def source_layout(self, o: OutputSpec) -> PipelineLayout:
        """The layout of the pipeline whose silver rows output `o` reads."""
        source = o.rebuild.source if o.rebuild else None
        return self.sources[source] if source else self.layout

    def query_conf(self) -> dict[str, str]:
        """The Spark SQL settings this pipeline's streaming queries start with: the environment's idle poll interval,
        then the spec's `spark_conf` (which may set it too)."""
        conf = {}
        if self.idle_poll_interval is not None:
            conf[POLLING_DELAY] = f"{round(durations.seconds(self.idle_poll_interval) * 1000)}ms"
        return {**conf, **self.spec.spark_conf}

    def source_pipelines(self) -> set[str]:
        """The other pipelines whose tables this one's outputs read."""
        return set(self.sources) - {self.name}

    def silver_stats_columns(self) -> list[str]:
        """The columns of silver whose per-file statistics lakepipe's own reads of it use: the event time (the
        dedup lookup, backfills), the dedup keys and the keys of the rebuilds of silver (the SCD refresh). Others
        are not worth their cost on every append (a third of a 50,000-row clickstream append)."""
        keys = [o.rebuild.key for o in self.spec.outputs if o.rebuild and not o.rebuild.source]
        columns = [self.spec.event_time, *self.spec.dedup_keys, *keys]
        return [c for c in dict.fromkeys(columns) if c not in self.layout.silver.partition_by]

    def lookup_paths(self, o: OutputSpec) -> dict[str, str]:
        """Argument -> table path of each lookup of rebuild output `o`."""
        out = {}
        for arg in o.rebuild.lookups if o.rebuild else ():
            pipeline, table = o.rebuild.lookup(arg)
            out[arg] = self.sources[pipeline].table(table).path
        return out


@dataclass(frozen=True)
class Project:
    """Every pipeline of one environment, by name, and the lookups across them."""

    settings: Settings
    pipelines: Mapping[str, Pipeline]

    @property
    def names(self) -> list[str]:
        return list(self.pipelines)

    def pipeline(self, name: str) -> Pipeline:
        if name not in self.pipelines:
            path = self.settings.specs_dir / f"{name}.yaml"
            known = ", ".join(self.pipelines) or "none"
            raise ConfigError(f"no pipeline '{name}': there is no spec {path} (pipelines: {known})")
        return self.pipelines[name]

    def topic(self, name: str) -> str:
        """The topic pipeline `name` reads in this environment."""
        return self.pipeline(name).topic

    @property
    def tables(self) -> list[Table]:
        """Every table of every pipeline, then the shared audit tables (quality results, backfills, event log)."""
        tables = {t.name: t for p in self.pipelines.values() for t in p.layout.tables if t.pipeline != "*"}
        return [*tables.values(), quality_table(self.settings), backfills_table(self.settings), events_table(self.settings)]

    def table(self, name: str) -> Table:
        tables = {t.name: t for t in self.tables}
        if name not in tables:
            raise TableNotFoundError(f"no table '{name}': `lakepipe tables` lists them ({', '.join(sorted(tables))})")
        return tables[name]

    def owner(self, name: str) -> Pipeline:
        """The pipeline named `name`, or owning the silver or quarantine table `name`."""
        for p in self.pipelines.values():
            if name in (p.name, p.layout.silver.name, p.layout.quarantine.name):
                return p
        raise TableNotFoundError(f"no pipeline, silver or quarantine table named '{name}' (`lakepipe tables` lists them)")

    @property
    def quality_table(self) -> Table:
        return quality_table(self.settings)

    @property
    def backfills_table(self) -> Table:
        return backfills_table(self.settings)


def load_project(settings: Settings, names: list[str] | None = None) -> Project:
    """Load and check the pipelines `names` (default: every spec) and those their outputs read."""
    wanted = list(settings.pipeline_names() if names is None else names)
    pipelines: dict[str, Pipeline] = {}
    while wanted:
        name = wanted.pop(0)
        if name not in pipelines:
            pipelines[name] = _load_pipeline(settings, name)
            wanted += sorted(pipelines[name].source_pipelines())
    return Project(settings, dict(sorted(pipelines.items())))


def check_project(settings: Settings) -> dict[str, str | None]:
    """Load every spec, contract and gold function without starting Spark: name -> problem or None."""
    out: dict[str, str | None] = {}
    for name in sorted(set(settings.pipeline_names()) | set(settings.file.pipelines)):
        try:
            _load_pipeline(settings, name)
            out[name] = None
        except ConfigError as exc:
            out[name] = str(exc)
    return out


def with_env_options(
    spec: PipelineSpec, functions: Mapping[str, Callable], options: Mapping[str, Mapping[str, str]], where: str
) -> PipelineSpec:  # fmt: skip
    """`spec` with the environment's options of its outputs (`PipelineSettings.options`) in place of its own of the
    same name; `where` names the environment's key in errors: an output the spec has not, an option its function
    does not take."""
    if not options:
        return spec
    by_name = {o.name: o for o in spec.outputs}
    for output, given in options.items():
        if output not in by_name:
            raise ConfigError(f"{where}.{output}' names no output of pipeline {spec.name} ({', '.join(by_name)})")
        params = inspect.signature(functions[output]).parameters
        for option in given:
            if option not in params:
                raise ConfigError(f"{where}.{output}.{option}': {by_name[output].function} takes no argument '{option}'")
    outputs = tuple(
        dataclasses.replace(o, options={**o.options, **options[o.name]}) if o.name in options else o for o in spec.outputs
    )
    return dataclasses.replace(spec, outputs=outputs)


def _load_pipeline(settings: Settings, name: str) -> Pipeline:
    """Load and check spec `name` (and its contract and output functions) for this environment. The project's
    folder (the conf folder's parent) goes last on the import path: a project of one's own (`lakepipe init`)
    keeps its gold functions beside its conf folder."""
    if str(settings.project_dir) not in sys.path:
        sys.path.append(str(settings.project_dir))
    resolved = resolve_spec(settings.spec_path(name), settings.schemas_dir)
    spec = with_env_options(resolved.spec, resolved.functions, settings.pipeline(name).options, f"{settings.source}: key "
                            f"'pipelines.{name}.options")  # fmt: skip
    layout = pipeline_layout(settings, spec)
    topic = settings.pipeline(name).topic or spec.topic  # the environment may override the topic
    watermark = spec.watermark or settings.streaming.watermark
    sources = {name: layout}
    for i, o in enumerate(spec.outputs):
        if not o.rebuild:
            continue
        for key, other in o.rebuild.reads:
            if other not in sources:
                try:
                    sources[other] = pipeline_layout(settings, load_spec(settings.spec_path(other)))
                except ConfigError:
                    raise ConfigError(f"{resolved.source}: key 'outputs[{i}].rebuild.{key}' names pipeline '{other}', "
                                      "which has no spec") from None  # fmt: skip
        for arg, ref in o.rebuild.lookups.items():
            pipeline, table = o.rebuild.lookup(arg)
            if sources[pipeline].table(table) is None:
                raise ConfigError(f"{resolved.source}: key 'outputs[{i}].rebuild.lookups.{arg}' names '{ref}', which is no table")
    names = {t.name for t in layout.tables} | {t.layer for t in layout.tables}
    for key in ("auto_compact", "optimize_write"):
        for entry in getattr(spec.files, key):
            if entry not in names:
                raise ConfigError(f"{resolved.source}: key 'files.{key}' names '{entry}', which is neither a layer nor a "
                                  f"table of this pipeline ({', '.join(sorted(names))})")  # fmt: skip
    return Pipeline(spec, resolved.contract, resolved.functions, topic, watermark, layout, sources, resolved.suite,
                    settings.streaming.max_bytes_per_trigger, settings.streaming.idle_poll_interval,
                    settings.streaming.bronze_with_silver)

