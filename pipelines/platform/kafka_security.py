"""One `kafka.security` section, two client dialects: Java client settings for Spark's Kafka source and librdkafka
settings for the Python clients (simulators, admin). Pure functions of the settings."""

from __future__ import annotations

from pipelines.model.config import KafkaSecurity

_LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}


def jaas_config(sec: KafkaSecurity) -> str:
    """The `sasl.jaas.config` line of the Java client, quotes and backslashes in the credentials escaped."""

    def quoted(v: str) -> str:
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return f"{_LOGIN_MODULES[sec.mechanism]} required username={quoted(sec.username)} password={quoted(sec.password)};"


def java_client_options(sec: KafkaSecurity | None) -> dict[str, str]:
    """Java Kafka client settings (without the `kafka.` prefix Spark's source wants)."""
    if sec is None:
        return {}
    opts = {"security.protocol": sec.protocol, "sasl.mechanism": sec.mechanism, "sasl.jaas.config": jaas_config(sec)}
    if sec.ca_file and sec.protocol == "SASL_SSL":
        opts |= {"ssl.truststore.type": "PEM", "ssl.truststore.location": sec.ca_file}
    return opts


def librdkafka_options(sec: KafkaSecurity | None) -> dict[str, str]:
    """librdkafka (confluent-kafka) settings."""
    if sec is None:
        return {}
    opts = {"security.protocol": sec.protocol, "sasl.mechanisms": sec.mechanism,
            "sasl.username": sec.username, "sasl.password": sec.password}  # fmt: skip
    if sec.ca_file and sec.protocol == "SASL_SSL":
        opts["ssl.ca.location"] = sec.ca_file
    return opts
