"""Ingestion that loses nothing: real files, broken files, formats, dedup, identities."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT, admin_client, shared_file
from voxloop.config import Settings
from voxloop.errors import NotFoundError, PermissionDeniedError, UnusableInputError
from voxloop.ingest.readers import detect_encoding
from voxloop.ingest.schemas import LAKE_TABLES, RecordKind
from voxloop.ingest.service import (
    access_log,
    ingest_file,
    ingest_path,
    ingest_records,
    list_quarantine,
    pseudonymise,
    query_voices,
    resolve_contact,
)
from voxloop.store.service import lake_connection

DATA = Path(__file__).resolve().parent / "data"
MAPPINGS = ROOT / "examples" / "mappings"


def _lake(settings: Settings, sql: str) -> list[tuple[object, ...]]:
    con = lake_connection(settings)
    try:
        return list(con.execute(sql).fetchall())
    finally:
        con.close()


def _balanced(result) -> bool:  # type: ignore[no-untyped-def]
    return result.stored + result.quarantined + result.duplicates == result.read


def _voice(i: int, **over: object) -> dict[str, object]:
    rec: dict[str, object] = {
        "id": f"p{i}",
        "source": "push",
        "kind": "complaint",
        "received_at": f"2026-09-0{1 + i % 9}T10:{i % 60:02d}:00+08:00",
        "customer_id": f"1390000{i:04d}",
        "province": "江苏",
        "city": "南京",
        "channel": "app",
        "text": f"第{i}条：宽带又断了",
        "attributes": {"scenario": "HBB"},
    }
    rec.update(over)
    return rec


def test_pseudonymise_follows_the_contract():
    ids = pa.array(["13800000001", None, "abc"])
    out = pseudonymise(key="s3cret", ids=ids).to_pylist()
    expected = "c" + hashlib.sha256(b"s3cret|13800000001").hexdigest()[:24]
    assert out[0] == expected
    assert out[1] is None
    assert out[2] == "c" + hashlib.sha256(b"s3cret|abc").hexdigest()[:24]


def test_broken_file_every_row_accounted_with_reasons(settings):
    result = ingest_file(settings=settings, path=DATA / "voices_broken.csv", kind="voice")
    assert (result.read, result.stored, result.quarantined, result.duplicates) == (15, 5, 8, 2)
    assert _balanced(result)
    total, rows = list_quarantine(settings=settings)
    assert total == 8
    by_row = {r["source_row"]: r for r in rows}
    assert set(by_row) == {4, 5, 6, 7, 8, 11, 13, 16}
    assert by_row[4]["field"] == "received_at" and "not a timestamp" in by_row[4]["reason"]
    assert by_row[5]["field"] == "id" and "missing" in by_row[5]["reason"]
    assert by_row[6]["field"] == "text" and "not valid utf-8" in by_row[6]["reason"]
    assert "expected 10 fields, found 3" in by_row[7]["reason"]
    assert "expected 10 fields, found 11" in by_row[8]["reason"]
    assert by_row[11]["field"] == "kind" and '"bogus"' in by_row[11]["reason"]
    assert by_row[13]["field"] == "text"
    assert "out of range" in by_row[16]["reason"]
    for r in rows:
        assert r["batch_id"] == result.batch_id
        assert r["source_file"].endswith("voices_broken.csv")
        assert r["raw"]
        # Real customer ids never reach the lake, not even through the quarantine.
        assert "13800000003" not in r["raw"]
    stored = dict(_lake(settings, "SELECT id, channel FROM voices"))
    assert stored == {
        "v1": "hotline_10086",
        "v2": "app",
        "v11": "other",
        "v13": "store",
        "v14": "web",
    }
    text, pii, attrs, row = _lake(
        settings, "SELECT text, pii_counts, attributes, source_row FROM voices WHERE id = 'v1'"
    )[0]
    assert "13812345678" not in text and "<PHONE>" in text
    assert pii == {"PHONE": 1}
    assert attrs == {"scenario": "BILL"}
    assert row == 2
    (multi,) = _lake(settings, "SELECT text FROM voices WHERE id = 'v14'")[0]
    assert multi == "第一行\n第二行, 带逗号"
    (raw_channel,) = _lake(settings, "SELECT attributes['channel_raw'] FROM voices WHERE id='v11'")[
        0
    ]
    assert raw_channel == "carrier pigeon"


def test_small_batches_give_the_same_outcome_and_row_numbers(tmp_path):
    settings = Settings(home=tmp_path / "h", env="test", secret_key="k", batch_size=2)
    result = ingest_file(settings=settings, path=DATA / "voices_broken.csv", kind="voice")
    assert (result.read, result.stored, result.quarantined, result.duplicates) == (15, 5, 8, 2)
    rows = dict(_lake(settings, "SELECT id, source_row FROM voices"))
    assert rows == {"v1": 2, "v2": 3, "v11": 12, "v13": 14, "v14": 15}
    _, q = list_quarantine(settings=settings)
    assert sorted(r["source_row"] for r in q) == [4, 5, 6, 7, 8, 11, 13, 16]


def test_reingest_is_idempotent(settings):
    first = ingest_file(settings=settings, path=DATA / "voices_broken.csv", kind="voice")
    second = ingest_file(settings=settings, path=DATA / "voices_broken.csv", kind="voice")
    assert first.stored == 5
    assert second.stored == 0
    assert second.duplicates == 7 and second.quarantined == 8
    assert _lake(settings, "SELECT count(*), count(DISTINCT id) FROM voices") == [(5, 5)]


def test_gbk_csv_is_detected_and_decoded(settings):
    assert detect_encoding((DATA / "voices_gbk.csv").read_bytes()) == "gb18030"
    result = ingest_file(settings=settings, path=DATA / "voices_gbk.csv", kind="voice")
    assert (result.read, result.stored) == (3, 3)
    texts = dict(_lake(settings, "SELECT id, text FROM voices"))
    assert texts["g2"] == "营销短信太多，要求退订"
    assert _lake(settings, "SELECT city FROM voices WHERE id = 'g1'") == [("苏州",)]


def test_undecodable_file_is_unusable(tmp_path, settings):
    bad = tmp_path / "voices.csv"
    # Invalid in UTF-8 and in GB18030 (0x80 and 0xFF are never lead bytes there).
    bad.write_bytes(b"id,text\n\x80\xff\x80\xff,\xff\xfe\x80\n")
    with pytest.raises(UnusableInputError, match="cannot decode"):
        ingest_file(settings=settings, path=bad, kind="voice")


def test_unknown_columns_without_mapping_are_unusable(tmp_path, settings):
    path = tmp_path / "voices.csv"
    path.write_text("id,text,Mystery Column\n1,hi,x\n", encoding="utf-8")
    with pytest.raises(UnusableInputError, match="Mystery Column"):
        ingest_file(settings=settings, path=path, kind="voice")
    doc = tmp_path / "voices.doc"
    doc.write_text("x", encoding="utf-8")
    with pytest.raises(UnusableInputError, match="unsupported file type"):
        ingest_file(settings=settings, path=doc, kind="voice")


def test_comcast_through_shipped_mapping(settings):
    path = shared_file("comcast_telecom_complaints", "Comcast_telecom_complaints_data.csv")
    mapping = MAPPINGS / "comcast.yaml"
    result = ingest_file(settings=settings, path=path, mapping=mapping)
    assert result.read == 2224 and _balanced(result)
    assert result.stored == 2224
    row = _lake(
        settings,
        "SELECT text, channel, province, city, strftime(received_at, '%Y-%m-%d %H:%M:%S'), "
        "attributes['status'], source, kind FROM voices WHERE id = '250635'",
    )[0]
    # 22-04-15 3:53:50 PM New York (EDT, UTC-4) is 19:53:50 UTC.
    assert row == (
        "Comcast Cable Internet Speeds",
        "hotline_10086",
        "Maryland",
        "Abingdon",
        "2015-04-22 19:53:50",
        "Closed",
        "comcast",
        "complaint",
    )
    channels = dict(_lake(settings, "SELECT channel, count(*) FROM voices GROUP BY 1"))
    assert channels == {"hotline_10086": 1119, "web": 1105}
    (peak,) = _lake(
        settings,
        "SELECT count(*) FROM voices WHERE received_at >= '2015-06-24 04:00:00+00' "
        "AND received_at < '2015-06-25 04:00:00+00'",
    )[0]
    assert peak == 218  # the SOURCE.md peak day
    again = ingest_file(settings=settings, path=path, mapping=mapping)
    assert (again.stored, again.duplicates) == (0, 2224)


def test_cfpb_full_schema_through_shipped_mapping(settings):
    path = shared_file("cfpb_complaints_full_schema_sample", "train.csv.gz")
    result = ingest_file(settings=settings, path=path, mapping=MAPPINGS / "cfpb_full.yaml")
    assert result.read == 5297 and _balanced(result)
    assert result.stored == 5297
    import pandas as pd

    source = pd.read_csv(path, dtype=str)
    (narratives,) = _lake(
        settings, "SELECT count(*) FROM voices WHERE text <> attributes['issue']"
    )[0]
    assert narratives == int(source["Consumer complaint narrative"].notna().sum())
    (phone,) = _lake(settings, "SELECT count(*) FROM voices WHERE channel = 'hotline_10086'")[0]
    assert phone == int((source["Submitted via"] == "Phone").sum())
    (products,) = _lake(
        settings,
        "SELECT count(*) FROM voices WHERE attributes['product'] = 'Debt collection'",
    )[0]
    assert products > 900
    (channel,) = _lake(settings, "SELECT count(DISTINCT channel) FROM voices")[0]
    assert channel >= 3


def test_jsonl_parquet_and_xlsx(tmp_path, settings):
    import openpyxl

    recs = [_voice(i) for i in range(6)]
    jl = tmp_path / "voices.jsonl"
    lines = [json.dumps(r, ensure_ascii=False) for r in recs[:2]]
    lines.insert(1, "{not json")
    lines.append("")
    jl.write_text("\n".join(lines) + "\n", encoding="utf-8")
    res = ingest_file(settings=settings, path=jl)
    assert (res.read, res.stored, res.quarantined) == (3, 2, 1)
    _, q = list_quarantine(settings=settings)
    assert q[0]["source_row"] == 2 and "invalid JSON" in q[0]["reason"]

    flat = []
    for r in recs[2:4]:
        f = {k: v for k, v in r.items() if k != "attributes"}
        f["attr.scenario"] = "HBB"
        flat.append(f)
    pq.write_table(pa.Table.from_pylist(flat), tmp_path / "voices_more.parquet")
    res = ingest_file(settings=settings, path=tmp_path / "voices_more.parquet")
    assert (res.read, res.stored) == (2, 2)

    wb = openpyxl.Workbook()
    ws = wb.active
    header = ["id", "source", "kind", "received_at", "customer_id", "text", "attr.scenario"]
    ws.append(header)
    ws.append(
        ["x1", "excel", "ticket", dt.datetime(2026, 9, 5, 9, 30), 13900001234, "装机慢", "HBB"]
    )
    ws.append([None, "excel", "ticket", dt.datetime(2026, 9, 5, 9, 31), None, "无编号", "HBB"])
    ws.append([42, "excel", "ticket", "2026-09-05 10:00", None, "数字编号", "HBB"])
    wb.save(tmp_path / "voices.xlsx")
    res = ingest_file(settings=settings, path=tmp_path / "voices.xlsx")
    assert (res.read, res.stored, res.quarantined) == (3, 2, 1)

    rows = dict(_lake(settings, "SELECT id, attributes['scenario'] FROM voices"))
    assert set(rows) == {"p0", "p1", "p2", "p3", "x1", "42"}
    assert set(rows.values()) == {"HBB"}
    (when,) = _lake(
        settings, "SELECT strftime(received_at, '%Y-%m-%d %H:%M') FROM voices WHERE id = 'x1'"
    )[0]
    assert when == "2026-09-05 01:30"  # naive = Asia/Shanghai


def test_all_four_kinds_from_a_folder(tmp_path, settings):
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "customers.csv").write_text(
        "id,province,city,plan_name,plan_monthly_fee,plan_data_gb,plan_voice_minutes,"
        "plan_is_5g,tenure_months,arpu,segment,status,churned_at\n"
        "13800000001,江苏,南京,5G畅享128,128,30,500,true,36,135.5,mass,active,\n"
        "13800000002,江苏,南京,4G飞享38,38,5,100,否,5,40,youth,churned,2026-10-01\n"
        "13800000003,江苏,南京,4G飞享38,-38,5,100,maybe,5,40,youth,gone,\n",
        encoding="utf-8",
    )
    surveys = [
        {
            "id": "s1",
            "customer_id": "13800000001",
            "touchpoint": "hotline",
            "occurred_at": "2026-09-02 10:00:00",
            "overall": 8,
            "nps": 9,
            "factors": {"tariff": 6, "hotline_service": 9},
            "comment": "还行，电话13812345678",
        },
        {"id": "s2", "touchpoint": "store", "occurred_at": "2026-09-02", "overall": 11},
        {
            "id": "s3",
            "touchpoint": "kiosk",
            "occurred_at": "2026-09-02",
            "overall": "7",
            "nps": 7.5,
        },
    ]
    (folder / "surveys.jsonl").write_text(
        "\n".join(json.dumps(s, ensure_ascii=False) for s in surveys), encoding="utf-8"
    )
    (folder / "events.csv").write_text(
        "id,customer_id,type,occurred_at,channel,attr.request_id\n"
        "e1,13800000002,unsubscribe_requested,2026-09-03T08:00:00+08:00,hotline_10086,r1\n"
        "e2,13800000002,unsubscribe_done,2026-09-03T09:00:00+08:00,,r1\n"
        "e3,13800000002,,2026-09-03T09:00:00+08:00,,r1\n",
        encoding="utf-8",
    )
    (folder / "notes.txt").write_text("ignored: no kind in the name", encoding="utf-8")
    res = ingest_path(settings=settings, path=folder)
    assert (res.read, res.stored, res.quarantined, res.duplicates) == (9, 5, 4, 0)
    cust = _lake(
        settings, "SELECT plan_is_5g, status, churned_at IS NULL FROM customers ORDER BY 2"
    )
    assert cust == [(True, "active", True), (False, "churned", False)]
    (cid,) = _lake(settings, "SELECT id FROM customers WHERE status = 'active'")[0]
    assert cid == pseudonymise(key=settings.secret_key, ids=pa.array(["13800000001"]))[0].as_py()
    survey = _lake(settings, "SELECT customer_id, overall, nps, factors, comment FROM surveys")
    assert len(survey) == 1
    assert survey[0][0] == cid  # joins customers on the pseudonym
    assert survey[0][1:4] == (8.0, 9, {"tariff": 6.0, "hotline_service": 9.0})
    assert "<PHONE>" in survey[0][4]
    _, q = list_quarantine(settings=settings)
    reasons = {(r["kind"], r["field"]) for r in q}
    assert ("customer", "plan_monthly_fee") in reasons
    assert ("survey", "overall") in reasons
    assert ("survey", "nps") in reasons
    assert ("event", "type") in reasons
    assert _lake(settings, "SELECT count(*) FROM events") == [(2,)]
    # Survey s3: unknown touchpoint is kept as `other`, but nps 7.5 is not an integer.
    s3 = next(r for r in q if r["kind"] == "survey" and r["field"] == "nps")
    assert "not an integer" in s3["reason"]


def test_records_push_same_guarantees(settings):
    recs = [_voice(i) for i in range(5)] + [_voice(1), "not an object", _voice(9, text="")]
    res = ingest_records(settings=settings, kind="voice", records=recs)
    assert (res.read, res.stored, res.quarantined, res.duplicates) == (8, 5, 2, 1)
    again = ingest_records(settings=settings, kind="voice", records=recs[:5])
    assert (again.stored, again.duplicates) == (0, 5)


def test_identity_lookup_is_logged(any_db_settings):
    settings = any_db_settings
    ingest_records(settings=settings, kind="voice", records=[_voice(1), _voice(2)])
    (pseudo,) = _lake(settings, "SELECT customer_id FROM voices WHERE id = 'p1'")[0]
    assert pseudo.startswith("c") and len(pseudo) == 25
    with pytest.raises(PermissionDeniedError):
        resolve_contact(settings=settings, pseudonym=pseudo, actor="", purpose="callback")
    with pytest.raises(PermissionDeniedError):
        resolve_contact(settings=settings, pseudonym=pseudo, actor="agent-7", purpose=" ")
    real = resolve_contact(
        settings=settings, pseudonym=pseudo, actor="agent-7", purpose="call back on complaint"
    )
    assert real == "13900000001"
    with pytest.raises(NotFoundError):
        resolve_contact(settings=settings, pseudonym="cdeadbeef", actor="agent-7", purpose="x")
    log = access_log(settings=settings)
    assert [(r["pseudonym"], r["actor"], r["found"]) for r in log] == [
        ("cdeadbeef", "agent-7", False),
        (pseudo, "agent-7", True),
    ]
    assert log[1]["purpose"] == "call back on complaint"


def test_query_voices_filters_and_pages(settings):
    recs = [
        _voice(i, city="南京" if i % 2 else "苏州", channel="app" if i < 4 else "web")
        for i in range(8)
    ]
    ingest_records(settings=settings, kind="voice", records=recs)
    total, items = query_voices(settings=settings, city="苏州", limit=2)
    assert total == 4 and len(items) == 2
    total, items = query_voices(settings=settings, channel="web", q="第5条")
    assert total == 1 and items[0]["id"] == "p5"
    total, _ = query_voices(
        settings=settings,
        start=dt.datetime(2026, 9, 2),
        end=dt.datetime(2026, 9, 4),
    )
    assert total == 2  # p1 (Sept 2) and p2 (Sept 3), Shanghai time
    total, page2 = query_voices(settings=settings, limit=3, offset=6)
    assert total == 8 and len(page2) == 2


def _env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "VOXLOOP_HOME": str(settings.home),
            "VOXLOOP_ENV": "test",
            "VOXLOOP_SECRET_KEY": settings.secret_key,
            "VOXLOOP_BATCH_SIZE": "400",
            "PYTHONPATH": str(ROOT / "src") + os.pathsep + str(ROOT),
        }
    )
    return env


@pytest.mark.slow
def test_two_processes_lose_and_duplicate_nothing(tmp_path, settings):
    rows = ["id,source,kind,received_at,customer_id,channel,text"]
    rows += [
        f"v{i},load,complaint,2026-09-01 10:00:00,1380000{i:04d},app,第{i}条投诉"
        for i in range(4000)
    ]
    csv_path = tmp_path / "voices.csv"
    csv_path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    pusher = textwrap.dedent(
        """
        import json, sys
        from voxloop.config import load_settings
        from voxloop.ingest.service import ingest_records
        s = load_settings()
        total = dict(read=0, stored=0, quarantined=0, duplicates=0)
        for start in range(2000, 6000, 250):
            recs = [dict(id=f"v{i}", source="load", kind="complaint",
                         received_at="2026-09-01 10:00:00", customer_id=f"1380000{i:04d}",
                         channel="app", text=f"第{i}条投诉") for i in range(start, start + 250)]
            r = ingest_records(settings=s, kind="voice", records=recs)
            for k in total:
                total[k] += getattr(r, k)
        print(json.dumps(total))
        """
    )
    env = _env(settings)
    cli = subprocess.Popen(
        [sys.executable, "-c", "from voxloop.cli.main import main; main()", "ingest",
         str(csv_path), "--kind", "voice", "--json", "--no-pipeline"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    push = subprocess.Popen(
        [sys.executable, "-c", pusher],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out_cli, err_cli = cli.communicate(timeout=180)
    out_push, err_push = push.communicate(timeout=180)
    assert cli.returncode == 0, err_cli
    assert push.returncode == 0, err_push
    a = json.loads(out_cli.strip().splitlines()[-1])
    b = json.loads(out_push.strip().splitlines()[-1])
    assert a["read"] == 4000 and b["read"] == 4000
    for r in (a, b):
        assert r["stored"] + r["duplicates"] + r["quarantined"] == r["read"]
        assert r["quarantined"] == 0
    assert a["stored"] + b["stored"] == 6000
    assert a["duplicates"] + b["duplicates"] == 2000
    assert _lake(settings, "SELECT count(*), count(DISTINCT id) FROM voices") == [(6000, 6000)]


def test_cli_ingest_and_quarantine(tmp_path, settings, monkeypatch):
    from typer.testing import CliRunner

    from voxloop.cli.main import _register_domains, app

    for key, value in _env(settings).items():
        if key.startswith("VOXLOOP_"):
            monkeypatch.setenv(key, value)
    _register_domains()
    runner = CliRunner()
    res = runner.invoke(
        app,
        ["ingest", str(DATA / "voices_broken.csv"), "--kind", "voice", "--json", "--no-pipeline"],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.output.strip().splitlines()[-1]) == {
        "read": 15,
        "stored": 5,
        "quarantined": 8,
        "duplicates": 2,
    }
    res = runner.invoke(app, ["quarantine", "--json", "--limit", "3"])
    assert res.exit_code == 0
    body = json.loads(res.output)
    assert body["total"] == 8 and len(body["items"]) == 3
    assert {"source_file", "source_row", "field", "reason"} <= set(body["items"][0])
    bad = tmp_path / "voices.csv"
    bad.write_text("Foo,Bar\n1,2\n", encoding="utf-8")
    res = runner.invoke(app, ["ingest", str(bad), "--no-pipeline"])
    assert res.exit_code != 0
    assert "unknown columns" in res.output


def test_api_push_list_and_quarantine(settings):

    from voxloop.api.app import create_app

    client = admin_client(create_app(settings))
    r = client.post("/api/v1/ingest/voice", json=[_voice(1), _voice(2), _voice(3, kind="??")])
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["read"], body["stored"], body["quarantined"], body["duplicates"]) == (3, 2, 1, 0)
    assert body["errors"] == [{"row": 3, "field": "kind", "reason": body["errors"][0]["reason"]}]
    assert "unknown value" in body["errors"][0]["reason"]
    for payload in ({"id": 1}, [1, 2], "text"):
        r = client.post("/api/v1/ingest/voice", json=payload)
        assert r.status_code == 422, payload
        assert r.json()["detail"]
    r = client.post(
        "/api/v1/ingest/voice", content=b"{broken", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
    r = client.post("/api/v1/ingest/nonsense", json=[])
    assert r.status_code == 422
    r = client.post("/api/v1/ingest/voice", json=[{"id": "x", "colour": "red"}])
    assert r.status_code == 422 and "colour" in r.json()["detail"]
    r = client.get("/api/v1/voices", params={"city": "南京", "limit": 1})
    assert r.status_code == 200
    assert r.json()["total"] == 2 and len(r.json()["items"]) == 1
    r = client.get("/api/v1/voices", params={"from": "2026-09-03T00:00:00+08:00"})
    assert [v["id"] for v in r.json()["items"]] == ["p2"]
    r = client.get("/api/v1/voices", params={"limit": 0})
    assert r.status_code == 422
    r = client.get("/api/v1/quarantine")
    assert r.status_code == 200 and r.json()["total"] == 1


def test_lake_schemas_are_written_as_declared(settings):
    ingest_records(settings=settings, kind="voice", records=[_voice(1)])
    table_name, schema = LAKE_TABLES[RecordKind.voice]
    written = pq.read_table(settings.lake_dir / table_name)
    assert written.schema.remove_metadata().equals(schema, check_metadata=False)


def test_generator_output_ingests_cleanly_and_pseudonymises(tmp_path, settings):
    from voxloop.demo.generator import generate_operator

    out = tmp_path / "gen"
    generate_operator(customers=300, days=14, seed=3, out_dir=out)
    lines = (
        sum(
            len((out / name).read_text(encoding="utf-8").splitlines())
            for name in ("voices.jsonl", "surveys.jsonl", "events.jsonl")
        )
        + len((out / "customers.csv").read_text(encoding="utf-8").splitlines())
        - 1
    )
    res = ingest_path(settings=settings, path=out)
    assert res.read == lines
    assert (res.stored, res.quarantined, res.duplicates) == (lines, 0, 0)
    truth = json.loads((out / "ground_truth.json").read_text(encoding="utf-8"))
    raw = pa.array(truth["churn_customers"][:3] or ["none"])
    expected = set(pseudonymise(key=settings.secret_key, ids=raw).to_pylist())
    stored = {r[0] for r in _lake(settings, "SELECT id FROM customers")}
    assert expected <= stored
    # Every voice keeps its true scenario for evaluation.
    assert _lake(settings, "SELECT count(*) FROM voices WHERE attributes['scenario'] IS NULL") == [
        (0,)
    ]


def test_batch_duplicates_match_a_python_set():
    from voxloop.ingest.service import _batch_duplicates

    rng = np.random.default_rng(3)
    # Few distinct high halves force the shared-high-half branch.
    hi = rng.integers(0, 50, 1500).astype(np.uint64)
    lo = rng.integers(0, 40, 1500).astype(np.uint64)
    seen: set[tuple[int, int]] = set()
    expected = []
    for h, v in zip(hi.tolist(), lo.tolist(), strict=True):
        expected.append((h, v) in seen)
        seen.add((h, v))
    assert _batch_duplicates(hi, lo).tolist() == expected
    assert not _batch_duplicates(np.arange(9, dtype=np.uint64), np.zeros(9, np.uint64)).any()


def test_key_cache_sees_parts_written_by_others_and_removed_parts(settings, monkeypatch):
    from voxloop.ingest import service
    from voxloop.store.service import part_files, writer_lock

    def stored_keys() -> pa.Table:
        kdir = settings.home / "keys" / "voices"
        keys = pa.concat_tables(pq.read_table(p) for p in sorted(kdir.glob("part-*.parquet")))
        return keys.append_column("i", pa.array(np.arange(keys.num_rows, dtype=np.int64)))

    ingest_records(settings=settings, kind="voice", records=[_voice(i) for i in range(5)])
    cache = service._KeyCache(settings, "voices", service.duckdb.connect())
    with writer_lock(settings, "voices"):
        cache.refresh()
        assert cache.rows == 5
        assert cache.duplicates(stored_keys()).all()
    # Another writer adds a part: the next refresh reads only that part.
    ingest_records(settings=settings, kind="voice", records=[_voice(i) for i in range(5, 9)])
    with writer_lock(settings, "voices"):
        cache.refresh()
        assert cache.rows == 9 and len(cache.parts) == 2
        keys = stored_keys()
        assert cache.duplicates(keys).all()
    # A removed lake part (e.g. an erasure) must not keep flagging its rows.
    first = part_files(settings, "voices")[0]
    first.unlink()
    with writer_lock(settings, "voices"):
        cache.refresh()
        assert cache.rows == 4
        assert int(cache.duplicates(keys).sum()) == 4
    # Over the cache's row budget the cache is dropped and the parts scanned, same answer.
    monkeypatch.setattr(service, "_KEY_CACHE_ROWS", 2)
    small = service._KeyCache(settings, "voices", service.duckdb.connect())
    with writer_lock(settings, "voices"):
        small.refresh()
        assert small.full and small.rows == 0 and len(small.uncached) == 1
        assert int(small.duplicates(keys).sum()) == 4


def test_batches_see_rows_another_process_wrote_in_between(tmp_path):
    """The in-process key cache of one run picks up parts another process writes."""
    from voxloop.ingest import readers, service

    settings = Settings(home=tmp_path / "h", env="test", secret_key="k", batch_size=3)
    records = [_voice(i) for i in range(9)]
    writer = textwrap.dedent(
        f"""
        from voxloop.config import Settings
        from voxloop.ingest.service import ingest_records
        s = Settings(home={str(settings.home)!r}, env="test", secret_key="k")
        recs = {json.dumps([_voice(i) for i in (4, 7, 20)], ensure_ascii=False)}
        r = ingest_records(settings=s, kind="voice", records=recs)
        assert r.stored == 3, r
        """
    )

    def batches():  # type: ignore[no-untyped-def]
        for n, batch in enumerate(readers.read_records(records, batch_size=3)):
            if n == 1:  # after the first batch was handed over, before the second commit
                subprocess.run([sys.executable, "-c", writer], check=True, env=_env(settings))
            yield batch

    result = service.ingest_batches(
        settings=settings,
        kind=RecordKind.voice,
        batches=batches(),
        mapping=None,
        source_file="test",
    )
    assert (result.read, result.stored, result.duplicates) == (9, 7, 2)
    assert _lake(settings, "SELECT count(*), count(DISTINCT id) FROM voices") == [(10, 10)]


def test_key_cache_overflow_mid_run_keeps_the_outcome(tmp_path, monkeypatch):
    from voxloop.ingest import service

    monkeypatch.setattr(service, "_KEY_CACHE_ROWS", 3)
    settings = Settings(home=tmp_path / "h", env="test", secret_key="k", batch_size=2)
    result = ingest_file(settings=settings, path=DATA / "voices_broken.csv", kind="voice")
    assert (result.read, result.stored, result.quarantined, result.duplicates) == (15, 5, 8, 2)
    again = ingest_file(settings=settings, path=DATA / "voices_broken.csv", kind="voice")
    assert (again.stored, again.duplicates, again.quarantined) == (0, 7, 8)
    assert _lake(settings, "SELECT count(*), count(DISTINCT id) FROM voices") == [(5, 5)]
