"""Close the loop on the demo operator: work orders, SLA clock, resolution, verification.

``voxloop demo`` calls :func:`demo_loop` after the pipeline stages.  It opens work orders
for the planted incidents and recurring problems (``ground_truth.json``, tied to the
problems the detect stage found) and for a deterministic sample of negative complaints,
then plays a simulated clock through the act domain's own service functions:

* some orders are resolved before their SLA due time (on time);
* the SLA tick runs after every remaining due time, so the open ones breach and escalate;
  some of those are resolved late, the rest stay escalated;
* callbacks / re-surveys are answered (mostly satisfied, a few not), the verification check
  verifies or reopens the resolved orders;
* a new voice on the broadband-outage problem after its fix reopens it as regressed.

Every order carries an idempotency key (``demo:...``), and the life cycle is only played for
orders created by this run, so running the demo twice creates nothing twice.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_args

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from voxloop.act import service, states
from voxloop.act.access import SYSTEM, Principal
from voxloop.act.kpis import order_kpis
from voxloop.act.models import WorkOrder
from voxloop.act.schemas import OrderCreate, ScenarioCode
from voxloop.act.sources import order_for_voices
from voxloop.config import Settings
from voxloop.errors import NotFoundError

_SCENARIOS = frozenset(get_args(ScenarioCode))

#: Incident whose order is fixed, verified and then regresses on a new voice.
REGRESSION_PROBLEM = "inc-broadband-outage"


@dataclass
class _Planned:
    """An order created by this run and what the simulated clock does with it."""

    order: WorkOrder
    plan: str  # "on_time" | "late" | "open"
    satisfied: bool = True
    regress_voice: str | None = None


def _aware(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return datetime.fromisoformat(str(value)).astimezone(UTC)


def _truth(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _detected_problem(session: Session, voice_ids: Sequence[str]) -> tuple[str | None, str | None]:
    """Return (problem id, title) of the detect problem holding most of ``voice_ids``."""
    from voxloop.detect.models import Problem, ProblemMember

    votes: Counter[str] = Counter()
    ids = list(dict.fromkeys(voice_ids))
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        votes.update(
            session.scalars(
                select(ProblemMember.problem_id).where(ProblemMember.voice_id.in_(chunk))
            )
        )
    if not votes:
        return None, None
    problem_id = votes.most_common(1)[0][0]
    problem = session.get(Problem, problem_id)
    return problem_id, (problem.title if problem is not None else None)


def _negative_sample(settings: Settings, size: int) -> list[dict[str, Any]]:
    """Return a deterministic sample of negative voices (latest reading) with their context."""
    from voxloop.store.service import lake_connection

    con = lake_connection(settings, ("voices", "readings"))
    views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views()").fetchall()}
    if not {"voices", "readings"} <= views:
        return []
    cursor = con.execute(
        """
        WITH r AS (
            SELECT voice_id, arg_max(sentiment, read_at) AS sentiment,
                   arg_max(scenario, read_at) AS scenario
            FROM readings GROUP BY voice_id
        ), v AS (SELECT * FROM voices QUALIFY row_number() OVER (PARTITION BY id) = 1)
        SELECT v.id, v.customer_id, v.province, v.city, v.district, v.channel, v.text,
               coalesce(r.scenario, v.attributes['scenario']) AS scenario,
               v.attributes['segment'] AS segment, v.received_at
        FROM v JOIN r ON r.voice_id = v.id
        WHERE r.sentiment = 'negative'
        ORDER BY md5(v.id)
        LIMIT ?
        """,
        [size],
    )
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _first_seen(settings: Settings, voice_ids: Sequence[str]) -> datetime | None:
    import pyarrow as pa

    from voxloop.store.service import lake_connection

    con = lake_connection(settings, ("voices",))
    con.register("wanted", pa.table({"vid": pa.array(list(voice_ids), pa.string())}))
    row = con.execute(
        "SELECT min(received_at) FROM voices v JOIN wanted w ON w.vid = v.id"
    ).fetchone()
    return _aware(row[0]) if row and row[0] is not None else None


def _problem_orders(
    *,
    settings: Settings,
    session: Session,
    principal: Principal,
    truth: dict[str, Any],
    max_voices: int,
) -> tuple[list[tuple[WorkOrder, str | None]], int]:
    """Create one order per ground-truth problem; return (new orders, held voice) and existing."""
    titles = {i["id"]: i.get("theme") or i["id"] for i in truth.get("incidents", [])}
    created: list[tuple[WorkOrder, str | None]] = []
    existing = 0
    for problem in truth.get("problems", []):
        voice_ids = [str(v) for v in problem.get("voice_ids", [])][: max_voices + 1]
        if len(voice_ids) < 2:
            continue
        # The last voice is held back: it arrives after the fix (regression).
        linked, held = voice_ids[:-1], voice_ids[-1]
        ref, detected_title = _detected_problem(session, linked)
        truth_id = str(problem["id"])
        title = f"{detected_title or titles.get(truth_id, truth_id)}"
        try:
            data = order_for_voices(
                settings=settings,
                voice_ids=linked,
                source_kind="problem",
                source_ref=ref or truth_id,
                title=title[:300],
                idempotency_key=f"demo:problem:{truth_id}",
            )
        except NotFoundError:
            continue
        data = data.model_copy(
            update={
                "priority": "urgent" if truth_id in titles else "high",
                "description": f"demo: planted {truth_id} ({len(problem['voice_ids'])} voices)",
            }
        )
        at = _first_seen(settings, linked) or datetime.now(UTC)
        order, new = service.create_order(session=session, principal=principal, data=data, at=at)
        if new:
            created.append((order, held if truth_id == REGRESSION_PROBLEM else None))
        else:
            existing += 1
    return created, existing


def _voice_orders(
    *, settings: Settings, session: Session, principal: Principal, sample: int
) -> tuple[list[WorkOrder], int]:
    created: list[WorkOrder] = []
    existing = 0
    for row in _negative_sample(settings, sample):
        scenario = row["scenario"] if row["scenario"] in _SCENARIOS else None
        data = OrderCreate(
            title=(str(row["text"] or "") or "complaint")[:80],
            description=str(row["text"] or "")[:20_000] or None,
            source_kind="voice",
            source_ref=str(row["id"]),
            scenario=scenario,
            channel=row["channel"],
            segment=row["segment"],
            province=row["province"],
            city=row["city"],
            district=row["district"],
            voice_ids=[str(row["id"])],
            customer_ids=[str(row["customer_id"] or "")],
            idempotency_key=f"demo:voice:{row['id']}",
        )
        order, new = service.create_order(
            session=session, principal=principal, data=data, at=_aware(row["received_at"])
        )
        if new:
            created.append(order)
        else:
            existing += 1
    return created, existing


def _resolve(
    session: Session, principal: Principal, order: WorkOrder, at: datetime, note: str
) -> None:
    if order.state == states.NEW:
        order = service.transition(
            session=session,
            principal=principal,
            order_id=order.id,
            to=states.IN_PROGRESS,
            version=order.version,
            at=at - timedelta(minutes=30),
        )
    service.transition(
        session=session,
        principal=principal,
        order_id=order.id,
        to=states.RESOLVED,
        version=order.version,
        reason="fixed",
        notes=note,
        at=at,
    )


def demo_loop(
    *,
    settings: Settings,
    sample: int = 150,
    max_problem_voices: int = 2_000,
    principal: Principal = SYSTEM,
) -> dict[str, Any]:
    """Open, route, time, resolve and verify work orders for the demo operator (idempotent).

    Returns a summary: orders created/existing, the SLA tick, resolutions, verification,
    regressions, orders per state and the work-order KPIs at the end of the simulated clock.
    """
    from voxloop.store.service import make_engine, make_sessionmaker

    truth = _truth(settings.home / "demo-input" / "ground_truth.json")
    engine = make_engine(settings)
    try:
        with make_sessionmaker(engine)() as session:
            problems, problems_existing = _problem_orders(
                settings=settings,
                session=session,
                principal=principal,
                truth=truth,
                max_voices=max_problem_voices,
            )
            voices, voices_existing = _voice_orders(
                settings=settings, session=session, principal=principal, sample=sample
            )
            planned: list[_Planned] = []
            for i, (order, held) in enumerate(problems):
                # The regressing incident is fixed on time; the others alternate.
                plan = "on_time" if held is not None or i % 2 else "late"
                planned.append(_Planned(order, plan, regress_voice=held))
            for i, order in enumerate(sorted(voices, key=lambda o: (o.created_at, o.id))):
                slot = i % 10
                plan = "on_time" if slot < 5 else ("late" if slot < 7 else "open")
                unhappy = plan == "on_time" and i % 6 == 0
                planned.append(_Planned(order, plan, satisfied=not unhappy))
            summary = _play(session, principal, planned)
            summary["orders"] = {
                "created": len(planned),
                "existing": problems_existing + voices_existing,
                "from_problems": len(problems) + problems_existing,
                "from_voices": len(voices) + voices_existing,
            }
            summary["by_state"] = service.count_orders(session=session, principal=principal)
            summary["by_queue"] = {
                str(queue): int(n)
                for queue, n in session.execute(
                    select(WorkOrder.queue, func.count())
                    .where(WorkOrder.idempotency_key.like("demo:%"))
                    .group_by(WorkOrder.queue)
                ).all()
            }
            summary["escalated"] = int(
                session.scalar(
                    select(func.count())
                    .select_from(WorkOrder)
                    .where(WorkOrder.escalated_at.is_not(None))
                )
                or 0
            )
            clock_end = summary.pop("clock_end", None)
            summary["kpis"] = order_kpis(session=session, principal=principal, at=clock_end)
            summary["clock_end"] = clock_end.isoformat() if clock_end else None
            return summary
    finally:
        engine.dispose()


def _play(session: Session, principal: Principal, planned: list[_Planned]) -> dict[str, Any]:
    """Run the simulated clock over the orders created by this run."""
    summary: dict[str, Any] = {"on_time": 0, "late": 0, "left_open": 0}
    if not planned:
        summary.update(sla={}, answers=0, verification={}, regressed=0)
        return summary
    # 1. Fixed before the due time.
    for item in planned:
        if item.plan != "on_time":
            continue
        order = item.order
        due = order.due_at or order.created_at + timedelta(hours=2)
        at = order.created_at + (due - order.created_at) / 2
        _resolve(session, principal, order, at, "demo: fixed within the commitment")
        summary["on_time"] += 1
    # 2. The SLA clock after every remaining due time: the rest breach and escalate.
    waiting = [p.order for p in planned if p.plan != "on_time"] or [p.order for p in planned]
    tick_at = max(o.due_at or o.created_at for o in waiting) + timedelta(hours=1)
    sla: Counter[str] = Counter()
    for at in (tick_at - timedelta(hours=2), tick_at):  # reminders first, then the breaches
        sla.update(service.tick(session=session, at=at))
    summary["sla"] = dict(sla)
    # 3. Some of the escalated ones are fixed late; the others stay open.
    for item in planned:
        if item.plan == "late":
            order = service.get_order(session=session, principal=principal, order_id=item.order.id)
            _resolve(
                session, principal, order, tick_at + timedelta(hours=2), "demo: fixed after SLA"
            )
            summary["late"] += 1
        elif item.plan == "open":
            summary["left_open"] += 1
    # 4. Callbacks / re-surveys answered a day later; the verification check after the
    #    quiet period verifies or reopens every resolved order.
    answer_at = tick_at + timedelta(days=1)
    answers = 0
    for item in planned:
        if item.plan == "open":
            continue
        pending = [
            t
            for t in service.verification_tasks(session=session, order_id=item.order.id)
            if t.state == "pending"
        ][:10]
        for k, task in enumerate(pending):
            satisfied = item.satisfied and not (len(pending) > 5 and k == len(pending) - 1)
            service.record_answer(
                session=session,
                principal=principal,
                task_id=task.id,
                satisfied=satisfied,
                score=9.0 if satisfied else 3.0,
                note="demo answer",
                at=answer_at,
            )
            answers += 1
    summary["answers"] = answers
    check_at = tick_at + timedelta(days=9)
    summary["verification"] = service.evaluate_verification(session=session, at=check_at)
    # 5. A new voice on a fixed problem after the fix: the order reopens as regressed.
    regressed = 0
    regress_at = check_at + timedelta(days=1)
    for item in planned:
        if item.regress_voice and item.order.source_ref:
            regressed += len(
                service.on_new_voice_for_problem(
                    session=session,
                    problem_id=item.order.source_ref,
                    voice_id=item.regress_voice,
                    at=regress_at,
                )
            )
    summary["regressed"] = regressed
    summary["clock_end"] = regress_at
    return summary
