"""Parse raw Kafka values against a contract, in one pass of column expressions.

`parse_records` is pure (DataFrame in, DataFrame out). Each record gets its typed fields, `extra` (unknown
fields as JSON text), `payload_hash` (identifies an exact re-send) and `reasons`: every rule it broke, as
codes. JSON types are read exactly through the VARIANT type, so `"12.50"` (text) is not taken for a number.

Two ways to read the JSON, with the same rows: where lakepipe's jar is on Spark's classpath (infra/jsonparse,
built into .jars/spark by `make jars`), one JVM function parses each record with Spark's own variant parser and
hands every field's JSON type and text to the expressions that type and check them (the "jvm" parse); otherwise
Spark SQL's `try_parse_json`, `variant_get` and `schema_of_variant` do it (the "sql" parse: ~1.4 times the CPU,
most of the difference Spark building a cast for every value it reads from a variant).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from decimal import Decimal

from pyspark import SparkContext
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from pipelines.model.contract import Contract, FieldSpec
from pipelines.quality.row_rules import compact_codes

KAFKA_COLUMNS = ("key", "value", "topic", "partition", "offset", "kafka_timestamp")
INTEGER_TYPES = ("TINYINT", "SMALLINT", "INT", "BIGINT")
NUMBER_TYPES = (*INTEGER_TYPES, "FLOAT", "DOUBLE")
# ISO-8601 date-time with a mandatory offset; up to microseconds (what a Spark timestamp holds).
ISO_TIMESTAMP = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})$"
ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"
BASE64 = r"^[A-Za-z0-9+/]+={0,2}$"
DECIMAL_TEXT = r"^-?\d{1,38}(\.\d{1,38})?$"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_JSON = "_lp_json"
_VARIANT = "_lp_variant"
_FIELDS = "_lp_fields"

JVM_PARSE_CLASS = "io.lakepipe.json.ContractFields"
JVM_PARSE_FUNCTION = "lakepipe_contract_fields"
_JVM_PARSE_TYPE = T.StructType([
    T.StructField("problem", T.StringType()), T.StructField("has_extra", T.BooleanType()),
    T.StructField("types", T.ArrayType(T.StringType())), T.StructField("texts", T.ArrayType(T.StringType())),
])  # fmt: skip
PARSES = ("auto", "jvm", "sql")
_VARIANT_CONF = ("spark.sql.variant.allowDuplicateKeys", "spark.sql.variant.validateUnicodeInJsonParsing")
_NO_JVM_PARSE: set[int] = set()  # SparkContexts whose classpath lacks the jar (said once)
log = logging.getLogger("lakepipe.validation")


def parse_records(raw: DataFrame, contract: Contract, parse: str = "auto") -> DataFrame:
    """Raw records (`value` as bytes, plus Kafka columns) to typed fields with `reasons` and `extra`. `parse`:
    "jvm" or "sql" (see the module's doc), or "auto": the JVM parse where its jar is on the classpath."""
    if parse not in PARSES:
        raise ValueError(f"parse is one of {', '.join(PARSES)}, not {parse!r}")
    spark = raw.sparkSession
    if parse == "jvm":
        _register(spark)  # an error where the class is missing
    jvm = parse == "jvm" or (parse == "auto" and jvm_parse_available(spark))
    flags = tuple(spark.conf.get(k, d).lower() == "true" for k, d in zip(_VARIANT_CONF, ("false", "true"))) if jvm else ()
    steps = _parse_steps(contract, flags)
    df = raw
    for columns in steps[:-1]:
        df = df.select("*", *columns)
    passthrough = [c for c in KAFKA_COLUMNS if c in raw.columns]
    return df.select(*passthrough, *steps[-1])


_STEPS: dict[tuple[int, str, tuple[bool, ...]], list[list[Column]]] = {}  # (SparkContext, contract, parse) -> expressions


def jvm_parse_available(spark) -> bool:
    """Whether the JVM parse's function is registered in this session (registering it now if its class loads)."""
    sc_id = id(SparkContext._active_spark_context)
    if sc_id in _NO_JVM_PARSE:
        return False
    try:
        _register(spark)
        return True
    except Exception as exc:  # the class is not on the classpath (e.g. a cluster without the jar)
        _NO_JVM_PARSE.add(sc_id)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("silver parses JSON with Spark SQL alone (slower, the same rows): %s is not on Spark's classpath "
                    "(add .jars/spark/lakepipe-jsonparse.jar, built by `make jars`, to --jars): %s",
                    JVM_PARSE_CLASS, reason[:200])  # fmt: skip
        return False


def _register(spark) -> None:
    if not spark.catalog.functionExists(JVM_PARSE_FUNCTION):
        spark.udf.registerJavaFunction(JVM_PARSE_FUNCTION, JVM_PARSE_CLASS, _JVM_PARSE_TYPE)


def _unwrapped(text: Column) -> Column:
    """The `payload` of a Kafka Connect {"schema": ..., "payload": ...} value, else the value itself."""
    keys = F.sort_array(F.json_object_keys(text))  # null when the text is no JSON object
    wrapped = F.coalesce(F.array_join(keys, ",") == F.lit("payload,schema"), F.lit(False))
    return F.when(wrapped, F.get_json_object(text, "$.payload")).otherwise(text)


def _parse_steps(contract: Contract, jvm_flags: tuple[bool, ...]) -> list[list[Column]]:
    """The column expressions of each step of the parse, built once per contract (by value: a query restarted
    with the contract loaded again reuses them), JVM and way of parsing (`jvm_flags`: the JVM parse's two
    settings, or none for the SQL parse): building them takes thousands of calls into the JVM (~0.7-1.5 s),
    which each micro-batch would otherwise pay again."""
    key = (id(SparkContext._active_spark_context), repr(contract), jvm_flags)
    cached = _STEPS.get(key)
    if cached is not None:
        return cached
    for f in contract.fields:
        if not _IDENT.match(f.name):
            raise ValueError(f"contract {contract.name}: field name '{f.name}' is not a plain identifier")
    reader = _TextReader() if jvm_flags else _VariantReader()
    if jvm_flags:
        invalid = F.col(f"{_FIELDS}.problem") == "invalid_json"
        is_object = F.col(f"{_FIELDS}.problem").isNull()
        extra = _extra(contract, is_object, F.expr(f"try_parse_json({_JSON})"), F.col(f"{_FIELDS}.has_extra"))
    else:
        invalid = F.col(_VARIANT).isNull()
        # A parsed document is an object when its first non-blank character is '{' (schema_of_variant of the whole
        # document would describe every field: ~12 us per record).
        is_object = F.col(_VARIANT).isNotNull() & F.col(_JSON).rlike(r"^\s*\{")
        extra = _extra(contract, is_object, F.col(_VARIANT), None)
    field_reasons = [r for f in contract.fields for r in _field_reasons(f, reader)]
    reasons = (
        F.when(invalid, F.array(F.lit("invalid_json")))
        .when(~is_object, F.array(F.lit("not_an_object")))
        .otherwise(compact_codes(field_reasons))
    )
    typed = [F.col(n) for n in contract.field_names]
    text = F.when(F.expr("is_valid_utf8(value)"), F.col("value").cast("string"))
    if contract.connect_envelope:
        text = _unwrapped(text)
    if jvm_flags:
        call = F.call_function(JVM_PARSE_FUNCTION, F.col(_JSON), F.lit(_layout(contract)), *[F.lit(b) for b in jvm_flags])
        read = [
            [call.alias(_FIELDS)],
            [c for i, f in enumerate(contract.fields)
             for c in (F.col(f"{_FIELDS}.types")[i].alias(_type_col(f.name)), F.col(f"{_FIELDS}.texts")[i].alias(_text_col(f.name)))],
        ]  # fmt: skip
    else:
        read = [
            [F.expr(f"try_parse_json({_JSON})").alias(_VARIANT)],
            [_field_variant(f).alias(_variant_col(f.name)) for f in contract.fields],
            [F.expr(f"schema_of_variant({_variant_col(f.name)})").alias(_type_col(f.name)) for f in contract.fields],
        ]
    steps = [
        [text.alias(_JSON)],
        *read,
        [_double_value(f, reader).alias(_double_col(f.name)) for f in contract.fields if _whole_number(f)],
        [_typed_value(f, reader).alias(f.name) for f in contract.fields],
        [extra.alias("extra"), reasons.alias("reasons")],
        [*typed, F.col("extra"), F.col("reasons"),
         F.sha2(F.to_json(F.struct(*typed, F.col("extra"))), 256).alias("payload_hash")],
    ]  # fmt: skip
    _STEPS[key] = steps
    return steps


def _unknown(entries: Column, keys: tuple[str, ...]) -> Column:
    known = F.array(*[F.lit(k) for k in keys])
    return F.map_filter(entries, lambda k, _v: ~F.array_contains(known, k))


def _prefixed(prefix: str) -> Callable[[Column, Column], Column]:
    return lambda k, _v: F.concat(F.lit(prefix), k)


def _extra(contract: Contract, is_object: Column, variant: Column, has_extra: Column | None) -> Column:
    """The JSON object of the keys no field reads: top-level ones, and those of the `extra_in` objects as
    "<object>.<key>"; null when there are none. `has_extra`: the JVM parse's finding that there are some."""
    top = F.from_json(F.col(_JSON), "map<string,variant>")
    if not contract.extra_in:  # the common case: skip the map unless the keys show something unknown
        known = contract.known_top_level_keys
        if has_extra is None:
            extra_keys = F.array_except(F.expr(f"json_object_keys({_JSON})"), F.array(*[F.lit(k) for k in known]))
            has_extra = is_object & (F.size(extra_keys) > 0)
        return F.when(has_extra, F.to_json(_unknown(top, known)))
    maps = [_unknown(top, contract.known_top_level_keys)]
    for obj in contract.extra_in:
        inner = F.try_variant_get(variant, f"$.{obj}", "map<string,variant>")
        inner = F.coalesce(inner, F.from_json(F.lit("{}"), "map<string,variant>"))
        maps.append(F.transform_keys(_unknown(inner, contract.known_keys(obj)), _prefixed(f"{obj}.")))
    entries = F.map_concat(*maps)
    return F.when(is_object & (F.size(entries) > 0) if has_extra is None else has_extra, F.to_json(entries))


def _layout(contract: Contract) -> str:
    """What the JVM parse reads, in the lines its `Layout` takes: each field's paths, the keys that are not extra,
    and the keys each `extra_in` object's fields read."""
    lines = ["\t".join(("F", *f.json_paths)) for f in contract.fields]
    lines.append("\t".join(("K", *contract.known_top_level_keys)))
    lines += ["\t".join(("O", obj, *contract.known_keys(obj))) for obj in contract.extra_in]
    return "\n".join(lines)


class _VariantReader:
    """The SQL parse: a field's text and typed value from its variant column."""

    def text(self, f: FieldSpec) -> Column:
        return F.expr(f"variant_get({_variant_col(f.name)}, '$', 'string')")

    def value(self, f: FieldSpec, sql_type: str) -> Column:
        return F.expr(f"try_variant_get({_variant_col(f.name)}, '$', '{sql_type}')")


class _TextReader:
    """The JVM parse: a field's text as the parse gave it (a number's exact digits; a double's shortest text, read
    back to the same double), cast by Spark as it casts a variant's value of that JSON type."""

    def text(self, f: FieldSpec) -> Column:
        return F.col(_text_col(f.name))

    def value(self, f: FieldSpec, sql_type: str) -> Column:
        text = F.col(_text_col(f.name))
        return F.when(F.col(_type_col(f.name)) == "DOUBLE", text.try_cast("double").try_cast(sql_type)).otherwise(
            text.try_cast(sql_type)
        )


_Reader = _VariantReader | _TextReader


def _type_col(name: str) -> str:
    return f"_lp_t_{name}"


def _variant_col(name: str) -> str:
    return f"_lp_v_{name}"


def _text_col(name: str) -> str:
    return f"_lp_s_{name}"


def _field_variant(f: FieldSpec) -> Column:
    """The field's JSON value as a variant: the first of its paths that holds a non-null value."""
    exprs = [f"variant_get({_VARIANT}, '$.{p}')" for p in f.json_paths]
    if len(exprs) == 1:
        return F.expr(exprs[0])
    return F.coalesce(*[F.when(F.expr(f"schema_of_variant({e})") != "VOID", F.expr(e)) for e in exprs])


def _present(f: FieldSpec) -> Column:
    t = F.col(_type_col(f.name))
    return t.isNotNull() & (t != "VOID")


def _double_col(name: str) -> str:
    return f"_lp_d_{name}"


def _whole_number(f: FieldSpec) -> bool:
    return f.unit is not None or f.type == "integer"


def _double_value(f: FieldSpec, reader: _Reader) -> Column:
    """A whole-number field's value when JSON wrote it as a double (`1.0e2`), else null: a column of its own, so
    that the checks that read it stay small expressions."""
    return F.when(F.col(_type_col(f.name)) == "DOUBLE", reader.value(f, "double"))


def _type_ok(f: FieldSpec) -> Column:
    t = F.col(_type_col(f.name))
    # A whole number: `3`, `3.0` (parsed as DECIMAL(1,0)), or one written with an exponent, `1.0e2` (a DOUBLE)
    if _whole_number(f):  # epoch ms/us/days, or a whole number
        return t.isin(*INTEGER_TYPES) | t.rlike(r"^DECIMAL\(\d+,0\)$") | F.coalesce(F.col(_double_col(f.name)) % 1 == 0, F.lit(False))
    if f.type in ("string", "timestamp", "date") or f.encoding != "number":
        return t == "STRING"
    if f.type == "boolean":
        return t == "BOOLEAN"
    return t.isin(*NUMBER_TYPES) | t.startswith("DECIMAL(")  # decimal


_EPOCH = {"ms": "timestamp_millis", "us": "timestamp_micros", "days": "date_from_unix_date"}


def _typed_value(f: FieldSpec, reader: _Reader) -> Column:
    text = reader.text(f)
    if f.unit is not None:
        value = F.call_function(_EPOCH[f.unit], reader.value(f, "int" if f.unit == "days" else "bigint"))
    elif f.type == "timestamp":
        value = F.when(text.rlike(ISO_TIMESTAMP), text.try_cast("timestamp"))
    elif f.type == "date":
        value = F.when(text.rlike(ISO_DATE), text.try_cast("date"))
    elif f.encoding == "text":
        value = F.when(text.rlike(DECIMAL_TEXT), text.try_cast("decimal(38,18)"))
    elif f.encoding == "base64":
        value = _unscaled(text, f.scale)
    else:
        sql_type = f.spark_type.simpleString()
        value = reader.value(f, sql_type)
        if f.type == "integer":  # from 2^53 on a double no longer holds every whole number: out_of_range, not rounded
            value = F.when(F.coalesce(F.abs(F.col(_double_col(f.name))) < F.lit(2**53), F.lit(True)), value)
    return F.when(_type_ok(f), value).try_cast(f.spark_type)


def _unscaled(text: Column, scale: int) -> Column:
    """A decimal from the base64 text of its unscaled value's big-endian two's-complement bytes (what Debezium
    writes for `numeric` with decimal.handling.mode=precise); null when the text is no base64 or the value needs
    more than 8 bytes. Exact: the bytes become a whole number through hex, and the scale is a decimal literal."""
    raw = F.try_to_binary(text, F.lit("base64"))
    n = F.octet_length(raw)
    unsigned = F.conv(F.hex(raw), 16, 10).cast("decimal(20,0)")
    negative = F.conv(F.substring(F.hex(raw), 1, 2), 16, 10).cast("int") >= 128
    signed = F.when(negative, unsigned - F.pow(F.lit(2), n * 8).cast("decimal(20,0)")).otherwise(unsigned)
    return F.when((n >= 1) & (n <= 8), signed * F.lit(Decimal(1).scaleb(-scale)))


def _field_reasons(f: FieldSpec, reader: _Reader) -> list[Column]:
    """One nullable code per rule of `f`: the code where the rule is broken, null where it holds."""
    value = F.col(f.name)
    present = _present(f)
    if f.type == "string":
        present = present & ~(_type_ok(f) & (value == ""))  # empty text counts as missing
    required = F.lit(f.required)
    for other, values in f.required_when.items():
        required = required | F.col(other).isin(*values)
    checks = [
        F.when(required & ~present, F.lit(f"missing:{f.name}")),
        F.when(present & ~_type_ok(f), F.lit(f"bad_type:{f.name}")),
    ]
    ok = present & _type_ok(f)
    if f.allowed is not None:
        checks.append(F.when(ok & ~value.isin(*f.allowed), F.lit(f"not_in_set:{f.name}")))
    bad_format = _bad_format(f, reader)
    if f.type in ("integer", "decimal", "double"):
        out_of_range = value.isNull()  # a number too large for the column type
        if f.min is not None:
            out_of_range = out_of_range | (value < F.lit(f.min))
        if f.max is not None:
            out_of_range = out_of_range | (value > F.lit(f.max))
        if bad_format is not None:
            out_of_range = ~bad_format & out_of_range
        checks.append(F.when(ok & out_of_range, F.lit(f"out_of_range:{f.name}")))
    if bad_format is not None:
        checks.append(F.when(ok & bad_format, F.lit(f"bad_format:{f.name}")))
    return checks


def _bad_format(f: FieldSpec, reader: _Reader) -> Column | None:
    """Where a value of the right JSON type is not in the field's format (null where it is)."""
    value = F.col(f.name)
    text = reader.text(f)
    if f.pattern is not None:
        return ~value.rlike(f.pattern)
    if f.type in ("timestamp", "date"):
        return value.isNull()
    if f.encoding == "base64":
        return ~text.rlike(BASE64) | (F.length(text) % 4 != 0)
    if f.encoding == "text":  # more decimal places than the column keeps would be silently rounded
        return ~text.rlike(DECIMAL_TEXT) | (F.length(F.regexp_extract(text, r"\.(\d+)$", 1)) > f.scale)
    if f.type == "decimal":
        scale = F.regexp_extract(F.col(_type_col(f.name)), r"^DECIMAL\(\d+,(\d+)\)$", 1)
        return (scale != "") & (scale.cast("int") > f.scale)
    return None
