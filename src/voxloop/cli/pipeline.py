"""Run the pipeline stages that follow ingestion, and summarise the store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from voxloop.config import Settings

#: A stage reads what is new in the store and writes its results; returns a summary.
Stage = Callable[..., dict[str, Any]]


def pipeline_stages() -> list[tuple[str, Stage]]:
    """Return the post-ingest stages in the order they run."""
    return []


def run_stages(*, settings: Settings) -> dict[str, Any]:
    """Run every post-ingest stage and collect their summaries."""
    return {name: stage(settings=settings) for name, stage in pipeline_stages()}


def store_status(*, settings: Settings) -> dict[str, Any]:
    """Count the records in every lake table."""
    from voxloop.store.service import lake_connection

    con = lake_connection(settings)
    tables = [
        row[0]
        for row in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
    ]
    summary: dict[str, Any] = {"home": str(settings.home.resolve())}
    for table in sorted(tables):
        row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
        summary[table] = int(row[0]) if row else 0
    return summary
