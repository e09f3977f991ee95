"""Run the demo: generate an operator, ingest it, run every stage and close the loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from voxloop.config import Settings
from voxloop.pipeline.service import run_stages, store_status


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

    from voxloop.demo.generator import generate_operator
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
    from voxloop.demo.loop import demo_loop

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
