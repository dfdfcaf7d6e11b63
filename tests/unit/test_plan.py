"""`lakepipe plan`'s verdicts on silver's schema (pure: a pipeline loaded from the shipped specs, schemas made here)."""

from __future__ import annotations

import pytest
from pyspark.sql import types as T

from pipelines.engine.dedup import DEDUP_HASH
from pipelines.engine.silver import silver_schema
from pipelines.model.config import load_settings
from pipelines.model.project import load_project
from pipelines.ops.plan import COMPATIBLE, IMPOSSIBLE, NEW_CHECKPOINT, SCHEMA_CHANGE, identity, silver_verdicts
from tests.conftest import PROJECT_DIR


@pytest.fixture(scope="module")
def clickstream(tmp_path_factory):
    conf = tmp_path_factory.mktemp("conf")
    (conf / "e.yaml").write_text(f"specs_dir: {PROJECT_DIR / 'conf/pipelines'}\nschemas_dir: {PROJECT_DIR / 'schemas'}\n"
                                 f"lake: {{root: {conf / 'lake'}}}\n")  # fmt: skip
    return load_project(load_settings("e", conf), ["clickstream"]).pipeline("clickstream")


def built_as(p, **types: T.DataType) -> T.StructType:
    """Silver's schema now, with some fields as they were built (None: the field was not there)."""
    fields = [T.StructField(f.name, types.get(f.name, f.dataType)) for f in silver_schema(p.contract).fields]
    return T.StructType([f for f in fields if f.dataType is not None])


@pytest.mark.parametrize(
    "field, was, verdict",
    [
        ("quantity", T.IntegerType(), SCHEMA_CHANGE),  # int -> bigint widens
        ("quantity", T.DoubleType(), IMPOSSIBLE),  # double -> bigint loses the fraction
        ("price", T.DecimalType(16, 4), SCHEMA_CHANGE),  # more digits before the point
        ("price", T.DecimalType(18, 6), IMPOSSIBLE),  # fewer after it
        ("device", T.LongType(), IMPOSSIBLE),  # bigint -> string: another kind
    ],
)
def test_a_type_change_widens_in_place_or_is_impossible(clickstream, field, was, verdict):
    found = silver_verdicts(clickstream, built_as(clickstream, **{field: was}), None, started=True)
    assert [v.verdict for v in found] == [verdict], found
    assert found[0].detail.startswith(f"{field} {was.simpleString()} -> ")


def test_new_and_dropped_fields_are_compatible(clickstream):
    old = T.StructType([f for f in built_as(clickstream).fields if f.name != "referrer"] + [T.StructField("legacy", T.StringType())])
    details = sorted(v.detail for v in silver_verdicts(clickstream, old, None, started=True))
    assert details == ["column legacy is no longer in the contract: it stays, null from now on",
                       "gains column referrer (string; null in the rows before)"]  # fmt: skip
    assert {v.verdict for v in silver_verdicts(clickstream, old, None, started=True)} == {COMPATIBLE}


def test_a_silver_created_before_the_dedup_hash_is_unchanged(clickstream):
    old = T.StructType([f for f in built_as(clickstream).fields if f.name != DEDUP_HASH])  # (lakepipe does not add it)
    assert [(v.verdict, v.detail) for v in silver_verdicts(clickstream, old, None, started=True)] == [(COMPATIBLE, "unchanged")]


def test_the_identity_counts_only_under_a_started_silver(clickstream):
    built = {**identity(clickstream), "dedup_key": ["id"]}
    now = built_as(clickstream)
    assert [v.verdict for v in silver_verdicts(clickstream, now, built, started=True)] == [NEW_CHECKPOINT]
    assert [v.detail for v in silver_verdicts(clickstream, now, built, started=False)] == ["unchanged"]


def test_a_tables_schema_is_read_from_its_log_past_a_checkpoint(spark, tmp_path):
    from pipelines.ops.plan import table_schema

    path = str(tmp_path / "t")
    spark.range(1).selectExpr("id", "'a' AS name").write.format("delta").save(path)
    for _ in range(10):  # version 10 is a checkpoint: the schema is then read from it, not from commit 0
        spark.range(1).selectExpr("id", "'b' AS name").write.format("delta").mode("append").save(path)
    assert (tmp_path / "t" / "_delta_log" / "_last_checkpoint").is_file()
    assert [f.name for f in table_schema(path).fields] == ["id", "name"]
    spark.range(1).selectExpr("id", "'c' AS name", "1.5 AS score").write.format("delta").mode("append") \
        .option("mergeSchema", "true").save(path)
    assert [(f.name, f.dataType.simpleString()) for f in table_schema(path).fields][-1] == ("score", "decimal(2,1)")
    assert table_schema(str(tmp_path / "none")) is None
