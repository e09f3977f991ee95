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
from pathlib import Path
from typing import Any, Final

from voxloop.config import Settings
from voxloop.store.service import part_files, table_dir, writer_lock

TABLE: Final = "voice_rollup"
DIMENSIONS: Final = ("day", "province", "city", "district", "channel", "scenario", "sentiment")
MEASURES: Final = ("n", "read", "review", "escalation", "pii", "pii_voices")


def _state_path(settings: Settings) -> Path:
    return table_dir(settings, TABLE) / "_state.json"


def _load_state(settings: Settings) -> dict[str, list[str]]:
    path = _state_path(settings)
    if not path.exists():
        return {"voices": [], "readings": []}
    data: dict[str, list[str]] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _save_state(settings: Settings, state: dict[str, list[str]]) -> None:
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

    from voxloop.store.service import write_part

    with writer_lock(settings, TABLE):
        state = _load_state(settings)
        voices = part_files(settings, "voices")
        readings = part_files(settings, "readings")
        names_v = {p.name for p in voices}
        names_r = {p.name for p in readings}
        rebuilt = False
        if not set(state["voices"]) <= names_v or not set(state["readings"]) <= names_r:
            # A folded part is gone (compaction): start again from the current parts.
            for old in part_files(settings, TABLE):
                old.unlink()
            state, rebuilt = {"voices": [], "readings": []}, True
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
            cols = "id, received_at, province, city, district, channel, pii_counts"
            empty_v = (
                "SELECT NULL::VARCHAR AS id, NULL::TIMESTAMPTZ AS received_at, "
                "NULL::VARCHAR AS province, NULL::VARCHAR AS city, NULL::VARCHAR AS district, "
                "NULL::VARCHAR AS channel, NULL::MAP(VARCHAR, INTEGER) AS pii_counts WHERE FALSE"
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
        if delta.num_rows:
            write_part(settings, TABLE, pa.table(delta))
        summary["rows"] = delta.num_rows
        _save_state(
            settings,
            {
                "voices": sorted(done_v | {p.name for p in new_v}),
                "readings": sorted(done_r | {p.name for p in new_r}),
            },
        )
        return summary


def rollup_is_current(*, settings: Settings) -> bool:
    """Return whether every voice and reading part of the lake is folded into the rollup."""
    if not part_files(settings, TABLE):
        return False
    state = _load_state(settings)
    return {p.name for p in part_files(settings, "voices")} == set(state["voices"]) and {
        p.name for p in part_files(settings, "readings")
    } == set(state["readings"])


def rollup_sql(settings: Settings) -> str:
    """Return SQL for the current rollup cells (signed deltas summed, empty cells dropped)."""
    glob = str(table_dir(settings, TABLE) / "part-*.parquet").replace("'", "''")
    sums = ", ".join(f"CAST(sum({m}) AS BIGINT) AS {m}" for m in MEASURES)
    return (
        f"SELECT {', '.join(DIMENSIONS)}, {sums} FROM read_parquet('{glob}') "
        "GROUP BY ALL HAVING sum(n) <> 0"
    )
