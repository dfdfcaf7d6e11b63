"""Batch-level expectations (row counts, null fractions, distinct counts, means...) run through Great
Expectations on a micro-batch of silver rows, with its Spark execution engine."""

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


_PREPARED: dict[str, tuple] = {}  # suite rules (JSON) -> (batch definition, GX suite): made once per process
_PREPARED_LOCK = threading.Lock()


class BatchValidator:
    """Validates DataFrames against a suite's batch-level rules.

    The GX context, data asset and suite are made once per process for a given set of rules (~1 s on 2
    cores) and shared by every query and restart that uses them.
    """

    def __init__(self, suite: QualitySuite) -> None:
        self.suite = suite
        self._batch_definition = None
        self._gx_suite = None

    def _setup(self) -> None:
        key = json.dumps([self.suite.name, [_config(r) for r in self.suite.batch_rules]], sort_keys=True, default=str)
        with _PREPARED_LOCK:
            if key not in _PREPARED:
                _PREPARED[key] = _prepare(self.suite)
            self._batch_definition, self._gx_suite = _PREPARED[key]

    def validate(self, df: DataFrame) -> list[RuleResult]:
        if not self.suite.batch_rules:
            return []
        if self._batch_definition is None:
            self._setup()
        batch = self._batch_definition.get_batch(batch_parameters={"dataframe": df})
        result = batch.validate(self._gx_suite)
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
                    observed_value=None if observed is None else json.dumps(observed, default=str),
                )
            )
        return out


def _prepare(suite: QualitySuite) -> tuple:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = context.data_sources.add_spark(name="lakepipe", persist=False).add_dataframe_asset(name="micro_batch")
    batch_definition = asset.add_batch_definition_whole_dataframe("whole")
    return batch_definition, gx.ExpectationSuite(name=suite.name, expectations=[_config(r) for r in suite.batch_rules])


def _config(rule: Rule) -> dict:
    meta = dict(rule.config.get("meta") or {}, lakepipe_rule=rule.name)
    return {"type": rule.type, "kwargs": dict(rule.kwargs), "meta": meta}
