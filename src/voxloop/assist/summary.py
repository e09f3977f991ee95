"""Call → work order: a structured summary of a finished conversation and the order it pre-fills.

The summary is extractive and rule-based, in the spirit of NICE AutoSummary's fields
(intent, actions taken, customer sentiment, outcome, promised follow-up, entities): the
scenario, sentiment and urgency come from the understanding bundle, the customer intent
from the taxonomy's intent rules, the agent's actions and promises from cue lexicons over
agent turns, entities from patterns that read Chinese numerals (四十八小时, 十三块九毛).
Everything is read from PII-masked text; an optional OpenAI-compatible LLM may rewrite
the prose abstract (:mod:`voxloop.assist.llm`), never the structured fields.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
from sqlalchemy.orm import Session

from voxloop.act.access import Principal, require
from voxloop.act.commitments import CommitmentBook, due_for_order, load_commitments
from voxloop.act.routing import RoutingTable, load_routing, route
from voxloop.act.schemas import OrderCreate, OrderOut
from voxloop.assist.summary_schemas import (
    Action,
    Amount,
    ConversationSummary,
    DataVolume,
    Entities,
    FollowUp,
    RouteInfo,
    SummaryRequest,
    SummaryResponse,
    Turn,
    WorkOrderDraft,
)
from voxloop.config import Settings
from voxloop.errors import PermissionDeniedError, UnusableInputError
from voxloop.ingest.pii import mask_text
from voxloop.understand.reading import ReadingBundle, read_table

# --------------------------------------------------------------------------- transcripts

_SPEAKERS = {
    "坐席": "agent",
    "客服": "agent",
    "agent": "agent",
    "客户": "customer",
    "用户": "customer",
    "customer": "customer",
}
_TIME = r"\d{1,2}(?::\d{2}){0,2}(?:\.\d+)?"
_LABEL = re.compile(
    rf"(?:\[\s*(?P<start>{_TIME})\s*[-–~]\s*(?P<end>{_TIME})\s*\]\s*)?"
    r"(?P<who>坐席|客服|客户|用户|Agent|Customer|AGENT|CUSTOMER)\s*[：:]"
)


def _seconds(stamp: str | None) -> float | None:
    if stamp is None:
        return None
    total = 0.0
    for part in stamp.split(":"):
        total = total * 60 + float(part)
    return total


def parse_transcript(text: str) -> list[Turn]:
    """Split a transcript into masked turns.

    Reads the project's format — one turn per line ``[start-end] 坐席：…`` or ``坐席：…`` /
    ``客户：…`` (also several turns on one line, as the generator writes them) — and
    ``Agent:``/``Customer:``. Text without speaker labels is one customer turn.
    """
    if not isinstance(text, str) or not text.strip():
        raise UnusableInputError("text: the conversation is empty")
    masked, _ = mask_text(text)
    matches = list(_LABEL.finditer(masked))
    if not matches:
        return [Turn(speaker="customer", text=masked.strip())]
    turns: list[Turn] = []
    lead = masked[: matches[0].start()].strip()
    if lead:
        turns.append(Turn(speaker="customer", text=lead))
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(masked)
        body = masked[m.end() : end].strip()
        if not body:
            continue
        turns.append(
            Turn(
                speaker="agent" if _SPEAKERS[m.group("who").lower()] == "agent" else "customer",
                text=body,
                start=_seconds(m.group("start")),
                end=_seconds(m.group("end")),
            )
        )
    return turns


def mobilecs_turns(dialogue: dict[str, Any]) -> list[Turn]:
    """Return the masked turns of one MobileCS dialogue (``[SPEAKER 1]`` is the agent)."""
    content = dialogue.get("content")
    if not isinstance(content, list):
        raise UnusableInputError(f"dialogue {dialogue.get('id')!r}: 'content' is not a list")
    turns: list[Turn] = []
    for i, t in enumerate(content):
        if not isinstance(t, dict):
            raise UnusableInputError(f"dialogue {dialogue.get('id')!r}, turn {i}: not an object")
        for key, speaker in (("[SPEAKER 1]", "agent"), ("[SPEAKER 2]", "customer")):
            value = t.get(key)
            if isinstance(value, str) and value.strip():
                masked, _ = mask_text(value.strip())
                turns.append(
                    Turn(speaker="agent" if speaker == "agent" else "customer", text=masked)
                )
    return turns


# --------------------------------------------------------------------------- numbers

_CN_DIGITS = {
    "零": 0,
    "〇": 0,
    "一": 1,
    "幺": 1,
    "二": 2,
    "两": 2,
    "俩": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000}
_CN_BIG = {"万": 10_000, "亿": 100_000_000}
NUM = r"(?:\d+(?:\.\d+)?|[零〇一二两三四五六七八九十百千万]+)"


def cn_number(text: str) -> float | None:
    """Return the value of a number written in digits or Chinese numerals (None if not one).

    Handles 十三, 四十八, 一千三百六十八, 两, 零 gaps (一百零五), the spoken
    abbreviation 二千五 (2,500) and digit strings read out one by one (二零一五).
    """
    s = text.strip()
    if not s:
        return None
    if re.fullmatch(r"\d+(?:\.\d+)?", s):
        return float(s)
    if any(c not in _CN_DIGITS and c not in _CN_UNITS and c not in _CN_BIG for c in s):
        return None
    if len(s) > 1 and all(c in _CN_DIGITS for c in s):
        return float("".join(str(_CN_DIGITS[c]) for c in s))
    total, section, num = 0, 0, 0
    last_unit, prev_was_unit = 0, False
    for c in s:
        if c in _CN_DIGITS:
            num = _CN_DIGITS[c]
            prev_was_unit = False
        elif c in _CN_UNITS:
            unit = _CN_UNITS[c]
            section += (num or (1 if unit == 10 else 0)) * unit
            num, last_unit, prev_was_unit = 0, unit, True
        else:
            total += (section + num) * _CN_BIG[c]
            section, num, last_unit, prev_was_unit = 0, 0, 0, False
    if num:
        # "二千五" = 2,500 and "一百五" = 150: a bare digit right after a unit is one order lower.
        last_char_digit = s[-1] in _CN_DIGITS
        follows_unit = len(s) >= 2 and s[-2] in _CN_UNITS
        if last_char_digit and follows_unit and last_unit >= 100:
            section += num * (last_unit // 10)
        else:
            section += num
    del prev_was_unit
    return float(total + section)


# --------------------------------------------------------------------------- entities

_SMALL = r"(?:\d|[一二两三四五六七八九])"
_AMOUNT = re.compile(
    rf"[¥￥]\s*(?P<sym>\d+(?:\.\d+)?)"
    rf"|(?P<yuan>{NUM})\s*(?:元|块钱|块(?!儿))(?:(?P<jiao>{_SMALL})(?:毛|角)(?:(?P<fen>{_SMALL})分?)?)?(?:钱)?"
    rf"|(?P<mao>{NUM})(?:毛|角)(?P<mfen>{_SMALL})?(?:分)?(?:钱)?"
    r"|\$\s*(?P<usd>\d+(?:\.\d+)?)"
)
_VOLUME = re.compile(
    rf"(?P<n>{NUM}|半)\s*(?:个)?\s*(?P<u>GB|gb|G|g|吉|兆|MB|mb|M|TB|T)(?![A-Za-z])"
)
# "4G网", "从三G改到二G": network generations, not data volumes.
_NETWORK_AFTER = re.compile(r"^\s*(?:网|信号|基站|手机|卡|制式|模式|的网|更改|改|到|转)")
_NETWORK_BEFORE = re.compile(r"(?:从|到|成|改|换|切换)$")
_DATE = re.compile(
    r"(?:[0-9零〇一二三四五六七八九]{4}年)?"
    r"(?:(?:下个?|上个?|本|这个)?(?:[0-9一二三四五六七八九十]{1,3})?月)?"
    r"[0-9一二三四五六七八九十]{1,3}[号日](?![码线网卡])"
    r"|[0-9零〇一二三四五六七八九]{4}年"
    r"|(?:今天|明天|后天|昨天|前天|上个月|下个月|上月|下月|本月|这个月|月底|月初|当天|当日)"
)
_PLAN_HEADS = (
    "流量套餐",
    "流量包",
    "加油包",
    "叠加包",
    "放心包",
    "半年包",
    "季度包",
    "包月",
    "套餐",
    "彩信",
    "手机报",
    "短号网",
    "惠农网",
    "亲情网",
    "家庭网",
    "彩铃",
    "宽带",
    "会员",
    "合约",
    "副卡",
    "流量卡",
    "活动",
    "业务",
)
_PLAN_WORDS = re.compile(
    "|".join(sorted(_PLAN_HEADS, key=len, reverse=True))
    + r"|(?:周末|夜间|闲时|定向)流量(?!剩余|余额)"
)
# A plan name reaches left over name characters, never over function words.
# Verbs (购, 参加), quantifiers (好多) and particles end a name too.
_PLAN_STOP = set(
    "的了吗呢吧啊嗯哦我你您他她它这那个是在有要想办开取消问查给帮把就都也还和跟对说下么什没不以及或用走先再订"
    "退变改换交扣送卡那些剩里上为该购买参加多"
)
#: Heads that name nothing on their own ("这个业务").
_GENERIC = {"套餐", "活动", "业务", "包月", "会员", "合约"}


def _amount_value(m: re.Match[str]) -> float | None:
    if m.group("sym") is not None:
        return float(m.group("sym"))
    if m.group("usd") is not None:
        return float(m.group("usd"))
    if m.group("yuan") is not None:
        base = cn_number(m.group("yuan"))
        if base is None:
            return None
        jiao = cn_number(m.group("jiao")) if m.group("jiao") else 0.0
        fen = cn_number(m.group("fen")) if m.group("fen") else 0.0
        return round(base + (jiao or 0) / 10 + (fen or 0) / 100, 2)
    if m.group("mao") is not None:
        mao = cn_number(m.group("mao"))
        fen = cn_number(m.group("mfen")) if m.group("mfen") else 0.0
        return None if mao is None else round(mao / 10 + (fen or 0) / 100, 2)
    return None


def extract_amounts(text: str) -> list[Amount]:
    """Return money amounts in ``text`` (¥12, 50元, 三十四块一毛九, 一毛九)."""
    out: list[Amount] = []
    for m in _AMOUNT.finditer(text):
        value = _amount_value(m)
        if value is not None:
            currency = "USD" if m.group("usd") is not None else "CNY"
            out.append(Amount(text=m.group(0), value=value, currency=currency))
    return out


def extract_volumes(text: str) -> list[DataVolume]:
    """Return data volumes in ``text`` in MB (一个G = 1024, 五百兆 = 500); not 4G networks."""
    out: list[DataVolume] = []
    for m in _VOLUME.finditer(text):
        n = 0.5 if m.group("n") == "半" else cn_number(m.group("n"))
        if n is None:
            continue
        unit = m.group("u").upper()
        if (
            unit in {"G", "GB", "吉"}
            and n in {2, 3, 4, 5}
            and (_NETWORK_AFTER.match(text[m.end() :]) or _NETWORK_BEFORE.search(text[: m.start()]))
        ):
            continue
        factor = {"G": 1024.0, "GB": 1024.0, "吉": 1024.0, "T": 1024.0**2, "TB": 1024.0**2}.get(
            unit, 1.0
        )
        out.append(DataVolume(text=m.group(0), value_mb=n * factor))
    return out


def extract_dates(text: str) -> list[str]:
    """Return date expressions (六月六号, 下个月一号, 2015年, 月底)."""
    return [m.group(0) for m in _DATE.finditer(text)]


def extract_plans(text: str) -> list[str]:
    """Return plan and product names (飞享套餐, 流量放心包); bare generic words dropped."""
    out: list[str] = []
    for m in _PLAN_WORDS.finditer(text):
        start = m.start()
        while start > 0 and m.start() - start < 6:
            c = text[start - 1]
            if c in _PLAN_STOP or not (c.isalnum() or "\u4e00" <= c <= "\u9fff"):
                break
            start -= 1
        name = text[start : m.end()]
        if name in _GENERIC:
            continue
        out.append(name)
    return out


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class _Cue:
    code: str
    label: str
    pattern: re.Pattern[str]


_ACTIONS = (
    _Cue("cancel", "取消/退订", re.compile(r"取消|退订|关闭|注销|退掉")),
    _Cue("change", "变更", re.compile(r"变更|更改|改为|改成|换成|调整为")),
    _Cue("open", "办理/开通", re.compile(r"办理|开通|订购|加办")),
    _Cue("compensate", "补偿/返还", re.compile(r"补偿|赠送|返还|退还|退费|减免|送您|返您")),
    _Cue(
        "refer",
        "转交处理",
        re.compile(r"反馈|上报|转交|派单|工单|升级处理|相关部门|专员|安排.{0,6}(?:师傅|人员|上门)"),
    ),
    _Cue("sms", "发送短信", re.compile(r"短信")),
    _Cue("query", "查询", re.compile(r"查询|查一下|查看|帮您查|给您查|为您查|看一下|核实")),
)
# The agent acting for the customer ("我帮您退订"), not describing the past ("您已经取消过了").
_FOR_CUSTOMER = re.compile(
    r"(?:为|帮|给|替)(?:您|你)|会在|将在|我这边|我这面|我现在|我们|我来|我给|我帮|我已|我以"
)
_REFUSED = re.compile(r"不了|不掉|无法|没办法|没有办法|不能|不可以|不支持|办不|取不")
_PROMISED = re.compile(r"稍后|尽快|马上|会|将|等会|一会|待会|请您.{0,4}留意|请.{0,4}注意查收")
_DONE = re.compile(r"已经|已|了|好了|成功")
_CLAUSE = re.compile(r"[，。！？!?；;,_\n]+")

_DURATION = re.compile(
    rf"(?P<n>{NUM}|半)\s*(?:个)?\s*(?P<u>小时|工作日|天|日|分钟|周|星期)(?:内|之内|以内)?"
)
_FOLLOW = (
    ("callback", re.compile(r"回电|回复您|回访|联系您|致电|给您回|打给您|联系到您")),
    ("visit", re.compile(r"上门|师傅|工作人员.{0,6}(?:去|来|联系)")),
    ("processing", re.compile(r"处理|反馈|解决|核实")),
    ("sms", re.compile(r"短信")),
    ("effective", re.compile(r"生效|到账|恢复|返还|退还|退回")),
)
_FOLLOW_CUE = re.compile(r"稍后|尽快|会|将|请您|留意|等|之内|以内|内|不超过|预计|下个?月|明天|后天")


def _hours(m: re.Match[str]) -> float | None:
    n = 0.5 if m.group("n") == "半" else cn_number(m.group("n"))
    if n is None:
        return None
    per = {"小时": 1.0, "工作日": 24.0, "天": 24.0, "日": 24.0, "分钟": 1 / 60, "周": 168.0}
    return n * per.get(m.group("u"), 168.0)


def extract_actions(turns: Sequence[Turn]) -> list[Action]:
    """Return the agent's actions, one per (action, clause), with done/promised/refused."""
    out: list[Action] = []
    for i, turn in enumerate(turns):
        if turn.speaker != "agent":
            continue
        for clause in _CLAUSE.split(turn.text):
            if not clause:
                continue
            # "被开通了" reports what happened to the customer, not what the agent did.
            if not _FOR_CUSTOMER.search(clause) or "被" in clause:
                continue
            for cue in _ACTIONS:
                if not cue.pattern.search(clause):
                    continue
                if _REFUSED.search(clause):
                    status = "refused"
                elif _PROMISED.search(clause) and not re.search(r"已经|已", clause):
                    status = "promised"
                elif _DONE.search(clause):
                    status = "done"
                else:
                    status = "promised"
                out.append(
                    Action(code=cue.code, label=cue.label, status=status, turn=i, evidence=clause)
                )
                break
    return out


def extract_follow_ups(turns: Sequence[Turn]) -> list[FollowUp]:
    """Return the agent's promises (callback, visit, SMS, processing) with their due time."""
    out: list[FollowUp] = []
    for i, turn in enumerate(turns):
        if turn.speaker != "agent":
            continue
        for clause in _CLAUSE.split(turn.text):
            if not clause or not _FOLLOW_CUE.search(clause) or _REFUSED.search(clause):
                continue
            # "短信已经下发了" reports something done, not a promise.
            if re.search(r"已经|已|了$", clause) and not re.search(r"稍后|尽快|会|将", clause):
                continue
            kind = next((k for k, p in _FOLLOW if p.search(clause)), None)
            if kind is None:
                continue
            dm = _DURATION.search(clause)
            dates = extract_dates(clause)
            out.append(
                FollowUp(
                    kind=kind,
                    text=clause,
                    due_text=dm.group(0) if dm else (dates[0] if dates else None),
                    due_hours=_hours(dm) if dm else None,
                    turn=i,
                )
            )
    return out


# --------------------------------------------------------------------------- intent, outcome

_REQUEST_INTENTS = ("escalate", "cancel", "refund", "request_change", "repair", "inquire")
_UNRESOLVED = re.compile(
    r"还是不行|还是没|没用|没解决|解决不了|不满意|算了|什么破|太差|投诉|有问题|不行啊|怎么还|还不能"
)
_ACKNOWLEDGED = re.compile(
    r"谢谢|好的|好嘞|好咧|行|知道了|明白了|清楚|没有了|没啦|没了|再见|可以|ok|thank", re.I
)


def customer_intents(turns: Sequence[Turn], bundle: ReadingBundle) -> list[str]:
    """Return the request intents of the customer's turns, main one first.

    Each customer turn gets its highest-priority taxonomy intent (as a reading does);
    praise and the default ``complain`` are not requests. The main intent is the one of
    highest priority, ties going to the earliest.
    """
    intents = sorted(bundle.taxonomy.intents, key=lambda x: -x.priority)
    compiled = [(x.code, x.priority, re.compile(x.pattern, re.I)) for x in intents]
    seen: dict[str, tuple[int, int]] = {}
    for i, turn in enumerate(turns):
        if turn.speaker != "customer":
            continue
        text = turn.text.lower()
        hit = next(((code, prio) for code, prio, p in compiled if p.search(text)), None)
        if hit and hit[0] in _REQUEST_INTENTS and hit[0] not in seen:
            seen[hit[0]] = (hit[1], i)
    return sorted(seen, key=lambda c: (-seen[c][0], seen[c][1]))


def _outcome(
    turns: Sequence[Turn],
    intents: Sequence[str],
    actions: Sequence[Action],
    follow_ups: Sequence[FollowUp],
    sentiment_end: str,
) -> tuple[str, str]:
    customer = [t.text for t in turns if t.speaker == "customer"]
    tail = " ".join(customer[-2:])
    if "escalate" in intents:
        return "escalated", "the customer asked to complain or escalate"
    if any(a.code == "refer" and a.status != "refused" for a in actions) or any(
        f.kind in {"callback", "visit", "processing"} for f in follow_ups
    ):
        return "escalated", "the agent handed the case on or promised a callback/visit"
    if _UNRESOLVED.search(tail) or sentiment_end == "negative":
        return "unresolved", "the customer's last turns are negative"
    refused = [a for a in actions if a.status == "refused"]
    if refused and not any(a.status == "done" for a in actions if a.turn > refused[-1].turn):
        return "unresolved", f"the agent could not {refused[-1].label}"
    if _ACKNOWLEDGED.search(tail):
        return "resolved", "the customer acknowledged the answer"
    return "unresolved", "no acknowledgement from the customer"


# --------------------------------------------------------------------------- summary


def _headline(turns: Sequence[Turn]) -> str:
    for turn in turns:
        if turn.speaker != "customer":
            continue
        clauses = [c for c in _CLAUSE.split(turn.text) if len(c) >= 4]
        if clauses:
            return "，".join(clauses[:2])[:80]
    return (turns[0].text if turns else "")[:80]


_OUTCOME_ZH = {"resolved": "已解决", "unresolved": "未解决", "escalated": "已转交/待跟进"}
_STATUS_ZH = {"done": "已办", "promised": "承诺", "refused": "未能办理"}
_SENTIMENT_ZH = {"negative": "负面", "neutral": "中性", "positive": "正面"}


def template_abstract(summary: ConversationSummary) -> str:
    """Write the summary's prose abstract in Chinese from its fields (no model)."""
    parts = [f"客户诉求：{summary.headline}"]
    if summary.scenario_label:
        parts.append(f"场景：{summary.scenario_label}（{summary.scenario}）")
    if summary.intent_label:
        parts.append(f"意图：{summary.intent_label}")
    if summary.actions:
        done = _unique(f"{a.label}（{_STATUS_ZH[a.status]}）" for a in summary.actions)
        parts.append("坐席处理：" + "、".join(done[:6]))
    parts.append(
        f"客户情绪：{_SENTIMENT_ZH.get(summary.sentiment, summary.sentiment)}"
        f"，结束时{_SENTIMENT_ZH.get(summary.sentiment_end, summary.sentiment_end)}"
    )
    parts.append(f"结果：{_OUTCOME_ZH[summary.outcome]}")
    if summary.follow_ups:
        parts.append(
            "承诺跟进："
            + "；".join(
                f.text + (f"（{f.due_text}）" if f.due_text else "") for f in summary.follow_ups[:3]
            )
        )
    ent = summary.entities
    bits = [
        *ent.plans[:4],
        *(a.text for a in ent.amounts[:4]),
        *(v.text for v in ent.data_volumes[:3]),
    ]
    if bits:
        parts.append("要素：" + "、".join(_unique(bits)))
    return "。".join(parts) + "。"


def summarize_turns(
    turns: Sequence[Turn], *, bundle: ReadingBundle, pii: dict[str, int] | None = None
) -> ConversationSummary:
    """Summarise masked ``turns`` with the understanding ``bundle`` (no LLM)."""
    if not turns:
        raise UnusableInputError("text: the conversation has no turns")
    customer = [t.text for t in turns if t.speaker == "customer"] or [turns[-1].text]
    everything = "\n".join(t.text for t in turns)
    readings = read_table(
        pa.table(
            {
                "id": ["all", "end"],
                "text": ["。".join(customer), "。".join(customer[-2:])],
            }
        ),
        bundle=bundle,
    ).to_pylist()
    whole, end = readings[0], readings[1]
    intents = customer_intents(turns, bundle)
    actions = extract_actions(turns)
    follow_ups = extract_follow_ups(turns)
    outcome, reason = _outcome(turns, intents, actions, follow_ups, str(end["sentiment"]))
    tax = bundle.taxonomy
    scenario = whole["scenario"]
    intent_obj = next((x for x in tax.intents if intents and x.code == intents[0]), None)
    try:
        scenario_label = tax.scenario(scenario).zh if scenario else None
    except (KeyError, ValueError):
        scenario_label = None
    entities = Entities(
        amounts=list({(a.text, a.value): a for a in extract_amounts(everything)}.values()),
        data_volumes=list({(v.text, v.value_mb): v for v in extract_volumes(everything)}.values()),
        plans=_unique(extract_plans(everything)),
        dates=_unique(extract_dates(everything)),
        pii=dict(pii or {}),
    )
    summary = ConversationSummary(
        intent=intents[0] if intents else None,
        intent_label=intent_obj.zh if intent_obj else None,
        intents=intents,
        scenario=scenario,
        scenario_label=scenario_label,
        subcategory=whole["subcategory"],
        scenario_confidence=float(whole["scenario_confidence"]),
        actions=actions,
        sentiment=str(whole["sentiment"]),
        sentiment_score=float(whole["sentiment_score"]),
        sentiment_end=str(end["sentiment"]),
        emotion=whole["emotion"],
        urgency=float(whole["urgency"]),
        outcome=outcome,
        outcome_reason=reason,
        follow_ups=follow_ups,
        entities=entities,
        headline=_headline(turns),
        abstract="",
        turns=len(turns),
        model_version=bundle.version,
    )
    summary.abstract = template_abstract(summary)
    return summary


def summarize_text(text: str, *, bundle: ReadingBundle) -> ConversationSummary:
    """Parse, mask and summarise a transcript (no LLM)."""
    _, pii = mask_text(text)
    return summarize_turns(parse_transcript(text), bundle=bundle, pii=pii)


def summarize(
    *,
    settings: Settings,
    text: str,
    use_llm: bool = True,
    bundle: ReadingBundle | None = None,
) -> ConversationSummary:
    """Summarise a transcript with the saved understanding models; LLM prose if configured.

    Without ``VOXLOOP_ASSIST_LLM`` (or when the endpoint fails) the abstract is the
    template one and ``source`` says ``template``; the structured fields never depend on
    the LLM.
    """
    from voxloop.understand.service import load_bundle

    chosen = bundle or load_bundle(settings=settings)
    turns = parse_transcript(text)
    _, pii = mask_text(text)
    summary = summarize_turns(turns, bundle=chosen, pii=pii)
    if use_llm and settings.assist_llm:
        from voxloop.assist.llm import refine_summary

        summary = refine_summary(settings=settings, summary=summary, turns=turns)
    return summary


# --------------------------------------------------------------------------- work order

_PRIORITY_URGENT = 0.8


def draft_order(
    summary: ConversationSummary,
    *,
    text: str,
    voice_id: str | None = None,
    customer_id: str | None = None,
    channel: str | None = None,
    province: str | None = None,
    city: str | None = None,
    district: str | None = None,
    segment: str | None = None,
    at: datetime | None = None,
    routing: RoutingTable | None = None,
    book: CommitmentBook | None = None,
) -> WorkOrderDraft:
    """Pre-fill a work order from ``summary``; route it and compute its due times.

    Nothing is stored: the draft carries the ``OrderCreate`` the act domain accepts, the
    route its rules choose and the SLA due time from the service commitments, plus the
    earliest due time the agent promised in the call.
    """
    from typing import get_args

    from voxloop.act.schemas import ScenarioCode

    at = at or datetime.now(UTC)
    scenario = summary.scenario if summary.scenario in get_args(ScenarioCode) else None
    if "escalate" in summary.intents or (summary.urgency or 0) >= _PRIORITY_URGENT:
        priority = "urgent"
    elif summary.outcome != "resolved" and summary.sentiment == "negative":
        priority = "high"
    elif summary.sentiment == "negative" or summary.outcome == "escalated":
        priority = "high" if summary.sentiment == "negative" else "normal"
    else:
        priority = "normal"
    label = summary.intent_label or "来电"
    where = f"{summary.scenario_label}：" if summary.scenario_label else ""
    title = f"[{label}] {where}{summary.headline}"
    masked, _ = mask_text(text)
    key_src = voice_id or hashlib.sha256(masked.encode("utf-8")).hexdigest()[:32]
    order = OrderCreate(
        title=title[:300],
        description=(summary.abstract + "\n\n" + masked)[:20_000],
        source_kind="voice" if voice_id else "manual",
        source_ref=voice_id,
        scenario=scenario,
        subcategory=summary.subcategory if scenario else None,
        channel=channel,
        segment=segment,
        province=province,
        city=city,
        district=district,
        priority=priority,
        voice_ids=[voice_id] if voice_id else [],
        customer_ids=[customer_id] if customer_id else [],
        idempotency_key=f"summary:{key_src}",
    )
    decision = route(
        table=routing or load_routing(),
        scenario=order.scenario,
        province=province,
        city=city,
        channel=channel,
        segment=segment,
        source_kind=order.source_kind,
    )
    commitment_id, due_at = due_for_order(
        book=book or load_commitments(), scenario=order.scenario, channel=channel, start=at
    )
    promised = [f.due_hours for f in summary.follow_ups if f.due_hours is not None]
    return WorkOrderDraft(
        order=order,
        routing=RouteInfo(**decision.model_dump()),
        commitment_id=commitment_id,
        sla_due_at=due_at,
        promised_due_at=at + timedelta(hours=min(promised)) if promised else None,
    )


# --------------------------------------------------------------------------- MobileCS evaluation

#: MobileCS user-intent labels → taxonomy intents (labels outside this map are not requests).
MOBILECS_INTENTS = {
    "求助-查询": "inquire",
    "询问": "inquire",
    "求助-故障": "repair",
    "取消": "cancel",
}
_AMOUNT_PROPS = {"业务费用", "账户余额", "国内主叫"}
_VOLUME_PROPS = {"流量总量", "流量余额"}
_PLAN_TYPES = {"流量包", "主套餐", "附加套餐", "套餐", "业务"}


def _norm_name(name: str) -> str:
    return re.sub(r"[\s_]|那个|这个|的$", "", name)


def mobilecs_gold(dialogue: dict[str, Any]) -> dict[str, set[Any]]:
    """Return a MobileCS dialogue's annotated intents, amounts, volumes and plan names."""
    intents: set[str] = set()
    amounts: set[float] = set()
    volumes: set[float] = set()
    plans: set[str] = set()
    for turn in dialogue.get("content", []):
        for label in str(turn.get("用户意图", "")).split(","):
            head = re.split(r"[（(]", label.strip(), maxsplit=1)[0]
            if head in MOBILECS_INTENTS:
                intents.add(MOBILECS_INTENTS[head])
        info = turn.get("info") or {}
        for ent in info.get("ents", []):
            if ent.get("type") in _PLAN_TYPES and _norm_name(str(ent.get("name", ""))):
                plans.add(_norm_name(str(ent["name"])))
        for triple in info.get("triples", []):
            value = str(triple.get("value", ""))
            if triple.get("prop") in _AMOUNT_PROPS:
                amounts.update(a.value for a in extract_amounts(value))
                if not extract_amounts(value) and cn_number(value) is not None:
                    amounts.add(float(cn_number(value) or 0))
            elif triple.get("prop") in _VOLUME_PROPS:
                volumes.update(v.value_mb for v in extract_volumes(value))
    return {"intent": intents, "amount": amounts, "data_volume": volumes, "plan": plans}


def _predicted(summary: ConversationSummary) -> dict[str, set[Any]]:
    return {
        "intent": {i for i in summary.intents if i in set(MOBILECS_INTENTS.values())},
        "amount": {a.value for a in summary.entities.amounts},
        "data_volume": {v.value_mb for v in summary.entities.data_volumes},
        "plan": {_norm_name(p) for p in summary.entities.plans},
    }


def _overlap_hits(pred: set[str], gold: set[str]) -> tuple[int, int]:
    tp_pred = sum(any(p in g or g in p for g in gold) for p in pred)
    tp_gold = sum(any(p in g or g in p for p in pred) for g in gold)
    return tp_pred, tp_gold


def evaluate_mobilecs(*, path: Path, bundle: ReadingBundle | None = None) -> dict[str, Any]:
    """Field-level precision/recall of the summary against MobileCS's own annotations.

    Per dialogue, the predicted and annotated sets are compared, then counts are summed
    over dialogues (micro-average). Intents: the customer-turn labels 求助-查询/询问 →
    inquire, 求助-故障 → repair, 取消 → cancel; predicted intents outside these three (the
    scheme has no label for them) are counted apart. Amounts (业务费用, 账户余额, 国内主叫)
    and data volumes (流量总量, 流量余额) match by value. Plan/product names (entities of
    type 流量包/主套餐/附加套餐/套餐/业务) match exactly after dropping 那个/这个/_, and
    leniently when one name contains the other.
    """
    from voxloop.understand.reading import build_bundle
    from voxloop.understand.taxonomy import default_taxonomy

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UnusableInputError(f"{path}: cannot read MobileCS JSON ({exc})") from exc
    if not isinstance(data, list):
        raise UnusableInputError(f"{path}: expected a list of dialogues")
    chosen = bundle or build_bundle(taxonomy=default_taxonomy())
    counts = {
        f: {"tp_p": 0, "tp_g": 0, "pred": 0, "gold": 0}
        for f in ("intent", "amount", "data_volume", "plan")
    }
    lenient = {"tp_p": 0, "tp_g": 0}
    outside = 0
    per_dialogue = []
    for dialogue in data:
        summary = summarize_turns(mobilecs_turns(dialogue), bundle=chosen)
        gold, pred = mobilecs_gold(dialogue), _predicted(summary)
        outside += len([i for i in summary.intents if i not in set(MOBILECS_INTENTS.values())])
        for field in counts:
            hit = len(pred[field] & gold[field])
            c = counts[field]
            c["tp_p"] += hit
            c["tp_g"] += hit
            c["pred"] += len(pred[field])
            c["gold"] += len(gold[field])
        lp, lg = _overlap_hits(pred["plan"], gold["plan"])
        lenient["tp_p"] += lp
        lenient["tp_g"] += lg
        per_dialogue.append(
            {
                "id": dialogue.get("id"),
                "outcome": summary.outcome,
                "follow_ups": len(summary.follow_ups),
                **{f"{k}_gold": sorted(map(str, v)) for k, v in gold.items()},
                **{f"{k}_pred": sorted(map(str, v)) for k, v in pred.items()},
            }
        )

    def pr(tp_p: int, tp_g: int, n_pred: int, n_gold: int) -> dict[str, Any]:
        return {
            "precision": round(tp_p / n_pred, 3) if n_pred else None,
            "recall": round(tp_g / n_gold, 3) if n_gold else None,
            "predicted": n_pred,
            "annotated": n_gold,
        }

    fields = {f: pr(c["tp_p"], c["tp_g"], c["pred"], c["gold"]) for f, c in counts.items()}
    fields["plan_lenient"] = pr(
        lenient["tp_p"], lenient["tp_g"], counts["plan"]["pred"], counts["plan"]["gold"]
    )
    return {
        "dialogues": len(data),
        "fields": fields,
        "intents_outside_scheme": outside,
        "per_dialogue": per_dialogue,
    }


# --------------------------------------------------------------------------- request service


def summary_for_request(
    *,
    settings: Settings,
    request: SummaryRequest,
    principal: Principal | None = None,
    session: Session | None = None,
    at: datetime | None = None,
) -> SummaryResponse:
    """Summarise the request's text or lake voice, draft the order and create it if asked.

    A ``voice_id`` is read from the lake with its region, channel, segment and customer
    (inside ``principal``'s region scope). ``create`` files the draft through the act
    service (idempotent: the same voice or text gives the same order) and needs a
    ``principal`` allowed to write and a ``session``.
    """
    from voxloop.act.service import create_order

    text = request.text
    details: dict[str, Any] = {
        "channel": request.channel,
        "province": request.province,
        "city": request.city,
        "segment": request.segment,
        "customer_id": request.customer_id,
        "district": None,
    }
    if request.voice_id is not None:
        from voxloop.act.sources import order_for_voices

        found = order_for_voices(
            settings=settings, voice_ids=[request.voice_id], principal=principal
        )
        text = found.description or found.title
        lake = {
            "channel": found.channel,
            "province": found.province,
            "city": found.city,
            "district": found.district,
            "segment": found.segment,
            "customer_id": found.customer_ids[0] if found.customer_ids else None,
        }
        details = {k: details.get(k) or v for k, v in lake.items()}
    assert text is not None  # the request validator guarantees text or voice_id
    summary = summarize(settings=settings, text=text, use_llm=request.use_llm)
    draft = draft_order(summary, text=text, voice_id=request.voice_id, at=at, **details)
    if not request.create:
        return SummaryResponse(summary=summary, draft=draft)
    if principal is None or session is None:
        raise PermissionDeniedError("creating the work order needs an authenticated caller")
    require(principal, "write")
    order, created = create_order(session=session, principal=principal, data=draft.order, at=at)
    return SummaryResponse(
        summary=summary,
        draft=draft,
        order=OrderOut.model_validate(order).model_dump(mode="json"),
        created=created,
    )
