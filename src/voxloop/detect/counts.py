"""Reading voices for the count series, with no more imports than the count itself needs.

Spark's Python workers count voice part files (``voxloop.pipeline.spark.spark_counts``);
each worker imports what its task uses once. ``voxloop.detect.service`` pulls in the
detectors, scipy and pandas (2.2 CPU-seconds, 7-9 s on the loaded 2-core box); this module
needs only the lake's DuckDB views (0.8 CPU-seconds with ``voxloop.detect.series``).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from voxloop.config import Settings
from voxloop.store.service import lake_connection, part_files


def voices_sql(files: list[Path], has_readings: bool) -> str:
    """Return the query of the voices in ``files`` with their scenario."""
    paths = ", ".join("'" + str(p).replace("'", "''") + "'" for p in files)
    scenario = (
        "coalesce(r.scenario, element_at(v.attributes, 'scenario')[1])"
        if has_readings
        else "element_at(v.attributes, 'scenario')[1]"
    )
    join = (
        "LEFT JOIN (SELECT voice_id, arg_max(scenario, read_at) AS scenario FROM readings "
        "GROUP BY voice_id) r ON r.voice_id = v.id"
        if has_readings
        else ""
    )
    return f"""
        SELECT v.id, v.received_at, v.customer_id, v.province, v.city, v.district, v.channel,
               v.text, v.language, {scenario} AS scenario
        FROM read_parquet([{paths}], union_by_name=true) v {join}
        ORDER BY v.received_at, v.id
    """


def read_voices(*, settings: Settings, files: list[Path]) -> pa.Table:
    """Read voices from lake part files with their scenario (latest reading, else label)."""
    if not files:
        return pa.table({})
    has_readings = bool(part_files(settings, "readings"))
    con = lake_connection(settings, ("readings",) if has_readings else ())
    try:
        table: pa.Table = con.sql(voices_sql(files, has_readings)).to_arrow_table()
    finally:
        con.close()
    return table
