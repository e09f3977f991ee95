"""Agent assist sessions over the real API: turns in, scenario/emotion/answers/plan out."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.conftest import admin_client, shared_file
from voxloop.api.app import create_app
from voxloop.assist.kb import import_kb
from voxloop.assist.plans import load_catalogue
from voxloop.assist.schemas import MAX_TURN_CHARS, SessionCreate, TurnIn, TurnsRequest
from voxloop.assist.session import (
    AssistSession,
    SessionStore,
    add_turns,
    create_session,
    split_transcript,
)
from voxloop.config import Settings
from voxloop.errors import NotFoundError

API = "/api/v1/assist/session"
JS_CUSTOMER = "13900001111"  # real id: the lake holds its pseudonym
GD_CUSTOMER = "13700002222"


def customers() -> list[dict[str, Any]]:
    """Two profiles: a Jiangsu 5G customer using far less than the plan, a Guangdong one."""
    return [
        {
            "id": JS_CUSTOMER,
            "region": {"province": "江苏", "city": "南京"},
            "plan": {
                "name": "5G畅享套餐 199元",
                "monthly_fee": 199,
                "data_gb": 60,
                "voice_minutes": 700,
                "is_5g": True,
            },
            "segment": "mass_market",
            "attributes": {"data_used_gb": "8.5", "voice_used_min": "150"},
        },
        {
            "id": GD_CUSTOMER,
            "region": {"province": "广东", "city": "深圳"},
            "plan": {"name": "4G飞享套餐 38元", "monthly_fee": 38, "data_gb": 5},
            "attributes": {},
        },
    ]


def token_client(app: FastAPI, role: str, province: str | None = None) -> TestClient:
    """A client authenticated as a fresh user of ``role`` scoped to ``province``."""
    from voxloop.act.access import add_user, create_token

    name = f"{role}-{uuid.uuid4().hex[:6]}"
    with app.state.sessionmaker.begin() as session:
        add_user(session=session, username=name, role=role, province=province, actor="test")
    with app.state.sessionmaker.begin() as session:
        token = create_token(session=session, username=name, actor="test")
    return TestClient(app, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    """An app whose lake holds the two profiles (pushed through ingest) and the real FAQ."""
    settings = Settings(
        home=tmp_path_factory.mktemp("assist") / "home", env="test", secret_key="test-key"
    )
    application = create_app(settings)
    pushed = admin_client(application).post("/api/v1/ingest/customer", json=customers())
    assert pushed.status_code == 200, pushed.text
    assert pushed.json()["stored"] == 2
    import_kb(settings=settings, path=shared_file("jiangsu_mobile_faq", "qa.json"))
    return application


@pytest.fixture(scope="module")
def admin(app: FastAPI) -> TestClient:
    return admin_client(app)


def test_conversation_turn_by_turn(app: FastAPI, admin: TestClient) -> None:
    created = admin.post(API, json={"customer_id": JS_CUSTOMER, "channel": "hotline_10086"})
    assert created.status_code == 201, created.text
    state = created.json()
    sid = state["session_id"]
    # The lake holds only the pseudonym; the session never echoes the real number.
    assert state["customer_id"] != JS_CUSTOMER and state["customer_id"].startswith("c")
    assert state["region"] == "江苏/南京"

    plan = state["plan"]
    assert plan["status"] == "recommend"
    best = plan["recommended"]
    # Covers the usage with the stated headroom, stays on 5G, and nothing cheaper does.
    factor = 1 + plan["headroom"]
    assert best["is_5g"] and plan["kept_5g"]
    assert best["data_gb"] >= 8.5 * factor and best["voice_minutes"] >= 150 * factor
    cheaper = [
        p
        for p in load_catalogue(app.state.settings).plans
        if p.monthly_fee < best["monthly_fee"]
        and p.is_5g
        and p.data_gb >= 8.5 * factor
        and p.voice_minutes >= 150 * factor
    ]
    assert cheaper == []
    assert best["name"] == "5G智享套餐 98元"  # worked by hand from plans.yaml
    assert plan["monthly_saving"] == 199 - 98
    assert "98" in plan["explanation"]["zh-CN"] and "101" in plan["explanation"]["en"]

    first = admin.post(
        f"{API}/{sid}/turns",
        json={
            "turns": [
                {"role": "agent", "text": "您好，很高兴为您服务", "start_ms": 0, "end_ms": 1800},
                {
                    "role": "customer",
                    "text": "我每个月交199的套餐，流量根本用不完，我想改成便宜一点的套餐",
                    "start_ms": 2000,
                    "end_ms": 7000,
                },
            ]
        },
    )
    assert first.status_code == 200, first.text
    s1 = first.json()
    assert s1["n_turns"] == 2 and s1["elapsed_ms"] > 0
    assert s1["scenario"]["scenario"] == "PLAN"
    assert s1["scenario"]["names"]["en"]
    assert s1["commitment"]["id"] == "C3-plan-change" and s1["commitment"]["hours"] == 48
    assert s1["suggestions"], s1["suggestions_note"]
    top = s1["suggestions"][0]
    assert top["entry_id"] and top["version"] == 1 and top["answer"]
    assert [p["turn"] for p in s1["emotion"]["points"]] == [1]
    assert s1["emotion"]["escalation"]["level"] != "high"

    second = admin.post(
        f"{API}/{sid}/turns",
        json={
            "turns": [
                {"role": "agent", "text": "好的，我帮您查一下可以办理的套餐"},
                {
                    "role": "customer",
                    "text": "上次也说帮我改，到现在都没改，"
                    "再不解决我就打10080投诉，还要找媒体曝光！",
                },
            ]
        },
    )
    s2 = second.json()
    assert second.status_code == 200, second.text
    # Only the new customer turn was read: one more point, at index 3.
    assert [p["turn"] for p in s2["emotion"]["points"]] == [1, 3]
    escalation = s2["emotion"]["escalation"]
    assert escalation["warning"] and escalation["level"] == "high"
    assert {"supervision", "media"} <= set(escalation["reasons"])
    assert "10080" in escalation["triggers"]
    assert "10080" in escalation["explanation"]["zh-CN"]
    # Once the customer calls 10080 the supervision commitment applies, unless the
    # scenario's own one falls due sooner (business hours vs 24x7 depend on the weekday).
    escalated = escalation["if_escalated"]
    assert escalated["id"] in {"C10-supervision", s2["commitment"]["id"]}
    assert s2["plan"] == s1["plan"]  # computed once per session

    # A backchannel adds an emotion point but keeps the scenario and the answers.
    third = admin.post(f"{API}/{sid}/turns", json={"turns": [{"role": "customer", "text": "嗯"}]})
    s3 = third.json()
    assert [p["turn"] for p in s3["emotion"]["points"]] == [1, 3, 4]
    assert s3["scenario"] == s2["scenario"] and s3["suggestions"] == s2["suggestions"]

    got = admin.get(f"{API}/{sid}")
    assert got.status_code == 200
    turns = got.json()["turns"]
    assert [t["index"] for t in turns] == [0, 1, 2, 3, 4]
    assert [t["role"] for t in turns] == ["agent", "customer", "agent", "customer", "customer"]
    assert turns[1]["start_ms"] == 2000 and turns[1]["end_ms"] == 7000

    # Loading the profile was an access to the customer's record: it is audited.
    from sqlalchemy import select

    from voxloop.act.models import AuditEntry

    with app.state.sessionmaker() as db:
        actions = db.scalars(
            select(AuditEntry.action).where(AuditEntry.object_id == state["customer_id"])
        ).all()
    assert "customer.read" in actions


def test_customer_set_by_first_turns_call(admin: TestClient) -> None:
    sid = admin.post(API).json()["session_id"]
    assert admin.get(f"{API}/{sid}").json()["plan"] is None
    res = admin.post(
        f"{API}/{sid}/turns",
        json={"customer_id": GD_CUSTOMER, "turns": [{"role": "customer", "text": "我想查话费"}]},
    )
    assert res.status_code == 200, res.text
    plan = res.json()["plan"]
    # The Guangdong profile has no usage: no recommendation, and it says which is missing.
    assert plan["status"] == "unknown_usage" and plan["recommended"] is None
    assert "data_used_gb" in plan["explanation"]["en"]
    assert res.json()["region"] == "广东/深圳"
    other = admin.post(
        f"{API}/{sid}/turns",
        json={"customer_id": JS_CUSTOMER, "turns": [{"role": "customer", "text": "喂"}]},
    )
    assert other.status_code == 409 and "customer_id" in other.json()["detail"]


def _loc(res: Any) -> list[list[Any]]:
    return [e["loc"] for e in res.json()["detail"]]


def test_bad_input_gets_a_clear_4xx(admin: TestClient) -> None:
    sid = admin.post(API, json={"session_id": "call-bad-input"}).json()["session_id"]
    assert sid == "call-bad-input"
    url = f"{API}/{sid}/turns"

    empty = admin.post(url, json={"turns": []})
    assert empty.status_code == 422 and _loc(empty) == [["body", "turns"]]
    missing = admin.post(url, json={})
    assert missing.status_code == 422 and _loc(missing) == [["body", "turns"]]

    role = admin.post(url, json={"turns": [{"role": "supervisor", "text": "hi"}]})
    assert role.status_code == 422 and _loc(role) == [["body", "turns", 0, "role"]]
    assert "customer" in role.json()["detail"][0]["msg"]

    huge = "投" * 1_000_000  # about 3 MB of UTF-8: refused before parsing
    too_large = admin.post(url, json={"turns": [{"role": "customer", "text": huge}]})
    assert too_large.status_code == 413 and "bytes" in too_large.json()["detail"][0]["msg"]
    one_mb = "a" * 1_000_000
    long_turn = admin.post(url, json={"turns": [{"role": "customer", "text": one_mb}]})
    assert long_turn.status_code == 422
    assert _loc(long_turn) == [["body", "turns", 0, "text"]]
    assert str(MAX_TURN_CHARS) in long_turn.json()["detail"][0]["msg"]
    assert len(long_turn.content) < 2_000  # the megabyte is not echoed back

    blank = admin.post(url, json={"turns": [{"role": "agent", "text": "   "}]})
    assert blank.status_code == 422 and _loc(blank) == [["body", "turns", 0, "text"]]
    times = admin.post(
        url, json={"turns": [{"role": "agent", "text": "ok", "start_ms": 900, "end_ms": 100}]}
    )
    assert times.status_code == 422 and _loc(times) == [["body", "turns", 0, "end_ms"]]
    typo = admin.post(url, json={"turns": [{"role": "agent", "txt": "ok"}]})
    assert typo.status_code == 422
    assert ["body", "turns", 0, "txt"] in _loc(typo) and ["body", "turns", 0, "text"] in _loc(typo)
    not_json = admin.post(url, content=b"{turns: [", headers={"content-type": "application/json"})
    assert not_json.status_code == 422 and not_json.json()["detail"][0]["type"] == "json_invalid"

    unknown = admin.get(f"{API}/no-such-call")
    assert unknown.status_code == 404 and "no-such-call" in unknown.json()["detail"]
    one_turn = {"turns": [{"role": "customer", "text": "x"}]}
    unknown_post = admin.post(f"{API}/no-such-call/turns", json=one_turn)
    assert unknown_post.status_code == 404 and "no-such-call" in unknown_post.json()["detail"]
    bad_id = admin.get(f"{API}/bad%20id%3B")
    assert bad_id.status_code == 422 and _loc(bad_id) == [["path", "session_id"]]
    again = admin.post(API, json={"session_id": "call-bad-input"})
    assert again.status_code == 409 and "session_id" in again.json()["detail"]
    create_typo = admin.post(API, json={"customerid": "x"})
    assert create_typo.status_code == 422 and _loc(create_typo) == [["body", "customerid"]]

    # Nothing above broke the session: it still takes turns.
    ok = admin.post(url, json={"turns": [{"role": "customer", "text": "我的宽带断网了"}]})
    assert ok.status_code == 200 and ok.json()["n_turns"] == 1


def test_region_scope_and_roles(app: FastAPI, admin: TestClient) -> None:
    js_session = admin.post(API, json={"customer_id": JS_CUSTOMER}).json()["session_id"]
    guangdong = token_client(app, "agent", province="广东")
    # A Guangdong agent neither sees the Jiangsu session nor can open one for its customer.
    assert guangdong.get(f"{API}/{js_session}").status_code == 404
    hidden = guangdong.post(API, json={"customer_id": JS_CUSTOMER})
    assert hidden.status_code == 404 and "customer_id" in hidden.json()["detail"]
    own = guangdong.post(API, json={"customer_id": GD_CUSTOMER})
    assert own.status_code == 201 and own.json()["region"] == "广东/深圳"
    # A session without a known customer belongs to its creator's scope.
    blank = guangdong.post(API).json()
    assert blank["region"] == "广东"
    assert admin.get(f"{API}/{blank['session_id']}").status_code == 200
    analyst = token_client(app, "analyst")
    one_turn = {"turns": [{"role": "agent", "text": "x"}]}
    refused = analyst.post(f"{API}/{js_session}/turns", json=one_turn)
    assert refused.status_code == 403
    assert analyst.get(f"{API}/{js_session}").status_code == 200


def test_session_store_is_a_bounded_lru_with_ttl() -> None:
    now = [0.0]
    store = SessionStore(max_sessions=2, ttl_seconds=10, clock=lambda: now[0])

    def new(sid: str) -> AssistSession:
        from datetime import UTC, datetime

        at = datetime.now(UTC)
        return AssistSession(
            session_id=sid, created_at=at, updated_at=at, province=None, city=None, channel=None
        )

    store.add(new("a"))
    store.add(new("b"))
    store.get("a")  # a is now the most recently used
    store.add(new("c"))  # evicts b
    assert store.get("a").session_id == "a"
    with pytest.raises(NotFoundError, match="'b'"):
        store.get("b")
    now[0] = 9.0
    store.get("c")
    now[0] = 15.0  # a idle 15 s (> ttl), c idle 6 s
    with pytest.raises(NotFoundError):
        store.get("a")
    assert store.get("c").session_id == "c" and len(store) == 1


def test_service_functions_without_http(app: FastAPI) -> None:
    from voxloop.act.access import DEV_ADMIN

    settings = app.state.settings
    store = SessionStore()
    state = create_session(
        store=store, settings=settings, principal=DEV_ADMIN, request=SessionCreate()
    )
    out = add_turns(
        store=store,
        settings=settings,
        principal=DEV_ADMIN,
        session_id=state.session_id,
        request=TurnsRequest(
            turns=[TurnIn(role="customer", text="I was charged twice on my bill this month")]
        ),
    )
    assert out.scenario is not None and out.scenario.scenario
    assert out.plan is None and out.emotion.trend == "stable"


def test_split_transcript_of_generated_calls() -> None:
    text = "坐席：您好，请问有什么可以帮您？\n客户：我的流量用不完，想换套餐。\n坐席：好的。"
    turns = split_transcript(text)
    assert [t["role"] for t in turns] == ["agent", "customer", "agent"]
    assert turns[1]["text"] == "我的流量用不完，想换套餐。"
    english = split_transcript("Agent: Hello. Customer: My bill is wrong. Agent: Let me check.")
    assert [t["role"] for t in english] == ["agent", "customer", "agent"]
    assert json.dumps(turns, ensure_ascii=False)


def test_session_size_is_bounded(admin: TestClient) -> None:
    from voxloop.assist.session import MAX_SESSION_CHARS

    sid = admin.post(API).json()["session_id"]
    turn = {"role": "agent", "text": "x" * MAX_TURN_CHARS}
    n = MAX_SESSION_CHARS // MAX_TURN_CHARS
    assert admin.post(f"{API}/{sid}/turns", json={"turns": [turn] * n}).status_code == 200
    full = admin.post(f"{API}/{sid}/turns", json={"turns": [{"role": "agent", "text": "再见"}]})
    assert full.status_code == 422 and "turns" in full.json()["detail"]
    assert str(MAX_SESSION_CHARS) in full.json()["detail"]
    assert admin.get(f"{API}/{sid}").json()["n_turns"] == n


def test_scenario_text_keeps_head_and_tail() -> None:
    import random

    from voxloop.assist.session import (
        SCENARIO_HEAD_CHARS,
        SCENARIO_TAIL_CHARS,
        _scenario_text,
    )

    rnd = random.Random(3)
    for _ in range(500):
        texts = ["".join(rnd.choices("套餐流量话费", k=rnd.randint(1, 90))) for _ in range(9)]
        texts = texts[: rnd.randint(1, 9)]
        joined = "，".join(texts)
        if len(joined) <= SCENARIO_HEAD_CHARS + SCENARIO_TAIL_CHARS:
            assert _scenario_text(texts) == joined
        else:
            head, tail = joined[:SCENARIO_HEAD_CHARS], joined[-SCENARIO_TAIL_CHARS:]
            assert _scenario_text(texts) == f"{head}，{tail}"
