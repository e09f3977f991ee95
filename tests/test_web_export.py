"""CSV / Excel downloads: real files parsed back, formula escaping, region scope, audit."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from typing import Any

import pyarrow as pa
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.conftest import admin_client
from tests.test_web_pages import expected_latest, populate_lake, voice_rows
from voxloop.act.access import add_user, create_token
from voxloop.act.models import AuditEntry
from voxloop.api.app import create_app
from voxloop.config import Settings
from voxloop.ingest.schemas import VOICE_SCHEMA
from voxloop.store.service import write_part
from voxloop.web.export import safe_cell
from voxloop.web.queries import VOICE_EXPORT_COLUMNS

EVIL = ['=HYPERLINK("http://x","y")', "+1+2", "-3+4", "@SUM(A1)", "\tTAB", "\rCR"]


def read_csv(response: Any) -> list[dict[str, str]]:
    """Parse a CSV download (checking the UTF-8 byte-order mark) into rows."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    assert response.content.startswith(b"\xef\xbb\xbf")
    return list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"), newline="")))


def read_xlsx(response: Any) -> tuple[list[str], list[list[Any]], Any]:
    """Parse an Excel download with openpyxl; return header, rows and the sheet."""
    from openpyxl import load_workbook

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    sheet = load_workbook(io.BytesIO(response.content)).active
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    return [str(h) for h in rows[0]], rows[1:], sheet


def audits(app: FastAPI) -> list[AuditEntry]:
    """Return the export entries of the audit log, oldest first."""
    with app.state.sessionmaker() as session:
        return list(
            session.scalars(
                select(AuditEntry).where(AuditEntry.action == "export").order_by(AuditEntry.id)
            )
        )


def user_client(app: FastAPI, username: str, **scope: str) -> TestClient:
    """A client signed in as an analyst with the given region scope."""
    with app.state.sessionmaker.begin() as session:
        add_user(session=session, username=username, role="analyst", **scope)
    with app.state.sessionmaker.begin() as session:
        token = create_token(session=session, username=username)
    return TestClient(app, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture(scope="module")
def lake_app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    """An app over the populated test lake, plus voices whose text and city are formulas."""
    settings = Settings(home=tmp_path_factory.mktemp("export") / "home", env="test", secret_key="k")
    populate_lake(settings)
    evil = voice_rows(240 + len(EVIL))[240:]
    for row, text in zip(evil, EVIL, strict=True):
        row["text"] = text
        row["province"], row["city"], row["district"] = "江苏", "南京", "=cmd|' /C calc'!A0"
    write_part(settings, "voices", pa.Table.from_pylist(evil, schema=VOICE_SCHEMA))
    return create_app(settings)


def test_safe_cell_escapes_formula_starts_only() -> None:
    for text in EVIL:
        assert safe_cell(text) == "'" + text
    assert safe_cell("话费多扣了 =1") == "话费多扣了 =1"
    assert safe_cell(None) == ""
    assert safe_cell(-0.8) == -0.8 and safe_cell(True) is True  # numbers stay numbers


def test_voices_csv_has_every_match_escaped_and_bom(lake_app: FastAPI) -> None:
    client = admin_client(lake_app)
    rows = read_csv(client.get("/voices", params={"format": "csv", "per_page": "10"}))
    assert len(rows) == 240 + len(EVIL)  # every matching voice, not one page
    assert list(rows[0]) == list(VOICE_EXPORT_COLUMNS)
    by_id = {r["id"]: r for r in rows}
    assert by_id["v0007"]["text"].startswith("第7条：这个月话费多扣了")  # Chinese intact
    # Newest first, like the page.
    assert [r["id"] for r in rows[:2]] == ["v0245", "v0244"]
    evil = [r for r in rows if int(r["id"][1:]) >= 240]
    assert sorted(r["text"] for r in evil) == sorted("'" + t for t in EVIL)
    assert {r["district"] for r in evil} == {"'=cmd|' /C calc'!A0"}
    # The latest reading is exported with each voice.
    latest = expected_latest()
    assert all(by_id[v]["scenario"] == s for v, s in latest.items())
    assert by_id["v0239"]["scenario"] == ""  # unread


def test_voices_xlsx_is_text_not_formula(lake_app: FastAPI) -> None:
    client = admin_client(lake_app)
    header, rows, sheet = read_xlsx(
        client.get("/voices", params={"format": "xlsx", "province": "江苏", "city": "南京"})
    )
    assert header == list(VOICE_EXPORT_COLUMNS)
    cities = {r[header.index("city")] for r in rows}
    assert cities == {"南京"}
    texts = {r[header.index("text")] for r in rows}
    # XML turns a carriage return into a line feed; the leading quote is what matters.
    assert {"'" + t.replace("\r", "\n") for t in EVIL} <= texts
    # No cell of the file is a formula.
    assert all(c.data_type != "f" for row in sheet.iter_rows() for c in row)
    expected = sum(1 for r in voice_rows(240) if r["city"] == "南京") + len(EVIL)
    assert len(rows) == expected


def test_export_honours_the_filter_bar(lake_app: FastAPI) -> None:
    client = admin_client(lake_app)
    rows = read_csv(
        client.get(
            "/voices",
            params={"format": "csv", "channel": "app", "sentiment": "negative", "from": ""},
        )
    )
    latest_sentiment = {
        str(r["id"]): r["sentiment"]
        for r in read_csv(client.get("/voices", params={"format": "csv"}))
    }
    expected = {
        str(r["id"])
        for r in voice_rows(240)
        if r["channel"] == "app" and latest_sentiment[str(r["id"])] == "negative"
    }
    assert {r["id"] for r in rows} == expected and expected


def test_city_user_cannot_export_another_city(lake_app: FastAPI) -> None:
    nanjing = user_client(lake_app, "nj.analyst", province="江苏", city="南京")
    rows = read_csv(nanjing.get("/voices", params={"format": "csv"}))
    assert rows and {(r["province"], r["city"]) for r in rows} == {("江苏", "南京")}
    refused = nanjing.get("/voices", params={"format": "csv", "city": "苏州"})
    assert refused.status_code == 403
    refused = nanjing.get("/voices", params={"format": "xlsx", "province": "广东"})
    assert refused.status_code == 403
    # Aggregate tables are scoped too.
    regions = read_csv(nanjing.get("/", params={"format": "csv", "table": "regions"}))
    assert {r["district"] for r in regions} == {"玄武区", "鼓楼区", "'=cmd|' /C calc'!A0"}
    assert sum(int(r["voices"]) for r in regions) == len(rows)


def test_each_export_is_audited(lake_app: FastAPI) -> None:
    client = user_client(lake_app, "audit.analyst", province="江苏")
    before = len(audits(lake_app))
    rows = read_csv(client.get("/voices", params={"format": "csv", "channel": "app"}))
    _, xrows, _ = read_xlsx(client.get("/understand", params={"format": "xlsx"}))
    entries = audits(lake_app)[before:]
    assert [e.actor for e in entries] == ["audit.analyst", "audit.analyst"]
    first, second = (json.loads(e.detail) for e in entries)
    assert entries[0].object_id == "voices"
    assert first["rows"] == len(rows) and first["complete"] is True
    assert first["format"] == "csv" and first["filters"]["channel"] == "app"
    assert first["filters"]["province"] == "江苏"  # pinned to the caller's scope
    assert first["scope"] == {"province": "江苏", "city": None}
    assert entries[1].object_id == "understand.scenarios"
    assert second["rows"] == len(xrows) and second["format"] == "xlsx"


def test_overview_tables_download(lake_app: FastAPI) -> None:
    client = admin_client(lake_app)
    scenarios = read_csv(client.get("/", params={"format": "csv", "table": "scenarios"}))
    counts = Counter(expected_latest().values())
    assert {r["scenario"]: int(r["voices"]) for r in scenarios} == dict(counts)
    channels = read_csv(client.get("/", params={"format": "csv", "table": "channels"}))
    assert sum(int(r["voices"]) for r in channels) == 240 + len(EVIL)
    latest = read_csv(client.get("/", params={"format": "csv", "table": "latest"}))
    assert len(latest) == 12
    bad = client.get("/", params={"format": "pdf"})
    assert bad.status_code == 422 and "format" in bad.text
    bad = client.get("/", params={"format": "csv", "table": "nope"})
    assert bad.status_code == 422 and "table" in bad.text


def test_voice_readings_and_act_tables_download(lake_app: FastAPI) -> None:
    client = admin_client(lake_app)
    readings = read_csv(client.get("/voices/v0010", params={"format": "csv"}))
    assert [r["model_version"] for r in readings] == ["m2", "m1"]
    orders = read_csv(client.get("/work-orders", params={"format": "csv"}))
    assert orders == []
    for table in ("compliance", "violations", "commitments"):
        response = client.get("/commitments", params={"format": "xlsx", "table": table})
        header, _, _ = read_xlsx(response)
        assert header[0] in ("rule", "id")
