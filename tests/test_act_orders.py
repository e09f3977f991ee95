"""Work orders on SQLite and PostgreSQL: life cycle, concurrency, idempotency, SLA, verification."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from voxloop.act import service, states
from voxloop.act.access import Principal, add_user, principal_of
from voxloop.act.commitments import add_business_hours, deadline, load_commitments
from voxloop.act.models import WorkOrder
from voxloop.act.schemas import OrderCreate, VerificationPolicy
from voxloop.errors import (
    ConflictError,
    InvalidTransitionError,
    NotFoundError,
    PermissionDeniedError,
)
from voxloop.store.service import make_engine, make_sessionmaker, migrate

ACT_TABLES = (
    "act_audit_log",
    "act_verification_tasks",
    "act_notifications",
    "act_work_order_comments",
    "act_work_order_links",
    "act_work_orders",
    "act_api_tokens",
    "act_users",
)


def clean_act_tables(engine):
    """Empty the act tables of the session-wide PostgreSQL database (SQLite is per test)."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as con:
            # TRUNCATE does not fire the audit log's row triggers.
            con.execute(text(f"TRUNCATE {', '.join(ACT_TABLES)} RESTART IDENTITY CASCADE"))


T0 = datetime(2026, 9, 7, 2, 0, tzinfo=UTC)  # Monday 10:00 in Shanghai


@pytest.fixture
def db(any_db_settings):
    migrate(any_db_settings)
    engine = make_engine(any_db_settings)
    clean_act_tables(engine)
    maker = make_sessionmaker(engine)
    yield maker
    engine.dispose()


@pytest.fixture
def admin(db):
    with db() as s:
        user = add_user(session=s, username="boss", role="admin")
        s.commit()
        return principal_of(user)


def _order(**kw):
    base = {"title": "账单不明扣费", "scenario": "BILL", "province": "江苏", "city": "南京"}
    base.update(kw)
    return OrderCreate(**base)


def test_life_cycle_stamps_each_state_and_audits(db, admin):
    with db() as s:
        order, created = service.create_order(session=s, principal=admin, data=_order(), at=T0)
        assert created and order.state == states.NEW and order.version == 1
        assert order.routing_rule == "billing" and order.queue == "billing"
        assert order.team == "江苏-billing"
        assert order.commitment_id == "C9-internal-handling"
        steps = [
            ("in_progress", None),
            ("pending_customer", None),
            ("in_progress", None),
            ("resolved", "fixed"),
            ("closed", "done"),
        ]
        at = T0
        for target, reason in steps:
            at += timedelta(hours=1)
            order = service.transition(
                session=s,
                principal=admin,
                order_id=order.id,
                to=target,
                version=order.version,
                reason=reason,
                at=at,
            )
        assert order.state == "closed" and order.version == 6
        assert order.in_progress_at == T0 + timedelta(hours=3)
        assert order.resolved_at == T0 + timedelta(hours=4)
        assert order.closed_at == T0 + timedelta(hours=5)
        assert order.resolution_reason == "done"
        trail = service.audit_trail(session=s, object_id=order.id)
        assert [e.action for e in trail] == ["order.create"] + ["order.transition"] * 5


def test_illegal_transition_names_both_states(db, admin):
    with db() as s:
        order, _ = service.create_order(session=s, principal=admin, data=_order(), at=T0)
        with pytest.raises(InvalidTransitionError, match="'new' to 'verified'"):
            service.transition(
                session=s, principal=admin, order_id=order.id, to="verified", version=1
            )
        with pytest.raises(ValueError, match="resolution reason"):
            service.transition(
                session=s, principal=admin, order_id=order.id, to="resolved", version=1
            )


def test_second_of_two_concurrent_updates_conflicts(db, admin):
    with db() as s1, db() as s2:
        order, _ = service.create_order(session=s1, principal=admin, data=_order(), at=T0)
        a = service.get_order(session=s1, principal=admin, order_id=order.id)
        b = service.get_order(session=s2, principal=admin, order_id=order.id)
        assert a.version == b.version == 1
        service.transition(
            session=s1, principal=admin, order_id=order.id, to="in_progress", version=1
        )
        with pytest.raises(ConflictError, match="version 2, not 1"):
            service.transition(
                session=s2, principal=admin, order_id=order.id, to="escalated", version=1
            )
        final = service.get_order(session=s2, principal=admin, order_id=order.id)
        assert final.state == "in_progress" and final.version == 2


def test_stale_write_without_version_check_is_refused(db, admin):
    """The version column guards the UPDATE itself, not just the pre-check."""
    with db() as s1, db() as s2:
        order, _ = service.create_order(session=s1, principal=admin, data=_order(), at=T0)
        stale = service.get_order(session=s2, principal=admin, order_id=order.id)
        service.transition(
            session=s1, principal=admin, order_id=order.id, to="in_progress", version=1
        )
        stale.title = "changed behind the back"
        stale_version = stale.version
        assert stale_version == 1
        with pytest.raises(ConflictError):
            service._commit(s2)


def test_retried_create_returns_same_order(db, admin):
    with db() as s:
        first, created1 = service.create_order(
            session=s, principal=admin, data=_order(idempotency_key="req-1"), at=T0
        )
        again, created2 = service.create_order(
            session=s, principal=admin, data=_order(idempotency_key="req-1"), at=T0
        )
        assert created1 and not created2 and again.id == first.id
        assert s.execute(text("SELECT count(*) FROM act_work_orders")).scalar() == 1


def test_problem_order_links_many_customers_and_verifies(db, admin):
    policy = VerificationPolicy(min_answers=2, min_positive_share=0.5, quiet_days=3)
    with db() as s:
        order, _ = service.create_order(
            session=s,
            principal=admin,
            data=_order(
                source_kind="problem",
                source_ref="prob-1",
                scenario="HBB",
                voice_ids=["v1", "v2", "v3"],
                customer_ids=["c1", "c2", "c2"],
            ),
            at=T0,
        )
        assert order.commitment_id == "R15-fault-repair"
        assert order.due_at == T0 + timedelta(hours=48)
        order = service.transition(
            session=s,
            principal=admin,
            order_id=order.id,
            to="resolved",
            version=1,
            reason="fixed",
            at=T0 + timedelta(hours=5),
        )
        tasks = service.verification_tasks(session=s, order_id=order.id)
        assert sorted(t.customer_id for t in tasks) == ["c1", "c2"]
        assert {t.kind for t in tasks} == {"resurvey"}
        # Not verified before the quiet period has passed, even with answers.
        for task in tasks:
            service.record_answer(
                session=s, principal=admin, task_id=task.id, satisfied=True, at=T0 + timedelta(1)
            )
        early = service.evaluate_verification(session=s, at=T0 + timedelta(days=2), policy=policy)
        assert early["verified"] == 0
        done = service.evaluate_verification(session=s, at=T0 + timedelta(days=4), policy=policy)
        assert done["verified"] == 1
        order = service.get_order(session=s, principal=admin, order_id=order.id)
        assert order.state == "verified"


def test_suppression_and_failed_verification_reopens(db, admin):
    policy = VerificationPolicy(min_answers=1, min_positive_share=0.8, quiet_days=0)
    with db() as s:
        first, _ = service.create_order(
            session=s, principal=admin, data=_order(customer_ids=["c9"]), at=T0
        )
        service.transition(
            session=s,
            principal=admin,
            order_id=first.id,
            to="resolved",
            version=1,
            reason="fixed",
            at=T0,
        )
        second, _ = service.create_order(
            session=s, principal=admin, data=_order(customer_ids=["c9"]), at=T0
        )
        service.transition(
            session=s,
            principal=admin,
            order_id=second.id,
            to="resolved",
            version=1,
            reason="fixed",
            at=T0 + timedelta(days=2),
        )
        (t2,) = service.verification_tasks(session=s, order_id=second.id)
        assert t2.state == "suppressed"  # surveyed two days ago for the first order
        (t1,) = service.verification_tasks(session=s, order_id=first.id)
        service.record_answer(session=s, principal=admin, task_id=t1.id, satisfied=False, at=T0)
        summary = service.evaluate_verification(session=s, at=T0 + timedelta(days=3), policy=policy)
        assert summary["reopened"] == 1 and summary["verified"] == 1
        assert service.get_order(session=s, principal=admin, order_id=first.id).state == "reopened"


def test_new_voice_after_resolution_reopens_as_regressed(db, admin):
    with db() as s:
        order, _ = service.create_order(
            session=s,
            principal=admin,
            data=_order(source_kind="problem", source_ref="prob-7", voice_ids=["v1"]),
            at=T0,
        )
        service.transition(
            session=s,
            principal=admin,
            order_id=order.id,
            to="resolved",
            version=1,
            reason="fixed",
            at=T0 + timedelta(hours=1),
        )
        reopened = service.on_new_voice_for_problem(
            session=s, problem_id="prob-7", voice_id="v99", at=T0 + timedelta(hours=30)
        )
        assert reopened == [order.id]
        order = service.get_order(session=s, principal=admin, order_id=order.id)
        assert order.state == "reopened" and order.regressed
        assert "v99" in {
            link.voice_id for link in service.order_links(session=s, order_id=order.id)
        }
        assert (
            service.on_new_voice_for_problem(
                session=s, problem_id="prob-7", voice_id="v100", at=T0 + timedelta(hours=31)
            )
            == []
        )


def test_tick_reminds_then_escalates_once(db, admin):
    with db() as s:
        add_user(session=s, username="sup-js", role="supervisor", province="江苏")
        add_user(session=s, username="sup-gd", role="supervisor", province="广东")
        s.commit()
        order, _ = service.create_order(
            session=s, principal=admin, data=_order(scenario="PLAN"), at=T0
        )
        assert order.due_at == T0 + timedelta(hours=48)
        assert service.tick(session=s, at=T0 + timedelta(hours=10))["reminders"] == 0
        r = service.tick(session=s, at=T0 + timedelta(hours=45))
        assert r["reminders"] == 1
        assert service.tick(session=s, at=T0 + timedelta(hours=46))["reminders"] == 0
        r = service.tick(session=s, at=T0 + timedelta(hours=49))
        assert r == {"checked": 1, "reminders": 0, "breached": 1, "escalations": 1}
        order = service.get_order(session=s, principal=admin, order_id=order.id)
        assert order.state == "escalated" and order.escalation_level == 1
        r = service.tick(session=s, at=T0 + timedelta(hours=48 + 80))
        assert r["escalations"] == 2 and r["breached"] == 0
        order = service.get_order(session=s, principal=admin, order_id=order.id)
        assert order.escalation_level == 3
        recipients = s.execute(
            text("SELECT recipients FROM act_notifications WHERE level = 1")
        ).scalar()
        assert "sup-js" in recipients and "sup-gd" not in recipients


def test_audit_log_refuses_update_and_delete(db, admin):
    with db() as s:
        service.create_order(session=s, principal=admin, data=_order(), at=T0)
        before = s.execute(text("SELECT count(*) FROM act_audit_log")).scalar()
        assert before == 2  # user.create and order.create
    for statement in ("UPDATE act_audit_log SET actor = 'x'", "DELETE FROM act_audit_log"):
        with db() as s, pytest.raises(Exception, match="append-only"):
            s.execute(text(statement))
            s.commit()
    with db() as s:
        assert s.execute(text("SELECT count(*) FROM act_audit_log")).scalar() == before


def test_out_of_scope_order_looks_absent(db, admin):
    with db() as s:
        order, _ = service.create_order(session=s, principal=admin, data=_order(), at=T0)
        gd = Principal(user_id=None, username="gd", role="agent", province="广东")
        with pytest.raises(NotFoundError):
            service.get_order(session=s, principal=gd, order_id=order.id)
        assert service.list_orders(session=s, principal=gd) == []


def test_business_hours_skip_nights_weekends_and_holidays():
    thursday_17 = datetime(2026, 9, 24, 9, 0, tzinfo=UTC)  # Thu 17:00 Shanghai
    # 2 business hours: 1 h on Thursday; Fri 25 Sep is Mid-Autumn, then the weekend.
    assert add_business_hours(thursday_17, 2) == datetime(2026, 9, 28, 2, 0, tzinfo=UTC)
    # National Day holiday (1-7 Oct 2026) is skipped; 8 Oct 09:00 + 1 h.
    sept_30_18 = datetime(2026, 9, 30, 10, 0, tzinfo=UTC)
    assert deadline(sept_30_18, 1, "business") == datetime(2026, 10, 8, 2, 0, tzinfo=UTC)
    assert deadline(thursday_17, 2, "24x7") == thursday_17 + timedelta(hours=2)
    assert {c.id for c in load_commitments().commitments} >= {"C3-plan-change", "C4-unsubscribe"}


def test_assignee_on_create_must_be_in_scope_and_allowed(db, admin):
    with db() as s:
        gd = principal_of(add_user(session=s, username="gd-a", role="agent", province="广东"))
        add_user(session=s, username="js-a", role="agent", province="江苏")
        s.commit()
        order, _ = service.create_order(
            session=s, principal=admin, data=_order(assignee="js-a"), at=T0
        )
        assert order.state == "assigned" and order.assigned_at == T0
        with pytest.raises(PermissionDeniedError, match="works outside"):
            service.create_order(session=s, principal=admin, data=_order(assignee="gd-a"))
        with pytest.raises(PermissionDeniedError, match="may not assign"):
            service.create_order(
                session=s, principal=gd, data=_order(province="广东", assignee="js-a")
            )
        mine, _ = service.create_order(
            session=s, principal=gd, data=_order(province="广东", city="广州", assignee="gd-a")
        )
        assert mine.assignee_id is not None


def test_pending_verification_tasks_are_region_scoped(db, admin):
    with db() as s:
        for province, customer in (("江苏", "c1"), ("广东", "c2")):
            order, _ = service.create_order(
                session=s,
                principal=admin,
                data=_order(province=province, city=None, customer_ids=[customer]),
                at=T0,
            )
            service.transition(
                session=s,
                principal=admin,
                order_id=order.id,
                to="resolved",
                version=1,
                reason="fixed",
                at=T0,
            )
        gd = Principal(user_id=None, username="gd", role="agent", province="广东")
        tasks = service.pending_verification_tasks(session=s, principal=gd)
        assert [t.customer_id for t in tasks] == ["c2"]
        assert len(service.pending_verification_tasks(session=s, principal=admin)) == 2


def test_transition_table_is_the_only_authority():
    for current in states.STATES:
        for target in states.STATES:
            if target in states.TRANSITIONS[current]:
                states.check_transition(current, target)
            else:
                with pytest.raises(InvalidTransitionError) as err:
                    states.check_transition(current, target)
                assert f"{current!r} to {target!r}" in str(err.value)
    # Every state is reachable from new, and every state can eventually be left or is closed.
    reachable, frontier = {"new"}, ["new"]
    while frontier:
        for nxt in states.TRANSITIONS[frontier.pop()]:
            if nxt not in reachable:
                reachable.add(nxt)
                frontier.append(nxt)
    assert reachable == set(states.STATES)
    assert set(states.TIMESTAMP_COLUMN.values()) <= {c.name for c in WorkOrder.__table__.columns}
