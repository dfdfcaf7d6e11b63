"""The change-impact check (issue 14): `lakepipe plan` compares the spec and contract with what the existing tables
and checkpoints were built with, per table, and `lakepipe run` refuses what they cannot take with the same line.
A real run builds the tables and checkpoints; the contract and spec are then changed as a team would change them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from pipelines.domains.clickstream.simulator import ClickstreamGenerator
from pipelines.model.config import load_settings
from pipelines.model.project import load_project
from pipelines.simulators.base import KafkaSink, Tally, publish
from tests.conftest import PROJECT_DIR, write_conf
from tests.support import lakepipe_code, run_once

pytestmark = [pytest.mark.kafka]


def edit_yaml(path: Path, change) -> None:  # noqa: ANN001 - a function changing the loaded YAML in place
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def field(contract: dict, name: str) -> dict:
    return next(f for f in contract["fields"] if f["name"] == name)


def test_plan_says_per_table_what_a_change_needs_and_run_refuses_what_they_cannot_take(
    spark, tmp_path, unique_topic, kafka, capsys
):  # fmt: skip
    schemas, specs = tmp_path / "schemas", tmp_path / "specs"
    shutil.copytree(PROJECT_DIR / "schemas", schemas)
    shutil.copytree(PROJECT_DIR / "conf" / "pipelines", specs)
    conf = write_conf(tmp_path / "conf", unique_topic, schemas=schemas, specs=specs)
    settings = load_settings("test", conf)
    gen = ClickstreamGenerator(seed=11).events()
    publish(gen, sink := KafkaSink(settings.kafka, unique_topic, Tally()), count=150)
    sink.close()
    run_once(spark, settings, ["clickstream"])
    contract, spec = schemas / "clickstream" / "contract.yaml", specs / "clickstream.yaml"

    code, out, _ = lakepipe_code(capsys, conf, "plan", "clickstream")
    assert code == 0, out
    assert "clickstream: clickstream_events: compatible: unchanged" in out
    assert "clickstream: clickstream_sessions: compatible: unchanged" in out

    # a new optional field: compatible, and silver evolves without losing a row
    edit_yaml(contract, lambda c: c["fields"].append({"name": "coupon_code", "type": "string"}))
    code, out, _ = lakepipe_code(capsys, conf, "plan", "clickstream")
    assert code == 0 and "clickstream_events: compatible: gains column coupon_code (string; null in the rows before)" in out
    publish(gen, sink := KafkaSink(settings.kafka, unique_topic, Tally()), count=50)
    sink.close()
    run_once(spark, load_settings("test", conf), ["clickstream"])
    p = load_project(load_settings("test", conf), ["clickstream"]).pipeline("clickstream")
    silver = spark.read.format("delta").load(p.layout.silver.path)
    quarantined = spark.read.format("delta").load(p.layout.quarantine.path).count()
    assert "coupon_code" in silver.columns
    audit = spark.read.format("delta").load(p.layout.batches.path).groupBy().sum("bronze_records", "silver_records").first()
    assert tuple(audit) == (200, silver.count()) and silver.count() + quarantined <= 200

    # a decimal widened: a schema change, with the command; a string turned into an integer: impossible
    edit_yaml(contract, lambda c: field(c, "price").update(precision=20))
    edit_yaml(contract, lambda c: field(c, "device").update(type="integer"))
    code, out, _ = lakepipe_code(capsys, conf, "plan", "clickstream")
    assert code == 1, out
    assert "clickstream_events: schema change: price decimal(18,4) -> decimal(20,4) widens in place: lakepipe sql" in out
    assert "'delta.enableTypeWidening' = 'true'" in out and "ALTER COLUMN price TYPE DECIMAL(20,4)" in out
    assert "clickstream_events: impossible: device string -> bigint would change stored values" in out
    code, _, err = lakepipe_code(capsys, conf, "run", "clickstream", "--once")
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("lakepipe: clickstream: the spec or contract changed: clickstream_events: schema change: price")
    edit_yaml(contract, lambda c: (field(c, "price").update(precision=18), field(c, "device").update(type="string")))

    # an output's keys changed: a new checkpoint; once it is moved aside, the output is new and compatible
    edit_yaml(spec, lambda s: s["outputs"][0]["upsert"].update(keys=["window_start", "category"]))
    code, out, _ = lakepipe_code(capsys, conf, "plan", "clickstream")
    checkpoint = Path(p.layout.checkpoint("gold/clickstream_revenue_per_minute"))
    assert code == 1 and "clickstream_revenue_per_minute: new checkpoint: its keys or write settings changed" in out, out
    assert f"move {checkpoint} aside" in out
    checkpoint.rename(checkpoint.with_name("old-revenue"))
    code, out, _ = lakepipe_code(capsys, conf, "plan", "clickstream")
    assert code == 0 and "clickstream_revenue_per_minute: compatible: new: its first run builds it" in out, out

    # the dedup key changed under a started silver: a new checkpoint
    edit_yaml(spec, lambda s: s.update(dedup_key=["event_id", "user_id"]))
    code, out, _ = lakepipe_code(capsys, conf, "plan", "clickstream")
    assert code == 1 and "clickstream_events: new checkpoint: the dedup key changed (['event_id'] -> ['event_id', 'user_id'])" in out
