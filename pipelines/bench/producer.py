"""P1 and P1b: our simulator's send rate against Kafka's own perf tool and against a bare confluent-kafka loop.

Both baselines send the simulator's own records (same seed, same bytes) with the same producer settings
(PRODUCER_CONF: acks=all, linger 20 ms, 1 MB batches, lz4, idempotence), so the figures isolate what the
simulator adds: event generation (P1b) and, for P1, also the Python client against the Java one.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

from pipelines.bench import common
from pipelines.bench.common import PRODUCER_CONF, Figure, RssSampler, Topics, produce
from pipelines.domains.clickstream.simulator import ClickstreamGenerator
from pipelines.errors import LakepipeError
from pipelines.model.config import KafkaSettings
from pipelines.platform.jars import PROJECT_DIR
from pipelines.simulators.base import KafkaSink, Tally, publish

TOOLS_DIR = PROJECT_DIR / ".jars" / "kafka-tools"
PERF_LINE = re.compile(r"^(\d+) records sent, ([\d.]+) records/sec")
SEED = 2


def simulate(kafka: KafkaSettings, topic: str, n: int) -> float:
    """Our simulator end to end (generate, serialise, send with delivery callbacks); records/s."""
    start = time.perf_counter()
    tally = publish(ClickstreamGenerator(seed=SEED).events(), KafkaSink(kafka, topic, Tally(), **PRODUCER_CONF), count=n)
    elapsed = time.perf_counter() - start
    if sum(tally.delivered.values()) != n:
        raise LakepipeError(f"simulator delivered {tally.to_dict()}, expected {n} records")
    return n / elapsed


def producer_perf(kafka: KafkaSettings, topic: str, n: int, payload_file: Path) -> float:
    """Kafka's `ProducerPerformance` (kafka-tools, its own JVM and classpath) sending `payload_file`'s lines."""
    if not (TOOLS_DIR / ".resolved").exists():
        raise LakepipeError(f"{TOOLS_DIR} is not resolved: run `make bench` (it fetches kafka-tools with Maven)")
    props = {"bootstrap.servers": kafka.bootstrap_servers, "acks": "all", "linger.ms": PRODUCER_CONF["linger.ms"],
             "batch.size": PRODUCER_CONF["batch.size"], "compression.type": PRODUCER_CONF["compression.type"],
             "enable.idempotence": "true"}  # fmt: skip
    cmd = ["java", "-Xmx512m", "-cp", f"{TOOLS_DIR}/*", "org.apache.kafka.tools.ProducerPerformance",
           "--topic", topic, "--num-records", str(n), "--throughput", "-1", "--payload-file", str(payload_file),
           "--producer-props", *(f"{k}={v}" for k, v in props.items())]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    lines = [m for m in map(PERF_LINE.match, out.stdout.splitlines()) if m]
    if out.returncode != 0 or not lines or int(lines[-1][1]) != n:
        raise LakepipeError(f"ProducerPerformance failed (exit {out.returncode}): {(out.stderr or out.stdout)[-300:]}")
    return float(lines[-1][2])


def bench_producer(kafka: KafkaSettings, topics: Topics, n: int, scratch: Path) -> list[Figure]:
    gen = ClickstreamGenerator(seed=SEED)
    events = [gen.next_event() for _ in range(n)]  # the very records the simulator sends, pre-made
    payload_file = scratch / "simulator-payloads.txt"
    payload_file.write_bytes(b"\n".join(e.value for e in events))  # JSON has no raw newlines
    size = sum(len(e.value) for e in events) / n
    if common.WARM_UP:
        simulate(kafka, topics.new("warm"), min(n, 5000))
        produce(kafka, topics.new("warm"), events[: min(n, 5000)])
    sides = {"simulator": lambda: simulate(kafka, topics.new("p1"), n),
             "perf tool": lambda: producer_perf(kafka, topics.new("p1"), n, payload_file),
             "bare loop": lambda: produce(kafka, topics.new("p1b"), events)}  # fmt: skip
    runs: dict[str, list[float]] = {name: [] for name in sides}
    with RssSampler(os.getpid()) as rss:  # no Spark here: the Python process that runs the simulator
        for i in range(common.REPEATS):  # each repeat in another order
            for name in list(sides)[i % 3 :] + list(sides)[: i % 3]:
                runs[name].append(sides[name]())
    ours, base, bare = runs["simulator"], runs["perf tool"], runs["bare loop"]
    return [
        Figure.of_runs("P1", f"simulator / Kafka ProducerPerformance (Java), same {n:,} values of {size:.0f} B",
                       ours, base, target=0.5, peak_rss_mb=rss.peak_kb / 1024),  # fmt: skip
        Figure.of_runs("P1b", f"simulator / bare confluent-kafka loop sending the same {n:,} pre-made records",
                       ours, bare, target=0.7, peak_rss_mb=rss.peak_kb / 1024),  # fmt: skip
    ]
