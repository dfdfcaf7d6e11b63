"""Customer CDC end to end on the local broker: change events with re-sends and changes held back (some
across runs), then the whole first wave replayed. `customers` (SCD1) and `customers_history` (SCD2) must
equal applying the changes in source order, and revenue per tier must use the tier valid at purchase time."""

from __future__ import annotations

import datetime as dt
import itertools
from collections import defaultdict
from decimal import Decimal

import pytest

from pipelines.domains.clickstream.simulator import ClickstreamGenerator
from pipelines.domains.customers.simulator import CdcFaults, CdcGenerator
from pipelines.simulators.base import KafkaSink, Tally, publish
from tests.cdc_reference import apply_in_order, payloads
from tests.support import pipeline, run_once

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

CDC_START = dt.datetime(2026, 11, 20, 6, 0, tzinfo=dt.UTC)
SHOP_START = CDC_START + dt.timedelta(minutes=10)


def to_ms(t: dt.datetime | None) -> int | None:
    return None if t is None else round(t.replace(tzinfo=dt.UTC).timestamp() * 1000)


@pytest.fixture(scope="module")
def cdc_run(tmp_path_factory, kafka, spark):
    import uuid

    from tests.support import without_gold

    suffix = uuid.uuid4().hex[:10]
    clicks_topic, cdc_topic = f"test.clicks.{suffix}", f"test.cdc.{suffix}"
    # clickstream's own gold outputs are not under test here: customers' revenue per tier reads its silver
    settings = without_gold(tmp_path_factory.mktemp("cdc"), clicks_topic, topics={"customers": cdc_topic})
    cdc = CdcGenerator(seed=7, start=CDC_START, customers=500, changes_per_hour=900,
                       faults=CdcFaults(exact_duplicate=0.04, out_of_order=0.08, malformed=0.02))  # fmt: skip
    shop = ClickstreamGenerator(seed=4, start=SHOP_START, events_per_second=0.5)
    names = ["clickstream", "customers"]
    sent_cdc, sent_clicks = [], []
    for n_cdc, n_clicks in ((900, 1500), (500, 1000)):
        wave = list(itertools.islice(cdc.events(), n_cdc))
        clicks = list(itertools.islice(shop.events(), n_clicks))
        publish(wave, KafkaSink(settings.kafka, cdc_topic, Tally()))
        publish(clicks, KafkaSink(settings.kafka, clicks_topic, Tally()))
        sent_cdc += wave
        sent_clicks += clicks
        run_once(spark, settings, names)
    p = pipeline(settings, "customers")
    read = lambda name: spark.read.format("delta").load(p.layout.table(name).path)  # noqa: E731
    before_replay = {name: sorted(map(tuple, read(name).collect())) for name in ("customers", "customers_history")}
    publish(sent_cdc[:900], KafkaSink(settings.kafka, cdc_topic, Tally()))  # the first wave, all over again
    run_once(spark, settings, ["customers"])
    return {"read": read, "changes": payloads(sent_cdc), "clicks": [e.payload() for e in sent_clicks],
            "before_replay": before_replay, "sent": sent_cdc}  # fmt: skip


def test_changes_really_arrived_out_of_order(cdc_run):
    lsns = [c["source"]["lsn"] for c in cdc_run["changes"]]
    assert lsns != sorted(lsns), "the mix should hold changes sent after later ones"
    wave1 = {c["source"]["lsn"] for c in payloads(cdc_run["sent"][:900])}
    wave2 = [c["source"]["lsn"] for c in payloads(cdc_run["sent"][900:])]
    assert any(lsn < max(wave1) for lsn in wave2), "some changes should be held back past the first run"


def test_scd1_equals_applying_changes_in_source_order(cdc_run):
    current, _ = apply_in_order(cdc_run["changes"])
    got = {r.customer_id: (r.email, r.full_name, r.tier, r.country, r.lsn) for r in cdc_run["read"]("customers").collect()}
    assert got == current


def test_scd2_equals_applying_changes_in_source_order(cdc_run):
    _, history = apply_in_order(cdc_run["changes"])
    got = sorted(
        (r.customer_id, r.email, r.full_name, r.tier, r.country, to_ms(r.valid_from), to_ms(r.valid_to), r.is_current, r.lsn)
        for r in cdc_run["read"]("customers_history").collect()
    )
    assert got == history
    live = {h[0] for h in history if h[7]}
    assert len([h for h in history if h[7]]) == len(live), "one open version per live customer"


def test_replaying_the_first_wave_changes_nothing(cdc_run):
    for name, rows in cdc_run["before_replay"].items():
        assert sorted(map(tuple, cdc_run["read"](name).collect())) == rows, name


def test_revenue_per_tier_uses_the_tier_at_purchase_time(cdc_run):
    _, history = apply_in_order(cdc_run["changes"])
    versions = defaultdict(list)
    for cid, _email, _name, tier, _country, start, end, _current, _lsn in history:
        versions[cid].append((start, end, tier))
    want = defaultdict(lambda: [0, Decimal(0)])
    for c in cdc_run["clicks"]:
        if c["event_type"] != "purchase":
            continue
        t = dt.datetime.fromisoformat(c["event_time"].replace("Z", "+00:00")).astimezone(dt.UTC)
        ms = round(t.timestamp() * 1000)
        tiers = [tier for start, end, tier in versions[c["user_id"]] if start <= ms and (end is None or ms < end)]
        key = (t.replace(minute=0, second=0, microsecond=0, tzinfo=None), tiers[0] if tiers else "unknown", c["currency"])
        want[key][0] += 1
        want[key][1] += Decimal(str(c["price"])) * c["quantity"]
    got = {(r.hour_start, r.tier, r.currency): [r.orders, r.revenue] for r in cdc_run["read"]("revenue_per_tier_per_hour").collect()}
    assert len(want) > 10
    assert got == dict(want)
