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

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from voxloop.ingest.mapping import ATTR_PREFIX, FACTOR_PREFIX, ROW_INDEX
from voxloop.ingest.schemas import Channel, CustomerStatus, RecordKind, Touchpoint, VoiceKind

#: Prefix of the per-attribute output columns that ``normalize`` folds into one map.
ATTR_OUT = "__attr:"

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
    for spec in specs:
        if spec.type == "enum":
            s1.append(
                f"replace(replace(lower({c(spec.name)}), ' ', '_'), '-', '_') "
                f"AS {_ident('l_' + spec.name)}"
            )

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
                f"WHEN {v} < TIMESTAMPTZ '1970-01-01 00:00:00+00' "
                f"OR {v} >= TIMESTAMPTZ '2101-01-01 00:00:00+00' "
                f"THEN 'timestamp out of range: ' || left({cv}, 40) END"
            )
            outputs.append(f"{v} AS {_ident(spec.name)}")
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
            lc = _ident("l_" + spec.name)
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
        elif spec.type == "attrs" and spec.name not in present:
            # No JSON column: emit one column per attribute; ``normalize`` builds the map
            # in Arrow, which is several times cheaper than DuckDB's list/map functions.
            entries = [(col[len(ATTR_PREFIX) :], _ident("c_" + col)) for col in attr_cols]
            for key, expr in entries + enum_raw:
                outputs.append(f"{expr} AS {_ident(ATTR_OUT + key)}")
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

    # Each check is computed once, as a column of s3; s4 folds them into the reason.
    err_cols = [f"__e{i}" for i in range(len(errs))]
    checks_sql = [f"({e}) AS {col}" for (_, e), col in zip(errs, err_cols, strict=True)]
    reason = (
        "nullif(concat_ws('; ', "
        + ", ".join(
            f"CASE WHEN {col} IS NOT NULL THEN {_lit(f + ': ')} || {col} END"
            for (f, _), col in zip(errs, err_cols, strict=True)
        )
        + "), '')"
    )
    first = (
        "coalesce("
        + ", ".join(
            f"CASE WHEN {col} IS NOT NULL THEN {_lit(f)} END"
            for (f, _), col in zip(errs, err_cols, strict=True)
        )
        + ", NULL::VARCHAR)"
    )
    include_id = HASH_INCLUDES_ID[kind] if hash_id is None else hash_id
    parts = []
    for spec in specs:
        if spec.name == "id" and not include_id:
            continue
        if spec.type == "ts":
            parts.append(f"CAST(epoch_us({_ident('v_' + spec.name)}) AS VARCHAR)")
        else:
            parts.append(_ident("c_" + spec.name))
    parts += [_ident("c_" + col) for col in attr_cols + factor_cols]
    # Trimmed source text (timestamps as instants): cheap, and equal content hashes equal.
    content = "md5(concat_ws(chr(31), " + ", ".join(f"coalesce({x}, chr(0))" for x in parts) + "))"
    outputs.append(f"{content} AS __content_hash")
    # md5_number reads the digest little-endian; hi/lo are its two 64-bit halves.
    mask = "18446744073709551615::UHUGEINT"
    return (
        f"WITH s1 AS (SELECT {', '.join(s1)} FROM raw), "
        f"s2 AS (SELECT {', '.join(s2)} FROM s1), "
        f"s3 AS (SELECT {', '.join(outputs + checks_sql)} FROM s2), "
        f"s4 AS (SELECT * EXCLUDE ({', '.join(err_cols)}), {reason} AS __reason, "
        f"{first} AS __field, "
        "md5_number(coalesce(id, '')) AS __idh FROM s3) "
        "SELECT * EXCLUDE (__idh), (__idh >> 64)::UBIGINT AS __id_hi, "
        f"(__idh & {mask})::UBIGINT AS __id_lo, "
        "('0x' || left(__content_hash, 16))::UBIGINT AS __ch_hi, "
        "('0x' || right(__content_hash, 16))::UBIGINT AS __ch_lo FROM s4"
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
    attr_cols = [n for n in result.column_names if n.startswith(ATTR_OUT)]
    if "attributes" not in result.column_names:
        attrs = columns_to_map(
            [(n[len(ATTR_OUT) :], result.column(n)) for n in attr_cols], result.num_rows
        )
        result = result.drop_columns(attr_cols).append_column("attributes", attrs)
    return result


def columns_to_map(
    columns: list[tuple[str, pa.ChunkedArray | pa.Array]], num_rows: int
) -> pa.MapArray:
    """Fold text columns into one ``map<string, string>`` per row, skipping nulls."""
    if not columns:
        offsets = pa.array(np.zeros(num_rows + 1, dtype=np.int32))
        return pa.MapArray.from_arrays(
            offsets, pa.array([], pa.string()), pa.array([], pa.string())
        )
    values = [
        pa.chunked_array(c).combine_chunks() if isinstance(c, pa.ChunkedArray) else c
        for _, c in columns
    ]
    valid = np.column_stack([v.is_valid().to_numpy(zero_copy_only=False) for v in values])
    counts = valid.sum(axis=1)
    offsets = np.zeros(num_rows + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    rows, cols = np.nonzero(valid)  # row-major: row 0's entries, then row 1's ...
    keys = pc.take(pa.array([k for k, _ in columns], pa.string()), pa.array(cols))
    items = pc.take(pa.concat_arrays(values), pa.array(cols * num_rows + rows))
    return pa.MapArray.from_arrays(pa.array(offsets), keys, items)
