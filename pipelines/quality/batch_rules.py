"""Batch-level expectations (row counts, null fractions, distinct counts, means...) run through Great
Expectations on a micro-batch of silver rows.

A micro-batch of up to `PANDAS_MAX_ROWS` rows is validated by GX's pandas execution engine on a copy of only the
columns the rules read (one Spark job to collect them through Arrow): GX's Spark engine runs a Spark job or more
per metric, seconds per micro-batch when the queries of a pipeline share a few cores. A larger batch (a backfill,
a first run over a backlog) stays in Spark. Both engines are GX's own and give the same results
(`tests/unit/test_batch_rules.py` compares them on every shipped suite).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame

from pipelines.quality.suite import QualitySuite, Rule


@dataclass(frozen=True)
class RuleResult:
    rule: Rule
    success: bool
    element_count: int | None
    unexpected_count: int | None
    observed_value: str | None  # JSON text


PANDAS_MAX_ROWS = 1_000_000
_ALL_COLUMNS_TABLE_RULES = ("expect_table_row_count_to_be_between", "expect_table_row_count_to_equal")
_PREPARED: dict[str, tuple] = {}  # (engine, suite rules as JSON) -> (batch definition, GX suite): once per process
_PREPARED_LOCK = threading.Lock()


class BatchValidator:
    """Validates DataFrames against a suite's batch-level rules.

    The GX context, data asset and suite are made once per process for a given set of rules (~1 s on 2
    cores) and shared by every query and restart that uses them.
    """

    def __init__(self, suite: QualitySuite) -> None:
        self.suite = suite

    def _prepared(self, engine: str) -> tuple:
        key = json.dumps([engine, self.suite.name, [_config(r) for r in self.suite.batch_rules]], sort_keys=True, default=str)
        with _PREPARED_LOCK:
            if key not in _PREPARED:
                _PREPARED[key] = _prepare(self.suite, engine)
            return _PREPARED[key]

    def validate(self, df: DataFrame, rows: int | None = None, engine: str | None = None) -> list[RuleResult]:
        """The batch rules' results on `df`; `rows` (its row count, when known) lets a small batch go to the
        pandas engine, and rules of the row count alone run without reading `df`. `engine` ("spark" or "pandas")
        forces one."""
        if not self.suite.batch_rules:
            return []
        if engine is None:
            engine = "pandas" if rows is not None and rows <= PANDAS_MAX_ROWS else "spark"
        data: Any = df
        if engine == "pandas":
            columns = needed_columns(self.suite.batch_rules, df.columns)
            if columns:
                data = df.select(*columns).toPandas()
            elif rows is not None:  # rules of the row count alone: a frame of that many rows, without a Spark job
                import pandas as pd

                data = pd.DataFrame({"_row": pd.Series(1, index=range(rows), dtype="int8")})
            else:
                data = df.selectExpr("1 AS _row").toPandas()
        batch_definition, gx_suite = self._prepared(engine)
        result = batch_definition.get_batch(batch_parameters={"dataframe": data}).validate(gx_suite)
        by_name = {r.name: r for r in self.suite.batch_rules}
        out = []
        for r in result.results:
            name = (r.expectation_config.meta or {}).get("lakepipe_rule")
            details: dict[str, Any] = r.result or {}
            observed = details.get("observed_value")
            out.append(
                RuleResult(
                    rule=by_name[name],
                    success=bool(r.success),
                    element_count=details.get("element_count"),
                    unexpected_count=details.get("unexpected_count"),
                    observed_value=None if observed is None else json.dumps(_plain(observed), default=str),
                )
            )
        return out


def needed_columns(rules: tuple[Rule, ...], columns: list[str]) -> list[str]:
    """The columns `rules` read, in `columns`' order: every column for a rule whose columns we cannot tell."""
    needed: set[str] = set()
    for r in rules:
        named = [*r.columns, *r.kwargs.get("column_list", ())]
        if not named and r.type not in _ALL_COLUMNS_TABLE_RULES:
            return list(columns)
        needed.update(named)
    return [c for c in columns if c in needed]


def _plain(value: Any) -> Any:
    """numpy scalars (the pandas engine's observed values) as Python ones, so both engines' results read alike."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        return value.item()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _prepare(suite: QualitySuite, engine: str) -> tuple:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    sources = context.data_sources
    source = sources.add_pandas(name="lakepipe") if engine == "pandas" else sources.add_spark(name="lakepipe", persist=False)
    asset = source.add_dataframe_asset(name="micro_batch")
    batch_definition = asset.add_batch_definition_whole_dataframe("whole")
    return batch_definition, gx.ExpectationSuite(name=suite.name, expectations=[_config(r) for r in suite.batch_rules])


def _config(rule: Rule) -> dict:
    meta = dict(rule.config.get("meta") or {}, lakepipe_rule=rule.name)
    return {"type": rule.type, "kwargs": dict(rule.kwargs), "meta": meta}
