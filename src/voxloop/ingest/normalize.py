"""Vectorised validation and typing of canonical text columns, one DuckDB query per batch.

Each record kind has a list of ``FieldSpec``; from it one SQL statement is generated that
parses every field (timestamps in several formats, numbers, booleans, enums, JSON maps),
checks required fields, lengths and ranges, pseudonymises customer ids, and computes the
content hash and the 128-bit dedup keys.  Rows with a problem get ``__reason`` (all
problems, ``field: reason; ...``) and ``__field`` (the first bad field); no Python runs
per row.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa

from voxloop.ingest.mapping import ATTR_PREFIX, FACTOR_PREFIX, ROW_INDEX
from voxloop.ingest.schemas import Channel, CustomerStatus, RecordKind, Touchpoint, VoiceKind

FieldType = Literal["str", "ts", "float", "int8", "bool", "enum", "attrs", "factors"]


@dataclass(frozen=True)
class FieldSpec:
    """How one canonical field is parsed and checked."""

    name: str
    type: FieldType
    required: bool = False
    max_len: int | None = None
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    #: Unknown enum value: quarantine the row, or keep ``other`` (raw value in attributes).
    unknown: Literal["quarantine", "other"] = "quarantine"
    default: str | None = None
    pseudonymise: bool = False


def _enum(e: Any) -> tuple[str, ...]:
    return tuple(m.value for m in e)


_REGION = (
    FieldSpec("province", "str", max_len=100),
    FieldSpec("city", "str", max_len=100),
    FieldSpec("district", "str", max_len=100),
)
_CUSTOMER = FieldSpec("customer_id", "str", max_len=200, pseudonymise=True)

#: Parsing and validation rules per record kind (order = lake schema order).
FIELD_SPECS: dict[RecordKind, tuple[FieldSpec, ...]] = {
    RecordKind.voice: (
        FieldSpec("id", "str", required=True, max_len=200),
        FieldSpec("source", "str", required=True, max_len=200),
        FieldSpec("kind", "enum", required=True, choices=_enum(VoiceKind)),
        FieldSpec("received_at", "ts", required=True),
        FieldSpec("occurred_at", "ts"),
        _CUSTOMER,
        *_REGION,
        FieldSpec("channel", "enum", choices=_enum(Channel), unknown="other", default="other"),
        FieldSpec("language", "str", max_len=20),
        FieldSpec("text", "str", required=True),
        FieldSpec("attributes", "attrs"),
    ),
    RecordKind.survey: (
        FieldSpec("id", "str", required=True, max_len=200),
        _CUSTOMER,
        FieldSpec("touchpoint", "enum", required=True, choices=_enum(Touchpoint), unknown="other"),
        FieldSpec("occurred_at", "ts", required=True),
        FieldSpec("overall", "float", required=True, lo=0, hi=10),
        FieldSpec("nps", "int8", lo=0, hi=10),
        FieldSpec("factors", "factors", lo=0, hi=10),
        FieldSpec("comment", "str"),
        *_REGION,
        FieldSpec("attributes", "attrs"),
    ),
    RecordKind.customer: (
        FieldSpec("id", "str", required=True, max_len=200, pseudonymise=True),
        *_REGION,
        FieldSpec("plan_name", "str", max_len=200),
        FieldSpec("plan_monthly_fee", "float", lo=0),
        FieldSpec("plan_data_gb", "float", lo=0),
        FieldSpec("plan_voice_minutes", "float", lo=0),
        FieldSpec("plan_is_5g", "bool"),
        FieldSpec("tenure_months", "float", lo=0),
        FieldSpec("arpu", "float", lo=0),
        FieldSpec("segment", "str", max_len=100),
        FieldSpec("status", "enum", choices=_enum(CustomerStatus), default="active"),
        FieldSpec("churned_at", "ts"),
        FieldSpec("attributes", "attrs"),
    ),
    RecordKind.event: (
        FieldSpec("id", "str", required=True, max_len=200),
        _CUSTOMER,
        FieldSpec("type", "str", required=True, max_len=100),
        FieldSpec("occurred_at", "ts", required=True),
        FieldSpec("channel", "enum", choices=_enum(Channel), unknown="other"),
        *_REGION,
        FieldSpec("attributes", "attrs"),
    ),
}

#: Whether the content hash covers ``id``: a voice or survey re-sent under a new id is a
#: duplicate, but two customers (or events) with equal attributes are distinct records.
HASH_INCLUDES_ID = {
    RecordKind.voice: False,
    RecordKind.survey: False,
    RecordKind.customer: True,
    RecordKind.event: True,
}

#: Formats tried after ISO-8601 when a mapping gives none.
DEFAULT_FORMATS = (
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%Y/%m/%d",
    "%Y%m%d%H%M%S",
    "%Y%m%d",
    "%Y年%m月%d日 %H:%M:%S",
    "%Y年%m月%d日 %H:%M",
    "%Y年%m月%d日",
    "%Y.%m.%d %H:%M:%S",
    "%Y.%m.%d",
)

_TRUE = ("true", "t", "yes", "y", "1", "是", "真")
_FALSE = ("false", "f", "no", "n", "0", "否", "假")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _list(values: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(_lit(v) for v in values) + "]"


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(_lit(v) for v in values) + ")"


def _num(x: float) -> str:
    return repr(float(x))


def build_query(
    kind: RecordKind,
    columns: list[str],
    *,
    formats: dict[str, list[str]] | None = None,
    hash_id: bool | None = None,
) -> str:
    """Generate the SQL that types and checks table ``raw`` (text columns) for ``kind``.

    The statement takes one named parameter ``$key`` (the pseudonymisation secret) and
    returns the typed fields plus ``__idx, __reason, __field, __content_hash, __id_hi,
    __id_lo, __ch_hi, __ch_lo`` and ``__raw_<field>`` for pseudonymised fields.
    """
    formats = formats or {}
    present = set(columns)
    specs = FIELD_SPECS[kind]
    attr_cols = [c for c in columns if c.startswith(ATTR_PREFIX)]
    factor_cols = [c for c in columns if c.startswith(FACTOR_PREFIX)]

    def c(name: str) -> str:
        if name in present:
            return f"nullif(trim({_ident(name)}), '')"
        return "NULL::VARCHAR"

    # Stage 1: trimmed text.  Stage 2: typed values.  Stage 3: errors and outputs.
    s1 = [ROW_INDEX]
    for spec in specs:
        s1.append(f"{c(spec.name)} AS {_ident('c_' + spec.name)}")
    for col in attr_cols + factor_cols:
        s1.append(f"{c(col)} AS {_ident('c_' + col)}")

    s2: list[str] = ["*"]
    errs: list[tuple[str, str]] = []  # (field, SQL expression yielding reason or NULL)
    outputs: list[str] = [ROW_INDEX]
    enum_raw: list[tuple[str, str]] = []  # attribute key, expression
    for spec in specs:
        cv = _ident("c_" + spec.name)
        v = _ident("v_" + spec.name)
        missing = f"CASE WHEN {cv} IS NULL THEN 'missing' END" if spec.required else None
        checks: list[str] = []
        if spec.type == "str":
            s2.append(f"{cv} AS {v}")
            if spec.max_len:
                checks.append(
                    f"CASE WHEN length({v}) > {spec.max_len} "
                    f"THEN 'longer than {spec.max_len} characters' END"
                )
            if spec.pseudonymise:
                outputs.append(
                    f"CASE WHEN {v} IS NULL THEN NULL "
                    f"ELSE 'c' || left(sha256($key || '|' || {v}), 24) END AS {_ident(spec.name)}"
                )
                outputs.append(f"{v} AS {_ident('__raw_' + spec.name)}")
            else:
                outputs.append(f"{v} AS {_ident(spec.name)}")
        elif spec.type == "ts":
            fmts = formats.get(spec.name)
            if fmts:
                parse = f"try_strptime({cv}, {_list(fmts)})::TIMESTAMPTZ"
            else:
                parse = (
                    f"coalesce(try_cast({cv} AS TIMESTAMPTZ), "
                    f"try_strptime({cv}, {_list(DEFAULT_FORMATS)})::TIMESTAMPTZ)"
                )
            s2.append(f"{parse} AS {v}")
            checks.append(
                f"CASE WHEN {cv} IS NOT NULL AND {v} IS NULL "
                f"THEN 'not a timestamp: ' || left({cv}, 40) "
                f"WHEN year({v}) NOT BETWEEN 1970 AND 2100 "
                f"THEN 'timestamp out of range: ' || left({cv}, 40) END"
            )
            outputs.append(f"timezone('UTC', {v}) AS {_ident(spec.name)}")
        elif spec.type in ("float", "int8"):
            s2.append(f"try_cast({cv} AS DOUBLE) AS {v}")
            checks.append(
                f"CASE WHEN {cv} IS NOT NULL AND {v} IS NULL "
                f"THEN 'not a number: ' || left({cv}, 40) "
                f"WHEN NOT isfinite({v}) THEN 'not a finite number' END"
            )
            if spec.lo is not None:
                checks.append(
                    f"CASE WHEN {v} < {_num(spec.lo)} THEN 'below {spec.lo:g}: ' || {cv} END"
                )
            if spec.hi is not None:
                checks.append(
                    f"CASE WHEN {v} > {_num(spec.hi)} THEN 'above {spec.hi:g}: ' || {cv} END"
                )
            if spec.type == "int8":
                checks.append(
                    f"CASE WHEN isfinite({v}) AND {v} <> round({v}) "
                    f"THEN 'not an integer: ' || {cv} END"
                )
                outputs.append(
                    f"CASE WHEN {v} BETWEEN -128 AND 127 THEN {v}::TINYINT END "
                    f"AS {_ident(spec.name)}"
                )
            else:
                outputs.append(f"{v} AS {_ident(spec.name)}")
        elif spec.type == "bool":
            s2.append(
                f"CASE WHEN lower({cv}) IN {_in(_TRUE)} THEN true "
                f"WHEN lower({cv}) IN {_in(_FALSE)} THEN false END AS {v}"
            )
            checks.append(
                f"CASE WHEN {cv} IS NOT NULL AND {v} IS NULL "
                f"THEN 'not a boolean: ' || left({cv}, 40) END"
            )
            outputs.append(f"{v} AS {_ident(spec.name)}")
        elif spec.type == "enum":
            lc = f"replace(replace(lower({cv}), ' ', '_'), '-', '_')"
            fallback = _lit("other") if spec.unknown == "other" else "NULL"
            default = _lit(spec.default) if spec.default else "NULL"
            s2.append(
                f"CASE WHEN {cv} IS NULL THEN {default} "
                f"WHEN {lc} IN {_in(spec.choices)} THEN {lc} "
                f"ELSE {fallback} END AS {v}"
            )
            if spec.unknown == "quarantine":
                checks.append(
                    f"CASE WHEN {cv} IS NOT NULL AND {v} IS NULL THEN 'unknown value ' || "
                    f"{_lit(chr(34))} || left({cv}, 40) || {_lit(chr(34))} || "
                    f"{_lit(' (expected one of ' + ', '.join(spec.choices) + ')')} END"
                )
            else:
                enum_raw.append(
                    (
                        f"{spec.name}_raw",
                        f"CASE WHEN {v} = 'other' AND {lc} <> 'other' THEN {cv} END",
                    )
                )
            outputs.append(f"{v} AS {_ident(spec.name)}")
        elif spec.type == "attrs":
            entries = [(col[len(ATTR_PREFIX) :], _ident("c_" + col)) for col in attr_cols]
            entries += enum_raw
            jm = (
                f"CASE WHEN json_valid({cv}) AND json_type({cv}::JSON) = 'OBJECT' "
                f"THEN try_cast({cv}::JSON AS MAP(VARCHAR, VARCHAR)) END"
            )
            s2.append(f"{jm} AS {v}")
            checks.append(
                f"CASE WHEN {cv} IS NOT NULL AND {v} IS NULL "
                f"THEN 'not a JSON object of strings' END"
            )
            extra = _entries_map(entries, "VARCHAR")
            outputs.append(
                f"map_concat(coalesce({v}, MAP {{}}::MAP(VARCHAR, VARCHAR)), {extra}) "
                f"AS {_ident(spec.name)}"
            )
        elif spec.type == "factors":
            entries = []
            for col in factor_cols:
                fv = f"try_cast({_ident('c_' + col)} AS DOUBLE)"
                entries.append((col[len(FACTOR_PREFIX) :], fv))
                errs.append(
                    (
                        col,
                        f"CASE WHEN {_ident('c_' + col)} IS NOT NULL AND {fv} IS NULL "
                        f"THEN 'not a number: ' || left({_ident('c_' + col)}, 40) END",
                    )
                )
            jm = (
                f"CASE WHEN json_valid({cv}) AND json_type({cv}::JSON) = 'OBJECT' "
                f"THEN try_cast({cv}::JSON AS MAP(VARCHAR, DOUBLE)) END"
            )
            merged = (
                f"map_concat(coalesce({jm}, MAP {{}}::MAP(VARCHAR, DOUBLE)), "
                f"{_entries_map(entries, 'DOUBLE')})"
            )
            s2.append(f"{merged} AS {v}")
            checks.append(
                f"CASE WHEN {cv} IS NOT NULL AND {jm} IS NULL "
                f"THEN 'not a JSON object of numbers' "
                f"WHEN len(list_filter(map_values({v}), lambda x: NOT isfinite(x) "
                f"OR x < {_num(spec.lo or 0)} OR x > {_num(spec.hi or 10)})) > 0 "
                f"THEN 'factor score outside {spec.lo or 0:g}–{spec.hi or 10:g}' END"
            )
            outputs.append(f"{v} AS {_ident(spec.name)}")
        if missing:
            errs.append((spec.name, missing))
        errs.extend((spec.name, chk) for chk in checks)

    reason = (
        "nullif(concat_ws('; ', "
        + ", ".join(
            f"CASE WHEN ({e}) IS NOT NULL THEN {_lit(f + ': ')} || ({e}) END" for f, e in errs
        )
        + "), '')"
    )
    first = (
        "coalesce("
        + ", ".join(f"CASE WHEN ({e}) IS NOT NULL THEN {_lit(f)} END" for f, e in errs)
        + ", NULL::VARCHAR)"
    )
    hashed = [
        s.name
        for s in specs
        if s.name != "id" or (HASH_INCLUDES_ID[kind] if hash_id is None else hash_id)
    ]
    content = (
        "md5(concat_ws(chr(31), "
        + ", ".join(f"coalesce(CAST({_ident(n)} AS VARCHAR), chr(0))" for n in hashed)
        + "))"
    )
    return (
        f"WITH s1 AS (SELECT {', '.join(s1)} FROM raw), "
        f"s2 AS (SELECT {', '.join(s2)} FROM s1), "
        f"s3 AS (SELECT {', '.join(outputs)}, {reason} AS __reason, {first} AS __field FROM s2), "
        f"s4 AS (SELECT *, {content} AS __content_hash FROM s3) "
        "SELECT *, md5_number_upper(coalesce(id, '')) AS __id_hi, "
        "md5_number_lower(coalesce(id, '')) AS __id_lo, "
        "('0x' || left(__content_hash, 16))::UBIGINT AS __ch_hi, "
        "('0x' || right(__content_hash, 16))::UBIGINT AS __ch_lo "
        f"FROM s4 ORDER BY {ROW_INDEX}"
    )


def _entries_map(entries: list[tuple[str, str]], value_type: str) -> str:
    if not entries:
        return f"MAP {{}}::MAP(VARCHAR, {value_type})"
    items = ", ".join(f"struct_pack(key := {_lit(k)}, value := {e})" for k, e in entries)
    return (
        f"map_from_entries(list_filter([{items}], lambda e: e.value IS NOT NULL))"
        f"::MAP(VARCHAR, {value_type})"
    )


def normalize(
    con: Any,
    table: pa.Table,
    kind: RecordKind,
    *,
    secret_key: str,
    timezone: str,
    formats: dict[str, list[str]] | None = None,
    hash_id: bool | None = None,
) -> pa.Table:
    """Type and check a canonical text table; return typed fields plus ``__`` columns."""
    zoneinfo.ZoneInfo(timezone)  # refuse unknown names before they reach SQL
    con.execute(f"SET TimeZone = {_lit(timezone)}")
    sql = build_query(kind, table.column_names, formats=formats, hash_id=hash_id)
    con.register("raw", table)
    try:
        result: pa.Table = con.sql(sql, params={"key": secret_key}).to_arrow_table()
    finally:
        con.unregister("raw")
    return result
