"""Talking to the broker from Python: reachability, topics, client settings (confluent-kafka)."""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from pipelines.errors import KafkaAuthError, KafkaUnreachableError, TopicMissingError
from pipelines.model.config import KafkaSettings
from pipelines.platform.kafka_security import librdkafka_options

_quiet = logging.getLogger("lakepipe.librdkafka")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


def client_config(kafka: KafkaSettings, **extra: Any) -> dict[str, Any]:
    """librdkafka settings: bootstrap servers, the configured client options, then `extra`."""
    conf: dict[str, Any] = {"bootstrap.servers": kafka.bootstrap_servers, "logger": _quiet}
    conf.update(librdkafka_options(kafka.security))
    conf.update(kafka.client_options)
    conf.update(extra)
    return conf


def admin(kafka: KafkaSettings) -> AdminClient:
    return AdminClient(client_config(kafka))


def list_topics(kafka: KafkaSettings, timeout: float = 5.0) -> set[str]:
    """The topic names on the cluster; an unreachable cluster is a KafkaUnreachableError, one that refuses the
    client's credentials or whose certificate it cannot verify a KafkaAuthError."""
    refused: list[KafkaError] = []
    client = AdminClient(client_config(kafka, error_cb=lambda e: refused.append(e)))
    try:
        meta = client.list_topics(timeout=timeout)
    except KafkaException as exc:
        client.poll(0)  # serves the error callbacks: why the connection failed
        auth = next((e for e in refused if e.code() in (KafkaError._AUTHENTICATION, KafkaError._SSL)), None)
        if auth is not None:
            raise KafkaAuthError(_refused_message(kafka, auth)) from None
        raise KafkaUnreachableError(
            f"cannot reach Kafka at {kafka.bootstrap_servers} within {timeout:g}s ({exc.args[0].str()}): "
            "start the local broker with `lakepipe up`, or fix kafka.bootstrap_servers in your conf file"
        ) from None
    return {name for name in meta.topics if not name.startswith("__")}


def _refused_message(kafka: KafkaSettings, err: KafkaError) -> str:
    sec = kafka.security
    if err.code() == KafkaError._AUTHENTICATION:
        who = f"user '{sec.username}' ({sec.mechanism})" if sec else "this client"
        return (f"Kafka at {kafka.bootstrap_servers} refused {who}: wrong username or password; fix "
                "kafka.security.username / password in your conf file (or the environment variables they name)")  # fmt: skip
    reason = err.str().split(": ", 1)[-1].split(" (after ")[0]
    ca = sec.ca_file if sec and sec.ca_file else "the system's trusted CAs"
    return (f"TLS with Kafka at {kafka.bootstrap_servers} failed ({reason.split(': broker certificate')[0]}, trusting "
            f"{ca}): set kafka.security.ca_file to the PEM file of the CA that signed the broker's certificate "
            "(the local broker's: <local_broker.state_dir>/tls/ca.pem)")  # fmt: skip


def is_reachable(kafka: KafkaSettings, timeout: float = 2.0) -> bool:
    try:
        list_topics(kafka, timeout)
    except KafkaUnreachableError:
        return False
    return True


def ensure_topic(kafka: KafkaSettings, topic: str, partitions: int | None = None) -> bool:
    """Create `topic` if it does not exist; returns True when it was created."""
    if topic in list_topics(kafka):
        return False
    n = partitions or kafka.topic_partitions
    client = admin(kafka)  # keep a reference: the futures fail if the client is collected
    futures = client.create_topics([NewTopic(topic, num_partitions=n, replication_factor=-1)])
    try:
        futures[topic].result(timeout=30)
    except KafkaException as exc:
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise
        return False
    return True


def delete_topic(kafka: KafkaSettings, topic: str, timeout: float = 30.0) -> bool:
    """Delete `topic` if it exists, and wait until the broker no longer lists it; whether it existed."""
    if topic not in list_topics(kafka):
        return False
    client = admin(kafka)
    client.delete_topics([topic])[topic].result(timeout=timeout)
    deadline = time.monotonic() + timeout
    while topic in list_topics(kafka) and time.monotonic() < deadline:
        time.sleep(0.2)
    return True


def require_topic(kafka: KafkaSettings, topic: str) -> None:
    """Fail fast, with what to do, when a pipeline's topic is not there."""
    if topic not in list_topics(kafka):
        raise TopicMissingError(
            f"topic '{topic}' does not exist on {kafka.bootstrap_servers}: create it, or run "
            "`lakepipe simulate <pipeline>` which creates it"
        )


def end_offsets(kafka: KafkaSettings, topic: str, timeout: float = 10.0) -> dict[int, int]:
    """High watermark per partition of `topic` (the offset the next record will get)."""
    return {p: high for p, (_, high) in watermark_offsets(kafka, topic, timeout).items()}


def watermark_offsets(kafka: KafkaSettings, topic: str, timeout: float = 10.0) -> dict[int, tuple[int, int]]:
    """(log start offset, high watermark) per partition of `topic`."""
    from confluent_kafka import Consumer, TopicPartition

    require_topic(kafka, topic)
    consumer = Consumer(client_config(kafka, **{"group.id": "lakepipe-offsets", "enable.auto.commit": False}))
    try:
        meta = consumer.list_topics(topic, timeout=timeout)
        parts = meta.topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout) for p in parts}
    finally:
        consumer.close()


def record_times(kafka: KafkaSettings, topic: str, offsets: dict[int, int], timeout: float = 10.0) -> dict[int, int]:
    """The timestamp (epoch ms) of the record at `offsets[partition]` in each partition; partitions whose record
    is not there (yet, or any more) are left out."""
    from confluent_kafka import Consumer, TopicPartition

    if not offsets:
        return {}
    consumer = Consumer(client_config(kafka, **{"group.id": "lakepipe-status", "enable.auto.commit": False,
                                                "enable.partition.eof": True}))  # fmt: skip
    out: dict[int, int] = {}
    try:
        consumer.assign([TopicPartition(topic, p, o) for p, o in offsets.items()])
        done: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(done) < len(offsets) and time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is None or m.partition() in done:
                continue
            done.add(m.partition())
            if m.error() is None:
                out[m.partition()] = m.timestamp()[1]
        return out
    finally:
        consumer.close()
