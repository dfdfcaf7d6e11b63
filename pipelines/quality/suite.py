"""Expectation suites (`schemas/<domain>/expectations.json`) in Great Expectations 1.x form, with actions.

Each expectation names its action in `meta.action`:
- `warn`: keep the row, count it (silver's `warnings` lists the rules a row broke);
- `drop`: discard the row, count it;
- `quarantine`: send the row to quarantine with the rule's name as a reason;
- `fail`: stop the query with an error naming the rule and up to 5 offending rows with their Kafka coordinates.
Row-level expectation types (see `pipelines.quality.row_rules`) are evaluated per row, in the parsing pass;
any other type is evaluated per micro-batch through Great Expectations and may only warn or fail.
The rule's name (the reason code) is `meta.name`, or `<type without expect_column_values_to_>:<column>`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.errors import ConfigError

ACTIONS = ("warn", "drop", "quarantine", "fail")
BATCH_ACTIONS = ("warn", "fail")
SUITE_KEYS = ("name", "id", "expectations", "suite_parameters", "meta", "notes")
EXPECTATION_KEYS = ("type", "kwargs", "meta", "id", "severity", "description", "rendered_content")
_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")


@dataclass(frozen=True)
class Rule:
    name: str
    type: str
    kwargs: Mapping[str, Any]
    action: str
    row_level: bool
    config: Mapping[str, Any]  # the expectation as written, for Great Expectations

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.kwargs[k] for k in ("column", "column_A", "column_B") if k in self.kwargs)


@dataclass(frozen=True)
class QualitySuite:
    name: str
    rules: tuple[Rule, ...]
    source: Path

    @property
    def row_rules(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.row_level)

    @property
    def batch_rules(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if not r.row_level)

    def rule(self, name: str) -> Rule:
        return next(r for r in self.rules if r.name == name)


def load_suite(path: Path) -> QualitySuite:
    """Read a suite; every problem is a ConfigError naming the file and the expectation."""
    from pipelines.quality.row_rules import ROW_RULES

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: expectation suite not found") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: an expectation suite is a JSON object")
    for k in data:
        if k not in SUITE_KEYS:
            raise ConfigError(f"{path}: unknown key '{k}' (known keys here: {', '.join(SUITE_KEYS)})")
    if not isinstance(data.get("name"), str) or not data["name"]:
        raise ConfigError(f"{path}: missing required key 'name'")
    rules = []
    for i, e in enumerate(data.get("expectations") or []):
        where = f"{path}: key 'expectations[{i}]'"
        if not isinstance(e, dict):
            raise ConfigError(f"{where} must be an object")
        unknown = [k for k in e if k not in EXPECTATION_KEYS]
        if unknown:
            raise ConfigError(f"{path}: unknown key 'expectations[{i}].{unknown[0]}'")
        _check_with_gx(where, e)
        meta = e.get("meta") or {}
        action = meta.get("action")
        if action not in ACTIONS:
            raise ConfigError(f"{where}: meta.action must be one of {', '.join(ACTIONS)}, not {action!r}")
        kind, kwargs = e["type"], dict(e.get("kwargs") or {})
        row_level = kind in ROW_RULES
        if not row_level and action not in BATCH_ACTIONS:
            raise ConfigError(
                f"{where}: {kind} cannot be evaluated per row, so its action must be warn or fail, not {action}"
            )
        name = meta.get("name") or _default_name(kind, kwargs)
        if not _NAME.match(name):
            raise ConfigError(f"{where}: rule name '{name}' may only hold letters, digits and _ . : -")
        rules.append(Rule(name, kind, kwargs, action, row_level, e))
    names = [r.name for r in rules]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{path}: rule names used twice: {', '.join(dupes)} (set meta.name to tell them apart)")
    return QualitySuite(data["name"], tuple(rules), path)


def _default_name(kind: str, kwargs: Mapping[str, Any]) -> str:
    short = re.sub(r"^expect_(column_values_to_|column_|table_)?", "", kind)
    column = kwargs.get("column") or kwargs.get("column_A")
    return f"{short}:{column}" if column else short


def _check_with_gx(where: str, e: dict) -> None:
    """Let Great Expectations itself build the expectation, so a suite we accept is one GX can load."""
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    if not isinstance(e.get("type"), str):
        raise ConfigError(f"{where}: missing required key 'type'")
    try:
        ExpectationConfiguration(type=e["type"], kwargs=e.get("kwargs") or {}, meta=e.get("meta")).to_domain_obj()
    except Exception as exc:  # noqa: BLE001 - GX raises many kinds; all mean the expectation is unusable
        message = str(getattr(exc, "message", exc)).splitlines()[0]
        raise ConfigError(f"{where}: Great Expectations cannot load {e['type']}: {message}") from None
