"""Data contracts (`schemas/<pipeline>/contract.yaml`) as frozen, typed objects."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.sql import types as T

from pipelines.errors import ConfigError
from pipelines.typed_config import load_typed

FIELD_TYPES = ("string", "integer", "decimal", "timestamp", "boolean")


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
    description: str = ""

    def __post_init__(self) -> None:
        if self.type not in FIELD_TYPES:
            raise ValueError(f"field '{self.name}': type '{self.type}' is not one of {', '.join(FIELD_TYPES)}")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"field '{self.name}': pattern is not a valid regex ({exc})") from None
        if (self.min is not None or self.max is not None) and self.type not in ("integer", "decimal"):
            raise ValueError(f"field '{self.name}': min/max apply to integer and decimal fields only")
        if not 0 <= self.scale <= self.precision <= 38:
            raise ValueError(f"field '{self.name}': need 0 <= scale <= precision <= 38")

    @property
    def spark_type(self) -> T.DataType:
        return {
            "string": T.StringType(),
            "integer": T.LongType(),
            "decimal": T.DecimalType(self.precision, self.scale),
            "timestamp": T.TimestampType(),
            "boolean": T.BooleanType(),
        }[self.type]


@dataclass(frozen=True)
class Contract:
    name: str
    version: int
    fields: tuple[FieldSpec, ...]
    description: str = ""

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

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> FieldSpec:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def spark_schema(self) -> T.StructType:
        return T.StructType([T.StructField(f.name, f.spark_type, True) for f in self.fields])


def load_contract(path: Path) -> Contract:
    if not path.is_file():
        raise ConfigError(f"{path}: contract file not found")
    return load_typed(Contract, path)


def contract_path(schemas_dir: Path, pipeline: str) -> Path:
    return schemas_dir / pipeline / "contract.yaml"
