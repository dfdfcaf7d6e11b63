"""`kafka.security`: one section, the Java client's and librdkafka's settings from it, checked and masked."""

from __future__ import annotations

import pytest

from pipelines.errors import ConfigError
from pipelines.model.config import MASK, KafkaSecurity, load_settings
from pipelines.platform.kafka_security import jaas_config, java_client_options, librdkafka_options
from tests.unit.test_config import conf


def test_the_section_gives_both_clients_the_same_credentials_and_ca(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_KAFKA_PASSWORD", "s3cret")
    text = "kafka:\n  security:\n    username: alice\n    password: ${TEST_KAFKA_PASSWORD}\n    ca_file: tls/ca.pem\n"
    s = load_settings("e", conf(tmp_path, text))
    ca = str((tmp_path.parent / "tls" / "ca.pem").resolve())  # relative paths are under the project folder
    sec = s.kafka.security
    assert sec.ca_file == ca
    assert java_client_options(sec) == {
        "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.jaas.config": 'org.apache.kafka.common.security.scram.ScramLoginModule required username="alice" '
                            'password="s3cret";',
        "ssl.truststore.type": "PEM", "ssl.truststore.location": ca,
    }  # fmt: skip
    assert librdkafka_options(sec) == {"security.protocol": "SASL_SSL", "sasl.mechanisms": "SCRAM-SHA-512",
                                       "sasl.username": "alice", "sasl.password": "s3cret", "ssl.ca.location": ca}  # fmt: skip
    printed = s.to_dict()
    assert printed["kafka"]["security"]["password"] == MASK and printed["kafka"]["security"]["username"] == "alice"
    assert "s3cret" not in str(printed) + repr(s) + repr(sec)


def test_no_section_no_settings():
    assert java_client_options(None) == {} and librdkafka_options(None) == {}


def test_the_jaas_line_escapes_quotes_and_backslashes():
    sec = KafkaSecurity(username='a"b', password='p"w\\d', mechanism="PLAIN", protocol="SASL_PLAINTEXT", ca_file="x")
    assert jaas_config(sec) == 'org.apache.kafka.common.security.plain.PlainLoginModule required username="a\\"b" password="p\\"w\\\\d";'
    assert "ssl.truststore.location" not in java_client_options(sec)  # no TLS without SSL in the protocol


@pytest.mark.parametrize(
    "body, message",
    [
        ("username: a\n    password: b\n    mechanism: GSSAPI", "mechanism must be one of SCRAM-SHA-512, SCRAM-SHA-256, PLAIN"),
        ("username: a\n    password: b\n    protocol: SSL", "protocol must be one of SASL_SSL, SASL_PLAINTEXT"),
        ("username: a\n    password: ''", "username and password must not be empty"),
        ("username: a", "missing required key 'kafka.security.password'"),
        ("username: a\n    password: b\n    passwrd: c", "unknown key 'kafka.security.passwrd'"),
    ],
)
def test_a_bad_section_is_one_line_naming_the_key(tmp_path, body, message):
    with pytest.raises(ConfigError, match="e.yaml: .*" + message.replace("(", r"\(")):
        load_settings("e", conf(tmp_path, f"kafka:\n  security:\n    {body}\n"))


def test_a_secured_local_broker_needs_a_scram_user(tmp_path):
    from pipelines.platform.local_broker import _render_properties, paths

    s = load_settings("e", conf(tmp_path, f"local_broker:\n  sasl_ssl_port: 19999\n  state_dir: {tmp_path / 'b'}\n"))
    with pytest.raises(ConfigError, match="local_broker.sasl_ssl_port needs kafka.security with a SCRAM mechanism"):
        _render_properties(s, paths(s))
