"""Regional users see only their region's voices through the voices API."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import admin_client
from voxloop.act.access import add_user, create_token
from voxloop.api.app import create_app
from voxloop.config import Settings


def _voice(i: int, province: str, city: str) -> dict[str, object]:
    return {
        "id": f"v{i}",
        "source": "test",
        "kind": "complaint",
        "received_at": "2026-10-01T10:00:00+08:00",
        "province": province,
        "city": city,
        "channel": "hotline_10086",
        "text": f"第{i}次投诉：话费扣得不明不白，{city}的客户要求解释",
    }


def test_provincial_agent_sees_only_its_province(settings: Settings) -> None:
    app = create_app(settings)
    admin = admin_client(app)
    records = [_voice(i, "江苏", "南京") for i in range(3)] + [
        _voice(10 + i, "广东", "广州") for i in range(2)
    ]
    pushed = admin.post("/api/v1/ingest/voice", json=records)
    assert pushed.status_code == 200, pushed.text
    assert pushed.json()["stored"] == 5
    assert admin.get("/api/v1/voices").json()["total"] == 5

    with app.state.sessionmaker.begin() as session:
        add_user(session=session, username="js.agent", role="agent", province="江苏")
    with app.state.sessionmaker.begin() as session:
        token = create_token(session=session, username="js.agent")
    agent = TestClient(app, headers={"Authorization": f"Bearer {token}"})

    mine = agent.get("/api/v1/voices").json()
    assert mine["total"] == 3
    assert {item["province"] for item in mine["items"]} == {"江苏"}
    refused = agent.get("/api/v1/voices", params={"province": "广东"})
    assert refused.status_code == 403
    assert "outside your region scope" in refused.json()["detail"]
    assert TestClient(app).get("/api/v1/voices").status_code == 401


def test_dashboard_pages_follow_the_region_scope(settings: Settings) -> None:
    app = create_app(settings)
    admin = admin_client(app)
    records = [_voice(i, "江苏", "南京") for i in range(2)] + [_voice(20, "广东", "广州")]
    assert admin.post("/api/v1/ingest/voice", json=records).json()["stored"] == 3
    with app.state.sessionmaker.begin() as session:
        add_user(session=session, username="gd.agent", role="agent", province="广东")
    with app.state.sessionmaker.begin() as session:
        token = create_token(session=session, username="gd.agent")
    agent = TestClient(app, headers={"Authorization": f"Bearer {token}"})

    page = agent.get("/voices", params={"lang": "en"})
    assert page.status_code == 200
    assert 'href="/voices/v20"' in page.text
    assert 'href="/voices/v0"' not in page.text and 'href="/voices/v1"' not in page.text
    assert agent.get("/voices", params={"province": "江苏"}).status_code == 403
    assert agent.get("/voices/v0").status_code == 404
    assert agent.get("/voices/v20").status_code == 200
    overview = agent.get("/", params={"lang": "en"})
    assert overview.status_code == 200 and "南京" not in overview.text
    assert "南京" in admin.get("/", params={"lang": "en"}).text
