"""Demo generator: timed conversations with agent behaviour, planted QA truth, usage profiles.

An independent reference checker (its own keyword lists and timing arithmetic, written
from the rule definitions) reads every generated conversation and must find exactly the
QA violations that ``ground_truth.json`` declares, so the truth is usable for measuring a
QA engine's precision and recall.
"""

from __future__ import annotations

import csv
import itertools
import json
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voxloop.demo.generator import PLANS, QA_RULE_IDS, generate_operator

CUSTOMERS, DAYS, SEED = 8000, 30, 5
LINE = re.compile(r"^\[(\d+\.\d)-(\d+\.\d)\] (坐席|客户|Agent|Customer)(?:：|: )(.+)$")
AGENT_ROLES = ("坐席", "Agent")
CJK = re.compile(r"[\u4e00-\u9fff]")

GREETING = re.compile(r"您好|你好|欢迎|hello|hi,|welcome|good morning", re.I)
SELF_INTRO = re.compile(r"工号\d{4}|\d{4}号|agent (?:number )?\d{4}|agent number is \d{4}", re.I)
VERIFY = re.compile(r"机主|身份证|服务密码|身份验证|核实身份|account holder|ID\?|service password")
ACCOUNT_OP = re.compile(
    r"查询|办理|变更|退订|开通|换成|let me check|i have (?:cancelled|set|turned on|enabled"
    r"|requested|already changed)|plan is changed|changed it to|change your plan|plan change",
    re.I,
)
PROHIBITED = re.compile(
    r"不知道|不归我管|你自己|爱投诉|don't know|not my job|yourself|complain if", re.I
)
PROMISE = re.compile(r"保证|肯定|绝对|guarantee|definitely|never happen|i promise", re.I)
EMPATHY = re.compile(r"抱歉|不好意思|理解您|别着急|sorry|apologise|understand how", re.I)
SOLUTION = re.compile(
    r"(?:帮您|为您|给您)(?:查询|登记|提交|升级|反馈|加急|催办|派单|申请|退订|办理|开通|预约|把|变更"
    r"|换成|改)|建议您|已经为您|已经帮您|已经给您|i have (?:logged|sent|cancelled|set|turned on"
    r"|enabled|requested|already changed)|i am escalating|let me check|plan is changed"
    r"|changed it to|plan change can be processed",
    re.I,
)
PLAN_DONE = re.compile(r"已经.{0,8}(?:变更|换成)|plan is changed|changed your plan|changed it to")
PLAN_ASK = re.compile(r"(?:变更|换成).*吗|change your plan\?")
CONSENT = re.compile(r"确认|可以|帮我改|yes|go ahead", re.I)
CLOSING = re.compile(r"再见|感谢您的来电|感谢您的咨询|祝您生活愉快|goodbye|have a nice day", re.I)
RATING = re.compile(r"评价|满意度|rate my service|survey", re.I)
EN_ANGER = (
    "This is ridiculous!", "Unacceptable.", "Terrible service.", "I am so frustrated.",
    "What a joke.", "Really disappointed.", "Every time you say that!", "Can you hurry up!",
    "This is unacceptable!",
)  # fmt: skip


Turn = tuple[float, float, bool, str]


@pytest.fixture(scope="module")
def operator(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Generate one mid-sized operator (about a thousand conversations)."""
    out = tmp_path_factory.mktemp("conversations")
    summary = generate_operator(customers=CUSTOMERS, days=DAYS, seed=SEED, out_dir=out)
    return out, summary


def _voices(out: Path) -> dict[str, dict[str, Any]]:
    with (out / "voices.jsonl").open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    return {r["id"]: r for r in rows}


def _truth(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "ground_truth.json").read_text(encoding="utf-8"))
    return data


def _turns(text: str) -> list[Turn]:
    turns = []
    for line in text.split("\n"):
        m = LINE.match(line)
        assert m, line
        turns.append((float(m[1]), float(m[2]), m[3] in AGENT_ROLES, m[4]))
    return turns


def _angry(text: str) -> bool:
    # Calm Chinese customer turns end in 。/？/nothing; English anger is a known phrase.
    return "！" in text or any(a in text for a in EN_ANGER)


def _check(turns: list[Turn]) -> set[str]:
    """Reference QA checker: return the rule ids a conversation violates."""
    found: set[str] = set()
    agent = [t for t in turns if t[2]]
    texts = [t[3] for t in agent]
    if not GREETING.search(texts[0]):
        found.add("greeting")
    if not any(SELF_INTRO.search(t) for t in texts):
        found.add("self_intro")
    first_op = next((i for i, t in enumerate(turns) if t[2] and ACCOUNT_OP.search(t[3])), None)
    if first_op is not None and not any(t[2] and VERIFY.search(t[3]) for t in turns[:first_op]):
        found.add("identity_verification")
    if any(PROHIBITED.search(t) for t in texts):
        found.add("prohibited_words")
    if any(PROMISE.search(t) for t in texts):
        found.add("unauthorised_promise")
    if any(not t[2] and _angry(t[3]) for t in turns) and not any(EMPATHY.search(t) for t in texts):
        found.add("empathy_when_angry")
    if not any(SOLUTION.search(t) for t in texts):
        found.add("solution_offered")
    for i, t in enumerate(turns):
        if t[2] and PLAN_DONE.search(t[3]):
            consented = (
                i >= 2
                and not turns[i - 1][2]
                and CONSENT.search(turns[i - 1][3])
                and turns[i - 2][2]
                and PLAN_ASK.search(turns[i - 2][3])
            )
            if not consented:
                found.add("no_unauthorised_plan_change")
    if not any(CLOSING.search(t) for t in texts):
        found.add("closing")
    if not any(RATING.search(t) for t in texts):
        found.add("invite_rating")
    last_end = 0.0
    for i, (start, end, is_agent, text) in enumerate(turns):
        if i and is_agent and start - last_end > 10.0:
            found.add("long_silence")
        if i and is_agent and not turns[i - 1][2] and start < turns[i - 1][1]:
            found.add("interruption")
        n_cjk = len(CJK.findall(text))
        if is_agent and end - start > 3.0 and n_cjk / (end - start) > 6.0:
            found.add("speaking_rate")
        last_end = max(last_end, end)
    return found


def test_conversations_use_the_timed_turn_format(operator: tuple[Path, dict[str, Any]]) -> None:
    out, summary = operator
    voices = _voices(out)
    truth = _truth(out)
    conv = [v for v in voices.values() if v["kind"] in ("call_transcript", "chat")]
    assert len(conv) == summary["qa_conversations"] > 500
    assert sorted(truth["qa_conversations"]) == sorted(v["id"] for v in conv)
    rates: list[float] = []
    gaps: list[float] = []
    for v in conv:
        turns = _turns(v["text"])
        assert len(turns) >= 4 and turns[0][2], v["id"]  # the agent picks up first
        assert {t[2] for t in turns} == {True, False}
        starts = [t[0] for t in turns]
        assert all(b >= a for a, b in itertools.pairwise(starts)), v["id"]
        assert all(t[1] > t[0] for t in turns)
        zh = v["language"] == "zh"
        assert bool(CJK.search(v["text"].split("\n")[0])) == zh
        if v["id"] not in truth["qa_violations"] and zh:
            for start, end, _, text in turns:
                rates.append(len(text) / (end - start))
            for a, b in itertools.pairwise(turns):
                gaps.append(b[0] - a[1])
    # Speaking 3-5 characters/s (punctuation included), gaps mostly 0.3-2 s.
    assert 2.5 < float(np.median(rates)) < 5.0 and max(rates) <= 5.01, max(rates)
    assert 0.3 <= float(np.median(gaps)) <= 2.0
    english = sum(v["language"] == "en" for v in conv) / len(conv)
    assert 0.04 < english < 0.18


def test_planted_violations_are_exactly_what_a_checker_finds(
    operator: tuple[Path, dict[str, Any]],
) -> None:
    out, _ = operator
    voices = _voices(out)
    truth = _truth(out)
    planted: dict[str, list[str]] = truth["qa_violations"]
    assert set(planted) <= set(truth["qa_conversations"])
    assert {r for rules in planted.values() for r in rules} == set(QA_RULE_IDS)
    mismatches = []
    for vid in truth["qa_conversations"]:
        found = _check(_turns(voices[vid]["text"]))
        if found != set(planted.get(vid, [])):
            mismatches.append((vid, sorted(found), planted.get(vid)))
    assert not mismatches, mismatches[:5]


def test_clean_agents_answer_anger_with_empathy(operator: tuple[Path, dict[str, Any]]) -> None:
    out, _ = operator
    voices = _voices(out)
    truth = _truth(out)
    angry_conv = answered = 0
    for vid in truth["qa_conversations"]:
        if "empathy_when_angry" in truth["qa_violations"].get(vid, []):
            continue
        turns = _turns(voices[vid]["text"])
        angry_at = [i for i, t in enumerate(turns) if not t[2] and _angry(t[3])]
        angry_conv += bool(angry_at)
        for i in angry_at:
            reply = next((t for t in turns[i + 1 :] if t[2]), None)
            assert reply is None or EMPATHY.search(reply[3]), (vid, turns[i][3], reply)
            answered += reply is not None
    assert angry_conv > 100 and answered >= angry_conv


def test_violation_shares_are_realistic_and_tied_to_agents(
    operator: tuple[Path, dict[str, Any]],
) -> None:
    out, _ = operator
    voices = _voices(out)
    truth = _truth(out)
    conv = truth["qa_conversations"]
    planted = truth["qa_violations"]
    n = len(conv)
    share_any = len(planted) / n
    assert 0.2 < share_any < 0.5, share_any  # most conversations are clean
    assert sum(len(r) >= 2 for r in planted.values()) / n > 0.03
    per_rule = Counter(r for rules in planted.values() for r in rules)
    for rule in QA_RULE_IDS:
        assert 0.003 < per_rule[rule] / n < 0.12, (rule, per_rule[rule] / n)

    # Agents are stable: one team each, teams are in the voice's city, job number = id.
    team_of: dict[str, set[str]] = defaultdict(set)
    for vid in conv:
        v = voices[vid]
        a = v["attributes"]
        team_of[a["agent_id"]].add(a["team"])
        assert re.fullmatch(r"A\d{4}", a["agent_id"]) and a["team"].startswith(v["city"])
        assert truth["qa_agents"][a["agent_id"]]["team"] == a["team"]
        if "self_intro" not in planted.get(vid, []):
            assert a["agent_id"][1:] in v["text"].split("\n")[0]
    assert all(len(t) == 1 for t in team_of.values())
    assert all(
        "agent_id" not in v["attributes"]
        for v in voices.values()
        if v["kind"] not in ("call_transcript", "chat")
    )

    # Some agents are much worse than others: violations per conversation are
    # overdispersed against one common rate (a chi-square dispersion index well above 1).
    calls: Counter[str] = Counter()
    bad: Counter[str] = Counter()
    for vid in conv:
        agent = voices[vid]["attributes"]["agent_id"]
        calls[agent] += 1
        bad[agent] += len(planted.get(vid, []))
    agents = [a for a in calls if calls[a] >= 5]
    assert len(agents) >= 30
    k = np.array([bad[a] for a in agents], dtype=float)
    m = np.array([calls[a] for a in agents], dtype=float)
    expected = m * k.sum() / m.sum()
    dispersion = float(((k - expected) ** 2 / expected).sum() / (len(agents) - 1))
    assert dispersion > 2.0, dispersion
    team_calls: Counter[str] = Counter()
    team_bad: Counter[str] = Counter()
    for a in calls:
        team = truth["qa_agents"][a]["team"]
        team_calls[team] += calls[a]
        team_bad[team] += bad[a]
    team_rates = [team_bad[t] / team_calls[t] for t in team_calls if team_calls[t] >= 20]
    assert len(team_rates) >= 10 and max(team_rates) > 2 * min(team_rates), team_rates


def test_scenario_text_stays_in_customer_turns(operator: tuple[Path, dict[str, Any]]) -> None:
    out, _ = operator
    voices = _voices(out)
    truth = _truth(out)
    surge = next(p for p in truth["problems"] if p["id"] == "inc-billing-surge")
    checked = 0
    for vid in surge["voice_ids"]:
        v = voices[vid]
        if v["kind"] not in ("call_transcript", "chat") or v["language"] != "zh":
            continue
        customer = " ".join(t[3] for t in _turns(v["text"]) if not t[2])
        assert "19.9元" in customer, v["text"]
        checked += 1
    assert checked >= 5


def test_profiles_carry_monthly_usage_and_the_overpaying_group(
    operator: tuple[Path, dict[str, Any]],
) -> None:
    out, summary = operator
    truth = _truth(out)
    with (out / "customers.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    data = np.array([float(json.loads(r["attributes"])["data_used_gb"]) for r in rows])
    voice = np.array([float(json.loads(r["attributes"])["voice_used_min"]) for r in rows])
    allow_d = np.array([float(r["plan_data_gb"]) for r in rows])
    allow_v = np.array([float(r["plan_voice_minutes"]) for r in rows])
    fee = np.array([float(r["plan_monthly_fee"]) for r in rows])
    assert (data >= 0).all() and (voice >= 0).all()
    with_minutes = allow_v > 0
    under = (data <= allow_d) & (~with_minutes | (voice <= allow_v))
    assert under.mean() > 0.85
    over = data > allow_d
    assert 0.01 < over.mean() < 0.12, over.mean()
    # Independent check of the overpaying truth: cheapest open plan covering 1.2x usage.
    open_plans = [p for p in PLANS if p.segment == "mass_market"]
    cover = np.full(len(rows), np.inf)
    for p in open_plans:
        fits = (p.data_gb >= 1.2 * data) & (p.voice_minutes >= 1.2 * voice)
        cover = np.where(fits, np.minimum(cover, p.monthly_fee), cover)
    overpaying = {r["id"] for r, c, f in zip(rows, cover, fee, strict=True) if c <= 0.5 * f}
    assert overpaying == set(truth["overpaying_customers"])
    assert 0.03 < len(overpaying) / len(rows) < 0.08
    assert summary["overpaying_customers"] == len(overpaying)
    assert all(f >= 58 for r, f in zip(rows, fee, strict=True) if r["id"] in overpaying)


def test_conversations_are_deterministic(tmp_path: Path) -> None:
    args = {"customers": 400, "days": 14}
    generate_operator(**args, seed=2, out_dir=tmp_path / "a")
    generate_operator(**args, seed=2, out_dir=tmp_path / "b")
    generate_operator(**args, seed=3, out_dir=tmp_path / "c")
    for name in ("voices.jsonl", "customers.csv", "ground_truth.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert _truth(tmp_path / "a")["qa_violations"] != _truth(tmp_path / "c")["qa_violations"]
