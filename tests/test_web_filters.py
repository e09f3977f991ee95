"""The filter bar: on every page, pre-filled from the URL, honoured, region-scoped."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.requests import Request

from tests.conftest import admin_client
from tests.test_web_pages import (
    SENTIMENTS,
    expected_latest,
    populate_lake,
    voice_rows,
)
from voxloop.act.access import Principal, add_user, create_token
from voxloop.api.app import create_app
from voxloop.config import Settings
from voxloop.errors import PermissionDeniedError, UnusableInputError
from voxloop.web.queries import overview, readings_summary
from voxloop.web.schemas import PageFilters, Scope, VoiceFilters
from voxloop.web.service import request_filters

PAGES = ["/", "/voices", "/voices/v0010", "/understand", "/work-orders", "/commitments"]
OTHER_PAGES = ["/problems", "/satisfaction"]


def latest_sentiment() -> dict[str, str]:
    """Sentiment of each voice's latest reading, computed without DuckDB."""
    ids = [f"v{i:04d}" for i in range(235)]
    out = {vid: SENTIMENTS[(int(vid[1:]) + 1) % 5] for vid in ids}
    out.update({vid: SENTIMENTS[int(vid[1:]) % 5] for vid in ids[::2]})
    return out


def local_day(row: dict[str, object]) -> str:
    """Local (Asia/Shanghai) calendar day of a test voice."""
    return (row["received_at"] + timedelta(hours=8)).date().isoformat()  # type: ignore[operator]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    """An app over the populated test lake."""
    settings = Settings(
        home=tmp_path_factory.mktemp("filters") / "home", env="test", secret_key="k"
    )
    populate_lake(settings)
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> TestClient:
    """An admin client."""
    return admin_client(app)


def scoped_client(app: FastAPI, username: str, **scope: str) -> TestClient:
    """A client signed in as an analyst with a region scope."""
    with app.state.sessionmaker.begin() as session:
        add_user(session=session, username=username, role="analyst", **scope)
    with app.state.sessionmaker.begin() as session:
        token = create_token(session=session, username=username)
    return TestClient(app, headers={"Authorization": f"Bearer {token}"})


def bar_of(html: str) -> str:
    """Return the filter bar's form markup (exactly one per page)."""
    forms = re.findall(r'<form class="filters filter-bar".*?</form>', html, flags=re.S)
    assert len(forms) == 1, f"expected one filter bar, found {len(forms)}"
    return forms[0]


def selected(bar: str, name: str) -> list[str]:
    """Return the selected option values of the bar's ``name`` select."""
    select = re.search(rf'<select[^>]*name="{name}".*?</select>', bar, flags=re.S)
    assert select is not None
    return [unescape(v) for v in re.findall(r'<option value="([^"]*)" selected>', select.group(0))]


def options(bar: str, name: str) -> list[str]:
    """Return the option values of the bar's ``name`` select."""
    select = re.search(rf'<select[^>]*name="{name}".*?</select>', bar, flags=re.S)
    assert select is not None
    return [unescape(v) for v in re.findall(r'<option value="([^"]*)"', select.group(0))]


@pytest.mark.parametrize("path", PAGES + OTHER_PAGES)
def test_every_page_has_one_bar_prefilled_from_the_url(client: TestClient, path: str) -> None:
    params = {
        "from": "2026-09-02",
        "to": "2026-09-09",
        "province": "江苏",
        "city": "南京",
        "channel": "app",
        "sentiment": "negative",
        "lang": "en",
    }
    response = client.get(path, params=params)
    assert response.status_code in (200, 404), response.text
    bar = bar_of(response.text)
    assert 'type="date" name="from" value="2026-09-02"' in bar
    assert 'type="date" name="to" value="2026-09-09"' in bar
    assert selected(bar, "province") == ["江苏"]
    assert selected(bar, "city") == ["南京"]
    assert set(options(bar, "district")) == {"", "玄武区", "鼓楼区"}
    assert selected(bar, "channel") == ["app"]
    assert selected(bar, "sentiment") == ["negative"]
    # Submitting keeps the page (a voice's page sends the filters to the voice list).
    action = re.search(r'action="([^"]*)"', bar)
    assert action is not None
    assert action.group(1) == ("/voices" if path.startswith("/voices/") else path)
    assert "/static/filters.js" in response.text


def test_bar_carries_the_page_own_parameters(client: TestClient) -> None:
    bar = bar_of(client.get("/problems", params={"state": "open", "page": "3"}).text)
    assert '<input type="hidden" name="state" value="open">' in bar
    assert 'name="page"' not in bar  # a new filter starts from the first page
    bar = bar_of(client.get("/voices", params={"q": "话费", "per_page": "20"}).text)
    assert 'id="f-q"' in bar and 'value="话费"' in bar  # the voices page adds its fields
    assert '<input type="hidden" name="per_page" value="20">' in bar
    assert 'type="hidden" name="q"' not in bar


def test_login_page_has_no_bar(app: FastAPI) -> None:
    html = TestClient(app).get("/login").text
    assert "filter-bar" not in html


def test_overview_honours_every_bar_filter(app: FastAPI) -> None:
    settings = app.state.settings
    rows = voice_rows(240)
    sentiment = latest_sentiment()
    latest = expected_latest()

    def voices(**kw: str) -> int:
        scope = Scope.model_validate(kw)
        return overview(settings=settings, scope=scope).kpis.voices

    assert voices(channel="app") == sum(1 for r in rows if r["channel"] == "app")
    assert voices(**{"from": "2026-09-03", "to": "2026-09-05"}) == sum(
        1 for r in rows if "2026-09-03" <= local_day(r) <= "2026-09-05"
    )
    assert voices(sentiment="negative") == sum(1 for s in sentiment.values() if s == "negative")
    assert voices(scenario="BILL", province="江苏") == sum(
        1 for r in rows if r["province"] == "江苏" and latest.get(str(r["id"])) == "BILL"
    )
    data = overview(settings=settings, scope=Scope(sentiment="positive"))
    assert set(data.sentiment_trend) == {"positive"}


def test_overview_links_keep_the_bar_filters(client: TestClient) -> None:
    html = client.get("/", params={"channel": "app", "lang": "en"}).text
    region_links = re.findall(r'href="(/\?[^"]*province=[^"]*)"', html)
    assert region_links and all("channel=app" in h for h in region_links)


def test_readings_page_follows_filters_and_scope(app: FastAPI, client: TestClient) -> None:
    settings = app.state.settings
    rows = voice_rows(240)
    read = set(expected_latest())
    in_js = {str(r["id"]) for r in rows if r["province"] == "江苏"} & read
    summary = readings_summary(settings=settings, filters=PageFilters(province="江苏"))
    assert summary["total"] == len(in_js)
    html = client.get("/understand", params={"province": "江苏", "lang": "en"}).text
    assert f"<strong>{len(in_js)}</strong>" in html
    gd = scoped_client(app, "gd.reader", province="广东")
    html = gd.get("/understand", params={"lang": "en"}).text
    in_gd = {str(r["id"]) for r in rows if r["province"] == "广东"} & read
    assert f"<strong>{len(in_gd)}</strong>" in html
    assert gd.get("/understand", params={"province": "江苏"}).status_code == 403
    bad = client.get("/understand", params={"to": "yesterday"})
    assert bad.status_code == 422 and "to" in bad.text


def test_scoped_user_sees_only_its_region_in_the_bar(app: FastAPI) -> None:
    nanjing = scoped_client(app, "nj.viewer", province="江苏", city="南京")
    bar = bar_of(nanjing.get("/voices").text)
    assert options(bar, "province") == ["江苏"]
    assert options(bar, "city") == ["南京"]
    assert set(options(bar, "district")) == {"", "玄武区", "鼓楼区"}
    assert nanjing.get("/filters/regions", params={"province": "广东"}).json() == {
        "cities": [],
        "districts": [],
    }
    assert nanjing.get("/filters/regions", params={"province": "江苏"}).json()["cities"] == ["南京"]


def test_region_cascade_endpoint(client: TestClient, app: FastAPI) -> None:
    cities = client.get("/filters/regions", params={"province": "江苏"}).json()
    assert cities == {"cities": ["南京", "苏州"], "districts": []}
    districts = client.get("/filters/regions", params={"province": "江苏", "city": "南京"})
    assert districts.json()["districts"] == ["玄武区", "鼓楼区"]
    assert TestClient(app).get("/filters/regions", follow_redirects=False).status_code == 303


def test_work_orders_page_honours_the_bar(app: FastAPI, client: TestClient) -> None:
    for i, (province, city, scenario) in enumerate(
        [("江苏", "南京", "BILL"), ("江苏", "苏州", "MNET"), ("广东", "广州", "BILL")]
    ):
        created = client.post(
            "/api/v1/work-orders",
            json={
                "title": f"order {i}",
                "province": province,
                "city": city,
                "scenario": scenario,
                "channel": "app",
            },
        )
        assert created.status_code == 201, created.text
    html = client.get("/work-orders", params={"province": "江苏", "scenario": "BILL"}).text
    assert html.count('class="order"') == 1 and "order 0" in html
    html = client.get("/work-orders", params={"from": "2000-01-01", "to": "2000-01-02"}).text
    assert html.count('class="order"') == 0
    html = client.get("/work-orders").text
    assert html.count('class="order"') == 3
    bad = client.get("/work-orders", params={"from": "2026-02-30"})
    assert bad.status_code == 422 and "from" in bad.text


def _request(query: str) -> Request:
    return Request({"type": "http", "query_string": query.encode(), "headers": []})


def test_request_filters_is_reusable() -> None:
    agent = Principal(user_id=1, username="a", role="agent", province="江苏")
    filters = request_filters(_request("from=2026-09-01&sentiment=negative&city="), agent)
    assert filters.province == "江苏" and filters.city is None
    assert filters.sentiment == "negative" and str(filters.date_from) == "2026-09-01"
    voices = request_filters(_request("q=abc&page=2"), None, VoiceFilters)
    assert voices.q == "abc" and voices.page == 2
    with pytest.raises(PermissionDeniedError, match="province"):
        request_filters(_request("province=%E5%B9%BF%E4%B8%9C"), agent)
    with pytest.raises(UnusableInputError, match="sentiment"):
        request_filters(_request("sentiment=furious"), None)


def test_short_board_scatter_labels_do_not_overlap() -> None:
    """Issue 13: labels overlapped on the short-board (IPA) scatter when points cluster."""
    import xml.etree.ElementTree as ET

    from voxloop.web.charts import _text_width, scatter_quadrant

    points = [(f"因素{i} factor", 0.50 + 0.01 * (i % 4), 6.0 + 0.05 * (i // 4)) for i in range(16)]
    points.append(("outlier", 0.95, 9.0))  # squeezes the cluster into a corner
    svg = str(
        scatter_quadrant(
            points,
            x_label="importance",
            y_label="performance",
            x_split=0.5,
            y_split=6.2,
            title="IPA",
            quadrant_labels=("keep up", "strength", "low priority", "fix first"),
        )
    )
    ns = "{http://www.w3.org/2000/svg}"
    root = ET.fromstring(svg)
    _, _, width, height = (float(v) for v in (root.get("viewBox") or "").split())
    boxes = []
    for text in root.iter(f"{ns}text"):
        if text.get("class") not in ("point-label", "quadrant-label"):
            continue
        x, y, w = (
            float(text.get("x") or 0),
            float(text.get("y") or 0),
            _text_width(text.text or "", 11),
        )
        x0 = x if text.get("text-anchor") == "start" else x - w
        boxes.append((x0, y - 10, x0 + w, y + 2))
    labels = [t for t in root.iter(f"{ns}text") if t.get("class") == "point-label"]
    assert len(labels) >= 4  # most clustered points still get a label
    for i, a in enumerate(boxes):
        assert a[0] >= 0 and a[2] <= width and a[1] >= 0 and a[3] <= height
        for b in boxes[i + 1 :]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)
    # Every point keeps its mark and tooltip, labelled or not.
    circles = [c for c in root.iter(f"{ns}circle") if c.get("class") == "point"]
    assert len(circles) == 17
    # The case is a real one: labels right of each point (the old placement) collide.
    naive = []
    for c in circles:
        x0 = float(c.get("cx") or 0) + float(c.get("r") or 0) + 3
        y = float(c.get("cy") or 0) + 4
        naive.append((x0, y - 10, x0 + _text_width(c.get("data-label") or "", 11), y + 2))
    assert any(
        a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
        for i, a in enumerate(naive)
        for b in naive[i + 1 :]
    )


def test_rollups_follow_new_parts_and_rereads(tmp_path: Path) -> None:
    """Phase 2: the incrementally maintained rollup equals a full scan after every batch."""
    import duckdb
    import pyarrow as pa

    from tests.test_web_pages import READING_SCHEMA, START, reading_rows
    from voxloop.ingest.schemas import VOICE_SCHEMA
    from voxloop.store.rollups import rollup_is_current, rollup_sql, update_rollups
    from voxloop.store.service import lake_connection, write_part

    settings = Settings(home=tmp_path / "home", env="test", secret_key="k")
    populate_lake(settings)

    def scanned() -> set[tuple[object, ...]]:
        con = lake_connection(settings, ("voices", "readings"))
        rows = con.execute(
            "WITH l AS (SELECT voice_id, arg_max(struct_pack(sc := scenario, se := sentiment), "
            "read_at) AS x FROM readings GROUP BY voice_id) "
            "SELECT CAST(timezone('Asia/Shanghai', v.received_at) AS DATE), v.province, v.city, "
            "v.district, v.channel, l.x.sc, l.x.se, count(*) FROM voices v "
            "LEFT JOIN l ON l.voice_id = v.id GROUP BY ALL"
        ).fetchall()
        con.close()
        return {tuple(r) for r in rows}

    def rolled() -> set[tuple[object, ...]]:
        con = duckdb.connect()
        rows = con.execute(
            f"SELECT day, province, city, district, channel, scenario, sentiment, n "
            f"FROM ({rollup_sql(settings)})"
        ).fetchall()
        con.close()
        return {tuple(r) for r in rows}

    first = update_rollups(settings=settings)
    assert first["voice_parts"] == 2 and first["reading_parts"] == 2 and first["rows"] > 0
    assert rollup_is_current(settings=settings) and rolled() == scanned()
    assert update_rollups(settings=settings)["rows"] == 0  # nothing new: nothing folded
    # A later batch: new voices, and old voices read again by a newer model.
    extra = voice_rows(250)[240:]
    write_part(settings, "voices", pa.Table.from_pylist(extra, schema=VOICE_SCHEMA))
    assert not rollup_is_current(settings=settings)
    again = reading_rows(
        [f"v{i:04d}" for i in range(0, 250, 3)],
        at=START + timedelta(days=50),
        version="m3",
        shift=2,
    )
    write_part(settings, "readings", pa.Table.from_pylist(again, schema=READING_SCHEMA))
    second = update_rollups(settings=settings)
    assert second["voice_parts"] == 1 and second["reading_parts"] == 1
    assert rolled() == scanned()
    assert sum(r[-1] for r in rolled()) == 250  # type: ignore[misc]


ROLLUP_SCOPES = [
    {},
    {"province": "江苏"},
    {"province": "江苏", "city": "南京"},
    {"channel": "app"},
    {"scenario": "BILL"},
    {"sentiment": "negative", "from": "2026-09-03", "to": "2026-09-15"},
    {"from": "2026-09-05", "province": "广东", "scenario": "MNET"},
    {"from": "2026-09-10", "to": "2026-09-10"},  # one day: hourly buckets, the scan answers
    {"province": "西藏"},
    {"days": 7, "province": "江苏"},  # a period pill: the rollup answers it, as the scan does
]


def test_pages_read_from_the_rollup_exactly(tmp_path: Path) -> None:
    """Phase 2: overview and voices list from the rollup equal the full scans."""
    from dataclasses import asdict

    from voxloop.store.rollups import update_rollups
    from voxloop.web.queries import _rollup_usable, clear_cache, list_voices

    settings = Settings(home=tmp_path / "home", env="test", secret_key="k")
    populate_lake(settings)

    def snapshot() -> list[object]:
        out: list[object] = []
        for params in ROLLUP_SCOPES:
            data = asdict(overview(settings=settings, scope=Scope.model_validate(params)))
            for key in ("first_at", "last_at"):  # the rollup knows days, not instants
                value = data["kpis"][key]
                data["kpis"][key] = value.date() if value else None
            out.append(data)
            for page, per_page in ((1, 50), (2, 7), (9, 5)):
                filters = VoiceFilters.model_validate(
                    {**params, "page": page, "per_page": per_page}
                )
                out.append(asdict(list_voices(settings=settings, filters=filters)))
        return out

    from voxloop.web.queries import facets

    def options() -> list[dict[str, Any]]:
        return [
            asdict(facets(settings=settings, province=p, city=c))
            for p, c in ((None, None), ("江苏", None), ("江苏", "南京"))
        ]

    scanned = snapshot()
    scanned_options = options()
    assert update_rollups(settings=settings)["rows"] > 0
    clear_cache()
    assert _rollup_usable(settings, Scope())
    rolled = snapshot()
    # Filter bar and kind options from the rollup: the same, except that scenarios are
    # those of the latest readings (a scenario only an older model said matches nothing).
    rolled_options = options()
    for a, b in zip(scanned_options, rolled_options, strict=True):
        assert {**a, "scenarios": None} == {**b, "scenarios": None}
        assert set(b["scenarios"]) == set(expected_latest().values())
    for params, a, b in zip(
        [p for p in ROLLUP_SCOPES for _ in range(4)], scanned, rolled, strict=True
    ):
        assert a == b, params


def test_problems_follow_channel_sentiment_and_district(app: FastAPI) -> None:
    """Problems mix channels and sentiments: the bar keeps those with a matching voice."""
    from datetime import UTC, datetime

    from voxloop.detect.models import Problem, ProblemMember
    from voxloop.web.service import problems_in_bar

    settings = app.state.settings
    rows = voice_rows(240)
    sentiment = latest_sentiment()
    app_ids = [str(r["id"]) for r in rows if r["channel"] == "app"][:6]
    other_ids = [str(r["id"]) for r in rows if r["channel"] != "app"][:6]
    now = datetime.now(UTC)
    with app.state.sessionmaker.begin() as session:
        for pid, ids in (("pf-app", app_ids), ("pf-other", other_ids)):
            session.add(
                Problem(
                    id=pid,
                    title=pid,
                    config_version="t",
                    n_voices=len(ids),
                    first_seen=now,
                    last_seen=now,
                )
            )
            session.add_all(ProblemMember(voice_id=v, problem_id=pid) for v in ids)
    admin = Principal(user_id=None, username="admin", role="admin")
    with app.state.sessionmaker() as session:
        problems = [session.get(Problem, "pf-app"), session.get(Problem, "pf-other")]

        def kept(query: str) -> list[str]:
            found = problems_in_bar(
                _request(query), admin, problems, settings=settings, session=session
            )
            return [p.id for p in found]

        assert kept("") == ["pf-app", "pf-other"]  # no voice-level filter: unchanged
        assert kept("channel=app") == ["pf-app"]
        assert kept("channel=no-such-channel") == []
        for mood in ("negative", "positive"):
            expected = [
                pid
                for pid, ids in (("pf-app", app_ids), ("pf-other", other_ids))
                if any(sentiment.get(v) == mood for v in ids)
            ]
            assert kept(f"sentiment={mood}") == expected
        district = next(str(r["district"]) for r in rows if str(r["id"]) == other_ids[0])
        assert "pf-other" in kept(urlencode({"district": district}))
        # Every filter applies to the same voice: an app voice on another channel's day.
        assert kept("channel=app&from=2000-01-01&to=2000-01-02") == []


def test_chinese_problem_titles_get_an_english_heading(app: FastAPI, client: TestClient) -> None:
    """English pages name a Chinese-titled problem from the taxonomy, beside the original."""
    from datetime import UTC, datetime

    from voxloop.detect.models import Problem
    from voxloop.web.service import problem_label, problem_title_en

    assert (
        problem_title_en("这个月话费多扣了二十元", scenario="BILL", keywords=["话费", "扣费"])
        == "Tariff and charges: Unexplained charge"
    )
    assert problem_title_en("App logs me out", scenario="BILL", keywords=[]) is None
    assert problem_title_en("信号太差", scenario=None, keywords=[]) is None
    view = {"title": "这个月话费多扣了二十元", "scenario": "BILL", "keywords": ["话费"]}
    assert problem_label(view, "zh-CN") == "这个月话费多扣了二十元"
    assert problem_label(view, "en").startswith("Tariff and charges")
    assert problem_label(view, "en").endswith("(这个月话费多扣了二十元)")
    now = datetime.now(UTC)
    with app.state.sessionmaker.begin() as session:
        session.add(
            Problem(
                id="pt-zh",
                title="这个月话费多扣了二十元",
                keywords_json='["话费", "扣费"]',
                scenario="BILL",
                config_version="t",
                n_voices=3,
                first_seen=now,
                last_seen=now,
            )
        )
    english = client.get("/problems", params={"lang": "en"}).text
    assert "Tariff and charges: Unexplained charge" in english
    assert "这个月话费多扣了二十元" in english  # the original stays, marked as such
    detail = client.get("/problems/pt-zh", params={"lang": "en"}).text
    assert 'id="problem-title">Tariff and charges: Unexplained charge</h1>' in detail
    assert 'id="problem-title-original"' in detail
    chinese = client.get("/problems/pt-zh", params={"lang": "zh-CN"}).text
    assert 'id="problem-title">这个月话费多扣了二十元</h1>' in chinese
    assert "problem-title-original" not in chinese


#: One value per bar field that keeps some test voices and drops others.
BAR_VALUES: dict[str, dict[str, str]] = {
    "from": {"from": "2026-09-05"},
    "to": {"to": "2026-09-08"},
    "province": {"province": "江苏"},
    "city": {"province": "江苏", "city": "南京"},
    "district": {"province": "江苏", "city": "南京", "district": "玄武区"},
    "channel": {"channel": "app"},
    "scenario": {"scenario": "BILL"},
    "sentiment": {"sentiment": "negative"},
}


def _content(client: TestClient, path: str, params: dict[str, str]) -> str:
    """Return a page's HTML without the bar and links (which echo the URL by design)."""
    response = client.get(path, params={**params, "lang": "en"})
    assert response.status_code == 200, (path, params, response.text[:300])
    html = re.sub(r'<form class="filters filter-bar".*?</form>', "", response.text, flags=re.S)
    return re.sub(r'(href|value)="[^"]*"', "", html)


@pytest.mark.parametrize("path", ["/", "/voices", "/understand"])
@pytest.mark.parametrize("field", list(BAR_VALUES))
def test_every_bar_field_changes_the_page(client: TestClient, path: str, field: str) -> None:
    """Each field of the bar, alone, changes what a page over voices shows."""
    assert _content(client, path, BAR_VALUES[field]) != _content(client, path, {})
