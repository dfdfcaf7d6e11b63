"""Data contracts (`schemas/<pipeline>/contract.yaml`) as frozen, typed objects."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.sql import types as T

from pipelines.errors import ConfigError
from pipelines.model.typed_config import load_typed

FIELD_TYPES = ("string", "integer", "decimal", "double", "timestamp", "date", "boolean")
NUMERIC_TYPES = ("integer", "decimal", "double")
# A timestamp or date is ISO-8601 text unless `unit` says a whole number since the epoch: milliseconds or
# microseconds for a timestamp (Debezium's Timestamp and MicroTimestamp), days for a date (Debezium's Date).
UNITS = {"timestamp": ("ms", "us"), "date": ("days",)}
# How a decimal arrives: a JSON number (default); `text`, a JSON string such as "12.50" (Debezium's
# decimal.handling.mode=string); `base64`, the unscaled value as big-endian two's-complement bytes in base64
# (Debezium's default decimal.handling.mode=precise), scaled by the field's `scale`.
DECIMAL_ENCODINGS = ("number", "text", "base64")
# Personal data in a string field (see pipelines/engine/pii.py): silver stores a salted SHA-256 of it (`hash`,
# still joinable and countable), the value with all but its last 4 characters starred (`mask`), or nothing (`drop`).
PII_KINDS = ("hash", "mask", "drop")
_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str
    required: bool = False
    required_when: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    allowed: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    pattern: str | None = None
    precision: int = 18
    scale: int = 4
    path: tuple[str, ...] = ()  # where the value is in the JSON object, e.g. after.email; first present wins
    unit: str | None = None
    encoding: str = "number"  # decimals only: number, text or base64 (see DECIMAL_ENCODINGS)
    pii: str | None = None  # hash, mask or drop (see PII_KINDS)
    description: str = ""

    def __post_init__(self) -> None:
        if self.type not in FIELD_TYPES:
            raise ValueError(f"field '{self.name}': type '{self.type}' is not one of {', '.join(FIELD_TYPES)}")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"field '{self.name}': pattern is not a valid regex ({exc})") from None
        if (self.min is not None or self.max is not None) and self.type not in NUMERIC_TYPES:
            raise ValueError(f"field '{self.name}': min/max apply to integer, decimal and double fields only")
        for p in self.path:
            if not _PATH.match(p):
                raise ValueError(f"field '{self.name}': path '{p}' is not a dotted list of plain names")
        if self.unit is not None and self.unit not in UNITS.get(self.type, ()):
            units = "; ".join(f"{t}: {', '.join(u)}" for t, u in UNITS.items())
            raise ValueError(f"field '{self.name}': unit '{self.unit}' does not apply to a {self.type} ({units})")
        if self.encoding not in DECIMAL_ENCODINGS or (self.encoding != "number" and self.type != "decimal"):
            raise ValueError(f"field '{self.name}': encoding applies to decimal fields and is one of "
                             f"{', '.join(DECIMAL_ENCODINGS)}")  # fmt: skip
        if self.encoding == "base64" and self.precision > 18:
            raise ValueError(f"field '{self.name}': a base64 decimal is decoded up to precision 18, not {self.precision}")
        if not 0 <= self.scale <= self.precision <= 38:
            raise ValueError(f"field '{self.name}': need 0 <= scale <= precision <= 38")
        if self.pii is not None and (self.pii not in PII_KINDS or self.type != "string"):
            raise ValueError(f"field '{self.name}': pii is one of {', '.join(PII_KINDS)}, on string fields "
                             f"(this one: pii {self.pii!r}, type {self.type})")  # fmt: skip

    @property
    def json_paths(self) -> tuple[str, ...]:
        return self.path or (self.name,)

    @property
    def spark_type(self) -> T.DataType:
        return {
            "string": T.StringType(),
            "integer": T.LongType(),
            "decimal": T.DecimalType(self.precision, self.scale),
            "double": T.DoubleType(),
            "timestamp": T.TimestampType(),
            "date": T.DateType(),
            "boolean": T.BooleanType(),
        }[self.type]


@dataclass(frozen=True)
class Contract:
    name: str
    version: int
    fields: tuple[FieldSpec, ...]
    description: str = ""
    # Kafka Connect's JsonConverter with `schemas.enable=true` wraps each value as {"schema": ..., "payload": ...}:
    # when true, such a wrapper is taken off and the contract applies to `payload` (unwrapped values pass as they are).
    connect_envelope: bool = False
    # Objects (top-level keys the fields' paths read, e.g. `after` of a change event) whose keys that no field
    # reads also go to `extra`, as "<object>.<key>": a column added at the source reaches silver that way.
    extra_in: tuple[str, ...] = ()
    # Top-level keys that differ between deliveries of one record (Debezium's processing time `ts_ms`, `ts_us`,
    # `ts_ns`): left out of `extra` and so of the payload hash, so a redelivered change is an exact duplicate.
    ignore_keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"fields listed twice: {', '.join(dupes)}")
        for f in self.fields:
            for other, values in f.required_when.items():
                if other not in names:
                    raise ValueError(f"field '{f.name}': required_when names unknown field '{other}'")
                if not values:
                    raise ValueError(f"field '{f.name}': required_when.{other} lists no values")
        for obj in self.extra_in:
            if obj not in self.top_level_keys or obj in names:
                raise ValueError(f"extra_in names '{obj}', which no field's path reads into (e.g. after.<column>)")

    @property
    def pii_fields(self) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.fields if f.pii)

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> FieldSpec:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def top_level_keys(self) -> tuple[str, ...]:
        """The keys of the JSON object that the contract reads."""
        return tuple(dict.fromkeys(p.split(".")[0] for f in self.fields for p in f.json_paths))

    @property
    def known_top_level_keys(self) -> tuple[str, ...]:
        """The keys that do not go to `extra`: those the contract reads, and those it ignores."""
        return tuple(dict.fromkeys((*self.top_level_keys, *self.ignore_keys)))

    def known_keys(self, obj: str) -> tuple[str, ...]:
        """The keys of object `obj` (a top-level key) that some field's path reads."""
        return tuple(dict.fromkeys(p.split(".")[1] for f in self.fields for p in f.json_paths if p.startswith(f"{obj}.")))

    @property
    def spark_schema(self) -> T.StructType:
        return T.StructType([T.StructField(f.name, f.spark_type, True) for f in self.fields])


def load_contract(path: Path) -> Contract:
    if not path.is_file():
        raise ConfigError(f"{path}: contract file not found")
    return load_typed(Contract, path)


def contract_path(schemas_dir: Path, pipeline: str) -> Path:
    return schemas_dir / pipeline / "contract.yaml"
