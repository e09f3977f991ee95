"""Mapping files: turn a foreign file's columns into the canonical flat columns.

A mapping (YAML) renames columns, joins or coalesces several source columns into one
field, sets constants, gives timestamp formats and a time zone for naive timestamps,
maps enum values, and declares columns to keep as attributes or to drop.  Everything is
applied column-wise with ``pyarrow.compute``; no per-row Python.  See
``docs/data-model.md`` and ``examples/mappings/``.
"""

from __future__ import annotations

import zoneinfo
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from voxloop.errors import UnusableInputError
from voxloop.ingest.schemas import LAKE_TABLES, LINEAGE_FIELDS, RecordKind

#: Fields derived during ingest; a file may not provide them.
DERIVED_FIELDS = frozenset({"pii_counts"})

ATTR_PREFIX = "attr."
#: Column carrying each row's position within its batch.
ROW_INDEX = "__idx"
FACTOR_PREFIX = "factor."


class JoinSpec(BaseModel):
    """Concatenate several source columns (nulls skipped) into one field."""

    model_config = ConfigDict(extra="forbid")

    columns: list[str] = Field(min_length=1)
    sep: str = " "


class Mapping(BaseModel):
    """How the columns of one foreign file become canonical fields."""

    model_config = ConfigDict(extra="forbid")

    kind: RecordKind | None = None
    encoding: str | None = Field(default=None, description="Force an encoding (e.g. gb18030).")
    delimiter: str | None = Field(default=None, max_length=1)
    sheet: str | None = Field(default=None, description="Excel sheet name; first by default.")
    timezone: str | None = Field(default=None, description="Zone of naive timestamps.")
    columns: dict[str, str] = Field(default_factory=dict)
    join: dict[str, JoinSpec] = Field(default_factory=dict)
    coalesce: dict[str, list[str]] = Field(default_factory=dict)
    constants: dict[str, str] = Field(default_factory=dict)
    formats: dict[str, str | list[str]] = Field(default_factory=dict)
    values: dict[str, dict[str, str]] = Field(default_factory=dict)
    attributes: list[str] = Field(default_factory=list)
    drop: list[str] = Field(default_factory=list)
    unmapped: Literal["error", "attributes", "drop"] = "error"
    #: ``id_or_content``: a row repeating a stored id or stored content is a duplicate;
    #: ``id``: only the id counts (for sources whose rows legitimately share all content,
    #: e.g. day-resolution complaints whose text is a picked category).
    dedup: Literal["id_or_content", "id"] = "id_or_content"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                zoneinfo.ZoneInfo(value)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("constants", mode="before")
    @classmethod
    def _constants_as_text(cls, value: object) -> object:
        if isinstance(value, dict):
            return {k: v if isinstance(v, str) else str(v).lower() for k, v in value.items()}
        return value


def load_mapping(path: Path) -> Mapping:
    """Read and validate a YAML mapping file."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise UnusableInputError(f"cannot read mapping {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise UnusableInputError(f"mapping {path}: expected a YAML mapping at top level")
    try:
        return Mapping.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise UnusableInputError(f"mapping {path} is invalid: {problems}") from exc


def canonical_fields(kind: RecordKind) -> list[str]:
    """Return the flat field names a file of ``kind`` may carry (schema minus derived)."""
    lineage = {f.name for f in LINEAGE_FIELDS}
    _, schema = LAKE_TABLES[kind]
    return [n for n in schema.names if n not in lineage and n not in DERIVED_FIELDS]


def _is_target(kind: RecordKind, name: str) -> bool:
    if name in canonical_fields(kind) or name.startswith(ATTR_PREFIX):
        return True
    return kind is RecordKind.survey and name.startswith(FACTOR_PREFIX)


def _blank_to_null(col: pa.ChunkedArray | pa.Array) -> pa.Array | pa.ChunkedArray:
    trimmed = pc.utf8_trim_whitespace(col)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)


def _join_skipping_nulls(
    cols: list[pa.Array | pa.ChunkedArray], sep: str, n: int
) -> pa.Array | pa.ChunkedArray:
    """Join the non-null parts of each row with ``sep``; null where every part is null.

    pyarrow's ``binary_join_element_wise(null_handling="skip")`` drops the rows whose parts
    are all null instead of emitting null (pyarrow 26), which shifts every later row; so
    only rows with some part are joined and the result is scattered back to its rows.
    """
    arrays = [c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c for c in cols]
    some = arrays[0].is_valid()
    for a in arrays[1:]:
        some = pc.or_(some, a.is_valid())
    idx = pc.indices_nonzero(some)
    if len(idx) == 0:
        return pa.nulls(n, pa.string())
    joined = pc.binary_join_element_wise(*[a.take(idx) for a in arrays], sep, null_handling="skip")
    if len(joined) != len(idx):  # pragma: no cover - a pyarrow that drops other rows too
        rows = zip(*(a.to_pylist() for a in arrays), strict=True)
        return pa.array(
            [
                sep.join(v for v in r if v is not None) if any(v is not None for v in r) else None
                for r in rows
            ],
            pa.string(),
        )
    return pc.replace_with_mask(pa.nulls(n, pa.string()), some, joined)


def apply_mapping(
    table: pa.Table, mapping: Mapping | None, kind: RecordKind, *, num_rows: int | None = None
) -> pa.Table:
    """Return ``table`` (string columns, source names) with canonical column names.

    ``num_rows`` gives the row count when ``table`` has no columns at all.

    Raises ``UnusableInputError`` naming the columns that are neither canonical nor
    mapped, when the mapping's ``unmapped`` policy is ``error`` (the default).
    """
    m = mapping or Mapping()
    n = table.num_rows if num_rows is None else num_rows
    present = set(table.column_names)
    out: dict[str, pa.Array | pa.ChunkedArray] = {}
    used: set[str] = set()

    def target_ok(target: str, where: str) -> None:
        if not _is_target(kind, target):
            raise UnusableInputError(
                f"mapping {where} targets {target!r}, which is not a {kind.value} field "
                f"(fields: {', '.join(canonical_fields(kind))}; or attr.<key>)"
            )

    for src, target in m.columns.items():
        target_ok(target, f"column {src!r}")
        used.add(src)
        if src in present:
            out[target] = table.column(src)
    for target, spec in m.join.items():
        target_ok(target, "join")
        used.update(spec.columns)
        cols = [_blank_to_null(table.column(c)) for c in spec.columns if c in present]
        if cols:
            out[target] = _join_skipping_nulls(cols, spec.sep, n)
    for target, sources in m.coalesce.items():
        target_ok(target, "coalesce")
        used.update(sources)
        cols = [_blank_to_null(table.column(c)) for c in sources if c in present]
        if cols:
            out[target] = pc.coalesce(*cols) if len(cols) > 1 else cols[0]
    for src in m.attributes:
        used.add(src)
        if src in present:
            out[ATTR_PREFIX + src] = table.column(src)
    used.update(m.drop)
    unknown: list[str] = []
    for name in table.column_names:
        if name in used or name in out:
            continue
        if _is_target(kind, name):
            out[name] = table.column(name)
        elif m.unmapped == "attributes":
            out[ATTR_PREFIX + name] = table.column(name)
        elif m.unmapped == "error":
            unknown.append(name)
    if unknown:
        raise UnusableInputError(
            f"unknown columns for {kind.value} records: {', '.join(map(repr, unknown))}; "
            f"expected {', '.join(canonical_fields(kind))} (or attr.<key>), "
            "or give a mapping file (--mapping) that renames, keeps or drops them"
        )
    for target, value in m.constants.items():
        target_ok(target, "constants")
        out[target] = pa.nulls(n, pa.string()).fill_null(value)
    for target, table_map in m.values.items():
        if target not in out or not table_map:
            continue
        col = _blank_to_null(out[target])
        keys = pa.array(list(table_map.keys()), pa.string())
        vals = pa.array(list(table_map.values()), pa.string())
        idx = pc.index_in(col, value_set=keys)
        out[target] = pc.coalesce(pc.take(vals, idx), col)
    columns = {k: v.cast(pa.string()) for k, v in out.items()}
    # Row position in the batch: keeps the row count even when no column survives.
    columns[ROW_INDEX] = pa.array(np.arange(n, dtype=np.int64))
    return pa.table(columns)
