"""Monthly report of the demo operator: PDF (typst, CJK font embedded), HTML, API, schedule.

The PDF is checked the way a reader would: ``pdftotext`` must find the Chinese headings
and the key numbers (recounted here straight from the lake and the operational store),
``pdfimages`` the charts and ``pdffonts`` the embedded CJK font.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.conftest import admin_client
from voxloop.act.models import VerificationTask, WorkOrder
from voxloop.config import Settings
from voxloop.errors import UnusableInputError
from voxloop.store.service import make_engine, make_sessionmaker, table_dir
from voxloop.web import report, report_data, report_render

pytestmark = pytest.mark.slow

PERIOD = "2026-10"  # the demo's window is 2026-09-01 .. 2026-10-31 (61 days)
POPPLER = shutil.which("pdftotext") and shutil.which("pdfimages") and shutil.which("pdffonts")


def _has_cjk_font() -> bool:
    try:
        report_render.cjk_font()
    except report_render.MissingFontError:
        return False
    return True


needs_font = pytest.mark.skipif(
    not _has_cjk_font(), reason="no CJK font: install Debian fonts-noto-cjk (`make system-deps`)"
)
needs_poppler = pytest.mark.skipif(
    not POPPLER, reason="needs poppler-utils (pdftotext, pdfimages, pdffonts): `make system-deps`"
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A small demo operator (ingested, understood, detected, analysed, loop closed)."""
    from voxloop.demo.service import run_demo

    # No sentence encoder: the report reads readings, it does not test the encoder.
    settings = Settings(
        home=tmp_path_factory.mktemp("report") / "home",
        env="test",
        secret_key="test-secret-key",
        understand_encoder="local:none",
    )
    run_demo(settings=settings, customers=1000, days=61, seed=3, log=None)
    return settings


def _facts(settings: Settings, period: str, region: str | None = None) -> dict[str, Any]:
    engine = make_engine(settings)
    try:
        with make_sessionmaker(engine)() as session:
            return report_data.gather(
                settings=settings,
                session=session,
                period=report_data.parse_period(period, timezone=settings.timezone),
                region=region,
            )
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def october(demo: Settings) -> dict[str, Any]:
    """The national facts of October 2026."""
    return _facts(demo, PERIOD)


def count_voices(settings: Settings, period: str, province: str | None = None) -> int:
    """Count distinct voices received in a local month, read straight from the Parquet parts."""
    glob = str(table_dir(settings, "voices") / "part-*.parquet")
    sql = (
        "SELECT count(DISTINCT id) FROM read_parquet(?, union_by_name=true) "
        "WHERE strftime(timezone('Asia/Shanghai', received_at), '%Y-%m') = ?"
    )
    params: list[Any] = [glob, period]
    if province:
        sql += " AND province = ?"
        params.append(province)
    row = duckdb.connect().execute(sql, params).fetchone()
    assert row is not None
    return int(row[0])


def text_of(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "r.pdf"
    path.write_bytes(pdf)
    return subprocess.run(
        ["pdftotext", "-enc", "UTF-8", str(path), "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@needs_font
@needs_poppler
def test_pdf_report_has_chinese_headings_key_numbers_charts_and_font(
    demo: Settings, october: dict[str, Any], tmp_path: Path
) -> None:
    voices = count_voices(demo, PERIOD)
    previous = count_voices(demo, "2026-09")
    assert voices > 100 and previous > 100
    assert october["volumes"]["voices"] == voices
    assert october["volumes"]["voices_prev"] == previous

    pdf = report_render.render(october, lang="zh-CN", fmt="pdf")
    assert pdf.startswith(b"%PDF")
    text = text_of(pdf, tmp_path)
    flat = re.sub(r"\s+", "", text)  # table cells and wrapped lines lose their spaces

    for heading in (
        "客户体验月度报告",
        "核心指标",
        "渠道与场景声量",
        "声量突增与根因",
        "主要问题与增长最快的问题",
        "服务承诺履约",
        "满意度驱动因素与短板",
        "不满意人群",
        "流失风险",
        "工单指标",
        "整改验证（修复与复发）",
    ):
        assert heading in text, heading
    # The narrative states the month's count and its change against September.
    change = 100 * (voices - previous) / previous
    direction = "上升" if change > 0 else "下降"
    assert f"共收到客户声音{voices:,}条，环比{direction}{abs(change):.1f}%" in flat

    complaints = october["complaints"]["current"]["complaints"]
    assert complaints > 0 and f"其中投诉{complaints:,}条" in flat
    checked = october["commitments"]["checked"]
    assert checked > 0 and f"本月共检查服务承诺{checked:,}次" in flat

    # The month's work orders, recounted from the operational store.
    engine = make_engine(demo)
    start = report_data.parse_period(PERIOD, timezone=demo.timezone).start()
    end = report_data.parse_period(PERIOD, timezone=demo.timezone).end()
    with make_sessionmaker(engine)() as session:
        opened = session.scalar(
            select(func.count())
            .select_from(WorkOrder)
            .where(WorkOrder.created_at >= start, WorkOrder.created_at < end)
        )
        due = session.scalar(
            select(func.count())
            .select_from(WorkOrder)
            .where(
                WorkOrder.commitment_id.is_not(None),
                WorkOrder.due_at >= start,
                WorkOrder.due_at < end,
            )
        )
    engine.dispose()
    assert opened and f"本月新建工单{opened:,}张" in flat
    # Commitments are measured on journey events and on the work orders due in the month.
    assert due and f"本月到期工单{due:,}张" in flat and "旅程事件R13" in flat

    # The largest problem of the month is named with its count.
    top = october["problems"]["largest"][0]
    assert f"“{top['title']}”" in flat and f"本月{top['voices']:,}条" in flat

    pdf_path = tmp_path / "r.pdf"
    images = subprocess.run(
        ["pdfimages", "-list", str(pdf_path)], capture_output=True, text=True, check=True
    ).stdout
    charts = [line for line in images.splitlines() if re.match(r"\s*\d+\s+\d+\s+image\s", line)]
    drawn = [s for s in report_render.sections(october, "zh-CN") if s.chart is not None]
    assert len(drawn) >= 10 and len(charts) == len(drawn)

    fonts = subprocess.run(
        ["pdffonts", str(pdf_path)], capture_output=True, text=True, check=True
    ).stdout
    cjk = [line for line in fonts.splitlines() if "CJK" in line or "WenQuanYi" in line]
    assert cjk and all(" yes " in line for line in cjk), fonts


@needs_font
def test_html_report_is_self_contained_english_with_svg_charts(october: dict[str, Any]) -> None:
    html = report_render.render(october, lang="en", fmt="html").decode("utf-8")
    assert html.startswith("<!doctype html>") and '<html lang="en">' in html
    for heading in (
        "Customer experience report · October 2026",
        "Headline KPIs",
        "Volume by channel and scenario",
        "Commitment compliance",
        "Work-order KPIs",
        "Verification results (fixed / regressed)",
    ):
        assert heading in html, heading
    voices = october["volumes"]["voices"]
    assert f"received {voices:,} customer voices" in html
    # Inline SVG charts with text drawn as paths; nothing fetched from elsewhere.
    assert html.count("<svg") >= 10 and "<?xml" not in html
    assert not re.search(r"<(script|link|img|iframe)\b", html)
    assert not re.search(r"""(src|href)=["']?https?://""", html)


def test_regional_report_counts_only_its_region(demo: Settings) -> None:
    facts = _facts(demo, PERIOD, region="江苏")
    assert facts["region"] == "江苏"
    assert facts["volumes"]["voices"] == count_voices(demo, PERIOD, province="江苏") > 0
    assert facts["volumes"]["voices"] < count_voices(demo, PERIOD)
    # Customer-level churn stays national: a regional report names no customer.
    assert facts["churn"].get("error") or ("top" not in facts["churn"])
    for rule in facts["commitments"]["rules"]:
        assert rule["checked"] + rule["pending"] > 0
    text = " ".join(p for s in report_render.sections(facts, "zh-CN") for p in s.paragraphs)
    assert "2026年10月江苏共收到客户声音" in text


def test_verification_results_of_november(demo: Settings) -> None:
    # The demo's simulated SLA clock runs into November: callbacks, fixes and the regression.
    facts = _facts(demo, "2026-11")
    engine = make_engine(demo)
    period = report_data.parse_period("2026-11", timezone=demo.timezone)
    with make_sessionmaker(engine)() as session:
        answered = session.scalar(
            select(func.count())
            .select_from(VerificationTask)
            .where(
                VerificationTask.answered_at >= period.start(),
                VerificationTask.answered_at < period.end(),
            )
        )
        regressed = session.scalar(
            select(func.count()).select_from(WorkOrder).where(WorkOrder.regressed.is_(True))
        )
    engine.dispose()
    v = facts["verification"]
    assert answered and v["answers"] == answered
    assert regressed and v["regressed"] == regressed
    assert v["verified"] > 0 and v["satisfied"] + v["unsatisfied"] == answered
    sec = next(s for s in report_render.sections(facts, "en") if s.key == "verification")
    assert f"{answered:,} customers answered" in sec.paragraphs[0]
    assert f"{regressed:,} orders reopened" in sec.paragraphs[0]
    assert any(p.startswith("Regressed: “") for p in sec.paragraphs)


def test_bad_requests_name_the_field(demo: Settings) -> None:
    for fields, word in (
        ({"period": "2026-13"}, "period"),
        ({"period": "October"}, "period"),
        ({"period": PERIOD, "lang": "fr"}, "lang"),
        ({"period": PERIOD, "format": "docx"}, "format"),
        ({"period": PERIOD, "region": "江苏/南京/玄武"}, "region"),
    ):
        with pytest.raises(UnusableInputError, match=word):
            report.validate_request(report.ReportRequest(**fields), settings=demo)


def test_missing_cjk_font_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    report_render.cjk_font.cache_clear()
    monkeypatch.setattr(report_render.shutil, "which", lambda _name: None)
    monkeypatch.setattr(report_render, "CJK_FONT_CANDIDATES", (Path("/nonexistent/x.ttc"),))
    try:
        with pytest.raises(report_render.MissingFontError, match="fonts-noto-cjk"):
            report_render.cjk_font()
    finally:
        report_render.cjk_font.cache_clear()


@needs_font
def test_scheduled_monthly_report_is_rendered_once(demo: Settings) -> None:
    off = demo.model_copy(update={"report_schedule": None})
    assert report.run_scheduled_reports(settings=off, at=datetime(2026, 11, 2, tzinfo=UTC)) == []
    monthly = demo.model_copy(update={"report_schedule": "monthly"})
    # 2026-11-01 02:00 in Shanghai is still 31 October in UTC: the month is the local one.
    at = datetime(2026, 10, 31, 18, 0, tzinfo=UTC)
    created = report.run_scheduled_reports(settings=monthly, at=at)
    assert sorted(e.format for e in created) == ["html", "pdf"]
    assert {(e.period, e.region, e.lang, e.scheduled) for e in created} == {
        (PERIOD, None, "zh-CN", True)
    }
    for entry in created:
        path = report.reports_dir(demo) / entry.file
        assert path.stat().st_size == entry.size > 10_000
    assert (report.reports_dir(demo) / created[0].file).read_bytes()[:4] in (b"%PDF", b"<!do")
    # Later ticks of the month find it stored and render nothing.
    assert report.run_scheduled_reports(settings=monthly, at=at.replace(day=31, hour=23)) == []
    listed = report.list_reports(settings=demo, principal=report_data.region_principal(None))
    assert {e.id for e in created} <= {e.id for e in listed}


def _client_for(app: Any, *, province: str | None) -> TestClient:
    from voxloop.act.access import add_user, create_token

    name = f"analyst-{uuid.uuid4().hex[:8]}"
    with app.state.sessionmaker.begin() as session:
        add_user(session=session, username=name, role="analyst", province=province, actor="test")
    with app.state.sessionmaker.begin() as session:
        token = create_token(session=session, username=name, actor="test")
    return TestClient(app, headers={"Authorization": f"Bearer {token}"})


@needs_font
def test_report_api_and_page(demo: Settings) -> None:
    from voxloop.api.app import create_app
    from voxloop.web.report_views import include_routes

    app = create_app(demo)
    include_routes(app)
    admin = admin_client(app)

    bad = admin.post("/api/v1/reports", json={"period": "2026-13"})
    assert bad.status_code == 422 and "period" in bad.json()["detail"]

    made = admin.post("/api/v1/reports", json={"period": PERIOD, "lang": "en", "format": "html"})
    assert made.status_code == 201, made.text
    entry = made.json()
    assert entry["period"] == PERIOD and entry["format"] == "html" and entry["size"] > 10_000
    listed = admin.get("/api/v1/reports").json()
    assert entry["id"] in {e["id"] for e in listed["items"]}
    got = admin.get(entry["download"])
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/html")
    assert "attachment" in got.headers["content-disposition"]
    assert b"Customer experience report" in got.content and len(got.content) == entry["size"]
    assert admin.get("/api/v1/reports/nope/download").status_code == 404

    # A provincial analyst: reports of another province are refused, national ones hidden.
    local = _client_for(app, province="江苏")
    refused = local.post("/api/v1/reports", json={"period": PERIOD, "region": "广东"})
    assert refused.status_code == 403 and "outside your region" in refused.json()["detail"]
    assert entry["id"] not in {e["id"] for e in local.get("/api/v1/reports").json()["items"]}
    assert local.get(entry["download"]).status_code == 404

    page = admin.get("/reports?lang=zh-CN")
    assert page.status_code == 200 and "月度报告" in page.text
    assert f'data-report-id="{entry["id"]}"' in page.text
    assert f'<option value="{PERIOD}" selected>' in page.text
    assert '<option value="江苏"></option>' in page.text  # region suggestions
    wrong = admin.post("/reports", data={"period": "2026-13", "format": "pdf"})
    assert wrong.status_code == 422 and "period" in wrong.text


def _bucket(local: datetime) -> int:
    """Hour bucket (the detect stage's granularity) of a naive Asia/Shanghai time."""
    from voxloop.detect.series import GRANULARITY_SECONDS, LOCAL_OFFSET_S

    epoch = int(local.replace(tzinfo=UTC).timestamp()) - LOCAL_OFFSET_S
    return (epoch + LOCAL_OFFSET_S) // GRANULARITY_SECONDS["hour"]


def test_surges_of_the_month_with_root_cause_and_typical_case(demo: Settings) -> None:
    # Runs last: it stores two alerts in the demo's operational store.
    from voxloop.detect.alerts import SurgeAlert
    from voxloop.detect.notify import record_alerts

    def surge(values: dict[str, str], start: datetime, actual: float) -> SurgeAlert:
        first = _bucket(start)
        return SurgeAlert(
            root_cause="|".join(f"{k}={v}" for k, v in values.items()),
            values=values,
            share=0.8,
            anchor="total",
            first_bucket=first,
            last_bucket=first + 2,
            actual=actual,
            expected=12.0,
            pvalue=1e-6,
            windows=3,
        )

    october_surge = surge({"province": "江苏", "scenario": "HBB"}, datetime(2026, 10, 12, 9), 960)
    september_surge = surge({"province": "广东"}, datetime(2026, 9, 3, 9), 50)
    engine = make_engine(demo)
    with make_sessionmaker(engine).begin() as session:
        record_alerts(
            session=session,
            alerts=[october_surge, september_surge],
            granularity="hour",
            typical={october_surge.root_cause: [{"voice_id": "v-x", "text": "宽带又断网了"}]},
        )
    engine.dispose()

    facts = _facts(demo, PERIOD)
    causes = [a["root_cause"] for a in facts["surges"]]
    # The October surge, the largest of the month, comes first; September's is left out.
    assert causes[0] == "province=江苏|scenario=HBB" and "province=广东" not in causes
    sec = next(s for s in report_render.sections(facts, "zh-CN") if s.key == "surges")
    text = " ".join(sec.paragraphs)
    assert f"本月检测到 {len(causes)} 次声量突增" in text
    assert "江苏 · 家庭宽带与装维的声量达到 960 条，预期 12.0 条，超出 948.0 条" in text
    assert "“宽带又断网了”" in text
    assert sec.chart is not None and sec.table is not None and len(sec.table.rows) == len(causes)
    # Another province's report does not see the Jiangsu surge.
    seen = _facts(demo, PERIOD, region="广东")["surges"]
    assert not [a for a in seen if a["values"].get("province") == "江苏"]


@needs_font
def test_cli_writes_the_report_and_refuses_a_bad_month(demo: Settings, tmp_path: Path) -> None:
    import json
    import os
    import sys

    env = {
        **os.environ,
        "VOXLOOP_HOME": str(demo.home),
        "VOXLOOP_ENV": "test",
        "VOXLOOP_SECRET_KEY": "test-secret-key",
        "VOXLOOP_UNDERSTAND_ENCODER": "local:none",
    }
    env.pop("VOXLOOP_DATABASE_URL", None)
    cli = [sys.executable, "-c", "from voxloop.cli.main import main; main()", "report"]
    out = tmp_path / "out" / "october.html"
    done = subprocess.run(
        [
            *cli,
            *("--period", PERIOD, "--region", "江苏", "--lang", "en"),
            *("--format", "html", "--store", str(out)),
        ],
        cwd=tmp_path,  # no voxloop.toml from the repository
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    voices = count_voices(demo, PERIOD, province="江苏")
    assert summary == {
        "out": str(out),
        "bytes": out.stat().st_size,
        "period": PERIOD,
        "region": "江苏",
        "voices": voices,
    }
    html = out.read_text(encoding="utf-8")
    assert f"江苏 received {voices:,} customer voices" in html
    stored = report.list_reports(settings=demo, principal=report_data.region_principal("江苏"))
    assert any(e.region == "江苏" and e.created_by == "cli" for e in stored)

    bad = subprocess.run(
        [*cli, "--period", "2026-13", str(tmp_path / "x.pdf")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "period '2026-13'" in bad.stderr
    assert not (tmp_path / "x.pdf").exists()


@needs_font
def test_report_of_an_empty_store_says_there_is_no_data(settings: Settings) -> None:
    from voxloop.store.service import migrate

    migrate(settings)
    facts = _facts(settings, PERIOD, region="江苏/南京")
    assert facts["volumes"]["voices"] == 0 and facts["region"] == "江苏/南京"
    assert report_data.available_periods(settings=settings) == []
    html = report_render.render(facts, lang="en", fmt="html").decode("utf-8")
    assert "There are no customer voices for 江苏 · 南京 in October 2026." in html
    assert "No surge was detected this month." in html
    assert "No data: the lake holds no survey responses" in html


@needs_font
def test_scheduler_tick_renders_the_monthly_report(demo: Settings, tmp_path: Path) -> None:
    import json
    import os
    import sys

    env = {
        **os.environ,
        "VOXLOOP_HOME": str(demo.home),
        "VOXLOOP_ENV": "test",
        "VOXLOOP_SECRET_KEY": "test-secret-key",
        "VOXLOOP_UNDERSTAND_ENCODER": "local:none",
        "VOXLOOP_REPORT_SCHEDULE": "monthly",
    }
    env.pop("VOXLOOP_DATABASE_URL", None)
    cli = [sys.executable, "-c", "from voxloop.cli.main import main; main()", "act", "tick"]

    def tick() -> dict[str, Any]:
        # The first tick of December renders November, the month the demo's callbacks land in.
        done = subprocess.run(
            [*cli, "--at", "2026-12-01T09:00:00+08:00"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr
        out: dict[str, Any] = json.loads(done.stdout)
        return out

    first = tick()
    assert "sla" in first and len(first["reports"]) == 2, first
    listed = report.list_reports(settings=demo, principal=report_data.region_principal(None))
    november = [e for e in listed if e.id in first["reports"]]
    assert {(e.period, e.scheduled) for e in november} == {("2026-11", True)}
    assert tick()["reports"] == []  # a later tick of the month renders nothing again
