"""Regional users see only their region: voices, overview, problems, alerts, satisfaction."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from tests.conftest import admin_client
from voxloop.act.access import add_user, create_token
from voxloop.api.app import create_app
from voxloop.config import Settings
from voxloop.detect.alerts import SurgeAlert
from voxloop.detect.models import ProblemMember
from voxloop.detect.notify import record_alerts
from voxloop.detect.service import read_voices, refresh_problems
from voxloop.store.service import part_files


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


def _client(app: Any, username: str, role: str, province: str | None = None) -> TestClient:
    with app.state.sessionmaker.begin() as session:
        add_user(session=session, username=username, role=role, province=province)
    with app.state.sessionmaker.begin() as session:
        token = create_token(session=session, username=username)
    return TestClient(app, headers={"Authorization": f"Bearer {token}"})


def _surge(values: dict[str, str]) -> SurgeAlert:
    return SurgeAlert(
        root_cause="|".join(f"{k}={v}" for k, v in values.items()),
        values=values,
        share=0.8,
        anchor="scenario=BILL",
        first_bucket=500_000,
        last_bucket=500_001,
        actual=30.0,
        expected=3.0,
        pvalue=1e-8,
    )


def test_problems_and_alerts_follow_the_region_scope(settings: Settings) -> None:
    app = create_app(settings)
    admin = admin_client(app)
    records = [_voice(i, "江苏", "南京") for i in range(3)] + [
        _voice(10 + i, "广东", "广州") for i in range(2)
    ]
    assert admin.post("/api/v1/ingest/voice", json=records).json()["stored"] == 5
    gd_texts = [str(r["text"]) for r in records[3:]]
    voices = read_voices(settings=settings, files=part_files(settings, "voices"))
    groups = {"p-mixed": ["v0", "v1", "v10"], "p-js": ["v2"], "p-gd": ["v11"]}
    bill, js, gd = {"scenario": "BILL"}, {"province": "江苏"}, {"province": "广东"}
    with app.state.sessionmaker.begin() as session:
        for pid, ids in groups.items():
            session.add_all(ProblemMember(voice_id=v, problem_id=pid, source="auto") for v in ids)
        session.flush()
        refresh_problems(session=session, problem_ids=sorted(groups), voices=voices)
        national, js_alert, gd_alert = record_alerts(
            session=session,
            alerts=[_surge(bill), _surge(js), _surge(gd)],
            granularity="hour",
            typical={
                "scenario=BILL": [
                    {"voice_id": "v10", "text": gd_texts[0]},
                    {"voice_id": "v0", "text": str(records[0]["text"])},
                ],
                "province=广东": [{"voice_id": "v11", "text": gd_texts[1]}],
            },
        )
        ids = {"national": national.id, "js": js_alert.id, "gd": gd_alert.id}
    agent = _client(app, "js.agent", "agent", province="江苏")

    listed = {p["id"]: p for p in agent.get("/api/v1/problems").json()}
    assert set(listed) == {"p-mixed", "p-js"}
    assert listed["p-mixed"]["n_voices"] == 2 and listed["p-mixed"]["province"] == "江苏"
    detail = agent.get("/api/v1/problems/p-mixed")
    assert detail.status_code == 200
    body = detail.json()
    assert body["voice_ids"] == ["v0", "v1"] and body["regions"] == {"江苏/南京": 2}
    assert {c["voice_id"] for c in body["typical_cases"]} <= {"v0", "v1"}
    assert sum(body["daily"].values()) == 2
    assert "v10" not in detail.text and not any(t in detail.text for t in gd_texts)
    assert agent.get("/api/v1/problems/p-gd").status_code == 404
    # Merging or splitting a problem with voices elsewhere changes other regions' view.
    refused = agent.post("/api/v1/problems/p-js/merge", json={"sources": ["p-mixed"]})
    assert refused.status_code == 403 and "outside your region scope" in refused.text
    assert agent.post("/api/v1/problems/p-mixed/merge", json={"sources": ["p-js"]}).status_code == (
        403
    )
    split = agent.post("/api/v1/problems/p-mixed/split", json={"voice_ids": ["v0"]})
    assert split.status_code == 403

    # The national admin sees everything; a split moves the places with the voices, after
    # which the problem lies wholly in 江苏 and the provincial agent may merge into it.
    whole = admin.get("/api/v1/problems/p-mixed").json()
    assert whole["voice_ids"] == ["v0", "v1", "v10"] and whole["n_voices"] == 3
    moved = admin.post("/api/v1/problems/p-mixed/split", json={"voice_ids": ["v10"]})
    assert moved.status_code == 201, moved.text
    assert admin.get(f"/api/v1/problems/{moved.json()['id']}").json()["regions"] == {"广东/广州": 1}
    assert agent.get(f"/api/v1/problems/{moved.json()['id']}").status_code == 404
    merged = agent.post("/api/v1/problems/p-mixed/merge", json={"sources": ["p-js"]})
    assert merged.status_code == 200, merged.text
    assert merged.json()["n_voices"] == 3

    alerts = agent.get("/api/v1/alerts")
    assert {a["id"] for a in alerts.json()} == {ids["national"], ids["js"]}
    by_id = {a["id"]: a for a in alerts.json()}
    assert [c["voice_id"] for c in by_id[ids["national"]]["typical_cases"]] == ["v0"]
    assert not any(t in alerts.text for t in gd_texts)
    assert agent.get(f"/api/v1/alerts/{ids['gd']}").status_code == 404
    assert len(admin.get("/api/v1/alerts").json()) == 3
    national_cases = admin.get(f"/api/v1/alerts/{ids['national']}").json()["typical_cases"]
    assert [c["voice_id"] for c in national_cases] == ["v10", "v0"]
    ack = {"state": "acknowledged"}
    assert agent.post(f"/api/v1/alerts/{ids['national']}/state", json=ack).status_code == 403
    assert agent.post(f"/api/v1/alerts/{ids['gd']}/state", json=ack).status_code == 404
    assert agent.post(f"/api/v1/alerts/{ids['js']}/state", json=ack).status_code == 200

    page = agent.get("/problems", params={"lang": "en"})
    assert page.status_code == 200
    assert 'href="/problems/p-mixed"' in page.text and "p-gd" not in page.text
    assert not any(t in page.text for t in gd_texts)
    assert "v10" not in agent.get("/problems/p-mixed").text
    assert 'href="/problems/p-gd"' in admin.get("/problems", params={"lang": "en"}).text


def _surveys(province: str, cities: tuple[str, str], driver: str, seed: int) -> list[Any]:
    """Survey responses whose overall score follows ``driver`` (province-specific)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(80):
        factors = {f: float(rng.integers(1, 11)) for f in ("network", "billing", "service")}
        overall = float(np.clip(round(factors[driver] + rng.normal(0, 0.7)), 0, 10))
        out.append(
            {
                "id": f"s-{province}-{i}",
                "customer_id": f"c-{province}-{i}",
                "touchpoint": "hotline",
                "occurred_at": "2026-10-02T09:00:00+08:00",
                "overall": overall,
                "factors": factors,
                "region": {"province": province, "city": cities[i % 2]},
            }
        )
    return out


def test_satisfaction_follows_the_region_scope(settings: Settings) -> None:
    app = create_app(settings)
    admin = admin_client(app)
    records = _surveys("江苏", ("南京", "苏州"), "network", 1) + _surveys(
        "广东", ("广州", "深圳"), "billing", 2
    )
    assert admin.post("/api/v1/ingest/survey", json=records).json()["stored"] == 160
    js = _client(app, "js.analyst", "analyst", province="江苏")
    gd = _client(app, "gd.analyst", "analyst", province="广东")

    # Each province gets the drivers of its own customers, not the national blend.
    mine = js.get("/api/v1/analysis/drivers").json()
    assert mine["n"] == 80 and mine["drivers"][0]["driver"] == "network"
    assert gd.get("/api/v1/analysis/drivers").json()["drivers"][0]["driver"] == "billing"
    assert admin.get("/api/v1/analysis/drivers").json()["n"] == 160
    segs = js.get("/api/v1/analysis/segments").json()
    assert {r["value"] for r in segs["drill_down"]} == {"南京", "苏州"}
    assert sum(r["n"] for r in segs["drill_down"]) == 80
    assert js.get("/api/v1/analysis/segments", params={"province": "广东"}).status_code == 403
    assert js.get("/api/v1/analysis/churn").status_code == 403

    page = js.get("/satisfaction", params={"lang": "en"})
    assert page.status_code == 200
    assert "苏州" in page.text and "广州" not in page.text and "深圳" not in page.text
    assert "national (unscoped) users" in page.text  # churn explains why it is missing
    assert js.get("/satisfaction", params={"province": "广东"}).status_code == 403
    national = admin.get("/satisfaction", params={"lang": "en"}).text
    assert "广东" in national and "national (unscoped) users" not in national
