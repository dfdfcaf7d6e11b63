"""Environment configuration: `conf/<env>.yaml` loaded into frozen, typed settings.

The environment is picked by `--env NAME` or `LAKEPIPE_ENV` (default `local`); the folder by `--conf-dir` or
`LAKEPIPE_CONF_DIR` (default `./conf`). Relative paths in the file are relative to the project folder that
holds `conf/`. Values may take secrets from the environment as `${VAR}`; those, and any key that looks like
a secret, are masked whenever the configuration is printed.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.errors import ConfigError
from pipelines.model import durations, sizes
from pipelines.model.typed_config import build, read_yaml, refers_to_env

DEFAULT_ENV = "local"
MASK = "****"
_SECRET_KEY = re.compile(r"password|secret|jaas|token|credential|api[._-]?key", re.IGNORECASE)


def _empty() -> Mapping[str, str]:
    return types.MappingProxyType({})


SASL_PROTOCOLS = ("SASL_SSL", "SASL_PLAINTEXT")
SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


@dataclass(frozen=True)
class KafkaSecurity:
    """How clients authenticate to a secured broker: SASL (SCRAM or PLAIN) over TLS. One set of credentials for
    every client lakepipe runs (Spark's Kafka source, the simulators, the admin client); take them from the
    environment (`password: ${KAFKA_PASSWORD}`). `ca_file` is a PEM file of the CA that signed the broker's
    certificate (default: the system's trusted CAs); on a cluster it must be readable at that path on every node."""

    username: str
    password: str
    protocol: str = "SASL_SSL"
    mechanism: str = "SCRAM-SHA-512"
    ca_file: str | None = None

    def __post_init__(self) -> None:
        if self.protocol not in SASL_PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(SASL_PROTOCOLS)}, not {self.protocol!r}")
        if self.mechanism not in SASL_MECHANISMS:
            raise ValueError(f"mechanism must be one of {', '.join(SASL_MECHANISMS)}, not {self.mechanism!r}")
        if not self.username or not self.password:
            raise ValueError("username and password must not be empty")

    def __repr__(self) -> str:  # never the password, whoever prints the settings
        return f"KafkaSecurity(username={self.username!r}, password={MASK!r}, protocol={self.protocol!r}, " \
               f"mechanism={self.mechanism!r}, ca_file={self.ca_file!r})"


@dataclass(frozen=True)
class KafkaSettings:
    """Where the events are and how Spark and the Python clients connect to it."""

    bootstrap_servers: str = "localhost:9092"
    topic_partitions: int = 2
    starting_offsets: str = "earliest"
    max_offsets_per_trigger: int | None = None
    fail_on_data_loss: bool = True
    # Java client settings for the Spark Kafka source, passed as `kafka.<key>` (SASL/SSL go here).
    spark_options: Mapping[str, str] = field(default_factory=_empty)
    # librdkafka settings for the Python producer and admin client (SASL/SSL go here too).
    client_options: Mapping[str, str] = field(default_factory=_empty)
    # A secured broker (SASL_SSL): credentials and CA for every client; `spark_options`/`client_options` still
    # override single settings.
    security: KafkaSecurity | None = None


@dataclass(frozen=True)
class LakeSettings:
    """Where tables and checkpoints live. One root holds all state by default."""

    root: str = "lakehouse"
    tables: str | None = None
    checkpoints: str | None = None


@dataclass(frozen=True)
class StreamingSettings:
    trigger_interval: str = "10 seconds"
    watermark: str = "10 minutes"
    # The most a micro-batch of a query reading a Delta table (silver from bronze, gold from silver) admits, in
    # bytes of that table's files (Delta's soft `maxBytesPerTrigger`: a file larger than this still goes in whole).
    # Bounds the memory of a batch that catches up on a backlog; null: Delta's own bound alone, 1,000 files.
    max_bytes_per_trigger: str | None = "16m"
    # How long a query whose source had nothing new waits before it looks again (Spark's
    # `spark.sql.streaming.pollingDelay`), which matters with a trigger_interval of 0: Spark's 10 ms made the five
    # idle clickstream queries use ~0.46 of a core (0.14 at 100 ms). Adds up to this much latency per layer when idle;
    # null: Spark's own.
    idle_poll_interval: str | None = "100ms"
    # One query reads Kafka and writes both bronze and silver (`pipelines.engine.bronze_silver`): silver a micro-batch
    # sooner and one query fewer; bronze's rows readable with the batch's bronze commit. false: a bronze query, and
    # a silver query reading bronze's table.
    bronze_with_silver: bool = True

    def __post_init__(self) -> None:
        for name in ("trigger_interval", "watermark"):
            durations.seconds(getattr(self, name))  # a ValueError names the bad value
        if self.idle_poll_interval is not None and durations.seconds(self.idle_poll_interval) < 0.001:
            raise ValueError(f"idle_poll_interval: '{self.idle_poll_interval}' is under 1 ms: an idle query would ask its "
                             "source for new data without pause")  # fmt: skip
        if self.max_bytes_per_trigger is not None:
            try:
                sizes.size_bytes(self.max_bytes_per_trigger)
            except ValueError as exc:
                raise ValueError(f"max_bytes_per_trigger: {exc}") from None


@dataclass(frozen=True)
class SparkSettings:
    master: str = "local[2]"
    shuffle_partitions: int = 2  # one per core of local[2]: each task of a stateful stage loads and commits its state
    driver_memory: str = "2g"
    ui: bool | None = None  # Spark's web UI; by default on for a continuous `lakepipe run` only
    log_level: str = "WARN"
    conf: Mapping[str, str] = field(default_factory=_empty)


@dataclass(frozen=True)
class LocalBrokerSettings:
    """The single-node KRaft broker that `lakepipe up` runs on this machine (loopback only)."""

    host: str = "127.0.0.1"
    port: int = 9092
    controller_port: int = 9093
    heap: str = "512m"
    state_dir: str = ".lakepipe/kafka"
    # A SASL_SSL listener on this port beside the plain one (SCRAM over TLS, a CA of its own made with the JDK's
    # keytool under state_dir/tls); the user it accepts is kafka.security's. Off when absent.
    sasl_ssl_port: int | None = None


@dataclass(frozen=True)
class LocalCdcSettings:
    """The local change-data-capture source that `lakepipe cdc up` runs on this machine (loopback only):
    PostgreSQL with a small shop database, and Kafka Connect (standalone) with the Debezium PostgreSQL
    connector writing the shop's changes to the local broker, on topics `<topic_prefix>.public.<table>`."""

    postgres_port: int = 55432
    database: str = "shop"
    user: str = "lakepipe"
    password: str = "lakepipe"
    connect_port: int = 8083
    topic_prefix: str = "shop"
    value_schemas: bool = False  # JsonConverter `schemas.enable` for values: {"schema": ..., "payload": ...} when true
    heap: str = "512m"
    state_dir: str = ".lakepipe/cdc"
    # How often Connect records how far it has streamed (offset.flush.interval.ms): after a crash, the connector
    # sends again what it streamed since (the pipelines take the copies as exact duplicates).
    offset_flush_ms: int = 1000


@dataclass(frozen=True)
class EventLogSettings:
    """The event log (`pipeline_events`): one row per micro-batch of every query, and per start, stop, failure."""

    enabled: bool = True
    flush_interval: str = "30 seconds"  # how often the collected rows are appended (one commit for all queries)
    retention: str = "30 days"  # rows older than this are deleted when a run starts

    def __post_init__(self) -> None:
        for name in ("flush_interval", "retention"):
            if durations.seconds(getattr(self, name)) <= 0:  # a ValueError names a bad value
                raise ValueError(f"event_log.{name} must be positive, not {getattr(self, name)!r}")


@dataclass(frozen=True)
class QualityResultsSettings:
    """The quality_results table (one row per rule per checked micro-batch of every silver table)."""

    retention: str = "90 days"  # rows older than this are deleted by `lakepipe maintain`

    def __post_init__(self) -> None:
        if durations.seconds(self.retention) <= 0:  # a ValueError names a bad value
            raise ValueError(f"quality_results.retention must be positive, not {self.retention!r}")


@dataclass(frozen=True)
class PiiSettings:
    """How contract fields marked `pii` are protected (see pipelines/engine/pii.py)."""

    salt_env: str = "LAKEPIPE_PII_SALT"  # the environment variable holding the secret salt of `pii: hash` fields
    quarantine_raw_pii: bool = False  # true: quarantine keeps records as they came; false: their pii fields protected

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.salt_env):
            raise ValueError(f"pii.salt_env must name an environment variable, not {self.salt_env!r}")


@dataclass(frozen=True)
class CatalogSettings:
    """Every table registered by name in a catalog: `<catalog.>schema.table`, a schema per layer.

    `metastore: local` runs Spark's built-in Hive metastore client against the local metastore database
    (a Derby network server that `lakepipe up` starts; its database lives in the lake root), so that every
    Spark application on this machine shares the names at once. `metastore: session` leaves the catalog to
    the platform's session (Unity Catalog on Databricks, a cluster's Hive metastore): set `name` to the
    catalog for three-part names there.
    """

    enabled: bool = True
    metastore: str = "local"  # local | session
    name: str = ""  # the catalog of three-part names (Unity Catalog); empty: the session's current catalog
    schema_prefix: str = "lakepipe"  # schemas <prefix>_bronze, <prefix>_silver, <prefix>_quarantine, ...

    def __post_init__(self) -> None:
        if self.metastore not in ("local", "session"):
            raise ValueError(f"catalog.metastore must be 'local' or 'session', not {self.metastore!r}")
        for key in ("name", "schema_prefix"):
            value = getattr(self, key)
            if value and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
                raise ValueError(f"catalog.{key} must be letters, digits and _ (a SQL name), not {value!r}")
        if not self.schema_prefix:
            raise ValueError("catalog.schema_prefix must not be empty")


@dataclass(frozen=True)
class LocalMetastoreSettings:
    """The local catalog's metastore database server (Apache Derby, network mode) that `lakepipe up` runs."""

    host: str = "127.0.0.1"
    port: int = 1527
    heap: str = "256m"
    state_dir: str = ".lakepipe/metastore"  # its pid file and logs; the database itself is in the lake root


@dataclass(frozen=True)
class LocalClusterSettings:
    """The Spark standalone cluster that `lakepipe cluster up` runs on this machine: a master and workers, each
    its own JVM from PySpark's own jars (see `pipelines.platform.local_cluster`)."""

    host: str = "127.0.0.1"
    port: int = 7077
    webui_port: int = 8080
    workers: int = 2
    worker_cores: int = 1
    worker_memory: str = "2g"
    executor_memory: str = "1g"
    state_dir: str = ".lakepipe/cluster"


@dataclass(frozen=True)
class PipelineSettings:
    """Per-environment overrides of a pipeline spec."""

    topic: str | None = None
    # output name -> options that replace the spec's of the same name there (e.g. `clickstream_sessions: {state:
    # jvm}` in an environment of scheduled `--once` runs); the output's function must take each
    options: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class EnvFile:
    """The keys a `conf/<env>.yaml` file may have."""

    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    lake: LakeSettings = field(default_factory=LakeSettings)
    streaming: StreamingSettings = field(default_factory=StreamingSettings)
    spark: SparkSettings = field(default_factory=SparkSettings)
    local_broker: LocalBrokerSettings = field(default_factory=LocalBrokerSettings)
    local_cdc: LocalCdcSettings = field(default_factory=LocalCdcSettings)
    event_log: EventLogSettings = field(default_factory=EventLogSettings)
    quality_results: QualityResultsSettings = field(default_factory=QualityResultsSettings)
    pii: PiiSettings = field(default_factory=PiiSettings)
    catalog: CatalogSettings = field(default_factory=CatalogSettings)
    local_metastore: LocalMetastoreSettings = field(default_factory=LocalMetastoreSettings)
    local_cluster: LocalClusterSettings = field(default_factory=LocalClusterSettings)
    schemas_dir: str = "schemas"
    specs_dir: str = "conf/pipelines"
    pipelines: Mapping[str, PipelineSettings] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    """A resolved environment: the file's settings plus where they came from."""

    env: str
    source: Path
    project_dir: Path
    file: EnvFile
    secret_keys: frozenset[str] = frozenset()

    @property
    def kafka(self) -> KafkaSettings:
        return self.file.kafka

    @property
    def streaming(self) -> StreamingSettings:
        return self.file.streaming

    @property
    def spark(self) -> SparkSettings:
        return self.file.spark

    def with_spark(self, **changes: Any) -> Settings:
        """These settings with some Spark settings changed (e.g. `ui=True` for a continuous run)."""
        return dataclasses.replace(self, file=dataclasses.replace(self.file, spark=dataclasses.replace(self.file.spark, **changes)))

    @property
    def quality_results(self) -> QualityResultsSettings:
        return self.file.quality_results

    @property
    def pii(self) -> PiiSettings:
        return self.file.pii

    @property
    def catalog(self) -> CatalogSettings:
        return self.file.catalog

    @property
    def local_metastore(self) -> LocalMetastoreSettings:
        return self.file.local_metastore

    @property
    def local_cluster(self) -> LocalClusterSettings:
        return self.file.local_cluster

    @property
    def local_catalog(self) -> bool:
        """Whether tables are registered in lakepipe's local metastore (else in the session's own catalog)."""
        return self.catalog.enabled and self.catalog.metastore == "local"

    @property
    def metastore_db(self) -> str:
        """The local metastore's database folder: in the lake root, beside the tables it names."""
        return _join(self.lake_root, "_catalog/metastore_db")

    def metastore_conf(self) -> dict[str, str]:
        """Spark settings of the local catalog: the built-in Hive metastore client, over JDBC to the local
        metastore server (see `pipelines.platform.local_metastore`); none unless `local_catalog`. The session
        factory applies them only to a JVM it starts itself (elsewhere the platform's catalog rules)."""
        if not self.local_catalog:
            return {}
        if "://" in self.lake_root or self.lake_root.startswith("dbfs:"):
            raise ConfigError(f"{self.source}: catalog.metastore 'local' keeps the catalog beside a lake on this "
                              f"machine, but lake.root is {self.lake_root}: set catalog.metastore: session")  # fmt: skip
        m = self.local_metastore
        return {
            "spark.sql.catalogImplementation": "hive",
            "spark.sql.warehouse.dir": _join(self.lake_root, "_catalog/warehouse"),
            "spark.hadoop.javax.jdo.option.ConnectionURL": f"jdbc:derby://{m.host}:{m.port}/{self.metastore_db};create=true",
            "spark.hadoop.javax.jdo.option.ConnectionDriverName": "org.apache.derby.jdbc.ClientDriver",
            "spark.hadoop.datanucleus.schema.autoCreateAll": "true",
            "spark.hadoop.hive.metastore.schema.verification": "false",
            # An unreachable metastore fails the first catalog call at once instead of after 10 retries 2 s apart.
            "spark.hadoop.hive.hmshandler.retry.attempts": "1",
        }

    @property
    def local_broker(self) -> LocalBrokerSettings:
        return self.file.local_broker

    @property
    def local_cdc(self) -> LocalCdcSettings:
        return self.file.local_cdc

    @property
    def event_log(self) -> EventLogSettings:
        return self.file.event_log

    @property
    def lake_root(self) -> str:
        return self.resolve(self.file.lake.root)

    @property
    def tables_root(self) -> str:
        return self.resolve(self.file.lake.tables) if self.file.lake.tables else _join(self.lake_root, "tables")

    @property
    def checkpoints_root(self) -> str:
        lake = self.file.lake
        return self.resolve(lake.checkpoints) if lake.checkpoints else _join(self.lake_root, "checkpoints")

    @property
    def schemas_dir(self) -> Path:
        return Path(self.resolve(self.file.schemas_dir))

    @property
    def specs_dir(self) -> Path:
        return Path(self.resolve(self.file.specs_dir))

    def pipeline_names(self) -> list[str]:
        """Every pipeline with a spec in the specs folder."""
        return sorted(p.stem for p in self.specs_dir.glob("*.yaml"))

    def spec_path(self, name: str) -> Path:
        path = self.specs_dir / f"{name}.yaml"
        if not path.is_file():
            known = ", ".join(self.pipeline_names()) or "none"
            raise ConfigError(f"no pipeline '{name}': there is no spec {path} (pipelines: {known})")
        return path

    def pipeline(self, name: str) -> PipelineSettings:
        """This environment's overrides for pipeline `name` (none by default)."""
        return self.file.pipelines.get(name, PipelineSettings())

    def resolve(self, path: str) -> str:
        """A path from the file: URIs and absolute paths as they are, others under the project folder."""
        if "://" in path or path.startswith(("dbfs:", "/")):
            return path
        return str((self.project_dir / path).resolve())

    def to_dict(self, masked: bool = True) -> dict[str, Any]:
        """The resolved configuration as plain data, secrets masked unless `masked` is False."""
        data = _plain(self.file)
        data["lake"] = {
            "root": self.lake_root,
            "tables": self.tables_root,
            "checkpoints": self.checkpoints_root,
        }
        data["schemas_dir"] = str(self.schemas_dir)
        data["specs_dir"] = str(self.specs_dir)
        if masked:
            if data["kafka"]["security"] is not None:
                data["kafka"]["security"]["password"] = MASK
            for section in ("spark_options", "client_options"):
                opts = data["kafka"][section]
                for k in opts:
                    if f"kafka.{section}.{k}" in self.secret_keys or _SECRET_KEY.search(k):
                        opts[k] = MASK
            conf = data["spark"]["conf"]
            for k in conf:
                if f"spark.conf.{k}" in self.secret_keys or _SECRET_KEY.search(k):
                    conf[k] = MASK
        return {"env": self.env, "source": str(self.source), **data}


def load_settings(env: str | None = None, conf_dir: str | Path | None = None) -> Settings:
    """Load `<conf_dir>/<env>.yaml`, with `env` and `conf_dir` defaulting from the environment."""
    env = env or os.environ.get("LAKEPIPE_ENV") or DEFAULT_ENV
    conf = Path(conf_dir or os.environ.get("LAKEPIPE_CONF_DIR") or "conf").resolve()
    path = conf / f"{env}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in conf.glob("*.yaml")) if conf.is_dir() else []
        hint = f"environments in {conf}: {', '.join(available)}" if available else f"{conf} has no *.yaml files"
        raise ConfigError(f"{path}: no such environment file ({hint}); pick one with --env NAME")
    raw = read_yaml(path)
    if raw is None:
        raw = {}
    file = _with_ca_file_resolved(build(EnvFile, raw, source=str(path), key=""), conf.parent)
    return Settings(
        env=env, source=path, project_dir=conf.parent, file=file, secret_keys=frozenset(_env_paths(raw))
    )


def _with_ca_file_resolved(file: EnvFile, project_dir: Path) -> EnvFile:
    """A relative `kafka.security.ca_file` is under the project folder (as every path of the file is), resolved once
    here because Spark's and librdkafka's clients take it as it is."""
    sec = file.kafka.security
    if sec is None or not sec.ca_file or Path(sec.ca_file).is_absolute():
        return file
    resolved = dataclasses.replace(sec, ca_file=str((project_dir / sec.ca_file).resolve()))
    return dataclasses.replace(file, kafka=dataclasses.replace(file.kafka, security=resolved))


def _env_paths(data: Any, prefix: str = "") -> list[str]:
    """Key paths whose raw values refer to an environment variable (these are masked when printed)."""
    if isinstance(data, dict):
        out: list[str] = []
        for k, v in data.items():
            out += _env_paths(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    return [prefix] if refers_to_env(data) else []


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _join(root: str, name: str) -> str:
    return root.rstrip("/") + "/" + name
