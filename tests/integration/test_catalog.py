"""Tables by name: a run registers them in the catalog, and another application (a new JVM) resolves them.

The end-to-end case runs inside tests/integration/test_spark_submit.py (its job registers every table it wrote
under a schema per layer; `check_catalog` then reads them by name from a second Spark application, through the
metastore database in the lake root that the local metastore server keeps). Here: registering is idempotent,
follows a moved table without touching its files, and a missing metastore server is one line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from pipelines.model.config import load_settings
from tests.conftest import PROJECT_DIR, write_conf
from tests.integration.test_cli_errors import lakepipe

# Run as a new application: the names must come from the metastore, not from the registering process.
READER = """
import json, sys
from pipelines.model.config import load_settings
from pipelines.model.project import load_project
from pipelines.ops.catalog import register
from pipelines.platform.session import get_spark

project = load_project(load_settings("test", sys.argv[1]), ["clickstream"])
spark = get_spark(project.settings, "catalog-reader")
one = lambda q: spark.sql(q).first()
describe = {r.col_name: r.comment for r in spark.sql("DESCRIBE TABLE lakepipe_silver.clickstream_events").collect()}
details = {r.col_name: r.data_type for r in spark.sql("DESCRIBE TABLE EXTENDED lakepipe_gold.clickstream_sessions").collect()}
out = {
    "schemas": sorted(r[0] for r in spark.sql("SHOW SCHEMAS LIKE 'lakepipe_*'").collect()),
    "silver": one("SELECT count(*) FROM lakepipe_silver.clickstream_events")[0],
    "bronze": one("SELECT count(DISTINCT partition, offset) FROM lakepipe_bronze.clickstream_events_raw")[0],
    "session_events": one("SELECT sum(events) FROM lakepipe_gold.clickstream_sessions")[0],
    "batches": one("SELECT sum(bronze_records) FROM lakepipe_audit.clickstream_silver_batches")[0],
    "event_id_comment": describe.get("event_id"),
    "sessions_comment": details.get("Comment"),
    "registered_again": register(spark, project.settings, project.tables),
}
print("RESULT " + json.dumps(out))
"""


def read_back(conf: Path) -> dict:
    script = conf.parent / "reader.py"  # a file: under `python -c`, PySpark takes the script for its own doctests
    script.write_text(READER)
    result = subprocess.run([sys.executable, str(script), str(conf)], cwd=PROJECT_DIR, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "PYTHONPATH": str(PROJECT_DIR)})  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(next(ln for ln in result.stdout.splitlines() if ln.startswith("RESULT "))[7:])


def check_catalog(conf: Path, settings, silver_rows: int, bronze_rows: int) -> None:  # noqa: ANN001
    """After a run with the catalog on (tests/integration/test_spark_submit.py): a new application resolves every
    layer's names from the metastore in the lake root, with the contract's and the spec's comments."""
    assert (Path(settings.lake_root) / "_catalog" / "metastore_db").is_dir(), "the catalog lives in the lake root"
    got = read_back(conf)
    assert got["schemas"] == ["lakepipe_audit", "lakepipe_bronze", "lakepipe_gold", "lakepipe_quarantine", "lakepipe_silver"]
    assert got["silver"] == silver_rows == got["session_events"]
    assert got["bronze"] == got["batches"] == bronze_rows
    contract_text = next(f.description for f in load_contract_fields() if f.name == "event_id")
    assert got["event_id_comment"] == contract_text, "column comments come from the contract"
    assert got["sessions_comment"] == settings_spec_description("clickstream_sessions"), "table comments come from the spec"
    assert got["registered_again"] == [], "registering again changes nothing"


def settings_spec_description(output: str) -> str:
    from pipelines.model.spec import load_spec

    return next(o.description for o in load_spec(PROJECT_DIR / "conf/pipelines/clickstream.yaml").outputs if o.name == output)


def load_contract_fields():  # noqa: ANN201
    from pipelines.model.contract import contract_path, load_contract

    return load_contract(contract_path(PROJECT_DIR / "schemas", "clickstream")).fields


def test_sql_needs_the_metastore_server(tmp_path):
    conf = write_conf(tmp_path / "conf", "test.unused", catalog=True)
    with open(conf / "test.yaml", "a") as f:
        f.write("local_metastore:\n  port: 1\n")  # nothing answers on port 1
    result = lakepipe("sql", "SELECT 1", "--conf-dir", str(conf), "--env", "test")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    line = [ln for ln in result.stderr.splitlines() if ln.startswith("lakepipe: ")]
    assert line == [f"lakepipe: the local catalog's metastore server does not answer at 127.0.0.1:1: start it with "
                    f"`lakepipe up` (or turn the catalog off with catalog.enabled: false in {conf / 'test.yaml'})"]  # fmt: skip



def test_registering_is_idempotent_and_follows_a_moved_table(spark, tmp_path):
    """In the tests' own session (Spark's in-memory catalog): the same calls as with the local metastore."""
    import dataclasses

    from pipelines.engine.delta_io import ensure_table
    from pipelines.model.config import CatalogSettings
    from pipelines.model.layout import Table
    from pipelines.ops.catalog import register

    base = load_settings("test", write_conf(tmp_path / "conf", "test.unused"))
    prefix = f"t{tmp_path.name[-6:].replace('-', '_')}"
    settings = dataclasses.replace(base, file=dataclasses.replace(base.file, catalog=CatalogSettings(schema_prefix=prefix)))
    first = Table("events", "gold", "p", str(tmp_path / "a" / "events"), comment="first place")
    other = Table("other", "silver", "p", str(tmp_path / "a" / "other"))
    unwritten = Table("later", "gold", "p", str(tmp_path / "a" / "later"))
    for t in (first, other):
        ensure_table(spark, t.path, spark.range(1).schema, comment=t.comment)
        spark.range(3).write.format("delta").mode("append").save(t.path)
    assert register(spark, settings, [first, other, unwritten]) == [f"{prefix}_gold.events", f"{prefix}_silver.other"]
    assert register(spark, settings, [first, other, unwritten]) == [], "a second registration changes nothing"
    assert spark.sql(f"SELECT count(*) FROM {prefix}_gold.events").first()[0] == 3

    shutil.copytree(tmp_path / "a" / "events", tmp_path / "b" / "events")  # the table moved (a copy: old files kept)
    spark.range(5).write.format("delta").mode("append").save(str(tmp_path / "b" / "events"))
    moved = dataclasses.replace(first, path=str(tmp_path / "b" / "events"))
    assert register(spark, settings, [moved, other]) == [f"{prefix}_gold.events"]
    assert spark.sql(f"SELECT count(*) FROM {prefix}_gold.events").first()[0] == 8, "the name follows the table"
    assert spark.read.format("delta").load(first.path).count() == 3, "the old location's files are untouched"
    spark.sql(f"DROP SCHEMA {prefix}_gold CASCADE")
    spark.sql(f"DROP SCHEMA {prefix}_silver CASCADE")
