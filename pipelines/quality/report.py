"""What `lakepipe quality` shows: a summary per rule from `quality_results`, and Great Expectations Data Docs."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from pipelines.quality.suite import QualitySuite

SPARK_BARS = "▁▂▃▄▅▆▇█"
TREND_BATCHES = 12


def recorded(spark: SparkSession, path: str, table: str | None = None, since_seconds: float | None = None) -> DataFrame:
    rows = spark.read.format("delta").load(path)
    if table:
        rows = rows.where(F.col("table") == table)
    if since_seconds is not None:
        rows = rows.where(F.col("evaluated_at") >= F.current_timestamp() - F.make_interval(secs=F.lit(since_seconds)))
    return rows


def summary(results: DataFrame) -> list[dict]:
    """Per table and rule: batches, rows checked, rows failing (row rules) or failed batches, and a trend of the
    failure rate over the last batches, oldest first, as a sparkline."""
    rate = F.when(F.col("element_count") > 0, F.col("unexpected_count") / F.col("element_count"))
    rate = F.coalesce(rate, F.when(F.col("success"), 0.0).otherwise(1.0))
    recent = Window.partitionBy("table", "expectation").orderBy(F.desc("evaluated_at"), F.desc("batch_id"))
    ranked = results.withColumn("_rate", rate).withColumn("_n", F.row_number().over(recent))
    agg = ranked.groupBy("table", "expectation", "expectation_type", "action").agg(
        F.count(F.lit(1)).alias("batches"),
        F.sum("element_count").alias("rows_checked"),
        F.sum("unexpected_count").alias("rows_failing"),
        F.count(F.when(~F.col("success"), 1)).alias("failed_batches"),
        F.max_by("observed_value", "evaluated_at").alias("last_observed"),
        F.sort_array(F.collect_list(F.when(F.col("_n") <= TREND_BATCHES, F.struct(F.col("_n"), F.col("_rate"))))).alias("_trend"),
    )
    out = []
    for r in agg.orderBy("table", "expectation").collect():
        rates = [t["_rate"] for t in reversed(r["_trend"])]
        out.append({**{k: r[k] for k in agg.columns if not k.startswith("_")}, "trend": sparkline(rates)})
    return out


def sparkline(rates: list[float]) -> str:
    """Failure rates in [0, 1] as bars; an all-clear history is a flat line of the lowest bar."""
    top = max(rates, default=0.0)
    if top <= 0:
        return SPARK_BARS[0] * len(rates)
    return "".join(SPARK_BARS[min(len(SPARK_BARS) - 1, int(r / top * (len(SPARK_BARS) - 1) + 0.5))] for r in rates)


def build_docs(results: DataFrame, suites: Mapping[str, QualitySuite], out_dir: Path, last: int = 50) -> Path:
    """Great Expectations Data Docs (HTML) from the recorded results of the last `last` batches per table.

    The suites and one validation result per micro-batch go into a file-backed GX project in `out_dir`;
    GX renders them. Returns the index page.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
        ExpectationValidationResult,
    )
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    context = gx.get_context(mode="file", project_root_dir=str(out_dir))
    newest_first = Window.partitionBy("table").orderBy(F.desc(F.struct("evaluated_at", "batch_id", "query_id")))
    keyed = results.withColumn("_batch", F.dense_rank().over(newest_first))
    rows = keyed.where(F.col("_batch") <= last).orderBy("table", "evaluated_at").collect()
    for table, suite in suites.items():
        configs = [{"type": r.type, "kwargs": dict(r.kwargs), "meta": {"action": r.action, "name": r.name}} for r in suite.rules]
        context.suites.add_or_update(gx.ExpectationSuite(name=table, expectations=configs))
    groups: dict[tuple, list] = {}
    for r in rows:
        if r.table in suites:
            groups.setdefault((r.table, r.query_id, r.batch_id), []).append(r)
    for (table, query_id, batch_id), rs in groups.items():
        suite = suites[table]
        results_ = []
        for r in rs:
            rule = next((x for x in suite.rules if x.name == r.expectation), None)
            if rule is None:
                continue
            details = {"observed_value": json.loads(r.observed_value) if r.observed_value else None}
            if r.element_count is not None:
                details.update(element_count=r.element_count, unexpected_count=r.unexpected_count,
                               unexpected_percent=100.0 * (r.unexpected_count or 0) / max(r.element_count, 1))  # fmt: skip
            config = ExpectationConfiguration(type=rule.type, kwargs=dict(rule.kwargs), meta={"action": rule.action, "name": rule.name})
            results_.append(ExpectationValidationResult(success=r.success, expectation_config=config, result=details))
        run_id = RunIdentifier(run_name=f"batch {batch_id}", run_time=rs[0].evaluated_at)
        result = ExpectationSuiteValidationResult(
            success=all(x.success for x in results_), results=results_, suite_name=table,
            meta={"run_id": run_id, "active_batch_definition": {"datasource_name": "lakepipe", "data_asset_name": table,
                  "batch_definition_name": f"{query_id} batch {batch_id}"}},
        )  # fmt: skip
        key = ValidationResultIdentifier(ExpectationSuiteIdentifier(name=table), run_id, f"{query_id}-{batch_id}")
        context.validation_results_store.set(key, result)
    context.build_data_docs()
    index = next(out_dir.rglob("data_docs/local_site/index.html"), None)
    return index or out_dir
