"""Call → work-order summaries: transcript parsing, fields, the draft, MobileCS P/R, the API."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fastapi import Depends
from fastapi.testclient import TestClient

from tests.conftest import admin_client, shared_file
from voxloop.act.commitments import due_for_order, load_commitments
from voxloop.act.routing import load_routing, route
from voxloop.assist.summary import (
    cn_number,
    draft_order,
    evaluate_mobilecs,
    extract_amounts,
    extract_dates,
    extract_plans,
    extract_volumes,
    mobilecs_gold,
    parse_transcript,
    summarize_text,
    summary_for_request,
)
from voxloop.assist.summary_schemas import SummaryRequest
from voxloop.config import Settings
from voxloop.errors import NotFoundError, UnusableInputError
from voxloop.understand.reading import ReadingBundle, build_bundle
from voxloop.understand.taxonomy import default_taxonomy

REFUND_CALL = "\n".join(
    [
        "[00:00-00:04] 坐席：您好，很高兴为您服务",
        "[00:04-00:15] 客户：我这个月话费怎么多扣了三十元，我的号码是13812345678，我没订过什么业务",
        "[00:15-00:22] 坐席：我帮您查询一下，您稍等",
        "[00:22-00:40] 坐席：查到您6月3号被开通了一个视频彩铃，每月十元，我现在帮您退订，"
        "多扣的三十元会在24小时内返还到您的账户",
        "[00:40-00:45] 客户：好的，谢谢",
    ]
)

BROADBAND_CALL = (
    "坐席：您好 客户：我家宽带断网两天了，一直连不上，你们到底管不管 "
    "坐席：非常抱歉，我这边给您派单，安排师傅四十八小时内上门维修 客户：太慢了，我要投诉"
)


@pytest.fixture(scope="module")
def bundle() -> ReadingBundle:
    return build_bundle(taxonomy=default_taxonomy())


def test_transcript_formats_are_split_into_masked_turns() -> None:
    turns = parse_transcript(REFUND_CALL)
    assert [t.speaker for t in turns] == ["agent", "customer", "agent", "agent", "customer"]
    assert turns[1].start == 4.0 and turns[1].end == 15.0
    assert "13812345678" not in turns[1].text and "<PHONE>" in turns[1].text
    inline = parse_transcript("坐席：您好 客户：我要退订 坐席：好的已为您退订")
    assert [(t.speaker, t.text) for t in inline] == [
        ("agent", "您好"),
        ("customer", "我要退订"),
        ("agent", "好的已为您退订"),
    ]
    english = parse_transcript("Agent: Hello\nCustomer: my bill is wrong")
    assert [t.speaker for t in english] == ["agent", "customer"]
    plain = parse_transcript("宽带又断了")
    assert len(plain) == 1 and plain[0].speaker == "customer"
    with pytest.raises(UnusableInputError, match="text"):
        parse_transcript("   ")


def test_chinese_numbers_and_entities() -> None:
    assert [cn_number(s) for s in ("四十八", "一千三百六十八", "二千五", "一百零五", "两")] == [
        48,
        1368,
        2500,
        105,
        2,
    ]
    assert cn_number("套餐") is None
    amounts = {a.text: a.value for a in extract_amounts("三十四块一毛九，还有¥12.5和八元，一毛九")}
    assert amounts == {"三十四块一毛九": 34.19, "¥12.5": 12.5, "八元": 8.0, "一毛九": 0.19}
    volumes = [v.value_mb for v in extract_volumes("五百兆和一个G，四g网，从三G更改到二G")]
    assert volumes == [500.0, 1024.0]
    assert extract_plans("八元的那个飞享套餐，还有这个业务") == ["飞享套餐"]
    assert extract_dates("下个月一号生效") == ["下个月一号"]


def test_refund_call_summary_fields(bundle: ReadingBundle) -> None:
    s = summarize_text(REFUND_CALL, bundle=bundle)
    assert s.scenario == "BILL"
    assert s.entities.pii == {"PHONE": 1}
    dumped = s.model_dump_json()
    assert "13812345678" not in dumped
    codes = {(a.code, a.status) for a in s.actions}
    assert ("query", "promised") in codes and ("cancel", "promised") in codes
    assert ("compensate", "promised") in codes
    # "被开通了" describes the past, not something the agent did.
    assert "open" not in {a.code for a in s.actions}
    refund = [f for f in s.follow_ups if f.kind == "effective"]
    assert refund and refund[0].due_hours == 24.0
    assert {a.value for a in s.entities.amounts} == {30.0, 10.0}
    assert "视频彩铃" in s.entities.plans and "6月3号" in s.entities.dates
    assert s.outcome == "resolved" and s.source == "template"
    assert "<PHONE>" in s.headline and "结果：已解决" in s.abstract


def test_broadband_call_is_escalated_and_routed(bundle: ReadingBundle) -> None:
    s = summarize_text(BROADBAND_CALL, bundle=bundle)
    assert s.intents[0] == "escalate" and "repair" in s.intents
    assert s.outcome == "escalated"
    visit = [f for f in s.follow_ups if f.kind == "visit"]
    assert visit and visit[0].due_hours == 48.0
    assert s.sentiment_end == "negative"
    from datetime import UTC, datetime

    at = datetime(2026, 9, 7, 2, 0, tzinfo=UTC)
    draft = draft_order(s, text=BROADBAND_CALL, province="江苏", channel="hotline_10086", at=at)
    expected = route(
        table=load_routing(),
        scenario=draft.order.scenario,
        province="江苏",
        city=None,
        channel="hotline_10086",
        segment=None,
        source_kind="manual",
    )
    assert draft.routing.model_dump() == expected.model_dump()
    assert draft.order.scenario == "HBB" and draft.routing.department == "broadband"
    assert (draft.commitment_id, draft.sla_due_at) == due_for_order(
        book=load_commitments(), scenario="HBB", channel="hotline_10086", start=at
    )
    assert draft.order.priority == "urgent"
    assert draft.promised_due_at is not None
    assert (draft.promised_due_at - at).total_seconds() == 48 * 3600


def test_mobilecs_field_precision_recall() -> None:
    path = shared_file("mobilecs_examples", "example.json")
    data = json.loads(path.read_text("utf-8"))
    # The annotated counts are the file's own: recount them independently here.
    intent_labels = sum(
        len(
            {
                re.split(r"[（(]", lab.strip())[0]
                for t in d["content"]
                for lab in t["用户意图"].split(",")
            }
            & {"求助-查询", "询问", "求助-故障", "取消"}
        )
        for d in data
    )
    report = evaluate_mobilecs(path=path)
    assert report["dialogues"] == 10
    fields = report["fields"]
    # 询问 and 求助-查询 both map to "inquire": a dialogue with both counts once.
    assert fields["intent"]["annotated"] <= intent_labels
    assert fields["intent"]["annotated"] == sum(len(mobilecs_gold(d)["intent"]) for d in data)
    for name in ("intent", "amount", "data_volume", "plan", "plan_lenient"):
        f = fields[name]
        assert 0.0 <= f["precision"] <= 1.0 and 0.0 <= f["recall"] <= 1.0
    assert fields["plan_lenient"]["recall"] >= fields["plan"]["recall"]
    # Floors well below the measured figures (docs/assist.md): a regression shows here.
    assert fields["intent"]["recall"] >= 0.6
    assert fields["amount"]["recall"] >= 0.7


def _app(settings: Settings):  # type: ignore[no-untyped-def]
    from voxloop.api.app import create_app
    from voxloop.api.service import get_principal
    from voxloop.assist import summary_views

    app = create_app(settings)
    if not any(getattr(r, "path", "") == "/api/v1/assist/summary" for r in app.routes):
        # Until the lead registers the router in api/app.py (as every domain's is).
        app.include_router(
            summary_views.router, prefix="/api/v1", dependencies=[Depends(get_principal)]
        )
    return app


def test_api_summary_draft_create_and_voice(settings: Settings) -> None:
    app = _app(settings)
    client = admin_client(app)
    res = client.post("/api/v1/assist/summary", json={"text": BROADBAND_CALL, "province": "江苏"})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["created"] is False and body["order"] is None
    assert body["draft"]["routing"]["department"] == "broadband"
    assert body["summary"]["source"] == "template"

    made = client.post(
        "/api/v1/assist/summary",
        json={"text": BROADBAND_CALL, "province": "江苏", "create": True},
    )
    assert made.status_code == 200, made.text
    order = made.json()["order"]
    assert made.json()["created"] is True
    assert order["department"] == "broadband" and order["team"] == "江苏-field-service"
    assert order["commitment_id"] == body["draft"]["commitment_id"]
    again = client.post(
        "/api/v1/assist/summary",
        json={"text": BROADBAND_CALL, "province": "江苏", "create": True},
    ).json()
    assert again["created"] is False and again["order"]["id"] == order["id"]
    got = client.get(f"/api/v1/work-orders/{order['id']}")
    assert got.status_code == 200 and got.json()["title"].startswith("[升级投诉]")

    voice = {
        "id": "call-1",
        "source": "test",
        "kind": "call_transcript",
        "received_at": "2026-10-01T10:00:00+08:00",
        "customer_id": "c-1",
        "province": "广东",
        "city": "广州",
        "channel": "hotline_10086",
        "text": REFUND_CALL,
    }
    assert client.post("/api/v1/ingest/voice", json=[voice]).json()["stored"] == 1
    by_voice = client.post("/api/v1/assist/summary", json={"voice_id": "call-1"})
    assert by_voice.status_code == 200, by_voice.text
    draft = by_voice.json()["draft"]
    assert draft["order"]["province"] == "广东" and draft["order"]["voice_ids"] == ["call-1"]
    # The customer id was pseudonymised at ingest; the draft links the stored one.
    assert len(draft["order"]["customer_ids"]) == 1 and draft["order"]["customer_ids"] != ["c-1"]
    assert draft["routing"]["team"] == "广东-billing"

    both = client.post("/api/v1/assist/summary", json={"text": "x", "voice_id": "call-1"})
    assert both.status_code == 422 and "exactly one" in both.text
    missing = client.post("/api/v1/assist/summary", json={"voice_id": "nope"})
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]


def test_create_needs_write_permission(settings: Settings) -> None:
    from voxloop.act.access import add_user, create_token

    app = _app(settings)
    admin_client(app)
    with app.state.sessionmaker.begin() as session:
        add_user(session=session, username="viewer", role="analyst")
    with app.state.sessionmaker.begin() as session:
        token = create_token(session=session, username="viewer")
    viewer = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    assert viewer.post("/api/v1/assist/summary", json={"text": REFUND_CALL}).status_code == 200
    denied = viewer.post("/api/v1/assist/summary", json={"text": REFUND_CALL, "create": True})
    assert denied.status_code == 403, denied.text


def test_create_on_sqlite_and_postgresql(any_db_settings: Settings) -> None:
    from voxloop.act.access import add_user, principal_of
    from voxloop.store.service import make_engine, make_sessionmaker, migrate

    migrate(any_db_settings)
    engine = make_engine(any_db_settings)
    maker = make_sessionmaker(engine)
    text = REFUND_CALL + f"\n客户：编号{Path(str(any_db_settings.home)).name}"
    with maker() as session:
        user = add_user(session=session, username=f"u-{id(session)}", role="admin")
        session.commit()
        principal = principal_of(user)
    request = SummaryRequest(text=text, create=True, province="江苏", channel="hotline_10086")
    with maker() as session:
        first = summary_for_request(
            settings=any_db_settings, request=request, principal=principal, session=session
        )
    with maker() as session:
        second = summary_for_request(
            settings=any_db_settings, request=request, principal=principal, session=session
        )
    engine.dispose()
    assert first.created and not second.created
    assert first.order is not None and second.order is not None
    assert first.order["id"] == second.order["id"] and first.order["queue"] == "billing"


def test_unknown_voice_is_not_found(settings: Settings) -> None:
    with pytest.raises(NotFoundError):
        summary_for_request(settings=settings, request=SummaryRequest(voice_id="v-x"))
