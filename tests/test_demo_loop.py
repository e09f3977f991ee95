"""The demo operator shows the whole loop: orders, escalations, fixes, verification, regression."""

from __future__ import annotations

from sqlalchemy import func, select

from voxloop.act import supervision
from voxloop.act.access import SYSTEM
from voxloop.act.kpis import lake_kpis, order_kpis
from voxloop.act.models import WorkOrder
from voxloop.config import Settings
from voxloop.demo.loop import demo_loop
from voxloop.demo.service import run_demo
from voxloop.store.service import lake_connection, make_engine, make_sessionmaker


def test_demo_opens_escalates_resolves_verifies_and_regresses(settings: Settings) -> None:
    summary = run_demo(settings=settings, customers=1500, days=30, seed=3, log=None)
    act = summary["act"]
    assert act["orders"]["created"] > 50
    assert act["orders"]["from_problems"] >= 2 and act["orders"]["from_voices"] > 50
    assert act["on_time"] > 0 and act["late"] > 0 and act["left_open"] > 0
    assert act["sla"]["breached"] > 0 and act["sla"]["escalations"] > 0
    assert act["escalated"] > 0
    assert act["verification"]["verified"] > 0 and act["verification"]["reopened"] >= 1
    assert act["regressed"] >= 1
    assert len(act["by_queue"]) >= 3  # routed by routing.yaml, not all to one queue
    kpis = act["kpis"]
    assert kpis["orders"] == act["orders"]["created"]
    assert 0 < kpis["on_time_handling_rate"] < 1
    assert kpis["regressed_orders"] >= 1 and kpis["verification_answers"] > 0

    engine = make_engine(settings)
    maker = make_sessionmaker(engine)
    with maker() as session:
        orders = list(session.scalars(select(WorkOrder)))
        assert {o.state for o in orders} >= {"verified", "escalated", "reopened"}
        assert any(o.regressed and o.source_kind == "problem" for o in orders)
        assert any(o.escalated_at is not None and o.escalation_level >= 1 for o in orders)
        assert order_kpis(session=session, principal=SYSTEM)["orders"] == len(orders)

    # Commitments page content (supervision rules over the journey events) and lake KPIs.
    rules = supervision.compliance(supervision.check_events(lake_connection(settings, ("events",))))
    assert rules and any(r["violations"] for r in rules)
    assert lake_kpis(lake_connection(settings, ("voices", "readings", "customers")))["months"]

    # Idempotent: a second run creates nothing and changes no order.
    again = demo_loop(settings=settings)
    assert again["orders"]["created"] == 0
    assert again["orders"]["existing"] == act["orders"]["created"]
    with maker() as session:
        assert session.scalar(select(func.count()).select_from(WorkOrder)) == len(orders)
    engine.dispose()
