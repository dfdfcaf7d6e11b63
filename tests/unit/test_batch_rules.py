"""Batch rules give the same results through Great Expectations' pandas engine (small micro-batches) as through its
Spark engine (large ones), for every suite we ship, on data with nulls, repeats, and on an empty batch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyspark.sql import functions as F

import pipelines.quality.batch_rules as batch_rules
from pipelines.model.contract import contract_path, load_contract
from pipelines.quality.batch_rules import BatchValidator, needed_columns
from pipelines.quality.suite import Rule, load_suite
from tests.conftest import CONTRACTS

SCHEMAS = Path(CONTRACTS)
SUITES = sorted(p.parent.name for p in SCHEMAS.glob("*/expectations.json"))


def _column(name: str, spark_type) -> F.Column:  # noqa: ANN001
    """Values of `spark_type` from the row id: repeats (id % 7), a null every third row."""
    value = (F.col("id") % 7).cast(spark_type) if spark_type.typeName() != "string" else F.concat(F.lit("v"), (F.col("id") % 7).cast("string"))
    if spark_type.typeName() in ("timestamp", "date"):
        value = F.timestamp_seconds(F.col("id") * 60).cast(spark_type)
    return F.when(F.col("id") % 3 == 0, F.lit(None).cast(spark_type)).otherwise(value).alias(name)


def _summary(results) -> list[tuple]:  # noqa: ANN001
    return [(r.rule.name, r.success, r.element_count, r.unexpected_count, r.observed_value) for r in results]


@pytest.mark.parametrize("name", SUITES)
def test_pandas_and_spark_engines_agree(spark, name: str) -> None:
    suite = load_suite(SCHEMAS / name / "expectations.json")
    if not suite.batch_rules:
        pytest.skip(f"{name}: no batch rules")
    contract = load_contract(contract_path(CONTRACTS, name))
    df = spark.range(200).select(*[_column(f.name, f.dataType) for f in contract.spark_schema.fields]).cache()
    validator = BatchValidator(suite)
    for data in (df, df.where(F.lit(False))):  # and an empty batch
        spark_side = _summary(validator.validate(data, engine="spark"))
        pandas_side = _summary(validator.validate(data, engine="pandas"))
        assert len(spark_side) == len(suite.batch_rules)
        assert pandas_side == spark_side
    df.unpersist()


def test_small_batches_go_to_pandas_and_large_ones_stay_in_spark(spark, monkeypatch) -> None:
    suite = load_suite(SCHEMAS / "clickstream" / "expectations.json")
    df = spark.range(10).select(F.col("id").cast("int").alias("quantity"), F.lit("view").alias("event_type"))
    prepared: dict = {}
    monkeypatch.setattr(batch_rules, "_PREPARED", prepared)
    validator = BatchValidator(suite)
    validator.validate(df, rows=10)
    assert [json.loads(k)[0] for k in prepared] == ["pandas"]
    validator.validate(df, rows=batch_rules.PANDAS_MAX_ROWS + 1)
    validator.validate(df)  # no count known: Spark
    assert [json.loads(k)[0] for k in prepared] == ["pandas", "spark"]


def test_needed_columns() -> None:
    def rule(kind: str, **kwargs) -> Rule:  # noqa: ANN003
        return Rule("r", kind, kwargs, "warn", False, {})

    columns = ["a", "b", "c", "d"]
    assert needed_columns((rule("expect_table_row_count_to_be_between", min_value=1),), columns) == []
    assert needed_columns((rule("expect_column_mean_to_be_between", column="c"),
                           rule("expect_column_pair_values_to_be_equal", column_A="a", column_B="b")), columns) == ["a", "b", "c"]  # fmt: skip
    assert needed_columns((rule("expect_compound_columns_to_be_unique", column_list=["d", "a"]),), columns) == ["a", "d"]
    assert needed_columns((rule("expect_table_columns_to_match_set", column_set=["a"]),), columns) == columns


def test_row_count_rules_with_a_known_count_read_no_rows(spark) -> None:
    """The customers suite's only batch rule is a row count: given the count, no Spark job reads the batch, and the
    results are the Spark engine's (a non-empty batch, and an empty one that breaks the rule)."""
    suite = load_suite(SCHEMAS / "customers" / "expectations.json")
    assert {r.type for r in suite.batch_rules} == {"expect_table_row_count_to_be_between"}
    validator = BatchValidator(suite)
    sc = spark.sparkContext
    for n in (37, 0):
        df = spark.range(n).select(F.col("id").alias("customer_id"))
        sc.setJobGroup(f"row-count-{n}", "row count")
        try:
            ours = _summary(validator.validate(df, rows=n))
        finally:
            sc.setLocalProperty("spark.jobGroup.id", None)
        assert sc.statusTracker().getJobIdsForGroup(f"row-count-{n}") == []
        assert ours == _summary(validator.validate(df, engine="spark"))
        assert ours[0][1] is (n > 0)
