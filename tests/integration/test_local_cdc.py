"""The real change-data-capture source: PostgreSQL 15 and Debezium 3.6 on Kafka Connect, as `lakepipe cdc up`
runs them, and what the connector really writes to Kafka for each kind of change.

These are the shapes the customers pipeline must handle (issue 17): snapshot reads that all share one LSN,
c/u/d envelopes, a tombstone after each delete, full or key-only `before` images, several changes in one
transaction, timestamps as ISO text and numeric columns as base64 bytes.
"""

from __future__ import annotations

import base64
import json
import uuid
from decimal import Decimal

import pytest
from confluent_kafka import Consumer, KafkaError

from pipelines.model.config import load_settings
from pipelines.platform import local_cdc
from pipelines.platform.processes import free_port
from tests.conftest import write_conf

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def cdc(tmp_path_factory, kafka):
    """PostgreSQL and Connect with the JsonConverter's `schemas.enable` false (test_local_cdc_schemas.py runs these
    tests again with it true)."""
    yield from cdc_environment(tmp_path_factory, value_schemas=False)


def cdc_environment(tmp_path_factory, value_schemas: bool):  # noqa: ANN001, ANN201
    """PostgreSQL and Connect on ports and topics of their own; state in pytest's private temporary folder, which
    the `postgres` user cannot enter when the tests run as root (the database's files then live under that user's
    home)."""
    name = uuid.uuid4().hex[:8]
    state = tmp_path_factory.mktemp("cdc-state")
    conf = write_conf(tmp_path_factory.mktemp("cdc") / "conf", "unused")
    with open(conf / "test.yaml", "a", encoding="utf-8") as f:
        f.write(f"local_cdc:\n  postgres_port: {free_port()}\n  connect_port: {free_port()}\n"
                f"  topic_prefix: test{name}\n  state_dir: {state}\n  value_schemas: {str(value_schemas).lower()}\n"
                "  offset_flush_ms: 20000\n")  # a SIGKILL then leaves changes to deliver again (the last test)  # fmt: skip
    settings = load_settings("test", conf)
    try:
        lines = local_cdc.start(settings)
        assert lines[0].startswith("PostgreSQL started") and lines[1].startswith("Kafka Connect started"), lines
        yield settings
    finally:
        local_cdc.remove(settings)


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
    """The shipped customers and orders pipelines, pointed at the connector's topics (as the README says to)."""
    topics = {name: local_cdc.topic(cdc, name) for name in ("customers", "orders")}
    return load_settings("test", write_conf(folder / "conf", f"unused.{uuid.uuid4().hex[:6]}", topics=topics))


CUSTOMER_COLUMNS = ("customer_id", "email", "full_name", "country", "tier")
ORDER_COLUMNS = ("order_id", "customer_id", "amount", "currency")


def database(cdc, table: str, columns: tuple[str, ...]) -> list[tuple]:
    out = local_cdc.sql(cdc, f"SELECT {', '.join(columns)} FROM {table} ORDER BY 1")
    return [tuple(line.split("|")) for line in out.splitlines()]


def lake(spark, p, table: str, columns: tuple[str, ...]) -> list[tuple]:
    from tests.support import table as read_table

    rows = read_table(spark, p, table).select(*columns).orderBy(columns[0]).collect()
    return [tuple(str(v) for v in r) for r in rows]


def test_silver_current_state_equals_the_database_even_after_redelivery(cdc, spark, tmp_path):
    from confluent_kafka import Producer

    from tests.support import pipeline, run_once, table

    settings = customers_pipeline(cdc, tmp_path)
    local_cdc.sql(cdc, "BEGIN; UPDATE customers SET email = 'new7@example.com' WHERE customer_id = 'u00007'; "
                       "DELETE FROM customers WHERE customer_id = 'u00008'; COMMIT;")  # fmt: skip
    records = read(cdc, "customers", 20 + 9 + 3)  # snapshot, the changes above, then 7's update, 8's delete and tombstone
    run_once(spark, settings, ["customers"])
    p = pipeline(settings, "customers")
    in_database = database(cdc, "customers", CUSTOMER_COLUMNS)
    assert lake(spark, p, "customers", CUSTOMER_COLUMNS) == in_database and len(in_database) == 18  # 20, less 4 and 8
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
    assert lake(spark, p, "customers", CUSTOMER_COLUMNS) == database(cdc, "customers", CUSTOMER_COLUMNS)
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


def test_orders_carry_their_customers_tier_at_order_time(cdc, spark, tmp_path):
    from tests.support import pipeline, run_once, table

    tier_then = local_cdc.sql(cdc, "SELECT tier FROM customers WHERE customer_id = 'u00010'").strip()
    tier_now = "bronze" if tier_then != "bronze" else "silver"
    local_cdc.sql(cdc, "INSERT INTO orders (order_id, customer_id, amount, currency) VALUES (101, 'u00010', 19.99, 'EUR')")
    local_cdc.sql(cdc, f"UPDATE customers SET tier = '{tier_now}' WHERE customer_id = 'u00010'")
    local_cdc.sql(cdc, "INSERT INTO orders (order_id, customer_id, amount, currency) VALUES (102, 'u00010', 5.00, 'EUR')")
    mark = local_cdc.current_lsn(cdc)
    local_cdc.sql(cdc, "BEGIN; INSERT INTO customers (customer_id, email, full_name, country, tier) VALUES "
                       "('u00900', 'new@example.com', 'New', 'DE', 'platinum'); INSERT INTO orders "
                       "(order_id, customer_id, amount, currency) VALUES (103, 'u00900', 42.00, 'USD'); COMMIT;")  # fmt: skip
    local_cdc.sql(cdc, "UPDATE orders SET amount = 30.00 WHERE order_id = 101")  # amended: its tier stays the one it had
    local_cdc.sql(cdc, "BEGIN; INSERT INTO orders (order_id, customer_id, amount, currency) VALUES (104, 'u00010', 1.00, 'EUR'); "
                       "DELETE FROM orders WHERE order_id = 104; COMMIT;")  # fmt: skip
    last = local_cdc.current_lsn(cdc)
    local_cdc.sql(cdc, "UPDATE orders SET currency = 'GBP' WHERE order_id = 102")
    local_cdc.wait_streamed(cdc, mark)
    local_cdc.wait_streamed(cdc, last, ("orders",))

    settings = customers_pipeline(cdc, tmp_path)
    run_once(spark, settings, ["customers", "orders"])
    p = pipeline(settings, "orders")
    assert lake(spark, p, "orders", ORDER_COLUMNS) == database(cdc, "orders", ORDER_COLUMNS)
    assert [r[0] for r in database(cdc, "orders", ORDER_COLUMNS)] == ["101", "102", "103"]
    by_tier = {r.order_id: (r.tier, str(r.amount), r.currency) for r in table(spark, p, "orders_by_tier").collect()}
    assert by_tier == {101: (tier_then, "30.00", "EUR"), 102: (tier_now, "5.00", "GBP"), 103: ("platinum", "42.00", "USD")}
    batches = table(spark, p, "orders_silver_batches").agg({"quarantined_records": "sum", "tombstones": "sum"}).first()
    assert (batches["sum(quarantined_records)"], batches["sum(tombstones)"]) == (0, 2)  # orders 1 and 104 deleted


def test_a_column_added_at_the_source_reaches_silver_without_a_failed_run(cdc, spark, tmp_path):
    from tests.support import pipeline, run_once, table

    local_cdc.sql(cdc, "ALTER TABLE customers ADD COLUMN loyalty_points integer")
    mark = local_cdc.current_lsn(cdc)
    local_cdc.sql(cdc, "UPDATE customers SET loyalty_points = 7, tier = 'silver' WHERE customer_id = 'u00011'")
    local_cdc.wait_streamed(cdc, mark, ("customers",))
    settings = customers_pipeline(cdc, tmp_path)
    run_once(spark, settings, ["customers"])
    p = pipeline(settings, "customers")
    latest = table(spark, p, "customer_changes").where("customer_id = 'u00011'").orderBy("lsn", ascending=False).first()
    assert json.loads(latest.extra)["after.loyalty_points"] == 7 and latest.tier == "silver"
    assert lake(spark, p, "customers", CUSTOMER_COLUMNS) == database(cdc, "customers", CUSTOMER_COLUMNS)
    assert audit(spark, p)["quarantined"] == 0


# Every row change of customers, in commit order, kept by a trigger (the connector does not capture this table).
AUDIT = """
CREATE TABLE customers_audit (seq bigserial PRIMARY KEY, op text, customer_id text, email text, full_name text,
                              country text, tier text);
CREATE FUNCTION audit_customers() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
  IF TG_OP = 'DELETE' THEN INSERT INTO customers_audit (op, customer_id) VALUES ('d', OLD.customer_id);
  ELSE INSERT INTO customers_audit (op, customer_id, email, full_name, country, tier)
       VALUES (TG_OP, NEW.customer_id, NEW.email, NEW.full_name, NEW.country, NEW.tier); END IF;
  RETURN NULL; END $$;
CREATE TRIGGER customers_audit AFTER INSERT OR UPDATE OR DELETE ON customers FOR EACH ROW EXECUTE FUNCTION audit_customers();
"""


@pytest.mark.scenario  # the Connect worker SIGKILLed during a random burst: make test-scenarios
def test_a_random_burst_with_the_connector_killed_equals_what_the_database_committed(cdc, spark, tmp_path):
    """Random transactions (the demo's generator), the Connect worker SIGKILLed right after it streamed them and
    started again, more transactions: SCD1 equals SELECT, SCD2 equals the committed sequence of each customer, and
    what the restarted connector delivered again are exact duplicates (Connect standalone is at-least-once)."""
    import os
    import signal
    import time

    from pipelines.domains.customers.shop import ShopChanges
    from pipelines.platform.processes import running_pid
    from tests.support import pipeline, run_once, table

    # A connector killed before it ever flushed its offsets snapshots the tables again when it restarts, and rows
    # deleted while it was down never reach the topic (Debezium's snapshot.mode=initial; the README names this).
    # Run alone (make test-scenarios) this test would start right after the connector: wait for a first flush.
    offsets, deadline = local_cdc.paths(cdc).offsets, time.monotonic() + 120
    while not (offsets.is_file() and offsets.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert offsets.is_file() and offsets.stat().st_size, "the connector has not flushed its offsets in 2 minutes"
    local_cdc.sql(cdc, AUDIT)
    start = local_cdc.current_lsn(cdc)
    shop = ShopChanges(cdc, seed=11)
    shop.wave(150)
    os.kill(running_pid(local_cdc.paths(cdc).connect_pid, "ConnectStandalone"), signal.SIGKILL)
    shop.commit(50)  # while the connector is down
    lines = local_cdc.start(cdc)
    assert lines[0].startswith("PostgreSQL already running") and lines[1].startswith("Kafka Connect started"), lines
    shop.wave(50)

    settings = customers_pipeline(cdc, tmp_path)
    run_once(spark, settings, ["customers", "orders"])
    customers, orders = pipeline(settings, "customers"), pipeline(settings, "orders")
    assert lake(spark, customers, "customers", CUSTOMER_COLUMNS) == database(cdc, "customers", CUSTOMER_COLUMNS)
    assert lake(spark, orders, "orders", ORDER_COLUMNS) == database(cdc, "orders", ORDER_COLUMNS)

    committed: dict[str, list] = {}
    for line in local_cdc.sql(cdc, "SELECT op, customer_id, email, full_name, country, tier FROM customers_audit ORDER BY seq").splitlines():
        op, cid, *image = line.split("|")
        committed.setdefault(cid, []).append(None if op == "d" else tuple(image))
    history: dict[str, list] = {}
    versions = table(spark, customers, "customers_history").where(f"lsn > {start}").orderBy("lsn").collect()
    for v in versions:
        history.setdefault(v.customer_id, []).append((v.email, v.full_name, v.country, v.tier))
    assert history == {cid: [i for i in images if i] for cid, images in committed.items() if any(images)}
    current = {r.customer_id for r in table(spark, customers, "customers_history").where("is_current").collect()}
    assert {cid for cid, images in committed.items() if images[-1] is not None} <= current
    assert shop.made["delete"] and shop.made["delete_and_insert_again"] and shop.made["update_twice"]

    counts = audit(spark, customers)
    assert counts["quarantined"] == 0
    assert counts["exact_duplicates"] > 0, "the restarted connector delivered nothing again (offsets flushed before the kill?)"
