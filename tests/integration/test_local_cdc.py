"""The real change-data-capture source: PostgreSQL 15 and Debezium 3.6 on Kafka Connect, as `lakepipe cdc up`
runs them, and what the connector really writes to Kafka for each kind of change.

These are the shapes the customers pipeline must handle (issue 17): snapshot reads that all share one LSN,
c/u/d envelopes, a tombstone after each delete, full or key-only `before` images, several changes in one
transaction, timestamps as ISO text and numeric columns as base64 bytes.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import uuid
from decimal import Decimal

import pytest
from confluent_kafka import Consumer, KafkaError

from pipelines.model.config import load_settings
from pipelines.platform import local_cdc
from tests.conftest import PROJECT_DIR, write_conf

pytestmark = pytest.mark.kafka


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module", params=[False, True], ids=["plain-json", "json-with-schemas"])
def cdc(request, tmp_path_factory, kafka):
    """PostgreSQL and Connect on ports and topics of their own, with the JsonConverter's `schemas.enable` false
    and then true; state under the project (the `postgres` user must reach it, which pytest's private temporary
    folders do not allow)."""
    name = uuid.uuid4().hex[:8]
    state = PROJECT_DIR / ".lakepipe" / f"test-cdc-{name}"
    conf = write_conf(tmp_path_factory.mktemp("cdc") / "conf", "unused")
    with open(conf / "test.yaml", "a", encoding="utf-8") as f:
        f.write(f"local_cdc:\n  postgres_port: {free_port()}\n  connect_port: {free_port()}\n"
                f"  topic_prefix: test{name}\n  state_dir: {state}\n  value_schemas: {str(request.param).lower()}\n")  # fmt: skip
    settings = load_settings("test", conf)
    try:
        lines = local_cdc.start(settings)
        assert lines[0].startswith("PostgreSQL started") and lines[1].startswith("Kafka Connect started"), lines
        yield settings
    finally:
        local_cdc.stop(settings)
        shutil.rmtree(state, ignore_errors=True)


def read(settings, table: str, n: int, timeout: float = 60, unwrap: bool = True) -> list[tuple[dict, dict | None]]:
    """The first `n` records of the table's topic: (key, value or None for a tombstone); the `payload` of a
    value written with `schemas.enable=true` unless `unwrap` is false."""
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": uuid.uuid4().hex,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})  # fmt: skip
    consumer.subscribe([local_cdc.topic(settings, table)])
    out = []
    try:
        waited = 0.0
        while len(out) < n and waited < timeout:
            m = consumer.poll(1)
            if m is None or (m.error() and m.error().code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
                waited += 1  # the connector creates a table's topic with its first change
                continue
            assert m.error() is None, m.error()
            value = json.loads(m.value()) if m.value() is not None else None
            if unwrap and isinstance(value, dict) and set(value) == {"schema", "payload"}:
                value = value["payload"]
            out.append((json.loads(m.key()), value))
    finally:
        consumer.close()
    assert len(out) == n, f"{len(out)} of {n} records arrived: {out[-3:]}"
    return out


def test_snapshot_reads_share_one_lsn_and_carry_iso_timestamps(cdc):
    wrapped = [set(v) == {"schema", "payload"} for _, v in read(cdc, "customers", 20, unwrap=False)]
    assert wrapped == [cdc.local_cdc.value_schemas] * 20
    records = read(cdc, "customers", 20)
    assert [k["customer_id"] for k, _ in records] == [f"u{i:05d}" for i in range(1, 21)]
    assert {v["op"] for _, v in records} == {"r"}
    assert len({v["source"]["lsn"] for _, v in records}) == 1, "every snapshot row has the same source.lsn"
    after = records[0][1]["after"]
    assert after["created_at"].endswith("Z") and "T" in after["created_at"], after  # timestamptz: ISO-8601 text


def test_changes_arrive_as_envelopes_with_tombstones_and_transactions(cdc):
    local_cdc.sql(cdc, "UPDATE customers SET tier = 'platinum', updated_at = now() WHERE customer_id = 'u00001'")
    local_cdc.sql(cdc, "BEGIN; UPDATE customers SET tier = 'gold' WHERE customer_id = 'u00002'; "
                       "UPDATE customers SET tier = 'gold' WHERE customer_id = 'u00003'; "
                       "UPDATE customers SET country = 'JP' WHERE customer_id = 'u00002'; COMMIT;")  # fmt: skip
    local_cdc.sql(cdc, "DELETE FROM customers WHERE customer_id = 'u00004'")
    local_cdc.sql(cdc, "BEGIN; DELETE FROM customers WHERE customer_id = 'u00005'; INSERT INTO customers "
                       "(customer_id, email, full_name, country, tier) "
                       "VALUES ('u00005', 'again@example.com', 'Again', 'US', 'bronze'); COMMIT;")  # fmt: skip
    changes = read(cdc, "customers", 20 + 9)[20:]
    ops = [(int(k["customer_id"][1:]), v["op"] if v else None) for k, v in changes]
    assert ops == [(1, "u"), (2, "u"), (3, "u"), (2, "u"), (4, "d"), (4, None), (5, "d"), (5, None), (5, "c")], ops

    (_, one), (_, two_a), (_, three), (_, two_b) = changes[:4]
    assert one["before"]["tier"] == "silver" and one["after"]["tier"] == "platinum"  # REPLICA IDENTITY FULL
    assert two_a["source"]["txId"] == three["source"]["txId"] == two_b["source"]["txId"] != one["source"]["txId"]
    lsns = [v["source"]["lsn"] for _, v in changes[:4]]
    assert lsns == sorted(lsns) and len(set(lsns)) == 4, "each change of a transaction has its own, rising lsn"
    deleted = changes[4][1]
    assert deleted["after"] is None and deleted["before"]["customer_id"] == "u00004" and deleted["before"]["email"]


def test_key_only_before_images_and_decimals_as_bytes(cdc):
    local_cdc.sql(cdc, "INSERT INTO orders (order_id, customer_id, amount, currency) VALUES (1, 'u00006', 19.99, 'EUR')")
    local_cdc.sql(cdc, "UPDATE orders SET amount = 25.50 WHERE order_id = 1")
    local_cdc.sql(cdc, "DELETE FROM orders WHERE order_id = 1")
    (_, created), (_, updated), (_, deleted), (key, tombstone) = read(cdc, "orders", 4)
    assert (created["op"], updated["op"], deleted["op"], tombstone) == ("c", "u", "d", None)
    assert key == {"order_id": 1}
    assert updated["before"] is None, "default REPLICA IDENTITY: no before image of an update"
    # Default REPLICA IDENTITY: a delete's before image has the key, and placeholders (zero, empty, the epoch)
    # in the other NOT NULL columns, not the deleted row's values.
    assert deleted["before"] == {"order_id": 1, "customer_id": "", "amount": "AA==", "currency": "",
                                 "ordered_at": "1970-01-01T00:00:00.000000Z"}, deleted["before"]  # fmt: skip
    raw = created["after"]["amount"]  # decimal.handling.mode=precise: the unscaled value, big-endian, base64
    assert isinstance(raw, str)
    assert Decimal(int.from_bytes(base64.b64decode(raw), "big", signed=True)).scaleb(-2) == Decimal("19.99")


def customers_pipeline(cdc, folder):
    """The shipped customers pipeline, pointed at the connector's topic (as the README says to)."""
    topics = {"customers": local_cdc.topic(cdc, "customers")}
    return load_settings("test", write_conf(folder / "conf", f"unused.{uuid.uuid4().hex[:6]}", topics=topics))


def test_silver_current_state_equals_the_database_even_after_redelivery(cdc, spark, tmp_path):
    from confluent_kafka import Producer

    from tests.support import pipeline, run_once, table

    settings = customers_pipeline(cdc, tmp_path)
    local_cdc.sql(cdc, "BEGIN; UPDATE customers SET email = 'new7@example.com' WHERE customer_id = 'u00007'; "
                       "DELETE FROM customers WHERE customer_id = 'u00008'; COMMIT;")  # fmt: skip
    records = read(cdc, "customers", 20 + 9 + 3)  # snapshot, the changes above, then 7's update, 8's delete and tombstone
    run_once(spark, settings, ["customers"])
    p = pipeline(settings, "customers")
    columns = ("customer_id", "email", "full_name", "country", "tier")

    def database() -> list[tuple]:
        out = local_cdc.sql(cdc, f"SELECT {', '.join(columns)} FROM customers ORDER BY customer_id")
        return [tuple(line.split("|")) for line in out.splitlines()]

    def lake() -> list[tuple]:
        return [tuple(r) for r in table(spark, p, "customers").select(*columns).orderBy("customer_id").collect()]

    assert lake() == database() and len(database()) == 18  # 20, less 4 and 8; 5 deleted and inserted again
    tombstones = sum(1 for _, v in records if v is None)
    assert tombstones == 3
    assert audit(spark, p) == {"tombstones": 3, "quarantined": 0, "exact_duplicates": 0}
    assert table(spark, p, "customer_changes").count() == len(records) - tombstones
    history = table(spark, p, "customers_history")
    assert history.where("customer_id = 'u00002'").count() == 3  # snapshot, then two updates in one transaction
    assert history.where("customer_id = 'u00005' AND is_current").first().email == "again@example.com"

    # Connect standalone delivers at least once: the same records again change nothing.
    producer = Producer({"bootstrap.servers": cdc.kafka.bootstrap_servers})
    for key, value in records:
        producer.produce(local_cdc.topic(cdc, "customers"), key=json.dumps(key, separators=(",", ":")).encode(),
                         value=None if value is None else json.dumps(value, separators=(",", ":")).encode())  # fmt: skip
    assert producer.flush(30) == 0
    run_once(spark, settings, ["customers"])
    assert lake() == database()
    assert table(spark, p, "customer_changes").count() == len(records) - tombstones
    assert audit(spark, p) == {"tombstones": 6, "quarantined": 0, "exact_duplicates": len(records) - tombstones}
    versions = sum(1 for _, v in records if v and v["op"] in ("c", "u", "r"))
    assert table(spark, p, "customers_history").count() == versions == 26  # no version twice


def audit(spark, p) -> dict:
    from pyspark.sql import functions as F

    from tests.support import table

    row = table(spark, p, "customers_silver_batches").agg(
        F.sum("tombstones").alias("tombstones"), F.sum("quarantined_records").alias("quarantined"),
        F.sum("exact_duplicates").alias("exact_duplicates"),
    ).first()  # fmt: skip
    return row.asDict()
