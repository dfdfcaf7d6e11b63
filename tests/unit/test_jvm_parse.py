"""The JVM parse (infra/jsonparse) against the SQL parse: every contract, the simulators' records with their
faults, each field given every kind of JSON value, and documents that are not quite JSON objects. Both read the
same bytes; every column of every row must be equal."""

from __future__ import annotations

import datetime as dt
import itertools
import json

import pytest
from pyspark.sql import functions as F

from pipelines.domains.clickstream.simulator import ClickstreamGenerator
from pipelines.domains.customers.simulator import CdcGenerator
from pipelines.domains.iot.simulator import IotGenerator
from pipelines.domains.orders.simulator import OrdersGenerator
from pipelines.domains.payments.simulator import PaymentsGenerator
from pipelines.engine import validation
from pipelines.engine.validation import parse_records
from pipelines.model.contract import contract_path, load_contract
from tests.conftest import CONTRACTS
from tests.unit.test_validation import raw

START = dt.datetime(2026, 11, 22, 10, tzinfo=dt.UTC)
GENERATORS = {
    "clickstream": lambda: ClickstreamGenerator(start=START),
    "customers": lambda: CdcGenerator(start=START),
    "iot": lambda: IotGenerator(start=START),
    "orders": lambda: OrdersGenerator(start=START),
    "payments": lambda: PaymentsGenerator(start=START),
}
# What a field may be given: each JSON type, edge numbers, texts in and out of the contract's formats.
VALUES = [
    None, "", "x", "EUR", "ÄÖ 漢字", "\ud800", 0, -1, 7, 2**31, 2**53 + 1, 2**63, -(2**63) - 1, 10**40, 1.5, -0.0, 3.0,
    12.50, 0.1, 1e2, 2.5e-3, 1e308, True, False, {"a": 1}, [1, "a"], [], {}, "12.50", "12.123456789", "-0.5", "1e3",
    "2026-11-22T10:15:00.250+01:00", "2026-11-22T10:15:00Z", "2026-11-22", "2026-13-45", "2026-11-22T25:00:00Z",
    "AQ==", "/w==", "AAAAAAAAAAE=", "AQ=", "not base64!", 1795341600000, 20000, -5,
]  # fmt: skip
# Numbers as JSON text, written in ways Python's json never writes (exponents, many digits, not quite numbers).
NUMBER_TEXTS = [
    "1.0e2", "1E1", "-2.5E-3", "1e30", "9007199254740993e0", "1.0e-400", "1e400", "0e0", "-0", "100.000", "00", "1.",
    ".5", "12345678901234567890123456789012345678901", "1.2345678901234567890123456789012345678901", "2.50e1",
]  # fmt: skip
# Whole documents: not JSON, not an object, nearly JSON, JSON with what Spark's parser refuses.
DOCUMENTS = [
    b"", b"   ", b"{", b"}", b"[1,2]", b"7", b"null", b'"text"', b"{'a': 1}", b'{"a": 1,}', b'{"a": NaN}',
    b'{"a": 1} {"b": 2}', b'{"a": 1} trailing', b'{"a": 1, "a": 2}', b'{"a": {"b": 1, "b": 2}}', b"\xff\xfe{}",
    b'{"event_id": "\\ud800"}', b'\xef\xbb\xbf{"a": 1}', b'  {"a": 1}\n', b'\t{}', b'\x0b{}', b'{"a": ' + b"[" * 2000,
]  # fmt: skip


def _corpus(name: str) -> list[bytes | None]:
    events = list(itertools.islice(GENERATORS[name]().events(), 300))
    values = [e.value for e in events]
    base = next(e.payload() for e in events if not e.reasons and e.payload())
    contract = load_contract(contract_path(CONTRACTS, name))
    for f in contract.fields:
        for path in f.json_paths:
            *parents, leaf = path.split(".")
            for v in [*VALUES, *NUMBER_TEXTS]:
                doc = json.loads(json.dumps(base))
                node = doc
                for p in parents:
                    node[p] = node[p] if isinstance(node.get(p), dict) else {}
                    node = node[p]
                node[leaf] = "<number>" if v in NUMBER_TEXTS else v
                values.append(json.dumps(doc).replace('"<number>"', str(v)).encode())
            without = json.loads(json.dumps(base))
            without.pop(path.split(".")[0], None)
            values.append(json.dumps(without).encode())
    for extra in ({"unknown": 1}, {"nested": {"x": [1, 2]}}, {"ts_ms": 5}):
        values.append(json.dumps({**base, **extra}).encode())
        for obj in contract.extra_in:
            if isinstance(base.get(obj), dict):
                values.append(json.dumps({**base, obj: {**base[obj], **extra}}).encode())
            values.append(json.dumps({**base, obj: list(extra)}).encode())
    values += [json.dumps({"schema": {"type": "struct"}, "payload": base}).encode(), None, *DOCUMENTS]
    return values


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_the_jvm_parse_gives_the_sql_parse_rows(spark, name):
    contract = load_contract(contract_path(CONTRACTS, name))
    records = raw(spark, *_corpus(name))
    jvm, sql = (_rows(parse_records(records, contract, parse)) for parse in ("jvm", "sql"))
    assert len(jvm) == len(sql) > 300
    differing = [(i, a, b) for i, (a, b) in enumerate(zip(jvm, sql)) if a != b]
    assert not differing, f"{len(differing)} rows differ; first (jvm, sql): {differing[0]}"
    rows = [json.loads(r) for r in sql]
    reasons = {code.split(":")[0] for r in rows for code in r["reasons"]}
    assert {"invalid_json", "not_an_object", "missing", "bad_type"} <= reasons, reasons
    assert any(r.get("extra") for r in rows) and any(not r["reasons"] for r in rows)


def _rows(df) -> list[str]:
    """Each row as JSON text, in offset order (some typed values, e.g. epoch ms 2^53, are beyond Python's dates)."""
    return [r[0] for r in df.orderBy("offset").select(F.to_json(F.struct("*"))).collect()]


def test_a_parse_that_is_neither_jvm_nor_sql_is_refused(spark, clickstream_contract):
    with pytest.raises(ValueError, match="parse is one of auto, jvm, sql, not 'fast'"):
        parse_records(raw(spark, b"{}"), clickstream_contract, "fast")


def test_without_the_jar_auto_parses_with_sql_and_says_so_once(spark, clickstream_contract, monkeypatch, caplog):
    monkeypatch.setattr(validation, "JVM_PARSE_CLASS", "io.lakepipe.json.NotThere")
    monkeypatch.setattr(validation, "JVM_PARSE_FUNCTION", "lakepipe_not_there")
    monkeypatch.setattr(validation, "_NO_JVM_PARSE", set())
    with caplog.at_level("WARNING", logger="lakepipe.validation"):
        rows = [parse_records(raw(spark, b'{"event_id": "e"}'), clickstream_contract).collect() for _ in range(2)]
    assert rows[0] == rows[1] and "missing:event_type" in rows[0][0].reasons
    warnings = [r.getMessage() for r in caplog.records if r.name == "lakepipe.validation"]
    assert len(warnings) == 1 and "io.lakepipe.json.NotThere is not on Spark's classpath" in warnings[0], warnings
