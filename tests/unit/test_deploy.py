"""Deployment files, checked without a workspace: the Databricks bundle's resources against the databricks-bundles
package's own models (an unknown or misplaced key fails there), and every task's command line against lakepipe's
parser, conf files and pipelines; the session factory's Databricks branch."""

from __future__ import annotations

import re
import threading
import tomllib
from pathlib import Path

import pytest
import yaml
from databricks.bundles.jobs import Job
from databricks.bundles.schemas import Schema
from databricks.bundles.volumes import Volume

from pipelines.cli import _parser
from pipelines.model.config import load_settings
from pipelines.model.project import load_project
from tests.conftest import PROJECT_DIR

BUNDLE = PROJECT_DIR / "infra" / "databricks" / "databricks.yml"


@pytest.fixture(scope="module")
def bundle() -> dict:
    return yaml.safe_load(BUNDLE.read_text())


def _wheel_tasks(bundle: dict):
    for name, job in bundle["resources"]["jobs"].items():
        for task in job["tasks"]:
            yield name, job, task


def test_resources_match_the_databricks_models(bundle):
    jobs = bundle["resources"]["jobs"]
    assert {"lakepipe_clickstream", "lakepipe_once", "lakepipe_backfill", "lakepipe_quarantine_replay"} <= set(jobs)
    for name, job in jobs.items():
        Job.from_dict(job)  # raises on a key the job model does not have
    for schema in bundle["resources"]["schemas"].values():
        Schema.from_dict(schema)
    for volume in bundle["resources"]["volumes"].values():
        Volume.from_dict(volume)
    with pytest.raises(ValueError, match="Unexpected field 'continous'"):
        Job.from_dict({**jobs["lakepipe_clickstream"], "continous": {}})  # the check can fail


def test_every_variable_has_a_value_in_every_target(bundle):
    used = set(re.findall(r"\$\{var\.(\w+)\}", BUNDLE.read_text()))
    declared = bundle["variables"]
    assert used <= set(declared), used - set(declared)
    for target, spec in bundle["targets"].items():
        given = set((spec or {}).get("variables", {}))
        missing = [v for v in used if "default" not in declared[v] and v not in given]
        assert not missing, f"target {target} leaves {missing} without a value"


def test_the_wheel_artifact_and_its_entry_point(bundle):
    project = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["project"]
    artifact = bundle["artifacts"]["lakepipe"]
    root = (BUNDLE.parent / artifact["path"]).resolve()
    assert root == PROJECT_DIR and artifact["build"] == "python -m build --wheel"  # the wheel lands in <root>/dist
    for sync in bundle["sync"]["paths"]:
        assert (BUNDLE.parent / sync).resolve().is_dir(), sync
    for name, job, task in _wheel_tasks(bundle):
        wheel = task["python_wheel_task"]
        assert wheel["package_name"] == project["name"], name
        assert wheel["entry_point"] in project["scripts"], name
        assert [lib["whl"] for lib in task["libraries"]] == ["../../dist/*.whl"], name
        assert (BUNDLE.parent / "../../dist").resolve() == root / "dist"


def test_every_task_command_parses_and_loads_its_environment(bundle, monkeypatch):
    """Each task's parameters, with the bundle's substitutions made, are a valid lakepipe command line whose
    environment file loads (with the variables the job cluster sets) and whose pipelines exist."""
    cluster_env = bundle["resources"]["jobs"]["lakepipe_clickstream"]["job_clusters"][0]["new_cluster"]["spark_env_vars"]
    values = {"LAKEPIPE_CATALOG": "main", "LAKEPIPE_LAKE_ROOT": "/Volumes/main/lakepipe/lake"}
    assert set(values) <= set(cluster_env) and "/Volumes/${var.catalog}/lakepipe/lake" == cluster_env["LAKEPIPE_LAKE_ROOT"]
    for key in cluster_env:
        monkeypatch.setenv(key, values.get(key, f"value-of-{key.lower()}"))
    commands = set()
    for name, job, task in _wheel_tasks(bundle):
        defaults = {p["name"]: p["default"] for p in job.get("parameters", [])}
        params = []
        for p in task["python_wheel_task"]["parameters"]:
            p = p.replace("${workspace.file_path}", str(PROJECT_DIR))
            p = re.sub(r"\{\{job\.parameters\.(\w+)\}\}", lambda m: str(defaults[m.group(1)]), p)  # noqa: B023
            assert "${" not in p and "{{" not in p, f"{name}: unresolved {p}"
            params.append(p)
        args = _parser().parse_args(params)
        commands.add(args.func.__name__)
        settings = load_settings(args.env, args.conf_dir)
        assert settings.catalog.metastore == "session" and settings.catalog.name == "main"
        assert settings.lake_root == "/Volumes/main/lakepipe/lake"
        names = getattr(args, "pipelines", None) or ([args.pipeline] if hasattr(args, "pipeline") else [])
        if getattr(args, "all", False):
            names = settings.pipeline_names()
        load_project(settings, names or None)
    assert {"_cmd_run", "_cmd_backfill", "_cmd_quarantine", "_cmd_maintain"} <= commands


def test_on_databricks_the_existing_session_is_used_and_never_stopped(spark, monkeypatch):
    from pipelines.platform.session import get_spark, stop_spark

    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "18.1")
    got = {}

    def job_thread():  # a thread of its own: the session is not "active" there, as in a wheel task
        got["session"] = get_spark(load_settings("local", PROJECT_DIR / "conf"))
        stop_spark(got["session"])

    t = threading.Thread(target=job_thread)
    t.start()
    t.join(60)
    assert got["session"]._jsc.sc().applicationId() == spark._jsc.sc().applicationId()
    assert spark.range(3).count() == 3, "the shared session still runs after stop_spark"


def test_a_session_that_was_running_before_is_left_running(spark):
    from pipelines.platform.session import spark_session

    with spark_session(load_settings("local", PROJECT_DIR / "conf"), "borrowed") as got:
        assert got is spark
    assert spark.range(3).count() == 3, "the caller's session still runs after the block"


def test_bundle_file_is_where_the_readme_says():
    assert Path(BUNDLE).is_file()
