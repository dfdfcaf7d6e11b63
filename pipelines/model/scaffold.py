"""`lakepipe init DIR`: a new project of one's own, outside this repository, run by the installed package.

It writes an environment file, a pipeline spec, its data contract and expectation suite, and a module with its
gold function: everything `lakepipe validate` checks, and a pipeline `lakepipe run NAME --once` runs. The
project's folder (the conf folder's parent) is on the import path of the project, so its spec names the gold
function as `<name>_gold.events_per_minute`. Existing files are never overwritten.
"""

from __future__ import annotations

import re
from pathlib import Path

from pipelines.errors import ConfigError

ENV = """\
# The laptop environment of {name}: a Kafka broker on localhost, tables under ./lakehouse.
# Every key is optional: see `lakepipe config` for the resolved values.
kafka:
  bootstrap_servers: localhost:9092
  topic_partitions: 2
lake:
  root: lakehouse
streaming:
  trigger_interval: 5 seconds
  watermark: 10 minutes
spark:
  master: local[2]
  shuffle_partitions: 2
catalog:
  enabled: false             # true registers every table by name (locally: `lakepipe up` runs the metastore server)
schemas_dir: schemas
specs_dir: conf/pipelines
pipelines:
  {name}:
    topic: {name}.events
"""

SPEC = """\
# {name}: one JSON event per Kafka message.
name: {name}
description: Events of {name}; events and amounts per minute and type in gold.
topic: {name}.events
key: event_id                         # the field the producer uses as the Kafka message key
contract: {name}/contract.yaml
events_table: {name}_events          # silver; bronze is {name}_events_raw, quarantine {name}_events_quarantine
event_time: event_time
dedup_key: event_id
partition_by: [event_date]
outputs:
  - name: {name}_per_minute
    function: {name}_gold.events_per_minute
    upsert: {{keys: [window_start, event_type]}}
    description: Events and their total amount per minute and event type.
quality:
  suite: {name}/expectations.json
"""

CONTRACT = """\
# Data contract of {name}: the fields of each event, their JSON types and rules. Rejected records go to
# quarantine with codes such as missing:<field>, bad_type:<field>, not_in_set:<field>, out_of_range:<field>.
name: {name}_event
version: 1
fields:
  - name: event_id
    type: string
    required: true
    description: Unique per event; a re-sent event repeats it.
  - name: event_time
    type: timestamp
    required: true
    description: ISO-8601 with an offset or Z, e.g. 2026-11-30T10:15:00Z.
  - name: event_type
    type: string
    required: true
    allowed: [created, updated, deleted]
  - name: amount
    type: decimal
    precision: 18
    scale: 2
    min: 0
    description: Optional; a JSON number.
"""

SUITE = """\
{{
  "name": "{name}_events",
  "meta": {{"notes": "Great Expectations 1.x suite. meta.action: warn | drop | quarantine | fail; meta.name: the reason code."}},
  "expectations": [
    {{"type": "expect_column_values_to_be_between", "kwargs": {{"column": "amount", "max_value": 1000000}},
     "meta": {{"action": "quarantine", "name": "amount_over_a_million"}}}},
    {{"type": "expect_table_row_count_to_be_between", "kwargs": {{"min_value": 1}},
     "meta": {{"action": "warn", "name": "batch_not_empty"}}}}
  ]
}}
"""

GOLD = '''\
"""Gold functions of {name}: each takes the silver events (watermarked on event_time when streaming) and returns
the rows of one gold table; lakepipe upserts them by the keys of the spec."""

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def events_per_minute(events: DataFrame) -> DataFrame:
    agg = events.groupBy(F.window("event_time", "1 minute"), "event_type").agg(
        F.count(F.lit(1)).alias("events"),
        F.sum("amount").cast("decimal(38,2)").alias("amount"),
    )
    return agg.select(F.col("window.start").alias("window_start"), F.col("window.end").alias("window_end"),
                      "event_type", "events", "amount")
'''

README = """\
# {name}

A lakepipe project: Kafka topic `{name}.events` -> bronze -> silver (contract `schemas/{name}/contract.yaml`,
suite `schemas/{name}/expectations.json`) -> gold (`{name}_gold.py`), as described by `conf/pipelines/{name}.yaml`.

    lakepipe validate                      # check the spec, contract, suite and gold function
    lakepipe run {name} --once             # process what the topic holds now (or without --once: continuously)
    lakepipe tables                        # every table, its location and rows

A local run needs a Kafka broker at localhost:9092 and the Delta and Kafka jars for Spark: set LAKEPIPE_JARS_DIR
to a folder holding a `spark/` folder of them (lakepipe's repository resolves it with `make jars`).
"""

GITIGNORE = "lakehouse/\n.lakepipe/\n__pycache__/\n"


def init_project(folder: Path, name: str | None = None) -> list[Path]:
    """Write the project's files under `folder` (created if missing); returns the files written."""
    name = name or re.sub(r"[^a-z0-9_]", "_", folder.resolve().name.lower()).strip("_")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name or ""):
        raise ConfigError(f"'{name}' cannot name a pipeline: use lower-case letters, digits and _ (--name NAME)")
    files = {
        folder / "conf" / "local.yaml": ENV,
        folder / "conf" / "pipelines" / f"{name}.yaml": SPEC,
        folder / "schemas" / name / "contract.yaml": CONTRACT,
        folder / "schemas" / name / "expectations.json": SUITE,
        folder / f"{name}_gold.py": GOLD,
        folder / "README.md": README,
        folder / ".gitignore": GITIGNORE,
    }
    existing = [p for p in files if p.exists()]
    if existing:
        raise ConfigError(f"{existing[0]} already exists: lakepipe init never overwrites; choose an empty folder")
    for path, template in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(name=name))
    return list(files)
