"""Run the pipeline stages that follow ingestion, and summarise the store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from voxloop.config import Settings

#: A stage reads what is new in the store and writes its results; returns a summary.
Stage = Callable[..., dict[str, Any]]


def pipeline_stages() -> list[tuple[str, Stage]]:
    """Return the post-ingest stages in the order they run."""
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
        ("detect", detect_stage),
        ("analyze", analysis_stage),
    ]


def run_stages(*, settings: Settings) -> dict[str, Any]:
    """Run every post-ingest stage and collect their summaries."""
    return {name: stage(settings=settings) for name, stage in pipeline_stages()}


def run_demo(
    *,
    settings: Settings,
    customers: int,
    days: int,
    seed: int,
    log: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """Generate a demo operator under ``home/demo-input``, ingest it and run every stage."""
    import time

    from voxloop.ingest.generator import generate_operator
    from voxloop.ingest.service import ingest_path
    from voxloop.store.service import migrate

    def say(message: str) -> None:
        if log is not None:
            log(message)

    started = time.perf_counter()
    migrate(settings)
    out_dir = settings.home / "demo-input"
    say(f"generating a demo operator: {customers} customers, {days} days, seed {seed}")
    generated = generate_operator(customers=customers, days=days, seed=seed, out_dir=out_dir)
    say(f"ingesting {out_dir}")
    ingested = ingest_path(settings=settings, path=out_dir)
    say("running pipeline stages")
    stages = run_stages(settings=settings)
    say("closing the loop: work orders, SLA clock, resolution and verification")
    from voxloop.act.demo import demo_loop

    act = demo_loop(settings=settings)
    say(
        f"work orders: {act['orders']['created']} created, {act['orders']['existing']} existing; "
        f"{act['escalated']} escalated, {act['verification'].get('verified', 0)} verified, "
        f"{act['regressed']} regressed"
    )
    extras = _demo_assist_and_report(settings=settings, say=say)
    summary: dict[str, Any] = {
        "home": str(settings.home.resolve()),
        "generated": generated,
        "ingested": ingested.model_dump(),
        "stages": stages,
        "act": act,
        **extras,
        "status": store_status(settings=settings),
        "seconds": round(time.perf_counter() - started, 1),
    }
    say(f"done in {summary['seconds']} s")
    return summary


def _demo_assist_and_report(*, settings: Settings, say: Callable[[str], None]) -> dict[str, Any]:
    """Give the demo's console a knowledge base and its Reports page the last month's report."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from voxloop.errors import VoxloopError
    from voxloop.store.service import lake_connection

    out: dict[str, Any] = {}
    faq = (
        settings.understand_corpora / "jiangsu_mobile_faq" / "qa.json"
        if settings.understand_corpora is not None
        else None
    )
    if faq is not None and faq.is_file():
        from voxloop.assist.kb import import_kb

        say(f"knowledge base: importing {faq}")
        out["kb"] = import_kb(settings=settings, path=faq).model_dump()
    else:
        out["kb"] = {"skipped": "no jiangsu_mobile_faq/qa.json under VOXLOOP_UNDERSTAND_CORPORA"}
    newest = (
        lake_connection(settings, ("voices",))
        .execute("SELECT max(received_at) FROM voices")
        .fetchone()
    )
    if newest is None or newest[0] is None:
        return out
    # The month of the newest voice, rendered ad hoc by the system user (the scheduler's own
    # monthly run stays independent of the demo).
    from voxloop.act.access import SYSTEM
    from voxloop.store.service import make_engine, make_sessionmaker
    from voxloop.web.report import ReportRequest, generate_report

    last: datetime = newest[0]
    period = f"{last.astimezone(ZoneInfo(settings.timezone)):%Y-%m}"
    say(f"monthly report of {period}")
    engine = make_engine(settings)
    try:
        with make_sessionmaker(engine)() as session:
            entry = generate_report(
                settings=settings,
                session=session,
                principal=SYSTEM,
                request=ReportRequest(period=period, lang="zh-CN", format="pdf"),
            )
        out["reports"] = [entry.model_dump(mode="json")]
    except VoxloopError as exc:
        out["reports"] = {"error": str(exc)}
    finally:
        engine.dispose()
    return out


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
