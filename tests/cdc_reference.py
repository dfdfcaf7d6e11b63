"""An independent reference for CDC tests: apply change envelopes one by one in source (lsn) order."""

from __future__ import annotations

import json

FIELDS = ("email", "full_name", "tier", "country")


def customer_id(envelope: dict) -> str:
    return (envelope["after"] or envelope["before"])["customer_id"]


def apply_in_order(envelopes: list[dict]) -> tuple[dict, list[tuple]]:
    """(current state: id -> (fields..., lsn), history: sorted (id, fields..., valid_from_ms, valid_to_ms,
    is_current, lsn)) from applying each distinct change once, in lsn order."""
    distinct = {(e["source"]["lsn"], customer_id(e)): e for e in envelopes}  # a snapshot's rows share an lsn
    current: dict[str, tuple] = {}
    versions: list[dict] = []
    open_version: dict[str, dict] = {}
    for lsn, cid in sorted(distinct):
        e = distinct[(lsn, cid)]
        committed = e["source"]["ts_ms"]
        if cid in open_version:
            open_version.pop(cid)["valid_to"] = committed
        if e["op"] == "d":
            current.pop(cid, None)
            continue
        row = {"id": cid, **{f: e["after"][f] for f in FIELDS}, "valid_from": committed, "valid_to": None, "lsn": lsn}
        versions.append(row)
        open_version[cid] = row
        current[cid] = (*[e["after"][f] for f in FIELDS], lsn)
    history = sorted(
        (v["id"], *[v[f] for f in FIELDS], v["valid_from"], v["valid_to"], v["valid_to"] is None, v["lsn"])
        for v in versions
    )
    return current, history


def payloads(events) -> list[dict]:
    """The JSON payloads of simulator events that reach silver (no rejects, re-sends or tombstones)."""
    return [json.loads(e.value) for e in events if not e.reasons and e.kind != "exact_duplicate" and e.value is not None]
