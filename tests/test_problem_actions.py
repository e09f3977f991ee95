"""Actions where the data is: orders from problems and alerts, linking, resolving, verification,
regression; distinct typical cases and phrase titles."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.conftest import admin_client
from voxloop.act.access import add_user, create_token
from voxloop.act.models import AuditEntry, WorkOrder
from voxloop.act.sources import link_to_problem_orders
from voxloop.api.app import create_app
from voxloop.config import Settings
from voxloop.detect.alerts import SurgeAlert
from voxloop.detect.models import Problem
from voxloop.detect.notify import record_alerts
from voxloop.detect.problems import distinct_cases, normalised, phrase_title, problem_title
from voxloop.detect.service import detect_stage

DOWNGRADE = [
    "我想把5G套餐降档，营业厅拒绝办理",
    "申请5G套餐降档被拒绝了，说合约没到期",
    "5G套餐降档为什么不给办，太不合理",
    "想办5G套餐降档，客服说不行",
    "我想把5G套餐降档，营业厅拒绝办理",  # the same sentence again
    "我想把5G套餐降档，营业厅拒绝办理！",  # and once more with other punctuation
    "5G套餐降档申请提交三次都被驳回",
    "打了三次电话要求5G套餐降档，一直推脱",
]
START = datetime(2026, 10, 5, 2, 0, tzinfo=UTC)


def test_distinct_cases_drop_duplicates_and_pick_diverse_voices() -> None:
    texts = [
        "宽带断网三天了",
        "宽带断网三天了！",
        "宽带 断网 三天了",
        "光猫红灯一直亮，宽带用不了",
        "宽带断网三天了，没人修",
        "报修后师傅一直不上门",
    ]
    picked = distinct_cases(texts, k=3)
    assert len(picked) == 3
    keys = [normalised(texts[i]) for i in picked]
    assert len(set(keys)) == 3  # never the same sentence twice
    # Only one of the near-identical "宽带断网三天了" variants makes it.
    assert sum("断网三天" in texts[i] for i in picked) == 1
    # Relevance decides among duplicates: the most similar member is kept.
    rel = [0.1, 0.9, 0.2, 0.3, 0.4, 0.5]
    assert 1 in distinct_cases(texts, k=3, relevance=rel)
    assert distinct_cases(["同一句话", "同一句话。"], k=3) == [0]
    assert distinct_cases([], k=3) == []
    with pytest.raises(ValueError, match="one entry per text"):
        distinct_cases(["a"], relevance=[1.0, 2.0])


def test_titles_read_as_a_phrase() -> None:
    title = phrase_title(DOWNGRADE)
    assert title is not None and "套餐降档" in title
    assert " " not in title  # a phrase, not keywords separated by spaces
    bill = [
        "我这个月被扣了19.9元的视频彩铃尊享包，我从来没订过",
        "刚发现被扣19.9元，业务名称视频彩铃尊享包，赶紧给我退",
        "不明扣费19.9元，是个叫视频彩铃尊享包的东西，请核实",
    ]
    assert phrase_title(bill) == "视频彩铃尊享包"
    en = [
        "My bill shows roaming charges",
        "Roaming charges on my bill again",
        "I was billed roaming charges while at home",
    ]
    assert phrase_title(en) == "Roaming charges"
    places = {"南京", "南京市", "江苏"}
    nanjing = ["南京宽带断网三天", "南京市宽带又断网", "江苏南京宽带断网没人修"]
    assert phrase_title(nanjing, exclude=places) == "宽带断网"
    # Nothing shared: the leading keywords, joined readably.
    assert phrase_title(["信号差", "账单错了"]) is None
    assert problem_title(["信号差", "账单错了"], scenario="MNET", words=["信号", "账单"]) == (
        "信号、账单"
    )
    assert problem_title([], scenario="MNET", words=[]) == "MNET"


def _voice(i: int, text: str, province: str, city: str, at: datetime) -> dict[str, Any]:
    return {
        "id": f"v{i:03d}",
        "source": "test",
        "kind": "complaint",
        "received_at": at.isoformat(),
        "customer_id": f"cust{i:03d}",
        "province": province,
        "city": city,
        "channel": "hotline_10086",
        "text": text,
        "attributes": {"scenario": "PLAN"},
    }


def _client(app: Any, username: str, role: str, province: str | None = None) -> TestClient:
    with app.state.sessionmaker.begin() as session:
        add_user(session=session, username=username, role=role, province=province)
    with app.state.sessionmaker.begin() as session:
        token = create_token(session=session, username=username)
    return TestClient(app, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def grouped(settings: Settings) -> tuple[Any, TestClient, str]:
    """An app whose lake holds one plan-downgrade problem across 江苏 and 广东."""
    app = create_app(settings)
    admin = admin_client(app)
    records = [
        _voice(
            i,
            text,
            *(("江苏", "南京") if i % 2 == 0 else ("广东", "广州")),
            START + timedelta(hours=i),
        )
        for i, text in enumerate(DOWNGRADE)
    ]
    pushed = admin.post("/api/v1/ingest/voice", json=records)
    assert pushed.status_code == 200 and pushed.json()["stored"] == len(DOWNGRADE), pushed.text
    detect_stage(settings=settings)
    with app.state.sessionmaker() as session:
        problems = list(session.scalars(select(Problem)))
    biggest = max(problems, key=lambda p: p.n_voices)
    assert biggest.n_voices >= 6
    return app, admin, biggest.id


def test_problem_has_a_phrase_title_and_distinct_cases(
    grouped: tuple[Any, TestClient, str],
) -> None:
    _app, admin, pid = grouped
    body = admin.get(f"/api/v1/problems/{pid}").json()
    assert "套餐降档" in body["title"] and "·" not in body["title"]
    cases = body["typical_cases"]
    assert len(cases) == 3
    assert len({normalised(c["text"]) for c in cases}) == 3


def test_work_order_from_problem_is_routed_linked_and_verified(
    grouped: tuple[Any, TestClient, str], settings: Settings
) -> None:
    app, admin, pid = grouped
    problem = admin.get(f"/api/v1/problems/{pid}").json()
    created = admin.post(
        f"/api/v1/problems/{pid}/work-orders", json={}, headers={"Idempotency-Key": "k-1"}
    )
    assert created.status_code == 201, created.text
    order = created.json()
    assert order["source_kind"] == "problem" and order["source_ref"] == pid
    assert order["title"] == problem["title"]
    assert order["scenario"] == "PLAN" and order["queue"] == "business"  # routing rule
    assert order["routing_rule"] == "plans-and-unsubscribe" and order["due_at"]
    assert "典型案例" not in order["description"] and "Typical cases" in order["description"]
    again = admin.post(
        f"/api/v1/problems/{pid}/work-orders", json={}, headers={"Idempotency-Key": "k-1"}
    )
    assert again.status_code == 200 and again.json()["id"] == order["id"]
    detail = admin.get(f"/api/v1/work-orders/{order['id']}").json()
    assert {x["voice_id"] for x in detail["links"]} == set(problem["voice_ids"])
    assert all(x["customer_id"] for x in detail["links"])

    actions = admin.get(f"/api/v1/problems/{pid}/actions").json()
    assert [o["id"] for o in actions["orders"]] == [order["id"]]
    assert actions["verification"]["summary"]["customers"] == problem["n_customers"]

    # Resolving needs a fix note and the current version.
    no_note = admin.post(
        f"/api/v1/problems/{pid}/resolve",
        json={"fix_note": " ", "orders": [{"id": order["id"], "version": order["version"]}]},
    )
    assert no_note.status_code == 422 and "fix_note" in no_note.text
    stale = admin.post(
        f"/api/v1/problems/{pid}/resolve",
        json={"fix_note": "规则已修正", "orders": [{"id": order["id"], "version": 99}]},
    )
    assert stale.status_code == 409 and "version" in stale.json()["detail"]
    done = admin.post(
        f"/api/v1/problems/{pid}/resolve",
        json={
            "fix_note": "降档规则已放开，合约期内可降档",
            "orders": [{"id": order["id"], "version": order["version"]}],
        },
    )
    assert done.status_code == 200, done.text
    view = done.json()
    assert view["orders"][0]["state"] == "resolved"
    assert view["orders"][0]["resolution_notes"] == "降档规则已放开，合约期内可降档"
    summary = view["verification"]["summary"]
    assert summary["tasks"] == summary["pending"] == problem["n_customers"]

    # A customer answers the re-survey: the panel counts it as fixed.
    tasks = view["verification"]["orders"][0]["tasks_list"]
    assert {t["kind"] for t in tasks} == {"resurvey"}
    answer = admin.post(
        f"/api/v1/verification-tasks/{tasks[0]['id']}/answer", json={"satisfied": True}
    )
    assert answer.status_code == 200
    answer = admin.post(
        f"/api/v1/verification-tasks/{tasks[1]['id']}/answer", json={"satisfied": False}
    )
    summary = admin.get(f"/api/v1/problems/{pid}/actions").json()["verification"]["summary"]
    assert (summary["fixed"], summary["not_fixed"]) == (1, 1)
    assert summary["pending"] == problem["n_customers"] - 2
    assert not admin.get(f"/api/v1/problems/{pid}/actions").json()["regressed"]

    # A new voice of the problem after the fix: the detect stage reopens the order.
    late = _voice(90, DOWNGRADE[1], "江苏", "南京", datetime.now(UTC) + timedelta(minutes=1))
    assert admin.post("/api/v1/ingest/voice", json=[late]).json()["stored"] == 1
    summary = detect_stage(settings=settings, link_orders=link_to_problem_orders)
    assert summary["orders_reopened"] == 1
    after = admin.get(f"/api/v1/problems/{pid}/actions").json()
    assert after["regressed"] is True
    assert after["orders"][0]["state"] == "reopened" and after["orders"][0]["regressed"]
    assert after["verification"]["summary"]["voices_after_fix"] == 1
    with app.state.sessionmaker() as session:
        actions_logged = [
            e.action
            for e in session.scalars(
                select(AuditEntry)
                .where(AuditEntry.object_id == order["id"])
                .order_by(AuditEntry.id)
            )
        ]
    assert actions_logged[0] == "order.create"
    assert "order.transition" in actions_logged and "order.link" in actions_logged


def test_link_voices_checks_version_membership_and_region(
    grouped: tuple[Any, TestClient, str],
) -> None:
    app, admin, pid = grouped
    problem = admin.get(f"/api/v1/problems/{pid}").json()
    # The first order covers one 广东 voice, so it lies in 广东.
    first = next(v for v in problem["voice_ids"] if int(v[1:]) % 2 == 1)
    rest = [v for v in problem["voice_ids"] if v != first]
    order = admin.post(f"/api/v1/problems/{pid}/work-orders", json={"voice_ids": [first]}).json()
    linked = admin.post(
        f"/api/v1/problems/{pid}/links",
        json={"order_id": order["id"], "version": order["version"], "voice_ids": rest[:2]},
    )
    assert linked.status_code == 200, linked.text
    assert linked.json()["links_added"] == 2 and linked.json()["version"] == order["version"] + 1
    stale = admin.post(
        f"/api/v1/problems/{pid}/links",
        json={"order_id": order["id"], "version": order["version"], "voice_ids": rest[2:3]},
    )
    assert stale.status_code == 409
    foreign = admin.post(
        f"/api/v1/problems/{pid}/links",
        json={"order_id": order["id"], "version": order["version"] + 1, "voice_ids": ["nope"]},
    )
    assert foreign.status_code == 422 and "nope" in foreign.json()["detail"]
    # The same voices twice add nothing.
    same = admin.post(
        f"/api/v1/problems/{pid}/links",
        json={"order_id": order["id"], "version": order["version"] + 1, "voice_ids": rest[:2]},
    )
    assert same.status_code == 200 and same.json()["links_added"] == 0

    # A provincial agent's order covers only its province's voices and lies in it.
    js = _client(app, "js.agent", "agent", province="江苏")
    mine = js.post(f"/api/v1/problems/{pid}/work-orders", json={})
    assert mine.status_code == 201, mine.text
    assert mine.json()["province"] == "江苏" and mine.json()["queue"] == "business"
    links = js.get(f"/api/v1/work-orders/{mine.json()['id']}").json()["links"]
    js_view = js.get(f"/api/v1/problems/{pid}").json()
    assert {x["voice_id"] for x in links} == set(js_view["voice_ids"])
    assert len(links) < len(problem["voice_ids"])
    # The agent does not see the national orders of the problem, only its own.
    assert [o["id"] for o in js.get(f"/api/v1/problems/{pid}/actions").json()["orders"]] == [
        mine.json()["id"]
    ]
    outside = js.post(
        f"/api/v1/problems/{pid}/links",
        json={"order_id": order["id"], "version": 2, "voice_ids": [first]},
    )
    assert outside.status_code == 404
    analyst = _client(app, "analyst", "analyst")
    assert analyst.post(f"/api/v1/problems/{pid}/work-orders", json={}).status_code == 403
    assert analyst.get(f"/api/v1/problems/{pid}/actions").status_code == 200


def test_work_order_from_an_alert(grouped: tuple[Any, TestClient, str]) -> None:
    app, admin, _pid = grouped
    bucket = int((START.timestamp() + 8 * 3600) // 3600)
    surge = SurgeAlert(
        root_cause="scenario=PLAN|province=江苏",
        values={"scenario": "PLAN", "province": "江苏"},
        share=0.9,
        anchor="scenario=PLAN|province=江苏",
        first_bucket=bucket,
        last_bucket=bucket + 5,
        actual=20.0,
        expected=2.0,
        pvalue=1e-6,
    )
    with app.state.sessionmaker.begin() as session:
        (alert,) = record_alerts(session=session, alerts=[surge], granularity="hour")
        alert_id = alert.id
    created = admin.post(f"/api/v1/alerts/{alert_id}/work-orders", json={"priority": "urgent"})
    assert created.status_code == 201, created.text
    order = created.json()
    assert order["source_kind"] == "alert" and order["source_ref"] == f"alert:{alert_id}"
    assert order["province"] == "江苏" and order["priority"] == "urgent"
    links = admin.get(f"/api/v1/work-orders/{order['id']}").json()["links"]
    # Voices 0, 2, 4 were received in 江苏 within the alert's six hours.
    assert sorted(x["voice_id"] for x in links) == ["v000", "v002", "v004"]
    actions = admin.get(f"/api/v1/alerts/{alert_id}/actions").json()
    assert actions["orders"][0]["id"] == order["id"]
    page = admin.get(f"/alerts/{alert_id}", params={"lang": "en"})
    assert page.status_code == 200 and 'id="actions"' in page.text
    assert admin.get("/api/v1/alerts/99999/actions").status_code == 404


def _login(app: Any, username: str, role: str) -> TestClient:
    with app.state.sessionmaker.begin() as session:
        add_user(session=session, username=username, role=role, password="pw-" + username)
    browser = TestClient(app)
    signed = browser.post(
        "/login",
        data={"username": username, "password": "pw-" + username, "next": "/"},
        follow_redirects=False,
    )
    assert signed.status_code == 303
    return browser


def test_problem_page_forms_are_csrf_safe(grouped: tuple[Any, TestClient, str]) -> None:
    app, admin, pid = grouped
    browser = _login(app, "sup", "supervisor")
    page = browser.get(f"/problems/{pid}", params={"lang": "en"})
    assert page.status_code == 200
    assert "Create work order" in page.text
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    nonce = re.search(r'name="nonce" value="([0-9a-f]+)"', page.text)
    assert token and nonce
    form = {"csrf": token.group(1), "nonce": nonce.group(1), "title": "", "priority": "high"}
    # No token, another session's token, or another site's Origin: refused.
    assert (
        browser.post(
            f"/problems/{pid}/actions/create", data={**form, "csrf": ""}, follow_redirects=False
        ).status_code
        == 403
    )
    other = _login(app, "sup2", "supervisor")
    assert (
        other.post(f"/problems/{pid}/actions/create", data=form, follow_redirects=False).status_code
        == 403
    )
    assert (
        browser.post(
            f"/problems/{pid}/actions/create",
            data=form,
            headers={"Origin": "https://evil.example"},
            follow_redirects=False,
        ).status_code
        == 403
    )
    with app.state.sessionmaker() as session:
        assert not list(session.scalars(select(WorkOrder)))
    done = browser.post(f"/problems/{pid}/actions/create", data=form, follow_redirects=False)
    assert done.status_code == 303 and "notice=created" in done.headers["location"]
    # A double submit of the same form opens one order.
    browser.post(f"/problems/{pid}/actions/create", data=form, follow_redirects=False)
    with app.state.sessionmaker() as session:
        orders = list(session.scalars(select(WorkOrder)))
    assert len(orders) == 1 and orders[0].priority == "high" and orders[0].created_by == "sup"
    page = browser.get(f"/problems/{pid}", params={"lang": "en", "notice": "created"})
    assert f'data-order="{orders[0].id}"' in page.text and "Mark resolved" in page.text
    # Resolving without a note comes back with the reason; with one it resolves.
    value = f"{orders[0].id}:{orders[0].version}"
    empty = browser.post(
        f"/problems/{pid}/actions/resolve",
        data={"csrf": token.group(1), "order": value, "fix_note": ""},
        follow_redirects=False,
    )
    assert empty.status_code == 303 and "error=" in empty.headers["location"]
    ok = browser.post(
        f"/problems/{pid}/actions/resolve",
        data={"csrf": token.group(1), "order": value, "fix_note": "已放开降档"},
        follow_redirects=False,
    )
    assert ok.status_code == 303 and "notice=resolved" in ok.headers["location"]
    page = browser.get(f"/problems/{pid}", params={"lang": "zh-CN"})
    assert "已放开降档" in page.text and 'data-state="resolved"' in page.text
    assert 'class="verification-task" data-state="pending"' in page.text
    # An analyst sees the panel but no forms (and a forged post is refused).
    analyst = _login(app, "ana", "analyst")
    view = analyst.get(f"/problems/{pid}", params={"lang": "en"})
    assert "Create work order" not in view.text and "can view but not act" in view.text
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', view.text)
    assert token is None
    assert json.loads(admin.get(f"/api/v1/problems/{pid}/actions").text)["orders"]


def test_link_form_links_the_ticked_voices(grouped: tuple[Any, TestClient, str]) -> None:
    app, admin, pid = grouped
    problem = admin.get(f"/api/v1/problems/{pid}").json()
    first, *rest = problem["voice_ids"]
    order = admin.post(f"/api/v1/problems/{pid}/work-orders", json={"voice_ids": [first]}).json()
    browser = _login(app, "linker", "agent")
    page = browser.get(f"/problems/{pid}", params={"lang": "en"})
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert token and f'value="{order["id"]}:{order["version"]}"' in page.text
    offered = re.findall(r'name="voice" value="([^"]+)"', page.text)
    assert set(offered) <= set(problem["voice_ids"]) and len(offered) >= 2
    ticked = [v for v in offered if v != first][:2]
    done = browser.post(
        f"/problems/{pid}/actions/link",
        data={
            "csrf": token.group(1),
            "order": f"{order['id']}:{order['version']}",
            "voice": ticked,
        },
        follow_redirects=False,
    )
    assert done.status_code == 303 and "notice=linked" in done.headers["location"]
    links = admin.get(f"/api/v1/work-orders/{order['id']}").json()["links"]
    assert {x["voice_id"] for x in links} == {first, *ticked}
    # The same form again carries a stale version: refused with the reason, nothing linked.
    again = browser.post(
        f"/problems/{pid}/actions/link",
        data={"csrf": token.group(1), "order": f"{order['id']}:{order['version']}", "voice": rest},
        follow_redirects=False,
    )
    assert "error=" in again.headers["location"] and "version" in again.headers["location"]
    assert len(admin.get(f"/api/v1/work-orders/{order['id']}").json()["links"]) == 3


def test_problems_page_honours_the_filter_bar(grouped: tuple[Any, TestClient, str]) -> None:
    _app, admin, pid = grouped
    everything = admin.get("/problems", params={"lang": "en"})
    assert f'data-problem="{pid}"' in everything.text
    for params, shown in (
        ({"scenario": "PLAN"}, True),
        ({"scenario": "BILL"}, False),
        ({"province": "广东"}, True),
        ({"province": "浙江"}, False),
        ({"from": "2026-10-05", "to": "2026-10-05"}, True),
        ({"from": "2026-11-01"}, False),
    ):
        page = admin.get("/problems", params={"lang": "en", **params})
        assert page.status_code == 200
        assert (f'data-problem="{pid}"' in page.text) is shown, params
    bad = admin.get("/problems", params={"from": "2026-13-01"})
    assert bad.status_code in (400, 422) and "from" in bad.text


@pytest.fixture
def act_db(any_db_settings: Settings) -> Any:
    from tests.test_act_orders import clean_act_tables
    from voxloop.store.service import make_engine, make_sessionmaker, migrate

    migrate(any_db_settings)
    engine = make_engine(any_db_settings)
    clean_act_tables(engine)
    yield make_sessionmaker(engine)
    engine.dispose()


def test_link_resolve_regress_on_sqlite_and_postgresql(act_db: Any) -> None:
    """The act side of the actions, on both stores: one transaction each, versions checked."""
    from voxloop.act import service
    from voxloop.act.access import principal_of
    from voxloop.act.schemas import OrderCreate
    from voxloop.errors import ConflictError, InvalidTransitionError

    t0 = datetime(2026, 10, 1, 2, 0, tzinfo=UTC)
    with act_db() as s:
        boss = principal_of(add_user(session=s, username="boss", role="supervisor"))
        s.commit()
        data = OrderCreate(
            title="5G套餐降档被拒",
            source_kind="problem",
            source_ref="p-1",
            scenario="PLAN",
            province="江苏",
            voice_ids=["v1", "v2"],
            customer_ids=["c1", "c2"],
        )
        first, _ = service.create_order(session=s, principal=boss, data=data, at=t0)
        second, _ = service.create_order(
            session=s,
            principal=boss,
            data=data.model_copy(update={"voice_ids": ["v3"], "customer_ids": ["c3"]}),
            at=t0,
        )
        assert service.problems_with_orders(session=s, problem_ids=["p-1", "p-2"]) == {"p-1"}
        order, added = service.link_voices(
            session=s,
            principal=boss,
            order_id=first.id,
            version=1,
            voice_ids=["v2", "v4"],
            customer_ids=["c2", "c4"],
            at=t0,
        )
        assert added == 1 and order.version == 2
        with pytest.raises(ConflictError, match="version"):
            service.link_voices(
                session=s, principal=boss, order_id=first.id, version=1, voice_ids=["v5"]
            )
        # All or none: the second order's stale version keeps the first unresolved too.
        with pytest.raises(ConflictError):
            service.resolve_orders(
                session=s,
                principal=boss,
                orders=[(first.id, 2), (second.id, 7)],
                fix_note="放开降档",
                at=t0 + timedelta(days=1),
            )
        assert service.get_order(session=s, principal=boss, order_id=first.id).state == "new"
        with pytest.raises(ValueError, match="fix_note"):
            service.resolve_orders(session=s, principal=boss, orders=[(first.id, 2)], fix_note="  ")
        done = service.resolve_orders(
            session=s,
            principal=boss,
            orders=[(first.id, 2), (second.id, 1)],
            fix_note="放开降档",
            at=t0 + timedelta(days=1),
        )
        assert [o.state for o in done] == ["resolved", "resolved"]
        with pytest.raises(InvalidTransitionError):
            service.resolve_orders(
                session=s, principal=boss, orders=[(first.id, done[0].version)], fix_note="again"
            )
        summary = service.verification_summary(session=s, orders=done)["summary"]
        assert summary["customers"] == summary["tasks"] == summary["pending"] == 4
        # Voices after the fix reopen both orders; a voice from before only links.
        reopened = service.on_new_voices_for_problems(
            session=s,
            voices=[
                ("p-1", "v0", "c0", t0 + timedelta(hours=1)),
                ("p-1", "v9", "c9", t0 + timedelta(days=2)),
                ("p-2", "v8", "c8", t0 + timedelta(days=2)),
            ],
        )
        assert sorted(reopened) == sorted([first.id, second.id])
        orders = service.source_orders(
            session=s, principal=boss, source_kind="problem", source_ref="p-1"
        )
        view = service.verification_summary(session=s, orders=orders)
        assert view["summary"]["regressed"] == 2 and view["summary"]["voices_after_fix"] == 2
        assert all(o["state"] == "reopened" for o in view["orders"])


def test_order_description_in_the_callers_language(grouped: tuple[Any, TestClient, str]) -> None:
    _app, admin, pid = grouped
    zh = admin.post(f"/api/v1/problems/{pid}/work-orders", params={"lang": "zh-CN"}, json={})
    assert zh.status_code == 201 and "典型案例" in zh.json()["description"]
    assert (
        admin.post(
            f"/api/v1/problems/{pid}/work-orders", params={"lang": "fr"}, json={}
        ).status_code
        == 422
    )
    closed = admin.post(
        f"/api/v1/work-orders/{zh.json()['id']}/transition",
        json={"to": "closed", "version": 1, "reason": "duplicate"},
    )
    assert closed.status_code == 200, closed.text


def test_alert_typical_cases_are_distinct() -> None:
    import pyarrow as pa

    from voxloop.detect.service import typical_cases

    at = [START + timedelta(minutes=5 * i) for i in range(6)]
    texts = ["话费乱扣", "话费乱扣！", "话费乱扣", "账单看不懂", "话费乱扣了", "套餐被改了"]
    voices = pa.table(
        {
            "id": [f"a{i}" for i in range(6)],
            "received_at": pa.array(at, pa.timestamp("us", tz="UTC")),
            "text": texts,
            "province": ["江苏"] * 6,
        }
    )
    bucket = int((START.timestamp() + 8 * 3600) // 3600)
    surge = SurgeAlert(
        root_cause="province=江苏",
        values={"province": "江苏"},
        share=1.0,
        anchor="province=江苏",
        first_bucket=bucket,
        last_bucket=bucket,
        actual=6.0,
        expected=1.0,
        pvalue=1e-4,
    )
    cases = typical_cases(voices, surge)
    assert len(cases) == 3
    assert len({normalised(c["text"]) for c in cases}) == 3
    # Latest first among the picks.
    assert [c["voice_id"] for c in cases] == sorted((c["voice_id"] for c in cases), reverse=True)
