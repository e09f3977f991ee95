"""Overview and voices pages over a lake written with the real Arrow schemas."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.conftest import admin_client
from voxloop.api.app import create_app
from voxloop.config import Settings
from voxloop.ingest.schemas import QUARANTINE_SCHEMA, VOICE_SCHEMA
from voxloop.store.service import write_part
from voxloop.web.queries import list_voices, overview
from voxloop.web.schemas import Scope, VoiceFilters

#: Readings lake table as agreed between helpers (one row per voice and model version).
READING_SCHEMA = pa.schema(
    [
        pa.field("voice_id", pa.string(), nullable=False),
        pa.field("scenario", pa.string()),
        pa.field("subcategory", pa.string()),
        pa.field("scenario_confidence", pa.float64()),
        pa.field("scenario_source", pa.string()),
        pa.field("intent", pa.string()),
        pa.field("sentiment", pa.string()),
        pa.field("sentiment_score", pa.float64()),
        pa.field("emotion", pa.string()),
        pa.field("urgency", pa.float64()),
        pa.field("escalation_risk", pa.bool_()),
        pa.field("urgency_triggers", pa.list_(pa.string())),
        pa.field("needs_review", pa.bool_()),
        pa.field("model_version", pa.string()),
        pa.field("read_at", pa.timestamp("us", tz="UTC")),
    ]
)

START = datetime(2026, 9, 1, tzinfo=UTC)
CHANNELS = ["hotline_10086", "app", "store", "social", "regulator_12300"]
REGIONS = [
    ("江苏", "南京", "玄武区"),
    ("江苏", "南京", "鼓楼区"),
    ("江苏", "苏州", "姑苏区"),
    ("广东", "广州", "天河区"),
    ("浙江", "杭州", "西湖区"),
    (None, None, None),
]
SCENARIOS = ["BILL", "MNET", "HBB", "PLAN", "USAGE", "MKT", "SVC", "CHNL"]
#: Skewed towards negative, as complaint channels are.
SENTIMENTS = ["negative", "negative", "neutral", "positive", "negative"]
#: Hotline dominates; the regulator channel is rare.
CHANNEL_MIX = [0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 0, 4]
#: Voices 150-189 form a burst (an incident): 20 minutes apart instead of about 1.6 hours.
SURGE = range(150, 190)
UNREAD = 5


def received_at(i: int) -> datetime:
    """Arrival time of voice ``i``."""
    if i < SURGE.start:
        return START + timedelta(hours=i * 1.6)
    burst = START + timedelta(hours=SURGE.start * 1.6)
    if i in SURGE:
        return burst + timedelta(minutes=20 * (i - SURGE.start))
    return burst + timedelta(minutes=20 * len(SURGE), hours=(i - SURGE.stop) * 3.1)


def scenario_of(i: int, shift: int) -> str:
    """Scenario a test reading of voice ``i`` says; ``shift`` gives another model's answer."""
    return SCENARIOS[(i * 3 + shift * 5) % len(SCENARIOS)]


def voice_rows(n: int) -> list[dict[str, object]]:
    """Return ``n`` deterministic voices over 20 days."""
    rows = []
    for i in range(n):
        province, city, district = REGIONS[(i * 7) % 11 % len(REGIONS)]
        pii = i % 7 == 0
        text = f"第{i}条：这个月话费多扣了，信号也差" + ("，回电 <PHONE>" if pii else "")
        rows.append(
            {
                "id": f"v{i:04d}",
                "source": "test",
                "kind": "complaint" if i % 3 else "call_transcript",
                "received_at": received_at(i),
                "occurred_at": None,
                "customer_id": f"c{i % 50}",
                "province": province,
                "city": city,
                "district": district,
                "channel": CHANNELS[CHANNEL_MIX[(i * 5) % len(CHANNEL_MIX)]],
                "language": "zh",
                "text": text,
                "attributes": [("scenario", scenario_of(i, 0))],
                "pii_counts": [("PHONE", 1)] if pii else [],
                "content_hash": f"h{i}",
                "ingested_at": START + timedelta(days=30),
                "batch_id": "b1",
                "source_file": "voices.jsonl",
                "source_row": i,
            }
        )
    return rows


def reading_rows(
    ids: list[str], *, at: datetime, version: str, shift: int = 0
) -> list[dict[str, object]]:
    """Return one reading per voice id; ``shift`` rotates scenarios and sentiments."""
    rows = []
    for j, vid in enumerate(ids):
        scenario = scenario_of(int(vid[1:]), shift)
        i = int(vid[1:]) + shift
        rows.append(
            {
                "voice_id": vid,
                "scenario": scenario,
                "subcategory": "不明扣费" if scenario == "BILL" else None,
                "scenario_confidence": 0.5 + (i % 5) / 10,
                "scenario_source": "model:test" if i % 9 else "uncertain",
                "intent": "complain",
                "sentiment": SENTIMENTS[i % 5],
                "sentiment_score": {"negative": -0.8, "neutral": 0.0, "positive": 0.7}[
                    SENTIMENTS[i % 5]
                ],
                "emotion": {"negative": "anger", "neutral": "neutral", "positive": "joy"}[
                    SENTIMENTS[i % 5]
                ],
                "urgency": (i % 10) / 10,
                "escalation_risk": i % 11 == 0,
                "urgency_triggers": ["12300"] if i % 11 == 0 else [],
                "needs_review": i % 9 == 0,
                "model_version": version,
                "read_at": at + timedelta(seconds=j),
            }
        )
    return rows


def populate_lake(settings: Settings, *, n: int = 240, readings: bool = True) -> None:
    """Write voices (two parts), readings (two versions) and quarantine rows to the lake."""
    rows = voice_rows(n)
    half = n // 2
    write_part(settings, "voices", pa.Table.from_pylist(rows[:half], schema=VOICE_SCHEMA))
    write_part(settings, "voices", pa.Table.from_pylist(rows[half:], schema=VOICE_SCHEMA))
    if readings:
        ids = [str(r["id"]) for r in rows[: n - UNREAD]]  # the newest voices stay unread
        old = reading_rows(ids, at=START + timedelta(days=40), version="m1", shift=1)
        new = reading_rows(ids[::2], at=START + timedelta(days=41), version="m2")
        write_part(settings, "readings", pa.Table.from_pylist(old, schema=READING_SCHEMA))
        write_part(settings, "readings", pa.Table.from_pylist(new, schema=READING_SCHEMA))
    quarantine = [
        {
            "kind": kind,
            "source_file": "voices.jsonl",
            "source_row": k,
            "field": "received_at",
            "reason": f"row {k}: received_at: not a timestamp",
            "raw": "{}",
            "batch_id": "b1",
            "quarantined_at": START + timedelta(days=30),
        }
        for k, kind in enumerate(["voice", "voice", "survey"])
    ]
    write_part(settings, "quarantine", pa.Table.from_pylist(quarantine, schema=QUARANTINE_SCHEMA))


def local_days(n: int = 240) -> int:
    """Number of calendar days (Asia/Shanghai) from the first to the last voice."""
    first, last = received_at(0) + timedelta(hours=8), received_at(n - 1) + timedelta(hours=8)
    return (last.date() - first.date()).days + 1


def expected_latest(n: int = 240) -> dict[str, str]:
    """Scenario of the latest reading per voice, computed independently of DuckDB."""
    ids = [f"v{i:04d}" for i in range(n - UNREAD)]
    latest = {vid: scenario_of(int(vid[1:]), 1) for vid in ids}
    latest.update({vid: scenario_of(int(vid[1:]), 0) for vid in ids[::2]})
    return latest


@pytest.fixture
def client(settings: Settings) -> TestClient:
    """A test client over an empty store."""
    return admin_client(create_app(settings))


@pytest.fixture(scope="module")
def filled_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings over one populated lake shared by the read-only tests of this module."""
    settings = Settings(
        home=tmp_path_factory.mktemp("web") / "home", env="test", secret_key="test-secret-key"
    )
    populate_lake(settings)
    return settings


@pytest.fixture(scope="module")
def filled_app(filled_settings: Settings) -> FastAPI:
    """The application over the populated lake (migrated once)."""
    return create_app(filled_settings)


@pytest.fixture
def filled(filled_app: FastAPI) -> TestClient:
    """A fresh client (no language cookie) over the populated lake."""
    return admin_client(filled_app)


def svg_marks(html: str, cls: str) -> list[str]:
    """Return the opening tags of chart marks with class ``cls``."""
    return re.findall(rf'<(?:circle|rect) class="{cls}"[^>]*>', html)


# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lang", "phrase"), [("zh-CN", "还没有客户声音"), ("en", "No customer voices yet")]
)
def test_overview_empty_store_is_friendly(client: TestClient, lang: str, phrase: str) -> None:
    response = client.get("/", params={"lang": lang})
    assert response.status_code == 200
    assert phrase in response.text
    assert f'<html lang="{lang}">' in response.text
    assert response.cookies.get("lang") == lang


def test_voices_empty_store(client: TestClient) -> None:
    response = client.get("/voices", params={"lang": "en"})
    assert response.status_code == 200
    assert "No voices match" in response.text
    assert 'data-total="0"' in response.text


def test_overview_renders_charts_and_latest_voices_zh(filled: TestClient) -> None:
    html = filled.get("/", params={"lang": "zh-CN"}).text
    assert "各渠道声音量趋势" in html and "各省声音量" in html
    assert 'data-chart="line"' in html and 'data-chart="bar"' in html
    # Daily buckets, 5 channels: one point per (channel, local day), zeros included.
    channel_chart = html[html.index('id="volume"') : html.index('id="regions"')]
    points = svg_marks(channel_chart, "point")
    assert len(points) == 5 * local_days()
    assert sum(float(re.search(r'data-value="([^"]+)"', p)[1]) for p in points) == 240  # type: ignore[index]
    assert 'data-series="10086 热线"' in channel_chart
    # Province bars drill down to the city level.
    assert 'href="/?province=%E6%B1%9F%E8%8B%8F"' in html
    # Latest voices: 12 rows, newest first, masked PII shown as a chip, scenario labels.
    rows = re.findall(r'data-voice-id="(v\d+)"', html)
    assert rows == [f"v{i:04d}" for i in range(239, 227, -1)]
    assert '<span class="pii" title="masked PHONE">PHONE</span>' in html
    assert "服务场景分布" in html and "情感趋势" in html
    assert 'data-kpi="quarantine"' in html
    quarantine = html[html.index('data-kpi="quarantine"') :]
    assert re.search(r'class="kpi-value">3<', quarantine)
    assert "声音 2 · 问卷 1" in quarantine


def test_overview_english(filled: TestClient) -> None:
    response = filled.get("/", params={"lang": "en"})
    html = response.text
    assert "Voice volume by channel" in html and "Voices by province" in html
    assert "10086 hotline" in html and "Scenarios by sentiment" in html
    assert "各省声音量" not in html
    # The cookie keeps the language on the next page without ?lang=.
    assert "Customer voices" in filled.get("/voices").text


def test_overview_aggregates_match_independent_counts(settings: Settings) -> None:
    populate_lake(settings)
    rows = voice_rows(240)
    data = overview(settings=settings, scope=Scope())
    assert data.kpis.voices == 240
    assert data.kpis.quarantined == 3
    assert data.kpis.pii_masked == data.kpis.pii_voices == sum(1 for i in range(240) if i % 7 == 0)
    by_province = Counter(r["province"] for r in rows)
    assert dict(data.by_region) == dict(by_province)
    assert {ch: sum(n for _, n in pts) for ch, pts in data.by_channel.items()} == Counter(
        r["channel"] for r in rows
    )
    latest = expected_latest()
    assert data.kpis.read == len(latest)
    by_scenario = {code: sum(v.values()) for code, v in data.by_scenario.items()}
    assert by_scenario == Counter(latest.values())
    # Drill down: province -> cities, city -> districts.
    cities = overview(settings=settings, scope=Scope(province="江苏"))
    assert cities.region_level == "city"
    assert dict(cities.by_region) == Counter(r["city"] for r in rows if r["province"] == "江苏")
    districts = overview(settings=settings, scope=Scope(province="江苏", city="南京"))
    assert districts.region_level == "district"
    assert dict(districts.by_region) == Counter(r["district"] for r in rows if r["city"] == "南京")
    # A period pill keeps the last N local (Asia/Shanghai) calendar days of the data.
    recent = overview(settings=settings, scope=Scope(days=2))

    def local_day(r: dict[str, object]) -> object:
        return (r["received_at"] + timedelta(hours=8)).date()  # type: ignore[operator]

    last = max(local_day(r) for r in rows)  # type: ignore[type-var]
    kept = [r for r in rows if local_day(r) >= last - timedelta(days=1)]  # type: ignore[operator]
    assert 0 < len(kept) < len(rows)
    assert recent.kpis.voices == len(kept)
    assert recent.period_from == last - timedelta(days=1)  # type: ignore[operator]


def test_overview_drill_down_pages(filled: TestClient) -> None:
    html = filled.get("/", params={"province": "江苏", "lang": "en"}).text
    assert "Voices by city" in html and "南京" in html and "广州" not in html
    html = filled.get("/", params={"province": "江苏", "city": "南京", "lang": "en"}).text
    assert "Voices by district" in html and "玄武区" in html
    assert "/voices?province=" in html  # districts link to the voice list


def test_overview_without_readings(settings: Settings) -> None:
    populate_lake(settings, readings=False)
    html = admin_client(create_app(settings)).get("/", params={"lang": "en"}).text
    assert 'id="no-readings"' in html
    assert 'data-chart="line"' in html
    assert "Scenarios by sentiment" not in html


def test_voices_filters_and_paging(filled: TestClient, filled_settings: Settings) -> None:
    rows = voice_rows(240)
    html = filled.get("/voices", params={"channel": "app", "per_page": "20", "lang": "en"}).text
    expected = [r for r in rows if r["channel"] == "app"]
    assert f'data-total="{len(expected)}"' in html
    assert len(re.findall(r'data-voice-id="', html)) == 20
    page2 = filled.get("/voices", params={"channel": "app", "per_page": "20", "page": "2"}).text
    ids = re.findall(r'data-voice-id="(v\d+)"', page2)
    newest_first = sorted((str(r["id"]) for r in expected), reverse=True)
    assert ids == newest_first[20:40]
    # Text search over the masked text.
    html = filled.get("/voices", params={"q": "第7条"}).text
    assert re.findall(r'data-voice-id="(v\d+)"', html) == ["v0007"]
    # Local dates (Asia/Shanghai): voices of 2026-09-02 local time.
    page = list_voices(
        settings=filled_settings,
        filters=VoiceFilters.model_validate({"from": "2026-09-02", "to": "2026-09-02"}),
    )
    local = [r["received_at"] + timedelta(hours=8) for r in rows]  # type: ignore[operator]
    assert page.total == sum(1 for t in local if t.date().isoformat() == "2026-09-02")


def test_voices_scenario_filter_uses_latest_reading(filled: TestClient) -> None:
    latest = expected_latest()
    for code in ("BILL", "MNET"):
        html = filled.get("/voices", params={"scenario": code, "per_page": "500"}).text
        ids = set(re.findall(r'data-voice-id="(v\d+)"', html))
        assert ids == {vid for vid, s in latest.items() if s == code}
    html = filled.get("/voices", params={"review": "true", "per_page": "500"}).text
    assert "待复核" in html
    assert int(re.search(r'data-total="(\d+)"', html)[1]) > 0  # type: ignore[index]


def test_voices_show_reading_and_confidence(filled: TestClient) -> None:
    html = filled.get("/voices", params={"q": "第10条", "lang": "en"}).text
    # v0010 was read twice; the newer reading (m2, no shift) says SVC with confidence 0.5.
    assert scenario_of(10, 0) == "SVC" and scenario_of(10, 1) != "SVC"
    assert "Service touchpoints" in html and "0.50" in html
    html = filled.get("/voices", params={"q": "第239条", "lang": "en"}).text
    assert "Not read yet" in html


def test_voices_bad_filter_names_the_field(filled: TestClient) -> None:
    response = filled.get("/voices", params={"from": "2026-13-45", "lang": "en"})
    assert response.status_code == 422
    assert "from" in response.text and "invalid filter" in response.text
    response = filled.get("/voices", params={"from": "2026-09-03", "to": "2026-09-01"})
    assert response.status_code == 422
    assert "&#39;from&#39; is after &#39;to&#39;" in response.text
    assert filled.get("/", params={"days": "0"}).status_code == 422


def test_blank_form_fields_mean_no_filter(filled: TestClient) -> None:
    html = filled.get("/voices", params={"from": "", "channel": "", "q": " "}).text
    assert 'data-total="240"' in html


def test_static_assets_are_local(filled: TestClient) -> None:
    html = filled.get("/").text
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html
    css = filled.get("/static/app.css")
    assert css.status_code == 200 and "@media print" in css.text


def test_results_follow_new_lake_parts(settings: Settings) -> None:
    populate_lake(settings)
    assert overview(settings=settings, scope=Scope()).kpis.voices == 240
    extra = voice_rows(241)[240:]
    write_part(settings, "voices", pa.Table.from_pylist(extra, schema=VOICE_SCHEMA))
    data = overview(settings=settings, scope=Scope())
    assert data.kpis.voices == 241
    assert data.latest[0].id == "v0240"
    assert list_voices(settings=settings, filters=VoiceFilters()).total == 241


def test_overview_links_keep_region_and_period(filled: TestClient) -> None:
    html = filled.get("/", params={"province": "江苏", "days": "7", "lang": "en"}).text
    chart = html[html.index('id="scenarios"') : html.index('id="sentiment"')]
    scenario_links = re.findall(r'href="(/voices\?scenario=[^"]+)"', chart)
    assert scenario_links
    assert all("province=%E6%B1%9F%E8%8B%8F" in h and "from=2026-09-1" in h for h in scenario_links)
    follow = filled.get(scenario_links[0].replace("&amp;", "&"))
    assert follow.status_code == 200
    assert 0 < int(re.search(r'data-total="(\d+)"', follow.text)[1]) < 240  # type: ignore[index]


def test_voice_detail_lists_every_reading_newest_first(filled: TestClient) -> None:
    html = filled.get("/voices/v0010", params={"lang": "en"}).text
    versions = re.findall(r'<td class="mono">(m\d)</td>', html)
    assert versions == ["m2", "m1"]
    assert "Current" in html and "Service touchpoints" in html
    assert 'href="/voices/v0010"' in filled.get("/voices", params={"q": "第10条"}).text
    html = filled.get("/voices/v0007", params={"lang": "en"}).text
    assert '<span class="pii">PHONE</span> × 1' in html
    assert "scenario" in html  # the voice's own attributes are listed


def test_voice_detail_unknown_id(filled: TestClient, client: TestClient) -> None:
    response = filled.get("/voices/nope", params={"lang": "en"})
    assert response.status_code == 404 and "Voice not found" in response.text
    assert client.get("/voices/v0001").status_code == 404


def test_overview_unknown_region_says_so(filled: TestClient) -> None:
    response = filled.get("/", params={"province": "西藏", "lang": "en"})
    assert response.status_code == 200
    assert 'id="empty-scope"' in response.text and "No voices in this region" in response.text


def test_user_input_is_escaped(filled: TestClient) -> None:
    evil = '"><script>alert(1)</script>'
    for path, params in (
        ("/voices", {"q": evil, "city": evil}),
        ("/", {"province": evil}),
        (f"/voices/{evil}", {}),
    ):
        html = filled.get(path, params=params).text
        assert "<script>alert(1)</script>" not in html
        assert "&lt;script&gt;" in html or "%3Cscript%3E" in html
