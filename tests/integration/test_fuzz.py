"""Bad input at scale (issue 14): 10,000 generated hostile values through the clickstream pipeline. Bronze keeps
every record byte for byte, every one lands in silver or in quarantine with a reason (or is counted as an exact
re-send), and the run does not fail."""

from __future__ import annotations

import datetime as dt
import json
import random

import pytest
from pyspark.sql import functions as F

from pipelines.domains.clickstream.simulator import ClickstreamGenerator
from pipelines.simulators.base import KafkaSink, SimEvent, Tally, publish
from tests.support import pipeline, run_once, without_gold

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

COUNT = 10_000
NEAR_LIMIT = 900_000  # bytes: below the broker's and the producer's 1 MB default, as a real large event would be

HOSTILE = [  # JSON texts that replace one field's value
    "NaN", "Infinity", "-Infinity", "1e999999", "-1e-999999", "9" * 400, "-0", "0.0000000000000000000001", "1e308",
    '"\\u0000"', '"\\ud800"', '"\\udfff\\ud800"', '"\\uffff"', '"a\\u0000b"', "null", "true", "[]", "{}",
    '"' + "x" * 100_000 + '"', "[" * 300 + "]" * 300, '{"a":' * 300 + "1" + "}" * 300, '"2026-02-30T25:61:00Z"',
    '"\\"}"', "'single'", "0x1F", "+1", ".5", "1.", "01", '"\U0001F600"', '"\\uD83D\\uDE00"',
]  # fmt: skip


def hostile_values(seed: int) -> list[bytes]:
    rnd = random.Random(seed)
    base = ClickstreamGenerator(seed=seed, start=dt.datetime(2026, 11, 30, 8, tzinfo=dt.UTC), events_per_second=50)
    events = base.events()
    out: list[bytes] = []
    for i in range(COUNT):
        kind = rnd.randrange(8)
        valid = json.loads(next(events).value)
        text = json.dumps(valid)
        if kind == 0:  # random bytes
            out.append(bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(0, 200))))
        elif kind in (1, 2):  # one field's value replaced by a hostile JSON text (or a new field holding one)
            field = rnd.choice([*valid, "extra_field"])
            valid[field] = "@@"
            out.append(json.dumps(valid).replace('"@@"', rnd.choice(HOSTILE)).encode())
        elif kind == 3:  # deep nesting, as the whole value or as a field
            depth = rnd.choice([10, 100, 1_000, 5_000, 20_000])
            nested = "[" * depth + "]" * depth if rnd.random() < 0.5 else '{"a":' * depth + "0" + "}" * depth
            out.append((nested if rnd.random() < 0.5 else text[:-1] + f', "deep": {nested}}}').encode())
        elif kind == 4:  # duplicate keys, the second disagreeing or not
            key = rnd.choice(list(valid))
            again = json.dumps(valid[key]) if rnd.random() < 0.5 else '"other"'
            out.append((text[:-1] + f', "{key}": {again}}}').encode())
        elif kind == 5:  # truncated, or with bytes that are no UTF-8 inside a string
            cut = rnd.randrange(1, len(text))
            out.append(text[:cut].encode() if rnd.random() < 0.5 else text.replace('"', '"\xed\xa0\x80', 1).encode("latin-1"))
        elif kind == 6:  # a NUL byte or a control character raw in the text
            at = rnd.randrange(len(text))
            out.append((text[:at] + rnd.choice(["\x00", "\x01", "\x1f", "\n"]) + text[at:]).encode())
        else:  # valid: the control group
            out.append(text.encode())
        if i % 2_500 == 0:  # a few values near the size limit
            out[-1] = (text[:-1] + f', "blob": "{"z" * NEAR_LIMIT}"}}').encode()
    return out


def test_ten_thousand_hostile_values_each_land_somewhere_with_a_reason(spark, tmp_path, unique_topic, kafka):
    test_settings = without_gold(tmp_path, unique_topic)
    values = hostile_values(seed=14)
    p = pipeline(test_settings, "clickstream")
    tally = publish(iter(SimEvent("fuzz", None, v) for v in values), KafkaSink(test_settings.kafka, p.topic, Tally()))
    assert sum(tally.delivered.values()) == COUNT and not tally.failed, tally.errors

    run_once(spark, test_settings, ["clickstream"])  # does not raise

    read = lambda t: spark.read.format("delta").load(t.path)  # noqa: E731
    bronze = read(p.layout.bronze)
    assert bronze.count() == COUNT and bronze.select("partition", "offset").distinct().count() == COUNT
    stored = sorted(bytes(r.value) for r in bronze.select("value").collect())
    assert stored == sorted(values), "every value byte for byte"
    silver, quarantine = read(p.layout.silver), read(p.layout.quarantine)
    duplicates = read(p.layout.batches).groupBy().sum("exact_duplicates").first()[0]
    assert silver.count() + quarantine.count() + duplicates == COUNT, "each record in silver or quarantine, or a re-send"
    assert quarantine.where(F.size("reasons") == 0).count() == 0, "a quarantined record always says why"
    reasons = {r.reason.split(":")[0] for r in quarantine.select(F.explode("reasons").alias("reason")).collect()}
    assert {"invalid_json", "bad_type", "not_an_object"} <= reasons, reasons
    assert silver.count() >= COUNT // 8, "the valid control group (and harmless changes) reach silver"
