"""Pipeline specs: the shipped ones validate; every kind of mistake is one error naming file and key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipelines.errors import ConfigError
from pipelines.model.spec import resolve_spec
from tests.conftest import CONTRACTS, PROJECT_DIR

SPECS = PROJECT_DIR / "conf" / "pipelines"


def good() -> dict:
    return yaml.safe_load((SPECS / "clickstream.yaml").read_text())


def write(tmp_path: Path, spec: dict, name: str = "clickstream") -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize("spec_file", sorted(SPECS.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_specs_resolve(spec_file):
    resolved = resolve_spec(spec_file, CONTRACTS)
    assert set(resolved.functions) == {o.name for o in resolved.spec.outputs}


def change(**edits):
    """The clickstream spec with edits: `out0_<key>` sets a key of its first output (None deletes it)."""
    spec = good()
    for key, value in edits.items():
        if key.startswith("out0_"):
            if value is None:
                del spec["outputs"][0][key[5:]]
            else:
                spec["outputs"][0][key[5:]] = value
        elif value is ...:
            del spec[key]
        else:
            spec[key] = value
    return spec


UPSERT = {"keys": ["window_start", "category", "currency"]}


@pytest.mark.parametrize(
    "spec, message",
    [
        (change(topics="x"), "unknown key 'topics'"),
        (change(topic=...), "missing required key 'topic'"),
        (change(contract="nope/contract.yaml"), "key 'contract' names"),
        (change(event_time="user_id"), "key 'event_time' names 'user_id', which is string in contract.yaml, not timestamp"),
        (change(dedup_key="order_id"), "key 'dedup_key' names 'order_id', which is not a field"),
        (change(dedup_key=["event_id", "no_such"]), "key 'dedup_key' names 'no_such', which is not a field"),
        (change(tombstones="drop"), "tombstones is 'drop', not one of quarantine, skip"),
        (change(partition_by=["day"]), "key 'partition_by' names 'day'"),
        (change(watermark="later"), "'later' is not a duration"),
        (change(name="other"), "key 'name' is 'other' but the file is named clickstream.yaml"),
        (change(gold=[]), "unknown key 'gold' (known keys here:"),
        (change(out0_function="pipelines.domains.clickstream.gold.no_such"), "key 'outputs[0].function'"),
        (change(out0_function="no_such_module.fn"), "cannot import module 'no_such_module'"),
        (change(out0_upsert={"keys": []}), "upsert needs at least one key"),
        (change(out0_upsert=None), "output 'clickstream_revenue_per_minute' needs exactly one of upsert, append, rebuild"),
        (change(out0_append={}), "needs exactly one of upsert, append, rebuild"),
        (change(out0_mode="merge"), "unknown key 'outputs[0].mode'"),
        (change(out0_upsert={"key": "window_start"}), "unknown key 'outputs[0].upsert.key'"),
        (change(out0_options={"width": "2 minutes"}), "takes no argument 'width'"),
        (change(out0_colour="red"), "unknown key 'outputs[0].colour'"),
        (change(out0_upsert=None, out0_rebuild={"keys": ["a"]}), "unknown key 'outputs[0].rebuild.keys'"),
        (change(out0_upsert=None, out0_append={"keys": ["a"]}), "unknown key 'outputs[0].append.keys'"),
        (change(out0_upsert=None, out0_rebuild={"key": "event_date", "lookups": {"h": "customers_history"}}),
         "lookup 'h' must be <pipeline>.<table>"),
        (change(out0_upsert=None, out0_rebuild={"key": "event_date", "lookups": {"h": "customers.customers_history"}}),
         "key 'outputs[0].rebuild.lookups': pipelines.domains.clickstream.gold.revenue_per_minute takes no argument 'h'"),
        (change(out0_layer="platinum"), "layer 'platinum' is not one of silver, gold"),
        (change(slo={"silver": "soon"}), "'soon' is not a duration"),
        (change(slo={"silver": "1 minute", "platinum": "1 minute"}), "unknown key 'slo.platinum'"),
        (change(slo={"lag_records": -1}), "slo.lag_records must be 0 or more, not -1"),
        (change(files={"checkpoint_interval": 0}), "files.checkpoint_interval must be 1 or more, not 0"),
        (change(files={"checkpoint_interval": "often"}), "key 'files.checkpoint_interval' must be an integer"),
        (change(spark_conf={"spark.executor.memory": "4g"}), "spark_conf: 'spark.executor.memory' is not a Spark SQL setting"),
        (change(spark_conf={"spark.sql.codegen.wholeStage": False}), "key 'spark_conf.spark.sql.codegen.wholeStage' must be text"),
    ],
)
def test_spec_mistakes_are_named(tmp_path, spec, message):
    path = write(tmp_path, spec)
    with pytest.raises(ConfigError) as err:
        resolve_spec(path, CONTRACTS)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_lookups_must_name_a_pipeline_and_a_table_that_exist(tmp_path):
    from pipelines.model.config import load_settings
    from pipelines.model.project import load_project

    specs = tmp_path / "specs"
    customers = yaml.safe_load((SPECS / "customers.yaml").read_text())
    write(specs, good())
    (tmp_path / "v.yaml").write_text(f"schemas_dir: {CONTRACTS}\nspecs_dir: {specs}\n")
    settings = load_settings("v", tmp_path)
    customers["outputs"][2]["rebuild"]["lookups"] = {"history": "customers.customer_history"}
    write(specs, customers, name="customers")
    with pytest.raises(ConfigError, match=r"customers.yaml: key 'outputs\[2\].rebuild.lookups.history' names 'customers.customer_history', which is no table"):
        load_project(settings, ["customers"])
    customers["outputs"][2]["rebuild"]["source"] = "clicks"
    write(specs, customers, name="customers")
    with pytest.raises(ConfigError, match=r"key 'outputs\[2\].rebuild.source' names pipeline 'clicks', which has no spec"):
        load_project(settings, ["customers"])


def test_validate_command_reports_each_spec(tmp_path):
    write(tmp_path / "specs", good())
    write(tmp_path / "specs", change(name="broken", event_time="user_id"), name="broken")
    (tmp_path / "v.yaml").write_text(f"schemas_dir: {CONTRACTS}\nspecs_dir: {tmp_path / 'specs'}\n")
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "validate", "--conf-dir", str(tmp_path), "--env", "v"],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("FAIL broken: ") and "key 'event_time'" in lines[0]
    assert lines[1].startswith("ok   clickstream: topic clickstream.events")
