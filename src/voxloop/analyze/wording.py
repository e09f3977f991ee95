"""Word churn reasons and segment rules for a person, in zh-CN and en.

The models speak in feature names and values (``unresolved_complaints = 2``,
``tenure_months < 12``); people read sentences ("2 unresolved complaints", "在网不满12个月").
This layer maps the features the analyze domain builds (``analyze.service.churn_frame``,
``survey_frame``) to sentence templates; a column it does not know (an operator's own
profile attribute) is worded generically ("contract is monthly" / "contract为monthly").
The API keeps the raw feature next to the wording, so nothing is lost in translation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

LANGS = ("zh-CN", "en")

#: Count features: (zh template, en template, en template for exactly one).  ``{n}`` is the
#: count, ``{w}`` the feature window in days.
_COUNTS: dict[str, tuple[str, str, str]] = {
    "voices_total": ("共有{n}条客户声音", "{n} voices in total", "1 voice in total"),
    "voices_recent": (
        "近{w}天有{n}条客户声音",
        "{n} voices in the last {w} days",
        "1 voice in the last {w} days",
    ),
    "voices_escalated": (
        "{n}次向10080、12300、12315或媒体反映",
        "{n} escalations to 10080, 12300, 12315 or the media",
        "1 escalation to 10080, 12300, 12315 or the media",
    ),
    "voices_complaints": ("{n}次投诉", "{n} complaints", "1 complaint"),
    "voices_negative": ("{n}条负面声音", "{n} negative voices", "1 negative voice"),
    "voices_escalation_risk": (
        "{n}条声音有升级投诉风险",
        "{n} voices at risk of escalation",
        "1 voice at risk of escalation",
    ),
    "surveys": ("参与过{n}次满意度调查", "answered {n} surveys", "answered 1 survey"),
    "unresolved_complaints": (
        "有{n}次投诉答复后仍未解决",
        "{n} unresolved complaints",
        "1 unresolved complaint",
    ),
    "unresolved_complaints_recent": (
        "近{w}天有{n}次投诉答复后仍未解决",
        "{n} unresolved complaints in the last {w} days",
        "1 unresolved complaint in the last {w} days",
    ),
    "events_recent": (
        "近{w}天有{n}次业务办理或服务事件",
        "{n} account events in the last {w} days",
        "1 account event in the last {w} days",
    ),
    "count of yes flags": ("{n}项标记为“是”", "{n} yes-flags", "1 yes-flag"),
}

#: Zero counts read better as their own sentence.
_ZERO: dict[str, tuple[str, str]] = {
    "surveys": ("从未参与满意度调查", "never answered a survey"),
    "voices_total": ("从未联系过我们", "never contacted us"),
    "voices_recent": ("近{w}天没有联系过我们", "no contact in the last {w} days"),
    "events_recent": ("近{w}天没有业务往来", "no account activity in the last {w} days"),
}

#: Journey event types (``event <type>`` features): (zh, en) names.
EVENT_NAMES: dict[str, tuple[str, str]] = {
    "bill_issued": ("账单出账", "bills issued"),
    "broadband_cancel_done": ("宽带拆机完成", "broadband cancellations done"),
    "broadband_cancel_requested": ("申请宽带拆机", "broadband cancellation requests"),
    "complaint_first_response": ("投诉首次响应", "first responses to complaints"),
    "complaint_opened": ("投诉受理", "complaints opened"),
    "complaint_replied": ("投诉答复", "complaint replies"),
    "consent_recorded": ("营销授权记录", "marketing consents recorded"),
    "order_activated": ("业务开通", "services activated"),
    "outage_ended": ("故障恢复", "outages ended"),
    "outage_started": ("遭遇网络故障", "outages experienced"),
    "overage_reminder_sent": ("超套餐提醒", "overage reminders"),
    "plan_change_done": ("套餐变更完成", "plan changes done"),
    "plan_change_requested": ("申请变更套餐", "plan change requests"),
    "success_sms_sent": ("办理成功短信", "confirmation texts"),
    "unsubscribe_done": ("退订完成", "unsubscriptions done"),
    "unsubscribe_requested": ("申请退订", "unsubscribe requests"),
    "usage_over_plan": ("用量超出套餐", "months over the plan's allowance"),
}

#: Measured features: (zh noun, en noun, zh unit, en unit).
_MEASURES: dict[str, tuple[str, str, str, str]] = {
    "tenure_months": ("在网时长", "tenure", "个月", " months"),
    "plan_monthly_fee": ("套餐月费", "monthly fee", "元", " yuan"),
    "plan_data_gb": ("套餐流量", "plan data", "GB", " GB"),
    "arpu": ("ARPU", "ARPU", "元", " yuan"),
    "days_since_voice": ("距最近一次联系", "days since the last contact", "天", ""),
    "urgency_max": ("最高紧急度", "highest urgency", "", ""),
    "dialogue_dissatisfaction": (
        "通话/在线对话预测不满意概率",
        "predicted dissatisfaction of their calls and chats",
        "",
        "",
    ),
    "overall_mean": ("平均满意度", "mean satisfaction", "分", "/10"),
    "overall_min": ("最低满意度", "lowest satisfaction", "分", "/10"),
    "nps_last": ("最近一次推荐度（NPS）打分", "last NPS score", "分", "/10"),
    "overall": ("总体满意度", "overall satisfaction", "分", "/10"),
    "nps": ("推荐度（NPS）打分", "NPS score", "分", "/10"),
}

#: Categorical features: (zh noun, en noun).
_CATEGORIES: dict[str, tuple[str, str]] = {
    "plan_name": ("套餐", "plan"),
    "segment": ("客户群", "segment"),
    "province": ("省份", "province"),
    "city": ("城市", "city"),
    "district": ("区县", "district"),
    "touchpoint": ("触点", "touchpoint"),
    "channel": ("渠道", "channel"),
    "plan_is_5g": ("5G套餐", "5G plan"),
}

#: Category values with a name: (zh, en).
VALUE_NAMES: dict[str, dict[str, tuple[str, str]]] = {
    "touchpoint": {
        "store": ("营业厅", "store"),
        "hotline": ("10086热线", "hotline"),
        "app": ("APP", "app"),
        "installation_repair": ("装维上门", "installation and repair"),
        "complaint_handling": ("投诉处理", "complaint handling"),
        "network": ("网络", "network"),
        "billing": ("账单计费", "billing"),
    },
    "segment": {
        "mass_market": ("大众客户", "mass market"),
        "business": ("政企客户", "business"),
        "family": ("家庭客户", "family"),
        "youth": ("青年客户", "youth"),
        "vip": ("VIP客户", "VIP"),
    },
}

_TRUE = ("1", "1.0", "true", "yes", "y")


def _num(value: float) -> str:
    """Return a number as people write it: integers without decimals, else 3 digits."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def _singular(name: str) -> str:
    """Return an event name for one occurrence: its first plural word made singular."""
    words = name.split(" ")
    for i, word in enumerate(words):
        if word.endswith("s") and not word.endswith("'s"):
            words[i] = word[:-1]
            break
    return " ".join(words)


def _as_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None if value is None else float(value)
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def _lang(lang: str) -> int:
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {', '.join(LANGS)}, got {lang!r}")
    return LANGS.index(lang)


def noun(feature: str, *, lang: str) -> str:
    """Return what a feature is called, e.g. ``tenure_months`` -> "在网时长" / "tenure"."""
    k = _lang(lang)
    if feature in _MEASURES:
        return _MEASURES[feature][k]
    if feature in _CATEGORIES:
        return _CATEGORIES[feature][k]
    if feature.startswith("event "):
        kind = feature[len("event ") :]
        names = EVENT_NAMES.get(kind, (kind, kind.replace("_", " ")))
        return names[k] + ("次数" if k == 0 else "")
    if feature in _COUNTS:
        return {
            "voices_total": ("客户声音数", "voices"),
            "voices_recent": ("近期客户声音数", "recent voices"),
            "voices_escalated": ("越级投诉次数", "escalations"),
            "voices_complaints": ("投诉次数", "complaints"),
            "voices_negative": ("负面声音数", "negative voices"),
            "voices_escalation_risk": ("有升级风险的声音数", "voices at risk of escalation"),
            "surveys": ("调查参与次数", "surveys answered"),
            "unresolved_complaints": ("未解决投诉次数", "unresolved complaints"),
            "unresolved_complaints_recent": (
                "近期未解决投诉次数",
                "recent unresolved complaints",
            ),
            "events_recent": ("近期业务事件数", "recent account events"),
            "count of yes flags": ("“是”标记数", "yes-flags"),
        }[feature][k]
    return feature


def value_name(feature: str, value: Any, *, lang: str) -> str:
    """Return a category value as people say it (``installation_repair`` -> "装维上门")."""
    k = _lang(lang)
    names = VALUE_NAMES.get(feature, {}).get(str(value))
    return names[k] if names else str(value)


def churn_reason(feature: str, value: Any, *, lang: str, window_days: int = 30) -> str:
    """Return one churn reason as a sentence, e.g. "2 unresolved complaints".

    ``value`` is the customer's value of the feature (a number, a category, or ``None``
    when missing); ``window_days`` is the window of the ``*_recent`` features.
    """
    k = _lang(lang)
    number = _as_float(value)
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "(missing)":
        return (
            f"{noun(feature, lang=lang)}未知" if k == 0 else f"{noun(feature, lang=lang)} unknown"
        )
    if feature in _COUNTS and number is not None:
        n = round(number)
        if n == 0 and feature in _ZERO:
            return _ZERO[feature][k].format(w=window_days)
        zh, en, en_one = _COUNTS[feature]
        template = (zh, en_one if n == 1 else en)[k]
        return template.format(n=n, w=window_days)
    if feature.startswith("event ") and number is not None:
        kind = feature[len("event ") :]
        zh_name, en_name = EVENT_NAMES.get(kind, (kind, kind.replace("_", " ")))
        n = round(number)
        return f"{zh_name}{n}次" if k == 0 else f"{n} {_singular(en_name) if n == 1 else en_name}"
    if feature == "plan_is_5g":
        yes = str(value).strip().lower() in _TRUE
        return (("使用5G套餐", "on a 5G plan"), ("未使用5G套餐", "not on a 5G plan"))[not yes][k]
    if feature in _MEASURES and number is not None:
        zh_noun, en_noun, zh_unit, en_unit = _MEASURES[feature]
        if feature == "days_since_voice":
            days = round(number)
            if days < 1:
                return ("最近一天内联系过我们", "contacted us within the last day")[k]
            if days == 1:
                return ("距最近一次联系已1天", "last contact 1 day ago")[k]
            return f"距最近一次联系已{days}天" if k == 0 else f"last contact {days} days ago"
        return (
            f"{zh_noun}{_num(number)}{zh_unit}" if k == 0 else f"{en_noun} {_num(number)}{en_unit}"
        )
    if "/" in feature and number is not None:
        a, _, b = feature.partition("/")
        na, nb = noun(a, lang=lang), noun(b, lang=lang)
        return f"{na}与{nb}之比为{_num(number)}" if k == 0 else f"{na} per {nb}: {_num(number)}"
    if feature in _CATEGORIES:
        zh_noun, en_noun = _CATEGORIES[feature]
        shown = value_name(feature, value, lang=lang)
        return f"{zh_noun}为{shown}" if k == 0 else f"{en_noun}: {shown}"
    shown = _num(number) if number is not None else str(value)
    return f"{feature}为{shown}" if k == 0 else f"{feature} is {shown}"


def reason_value(reason: Mapping[str, Any]) -> Any:
    """Return a churn reason's value: its ``value`` field, else parsed from ``"name = value"``."""
    if "value" in reason:
        return reason["value"]
    text = str(reason.get("reason", ""))
    name = str(reason.get("feature", ""))
    raw = text[len(name) + 3 :] if text.startswith(f"{name} = ") else text.rpartition(" = ")[2]
    if raw == "(missing)":
        return None
    number = _as_float(raw)
    return number if number is not None else raw


def condition(column: str, op: str, value: Any, *, lang: str) -> str:
    """Return one segment condition in words: ``tenure_months < 12`` -> "tenure under 12 months"."""
    k = _lang(lang)
    name = noun(column, lang=lang)
    if column == "plan_is_5g" and op in ("=", "!="):
        yes = (str(value).strip().lower() in _TRUE) == (op == "=")
        return (("5G套餐用户", "on a 5G plan"), ("非5G套餐用户", "not on a 5G plan"))[not yes][k]
    if op == "in":
        items = [value_name(column, v, lang=lang) for v in value]
        return f"{name}为{'、'.join(items)}之一" if k == 0 else f"{name} is {' or '.join(items)}"
    number = _as_float(value) if not isinstance(value, str) else None
    if number is not None and op in ("<", "<=", ">", ">="):
        unit = _MEASURES.get(column, ("", "", "", ""))[2 + k]
        shown = f"{_num(number)}{unit}"
        if column in _COUNTS or column.startswith("event "):
            shown = _num(number)
        words = {
            "<": ("低于", "under"),
            "<=": ("不超过", "at most"),
            ">": ("高于", "over"),
            ">=": ("不低于", "at least"),
        }[op][k]
        if column == "tenure_months" and k == 0 and op == "<":
            return f"在网不满{shown}"
        return f"{name}{words}{shown}" if k == 0 else f"{name} {words} {shown}"
    shown = value_name(column, value, lang=lang) if number is None else _num(number)
    if op == "!=":
        return f"{name}不是{shown}" if k == 0 else f"{name} is not {shown}"
    return f"{name}为{shown}" if k == 0 else f"{name} is {shown}"


def segment_rule(
    conditions: Sequence[Mapping[str, Any]],
    *,
    lift: float,
    coverage: float,
    recall: float,
    outcome: str = "dissatisfied",
    lang: str,
) -> str:
    """Return a segment rule as one sentence with its lift, coverage and recall.

    E.g. "Tenure under 12 months and touchpoint is store: 2.1× the average dissatisfied
    rate (8% of respondents, 17% of the dissatisfied)".
    """
    k = _lang(lang)
    parts = [condition(c["column"], c["op"], c["value"], lang=lang) for c in conditions]
    if k == 0:
        who = "，且".join(parts) or "全体受访者"
        what = "不满意" if outcome == "dissatisfied" else "满意"
        return (
            f"{who}：{what}率是平均水平的{lift:.1f}倍"
            f"（占受访者{coverage:.0%}，占{what}者{recall:.0%}）"
        )
    who = " and ".join(parts) or "everyone"
    who = who[:1].upper() + who[1:]
    return (
        f"{who}: {lift:.1f}× the average {outcome} rate "
        f"({coverage:.0%} of respondents, {recall:.0%} of the {outcome})"
    )


def word_churn(result: Mapping[str, Any], *, window_days: int = 30) -> dict[str, Any]:
    """Return a churn result whose reasons carry ``value`` and ``wording`` in zh-CN and en."""
    out = dict(result)
    at_risk = []
    for customer in result.get("at_risk", []):
        reasons = []
        for reason in customer.get("reasons", []):
            value = reason_value(reason)
            reasons.append(
                {
                    **reason,
                    "value": value,
                    "wording": {
                        lang: churn_reason(
                            str(reason["feature"]), value, lang=lang, window_days=window_days
                        )
                        for lang in LANGS
                    },
                }
            )
        at_risk.append({**customer, "reasons": reasons})
    out["at_risk"] = at_risk
    return out


def word_segments(result: Mapping[str, Any]) -> dict[str, Any]:
    """Return a segments result whose rules carry ``wording`` in zh-CN and en."""
    out = dict(result)
    outcome = str(result.get("outcome", "dissatisfied"))
    rules = []
    for rule in result.get("rules", []):
        rules.append(
            {
                **rule,
                "wording": {
                    lang: segment_rule(
                        rule.get("conditions", []),
                        lift=float(rule.get("lift", 0.0)),
                        coverage=float(rule.get("coverage", 0.0)),
                        recall=float(rule.get("recall", 0.0)),
                        outcome=outcome,
                        lang=lang,
                    )
                    for lang in LANGS
                },
            }
        )
    out["rules"] = rules
    return out
