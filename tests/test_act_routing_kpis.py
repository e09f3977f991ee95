"""Routing rules as data, operations KPIs and the act CLI."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import duckdb
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from tests.test_act_orders import clean_act_tables
from voxloop.act import kpis, service
from voxloop.act.access import SYSTEM, add_user, authenticate_token, principal_of
from voxloop.act.routing import RoutingRule, load_routing, route, route_batch
from voxloop.act.schemas import OrderCreate
from voxloop.store.service import make_engine, make_sessionmaker, migrate

T0 = datetime(2026, 9, 7, 2, 0, tzinfo=UTC)


def test_first_matching_rule_wins_and_default_applies():
    table = load_routing()
    d = route(table=table, scenario="HBB", province="江苏", channel="supervision_10080")
    assert d.rule_id == "escalated-channels" and d.queue == "urgent"
    d = route(table=table, scenario="HBB", province="江苏", channel="app")
    assert (d.rule_id, d.team) == ("home-broadband", "江苏-field-service")
    d = route(table=table, scenario=None, province=None)
    assert (d.rule_id, d.team) == ("default", "national-general")
    with pytest.raises(ValueError, match="unknown condition"):
        RoutingRule.model_validate(
            {"id": "x", "when": {"colour": ["red"]}, "route": table.default.model_dump()}
        )


def test_vectorised_routing_matches_row_by_row():
    table = load_routing()
    combos = list(
        itertools.product(
            ["HBB", "BILL", "PRIV", "SVC", None],
            ["江苏", None],
            ["app", "media", None],
            ["vip", "mass", None],
        )
    )
    batch = pa.table(
        {
            "scenario": [c[0] for c in combos],
            "province": [c[1] for c in combos],
            "channel": [c[2] for c in combos],
            "segment": [c[3] for c in combos],
        }
    )
    routed = route_batch(batch, table=table).to_pylist()
    for row, (scenario, province, channel, segment) in zip(routed, combos, strict=True):
        d = route(
            table=table, scenario=scenario, province=province, channel=channel, segment=segment
        )
        assert (row["rule_id"], row["team"], row["queue"]) == (d.rule_id, d.team, d.queue)


def _lake():
    ts = pa.timestamp("us", tz="UTC")
    smap = pa.map_(pa.string(), pa.string())
    day = timedelta(days=1)
    voices = [
        # customer a: two BILL complaints 10 days apart -> second is a repeat
        ("v1", "a", "complaint", "hotline_10086", T0, "BILL"),
        ("v2", "a", "complaint", "hotline_10086", T0 + 10 * day, "BILL"),
        # customer b: complaint via 10080 (escalated), another scenario later -> not repeat
        ("v3", "b", "complaint", "supervision_10080", T0 + day, "MNET"),
        ("v4", "b", "complaint", "app", T0 + 2 * day, "BILL"),
        # customer c: one chat, never again -> resolved at first contact
        ("v5", "c", "chat", "app", T0, "PLAN"),
        ("v6", None, "app_review", "app", T0 + 20 * day, None),
    ]
    con = duckdb.connect(":memory:")
    con.register(
        "voices_arrow",
        pa.table(
            {
                "id": [v[0] for v in voices],
                "customer_id": [v[1] for v in voices],
                "kind": [v[2] for v in voices],
                "channel": [v[3] for v in voices],
                "received_at": pa.array([v[4] for v in voices], ts),
                "province": ["江苏"] * len(voices),
                "city": ["南京"] * len(voices),
                "attributes": pa.array(
                    [[("scenario", v[5])] if v[5] else [] for v in voices], smap
                ),
            }
        ),
    )
    con.execute("CREATE VIEW voices AS SELECT * FROM voices_arrow")
    customers = pa.table(
        {
            "id": [f"k{i}" for i in range(8)],
            "status": ["active"] * 8,
            "churned_at": pa.array([None] * 8, ts),
            "ingested_at": pa.array([T0] * 8, ts),
            "province": ["江苏"] * 8,
            "city": ["南京"] * 8,
        }
    )
    con.register("customers_arrow", customers)
    con.execute("CREATE VIEW customers AS SELECT * FROM customers_arrow")
    return con


def test_lake_kpis_follow_documented_formulas():
    result = kpis.lake_kpis(_lake())
    (month,) = result["months"]
    assert month["complaints"] == 4 and month["active_customers"] == 8
    assert month["complaints_per_10k"] == pytest.approx(4 / 8 * 10_000)
    assert month["repeat_complaint_rate"] == pytest.approx(1 / 4)
    assert month["escalation_rate"] == pytest.approx(1 / 4)
    # First contacts whose 7-day window ended by the data's end (day 20): v1, v3, v4, v5
    # and v2 (10 days after v1); none has a re-contact on the same scenario within 7 days.
    assert month["first_contact_resolution"] == pytest.approx(1.0)
    assert result["totals"]["escalation_rate_by_channel"] == {"supervision_10080": 0.25}
    scoped = kpis.lake_kpis(_lake(), principal=principal_of_scope("广东"))
    assert scoped["months"] == []


def principal_of_scope(province):
    from voxloop.act.access import Principal

    return Principal(user_id=None, username="p", role="analyst", province=province)


def test_order_kpis(any_db_settings):
    migrate(any_db_settings)
    engine = make_engine(any_db_settings)
    clean_act_tables(engine)
    with make_sessionmaker(engine)() as s:
        admin = principal_of(add_user(session=s, username="k", role="admin"))
        s.commit()
        mk = [
            service.create_order(
                session=s,
                principal=admin,
                data=OrderCreate(title=f"o{i}", scenario="PLAN", customer_ids=[f"c{i}"]),
                at=T0,
            )[0]
            for i in range(3)
        ]
        service.transition(
            session=s,
            principal=admin,
            order_id=mk[0].id,
            to="resolved",
            version=1,
            reason="fixed",
            at=T0 + timedelta(hours=10),
        )
        service.transition(
            session=s,
            principal=admin,
            order_id=mk[1].id,
            to="resolved",
            version=1,
            reason="fixed",
            at=T0 + timedelta(hours=50),
        )
        (task,) = service.verification_tasks(session=s, order_id=mk[0].id)
        service.record_answer(session=s, principal=admin, task_id=task.id, satisfied=True)
        (task,) = service.verification_tasks(session=s, order_id=mk[1].id)
        service.record_answer(session=s, principal=admin, task_id=task.id, satisfied=False)
        out = kpis.order_kpis(session=s, principal=SYSTEM, at=T0 + timedelta(hours=60))
    engine.dispose()
    assert out["orders"] == 3 and out["orders_due"] == 3
    assert out["on_time_handling_rate"] == pytest.approx(1 / 3)
    assert out["closure_rate"] == pytest.approx(2 / 3)
    assert out["post_resolution_satisfaction"] == pytest.approx(0.5)


def test_cli_user_token_and_tick(tmp_path, monkeypatch):
    from voxloop.cli.main import _register_domains, app
    from voxloop.config import load_settings

    monkeypatch.setenv("VOXLOOP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VOXLOOP_ENV", "test")
    monkeypatch.setenv("VOXLOOP_SECRET_KEY", "cli-test-secret")
    _register_domains()
    runner = CliRunner()
    r = runner.invoke(app, ["user", "add", "zs", "--role", "agent", "--region", "江苏/南京"])
    assert r.exit_code == 0, r.output
    assert "江苏/南京" in r.output
    r = runner.invoke(app, ["user", "add", "zs2", "--role", "boss"])
    assert r.exit_code == 2 and "role 'boss'" in r.output
    r = runner.invoke(app, ["token", "create", "zs"])
    assert r.exit_code == 0, r.output
    token = r.output.strip()
    engine = make_engine(load_settings())
    with make_sessionmaker(engine)() as s:
        principal = authenticate_token(session=s, token=token)
        assert principal is not None and (principal.province, principal.city) == ("江苏", "南京")
        assert authenticate_token(session=s, token=token[:-2] + "xx") is None
    engine.dispose()
    r = runner.invoke(app, ["act", "tick", "--at", "2026-09-07T10:00:00"])
    assert r.exit_code == 0, r.output
    assert '"breached": 0' in r.output
