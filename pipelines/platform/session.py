"""The one SparkSession factory.

- Where a session already exists (Databricks, a notebook, a test fixture), it is returned unchanged.
- Under spark-submit or the pyspark shell the JVM is already up with the cluster's jars: only the SQL
  settings lakepipe relies on are applied.
- Otherwise (laptop, tests) a local session starts with Delta and the Kafka source taken as local files from
  `.jars/spark` (`spark.jars`); Spark's Ivy download is never used.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from pyspark.sql import SparkSession

from pipelines.model.config import Settings, SparkSettings
from pipelines.platform import local_metastore
from pipelines.platform.jars import PROJECT_DIR, jar_files, java_executable, local_fs_jar

log = logging.getLogger("lakepipe.session")

# Settings every lakepipe session needs, on any platform.
SQL_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.streaming.stateStore.providerClass": (
        "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
    ),
    "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
    "spark.databricks.delta.schema.autoMerge.enabled": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # A partitioned write (silver by event_date) keeps a file open per partition value instead of sorting each
    # task's rows by it first; beyond 8 values in one task it falls back to sorting.
    "spark.sql.maxConcurrentOutputFileWriters": "8",
    # Each streaming query's rates, latency, watermark and state size as Spark metrics (source
    # `spark.streaming.<query name>`), for whatever metrics sink the platform has.
    "spark.sql.streaming.metricsEnabled": "true",
    # What lakepipe caches is one micro-batch at a time (MEMORY_AND_DISK, dropped at the batch's end): compressing
    # its columns costs more than the memory saved. The compressor keeps statistics of every value first (a hash of
    # each string for its dictionary encoding): ~16% of silver's CPU on 2 cores, ~9% of a batch with it off.
    "spark.sql.inMemoryColumnarStorage.compressed": "false",
    # HotSpot does not compile a method of more than 8,000 bytes of bytecode (DontCompileHugeMethods): whole-stage
    # code larger than that ran interpreted (the silver parse's projection: 2-3 times its CPU). Above it, Spark
    # generates code per operator and expression instead (what Spark's own documentation suggests for HotSpot).
    "spark.sql.codegen.hugeMethodLimit": "8000",
    # Timestamps in Parquet as INT64 microseconds (the Parquet standard's type) instead of Spark's default, the
    # deprecated INT96: silver's append of 50,000 records -4% CPU, -14% with its dedup key written without a
    # dictionary (session 36). Readers see the same values; a table may mix files of both.
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    # Kafka credentials (`kafka.sasl.jaas.config`) are options of the Kafka source: redacted in plans and the UI.
    "spark.sql.redaction.options.regex": "(?i)url|jaas|password|secret|token",
}
# Spark's own redaction of its properties and environment (UI, event logs), with the JAAS line added.
REDACTION_REGEX = "(?i)secret|password|token|access[.]?key|jaas"


LOG4J2 = PROJECT_DIR / "infra" / "spark" / "log4j2.properties"


def log4j_option() -> str:
    """The JVM option naming lakepipe's quieter log4j configuration, when it is there (an installed wheel has
    no `infra/`: Spark's default logging then)."""
    return f"-Dlog4j2.configurationFile={LOG4J2} " if LOG4J2.is_file() else ""


# `lakepipe` commands (unless --verbose) set this: a JVM started here then writes Spark's log, and what Python
# workers print, to a file under <project>/.lakepipe/logs instead of the console.
JVM_LOG_ENV = "LAKEPIPE_JVM_LOG"  # the same name as pipelines.cli.JVM_LOG_ENV
KEPT_LOGS = 20
_log_file: Path | None = None


def log_file() -> Path | None:
    """The file this process's JVM logs to, if it logs to one."""
    return _log_file


def _new_log_file(env: Settings | None, app_name: str) -> Path | None:
    if os.environ.get(JVM_LOG_ENV) != "file" or env is None:
        return None
    folder = Path(env.resolve(".lakepipe/logs"))
    folder.mkdir(parents=True, exist_ok=True)
    for old in sorted(folder.glob("*.log"), key=lambda f: f.stat().st_mtime)[:-KEPT_LOGS]:
        old.unlink(missing_ok=True)
    return folder / f"{app_name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"


def jvm_output_to(spark: SparkSession, path: Path) -> None:
    """Send the JVM's own stdout and stderr (Python workers' prints reach the console through them) to `path`."""
    jvm = spark.sparkContext._jvm
    stream = jvm.java.io.PrintStream(jvm.java.io.FileOutputStream(str(path), True), True)
    jvm.java.lang.System.setOut(stream)
    jvm.java.lang.System.setErr(stream)

# Local mode only: Delta's snapshot state is rebuilt with 50 partitions by default, which makes every MERGE
# on a laptop take ~7 s instead of ~3 s (measured on 2 cores). Clusters keep Delta's default.
LOCAL_CONF = {
    "spark.databricks.delta.snapshotPartitions": "2",
    # Spark keeps 100 compiled code-generated classes by default; the queries of a pipeline and Delta's own
    # internal queries need more, and each miss compiles a class again (Janino, then the JIT): with 100, ~19
    # compilations a second on 2 cores with the clickstream pipeline running, ~1 a second with 5,000.
    "spark.sql.codegen.cache.maxEntries": "5000",
    # Spark's metrics in Prometheus' text format at <Spark UI>/metrics/prometheus/ (when the UI is on: a
    # continuous `lakepipe run`), named lakepipe_... rather than after each run's application id.
    "spark.metrics.conf.*.sink.prometheusServlet.class": "org.apache.spark.metrics.sink.PrometheusServlet",
    "spark.metrics.conf.*.sink.prometheusServlet.path": "/metrics/prometheus",
    "spark.metrics.namespace": "lakepipe",
}

# Local masters only, when `make jars` has built infra/localfs: Hadoop's local file system runs `chmod` for every
# file it writes and `readlink` twice for every rename (each Delta commit, each checkpoint file) without Hadoop's
# native library, ~50 child processes a second from a running pipeline at 4-6 ms of CPU each; these classes do
# the same with Java's file API. (Cluster executors are other JVMs without the jar: they keep Hadoop's.)
LOCAL_FS_CONF = {
    "spark.hadoop.fs.file.impl": "io.lakepipe.fs.NioLocalFileSystem",
    "spark.hadoop.fs.AbstractFileSystem.file.impl": "io.lakepipe.fs.NioLocalFs",
}


def get_spark(settings: Settings | SparkSettings | None = None, app_name: str = "lakepipe") -> SparkSession:
    """Return the active session, or build one for `settings` (see the module docstring).

    Given an environment's `Settings`, a JVM started here also gets the local catalog (`catalog.metastore:
    local`): Spark's Hive metastore client on the local metastore server, with its JDBC driver on the class path.
    """
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if on_databricks():  # the cluster's own session, as it is (a job's thread may not see it as active)
        return SparkSession.builder.getOrCreate()
    env = settings if isinstance(settings, Settings) else None
    catalog = env.metastore_conf() if env else {}
    settings = (env.spark if env else settings) or SparkSettings()
    builder = SparkSession.builder.appName(app_name)
    for key, value in SQL_CONF.items():
        builder = builder.config(key, value)
    builder = builder.config("spark.sql.shuffle.partitions", str(settings.shuffle_partitions))
    if not _jvm_already_launched():
        java_executable()  # a missing java is a one-line error here, not a py4j stack trace
        # Python workers (pandas UDFs, foreachBatch) must use this interpreter and its packages.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")  # pandas notes from PySpark internals
        global _log_file
        _log_file = _new_log_file(env, app_name)
        logging = f"-Dlakepipe.log.file={_log_file} -Dlakepipe.console.level=OFF " if _log_file else ""
        builder = (
            builder.master(settings.master)
            .config("spark.jars", ",".join(str(j) for j in jar_files("spark")))
            .config("spark.driver.memory", settings.driver_memory)
            .config("spark.ui.enabled", str(bool(settings.ui)).lower())
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.redaction.regex", REDACTION_REGEX)
            # A JVM outside UTC makes Delta re-verify the whole table state on every commit
            # (allFilesInCrc.verificationMode.forceOnNonUTC); timestamps follow the session time zone anyway.
            # Stopping a query that has run ~100 micro-batches killed each stream thread with a StackOverflowError
            # (a regular expression recursing over a long error message, 1 MB default stacks; seen on every stop of
            # the whole pipeline after 3 minutes): 16 MB stacks (reserved, used only as needed) end them cleanly.
            # The parallel collector: on 2 cores G1's concurrent work competes with the queries (the clickstream
            # pipeline at 1,250 events/s: 6% less CPU, gold p99 0.87, four pairs side by side; session 14).
            .config("spark.driver.extraJavaOptions", f"{log4j_option()}{logging}-Duser.timezone=UTC -Xss16m -XX:+UseParallelGC")
        )
        for key, value in LOCAL_CONF.items():
            builder = builder.config(key, value)
        class_path = []
        if settings.master.startswith("local") and (fs_jar := local_fs_jar()) is not None:
            class_path.append(fs_jar)
            for key, value in LOCAL_FS_CONF.items():
                builder = builder.config(key, value)
        if catalog:
            local_metastore.require(env)  # one line now, not a Hive stack trace at the first query
            class_path += [j for j in jar_files("metastore") if j.name.startswith(("derbyclient", "derbyshared"))]
            for key, value in catalog.items():
                builder = builder.config(key, value)
        if class_path:
            builder = builder.config("spark.driver.extraClassPath", os.pathsep.join(str(j) for j in class_path))
    for key, value in settings.conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(settings.log_level)
    if _log_file is not None:
        jvm_output_to(spark, _log_file)
    return spark


def stop_spark(spark: SparkSession) -> None:
    """Stop a session lakepipe owns; never the shared one a Databricks cluster or notebook provides."""
    if not on_databricks():
        spark.stop()


def on_databricks() -> bool:
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


@contextmanager
def spark_session(settings: Settings | SparkSettings | None = None, app_name: str = "lakepipe") -> Iterator[SparkSession]:
    """`get_spark` for the length of a `with` block, then `stop_spark`, however the block ends, when the session
    was started here: one that was active before (a notebook's, a test's, a job's that calls the CLI's `main`)
    is left running for its owner."""
    owned = SparkSession.getActiveSession() is None
    spark = get_spark(settings, app_name)
    try:
        yield spark
    finally:
        if owned:
            stop_spark(spark)


@contextmanager
def session_conf(spark: SparkSession, key: str, value: str) -> Iterator[None]:
    """`key` set to `value` in the session for the block, then as it was (queries start on a copy of the session's
    settings, so a query started inside keeps the value)."""
    with session_confs(spark, {key: value}):
        yield


@contextmanager
def session_confs(spark: SparkSession, conf: Mapping[str, str], strict: bool = True) -> Iterator[None]:
    """Every setting of `conf` in the session for the block, then each as it was (`session_conf`). Not `strict`: a
    setting the session refuses (a static one, or one a platform keeps to itself, as serverless Databricks does) is
    named in a warning and left as it is, instead of failing the block."""
    before = {}
    try:
        for key, value in conf.items():
            previous = spark.conf.get(key, None)
            try:
                spark.conf.set(key, value)
            except Exception as exc:  # noqa: BLE001 - whatever the platform raises; strict callers get it as it is
                if strict:
                    raise
                log.warning("Spark setting %s=%s was refused here, left as it is (%s)", key, value,
                            str(exc).splitlines()[0][:200])  # fmt: skip
                continue
            before[key] = previous
        yield
    finally:
        for key, value in before.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def _jvm_already_launched() -> bool:
    """True under spark-submit / pyspark, where the JVM (and its classpath) exists before Python runs."""
    return "PYSPARK_GATEWAY_PORT" in os.environ
