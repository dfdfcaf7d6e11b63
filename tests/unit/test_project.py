"""The project model and the domain registry: loaded once, lookups across pipelines, one folder per domain."""

from __future__ import annotations

import itertools

import pytest
import yaml

from pipelines.domains import SimulatorOptions, domain, domains, fault_flags
from pipelines.errors import ConfigError, TableNotFoundError
from pipelines.model.config import load_settings
from pipelines.model.project import check_project, load_project
from tests.conftest import CONTRACTS, PROJECT_DIR

SPECS = PROJECT_DIR / "conf" / "pipelines"


@pytest.fixture(scope="module")
def project():
    return load_project(load_settings("local", PROJECT_DIR / "conf"))


def settings_with(tmp_path, specs: dict[str, dict]):
    folder = tmp_path / "specs"
    folder.mkdir()
    for name, spec in specs.items():
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(spec))
    (tmp_path / "t.yaml").write_text(f"schemas_dir: {CONTRACTS}\nspecs_dir: {folder}\n")
    return load_settings("t", tmp_path)


def spec(name: str) -> dict:
    return yaml.safe_load((SPECS / f"{name}.yaml").read_text())


def test_every_spec_is_loaded_once_with_its_tables(project):
    assert project.names == sorted(p.stem for p in SPECS.glob("*.yaml"))
    names = [t.name for t in project.tables]
    assert len(names) == len(set(names))  # the shared quality table once
    assert "quality_results" in names
    assert project.table("payments_fraud_alerts").layer == "gold"
    assert project.table("customers").layer == "silver"
    assert project.topic("clickstream") == "clickstream.events"


def test_tables_are_declared_with_keys_partitioning_and_a_comment(project):
    clicks = project.pipeline("clickstream")
    assert clicks.layout.silver.keys == ("event_id",)
    assert clicks.layout.silver.partition_by == ("event_date",)
    assert clicks.layout.bronze.keys == ("topic", "partition", "offset")
    assert project.table("clickstream_sessions").keys == ("session_id", "session_start")
    assert project.table("customers_history").keys == ("customer_id",)
    assert project.table("customers_history").layer == "silver"  # an SCD table is silver, though derived
    assert project.table("iot_anomalies").keys == ()  # appended
    assert all(t.comment for t in project.tables), [t.name for t in project.tables if not t.comment]
    assert all(t.path.endswith(f"/{t.layer}/{t.name}") for t in project.tables)


def test_silver_keeps_statistics_of_the_columns_lakepipe_reads_it_by(project):
    stats = {name: project.pipeline(name).silver_stats_columns() for name in project.names}
    assert stats == {
        "clickstream": ["event_time", "event_id"],
        "customers": ["change_time", "lsn", "customer_id"],  # customer_id: the SCD refresh's key
        "iot": ["reading_time", "reading_id"],
        "orders": ["change_time", "lsn", "order_id"],
        "payments": ["txn_time", "txn_id"],
    }


def test_queries_start_with_the_idle_poll_interval_then_the_specs_own_settings(tmp_path):
    customers = spec("customers")
    polled = settings_with(tmp_path, {"customers": customers, "clickstream": spec("clickstream")})
    p = load_project(polled, ["customers"]).pipeline("customers")
    assert p.query_conf() == {"spark.sql.streaming.pollingDelay": "100ms", **customers["spark_conf"]}
    text = (tmp_path / "t.yaml").read_text()
    (tmp_path / "t.yaml").write_text(text + "streaming: {idle_poll_interval: 0.5 seconds}\n")
    assert load_project(load_settings("t", tmp_path), ["customers"]).pipeline("customers").query_conf()[
        "spark.sql.streaming.pollingDelay"] == "500ms"  # fmt: skip
    (tmp_path / "t.yaml").write_text(text + "streaming: {idle_poll_interval: null}\n")
    assert load_project(load_settings("t", tmp_path), ["customers"]).pipeline("customers").query_conf() == customers["spark_conf"]


def test_owner_finds_a_pipeline_by_its_name_silver_or_quarantine(project):
    assert project.owner("iot").name == "iot"
    assert project.owner("payments_transactions").name == "payments"
    assert project.owner("customer_changes_quarantine").name == "customers"
    with pytest.raises(TableNotFoundError, match="no pipeline, silver or quarantine table named 'nope'"):
        project.owner("nope")


def test_unknown_names_are_one_line_errors(project):
    with pytest.raises(ConfigError, match=r"no pipeline 'shop': there is no spec .*shop.yaml \(pipelines: clickstream, customers"):
        project.pipeline("shop")
    with pytest.raises(TableNotFoundError, match=r"no table 'sales': `lakepipe tables` lists them"):
        project.table("sales")


def test_loading_some_pipelines_brings_those_their_outputs_read(tmp_path):
    settings = settings_with(tmp_path, {n: spec(n) for n in ("clickstream", "customers", "iot")})
    assert load_project(settings, ["customers"]).names == ["clickstream", "customers"]  # revenue per tier reads clickstream
    assert load_project(settings, ["iot"]).names == ["iot"]


def test_a_broken_spec_is_reported_by_name_and_does_not_hide_the_others(tmp_path):
    broken = spec("iot") | {"colour": "blue"}
    settings = settings_with(tmp_path, {"clickstream": spec("clickstream"), "iot": broken})
    problems = check_project(settings)
    assert problems["clickstream"] is None
    assert "colour" in problems["iot"] and "iot.yaml" in problems["iot"]
    with pytest.raises(ConfigError, match="colour"):
        load_project(settings)
    assert load_project(settings, ["clickstream"]).names == ["clickstream"]


def test_every_domain_folder_feeds_a_shipped_spec_whose_outputs_live_in_that_folder():
    assert set(domains()) == {p.stem for p in SPECS.glob("*.yaml")}
    for name in domains():
        functions = [o["function"] for o in spec(name).get("outputs", [])]
        own = [f for f in functions if f.startswith(f"pipelines.domains.{name}.")]
        engine = [f for f in functions if f.startswith("pipelines.engine.")]
        assert own and len(own) + len(engine) == len(functions), (name, functions)


@pytest.mark.parametrize("name", sorted(domains()))
def test_each_fault_flag_of_a_domain_reaches_its_simulator(name):
    d = domain(name)
    clean = list(itertools.islice(d.simulator(SimulatorOptions(seed=3)).events(), 2000))
    assert {e.kind for e in clean} <= {"valid"} | {e.kind for e in clean if not e.reasons}
    for flag in d.faults:
        faulty = list(itertools.islice(d.simulator(SimulatorOptions(seed=3, faults={flag: 0.2})).events(), 2000))
        assert [e.value for e in faulty] != [e.value for e in clean], f"--{flag} changed nothing in {name}"


def test_fault_flags_name_the_domains_that_take_them():
    flags = fault_flags()
    assert flags["fraud"][1] == ["payments"]
    assert set(flags["duplicates"][1]) == set(domains())
    with pytest.raises(ConfigError, match=r"no simulator for pipeline 'shop' \(simulators: clickstream, customers, iot, orders, payments\)"):
        domain("shop")


def test_a_new_domain_is_a_folder_and_is_found(tmp_path, monkeypatch):
    """A new folder beside the others (here in a second search path): the registry finds it with no other edit."""
    import sys

    import pipelines.domains as registry

    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "__init__.py").write_text(
        "from pipelines.domains import Domain\n"
        "from pipelines.domains.payments import DOMAIN as _P\n"
        "DOMAIN = Domain(pipeline='shop', faults=_P.faults, simulator=_P.simulator, demo=_P.demo)\n"
    )
    monkeypatch.setattr(registry, "__path__", [*registry.__path__, str(tmp_path)])
    registry.domains.cache_clear()
    try:
        assert list(registry.domains()) == ["clickstream", "customers", "iot", "orders", "payments", "shop"]
        assert domain("shop").faults == domain("payments").faults
    finally:
        registry.domains.cache_clear()
        sys.modules.pop("pipelines.domains.shop", None)


def test_the_readme_lists_exactly_the_declared_tables(project):
    from pipelines.ops.catalog import markdown

    readme = (PROJECT_DIR / "README.md").read_text()
    block = readme.split("<!-- tables:begin -->\n")[1].split("\n<!-- tables:end -->")[0]
    assert block == markdown(project), "README's table list is stale: paste `lakepipe tables --markdown` into it"


def test_small_file_properties_go_to_the_listed_layers_and_tables(tmp_path):
    s = spec("clickstream")
    s["files"] = {"auto_compact": ["bronze", "clickstream_sessions"], "optimize_write": ["silver"]}
    p = load_project(settings_with(tmp_path, {"clickstream": s})).pipeline("clickstream")
    got = {t.name: p.spec.files.properties(t.name, t.layer) for t in p.layout.tables}
    log = {"delta.checkpointInterval": "100"}  # every table
    assert got["clickstream_events_raw"] == {"delta.autoOptimize.autoCompact": "true", **log}
    assert got["clickstream_sessions"] == {"delta.autoOptimize.autoCompact": "true", **log}
    assert got["clickstream_events"] == {"delta.autoOptimize.optimizeWrite": "true", **log}
    assert got["clickstream_revenue_per_minute"] == log == got["clickstream_events_quarantine"]


def test_a_small_file_entry_that_is_no_layer_or_table_is_named(tmp_path):
    s = spec("clickstream")
    s["files"] = {"auto_compact": ["goldd"]}
    with pytest.raises(ConfigError, match=r"key 'files.auto_compact' names 'goldd', which is neither a layer nor a table"):
        load_project(settings_with(tmp_path, {"clickstream": s}))


def test_an_environment_replaces_an_outputs_options_by_name(tmp_path):
    settings = settings_with(tmp_path, {"clickstream": spec("clickstream")})
    plain = load_project(settings, ["clickstream"]).pipeline("clickstream")
    env = tmp_path / "t.yaml"
    env.write_text(env.read_text() + "pipelines:\n  clickstream:\n    options: {clickstream_sessions: {state: jvm}}\n")
    chosen = load_project(load_settings("t", tmp_path), ["clickstream"]).pipeline("clickstream")
    sessions = lambda p: next(o for o in p.spec.outputs if o.name == "clickstream_sessions").options  # noqa: E731
    assert dict(sessions(plain)) == {"gap": "30 minutes", "buckets": "8"}
    assert dict(sessions(chosen)) == {"gap": "30 minutes", "buckets": "8", "state": "jvm"}
    assert [o.options for o in chosen.spec.outputs if o.name != "clickstream_sessions"] == [
        o.options for o in plain.spec.outputs if o.name != "clickstream_sessions"]


@pytest.mark.parametrize("given, error", [
    ({"clickstream_session": {"state": "pandas"}}, r"key 'pipelines.clickstream.options.clickstream_session' names no output"),
    ({"clickstream_sessions": {"stat": "pandas"}}, r"key 'pipelines.clickstream.options.clickstream_sessions.stat': "
                                                    r"pipelines.domains.clickstream.gold.sessions takes no argument 'stat'"),
])  # fmt: skip
def test_an_environments_option_for_no_output_or_argument_is_named(tmp_path, given, error):
    settings = settings_with(tmp_path, {"clickstream": spec("clickstream")})
    text = (tmp_path / "t.yaml").read_text() + "pipelines:\n  clickstream:\n    options: " + yaml.safe_dump(given, default_flow_style=True)
    (tmp_path / "t.yaml").write_text(text)
    with pytest.raises(ConfigError, match=error):
        load_project(load_settings("t", tmp_path), ["clickstream"])
    assert settings.pipeline("clickstream").options == {}
