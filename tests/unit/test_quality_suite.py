"""Expectation suites: the shipped ones load (and GX accepts them), every mistake is one error naming the
file and the expectation, and row rules evaluate per row like Great Expectations (nulls skip value rules)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipelines.errors import ConfigError
from pipelines.quality.row_rules import apply_row_rules
from pipelines.quality.suite import load_suite
from tests.conftest import CONTRACTS, PROJECT_DIR


@pytest.mark.parametrize("path", sorted(CONTRACTS.glob("*/expectations.json")), ids=lambda p: p.parent.name)
def test_shipped_suites_load_and_gx_reads_them(path):
    import great_expectations as gx

    suite = load_suite(path)
    data = json.loads(path.read_text())
    gx_suite = gx.ExpectationSuite(name=data["name"], expectations=data["expectations"])
    assert len(gx_suite.expectations) == len(suite.rules) == len(data["expectations"])


def write_suite(tmp_path, *expectations):
    path = tmp_path / "suite.json"
    path.write_text(json.dumps({"name": "t", "expectations": list(expectations)}))
    return path


def exp(kind, action="quarantine", **kwargs):
    return {"type": kind, "kwargs": kwargs, "meta": {"action": action}}


@pytest.mark.parametrize(
    "expectation, message",
    [
        (exp("expect_table_row_count_to_be_between", min_value=1),
         "expect_table_row_count_to_be_between cannot be evaluated per row, so its action must be warn or fail, not quarantine"),
        (exp("expect_column_mean_to_be_between", action="drop", column="price", min_value=1),
         "cannot be evaluated per row"),
        (exp("expect_column_values_to_not_be_null", action="shout", column="x"), "meta.action must be one of"),
        (exp("expect_column_values_to_be_between", column="price", min_value=1) | {"colour": "red"},
         "unknown key 'expectations[0].colour'"),
        (exp("expect_column_values_to_be_purple", column="price"), "Great Expectations cannot load"),
        (exp("expect_column_values_to_be_in_set", column="price"), "Great Expectations cannot load"),
    ],
)
def test_suite_mistakes_are_named(tmp_path, expectation, message):
    path = write_suite(tmp_path, expectation)
    with pytest.raises(ConfigError) as err:
        load_suite(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_rule_names_must_be_unique(tmp_path):
    e = exp("expect_column_values_to_not_be_null", column="x")
    with pytest.raises(ConfigError, match="rule names used twice: not_be_null:x"):
        load_suite(write_suite(tmp_path, e, e))


def test_validate_rejects_a_batch_expectation_with_a_row_action(tmp_path):
    schemas = tmp_path / "schemas"
    (schemas / "clickstream").mkdir(parents=True)
    (schemas / "clickstream" / "contract.yaml").write_text((CONTRACTS / "clickstream" / "contract.yaml").read_text())
    bad = {"name": "c", "expectations": [exp("expect_column_unique_value_count_to_be_between", column="user_id", min_value=2)]}
    (schemas / "clickstream" / "expectations.json").write_text(json.dumps(bad))
    (tmp_path / "v.yaml").write_text(f"schemas_dir: {schemas}\nspecs_dir: {PROJECT_DIR / 'conf' / 'pipelines'}\n")
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "validate", "--conf-dir", str(tmp_path), "--env", "v"],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("FAIL clickstream"))
    assert "expect_column_unique_value_count_to_be_between cannot be evaluated per row" in line


def test_unknown_column_is_named(tmp_path):
    from pipelines.model.spec import resolve_spec

    schemas = tmp_path / "schemas"
    (schemas / "clickstream").mkdir(parents=True)
    (schemas / "clickstream" / "contract.yaml").write_text((CONTRACTS / "clickstream" / "contract.yaml").read_text())
    suite = {"name": "c", "expectations": [exp("expect_column_values_to_not_be_null", column="colour")]}
    (schemas / "clickstream" / "expectations.json").write_text(json.dumps(suite))
    with pytest.raises(ConfigError, match="rule 'not_be_null:colour' names column 'colour', which silver does not have"):
        resolve_spec(PROJECT_DIR / "conf" / "pipelines" / "clickstream.yaml", schemas)


def test_row_rules_per_action_and_null_semantics(spark, tmp_path):
    suite = load_suite(write_suite(
        tmp_path,
        exp("expect_column_values_to_be_between", column="n", min_value=0, max_value=10),
        exp("expect_column_values_to_match_regex", action="warn", column="s", regex="^a"),
        exp("expect_column_value_lengths_to_be_between", action="drop", column="s", max_value=3),
        exp("expect_column_values_to_not_be_null", action="fail", column="n"),
        exp("expect_column_pair_values_a_to_be_greater_than_b", column_A="n", column_B="m", or_equal=True),
    ))  # fmt: skip
    rows = [(1, 0, "abc", []), (11, 20, "bcdef", []), (None, None, None, []), (5, 5, "a", ["invalid_json"])]
    df = spark.createDataFrame(rows, "n long, m long, s string, reasons array<string>")
    out = apply_row_rules(df, suite.row_rules).orderBy(df.n.asc_nulls_last()).collect()
    got = [(r.reasons, r.warnings, r._dropped_by, r._failed_by) for r in out]
    assert got == [
        ([], [], [], []),  # n=1: clean
        (["invalid_json"], [], [], []),  # n=5: not parsed, so not checked by rules: keeps its parsing reason only
        (["be_between:n", "pair_values_a_to_be_greater_than_b:n"], ["match_regex:s"], ["value_lengths_to_be_between:s"], []),
        ([], [], [], ["not_be_null:n"]),  # nulls break only the null rule
    ]
