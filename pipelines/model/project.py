"""The project model: every pipeline of an environment with its spec, contract, suite, gold functions and
tables, loaded and checked once. The CLI, jobs, notebooks, the bench and the engine all receive a `Project`.

    project = load_project(load_settings("local"))
    project.pipeline("clickstream").layout.silver.path
    project.table("payments_fraud_alerts").path
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pyspark.sql import DataFrame

from pipelines.errors import ConfigError, TableNotFoundError
from pipelines.model.config import Settings
from pipelines.model.contract import Contract
from pipelines.model.layout import PipelineLayout, Table, pipeline_layout
from pipelines.model.spec import GoldSpec, PipelineSpec, load_spec, resolve_spec
from pipelines.quality.suite import QualitySuite


@dataclass(frozen=True)
class Pipeline:
    """A pipeline ready to run: its spec, contract, gold functions, topic and table layout."""

    spec: PipelineSpec
    contract: Contract
    functions: Mapping[str, Callable[..., DataFrame]]
    topic: str
    watermark: str
    layout: PipelineLayout
    sources: Mapping[str, PipelineLayout]  # rebuild outputs: gold name -> layout of the pipeline read
    suite: QualitySuite | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def gold_rows(self, g: GoldSpec, events: DataFrame) -> DataFrame:
        return self.functions[g.name](events, **g.options)

    def source_layout(self, g: GoldSpec) -> PipelineLayout:
        """The layout of the pipeline whose silver rows output `g` reads."""
        return self.sources[f"{g.name}:{g.source}"] if g.source else self.layout

    def source_pipelines(self) -> set[str]:
        """The other pipelines whose tables this one's outputs read."""
        return {key.split(":")[1] for key in self.sources} - {self.name}

    def lookup_paths(self, g: GoldSpec) -> dict[str, str]:
        """Argument -> table path of each lookup of rebuild output `g`."""
        out = {}
        for arg, ref in g.lookups.items():
            pipeline, table = ref.split(".")
            layout = self.layout if pipeline == self.name else self.sources[f"{g.name}:{pipeline}"]
            out[arg] = layout.table(table).path
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
        """Every table of every pipeline, once each (the shared quality table once)."""
        return list({t.name: t for p in self.pipelines.values() for t in p.layout.tables}.values())

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
        return pipeline_layout(self.settings, "*", "-", ()).quality


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


def _load_pipeline(settings: Settings, name: str) -> Pipeline:
    """Load and check spec `name` (and its contract and gold functions) for this environment."""
    resolved = resolve_spec(settings.spec_path(name), settings.schemas_dir)
    spec = resolved.spec
    layout = _layout_of(settings, spec)
    topic = settings.pipeline(name).topic or spec.topic  # the environment may override the topic
    watermark = spec.watermark or settings.streaming.watermark
    sources = {}
    for i, g in enumerate(spec.gold):
        refs = [(f"gold[{i}].source", g.source)] if g.source else []
        refs += [(f"gold[{i}].lookups.{arg}", ref.split(".")[0]) for arg, ref in g.lookups.items()]
        for key, other in refs:
            if other == name:
                other_layout = layout
            else:
                try:
                    other_layout = _layout_of(settings, load_spec(settings.spec_path(other)))
                except ConfigError:
                    raise ConfigError(f"{resolved.source}: key '{key}' names pipeline '{other}', which has no spec") from None
            sources[f"{g.name}:{other}"] = other_layout
        for arg, ref in g.lookups.items():
            if sources[f"{g.name}:{ref.split('.')[0]}"].table(ref.split(".")[1]) is None:
                raise ConfigError(f"{resolved.source}: key 'gold[{i}].lookups.{arg}' names '{ref}', which is no table")
    return Pipeline(spec, resolved.contract, resolved.functions, topic, watermark, layout, sources, resolved.suite)


def _layout_of(settings: Settings, spec: PipelineSpec) -> PipelineLayout:
    return pipeline_layout(settings, spec.name, spec.events_table, tuple((g.name, g.layer) for g in spec.gold))
