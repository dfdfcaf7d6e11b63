"""Run by the Airflow venv's Python (tests/unit/test_airflow_dags.py): load the DAG folder given as argument with
Airflow's own DagBag and print every DAG and task as JSON (import errors included)."""

import json
import sys

from airflow.dag_processing.dagbag import DagBag

FIELDS = ("application", "application_args", "py_files", "jars", "bash_command", "conn_id", "conf")

bag = DagBag(dag_folder=sys.argv[1])
out = {"errors": {k: str(v)[-800:] for k, v in bag.import_errors.items()}, "dags": {}}
for dag_id, dag in bag.dags.items():
    tasks = {t.task_id: {"type": type(t).__name__, "upstream": sorted(t.upstream_task_ids), **{k: getattr(t, k, getattr(t, f"_{k}", None)) for k in FIELDS}}
             for t in dag.tasks}  # fmt: skip
    out["dags"][dag_id] = {"schedule": getattr(dag.timetable, "expression", getattr(dag.timetable, "_expression", None)), "max_active_runs": dag.max_active_runs,
                           "tasks": tasks}  # fmt: skip
print(json.dumps(out, default=str))
