"""Personal data end to end: a clickstream contract marking three fields `pii`, a real broker, real Delta tables.

silver holds the protected values, quarantine the records with those fields protected (the default), a replay
after a contract fix reads the raw records from bronze and hashes them once, `lakepipe validate` lists the
fields, and a run without the salt refuses to start with one line.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import shutil

import pytest
import yaml

from pipelines.domains.clickstream.simulator import ClickstreamGenerator
from pipelines.engine.pii import hashed, key_of, masked, privacy_of
from pipelines.errors import ConfigError
from pipelines.model.config import load_settings
from pipelines.model.project import load_project
from pipelines.ops.quarantine import replay
from tests.conftest import CONTRACTS
from tests.support import lakepipe_here, pipeline, run_once, send, without_gold

SALT_ENV = "LAKEPIPE_TEST_PII_SALT"
PII = {"search_query": "hash", "page_url": "mask", "referrer": "drop"}


def _contract(schemas, allow_tablet: bool) -> None:
    path = schemas / "clickstream" / "contract.yaml"
    contract = yaml.safe_load(path.read_text())
    for f in contract["fields"]:
        if f["name"] in PII:
            f["pii"] = PII[f["name"]]
        if f["name"] == "device":
            f["allowed"] = ["desktop", "mobile", "tablet"] if allow_tablet else ["desktop", "mobile"]
    path.write_text(yaml.safe_dump(contract, sort_keys=False))


@pytest.fixture
def pii_project(tmp_path, unique_topic, monkeypatch):
    schemas = tmp_path / "schemas"
    shutil.copytree(CONTRACTS, schemas)
    _contract(schemas, allow_tablet=False)
    monkeypatch.setenv(SALT_ENV, "a salt only this test knows")
    settings = without_gold(tmp_path, unique_topic, schemas=schemas, extra=f"pii:\n  salt_env: {SALT_ENV}\n")
    return settings, schemas


@pytest.mark.kafka
def test_pii_is_protected_in_silver_and_quarantine_and_a_replay_hashes_once(spark, pii_project, capsys, monkeypatch):
    settings, schemas = pii_project
    key = key_of("a salt only this test knows")
    gen = ClickstreamGenerator(seed=31, start=dt.datetime(2026, 11, 30, 9, tzinfo=dt.UTC), events_per_second=5)
    events = list(itertools.islice(gen.events(), 300))
    send(settings, events)
    raw = {p["event_id"]: p for e in events if (p := e.payload()) and isinstance(p.get("event_id"), str)}
    run_once(spark, settings, ["clickstream"])
    p = pipeline(settings, "clickstream")
    read = lambda t: spark.read.format("delta").load(t.path)  # noqa: E731

    silver = {r.event_id: r for r in read(p.layout.silver).collect()}
    assert silver, "the run wrote silver"
    searched = [r for r in silver.values() if r.search_query is not None]
    assert searched, "some events carry a search query"
    for r in silver.values():
        source = raw[r.event_id]
        assert r.search_query == (hashed(source["search_query"], key) if source.get("search_query") else None)
        assert r.page_url == masked(source["page_url"])
        assert r.referrer is None
        assert r.device in ("desktop", "mobile")

    tablets = {i for i, s in raw.items() if s.get("device") == "tablet" and i not in silver}
    quarantine = read(p.layout.quarantine).collect()
    stored = {json.loads(r.value)["event_id"]: json.loads(r.value) for r in quarantine if r.value is not None}
    assert tablets and tablets <= set(stored), "records quarantined for their device are kept, protected"
    for event_id in tablets:
        doc, source = stored[event_id], raw[event_id]
        assert doc.get("search_query") == (hashed(source["search_query"], key) if source.get("search_query") else None)
        assert doc["page_url"] == masked(source["page_url"]) and "referrer" not in doc
        assert doc["user_id"] == source["user_id"], "fields that are not pii stay as they came"
    words = {s["search_query"] for s in raw.values() if s.get("search_query")}
    dumped = " ".join(str(r.value) for r in quarantine)
    assert not any(w in dumped for w in words), "no raw search query in quarantine"

    out = lakepipe_here(capsys, "--conf-dir", str(settings.source.parent), "--env", "test", "validate")
    assert f"pii: {p.layout.silver.name}: search_query (hash), page_url (mask), referrer (drop)" in out
    assert "protected the same way" in out

    _contract(schemas, allow_tablet=True)  # the fix: tablets are a device after all
    project = load_project(load_settings("test", settings.source.parent), ["clickstream"])
    fixed = project.pipeline("clickstream")
    result = replay(spark, fixed, "not_in_set:device", None, privacy_of(fixed, project.settings))
    assert result.to_silver == len(tablets)
    replayed = {r.event_id: r for r in read(p.layout.silver).collect() if r.event_id in tablets}
    assert set(replayed) == tablets
    for event_id, r in replayed.items():
        source = raw[event_id]
        assert r.search_query == (hashed(source["search_query"], key) if source.get("search_query") else None), (
            "hashed once, from the raw record in bronze"
        )
        assert r.page_url == masked(source["page_url"]) and r.device == "tablet"


@pytest.mark.kafka
def test_a_run_without_the_salt_refuses_to_start(spark, pii_project, monkeypatch):
    settings, _ = pii_project
    monkeypatch.delenv(SALT_ENV)
    with pytest.raises(ConfigError, match=f"search_query is `pii: hash`, and environment variable {SALT_ENV}"):
        run_once(spark, settings, ["clickstream"])
    assert not any(q.isActive for q in spark.streams.active)
