"""Personal data: what silver and quarantine store for fields marked `pii: hash | mask | drop` (pure parts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from chispa import assert_df_equality

from pipelines.engine.pii import REDACTION_REGEX, Privacy, hashed, key_of, masked, privacy, redact_value
from pipelines.errors import ConfigError
from pipelines.model.config import PiiSettings
from pipelines.model.contract import Contract, FieldSpec
from pipelines.model.spec import resolve_spec

KEY = key_of("a test salt")
FIELDS = (
    FieldSpec("email", "string", pii="hash", path=("email", "after.email")),
    FieldSpec("phone", "string", pii="mask"),
    FieldSpec("note", "string", pii="drop"),
)


def test_hash_mask_and_drop_values():
    assert hashed("jane@example.com", KEY) == hashed("jane@example.com", KEY) != hashed("jane@example.com", key_of("x"))
    assert len(hashed("jane@example.com", KEY)) == 64 and "jane" not in hashed("jane@example.com", KEY)
    assert masked("+44 20 7946 0958") == "************0958"
    assert masked("1234567") == "*******", "shorter than 8: nothing shown"
    assert masked("") == ""
    assert key_of("a test salt") != key_of("another") and "a test salt" not in KEY


def test_silver_columns_match_the_python_values(spark):
    rows = [("jane@example.com", "+44 20 7946 0958", "likes tea", "k1"), ("é@ü.de", "1234567", None, "k2"),
            (None, None, "x", "k3")]  # fmt: skip
    df = spark.createDataFrame(rows, "email string, phone string, note string, id string")
    out = Privacy(FIELDS, KEY).silver(df)
    expected = spark.createDataFrame(
        [(None if e is None else hashed(e, KEY), None if p is None else masked(p), None, i) for e, p, _, i in rows],
        "email string, phone string, note string, id string",
    )
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)


def test_the_key_is_redacted_from_plans(spark):
    df = spark.createDataFrame([("jane@example.com",)], "email string")
    out = Privacy(FIELDS[:1], KEY).silver(df)
    plan = spark._jvm.PythonSQLUtils.explainString(out._jdf.queryExecution(), "extended")  # what df.explain prints
    assert "sha2" in plan and KEY not in plan and KEY[-64:] not in plan
    assert REDACTION_REGEX in spark.conf.get("spark.sql.redaction.string.regex")
    Privacy(FIELDS[:1], KEY).silver(df)
    assert spark.conf.get("spark.sql.redaction.string.regex").count(REDACTION_REGEX) == 1, "added once"


def test_nothing_to_protect_leaves_rows_as_they_are(spark):
    df = spark.createDataFrame([("a", b"{}")], "email string, value binary")
    assert Privacy().silver(df) is df and Privacy().quarantine(df) is df
    assert Privacy(FIELDS, KEY, raw_quarantine=True).quarantine(df) is df, "quarantine_raw_pii: true keeps the record"


def test_quarantined_values_are_protected_at_every_path():
    value = json.dumps({"email": "jane@example.com", "phone": "+44 20 7946 0958", "note": "likes tea", "n": 1}).encode()
    out = json.loads(redact_value(value, FIELDS, KEY))
    assert out == {"email": hashed("jane@example.com", KEY), "phone": "************0958", "n": 1}
    nulls = json.dumps({"email": None, "note": None, "n": 1}).encode()
    assert json.loads(redact_value(nulls, FIELDS, KEY)) == {"email": None, "n": 1}, "a dropped field goes, even null"
    change = json.dumps({"op": "u", "after": {"email": "jane@example.com", "id": 7}}).encode()
    assert json.loads(redact_value(change, FIELDS, KEY)) == {"op": "u", "after": {"email": hashed("jane@example.com", KEY), "id": 7}}
    wrapped = json.dumps({"schema": {}, "payload": {"email": "jane@example.com"}}).encode()
    assert json.loads(redact_value(wrapped, FIELDS, KEY, envelope=True))["payload"]["email"] == hashed("jane@example.com", KEY)
    typed_wrong = json.dumps({"email": 12345}).encode()
    assert json.loads(redact_value(typed_wrong, FIELDS, KEY)) == {"email": hashed("12345", KEY)}, "a bad_type value too"


@pytest.mark.parametrize("value", [b"not json jane@example.com", b'"jane@example.com"', b"[1, 2]", b"\xff\xfe"])
def test_a_value_whose_fields_cannot_be_found_is_not_kept(value):
    assert redact_value(value, FIELDS, KEY) is None
    assert redact_value(None, FIELDS, KEY) is None


def test_a_hash_field_needs_the_salt_from_the_environment(monkeypatch):
    contract = Contract("c", 1, FIELDS)
    monkeypatch.delenv("TEST_PII_SALT", raising=False)
    with pytest.raises(ConfigError, match=r"email is `pii: hash`.*TEST_PII_SALT \(pii.salt_env\) is not set: export TEST_PII_SALT="):
        privacy(contract, PiiSettings(salt_env="TEST_PII_SALT"))
    assert privacy(Contract("c", 1, FIELDS[1:]), PiiSettings(salt_env="TEST_PII_SALT")).key is None, "mask and drop need none"
    monkeypatch.setenv("TEST_PII_SALT", "s3cret")
    p = privacy(contract, PiiSettings(salt_env="TEST_PII_SALT"))
    assert p.key == key_of("s3cret") and p.redacts_quarantine
    assert not privacy(contract, PiiSettings(salt_env="TEST_PII_SALT", quarantine_raw_pii=True)).redacts_quarantine


@pytest.mark.parametrize(("field", "message"), [
    (dict(type="integer", pii="hash"), "on string fields"),
    (dict(type="string", pii="encrypt"), "pii is one of hash, mask, drop"),
])  # fmt: skip
def test_contract_rejects_pii_it_cannot_apply(field, message):
    with pytest.raises(ValueError, match=message):
        FieldSpec("f", **field)


def test_a_pii_dedup_key_is_refused(tmp_path: Path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "contract.yaml").write_text(
        "name: c\nversion: 1\nfields:\n  - {name: id, type: string, pii: hash}\n  - {name: t, type: timestamp}\n"
    )
    spec = tmp_path / "p.yaml"
    spec.write_text("name: p\ntopic: p\nkey: id\ncontract: s/contract.yaml\nevents_table: p_events\nevent_time: t\ndedup_key: id\n")
    with pytest.raises(ConfigError, match=r"field 'id' is `pii: hash` and p.yaml deduplicates silver by it"):
        resolve_spec(spec, tmp_path)
