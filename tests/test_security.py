"""Access control through the HTTP API on SQLite and PostgreSQL: tokens, scopes, 401/403/404/422."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.test_act_orders import clean_act_tables
from voxloop.act.access import add_user, create_token, make_session_cookie
from voxloop.api.app import create_app
from voxloop.config import Settings
from voxloop.store.service import make_engine, make_sessionmaker, migrate


@pytest.fixture
def api(any_db_settings):
    migrate(any_db_settings)
    engine = make_engine(any_db_settings)
    clean_act_tables(engine)
    tokens = {}
    with make_sessionmaker(engine)() as s:
        for name, role, province in [
            ("admin", "admin", None),
            ("js-agent", "agent", "江苏"),
            ("gd-agent", "agent", "广东"),
            ("gd-sup", "supervisor", "广东"),
            ("js-sup", "supervisor", "江苏"),
            ("analyst", "analyst", None),
        ]:
            # One password is enough for the login test; argon2 is slow by design.
            password = "pw-js-agent" if name == "js-agent" else None
            add_user(session=s, username=name, role=role, province=province, password=password)
            tokens[name] = create_token(session=s, username=name)
        s.commit()
    engine.dispose()
    app = create_app(any_db_settings, run_migrations=False)
    with TestClient(app) as client:
        yield client, {k: {"Authorization": f"Bearer {v}"} for k, v in tokens.items()}
    app.state.engine.dispose()


def _create(client, headers, **kw):
    body = {"title": "宽带断网", "scenario": "HBB", "province": "江苏", "city": "苏州"}
    body.update(kw)
    return client.post("/api/v1/work-orders", json=body, headers=headers)


ORDER_ENDPOINTS = [
    ("get", "/api/v1/work-orders/{id}", None),
    ("get", "/api/v1/work-orders/{id}/audit", None),
    ("post", "/api/v1/work-orders/{id}/transition", {"to": "in_progress", "version": 1}),
    ("post", "/api/v1/work-orders/{id}/comments", {"body": "看一下"}),
]


def test_requests_without_valid_token_are_refused(api):
    client, _ = api
    paths = [
        ("get", "/api/v1/work-orders"),
        ("post", "/api/v1/work-orders"),
        ("get", "/api/v1/kpis"),
        ("get", "/api/v1/commitments"),
        ("get", "/api/v1/commitments/violations"),
        ("post", "/api/v1/act/tick"),
    ]
    for method, path in paths:
        for headers in (
            {},
            {"Authorization": "Bearer vx_deadbeefdeadbeef_forged"},
            {"Authorization": "Basic YWRtaW46eA=="},
            {"Cookie": "voxloop_session=eyJ1IjoxLCJleHAiOjk5OTk5OTk5OTl9.forged"},
        ):
            r = client.request(method, path, headers=headers, json={})
            assert r.status_code == 401, (method, path, headers, r.text)


def test_provincial_agent_cannot_touch_other_province(api):
    client, h = api
    r = _create(client, h["js-agent"])
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["province"] == "江苏" and order["routing_rule"] == "home-broadband"
    for who in ("gd-agent", "gd-sup"):
        for method, path, body in ORDER_ENDPOINTS:
            r = client.request(method, path.format(id=order["id"]), json=body, headers=h[who])
            assert r.status_code == 404, (who, method, path, r.text)
        listed = client.get("/api/v1/work-orders", headers=h[who]).json()["items"]
        assert order["id"] not in {o["id"] for o in listed}
        listed = client.get("/api/v1/work-orders?province=江苏", headers=h[who]).json()["items"]
        assert listed == []
    r = client.post(
        f"/api/v1/work-orders/{order['id']}/assign",
        json={"assignee": "gd-agent", "version": 1},
        headers=h["gd-sup"],
    )
    assert r.status_code == 404
    # Creating in another province is refused; so is assigning to someone outside it.
    assert _create(client, h["gd-agent"]).status_code == 403
    r = client.post(
        f"/api/v1/work-orders/{order['id']}/assign",
        json={"assignee": "gd-agent", "version": 1},
        headers=h["js-sup"],
    )
    assert r.status_code == 403
    # Nothing changed.
    same = client.get(f"/api/v1/work-orders/{order['id']}", headers=h["admin"]).json()
    assert same["version"] == 1 and same["state"] == "new" and same["comments"] == []


def test_roles_limit_what_can_be_done(api):
    client, h = api
    assert _create(client, h["analyst"]).status_code == 403
    order = _create(client, h["admin"]).json()
    assert client.get(f"/api/v1/work-orders/{order['id']}", headers=h["analyst"]).status_code == 200
    r = client.post(
        f"/api/v1/work-orders/{order['id']}/assign",
        json={"assignee": "js-agent", "version": 1},
        headers=h["js-agent"],
    )
    assert r.status_code == 403
    r = client.post(
        f"/api/v1/work-orders/{order['id']}/assign",
        json={"assignee": "js-agent", "version": 1},
        headers=h["js-sup"],
    )
    assert r.status_code == 200 and r.json()["state"] == "assigned"


MALFORMED_CREATES = [
    {},
    {"title": ""},
    {"title": "x", "scenario": "NOPE"},
    {"title": "x", "priority": 5},
    {"title": "x", "unknown_field": 1},
    {"title": "x", "voice_ids": "v1"},
    {"title": "x" * 301},
    [1, 2, 3],
]


def test_malformed_create_gets_422_with_field_errors(api):
    client, h = api
    for body in MALFORMED_CREATES:
        r = client.post("/api/v1/work-orders", json=body, headers=h["admin"])
        assert r.status_code == 422, (body, r.text)
        assert r.json()["detail"] and "loc" in r.json()["detail"][0]


def test_malformed_transition_and_non_json_get_422(api):
    client, h = api
    order = _create(client, h["admin"]).json()
    url = f"/api/v1/work-orders/{order['id']}/transition"
    for body in (
        {"to": "flying", "version": 1},
        {"to": "resolved"},
        {"to": "resolved", "version": 0},
        {"to": "resolved", "version": "one"},
        {"to": "resolved", "version": 1},  # no reason
    ):
        r = client.post(url, json=body, headers=h["admin"])
        assert r.status_code == 422, (body, r.text)
        assert "loc" in r.json()["detail"][0]
    r = client.post(
        url, content=b"{not json", headers={**h["admin"], "Content-Type": "application/json"}
    )
    assert r.status_code == 422
    r = client.post("/api/v1/verification-tasks/abc/answer", json={}, headers=h["admin"])
    assert r.status_code == 422
    r = client.get("/api/v1/work-orders?limit=-1", headers=h["admin"])
    assert r.status_code == 422


def test_conflict_and_idempotent_retry_over_http(api):
    client, h = api
    headers = {**h["js-agent"], "Idempotency-Key": "call-123"}
    first = _create(client, headers)
    retry = _create(client, headers)
    assert first.status_code == 201 and retry.status_code == 200
    assert first.json()["id"] == retry.json()["id"]
    url = f"/api/v1/work-orders/{first.json()['id']}/transition"
    ok = client.post(url, json={"to": "in_progress", "version": 1}, headers=h["js-agent"])
    assert ok.status_code == 200 and ok.json()["version"] == 2
    stale = client.post(url, json={"to": "escalated", "version": 1}, headers=h["js-agent"])
    assert stale.status_code == 409 and stale.json()["error"] == "ConflictError"
    illegal = client.post(url, json={"to": "verified", "version": 2}, headers=h["js-agent"])
    assert illegal.status_code == 409 and "'in_progress' to 'verified'" in illegal.json()["detail"]


def test_order_detail_read_is_audited(api):
    client, h = api
    order = _create(client, h["admin"], customer_ids=["cabc"], voice_ids=["v1"]).json()
    client.get(f"/api/v1/work-orders/{order['id']}", headers=h["js-agent"])
    from sqlalchemy import text

    with client.app.state.sessionmaker() as s:
        rows = s.execute(
            text("SELECT actor, action FROM act_audit_log WHERE object_id = 'cabc'")
        ).all()
    assert [tuple(r) for r in rows] == [("js-agent", "customer.read")]


def test_login_sets_signed_cookie_for_pages_and_api(api):
    client, _ = api
    r = client.get("/work-orders", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert client.get("/login").status_code == 200
    bad = client.post("/login", data={"username": "js-agent", "password": "nope"})
    assert bad.status_code == 401
    r = client.post(
        "/login",
        data={"username": "js-agent", "password": "pw-js-agent", "next": "https://evil.example/"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert client.cookies.get("voxloop_session")
    assert client.get("/work-orders").status_code == 200
    assert client.get("/commitments").status_code == 200
    assert client.get("/api/v1/work-orders").status_code == 200
    client.cookies.clear()
    forged = make_session_cookie(secret_key="another-key", user_id=1)
    client.cookies.set("voxloop_session", forged)
    assert client.get("/api/v1/work-orders").status_code == 401


def test_dev_mode_without_users_is_open_until_first_user(tmp_path):
    settings = Settings(home=tmp_path / "dev", env="dev")
    app = create_app(settings)
    with TestClient(app) as client:
        assert client.get("/api/v1/work-orders").status_code == 200
        assert client.get("/work-orders").status_code == 200
        assert client.get("/commitments").status_code == 200
        assert client.get("/login").status_code == 200
        with app.state.sessionmaker() as s:
            add_user(session=s, username="first", role="admin", password="pw")
            s.commit()
        assert client.get("/api/v1/work-orders").status_code == 401
    app.state.engine.dispose()


def _write_voices(settings):
    from datetime import UTC, datetime

    import pyarrow as pa

    from voxloop.store.service import write_part

    smap = pa.map_(pa.string(), pa.string())
    rows = [
        ("v1", "c1", "江苏", "苏州", "HBB", "宽带又断了"),
        ("v2", "c2", "江苏", "苏州", "HBB", "宽带断网三天"),
        ("v3", "c3", "江苏", "南京", "BILL", "乱扣费"),
        ("v9", "c9", "广东", "广州", "BILL", "扣费不明"),
    ]
    write_part(
        settings,
        "voices",
        pa.table(
            {
                "id": [r[0] for r in rows],
                "customer_id": [r[1] for r in rows],
                "province": [r[2] for r in rows],
                "city": [r[3] for r in rows],
                "district": pa.nulls(len(rows), pa.string()),
                "channel": ["hotline_10086"] * len(rows),
                "text": [r[5] for r in rows],
                "received_at": pa.array([datetime(2026, 9, 1, tzinfo=UTC)] * len(rows)),
                "attributes": pa.array([[("scenario", r[4])] for r in rows], smap),
            }
        ),
    )


def test_orders_from_lake_voices_respect_scope(api):
    client, h = api
    _write_voices(client.app.state.settings)
    url = "/api/v1/work-orders/from-voices"
    one = client.post(url, json={"voice_ids": ["v3"]}, headers=h["js-agent"])
    assert one.status_code == 201, one.text
    o = one.json()
    assert (o["scenario"], o["province"], o["city"], o["source_ref"]) == (
        "BILL",
        "江苏",
        "南京",
        "v3",
    )
    body = {"voice_ids": ["v1", "v2"], "source_kind": "problem", "source_ref": "prob-hbb"}
    prob = client.post(url, json=body, headers=h["js-agent"]).json()
    assert (prob["scenario"], prob["city"], prob["source_kind"]) == ("HBB", "苏州", "problem")
    detail = client.get(f"/api/v1/work-orders/{prob['id']}", headers=h["js-agent"]).json()
    assert sorted(x["customer_id"] for x in detail["links"]) == ["c1", "c2"]
    resolve = {"to": "resolved", "version": prob["version"], "reason": "fixed"}
    r = client.post(
        f"/api/v1/work-orders/{prob['id']}/transition", json=resolve, headers=h["js-agent"]
    )
    assert r.status_code == 200
    tasks = client.get("/api/v1/verification-tasks", headers=h["js-agent"]).json()
    assert sorted(t["customer_id"] for t in tasks) == ["c1", "c2"]
    assert client.get("/api/v1/verification-tasks", headers=h["gd-agent"]).json() == []
    answer = f"/api/v1/verification-tasks/{tasks[0]['id']}/answer"
    assert client.post(answer, json={"satisfied": True}, headers=h["gd-agent"]).status_code == 404
    assert client.post(answer, json={"satisfied": True}, headers=h["js-agent"]).status_code == 200
    assert client.post(answer, json={"satisfied": True}, headers=h["js-agent"]).status_code == 409
    # A Jiangsu agent cannot open an order on a Guangdong customer's voice.
    assert client.post(url, json={"voice_ids": ["v9"]}, headers=h["js-agent"]).status_code == 403
    assert client.post(url, json={"voice_ids": ["nope"]}, headers=h["admin"]).status_code == 404
    assert client.post(url, json={"voice_ids": []}, headers=h["admin"]).status_code == 422
    page = client.get("/work-orders?lang=en", headers=h["js-agent"])
    assert page.status_code == 200
    assert f'data-order="{prob["id"]}"' in page.text and 'data-sla="ok"' in page.text
    gd_page = client.get("/work-orders", headers=h["gd-agent"])
    assert prob["id"] not in gd_page.text
    assert client.get("/commitments?lang=en", headers=h["analyst"]).status_code == 200


def test_guards_other_domains_can_use(api):
    """The dependencies app.py can put on every other router: 401 for API, login for pages."""
    from fastapi import APIRouter, Depends

    from voxloop.api.service import get_principal, require_page_login

    client, h = api
    extra = APIRouter()

    @extra.get("/guarded-page")
    def guarded_page(p=Depends(require_page_login)):
        return {"user": p.username}

    @extra.get("/api/v1/guarded")
    def guarded_api(p=Depends(get_principal)):
        return {"user": p.username}

    client.app.include_router(extra)
    r = client.get("/guarded-page", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/guarded-page"
    assert client.get("/api/v1/guarded").status_code == 401
    assert client.get("/api/v1/guarded", headers=h["analyst"]).json() == {"user": "analyst"}
