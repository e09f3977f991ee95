"""Run the pipeline stages that follow ingestion, and summarise the store."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

from voxloop.config import Settings

#: A stage reads what is new in the store and writes its results; returns a summary.
Stage = Callable[..., dict[str, Any]]


def pipeline_stages() -> list[tuple[str, Stage]]:
    """Return the post-ingest stages in the order they run."""
    from voxloop.act.sources import link_to_problem_orders
    from voxloop.analyze.service import analysis_stage
    from voxloop.assist.dialogue import write_dissatisfaction
    from voxloop.assist.qa import qa_stage
    from voxloop.detect.service import detect_stage
    from voxloop.store.rollups import update_rollups
    from voxloop.understand.service import read_new_voices

    # Detection slices series by scenario, so it runs after the readings are written;
    # the analyses read readings too and are cached on disk for the dashboard. The rollups
    # group by the reading's scenario and sentiment; quality inspection reads the emotion.
    return [
        ("understand", read_new_voices),
        ("rollups", update_rollups),
        ("qa", qa_stage),
        # Predicted dissatisfaction of calls and chats feeds the churn features.
        ("dissatisfaction", write_dissatisfaction),
        # Detection sits below the act domain: reopening a problem's fixed orders is passed in.
        ("detect", partial(detect_stage, link_orders=link_to_problem_orders)),
        ("analyze", analysis_stage),
    ]


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


logger = logging.getLogger(__name__)


class StageRunner:
    """Run the post-ingest stages in one background thread after HTTP pushes.

    A push marks the store dirty; the worker runs the stages until no push arrived during
    its last run, so a burst of pushes costs one or two runs, not one per push. The
    stages take their own locks, so a CLI ingest running at the same time is safe.
    """

    def __init__(self, *, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._dirty = False
        self._thread: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()
        self.runs = 0
        self.last_summary: dict[str, Any] | None = None
        self.last_error: str | None = None

    def request(self) -> None:
        """Ask for a run; start the worker unless one is already running."""
        with self._lock:
            self._dirty = True
            self._idle.clear()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="voxloop-stages", daemon=True
                )
                self._thread.start()

    def _work(self) -> None:
        try:
            while True:
                with self._lock:
                    if not self._dirty:
                        return
                    self._dirty = False
                try:
                    self.last_summary = run_stages(settings=self.settings)
                    self.last_error = None
                except Exception as exc:  # the worker must survive; the next push retries
                    logger.exception("post-ingest stages failed")
                    self.last_error = f"{type(exc).__name__}: {exc}"
                self.runs += 1
        finally:
            # Also on BaseException: a dead worker must not leave later pushes waiting.
            with self._lock:
                self._thread = None
                self._idle.set()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no run is pending or running; return False on timeout."""
        return self._idle.wait(timeout)

    def status(self) -> dict[str, Any]:
        """Report whether a run is pending, how many ran, and the last error."""
        return {
            "running": not self._idle.is_set(),
            "runs": self.runs,
            "last_error": self.last_error,
        }
