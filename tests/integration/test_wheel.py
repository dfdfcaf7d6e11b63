"""The built wheel installs beside a platform's Spark and runs a project of one's own, outside this repository.

`python -m build` makes the wheel from a copy of the sources. A fresh venv gets it with `--no-deps`; the
libraries come from a path file pointing at this environment's (as a Databricks cluster brings its own PySpark
and Delta), and `pip check` then proves the wheel's dependency ranges accept the exact versions we test with.
From that venv: `lakepipe --help`, `lakepipe init`, `lakepipe validate`, and a `lakepipe run --once` of the new
project against the local broker, whose tables are then read back.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import uuid
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from pipelines.platform.jars import jars_root
from pipelines.simulators.base import KafkaSink, SimEvent, Tally, publish
from tests.conftest import PROJECT_DIR

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.platform]


def build_wheel(tmp: Path) -> Path:
    source = tmp / "source"
    shutil.copytree(PROJECT_DIR / "pipelines", source / "pipelines", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT_DIR / name, source / name)
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp / "dist"), str(source)],
                   check=True, capture_output=True, text=True)  # fmt: skip
    (wheel,) = (tmp / "dist").glob("lakepipe-*.whl")
    return wheel


def fresh_venv(tmp: Path) -> Path:
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    site = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    (Path(site) / "platform-libraries.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def test_wheel_installs_and_runs_a_new_project(tmp_path, kafka, spark):
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as z:
        meta = Parser().parsestr(z.read(next(n for n in z.namelist() if n.endswith("METADATA"))).decode())
        assert "pipelines/engine/silver.py" in z.namelist()
    requires = meta.get_all("Requires-Dist")
    runtime = [r for r in requires if 'extra == "test"' not in r]
    assert runtime and not [r for r in runtime if "==" in r.split(";")[0]], f"ranges, no exact pins: {runtime}"
    spark_deps = [r for r in requires if r.startswith(("pyspark", "delta-spark"))]
    assert spark_deps and all('extra == "spark"' in r for r in spark_deps), spark_deps

    venv = fresh_venv(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LAKEPIPE_CONF_DIR", "LAKEPIPE_ENV")}
    env["LAKEPIPE_JARS_DIR"] = str(jars_root())
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "--quiet", "--no-index", "--no-deps", str(wheel)], check=True, env=env)
    check = subprocess.run([*pip, "check"], capture_output=True, text=True, env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    lakepipe = str(venv / "bin" / "lakepipe")

    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import pipelines; print(pipelines.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, check=True).stdout  # fmt: skip
    assert where.startswith(str(venv)), f"lakepipe imported from {where}, not from the installed wheel"
    shown = subprocess.run([lakepipe, "--help"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert shown.returncode == 0 and "init" in shown.stdout and "validate" in shown.stdout, shown.stderr

    name = f"wheel_{uuid.uuid4().hex[:8]}"
    project = tmp_path / "myproject"
    made = subprocess.run([lakepipe, "init", str(project), "--name", name], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    again = subprocess.run([lakepipe, "init", str(project), "--name", name], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert again.returncode == 2 and "never overwrites" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    valid = subprocess.run([lakepipe, "validate"], capture_output=True, text=True, env=env, cwd=project)
    assert valid.returncode == 0 and f"ok   {name}:" in valid.stdout, valid.stdout + valid.stderr

    rows = [{"event_id": f"e{i}", "event_time": f"2026-11-30T10:{i % 60:02d}:00Z", "event_type": "created", "amount": i}
            for i in range(40)]  # fmt: skip
    rows += [{"event_id": "bad", "event_time": "2026-11-30T10:00:00Z", "event_type": "exploded"}]
    events = [SimEvent("valid", r["event_id"].encode(), json.dumps(r).encode()) for r in rows]
    tally = publish(iter(events), KafkaSink(kafka, f"{name}.events", Tally()))
    assert not tally.failed, tally.errors
    run = subprocess.run([lakepipe, "run", name, "--once"], capture_output=True, text=True, env=env, cwd=project, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    tables = project / "lakehouse" / "tables"
    read = lambda layer, table: spark.read.format("delta").load(str(tables / layer / table))  # noqa: E731
    assert read("bronze", f"{name}_events_raw").count() == 41
    assert read("silver", f"{name}_events").count() == 40
    (rejected,) = read("quarantine", f"{name}_events_quarantine").collect()
    assert rejected.reasons == ["not_in_set:event_type"]
    gold = read("gold", f"{name}_per_minute").groupBy().sum("events", "amount").first()
    assert (gold[0], int(gold[1])) == (40, sum(range(40)))
