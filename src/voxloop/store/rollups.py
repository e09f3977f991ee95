"""Incrementally maintained voice rollups: day x region x channel x scenario x sentiment.

The dashboard's aggregates (volumes, regions, scenarios, sentiment) are sums over these
rollup rows instead of scans of every voice and reading.  ``update_rollups`` is a
pipeline stage: each run folds only the lake parts written since the last run.  Rows are
signed deltas, so a voice read again moves from its old (scenario, sentiment) cell to the
new one (-1 there, +1 here) without rewriting anything: lake parts stay immutable.  The
exact latest reading per voice (``arg_max`` over ``read_at``) decides a voice's cell,
as on the pages.  Incremental view maintenance by deltas follows Gupta, Mumick &
Subrahmanian (1993), *Maintaining views incrementally*, SIGMOD '93, 157-166.

Which parts were folded is kept in ``lake/voice_rollup/_state.json``; when a folded part
disappears (a compaction rewrote the table) the rollup is rebuilt from scratch.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any, Final

from voxloop.config import Settings
from voxloop.store.service import part_files, table_dir, writer_lock

TABLE: Final = "voice_rollup"
DIMENSIONS: Final = ("day", "province", "city", "district", "channel", "scenario", "sentiment")
MEASURES: Final = ("n", "read", "review", "escalation", "pii", "pii_voices")
#: Cubes kept besides the full one (every cube also has ``day``).  A query reads the
#: smallest cube holding every dimension it filters or groups by (an "aggregate
#: navigator", Kimball & Ross, *The Data Warehouse Toolkit*, 3rd ed., 2013, ch. 20):
#: the overview of a whole lake reads a few thousand rows, not one per voice.
CUBES: Final[dict[str, tuple[str, ...]]] = {
    "full": ("province", "city", "district", "channel", "scenario", "sentiment"),
    "city": ("province", "city", "channel", "scenario", "sentiment"),
    "province": ("province", "channel", "scenario", "sentiment"),
    "region_channel": ("province", "city", "district", "channel"),
    "region_mood": ("province", "city", "district", "scenario", "sentiment"),
    "city_channel": ("province", "city", "channel"),
    "province_mood": ("province", "scenario", "sentiment"),
    "province_channel": ("province", "channel"),
}


def _state_path(settings: Settings) -> Path:
    return table_dir(settings, TABLE) / "_state.json"


def _load_state(settings: Settings) -> dict[str, Any]:
    path = _state_path(settings)
    if not path.exists():
        return {"voices": [], "readings": [], "cubes": {}}
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _cube_dir(settings: Settings, cube: str) -> Path:
    return table_dir(settings, TABLE) / cube


def _save_state(settings: Settings, state: dict[str, Any]) -> None:
    path = _state_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state), encoding="utf-8")
    os.replace(tmp, path)


def _glob_list(paths: list[Path]) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


def update_rollups(*, settings: Settings) -> dict[str, Any]:
    """Fold the voice and reading parts written since the last run into the rollup.

    Returns ``{"voice_parts": ..., "reading_parts": ..., "rows": ..., "rebuilt": ...}``.
    """
    import duckdb
    import pyarrow as pa

    with writer_lock(settings, TABLE):
        state = _load_state(settings)
        voices = part_files(settings, "voices")
        readings = part_files(settings, "readings")
        names_v = {p.name for p in voices}
        names_r = {p.name for p in readings}
        rebuilt = False
        if (
            not set(state["voices"]) <= names_v
            or not set(state["readings"]) <= names_r
            or state.get("timezone", settings.timezone) != settings.timezone
            or (state["voices"] and "kinds" not in state)
        ):
            # Days are local days of ``settings.timezone``: another zone means other cells.
            # A folded part is gone (compaction): start again from the current parts.
            for cube in CUBES:
                for old in _cube_dir(settings, cube).glob("part-*.parquet"):
                    old.unlink()
            state, rebuilt = {"voices": [], "readings": [], "cubes": {}}, True
        done_v, done_r = set(state["voices"]), set(state["readings"])
        new_v = [p for p in voices if p.name not in done_v]
        old_v = [p for p in voices if p.name in done_v]
        new_r = [p for p in readings if p.name not in done_r]
        old_r = [p for p in readings if p.name in done_r]
        summary: dict[str, Any] = {
            "voice_parts": len(new_v),
            "reading_parts": len(new_r),
            "rows": 0,
            "rebuilt": rebuilt,
        }
        if not new_v and not new_r:
            return summary
        con = duckdb.connect(":memory:")
        try:
            tz = settings.timezone.replace("'", "''")
            cols = "id, received_at, province, city, district, channel, kind, pii_counts"
            empty_v = (
                "SELECT NULL::VARCHAR AS id, NULL::TIMESTAMPTZ AS received_at, "
                "NULL::VARCHAR AS province, NULL::VARCHAR AS city, NULL::VARCHAR AS district, "
                "NULL::VARCHAR AS channel, NULL::VARCHAR AS kind, "
                "NULL::MAP(VARCHAR, INTEGER) AS pii_counts WHERE FALSE"
            )
            empty_r = (
                "SELECT NULL::VARCHAR AS voice_id, NULL::TIMESTAMPTZ AS read_at, "
                "NULL::VARCHAR AS scenario, NULL::VARCHAR AS sentiment, "
                "NULL::BOOLEAN AS needs_review, NULL::BOOLEAN AS escalation_risk WHERE FALSE"
            )
            rcols = "voice_id, read_at, scenario, sentiment, needs_review, escalation_risk"

            def view(name: str, paths: list[Path], columns: str, empty: str) -> None:
                src = (
                    f"SELECT {columns} FROM read_parquet({_glob_list(paths)}, union_by_name=true)"
                    if paths
                    else empty
                )
                con.execute(f"CREATE VIEW {name} AS {src}")

            view("new_v", new_v, cols, empty_v)
            view("old_v", old_v, cols, empty_v)
            view("new_r", new_r, rcols, empty_r)
            view("old_r", old_r, rcols, empty_r)
            latest = (
                "SELECT voice_id, arg_max(struct_pack(sc := scenario, se := sentiment, "
                "nr := needs_review, er := escalation_risk), read_at) AS x FROM ({src}) "
                "WHERE voice_id IN (SELECT id FROM touched) GROUP BY voice_id"
            )

            def cell(sign: int, voices_sql: str, latest_view: str) -> str:
                return (
                    f"SELECT CAST(timezone('{tz}', v.received_at) AS DATE) AS day, v.province, "
                    "v.city, v.district, v.channel, l.x.sc AS scenario, l.x.se AS sentiment, "
                    f"{sign} AS n, {sign} * CAST(l.voice_id IS NOT NULL AS INTEGER) AS read, "
                    f"{sign} * CAST(coalesce(l.x.nr, false) AS INTEGER) AS review, "
                    f"{sign} * CAST(coalesce(l.x.er, false) AS INTEGER) AS escalation, "
                    f"{sign} * coalesce(list_sum(map_values(v.pii_counts)), 0) AS pii, "
                    f"{sign} * CAST(coalesce(list_sum(map_values(v.pii_counts)), 0) > 0 "
                    "AS INTEGER) AS pii_voices "
                    f"FROM ({voices_sql}) v LEFT JOIN {latest_view} l ON l.voice_id = v.id"
                )

            # Voices whose cell may change: new ones, and old ones read again.
            con.execute(
                "CREATE TEMP TABLE reread AS SELECT * FROM old_v "
                "WHERE id IN (SELECT DISTINCT voice_id FROM new_r)"
            )
            con.execute(
                "CREATE TEMP TABLE touched AS SELECT id FROM new_v UNION SELECT id FROM reread"
            )
            all_r = "SELECT * FROM old_r UNION ALL SELECT * FROM new_r"
            con.execute(f"CREATE TEMP TABLE latest_all AS {latest.format(src=all_r)}")
            con.execute(
                f"CREATE TEMP TABLE latest_old AS {latest.format(src='SELECT * FROM old_r')}"
            )
            # The voice kinds seen so far, for the voices page's filter (not a dimension).
            kinds = sorted(
                set(state.get("kinds", []))
                | {
                    str(r[0])
                    for r in con.execute("SELECT DISTINCT kind FROM new_v").fetchall()
                    if r[0]
                }
            )
            delta: pa.Table = con.sql(
                f"SELECT {', '.join(DIMENSIONS)}, "
                + ", ".join(f"CAST(sum({m}) AS BIGINT) AS {m}" for m in MEASURES)
                + " FROM ("
                + cell(1, "SELECT * FROM new_v", "latest_all")
                + " UNION ALL "
                + cell(1, "SELECT * FROM reread", "latest_all")
                + " UNION ALL "
                + cell(-1, "SELECT * FROM reread", "latest_old")
                + f") GROUP BY ALL HAVING {' OR '.join(f'sum({m}) <> 0' for m in MEASURES)}"
            ).to_arrow_table()
        finally:
            con.close()
        summary["rows"] = delta.num_rows
        cubes: dict[str, Any] = {}
        stale: list[Path] = []
        for cube, dims in CUBES.items():
            folder = _cube_dir(settings, cube)
            parts = list(state.get("cubes", {}).get(cube, {"parts": []})["parts"])
            if delta.num_rows:
                parts.append(_write(settings, cube, _group(delta, dims, sort=not parts)))
            if len(parts) > 1:
                # Compacted into one part sorted by region and day: readers then scan it
                # with no grouping, and region filters skip row groups by statistics.
                stale += [folder / p for p in parts]
                parts = [_write(settings, cube, _group(_read(folder, parts), dims, sort=True))]
            cubes[cube] = {"parts": parts, "rows": sum(pq_rows(folder / p) for p in parts)}
        _save_state(
            settings,
            {
                "voices": sorted(done_v | {p.name for p in new_v}),
                "readings": sorted(done_r | {p.name for p in new_r}),
                "cubes": cubes,
                "timezone": settings.timezone,
                "kinds": kinds,
            },
        )
        for path in stale:
            # Readers take the part list from the state file saved above; one that still
            # holds the old list fails to open these once and answers from the lake scan.
            path.unlink(missing_ok=True)
        return summary


def pq_rows(path: Path) -> int:
    """Return the number of rows of one Parquet file (from its footer)."""
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def _read(folder: Path, parts: list[str]) -> Any:
    import pyarrow.parquet as pq

    return pq.ParquetDataset([str(folder / p) for p in parts]).read()


def _group(table: Any, dims: tuple[str, ...], *, sort: bool) -> Any:
    import duckdb

    keys = ", ".join(("day", *dims))
    sums = ", ".join(f"CAST(sum({m}) AS BIGINT) AS {m}" for m in MEASURES)
    order = f" ORDER BY {', '.join((*dims, 'day'))}" if sort else ""
    con = duckdb.connect(":memory:")
    try:
        con.register("t", table)
        return con.sql(
            f"SELECT {keys}, {sums} FROM t GROUP BY ALL "
            f"HAVING {' OR '.join(f'sum({m}) <> 0' for m in MEASURES)}{order}"
        ).to_arrow_table()
    finally:
        con.close()


def _write(settings: Settings, cube: str, table: Any) -> str:
    import pyarrow.parquet as pq

    folder = _cube_dir(settings, cube)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
    tmp = folder / f".{name}.tmp"
    pq.write_table(table, tmp, compression="zstd", row_group_size=100_000)
    os.replace(tmp, folder / name)
    return name


def rollup_is_current(*, settings: Settings) -> bool:
    """Return whether every voice and reading part of the lake is folded into the rollup."""
    state = _load_state(settings)
    cubes = state.get("cubes", {})
    if set(cubes) != set(CUBES) or not all(c["parts"] for c in cubes.values()):
        return False
    if state.get("timezone") != settings.timezone or "kinds" not in state:
        return False
    return {p.name for p in part_files(settings, "voices")} == set(state["voices"]) and {
        p.name for p in part_files(settings, "readings")
    } == set(state["readings"])


def rollup_source(settings: Settings, dims: set[str] | frozenset[str]) -> str:
    """Return SQL for the cells of the smallest cube holding every dimension in ``dims``."""
    cubes = _load_state(settings).get("cubes", {})
    fits = [c for c, d in CUBES.items() if set(dims) - {"day"} <= set(d) and c in cubes]
    if not fits:
        raise ValueError(f"no rollup cube holds {sorted(dims)}")
    cube = min(fits, key=lambda c: (int(cubes[c]["rows"]), len(CUBES[c])))
    paths = [_cube_dir(settings, cube) / p for p in cubes[cube]["parts"]]
    if len(paths) == 1:
        return f"(SELECT * FROM read_parquet({_glob_list(paths)}))"
    keys = ", ".join(("day", *CUBES[cube]))
    sums = ", ".join(f"CAST(sum({m}) AS BIGINT) AS {m}" for m in MEASURES)
    return f"(SELECT {keys}, {sums} FROM read_parquet({_glob_list(paths)}) GROUP BY ALL)"


def rollup_kinds(settings: Settings) -> list[str]:
    """Return the distinct voice kinds of every folded voice part, sorted."""
    return list(_load_state(settings).get("kinds", []))


def rollup_sql(settings: Settings) -> str:
    """Return SQL for the cells of the full cube (every dimension)."""
    return "SELECT * FROM " + rollup_source(settings, set(DIMENSIONS))
