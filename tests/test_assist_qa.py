"""Quality inspection: rule language, engine, stage, scores, labels with audit, evaluation, API."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from tests.conftest import admin_client
from voxloop.act.access import add_user, create_token
from voxloop.act.models import AuditEntry
from voxloop.api.app import create_app
from voxloop.api.service import get_principal, require_page_login
from voxloop.assist import qa_views
from voxloop.assist.models import QaLabel
from voxloop.assist.qa import QaScope, evaluate_qa, qa_conversation, qa_scores, qa_stage
from voxloop.assist.qa_engine import (
    Inspector,
    QaRuleError,
    inspect_table,
    load_pack,
    parse_pack,
    parse_turns,
)
from voxloop.config import Settings
from voxloop.ingest.service import ingest_records

AT = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)

# Hand-written conversations. Each names the rules of the default pack it violates.
GOOD = (
    "[0.0-6.0] 坐席：您好，中国移动10086，工号3021为您服务，请问有什么可以帮您？\n"
    "[6.5-12.0] 客户：我这个月话费多扣了三十块钱，太过分了\n"
    "[12.5-19.0] 坐席：非常抱歉给您带来不便，请问您是机主本人吗？\n"
    "[19.5-20.5] 客户：是的\n"
    "[21.0-29.0] 坐席：这笔费用是彩铃产生的，这边先帮您退订\n"
    "[29.5-31.0] 客户：好的谢谢\n"
    "[31.5-40.0] 坐席：请问还有其他可以帮您吗？稍后会有满意度短信，请您评价\n"
)
BAD = (
    "[0.0-2.0] 坐席：喂，说\n"
    "[2.5-9.0] 客户：我这个月话费多扣了三十块钱，气死我了，你们就是抢钱\n"
    "[8.0-12.0] 坐席：我也没办法，这个不归我管\n"
    "[25.0-33.0] 坐席：我已经帮您把套餐变更成58元套餐了，保证下个月就能退钱\n"
    "[33.5-34.0] 客户：啊？\n"
    "[34.5-37.5] 坐席：给个十分满意哦谢谢您谢谢您谢谢您谢谢您\n"
)
BAD_RULES = {
    "greeting",
    "self_intro",
    "identity_verification",
    "prohibited_words",
    "unauthorised_promise",
    "empathy_when_angry",
    "no_unauthorised_plan_change",
    "closing",
    "invite_rating",
    "solicit_good_rating",
    "long_silence",
    "interruption",
    "speaking_rate",
}
# The older demo format: no timing, turns joined by spaces. Timing rules do not apply.
UNTIMED = (
    "坐席：您好，请问有什么可以帮到您 客户：宽带断网两天了。 "
    "坐席：这边已经帮您登记了，24小时内有专人联系您 坐席：感谢您的来电，祝您生活愉快"
)
UNTIMED_RULES = {"self_intro", "invite_rating"}
# An agent who asks for consent before changing the plan does not break the plan rule.
CONSENTED = (
    "[0.0-5.0] 坐席：您好，10086客服工号8812为您服务\n"
    "[5.5-9.0] 客户：我想换个便宜点的套餐\n"
    "[9.5-15.0] 坐席：好的，请问您是机主本人吗？麻烦报一下身份证后四位\n"
    "[15.5-17.0] 客户：1234\n"
    "[17.5-25.0] 坐席：可以给您换成39元套餐，您确认办理吗\n"
    "[25.5-27.0] 客户：同意办理\n"
    "[27.5-35.0] 坐席：已经帮您变更为39元套餐，下月生效\n"
    "[35.5-43.0] 坐席：请问还有其他可以帮您吗？稍后请对我的服务做出评价\n"
)
ENGLISH = (
    "Agent: Hello, China Mobile 10086, how can I help you?\n"
    "Customer: My bill is wrong.\n"
    "Agent: I am sorry, let me check that for you.\n"
    "Agent: Is there anything else I can help with? Please rate our service in the SMS."
)
NO_AGENT = "宽带又断了，什么时候修好"


def hits_of(texts: list[str]) -> list[set[str]]:
    """Inspect ``texts`` with the default pack; return the rules hit per text."""
    table = pa.table({"id": [f"c{i}" for i in range(len(texts))], "text": texts})
    convs, hits = inspect_table(
        table, inspector=Inspector(load_pack()), run_id="t", inspected_at=AT
    )
    out: list[set[str]] = [set() for _ in texts]
    for row in hits.to_pylist():
        out[int(row["voice_id"][1:])].add(row["rule_id"])
    assert convs.num_rows == len(texts)
    return out


def test_default_pack_has_the_agreed_rule_ids_and_sources() -> None:
    pack = load_pack()
    ids = {r.id for r in pack.rules}
    assert ids >= BAD_RULES
    assert len(pack.sources) >= 3 and any("aliyun" in s for s in pack.sources)
    assert {r.severity for r in pack.rules} == {"normal", "critical"}
    assert pack.rule("long_silence").timed and not pack.rule("greeting").timed


def test_engine_finds_each_planted_violation() -> None:
    good, bad, untimed, consented, english, no_agent = hits_of(
        [GOOD, BAD, UNTIMED, CONSENTED, ENGLISH, NO_AGENT]
    )
    assert good == set()
    assert bad == BAD_RULES
    assert untimed == UNTIMED_RULES
    assert consented == set()
    assert english == {"self_intro"}
    assert no_agent == set()


def test_turns_parse_timing_roles_and_joined_lines() -> None:
    turns = parse_turns(pa.array([GOOD, UNTIMED, None], pa.string()))
    assert turns.n_conv == 3
    assert list(turns.conv) == [0] * 7 + [1] * 4
    assert list(turns.role[:4]) == [0, 1, 0, 1]
    assert turns.start[2] == 12.5 and turns.end[2] == 19.0
    assert turns.text[1].as_py() == "我这个月话费多扣了三十块钱，太过分了"
    # Space-joined turns become separate turns, untimed.
    assert [t.as_py() for t in turns.text[7:9]] == [
        "您好，请问有什么可以帮到您",
        "宽带断网两天了。",
    ]
    assert all(v != v for v in turns.start[7:])  # NaN
    assert list(turns.ordinal[7:]) == [0, 0, 1, 2] and list(turns.ordinal_rev[7:]) == [2, 0, 1, 0]


def test_scores_deduct_and_critical_hits_fail() -> None:
    table = pa.table({"id": ["g", "b", "n"], "text": [GOOD, BAD, NO_AGENT]})
    convs, hits = inspect_table(
        table, inspector=Inspector(load_pack()), run_id="t", inspected_at=AT
    )
    rows = {r["voice_id"]: r for r in convs.to_pylist()}
    pack = load_pack()
    deduction = sum(pack.rule(r).score for r in BAD_RULES)
    assert rows["g"]["score"] == 100 and rows["g"]["passed"] is True
    assert rows["b"]["score"] == max(0.0, 100 - deduction) and rows["b"]["passed"] is False
    assert rows["b"]["n_critical"] == sum(pack.rule(r).severity == "critical" for r in BAD_RULES)
    assert rows["n"]["inspected"] is False and rows["n"]["score"] is None
    evidence = {h["rule_id"]: h["turns"] for h in hits.to_pylist() if h["voice_id"] == "b"}
    assert evidence["prohibited_words"] == [2]  # the turn with 不归我管
    assert evidence["interruption"] == [2]  # starts at 8.0, customer spoke until 9.0
    assert evidence["long_silence"] == [3]  # 13 s gap before it
    assert evidence["greeting"] == []  # a missing behaviour has no turn


PACK = """
name: test
version: "1"
rules:
  - id: two_of
    score: 5
    conditions:
      words: {operator: keywords, role: customer, words: [宽带, 断网, 投诉], min: 2}
    expression: words
  - id: after_anger
    score: 5
    conditions:
      angry: {operator: keywords, role: customer, words: [气死]}
      sorry: {operator: keywords, role: agent, range: {after: angry, turns: 1}, words: [抱歉]}
    expression: angry and not sorry
  - id: similar
    score: 5
    conditions:
      s: {operator: similarity, role: agent, threshold: 0.6, examples: [这边帮您登记处理]}
      x: {operator: regex, role: agent, pattern: '登记', exclude: '不登记'}
    expression: s or x
  - id: by_intent
    score: 1
    conditions:
      i: {operator: intent, intents: [complain]}
    expression: i
"""


def test_operators_any_n_after_range_similarity_and_intent() -> None:
    pack = parse_pack(PACK)
    texts = [
        "客户：宽带又断网了\n坐席：好的",  # two of the words
        "客户：宽带坏了\n坐席：好的",  # one word only
        "客户：气死了\n坐席：抱歉抱歉",  # soothed in the next turn
        "客户：气死了\n坐席：好的\n坐席：抱歉",  # too late
        "坐席：这边帮您登记处理一下\n客户：嗯",
        "坐席：我们不登记\n客户：嗯",
    ]
    table = pa.table(
        {"id": [str(i) for i in range(6)], "text": texts, "intent": ["complain"] + [None] * 5}
    )
    _, hits = inspect_table(table, inspector=Inspector(pack), run_id="r", inspected_at=AT)
    got = {(h["voice_id"], h["rule_id"]) for h in hits.to_pylist()}
    assert got == {("0", "two_of"), ("3", "after_anger"), ("4", "similar"), ("0", "by_intent")}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("expression: words", "unknown condition"),
        ("operator: keywords", "operator 'sentiment'"),
        ("min: 2", "'min' must be between"),
        ("role: customer", "role 'boss'"),
    ],
)
def test_malformed_packs_name_the_rule_and_field(change: str, message: str) -> None:
    bad = {
        "expression: words": "expression: words and nothing",
        "operator: keywords": "operator: sentiment",
        "min: 2": "min: 9",
        "role: customer": "role: boss",
    }[change]
    text = PACK.replace(change, bad, 1)
    with pytest.raises(QaRuleError, match="rule 'two_of'") as info:
        parse_pack(text)
    assert message in str(info.value)


def test_bad_regex_and_unsafe_expression_are_refused() -> None:
    with pytest.raises(QaRuleError, match=r"rule 'similar'.*RE2"):
        parse_pack(PACK.replace("pattern: '登记'", "pattern: '(登记'"))
    with pytest.raises(QaRuleError, match="only condition names"):
        parse_pack(PACK.replace("expression: s or x", "expression: __import__('os')"))


# ---------------------------------------------------------------------------
# Stage, scores, labels, evaluation over a real store


def conversations() -> list[dict[str, Any]]:
    """Voices for the store: two agents in two teams, two provinces, one untimed, one chat."""
    specs = [
        ("q1", GOOD, "A001", "南京一组", "江苏", "南京", "call_transcript"),
        ("q2", BAD, "A002", "南京二组", "江苏", "南京", "call_transcript"),
        ("q3", CONSENTED, "A001", "南京一组", "江苏", "南京", "call_transcript"),
        ("q4", UNTIMED, "A003", "广州一组", "广东", "广州", "chat"),
        ("q5", BAD, "A003", "广州一组", "广东", "广州", "call_transcript"),
        ("q6", NO_AGENT, None, None, "广东", "广州", "chat"),
    ]
    rows = []
    for i, (vid, text, agent, team, province, city, kind) in enumerate(specs):
        attrs = {"agent_id": agent, "team": team} if agent else {}
        rows.append(
            {
                "id": vid,
                "source": "test",
                "kind": kind,
                "received_at": (AT + timedelta(hours=i)).isoformat(),
                "province": province,
                "city": city,
                "channel": "hotline_10086" if kind == "call_transcript" else "app",
                "text": text,
                "attributes": attrs,
            }
        )
    rows.append({**rows[0], "id": "c1", "kind": "complaint", "text": "信号太差了"})
    return rows


@pytest.fixture
def store(any_db_settings: Settings) -> Settings:
    from voxloop.store.service import migrate

    migrate(any_db_settings)
    result = ingest_records(settings=any_db_settings, kind="voice", records=conversations())
    assert result.stored == 7, result
    return any_db_settings


def test_stage_inspects_new_conversations_once(store: Settings) -> None:
    first = qa_stage(settings=store)
    assert first["conversations"] == 6 and first["inspected"] == 5  # q6 has no agent turn
    assert first["failed"] == 2
    again = qa_stage(settings=store)
    assert again["conversations"] == 0
    scores = qa_scores(settings=store, scope=QaScope())
    assert scores["summary"]["inspected"] == 5 and scores["summary"]["conversations"] == 6
    agents = {a["agent_id"]: a for a in scores["agents"]}
    assert agents["A001"]["mean_score"] == 100 and agents["A001"]["conversations"] == 2
    assert scores["agents"][0]["agent_id"] in ("A002", "A003")  # worst first
    teams = {t["team"]: t for t in scores["teams"]}
    assert teams["南京一组"]["pass_rate"] == 1.0 and teams["南京二组"]["pass_rate"] == 0.0
    rules = {r["rule_id"]: r for r in scores["rules"]}
    assert rules["prohibited_words"]["hits"] == 2 and rules["prohibited_words"]["rate"] == 0.4
    # Timing rules count over timed conversations only (q4 is untimed).
    assert rules["long_silence"]["rate"] == 0.5
    assert scores["conversations"][0]["voice_id"] in ("q2", "q5")
    scoped = qa_scores(settings=store, scope=QaScope(province="广东"))
    assert scoped["summary"]["inspected"] == 2
    assert {a["agent_id"] for a in scoped["agents"]} == {"A003"}


def test_labels_change_scores_are_audited_and_evaluated(store: Settings) -> None:
    from voxloop.act.access import principal_of
    from voxloop.assist.qa import LabelRequest, MissedRequest, label_hit, label_missed
    from voxloop.store.service import make_engine, make_sessionmaker

    qa_stage(settings=store)
    engine = make_engine(store)
    maker = make_sessionmaker(engine)
    with maker.begin() as session:
        add_user(session=session, username="qa.lead", role="supervisor", actor="test")
        add_user(session=session, username="agent.x", role="agent", actor="test")
    with maker() as session:
        from voxloop.act.access import get_user

        lead = principal_of(get_user(session=session, username="qa.lead"))
        agent = principal_of(get_user(session=session, username="agent.x"))
        detail = qa_conversation(settings=store, voice_id="q2", session=session)
        hits = {h["rule_id"]: h for h in detail["hits"]}
        assert detail["turns"][2]["rules"] == ["interruption", "prohibited_words"]
        with pytest.raises(Exception, match="may not judge"):
            label_hit(
                session=session,
                settings=store,
                principal=agent,
                hit_id=hits["closing"]["hit_id"],
                request=LabelRequest(verdict="confirm"),
            )
        label_hit(
            session=session,
            settings=store,
            principal=lead,
            hit_id=hits["prohibited_words"]["hit_id"],
            request=LabelRequest(verdict="confirm", note="red line"),
        )
        label_hit(
            session=session,
            settings=store,
            principal=lead,
            hit_id=hits["speaking_rate"]["hit_id"],
            request=LabelRequest(verdict="confirm"),
        )
        # A change of mind updates the one label and is audited twice.
        label_hit(
            session=session,
            settings=store,
            principal=lead,
            hit_id=hits["speaking_rate"]["hit_id"],
            request=LabelRequest(verdict="overturn", note="normal pace"),
        )
        label_missed(
            session=session,
            settings=store,
            principal=lead,
            voice_id="q1",
            request=MissedRequest(rule_id="solution_offered"),
        )
        labels = session.scalars(select(QaLabel).order_by(QaLabel.id)).all()
        assert [(x.voice_id, x.rule_id, x.verdict) for x in labels] == [
            ("q2", "prohibited_words", "confirm"),
            ("q2", "speaking_rate", "overturn"),
            ("q1", "solution_offered", "missed"),
        ]
        trail = session.scalars(
            select(AuditEntry).where(AuditEntry.object_type == "qa_hit").order_by(AuditEntry.id)
        ).all()
        assert [e.action for e in trail] == [
            "qa.label.confirm",
            "qa.label.confirm",
            "qa.label.overturn",
            "qa.label.missed",
        ]
        assert json.loads(trail[2].detail)["previous"] == "confirm"
        assert trail[2].actor == "qa.lead"
        report = evaluate_qa(settings=store, session=session)
        rules = {r["rule_id"]: r for r in report["rules"]}
        assert rules["prohibited_words"]["precision"] == 1.0
        assert rules["speaking_rate"]["precision"] == 0.0
        assert rules["solution_offered"]["recall"] == 0.0
        assert report["micro"] == {
            "tp": 1,
            "fp": 1,
            "fn": 1,
            "precision": 0.5,
            "recall": 0.5,
            "f1": 0.5,
        }
        # The overturned hit no longer counts in the reviewed score.
        q4 = qa_conversation(settings=store, voice_id="q4", session=session)
        invite = next(h for h in q4["hits"] if h["rule_id"] == "invite_rating")
        label_hit(
            session=session,
            settings=store,
            principal=lead,
            hit_id=invite["hit_id"],
            request=LabelRequest(verdict="overturn"),
        )
        after = qa_conversation(settings=store, voice_id="q4", session=session)
        deduction = load_pack().rule("invite_rating").score
        assert after["conversation"]["score"] == 94.0
        assert after["conversation"]["reviewed_score"] == 94.0 + deduction
        scored = qa_scores(settings=store, scope=QaScope(agent_id="A003"), session=session)
        assert [c["score"] for c in scored["conversations"] if c["voice_id"] == "q4"] == [97.0]
        scores = qa_scores(settings=store, scope=QaScope(), session=session)
        assert {r["rule_id"]: r["hits"] for r in scores["rules"]}["speaking_rate"] == 1
    engine.dispose()


def test_evaluate_against_ground_truth(store: Settings, tmp_path: Path) -> None:
    qa_stage(settings=store)
    truth = tmp_path / "ground_truth.json"
    truth.write_text(
        json.dumps(
            {
                "qa_conversations": ["q1", "q2", "q3", "q4", "q404"],
                # q2: everything but speaking_rate is planted; q1 was meant to miss closing.
                "qa_violations": {"q2": sorted(BAD_RULES - {"speaking_rate"}), "q1": ["closing"]},
            }
        )
    )
    report = evaluate_qa(settings=store, truth=truth)
    assert report["conversations"] == 4 and report["not_inspected"] == 1
    rules = {r["rule_id"]: r for r in report["rules"]}
    assert rules["speaking_rate"]["fp"] == 1 and rules["speaking_rate"]["precision"] == 0.0
    assert rules["closing"] == {
        "rule_id": "closing",
        "tp": 1,
        "fp": 0,
        "fn": 1,
        "precision": 1.0,
        "recall": 0.5,
        "f1": 0.6667,
    }
    assert rules["invite_rating"]["fp"] == 1  # q4 (untimed) lacks a rating invitation
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"qa_violations": {"q1": "closing"}}))
    with pytest.raises(Exception, match="qa_conversations"):
        evaluate_qa(settings=store, truth=bad)


# ---------------------------------------------------------------------------
# HTTP API and pages, region-scoped


def qa_app(settings: Settings) -> FastAPI:
    """The application with the QA routes (mounted here until app.py registers them)."""
    app = create_app(settings)
    paths = {getattr(r, "path", "") for r in app.routes}
    if "/api/v1/qa/scores" not in paths:
        app.include_router(qa_views.router, prefix="/api/v1", dependencies=[Depends(get_principal)])
        app.include_router(qa_views.pages, dependencies=[Depends(require_page_login)])
    return app


def user_client(app: FastAPI, username: str, role: str, province: str | None = None) -> TestClient:
    """Return a client with a bearer token of a new user."""
    with app.state.sessionmaker.begin() as session:
        add_user(session=session, username=username, role=role, province=province, actor="test")
    with app.state.sessionmaker.begin() as session:
        token = create_token(session=session, username=username, actor="test")
    return TestClient(app, headers={"Authorization": f"Bearer {token}"})


def test_api_scores_conversation_and_labels_follow_region_scope(settings: Settings) -> None:
    from voxloop.store.service import migrate

    migrate(settings)
    ingest_records(settings=settings, kind="voice", records=conversations())
    qa_stage(settings=settings)
    app = qa_app(settings)
    admin = admin_client(app)
    body = admin.get("/api/v1/qa/scores").json()
    assert body["summary"]["inspected"] == 5
    assert admin.get("/api/v1/qa/scores?days=0").status_code == 422
    # Local calendar days (Asia/Shanghai): every conversation is on 1 December.
    day = admin.get("/api/v1/qa/scores?from=2026-12-01&to=2026-12-01").json()
    assert day["summary"]["inspected"] == 5
    assert admin.get("/api/v1/qa/scores?from=2026-12-02").json()["summary"]["inspected"] == 0
    chats = admin.get("/api/v1/qa/scores?channel=app").json()
    assert [c["voice_id"] for c in chats["conversations"]] == ["q4"]
    gd = user_client(app, "gd.lead", "supervisor", province="广东")
    scoped = gd.get("/api/v1/qa/scores").json()
    assert scoped["summary"]["inspected"] == 2
    assert gd.get("/api/v1/qa/scores?province=江苏").status_code == 403
    assert gd.get("/api/v1/qa/conversations/q2").status_code == 404
    detail = gd.get("/api/v1/qa/conversations/q5").json()
    hit = next(h for h in detail["hits"] if h["rule_id"] == "closing")
    other = admin.get("/api/v1/qa/conversations/q2").json()["hits"][0]
    assert (
        gd.post(f"/api/v1/qa/hits/{other['hit_id']}/label", json={"verdict": "confirm"}).status_code
        == 404
    )
    bad = gd.post(f"/api/v1/qa/hits/{hit['hit_id']}/label", json={"verdict": "maybe"})
    assert bad.status_code == 422
    ok = gd.post(
        f"/api/v1/qa/hits/{hit['hit_id']}/label", json={"verdict": "overturn", "note": "x"}
    )
    assert ok.status_code == 200 and ok.json()["verdict"] == "overturn"
    analyst = user_client(app, "gd.analyst", "analyst", province="广东")
    assert (
        analyst.post(
            f"/api/v1/qa/hits/{hit['hit_id']}/label", json={"verdict": "confirm"}
        ).status_code
        == 403
    )
    agent = user_client(app, "gd.agent", "agent", province="广东")
    assert (
        agent.post(
            f"/api/v1/qa/hits/{hit['hit_id']}/label", json={"verdict": "confirm"}
        ).status_code
        == 403
    )
    missed = gd.post("/api/v1/qa/missed/q4", json={"rule_id": "no_such_rule"})
    assert missed.status_code == 422 and "rule_id" in missed.json()["detail"]
    assert gd.post("/api/v1/qa/missed/q4", json={"rule_id": "closing"}).status_code == 200
    # Pages: scores and a conversation with its hits highlighted, both languages.
    page = admin.get("/qa?lang=en")
    assert page.status_code == 200 and "Quality inspection" in page.text
    assert 'data-rule="prohibited_words"' in page.text and 'data-agent="A002"' in page.text
    zh = admin.get("/qa/q2?lang=zh-CN")
    assert zh.status_code == 200 and "智能质检" in zh.text
    assert 'class="qa-turn role-agent hit" data-turn="2"' in zh.text
    assert admin.get("/qa?from=2026-13-01").status_code == 422
    assert 'data-voice-id="q4"' not in admin.get("/qa?channel=hotline_10086").text
    assert gd.get("/qa/q2").status_code == 404
    assert gd.get("/qa?province=江苏").status_code == 403


def test_cli_qa_run_and_evaluate(settings: Settings, tmp_path: Path, monkeypatch: Any) -> None:
    import typer

    from voxloop.cli import qa as qa_cli
    from voxloop.store.service import migrate

    migrate(settings)
    ingest_records(settings=settings, kind="voice", records=conversations())
    monkeypatch.setenv("VOXLOOP_HOME", str(settings.home))
    monkeypatch.setenv("VOXLOOP_ENV", "test")
    monkeypatch.setenv("VOXLOOP_SECRET_KEY", "test-secret-key")
    app, evaluate, analyze = typer.Typer(), typer.Typer(), typer.Typer()
    app.add_typer(evaluate, name="evaluate")
    app.add_typer(analyze, name="analyze")
    qa_cli.register(app=app, evaluate=evaluate, analyze=analyze)
    runner = CliRunner()
    run = runner.invoke(app, ["qa", "run", "--json"])
    assert run.exit_code == 0, run.output
    assert json.loads(run.output)["inspected"] == 5
    truth = tmp_path / "truth.json"
    truth.write_text(
        json.dumps({"qa_conversations": ["q2"], "qa_violations": {"q2": ["greeting"]}})
    )
    out = runner.invoke(app, ["evaluate", "qa", "--truth", str(truth), "--json"])
    assert out.exit_code == 0, out.output
    rules = {r["rule_id"]: r for r in json.loads(out.output)["rules"]}
    assert rules["greeting"]["tp"] == 1 and rules["closing"]["fp"] == 1
    text = runner.invoke(app, ["evaluate", "qa", "--truth", str(truth)])
    assert text.exit_code == 0 and "greeting" in text.output
    missing = runner.invoke(app, ["evaluate", "qa", "--truth", str(tmp_path / "nope.json")])
    assert missing.exit_code != 0 and "nope.json" in missing.output


def test_stage_reads_intents_from_the_latest_readings(settings: Settings) -> None:
    from voxloop.store.service import migrate, write_part
    from voxloop.understand.reading import READING_SCHEMA, READINGS_TABLE

    migrate(settings)
    ingest_records(settings=settings, kind="voice", records=conversations())
    base = {"scenario_source": "model", "model_version": "m1", "read_at": AT}
    rows = [
        {**base, "voice_id": "q1", "intent": "inquire"},
        {**base, "voice_id": "q1", "intent": "complain", "read_at": AT + timedelta(days=1)},
    ]
    write_part(settings, READINGS_TABLE, pa.Table.from_pylist(rows, schema=READING_SCHEMA))
    summary = qa_stage(settings=settings)
    assert summary["inspected"] == 5
    from voxloop.assist.qa import QA_CONVERSATIONS
    from voxloop.store.service import lake_connection

    con = lake_connection(settings, (QA_CONVERSATIONS,))
    assert con.execute("SELECT count(*) FROM qa_conversations").fetchall() == [(6,)]
    con.close()
    # The intents reach the engine: a pack rule on intent sees q1's latest one.
    from voxloop.assist.qa import _new_conversations_sql

    con = lake_connection(settings, ("voices", READINGS_TABLE))
    sql = _new_conversations_sql(has_qa=False, has_readings=True)
    intents = dict(con.execute(f"SELECT id, intent FROM ({sql})").fetchall())
    con.close()
    assert intents["q1"] == "complain" and intents["q2"] is None


def test_pack_file_version_follows_its_content(tmp_path: Path) -> None:
    path = tmp_path / "pack.yaml"
    path.write_text(PACK, encoding="utf-8")
    first = load_pack(path)
    assert first.name == "test" and first.version.startswith("1+")
    path.write_text(PACK.replace("score: 5", "score: 6", 1), encoding="utf-8")
    import os

    os.utime(path, ns=(1, 1))  # a new mtime even on a coarse clock
    second = load_pack(path)
    assert second.version != first.version and second.rule("two_of").score == 6
    with pytest.raises(QaRuleError, match="does not exist"):
        load_pack(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("rules: [", encoding="utf-8")
    with pytest.raises(QaRuleError, match="not valid YAML"):
        load_pack(tmp_path / "bad.yaml")
