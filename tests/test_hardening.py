"""Regression tests for problems found in review: inputs and callers that must not break rules."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from fastapi.testclient import TestClient

from tests.conftest import admin_client
from voxloop.act.access import add_user, create_token
from voxloop.act.views import _safe_next
from voxloop.api.app import create_app
from voxloop.config import Settings
from voxloop.ingest.service import ingest_records
from voxloop.store.service import lake_connection, write_part


def test_field_less_records_are_quarantined_not_lost(settings: Settings) -> None:
    result = ingest_records(settings=settings, kind="voice", records=[{}, {}, "x"])
    assert (result.read, result.stored, result.quarantined, result.duplicates) == (3, 0, 3, 0)


def test_lake_paths_with_quotes_are_escaped(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "o'brien" / "home", env="test", secret_key="k")
    write_part(settings, "things", pa.table({"a": [1, 2, 3]}))
    assert lake_connection(settings).execute("SELECT sum(a) FROM things").fetchone() == (6,)


def test_login_redirect_stays_on_site() -> None:
    for target in ("//evil.example", "/\\evil.example", "https://evil.example", "", None):
        assert _safe_next(target) == "/"
    assert _safe_next("/work-orders?x=1") == "/work-orders?x=1"


def _voice(vid: str, province: str, city: str) -> dict[str, object]:
    return {
        "id": vid,
        "source": "test",
        "kind": "complaint",
        "received_at": "2026-10-01T10:00:00+08:00",
        "customer_id": f"1390000{vid[-4:]:0>4}",
        "province": province,
        "city": city,
        "channel": "hotline_10086",
        "text": f"{city}的宽带又断了，投诉编号{vid}，三天没人管",
    }


def test_regional_agent_cannot_reach_other_provinces(settings: Settings) -> None:
    app = create_app(settings)
    admin = admin_client(app)
    pushed = admin.post(
        "/api/v1/ingest/voice",
        json=[_voice("v0001", "江苏", "南京"), _voice("v0002", "广东", "广州")],
    )
    assert pushed.json()["stored"] == 2
    with app.state.sessionmaker.begin() as session:
        add_user(session=session, username="js", role="agent", province="江苏")
        add_user(session=session, username="viewer", role="analyst")
    with app.state.sessionmaker.begin() as session:
        js_token = create_token(session=session, username="js")
        viewer_token = create_token(session=session, username="viewer")
    js = TestClient(app, headers={"Authorization": f"Bearer {js_token}"})
    viewer = TestClient(app, headers={"Authorization": f"Bearer {viewer_token}"})

    mixed = js.post("/api/v1/work-orders/from-voices", json={"voice_ids": ["v0001", "v0002"]})
    assert mixed.status_code == 403, mixed.text
    own = js.post("/api/v1/work-orders/from-voices", json={"voice_ids": ["v0001"]})
    assert own.status_code == 201, own.text

    foreign = js.post("/api/v1/ingest/voice", json=[_voice("v0003", "广东", "深圳")])
    assert foreign.status_code == 403 and "record 1" in foreign.json()["detail"]
    assert (
        viewer.post("/api/v1/ingest/voice", json=[_voice("v0004", "江苏", "苏州")]).status_code
        == 403
    )
    assert js.get("/api/v1/quarantine").status_code == 403
    assert js.get("/api/v1/analysis/churn").status_code == 403
    assert admin.get("/api/v1/analysis/journeys", params={"days": -5}).status_code == 422
