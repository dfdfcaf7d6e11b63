"""Every notebook executes end to end (nbclient, a real kernel of this environment) against a real run.

Simulated clickstream (with faults), payments (with fraud) and IoT (with anomalies) events go to the local broker;
payments and IoT run once here, the quick start runs clickstream itself; then the notebooks run one after the other
in one kernel, as in one Jupyter session (a Spark JVM started once: a kernel each took 2.5 times as long), its
variables cleared between notebooks (`%reset -f`), with the test's environment as their parameters
(LAKEPIPE_ENV, LAKEPIPE_CONF_DIR); each must draw its plots. The notebooks are stored without outputs.
"""

from __future__ import annotations

import itertools
import subprocess
import sys

import nbformat
import pytest
from jupyter_client.manager import start_new_kernel
from nbclient import NotebookClient

from pipelines.domains.iot.simulator import IotGenerator
from tests.conftest import PROJECT_DIR
from tests.integration.test_iot_once import FAULTS as IOT_FAULTS
from tests.integration.test_iot_once import START as IOT_START
from tests.support import run_once, send

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.platform]

NOTEBOOKS = PROJECT_DIR / "notebooks"
# notebook -> the plots it must draw (a plot that is skipped or fails shows here)
PLOTS = {"clickstream_quickstart.ipynb": 0, "quality_and_quarantine.ipynb": 2, "operations.ipynb": 2, "gold_analytics.ipynb": 4}


def test_notebooks_are_stored_without_outputs_and_take_parameters():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(PLOTS)
    for path in NOTEBOOKS.glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), f"{path.name}: strip its outputs"
        assert "parameters" in code[0].metadata.get("tags", []) and "LAKEPIPE_ENV" in code[0].source, path.name


def test_every_notebook_runs_against_a_real_run(spark, domain_settings, monkeypatch):
    settings = domain_settings
    conf = str(settings.source.parent)
    for args in (["clickstream", "--events", "400", "--malformed", "0.05", "--duplicates", "0.05"],
                 ["payments", "--events", "600", "--fraud", "0.1"]):  # fmt: skip
        subprocess.run([sys.executable, "-m", "pipelines.cli", "--conf-dir", conf, "--env", "test", "simulate", *args, "--seed", "5"],
                       check=True, capture_output=True, cwd=PROJECT_DIR)  # fmt: skip
    # IoT: 10 devices read every 15 s for 25 minutes of event time, so that anomalies (an append output) are final
    iot = IotGenerator(seed=5, start=IOT_START, devices=10, sites=2, interval=15, faults=IOT_FAULTS)
    send(settings, itertools.islice(iot.events(), 1000), "iot")
    run_once(spark, settings, ["payments", "iot"])
    monkeypatch.setenv("LAKEPIPE_ENV", "test")
    monkeypatch.setenv("LAKEPIPE_CONF_DIR", conf)
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(NOTEBOOKS))
    try:
        for name, plots in PLOTS.items():  # the quick start first: it runs clickstream
            nb = nbformat.read(NOTEBOOKS / name, as_version=4)
            nb.cells.insert(0, nbformat.v4.new_code_cell("%reset -f"))  # nothing a notebook defines reaches the next one
            NotebookClient(nb, km=km, timeout=600).execute()
            outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
            drawn = sum("image/png" in o.get("data", {}) for o in outputs)
            assert drawn == plots, f"{name}: {drawn} plots drawn, {plots} expected"
            text = "\n".join(str(o.get("data", {}).get("text/plain", "")) + o.get("text", "") for o in outputs)
            if name == "clickstream_quickstart.ipynb":
                assert "clickstream_events_quarantine" in text and "invalid_json" in text, text[-2000:]
            if name == "operations.ipynb":
                assert "clickstream.silver" in text and "payments.silver" in text, text[-2000:]  # bronze: with silver
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
