"""The Airflow DAGs (infra/airflow), loaded by Airflow 3 itself (its own venv, `.venv-airflow`, built by `make`):
no import error, the schedules, and every task's command: each spark-submit's job file exists and its arguments
parse with that job's own parser and load their environment and pipelines; the health check is a valid
`lakepipe status` command."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest

from pipelines.cli import _parser
from pipelines.model.config import load_settings
from pipelines.model.project import load_project
from pipelines.platform.jars import jar_files
from tests.conftest import PROJECT_DIR

AIRFLOW_PYTHON = PROJECT_DIR / ".venv-airflow" / "bin" / "python"
PROD_VARIABLES = ("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_USERNAME", "KAFKA_PASSWORD")


@pytest.fixture(scope="module")
def dags(tmp_path_factory) -> dict:
    assert AIRFLOW_PYTHON.exists(), f"{AIRFLOW_PYTHON} is missing: `make setup` builds it from infra/airflow/requirements.txt"
    home = tmp_path_factory.mktemp("airflow")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYSPARK"))}
    env |= {"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "LAKEPIPE_HOME": str(PROJECT_DIR)}
    out = subprocess.run([str(AIRFLOW_PYTHON), str(PROJECT_DIR / "tests" / "airflow_dag_dump.py"), str(PROJECT_DIR / "infra" / "airflow")],
                         capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def job_parser(name: str):
    spec = importlib.util.spec_from_file_location(f"job_{name}", PROJECT_DIR / "jobs" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.parser()


def test_dags_load_with_their_schedules(dags):
    assert dags["errors"] == {}
    schedules = {d: v["schedule"] for d, v in dags["dags"].items()}
    assert schedules == {"lakepipe_incremental": "*/15 * * * *", "lakepipe_nightly_backfill": "30 2 * * *",
                         "lakepipe_health": "*/5 * * * *"}  # fmt: skip
    assert all(v["max_active_runs"] == 1 for v in dags["dags"].values()), "one run per checkpoint"
    incremental = dags["dags"]["lakepipe_incremental"]["tasks"]
    assert set(incremental) == {f"{p}_once" for p in ("clickstream", "iot", "payments", "customers", "orders")}
    assert incremental["orders_once"]["upstream"] == ["customers_once"]


def test_every_spark_submit_runs_a_job_with_arguments_it_accepts(dags, monkeypatch):
    for key in PROD_VARIABLES:
        monkeypatch.setenv(key, f"value-of-{key.lower()}")
    monkeypatch.setenv("LAKEPIPE_LAKE_ROOT", "s3://bucket/lake")
    jars = ",".join(str(j) for j in jar_files("spark"))
    submits = [t for d in dags["dags"].values() for t in d["tasks"].values() if t["type"] == "SparkSubmitOperator"]
    assert len(submits) == 7
    for task in submits:
        job = Path(task["application"])
        assert job.parent == PROJECT_DIR / "jobs" and job.is_file(), job
        assert task["py_files"] == str(PROJECT_DIR / "dist" / "lakepipe.zip") and task["jars"] == jars
        assert task["conn_id"] == "spark_default" and "-Duser.timezone=UTC" in task["conf"]["spark.driver.extraJavaOptions"]
        argv = [a.replace("{{ data_interval_start | ds }}", "2026-11-29").replace("{{ data_interval_end | ds }}", "2026-11-30")
                for a in task["application_args"]]  # fmt: skip
        args = job_parser(job.name).parse_args(argv)
        names = args.pipeline if isinstance(args.pipeline, list) else [args.pipeline]
        load_project(load_settings(args.env, args.conf_dir), names)


def test_the_health_check_is_lakepipe_status(dags):
    (task,) = dags["dags"]["lakepipe_health"]["tasks"].values()
    assert task["type"] == "BashOperator"
    command = task["bash_command"]
    assert command.startswith(f"cd {PROJECT_DIR} && lakepipe ")
    args = _parser().parse_args(command.split("&& lakepipe ", 1)[1].split())
    assert args.func.__name__ == "_cmd_status" and args.env == "prod"
