"""The local change-data-capture source: PostgreSQL with a shop database, and Debezium on Kafka Connect.

`lakepipe cdc up` starts (or reuses) two processes on loopback, with their state under `local_cdc.state_dir`:
- PostgreSQL 15 (Debian's server binaries; run as the `postgres` user when started as root, which initdb
  requires) with `wal_level=logical`, a `shop` database holding `customers` and `orders`, and a user that may
  replicate;
- a Kafka Connect worker in standalone mode (its own JVM, jars from `.jars/connect`) with the Debezium
  PostgreSQL connector (`.jars/debezium`, `pgoutput`), which snapshots the tables and then streams every
  committed change to the local broker, on topics `<topic_prefix>.public.customers` and `...orders`.
`lakepipe cdc down` stops both (the database's data stays); `lakepipe cdc status` says what runs.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pwd
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import LakepipeError, PortInUseError
from pipelines.model.config import Settings
from pipelines.platform import kafka_admin
from pipelines.platform.jars import PROJECT_DIR, jar_files, jars_root, java_executable
from pipelines.platform.local_broker import bootstrap
from pipelines.platform.processes import port_busy, running_pid, terminate

PG_BIN_DIRS = (Path("/usr/lib/postgresql/15/bin"), Path("/usr/lib/postgresql/16/bin"), Path("/usr/lib/postgresql/17/bin"))
CONNECTOR = "shop-postgres"
TABLES = ("customers", "orders")
SCHEMA_SQL = PROJECT_DIR / "infra" / "cdc" / "shop.sql"


class CdcError(LakepipeError):
    pass


@dataclass(frozen=True)
class CdcPaths:
    state: Path

    @property
    def pg_home(self) -> Path:
        """Where the database's files live: the state folder, unless PostgreSQL runs as `postgres` (started as
        root) and that user cannot reach it (e.g. a checkout in a private 0700 temporary folder); then a folder
        of the state's own under the `postgres` user's home."""
        return _pg_home(self.state)

    @property
    def pg_data(self) -> Path:
        return self.pg_home / "postgres"

    @property
    def pg_log(self) -> Path:
        return self.pg_home / "postgres.log"

    @property
    def connect_pid(self) -> Path:
        return self.state / "connect.pid"

    @property
    def connect_log(self) -> Path:
        return self.state / "connect.log"

    @property
    def worker(self) -> Path:
        return self.state / "worker.properties"

    @property
    def connector(self) -> Path:
        return self.state / "connector.properties"

    @property
    def offsets(self) -> Path:
        return self.state / "connect.offsets"


@functools.lru_cache(maxsize=32)
def _pg_home(state: Path) -> Path:
    if os.geteuid() != 0:
        return state
    reachable = next(d for d in (state, *state.parents) if d.exists())
    if subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(reachable)]).returncode == 0:
        return state
    try:
        home = Path(pwd.getpwnam("postgres").pw_dir)
    except KeyError:
        raise CdcError("no `postgres` user to run PostgreSQL as (it refuses to run as root): install the "
                       "postgresql package, which creates it, or run lakepipe as another user") from None  # fmt: skip
    return home / "lakepipe" / hashlib.sha1(str(state).encode()).hexdigest()[:12]


def paths(settings: Settings) -> CdcPaths:
    return CdcPaths(Path(settings.resolve(settings.local_cdc.state_dir)))


def topic(settings: Settings, table: str) -> str:
    """The topic Debezium writes the changes of `public.<table>` to."""
    return f"{settings.local_cdc.topic_prefix}.public.{table}"


def start(settings: Settings, timeout: float = 120.0) -> list[str]:
    """Start PostgreSQL and the Connect worker unless they run; one status line each."""
    fresh = not (paths(settings).pg_data / "PG_VERSION").exists()
    lines = [_start_postgres(settings)]
    if fresh:  # a new database: topics left by an earlier one would be read as its history
        for table in TABLES:
            if kafka_admin.delete_topic(settings.kafka, topic(settings, table)):
                lines.append(f"removed topic {topic(settings, table)}, left by an earlier database")
    return [*lines, _start_connect(settings, timeout)]


def stop(settings: Settings) -> list[str]:
    p = paths(settings)
    out = []
    pid = running_pid(p.connect_pid, "ConnectStandalone")
    if pid is None:
        out.append("Kafka Connect is not running (nothing to stop)")
    else:
        terminate(pid, grace=30)
        p.connect_pid.unlink(missing_ok=True)
        out.append(f"Kafka Connect stopped (pid {pid})")
    if _pg_running(settings):
        _pg(settings, "pg_ctl", "-D", str(p.pg_data), "-m", "fast", "-w", "stop")
        out.append(f"PostgreSQL stopped (data kept in {p.pg_data})")
    else:
        out.append("PostgreSQL is not running (nothing to stop)")
    return out


def remove(settings: Settings) -> None:
    """Stop both and delete every file of theirs, the database included (tests' and benchmarks' own sources)."""
    stop(settings)
    p = paths(settings)
    for d in (p.state, p.pg_home):
        shutil.rmtree(d, ignore_errors=True)


def status(settings: Settings) -> list[str]:
    c = settings.local_cdc
    p = paths(settings)
    pg = (f"PostgreSQL running on 127.0.0.1:{c.postgres_port}, database {c.database}" if _pg_running(settings)
          else f"PostgreSQL is not running (start it with `lakepipe cdc up`); data in {p.pg_data}")  # fmt: skip
    pid = running_pid(p.connect_pid, "ConnectStandalone")
    if pid is None:
        return [pg, "Kafka Connect is not running (start it with `lakepipe cdc up`)"]
    state = connector_state(settings) or "not answering"
    return [pg, f"Kafka Connect running (pid {pid}), connector {CONNECTOR}: {state}; topics {topic(settings, '<table>')}"]


def _client(settings: Settings) -> tuple[list[str], dict]:
    """psql's command line for the shop database as the lakepipe user, and its environment."""
    c = settings.local_cdc
    cmd = [_psql(), "-h", "127.0.0.1", "-p", str(c.postgres_port), "-U", c.user, "-d", c.database,
           "-v", "ON_ERROR_STOP=1", "-qAt"]  # fmt: skip
    return cmd, {**os.environ, "PGPASSWORD": c.password}


def sql(settings: Settings, statements: str) -> str:
    """Run SQL in the shop database as the lakepipe user (one transaction per `BEGIN ... COMMIT` in it)."""
    c = settings.local_cdc
    cmd, env = _client(settings)
    res = subprocess.run([*cmd, "-c", statements], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise CdcError(f"SQL failed in {c.database}: {(res.stderr or res.stdout).strip().splitlines()[-1]}")
    return res.stdout


def session(settings: Settings) -> subprocess.Popen:
    """A psql session that runs each statement written to its stdin as it comes (each commits by itself)."""
    cmd, env = _client(settings)
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)


def current_lsn(settings: Settings) -> int:
    """The database's write-ahead log position now, as the integer Debezium writes in `source.lsn`."""
    high, low = sql(settings, "SELECT pg_current_wal_lsn()").strip().split("/")
    return (int(high, 16) << 32) + int(low, 16)


def commit_marker(settings: Settings, statements: str) -> int:
    """Commit `statements` (a transaction changing every table to wait for) and return the log position before
    them: once the connector has streamed beyond it (`wait_streamed`), it has streamed all committed earlier."""
    mark = current_lsn(settings)
    sql(settings, statements)
    return mark


def wait_streamed(settings: Settings, after_lsn: int, tables: tuple[str, ...] = TABLES, timeout: float = 60.0) -> float:
    """Wait until the connector has written, for each table, a change at or beyond `after_lsn` (a position taken
    with `current_lsn` before the last transaction that changed every table in `tables`: the first change of that
    transaction may sit exactly there); seconds waited. A CdcError names the table it gave up on."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    started = time.monotonic()
    consumer = Consumer(kafka_admin.client_config(settings.kafka, **{"group.id": "lakepipe-cdc-wait", "enable.auto.commit": False}))
    try:
        for table in tables:
            while _last_lsn(consumer, TopicPartition(topic(settings, table), 0), KafkaException) < after_lsn:
                if time.monotonic() - started > timeout:
                    raise CdcError(f"the connector has not streamed {table}'s changes after {timeout:.0f} s: "
                                   f"`lakepipe cdc status`, and its log {paths(settings).connect_log}")  # fmt: skip
                time.sleep(0.2)
    finally:
        consumer.close()
    return time.monotonic() - started


def _last_lsn(consumer, tp, missing: type[Exception]) -> int:
    """The highest `source.lsn` among the last few records of a topic partition (-1 when there are none)."""
    try:
        _, high = consumer.get_watermark_offsets(tp, timeout=5)
    except missing:  # the topic does not exist yet: the connector creates it with the table's first change
        return -1
    if high <= 0:
        return -1
    tp.offset = max(0, high - 3)  # a delete's tombstone may be last
    consumer.assign([tp])
    best = -1
    for m in consumer.consume(high - tp.offset, timeout=5):
        if m.error() is None and m.value():
            value = json.loads(m.value())
            value = value.get("payload", value) if set(value) == {"schema", "payload"} else value
            best = max(best, int((value.get("source") or {}).get("lsn") or -1))
    return best


def connector_state(settings: Settings) -> str | None:
    """RUNNING, FAILED (with the task's first trace line), ... or None when the worker does not answer."""
    url = f"http://127.0.0.1:{settings.local_cdc.connect_port}/connectors/{CONNECTOR}/status"
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            body = json.loads(r.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None
    tasks = body.get("tasks") or []
    failed = [t for t in tasks if t.get("state") == "FAILED"]
    if failed:
        return "FAILED: " + (failed[0].get("trace") or "").strip().splitlines()[0][:300]
    if not tasks:
        return body.get("connector", {}).get("state", "UNASSIGNED") + " (no task yet)"
    return tasks[0].get("state")


# PostgreSQL ---------------------------------------------------------------------------------------------------


def _pg_bin() -> Path:
    for d in PG_BIN_DIRS:
        if (d / "pg_ctl").is_file():
            return d
    raise CdcError("PostgreSQL server not found (no pg_ctl under /usr/lib/postgresql): install it, "
                   "e.g. `apt-get install postgresql`")  # fmt: skip


def _psql() -> str:
    return shutil.which("psql") or str(_pg_bin() / "psql")


def _as_db_owner() -> list[str]:
    """initdb and postgres refuse to run as root: run them as `postgres` then."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _pg(settings: Settings, tool: str, *args: str) -> subprocess.CompletedProcess:
    res = subprocess.run([*_as_db_owner(), str(_pg_bin() / tool), *args], capture_output=True, text=True)
    if res.returncode != 0:
        detail = (res.stderr or res.stdout).strip().splitlines()
        raise CdcError(f"{tool} failed: {detail[-1] if detail else res.returncode}; log: {paths(settings).pg_log}")
    return res


def _pg_running(settings: Settings) -> bool:
    data = paths(settings).pg_data
    if not (data / "PG_VERSION").exists():
        return False
    res = subprocess.run([*_as_db_owner(), str(_pg_bin() / "pg_ctl"), "-D", str(data), "status"], capture_output=True)
    return res.returncode == 0


def _start_postgres(settings: Settings) -> str:
    c = settings.local_cdc
    p = paths(settings)
    if _pg_running(settings):
        _ensure_shop(settings)
        return f"PostgreSQL already running on 127.0.0.1:{c.postgres_port}; reusing it"
    if port_busy("127.0.0.1", c.postgres_port):
        raise PortInUseError(f"port {c.postgres_port} is held by another program: stop it, or set "
                             f"local_cdc.postgres_port in {settings.source}")  # fmt: skip
    fresh = not (p.pg_data / "PG_VERSION").exists()
    p.state.mkdir(parents=True, exist_ok=True)
    if fresh:
        p.pg_data.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            for d in {p.pg_home, p.pg_data} - {p.state}:
                shutil.chown(d, "postgres", "postgres")
        _pg(settings, "initdb", "-D", str(p.pg_data), "-U", "postgres", "--auth-local=trust",
            "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8")  # fmt: skip
        with open(p.pg_data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {c.postgres_port}\nwal_level = logical\n"
                       f"max_wal_senders = 4\nmax_replication_slots = 4\nunix_socket_directories = '{p.pg_data}'\n")  # fmt: skip
        with open(p.pg_data / "pg_hba.conf", "a", encoding="utf-8") as hba:
            hba.write("host replication all 127.0.0.1/32 scram-sha-256\n")
    log = p.pg_log
    if os.geteuid() == 0:
        log.touch()
        shutil.chown(log, "postgres", "postgres")
    _pg(settings, "pg_ctl", "-D", str(p.pg_data), "-l", str(log), "-w", "-t", "30", "start")
    _ensure_shop(settings)
    return f"PostgreSQL started on 127.0.0.1:{c.postgres_port} (database {c.database}, data in {p.pg_data})"


def _ensure_shop(settings: Settings) -> None:
    """Create the user and the shop database (schema and first customers) unless they exist."""
    c = settings.local_cdc
    p = paths(settings)
    admin = [*_as_db_owner(), _psql(), "-h", str(p.pg_data), "-p", str(c.postgres_port), "-U", "postgres",
             "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qAt"]  # fmt: skip

    def run(statement: str) -> str:
        res = subprocess.run([*admin, "-c", statement], capture_output=True, text=True)
        if res.returncode != 0:
            raise CdcError(f"creating the shop database failed: {res.stderr.strip()}; log: {p.pg_log}")
        return res.stdout.strip()

    if run(f"SELECT 1 FROM pg_database WHERE datname = '{c.database}'"):
        return
    if not run(f"SELECT 1 FROM pg_roles WHERE rolname = '{c.user}'"):
        run(f"CREATE ROLE {c.user} WITH LOGIN REPLICATION PASSWORD '{c.password}'")
    run(f"CREATE DATABASE {c.database} OWNER {c.user}")
    sql(settings, SCHEMA_SQL.read_text())


# Kafka Connect ------------------------------------------------------------------------------------------------


def _start_connect(settings: Settings, timeout: float) -> str:
    c = settings.local_cdc
    p = paths(settings)
    pid = running_pid(p.connect_pid, "ConnectStandalone")
    if pid is not None:
        return f"Kafka Connect already running (pid {pid}), connector {CONNECTOR}: {connector_state(settings)}"
    if port_busy("127.0.0.1", c.connect_port):
        raise PortInUseError(f"port {c.connect_port} is held by another program: stop it, or set "
                             f"local_cdc.connect_port in {settings.source}")  # fmt: skip
    java = java_executable()
    classpath = os.pathsep.join(str(j) for j in jar_files("connect"))
    plugins = jars_root() / "debezium"
    if not any(plugins.glob("*/*.jar")):
        raise CdcError(f"no Debezium jars in {plugins}: run `make jars` (resolves infra/debezium/pom.xml with Maven)")
    _render(settings, p, plugins)
    log4j = PROJECT_DIR / "infra" / "connect" / "log4j2.properties"
    cmd = [java, f"-Xmx{c.heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={log4j}",
           f"-Dconnect.log.file={p.connect_log}", "-cp", classpath, "org.apache.kafka.connect.cli.ConnectStandalone",
           str(p.worker), str(p.connector)]  # fmt: skip
    with open(p.state / "connect.console.log", "ab") as console:
        proc = subprocess.Popen(cmd, stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)  # fmt: skip
    p.connect_pid.write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            p.connect_pid.unlink(missing_ok=True)
            raise CdcError(f"Kafka Connect exited at start; full log: {p.connect_log}")
        state = connector_state(settings)
        if state == "RUNNING":
            return f"Kafka Connect started (pid {proc.pid}); Debezium streams {c.database} to {topic(settings, '<table>')}"
        if state and state.startswith("FAILED"):
            break
        time.sleep(0.5)
    terminate(proc.pid, grace=10)
    p.connect_pid.unlink(missing_ok=True)
    raise CdcError(f"the Debezium connector is not running ({state or 'no answer'}); full log: {p.connect_log}")


def _render(settings: Settings, p: CdcPaths, plugins: Path) -> None:
    c = settings.local_cdc
    schemas = "true" if c.value_schemas else "false"
    p.worker.write_text(
        f"bootstrap.servers={bootstrap(settings)}\n"
        "key.converter=org.apache.kafka.connect.json.JsonConverter\nkey.converter.schemas.enable=false\n"
        f"value.converter=org.apache.kafka.connect.json.JsonConverter\nvalue.converter.schemas.enable={schemas}\n"
        f"offset.storage.file.filename={p.offsets}\noffset.flush.interval.ms={c.offset_flush_ms}\n"
        f"plugin.path={plugins}\nplugin.discovery=service_load\n"
        f"listeners=http://127.0.0.1:{c.connect_port}\n"
    )
    p.connector.write_text(
        f"name={CONNECTOR}\nconnector.class=io.debezium.connector.postgresql.PostgresConnector\ntasks.max=1\n"
        f"database.hostname=127.0.0.1\ndatabase.port={c.postgres_port}\ndatabase.user={c.user}\n"
        f"database.password={c.password}\ndatabase.dbname={c.database}\ntopic.prefix={c.topic_prefix}\n"
        "plugin.name=pgoutput\nslot.name=lakepipe_shop\npublication.name=lakepipe_shop\n"
        "publication.autocreate.mode=filtered\n"
        f"table.include.list={','.join(f'public.{t}' for t in TABLES)}\n"
        "topic.creation.default.replication.factor=1\ntopic.creation.default.partitions=1\n"
    )
