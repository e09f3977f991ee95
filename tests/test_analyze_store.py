"""Analyze over the lake: a small generated operator, its ground truth, the API and page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import admin_client
from voxloop.analyze import service
from voxloop.analyze.evaluation import evaluate_operator
from voxloop.config import Settings
from voxloop.errors import NotFoundError


@pytest.fixture(scope="module")
def operator(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Path]:
    """Generate and ingest a small operator once for this module."""
    generator = pytest.importorskip("voxloop.demo.generator")
    from voxloop.ingest.service import ingest_path

    root = tmp_path_factory.mktemp("analyze_op")
    out = root / "op"
    generator.generate_operator(customers=2500, days=45, seed=3, out_dir=out)
    settings = Settings(home=root / "home", env="test", secret_key="test-secret-key")
    ingest_path(settings=settings, path=out)
    return settings, out / "ground_truth.json"


def test_planted_segment_short_board_and_churn_are_found(
    operator: tuple[Settings, Path],
) -> None:
    settings, truth = operator
    result = evaluate_operator(settings=settings, truth_path=str(truth))
    planted = json.loads(truth.read_text(encoding="utf-8"))
    assert result["top_driver"] == planted["dissatisfied_segment"]["short_board"]
    assert result["short_board_ok"], result["short_boards"]
    assert result["top_rule_precision"] >= 0.8, result["top_rule"]
    assert result["top_rule_recall"] >= 0.8, result["top_rule"]
    assert result["planted_churners"] >= 5
    assert result["planted_churners_in_top_decile"] >= 0.7
    assert result["churn_validation"]["roc_auc"] > 0.75
    timed = result["churn_validation"]["time_based"]
    assert timed["churned_after_cutoff"] > 0 and timed["roc_auc"] > 0.6


def test_store_analyses_shapes(operator: tuple[Settings, Path]) -> None:
    settings, _truth = operator
    drivers = service.drivers_analysis(settings=settings)
    shares = [d["share"] for d in drivers["drivers"]]
    assert shares == sorted(shares, reverse=True)
    assert 0 < drivers["r2_linear"] < 0.95  # pairwise-complete correlations stay sane
    segs = service.segments_analysis(settings=settings, path={"province": "江苏"})
    assert segs["drill_down"] and {r["level"] for r in segs["drill_down"]} == {"city"}
    journeys = service.journeys_analysis(settings=settings, days=30)
    assert journeys["focus_customers"] > 0 and journeys["reference_customers"] > 0
    assert all(s["lift"] > 0 for s in journeys["sequences"])
    assert journeys["timelines"] and journeys["timelines"][0]["items"]
    by_segment = service.journeys_analysis(settings=settings, segment=0)
    assert by_segment["segment"] == segs["rules"][0]["text"]
    assert 0 < by_segment["focus_customers"] < journeys["focus_customers"]
    with pytest.raises(NotFoundError, match="segment rule 99"):
        service.journeys_analysis(settings=settings, segment=99)
    frame = service.churn_frame(settings=settings)
    assert frame["customer_id"].is_unique
    assert not any(c.startswith("event port_out") for c in frame.columns)
    assert not any(c.startswith("event account_closed") for c in frame.columns)
    assert "voices_negative" not in frame.columns  # no readings in the lake yet


def test_churn_features_use_readings_when_present(operator: tuple[Settings, Path]) -> None:
    from datetime import UTC, datetime

    import pyarrow as pa

    from voxloop.store.service import lake_connection, write_part

    settings, _truth = operator
    con = lake_connection(settings, ("voices",))
    voices = con.sql(
        "SELECT id, customer_id FROM voices WHERE customer_id IS NOT NULL ORDER BY id LIMIT 50"
    ).to_arrow_table()
    n = voices.num_rows
    readings = pa.table(
        {
            "voice_id": voices["id"],
            "sentiment": pa.array(["negative"] * n),
            "urgency": pa.array([0.9] * n),
            "escalation_risk": pa.array([True] * n),
            "read_at": pa.array([datetime(2030, 1, 1, tzinfo=UTC)] * n, pa.timestamp("us", "UTC")),
        }
    )
    write_part(settings, "readings", readings)
    frame = service.churn_frame(settings=settings)
    assert {"voices_negative", "urgency_max", "voices_escalation_risk"} <= set(frame.columns)
    assert 0 < frame["voices_negative"].sum() <= n


def test_api_and_page(operator: tuple[Settings, Path]) -> None:

    from voxloop.api.app import create_app

    settings, _truth = operator
    client = admin_client(create_app(settings))
    res = client.get("/api/v1/analysis/drivers")
    assert res.status_code == 200 and res.json()["drivers"]
    res = client.get("/api/v1/analysis/segments", params={"province": "江苏"})
    assert res.status_code == 200 and res.json()["path"] == {"province": "江苏"}
    res = client.get("/api/v1/analysis/journeys", params={"days": 20})
    assert res.status_code == 200 and "sequences" in res.json()
    res = client.get("/api/v1/analysis/journeys", params={"segment": 99})
    assert res.status_code == 404
    res = client.get("/api/v1/analysis/churn", params={"limit": 5})
    assert res.status_code == 200
    body = res.json()
    assert len(body["at_risk"]) == 5 and "oof_risk" not in body
    assert body["at_risk"][0]["reasons"]
    page = client.get("/satisfaction", params={"lang": "en"})
    assert page.status_code == 200
    assert "Key drivers" in page.text and "<svg" in page.text
    assert 'data-short-board="tariff"' in page.text
    assert page.text.count('class="churn-row"') == 20
    zh = client.get("/satisfaction", params={"lang": "zh-CN", "province": "江苏"})
    assert zh.status_code == 200 and "关键驱动因素" in zh.text


def test_empty_lake_is_a_clear_not_found(settings: Settings) -> None:
    with pytest.raises(NotFoundError, match="survey"):
        service.drivers_analysis(settings=settings)
    with pytest.raises(NotFoundError, match="customer"):
        service.churn_analysis(settings=settings)


def test_disk_cache_keeps_the_most_recently_used_results(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The result cache on disk is bounded; a hit counts as a use and survives pruning."""
    import os
    import time

    monkeypatch.setattr(service, "DISK_CACHE_FILES", 3)
    calls: list[int] = []

    def compute(i: int) -> dict[str, int]:
        calls.append(i)
        return {"i": i}

    def run(i: int) -> dict[str, object]:
        return service.cached(
            settings=settings, name="probe", params={"i": i}, compute=lambda: compute(i)
        )

    folder = settings.home / "cache" / "analyze"
    for i in range(3):
        assert run(i) == {"i": i}
    files = sorted(folder.glob("*.json"))
    past = time.time() - 100
    for k, path in enumerate(files):  # distinct, old mtimes: recency is then unambiguous
        os.utime(path, (past + k, past + k))
    service._CACHE.clear()
    assert run(0) == {"i": 0} and calls == [0, 1, 2]  # read from disk, and touched
    for i in (3, 4):
        run(i)
    left = {json.loads(p.read_text())["i"] for p in folder.glob("*.json")}
    assert len(left) == 3 and {0, 3, 4} == left


def _expected_scope(
    settings: Settings,
    *,
    day_from: str,
    day_to: str,
    province: str,
    touchpoint: str | None = None,
) -> tuple[int, float]:
    """Count the responses in scope and their dissatisfied share, straight from the lake."""
    from voxloop.store.service import lake_connection

    con = lake_connection(settings, ("surveys", "customers"))
    # Local days of Asia/Shanghai are UTC + 8 h (no DST), computed here without time zones.
    row = con.execute(
        "WITH c AS (SELECT id, province, row_number() OVER (PARTITION BY id "
        "ORDER BY ingested_at DESC) AS rn FROM customers) "
        "SELECT count(*), avg(CASE WHEN s.overall <= 6 THEN 1.0 ELSE 0.0 END) FROM surveys s "
        "LEFT JOIN c ON s.customer_id = c.id AND c.rn = 1 "
        "WHERE CAST(CAST(s.occurred_at AS TIMESTAMP) + INTERVAL 8 HOUR AS DATE) "
        "BETWEEN CAST(? AS DATE) AND CAST(? AS DATE) "
        "AND coalesce(s.province, c.province) = ? AND s.touchpoint = coalesce(?, s.touchpoint)",
        [day_from, day_to, province, touchpoint],
    ).fetchone()
    assert row is not None
    return int(row[0]), float(row[1] or 0.0)


def test_satisfaction_follows_the_filter_bar(operator: tuple[Settings, Path]) -> None:
    """Dates, region and touchpoint restrict drivers, segments and the churn list."""
    from voxloop.api.app import create_app
    from voxloop.store.service import lake_connection

    settings, _truth = operator
    con = lake_connection(settings, ("surveys",))
    first, last = con.execute(
        "SELECT CAST(min(occurred_at) AS DATE), CAST(max(occurred_at) AS DATE) FROM surveys"
    ).fetchone() or (None, None)
    assert first is not None and last is not None
    day_from = (first + (last - first) / 5).isoformat()
    day_to = (first + 4 * (last - first) / 5).isoformat()
    scope = {"from": day_from, "to": day_to, "province": "江苏"}
    n, _rate = _expected_scope(settings, day_from=day_from, day_to=day_to, province="江苏")
    n_tp, rate_tp = _expected_scope(
        settings, day_from=day_from, day_to=day_to, province="江苏", touchpoint="hotline"
    )
    total = con.execute("SELECT count(*) FROM surveys").fetchone()
    assert total is not None and 30 <= n < total[0] and 0 < n_tp < n  # the filters really cut

    client = admin_client(create_app(settings))
    drivers = client.get("/api/v1/analysis/drivers", params=scope)
    assert drivers.status_code == 200, drivers.text
    body = drivers.json()
    assert body["n"] == n
    assert body["region"] == {"province": "江苏"}
    assert body["period"] == {"from": day_from, "to": day_to}
    segments = client.get("/api/v1/analysis/segments", params={**scope, "touchpoint": "hotline"})
    assert segments.status_code == 200, segments.text
    seg = segments.json()
    assert seg["base_rate"] == pytest.approx(rate_tp)
    assert sum(r["n"] for r in seg["drill_down"]) == n_tp
    assert all(c["column"] != "touchpoint" for r in seg["rules"] for c in r["conditions"])
    assert {r["level"] for r in seg["drill_down"]} <= {"city"}
    # The unfiltered national analysis is another result.
    assert client.get("/api/v1/analysis/drivers").json()["n"] > n

    wrong = client.get("/api/v1/analysis/drivers", params={"from": day_to, "to": day_from})
    assert wrong.status_code == 422 and wrong.json()["loc"] == ["query", "from"]

    page = client.get("/satisfaction", params={**scope, "channel": "app", "lang": "en"})
    assert page.status_code == 200, page.text[:300]
    assert f"n = {n} " in page.text
    assert 'id="ignored-filters"' in page.text and "Channel" in page.text
    ids = [m.split("</code>")[0] for m in page.text.split('<tr class="churn-row"><td><code>')[1:]]
    assert ids, "the churn list of the region is not empty"
    in_region = (
        lake_connection(settings, ("customers",))
        .execute(
            "SELECT count(DISTINCT id) FROM customers WHERE province = '江苏' "
            "AND id IN (SELECT unnest(?))",
            [ids],
        )
        .fetchone()
    )
    assert in_region is not None and in_region[0] == len(ids)
    picked = client.get("/satisfaction", params={**scope, "touchpoint": "hotline"})
    assert picked.status_code == 200
    assert '<option value="hotline" selected>' in picked.text
    bad = client.get("/satisfaction", params={"touchpoint": "moon"})
    assert bad.status_code == 422 and "touchpoint" in bad.text
