"""Personal data: contract fields marked `pii: hash | mask | drop`, protected in silver and quarantine.

- `hash`: silver stores the SHA-256 (hex) of a secret key followed by the value. The key is derived from the salt
  in the environment variable that `pii.salt_env` names (never from a file): the same value always gives the same
  hash under one salt, so hashed fields still join and count; without the salt nobody can test a guess.
- `mask`: every character but the last 4 replaced by `*`; values shorter than 8 characters are starred entirely.
- `drop`: the column stays in silver's schema and is always null.
The rules check the raw values (a `pattern` on an e-mail address checks the address); only what is written is
protected. Quarantine keeps each record's raw Kafka value for review and replay unless the environment sets
`pii.quarantine_raw_pii: false` (the default): then the value is stored with those fields protected the same
way (a value that is not a JSON object is not stored at all), and a replay reads the record from bronze by its
Kafka coordinates. Bronze keeps every record as it came: restrict who reads it, or keep it for less time.

The key appears in Spark's plans as a literal: the session's `spark.sql.redaction.string.regex` is extended so
that `explain` (and the Spark UI's SQL tab, which shows the same plan text) shows it redacted.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from pipelines.errors import ConfigError
from pipelines.model.config import PiiSettings, Settings
from pipelines.model.contract import Contract, FieldSpec

KEY_PREFIX = "lakepipe-pii-key:"
REDACTION_REGEX = KEY_PREFIX + "[0-9a-f]{64}"
REDACTION_CONF = "spark.sql.redaction.string.regex"
MASK_KEEP, MASK_MIN = 4, 8


def key_of(salt: str) -> str:
    """The hashing key derived from a salt (pure): fixed-length, so the redaction pattern matches all of it."""
    return KEY_PREFIX + hashlib.sha256(salt.encode()).hexdigest()


def hashed(value: str, key: str) -> str:
    """What `pii: hash` stores for `value` (pure; the same as the Spark expression)."""
    return hashlib.sha256((key + value).encode()).hexdigest()


def masked(value: str) -> str:
    """What `pii: mask` stores for `value` (pure; the same as the Spark expression)."""
    if len(value) < MASK_MIN:
        return "*" * len(value)
    return "*" * (len(value) - MASK_KEEP) + value[-MASK_KEEP:]


@dataclass(frozen=True)
class Privacy:
    """The pii fields of one contract and how to protect them; `Privacy()` protects nothing."""

    fields: tuple[FieldSpec, ...] = ()
    key: str | None = None  # None unless a field is `hash`
    raw_quarantine: bool = True
    connect_envelope: bool = False

    @property
    def redacts_quarantine(self) -> bool:
        return bool(self.fields) and not self.raw_quarantine

    def column(self, f: FieldSpec, c: Column) -> Column:
        if f.pii == "hash":
            return F.sha2(F.concat(F.lit(self.key), c), 256)
        if f.pii == "mask":
            keep = F.when(F.length(c) >= MASK_MIN, F.substring(c, -MASK_KEEP, MASK_KEEP)).otherwise(F.lit(""))
            return F.concat(F.repeat(F.lit("*"), F.length(c) - F.length(keep)), keep)  # null stays null
        return F.lit(None).cast(T.StringType())

    def silver(self, rows: DataFrame) -> DataFrame:
        """Silver rows (or any rows with the contract's columns) with their pii columns protected."""
        if not self.fields:
            return rows
        self.redact_plans(rows.sparkSession)
        return rows.withColumns({f.name: self.column(f, F.col(f.name)) for f in self.fields if f.name in rows.columns})

    def quarantine(self, rows: DataFrame) -> DataFrame:
        """Quarantine rows with their pii protected, unless the environment keeps raw records there."""
        if not self.redacts_quarantine:
            return rows
        protect = F.udf(lambda v: redact_value(v, self.fields, self.key, self.connect_envelope), T.BinaryType())
        return self.silver(rows).withColumn("value", protect(F.col("value")))

    def redact_plans(self, spark: SparkSession) -> None:
        """Add the key's pattern to the session's redaction pattern (once), if there is a key."""
        if self.key is None:
            return
        current = spark.conf.get(REDACTION_CONF, "") or ""
        if REDACTION_REGEX not in current:
            spark.conf.set(REDACTION_CONF, f"{current}|{REDACTION_REGEX}" if current else REDACTION_REGEX)


def privacy(contract: Contract, settings: PiiSettings, source: str = "") -> Privacy:
    """How `contract`'s pii fields are protected in this environment; a missing salt is a one-line ConfigError."""
    fields = contract.pii_fields
    key = None
    if any(f.pii == "hash" for f in fields):
        salt = os.environ.get(settings.salt_env)
        if not salt:
            names = ", ".join(f.name for f in fields if f.pii == "hash")
            raise ConfigError(
                f"{source or contract.name}: {names} {'is' if ',' not in names else 'are'} `pii: hash`, and environment "
                f"variable {settings.salt_env} (pii.salt_env) is not set: export {settings.salt_env}=<a long random "
                "secret>, the same for every run (another salt gives other hashes)"
            )  # fmt: skip
        key = key_of(salt)
    return Privacy(fields, key, settings.quarantine_raw_pii, contract.connect_envelope)


def privacy_of(pipeline, settings: Settings) -> Privacy:  # noqa: ANN001 - a model.project.Pipeline
    """`privacy` for a pipeline of the project in the environment `settings`."""
    return privacy(pipeline.contract, settings.pii, f"schemas/{pipeline.spec.contract}")


def redact_value(value: bytes | None, fields: Iterable[FieldSpec], key: str | None, envelope: bool = False) -> bytes | None:
    """A Kafka value (JSON bytes) with each pii field at its paths protected (pure). None when the value is not a
    JSON object: its fields cannot be found, so nothing of it is kept (bronze has it)."""
    if value is None:
        return None
    try:
        doc = json.loads(value)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    body = doc.get("payload") if envelope and isinstance(doc.get("payload"), dict) and "schema" in doc else doc
    for f in fields:
        for path in f.json_paths:
            *parents, last = path.split(".")
            obj = body
            for p in parents:
                obj = obj.get(p) if isinstance(obj, dict) else None
            if not isinstance(obj, dict) or last not in obj:
                continue
            if f.pii == "drop":
                del obj[last]
            elif obj[last] is not None:
                text = obj[last] if isinstance(obj[last], str) else json.dumps(obj[last])
                obj[last] = hashed(text, key) if f.pii == "hash" else masked(text)
    return json.dumps(doc, separators=(",", ":")).encode()
