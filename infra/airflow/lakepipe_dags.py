"""lakepipe on Apache Airflow 3: scheduled incremental runs, a nightly backfill and a health check.

Copy this file into the DAG folder of an Airflow with `apache-airflow-providers-apache-spark`, and set:
- Airflow Variable `lakepipe_home`: a checkout of lakepipe on the workers (its `jobs/`, `conf/`, `schemas/`), with
  `dist/lakepipe.zip` (`python -m zipfile -c dist/lakepipe.zip pipelines`) and `.jars/spark` (`make jars`);
- Airflow Variable `lakepipe_env`: the environment file to use (`conf/<env>.yaml`; default `prod`);
- the Spark connection `spark_default` pointing at the cluster (YARN, standalone, Kubernetes).
Scheduled `--once` runs and continuous runs of the same pipeline share checkpoints: use one or the other.
(tests/unit/test_airflow_dags.py loads these DAGs with Airflow itself and checks every task's command.)
"""

from __future__ import annotations

import glob
import os
from datetime import datetime, timedelta

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Variable

HOME = Variable.get("lakepipe_home", default=os.environ.get("LAKEPIPE_HOME", "/opt/lakepipe"))
ENV = Variable.get("lakepipe_env", default="prod")
PIPELINES = ("clickstream", "iot", "payments", "customers", "orders")
SETTINGS = ["--env", ENV, "--conf-dir", f"{HOME}/conf"]


def _submit(task_id: str, job: str, args: list[str]) -> SparkSubmitOperator:
    return SparkSubmitOperator(
        task_id=task_id,
        conn_id="spark_default",
        application=f"{HOME}/jobs/{job}",
        application_args=[*args, *SETTINGS],
        py_files=f"{HOME}/dist/lakepipe.zip",
        jars=",".join(sorted(glob.glob(f"{HOME}/.jars/spark/*.jar"))),
        conf={"spark.driver.extraJavaOptions": "-Duser.timezone=UTC", "spark.executor.extraJavaOptions": "-Duser.timezone=UTC"},
        name=f"lakepipe-{task_id}",
    )


defaults = {"owner": "data-platform", "retries": 2, "retry_delay": timedelta(minutes=2)}


def _dag(dag_id: str, description: str, schedule: str, default_args: dict = defaults) -> DAG:
    """One run at a time (one run per checkpoint), no catch-up of missed intervals."""
    return DAG(dag_id, description=description, schedule=schedule, start_date=datetime(2026, 1, 1), catchup=False,
               max_active_runs=1, default_args=default_args, tags=["lakepipe"])  # fmt: skip

with _dag("lakepipe_incremental", "every pipeline --once: what arrived since the last run, exactly once", "*/15 * * * *"):
    customers = _submit("customers_once", "run_pipeline.py", ["--pipeline", "customers", "--once"])
    for name in PIPELINES:
        if name != "customers":
            task = _submit(f"{name}_once", "run_pipeline.py", ["--pipeline", name, "--once"])
            if name == "orders":
                customers >> task  # orders' gold reads customers' SCD tables

with _dag("lakepipe_nightly_backfill", "recompute yesterday's clickstream gold from silver (late data, a fixed gold function)",
          "30 2 * * *"):
    for table in ("clickstream_revenue_per_minute", "clickstream_activity_per_minute"):
        _submit(f"backfill_{table}", "backfill.py", ["clickstream", "--layer", "gold", "--table", table,
                                                    "--from", "{{ data_interval_start | ds }}", "--to", "{{ data_interval_end | ds }}"])  # fmt: skip

with _dag("lakepipe_health", "lakepipe status: fails when a pipeline's SLO is breached or Kafka is unreachable", "*/5 * * * *",
          default_args={"owner": "data-platform", "retries": 0}):
    BashOperator(task_id="status", bash_command=f"cd {HOME} && lakepipe status --env {ENV} --conf-dir {HOME}/conf")
