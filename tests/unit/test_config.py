"""Loading conf files: defaults, strict keys and types, environment secrets and their masking."""

from __future__ import annotations

import pytest

from pipelines.errors import ConfigError
from pipelines.model import sizes
from pipelines.model.config import MASK, load_settings


def conf(tmp_path, text, env="e"):
    (tmp_path / f"{env}.yaml").write_text(text)
    return tmp_path


def test_defaults_put_tables_and_checkpoints_under_the_lake_root(tmp_path):
    s = load_settings("e", conf(tmp_path, "pipelines:\n  clickstream:\n    topic: t1\n"))
    assert s.lake_root == str(tmp_path.parent / "lakehouse")
    assert s.tables_root == s.lake_root + "/tables"
    assert s.checkpoints_root == s.lake_root + "/checkpoints"
    assert s.pipeline("clickstream").topic == "t1"
    assert s.streaming.watermark == "10 minutes"
    assert s.streaming.max_bytes_per_trigger == "16m"
    assert s.streaming.idle_poll_interval == "100ms"
    assert s.streaming.bronze_with_silver is True


@pytest.mark.parametrize("text, size", [("16m", 16 << 20), ("512K", 512 << 10), ("1 gb", 1 << 30), ("4096", 4096)])
def test_sizes_read_as_spark_reads_them(text, size):
    assert sizes.size_bytes(text) == size


def test_env_variable_selects_the_file(tmp_path, monkeypatch):
    conf(tmp_path, "kafka:\n  bootstrap_servers: other:1\n", env="staging")
    monkeypatch.setenv("LAKEPIPE_ENV", "staging")
    monkeypatch.setenv("LAKEPIPE_CONF_DIR", str(tmp_path))
    assert load_settings().kafka.bootstrap_servers == "other:1"


@pytest.mark.parametrize(
    "text, message",
    [
        ("kafka:\n  bootstrap_server: x\n", "unknown key 'kafka.bootstrap_server'"),
        ("lakes:\n  root: x\n", "unknown key 'lakes'"),
        ("kafka:\n  topic_partitions: two\n", "key 'kafka.topic_partitions' must be an integer"),
        ("kafka:\n  fail_on_data_loss: 1\n", "key 'kafka.fail_on_data_loss' must be true or false"),
        ("pipelines:\n  clickstream: {topc: x}\n", "unknown key 'pipelines.clickstream.topc'"),
        ("streaming:\n  watermark: soon\n", "'soon' is not a duration"),
        ("streaming:\n  max_bytes_per_trigger: lots\n", "key 'streaming': max_bytes_per_trigger: 'lots' is not a size like '512k', '16m' or '1g'"),
        ("streaming:\n  max_bytes_per_trigger: 0m\n", "'0m' is not a size"),
        ("streaming:\n  idle_poll_interval: soon\n", "'soon' is not a duration"),
        ("streaming:\n  idle_poll_interval: 0 ms\n", "idle_poll_interval: '0 ms' is under 1 ms"),
        ("streaming:\n  bronze_with_silver: yes please\n", "key 'streaming.bronze_with_silver' must be true or false"),
        ("kafka: [\n", "is not valid YAML"),
        ("catalog:\n  metastore: hive\n", "catalog.metastore must be 'local' or 'session', not 'hive'"),
        ("catalog:\n  schema_prefix: lake-pipe\n", "catalog.schema_prefix must be letters, digits and _"),
        ("catalog:\n  schemaprefix: x\n", "unknown key 'catalog.schemaprefix'"),
    ],
)
def test_bad_files_name_the_file_and_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        load_settings("e", conf(tmp_path, text))
    assert message in str(err.value)
    assert str(tmp_path / "e.yaml") in str(err.value)


def test_missing_environment_file_lists_the_ones_there(tmp_path):
    conf(tmp_path, "{}", env="dev")
    with pytest.raises(ConfigError, match=r"no such environment file \(environments in .*: dev\)"):
        load_settings("prod", tmp_path)


def test_secrets_come_from_the_environment_and_are_masked(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_JAAS", "org.apache.kafka.common.security.plain.PlainLoginModule required password=s3cret;")
    monkeypatch.setenv("TEST_USER", "alice")
    text = """
kafka:
  spark_options:
    security.protocol: SASL_SSL
    sasl.jaas.config: ${TEST_JAAS}
  client_options:
    sasl.username: ${TEST_USER}
    sasl.password: literal-but-secret
"""
    s = load_settings("e", conf(tmp_path, text))
    assert "s3cret" in s.kafka.spark_options["sasl.jaas.config"]
    printed = s.to_dict()
    assert printed["kafka"]["spark_options"] == {"security.protocol": "SASL_SSL", "sasl.jaas.config": MASK}
    assert printed["kafka"]["client_options"] == {"sasl.username": MASK, "sasl.password": MASK}
    assert "s3cret" not in str(printed)


def test_unset_secret_variable_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    with pytest.raises(ConfigError, match="key 'kafka.bootstrap_servers' refers to environment variable NOT_SET_ANYWHERE"):
        load_settings("e", conf(tmp_path, "kafka:\n  bootstrap_servers: ${NOT_SET_ANYWHERE}\n"))


def test_settings_are_frozen(tmp_path):
    s = load_settings("e", conf(tmp_path, "{}"))
    with pytest.raises(AttributeError):
        s.kafka.bootstrap_servers = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.kafka.spark_options["x"] = "y"  # type: ignore[index]


def test_the_local_catalog_keeps_its_database_in_the_lake_root(tmp_path):
    s = load_settings("e", conf(tmp_path, "lake:\n  root: /data/lake\nlocal_metastore:\n  port: 1600\n"))
    c = s.metastore_conf()
    assert c["spark.sql.catalogImplementation"] == "hive"
    assert c["spark.hadoop.javax.jdo.option.ConnectionURL"] == "jdbc:derby://127.0.0.1:1600//data/lake/_catalog/metastore_db;create=true"
    assert c["spark.sql.warehouse.dir"] == "/data/lake/_catalog/warehouse"
    for text in ("catalog:\n  metastore: session\n", "catalog:\n  enabled: false\n"):
        assert load_settings("e", conf(tmp_path, text)).metastore_conf() == {}, text


def test_a_local_catalog_beside_an_object_store_lake_is_refused(tmp_path):
    s = load_settings("e", conf(tmp_path, "lake:\n  root: s3a://bucket/lake\n"))
    with pytest.raises(ConfigError, match="catalog.metastore 'local' keeps the catalog beside a lake on this machine, but "
                                          "lake.root is s3a://bucket/lake: set catalog.metastore: session"):  # fmt: skip
        s.metastore_conf()


def test_catalog_names_have_a_schema_per_layer_and_the_catalog_in_front_when_set(tmp_path):
    from pipelines.model.layout import Table
    from pipelines.ops.catalog import qualified_name

    t = Table("clickstream_sessions", "gold", "clickstream", "/x")
    local = load_settings("e", conf(tmp_path, "catalog:\n  schema_prefix: shop\n"))
    assert qualified_name(local, t) == "shop_gold.clickstream_sessions"
    uc = load_settings("e", conf(tmp_path, "catalog:\n  metastore: session\n  name: main\n"))
    assert qualified_name(uc, t) == "main.lakepipe_gold.clickstream_sessions"
