"""A Spark standalone cluster on this machine: a master and workers, each its own JVM from PySpark's own jars.

`lakepipe cluster up` starts them with PySpark's `bin/spark-class` (`org.apache.spark.deploy.master.Master`, then
`...worker.Worker` per worker; nothing is downloaded), `lakepipe cluster submit JOB ARGS` runs a job there with
`spark-submit --master spark://...` as on any cluster: the `pipelines` package in `--py-files`, the Delta and
Kafka jars in `--jars`. Executors are separate JVMs started by the workers, and their Python workers run an
interpreter that sees this environment's libraries (PySpark, pandas, pyarrow) but not lakepipe itself
(`executor_python`): code that reaches an executor only because it was shipped, as on a real cluster, so a path
that works only in local mode fails here. Pid files, logs and the workers' folders live under
`local_cluster.state_dir` (default `.lakepipe/cluster`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from pathlib import Path

import pyspark

from pipelines.errors import ClusterError
from pipelines.model.config import Settings
from pipelines.platform.jars import PROJECT_DIR, jar_files, java_executable
from pipelines.platform.processes import port_busy, terminate
from pipelines.platform.processes import running_pid as running_pid_of
from pipelines.platform.session import log4j_option

MASTER = "org.apache.spark.deploy.master.Master"
WORKER = "org.apache.spark.deploy.worker.Worker"


def state_dir(settings: Settings) -> Path:
    return Path(settings.resolve(settings.local_cluster.state_dir))


def master_url(settings: Settings) -> str:
    c = settings.local_cluster
    return f"spark://{c.host}:{c.port}"


def ui_url(settings: Settings) -> str:
    c = settings.local_cluster
    return f"http://{c.host}:{c.webui_port}"


def spark_home() -> Path:
    return Path(pyspark.__file__).parent


def executor_python(settings: Settings) -> Path:
    """The executors' interpreter: a venv of this Python whose only addition is a path file pointing at this
    environment's libraries. lakepipe's own editable install is a path file of that folder, which a plain path
    entry does not run, so `import pipelines` works on an executor only from what the job shipped."""
    env = state_dir(settings) / "python"
    python = env / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, capture_output=True)
    libs = sysconfig.get_paths()["purelib"]
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    (Path(site) / "lakepipe-libraries.pth").write_text(libs + "\n")
    return python


def running(settings: Settings) -> dict[str, int]:
    """The live processes this folder started: {"master": pid, "worker-0": pid, ...}."""
    state = state_dir(settings)
    out = {}
    for pid_file in sorted(state.glob("*.pid")):
        pid = running_pid_of(pid_file, MASTER if pid_file.stem == "master" else WORKER)
        if pid is not None:
            out[pid_file.stem] = pid
    return out


def alive_workers(settings: Settings, timeout: float = 2.0) -> int | None:
    """How many workers the master counts as alive (None when its web UI does not answer)."""
    try:
        with urllib.request.urlopen(f"{ui_url(settings)}/json/", timeout=timeout) as r:
            return int(json.load(r).get("aliveworkers", 0))
    except (OSError, ValueError):
        return None


def start(settings: Settings, timeout: float = 90.0) -> str:
    """Start the master and the workers unless they run; returns a one-line status message."""
    c = settings.local_cluster
    procs = running(settings)
    if "master" in procs and alive_workers(settings) == c.workers:
        return f"Spark cluster already running at {master_url(settings)} ({c.workers} workers); reusing it"
    if procs:
        stop(settings)
    for port, what in ((c.port, "port"), (c.webui_port, "webui_port")):
        if port_busy(c.host, port):
            raise ClusterError(f"port {port} on {c.host} is held by another program: stop it, or set "
                               f"local_cluster.{what} in {settings.source}")  # fmt: skip
    java_executable()  # a missing java is a one-line error
    state = state_dir(settings)
    state.mkdir(parents=True, exist_ok=True)
    executor_python(settings)
    launched = {"master": _launch(settings, "master", [MASTER, "--host", c.host, "--port", str(c.port),
                                                       "--webui-port", str(c.webui_port)])}  # fmt: skip
    deadline = time.monotonic() + timeout
    _wait(settings, launched, lambda: alive_workers(settings) is not None, deadline, "the master's web UI to answer")
    for i in range(c.workers):
        work = state / f"work-{i}"
        work.mkdir(exist_ok=True)
        launched[f"worker-{i}"] = _launch(settings, f"worker-{i}", [WORKER, "--host", c.host, "--cores", str(c.worker_cores), "--memory",
                                          c.worker_memory, "--webui-port", "0", "--work-dir", str(work), master_url(settings)])  # fmt: skip
    _wait(settings, launched, lambda: alive_workers(settings) == c.workers, deadline, f"{c.workers} workers to register")
    return (f"Spark cluster started at {master_url(settings)}: {c.workers} workers of {c.worker_cores} core(s) and "
            f"{c.worker_memory}, web UI {ui_url(settings)}, logs in {state}")  # fmt: skip


def stop(settings: Settings, timeout: float = 30.0) -> str:
    procs = running(settings)
    if not procs:
        return "Spark cluster is not running (nothing to stop)"
    for name in sorted(procs, key=lambda n: n == "master"):  # workers first: each ends its executors
        terminate(procs[name], grace=timeout)
        (state_dir(settings) / f"{name}.pid").unlink(missing_ok=True)
    return f"Spark cluster stopped ({', '.join(f'{n} pid {p}' for n, p in procs.items())})"


def status(settings: Settings) -> str:
    procs = running(settings)
    if "master" not in procs:
        return f"Spark cluster is not running (start it with `lakepipe cluster up`); state in {state_dir(settings)}"
    workers = alive_workers(settings)
    return f"Spark cluster running at {master_url(settings)} (web UI {ui_url(settings)}): {workers} alive workers"


def package_zip(dest: Path) -> Path:
    """The `pipelines` package as a zip for `--py-files` (its Python files only: nothing else is read at run time)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted((PROJECT_DIR / "pipelines").rglob("*.py")):
            z.write(f, f.relative_to(PROJECT_DIR))
    return dest


def submit_command(settings: Settings, job: str | Path, args: list[str]) -> list[str]:
    """`spark-submit` of `job` (a file of `jobs/`) with `args` to this cluster, shipping everything it needs."""
    c = settings.local_cluster
    if "master" not in running(settings):
        raise ClusterError(f"the Spark cluster is not running at {master_url(settings)}: start it with `lakepipe cluster up`")
    state = state_dir(settings)
    java_opts = f"{log4j_option()}-Duser.timezone=UTC"
    conf = {
        "spark.pyspark.python": str(executor_python(settings)),
        "spark.pyspark.driver.python": sys.executable,
        "spark.executor.memory": c.executor_memory,
        "spark.executor.cores": str(c.worker_cores),
        "spark.driver.extraJavaOptions": f"{java_opts} -Xss16m",
        "spark.executor.extraJavaOptions": java_opts,
        "spark.ui.showConsoleProgress": "false",
        **settings.metastore_conf(),
    }
    driver_path = []
    if settings.local_catalog:
        driver_path = ["--driver-class-path", os.pathsep.join(
            str(j) for j in jar_files("metastore") if j.name.startswith(("derbyclient", "derbyshared")))]  # fmt: skip
    return [
        str(spark_home() / "bin" / "spark-submit"), "--master", master_url(settings), "--deploy-mode", "client",
        "--jars", ",".join(str(j) for j in jar_files("spark")),
        "--py-files", str(package_zip(state / "lakepipe.zip")), *driver_path,
        *[a for key, value in conf.items() for a in ("--conf", f"{key}={value}")],
        str(job), *args,
    ]  # fmt: skip


def submit_env() -> dict[str, str]:
    """The environment of `spark-submit`: PySpark's own Spark home, none of a parent run's PySpark variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYSPARK_")}
    env["SPARK_HOME"] = str(spark_home())
    return env


def _launch(settings: Settings, name: str, args: list[str]) -> subprocess.Popen:
    state = state_dir(settings)
    env = submit_env() | {"SPARK_LOG_DIR": str(state), "SPARK_NO_DAEMONIZE": "1",
                          "SPARK_DAEMON_JAVA_OPTS": log4j_option()}  # fmt: skip
    env.pop("PYTHONPATH", None)  # executors inherit the worker's environment: they see only what a job ships
    with open(state / f"{name}.log", "ab") as log:
        proc = subprocess.Popen([str(spark_home() / "bin" / "spark-class"), *args], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, cwd=state, start_new_session=True)  # fmt: skip
    (state / f"{name}.pid").write_text(str(proc.pid))
    return proc


def _wait(settings: Settings, launched: dict[str, subprocess.Popen], ready, deadline: float, what: str) -> None:  # noqa: ANN001
    state = state_dir(settings)
    while time.monotonic() < deadline:
        if ready():
            return
        dead = [name for name, proc in launched.items() if proc.poll() is not None]
        if dead:
            stop(settings)
            raise ClusterError(f"the Spark {dead[0]} exited at start; full log: {state / f'{dead[0]}.log'}")
        time.sleep(0.5)
    stop(settings)
    raise ClusterError(f"timed out waiting for {what}; logs in {state}")
