"""Count series of voices per scenario x region level x channel, at a chosen granularity.

A series is named by its key, ``dim=value`` pairs joined by ``|`` in the fixed order
scenario, province, city, district, channel (``*`` is the series of all voices).  Regions
are hierarchical: a city series always names its province.  Counting is one DuckDB
``GROUPING SETS`` aggregation over an Arrow table, so it runs on batches of any size and
the per-batch results add up (the incremental state is a sum of count tables).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

#: Dimensions of a series key, in key order.
DIMENSIONS = ("scenario", "province", "city", "district", "channel")
#: Region levels: each names the region columns that a series at that level fixes.
REGION_LEVELS: tuple[tuple[str, ...], ...] = (
    (),
    ("province",),
    ("province", "city"),
    ("province", "city", "district"),
)
#: Window length in seconds per granularity name.
GRANULARITY_SECONDS = {"5min": 300, "hour": 3600, "day": 86400}
#: Offset of Asia/Shanghai from UTC; buckets are aligned on local midnight.
LOCAL_OFFSET_S = 8 * 3600
#: Schema of a count table: one row per (series, bucket).
COUNT_SCHEMA = pa.schema(
    [
        pa.field("series", pa.string(), nullable=False),
        pa.field("bucket", pa.int64(), nullable=False),
        pa.field("count", pa.int64(), nullable=False),
    ]
)
#: Columns a voice table must carry to be counted.
INPUT_COLUMNS = ("received_at", "scenario", "province", "city", "district", "channel")
ALL = "*"


def cuboids(extra: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Return every combination of dimensions that forms a family of series."""
    out: list[tuple[str, ...]] = []
    optional = ("scenario", "channel", *extra)
    for region in REGION_LEVELS:
        for mask in itertools.product((False, True), repeat=len(optional)):
            chosen = {d for d, on in zip(optional, mask, strict=True) if on} | set(region)
            out.append(tuple(d for d in (*DIMENSIONS, *extra) if d in chosen))
    return out


def series_key(values: Mapping[str, str | None], dims: tuple[str, ...] = DIMENSIONS) -> str:
    """Build the key of the series fixing ``values`` (unset dimensions are rolled up)."""
    parts = [f"{d}={values[d] if values[d] is not None else '?'}" for d in dims if d in values]
    return "|".join(parts) or ALL


def parse_key(key: str) -> dict[str, str]:
    """Split a series key into ``{dimension: value}``."""
    if key == ALL:
        return {}
    return dict(part.split("=", 1) for part in key.split("|"))


def bucket_of(seconds_utc: int, granularity: str) -> int:
    """Return the local-time bucket index of a UTC epoch second."""
    return (seconds_utc + LOCAL_OFFSET_S) // GRANULARITY_SECONDS[granularity]


def count_voices(
    voices: pa.Table, *, granularity: str = "hour", extra: tuple[str, ...] = ()
) -> pa.Table:
    """Count voices per series and bucket; a pure function over an Arrow table.

    ``voices`` needs ``received_at`` (timestamp) and the dimension columns (strings,
    nullable).  ``extra`` names more string columns (configured attributes) to slice by.
    """
    if granularity not in GRANULARITY_SECONDS:
        raise ValueError(
            f"granularity {granularity!r} unknown; use one of {sorted(GRANULARITY_SECONDS)}"
        )
    missing = [c for c in (*INPUT_COLUMNS, *extra) if c not in voices.column_names]
    if missing:
        raise ValueError(f"voice table lacks column(s) {missing} needed for counting")
    if voices.num_rows == 0:
        return COUNT_SCHEMA.empty_table()
    width = GRANULARITY_SECONDS[granularity]
    dims = (*DIMENSIONS, *extra)
    parts = ", ".join(
        f"""CASE WHEN grouping("{d}") = 0 THEN '{d}=' || coalesce("{d}", '?') END""" for d in dims
    )
    con = duckdb.connect(":memory:")
    con.register("v", voices.select([*INPUT_COLUMNS, *extra]))
    grouping = ", ".join(
        "(" + ", ".join([*(f'"{d}"' for d in c), "bucket"]) + ")" for c in cuboids(extra)
    )
    query = f"""
        WITH b AS (
            SELECT *, (epoch(received_at)::BIGINT + {LOCAL_OFFSET_S}) // {width} AS bucket
            FROM v
        )
        SELECT coalesce(nullif(concat_ws('|', {parts}), ''), '{ALL}') AS series,
               bucket, count(*)::BIGINT AS count
        FROM b
        GROUP BY GROUPING SETS ({grouping})
    """
    table = con.sql(query).to_arrow_table()
    con.close()
    return table.cast(COUNT_SCHEMA)


def merge_counts(*tables: pa.Table) -> pa.Table:
    """Add count tables together (the incremental update of the series state)."""
    parts = [t for t in tables if t.num_rows]
    if not parts:
        return COUNT_SCHEMA.empty_table()
    merged = pa.concat_tables([t.cast(COUNT_SCHEMA) for t in parts])
    out = merged.group_by(["series", "bucket"]).aggregate([("count", "sum")])
    return out.rename_columns(["series", "bucket", "count"]).cast(COUNT_SCHEMA)


def load_counts(path: Path) -> pa.Table:
    """Read a saved count table (empty when absent)."""
    if not path.is_file():
        return COUNT_SCHEMA.empty_table()
    return pq.read_table(path).cast(COUNT_SCHEMA)


def save_counts(path: Path, counts: pa.Table) -> None:
    """Write a count table atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(counts, tmp, compression="zstd")
    tmp.replace(path)


def dense_counts(
    counts: pa.Table, *, series: list[str], first: int, last: int
) -> npt.NDArray[np.int32]:
    """Return a ``(buckets, series)`` matrix of counts for buckets ``first..last``."""
    out = np.zeros((last - first + 1, len(series)), dtype=np.int32)
    sel = counts.filter(
        pc.and_(pc.greater_equal(counts["bucket"], first), pc.less_equal(counts["bucket"], last))
    )
    if sel.num_rows == 0:
        return out
    pos = pc.index_in(sel["series"], value_set=pa.array(series, pa.string()))
    keep = pc.is_valid(pos)
    rows = pc.subtract(pc.filter(sel["bucket"], keep), first).to_numpy()
    cols = pc.filter(pos, keep).to_numpy()
    out[rows, cols] = pc.filter(sel["count"], keep).to_numpy()
    return out
