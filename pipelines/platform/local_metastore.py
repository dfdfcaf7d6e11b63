"""The local catalog's metastore server: Apache Derby in network mode, in its own JVM, from Maven Central jars.

Spark's built-in Hive metastore client keeps the catalog (schemas, table names, locations) in a database. With
Derby embedded in the Spark JVM only one application could open it at a time: a continuous `lakepipe run`
would lock a notebook or `lakepipe sql` out. So `lakepipe up` runs Derby's network server (loopback only) beside
the broker, and every Spark application connects to it over JDBC (`Settings.metastore_conf`). The server holds
no data of its own: each lake's catalog database lives in that lake's root (`<lake root>/_catalog`), created on
first use. Pid file and logs live under `local_metastore.state_dir` (default `.lakepipe/metastore`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from pipelines.errors import MetastoreError, PortInUseError
from pipelines.model.config import Settings
from pipelines.platform.jars import jar_files, java_executable
from pipelines.platform.processes import port_busy, terminate
from pipelines.platform.processes import running_pid as running_pid_of

MAIN = "org.apache.derby.drda.NetworkServerControl"


def state_dir(settings: Settings) -> Path:
    return Path(settings.resolve(settings.local_metastore.state_dir))


def address(settings: Settings) -> str:
    m = settings.local_metastore
    return f"{m.host}:{m.port}"


def running_pid(settings: Settings) -> int | None:
    """The pid of the metastore server this folder started, if that process is still alive."""
    return running_pid_of(state_dir(settings) / "metastore.pid", MAIN)


def answers(settings: Settings, timeout: float = 1.0) -> bool:
    m = settings.local_metastore
    try:
        with socket.create_connection((m.host, m.port), timeout=timeout):
            return True
    except OSError:
        return False


def require(settings: Settings) -> None:
    """A one-line error, before Spark starts, when the local catalog is on and its server does not answer."""
    if settings.local_catalog and not answers(settings):
        raise MetastoreError(
            f"the local catalog's metastore server does not answer at {address(settings)}: start it with "
            f"`lakepipe up` (or turn the catalog off with catalog.enabled: false in {settings.source})"
        )


def start(settings: Settings, timeout: float = 60.0) -> str:
    """Start the server unless it already runs; returns a one-line status message."""
    m = settings.local_metastore
    pid = running_pid(settings)
    if pid is not None:
        return f"metastore server already running at {address(settings)} (pid {pid}); reusing it"
    if port_busy(m.host, m.port):
        if _control(settings, "ping").returncode == 0:
            return f"a Derby metastore server already answers at {address(settings)} (not started from here); reusing it"
        raise PortInUseError(
            f"port {m.port} on {m.host} is held by another program that is not a Derby server: stop it, "
            f"or set local_metastore.port in {settings.source}"
        )
    state = state_dir(settings)
    state.mkdir(parents=True, exist_ok=True)
    with open(state / "console.log", "ab") as console:
        proc = subprocess.Popen(
            _java(settings, "start", "-noSecurityManager"), stdout=console, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, cwd=state,
        )  # fmt: skip
    (state / "metastore.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            (state / "metastore.pid").unlink(missing_ok=True)
            raise MetastoreError(f"the metastore server exited at start ({_last_line(state)}); full log: {state / 'console.log'}")
        if answers(settings, timeout=0.5):
            return f"metastore server started at {address(settings)} (pid {proc.pid}, log in {state})"
        time.sleep(0.3)
    terminate(proc.pid, grace=10)
    (state / "metastore.pid").unlink(missing_ok=True)
    raise MetastoreError(f"the metastore server did not answer within {timeout:g}s; see {state / 'console.log'}")


def stop(settings: Settings, timeout: float = 20.0) -> str:
    pid = running_pid(settings)
    if pid is None:
        return "metastore server is not running (nothing to stop)"
    _control(settings, "shutdown")  # lets Derby close its databases cleanly; SIGTERM below if it did not
    terminate(pid, grace=timeout)
    (state_dir(settings) / "metastore.pid").unlink(missing_ok=True)
    return f"metastore server stopped (pid {pid})"


def status(settings: Settings) -> str:
    pid = running_pid(settings)
    if pid is None:
        if answers(settings):
            return f"a metastore server answers at {address(settings)} (not started from here)"
        return f"metastore server is not running (start it with `lakepipe up`); state in {state_dir(settings)}"
    return f"metastore server running at {address(settings)} (pid {pid}), {'answering' if answers(settings) else 'NOT answering'}"


def release(settings: Settings) -> None:
    """Let the server close this lake's catalog database, before the lake folder is deleted (`demo --fresh`): a
    database it kept open would otherwise be served from deleted files. Nothing to do when it does not answer."""
    if not settings.local_catalog or not answers(settings):
        return
    m = settings.local_metastore
    url = f"jdbc:derby://{m.host}:{m.port}/{settings.metastore_db};shutdown=true"
    classpath = os.pathsep.join(str(j) for j in jar_files("metastore"))
    subprocess.run([java_executable(), "-cp", classpath, "org.apache.derby.tools.ij"], input=f"connect '{url}';\nexit;\n",
                   capture_output=True, text=True, timeout=60)  # fmt: skip  (08006 "shut down" or "not found": both fine)


def _java(settings: Settings, *command: str) -> list[str]:
    m = settings.local_metastore
    state = state_dir(settings)
    classpath = os.pathsep.join(str(j) for j in jar_files("metastore"))
    return [
        java_executable(), f"-Xmx{m.heap}", f"-Dderby.system.home={state}",
        f"-Dderby.stream.error.file={state / 'derby.log'}", "-cp", classpath, MAIN, *command, "-h", m.host, "-p", str(m.port),
    ]  # fmt: skip


def _control(settings: Settings, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(_java(settings, command), capture_output=True, text=True, timeout=60)


def _last_line(state: Path) -> str:
    for f in (state / "console.log", state / "derby.log"):
        if f.exists():
            lines = [ln for ln in f.read_text(errors="replace").splitlines() if ln.strip()]
            if lines:
                return lines[-1].strip()[:300]
    return "no log line"
