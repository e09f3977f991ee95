"""Urgency and escalation risk from rules: regulator, media and legal threats, vulnerability.

Each rule has a weight; a voice's urgency is the noisy-OR of the weights of the rules it
triggers (1 - prod(1 - w)), and the matched phrases are returned as triggers so an agent
sees why. Matching is vectorised (RE2 via pyarrow compute); phrases are extracted in Python
only for the rows that matched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


@dataclass(frozen=True)
class UrgencyRule:
    """A named regex with a weight; ``escalates`` marks rules that alone mean escalation risk."""

    id: str
    pattern: str
    weight: float
    escalates: bool = False


# Patterns are written in the common subset of RE2 and Python ``re``; \b is ASCII-only
# in both (Python side compiles with re.ASCII) so "打12315" still matches.
URGENCY_RULES: tuple[UrgencyRule, ...] = (
    UrgencyRule(
        "regulator",
        r"工信部|通信管理局|电信管理局|\b12300\b|\bmiit\b|\bfcc\b|regulator",
        0.55,
        True,
    ),
    UrgencyRule(
        "consumer_body",
        r"\b12315\b|消协|消费者协会|市场监管|\bcfpb\b|attorney general|better business bureau",
        0.45,
        True,
    ),
    UrgencyRule("supervision", r"\b10080\b|越级投诉|上级部门|总部投诉", 0.35),
    UrgencyRule(
        "media",
        r"\b315\b|媒体|曝光|记者|电视台|上热搜|发微博|抖音"
        r"|\bmedia\b|\bpress\b|journalist|social media",
        0.45,
        True,
    ),
    UrgencyRule(
        "legal",
        r"法院|起诉|律师|诉讼|打官司|报警|公安局"
        r"|\blawyer|\bsue\b|\blawsuit|\bcourt\b|\blegal action",
        0.55,
        True,
    ),
    UrgencyRule(
        "safety",
        r"自杀|不想活|跳楼|轻生|活不下去|\bsuicid|kill myself",
        0.9,
        True,
    ),
    UrgencyRule(
        "ultimatum",
        r"最后一次|再不解决|再不处理|忍无可忍|后果自负|受够了|last chance|fed up|final warning",
        0.3,
    ),
    UrgencyRule(
        "repeat",
        r"第[二三四五六七八九十2-9]次|多次|反复|好几次|又一次|一再|again and again|"
        r"\bthird time|\bseveral times|\brepeatedly|\bmultiple times",
        0.25,
    ),
    UrgencyRule(
        "vulnerable",
        r"老人|老年人|残疾|孕妇|住院|病人|盲人|独居|低保|\belderly|\bdisabled|\bdisability"
        r"|\bpregnant|\bhospital|\bveteran",
        0.25,
    ),
    UrgencyRule(
        "time_pressure", r"紧急|急用|着急|马上|立刻|尽快|\burgent|\bimmediately|\basap\b", 0.15
    ),
)

#: Threshold above which a voice counts as an escalation risk even without an escalating rule.
ESCALATION_THRESHOLD = 0.5
#: Prior contacts by the same customer (30 days) from which "repeat contact" triggers.
REPEAT_CONTACTS = 2
REPEAT_WEIGHT = 0.3


@dataclass(frozen=True)
class UrgencyResult:
    """Columns of urgency output for a batch."""

    urgency: np.ndarray
    escalation_risk: np.ndarray
    triggers: list[list[str]]


def assess(
    texts: pa.Array | pa.ChunkedArray, *, prior_contacts: np.ndarray | None = None
) -> UrgencyResult:
    """Score urgency and escalation risk of each text; return the triggering phrases."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    lower = pc.utf8_lower(pc.fill_null(texts.cast(pa.string()), ""))
    n = len(lower)
    keep = np.ones(n, dtype=np.float64)
    escalate = np.zeros(n, dtype=bool)
    hits: list[np.ndarray] = []
    for rule in URGENCY_RULES:
        m = pc.match_substring_regex(lower, rule.pattern).to_numpy(zero_copy_only=False)
        hits.append(m)
        keep *= np.where(m, 1.0 - rule.weight, 1.0)
        if rule.escalates:
            escalate |= m
    triggers: list[list[str]] = [[] for _ in range(n)]
    if prior_contacts is not None:
        repeat = np.asarray(prior_contacts) >= REPEAT_CONTACTS
        keep *= np.where(repeat, 1.0 - REPEAT_WEIGHT, 1.0)
        for i in np.flatnonzero(repeat).tolist():
            triggers[i].append(f"repeat_contact:{int(prior_contacts[i])}")
    any_hit = np.logical_or.reduce(hits) if hits else np.zeros(n, dtype=bool)
    rows = np.flatnonzero(any_hit)
    if len(rows):
        values = lower.take(pa.array(rows)).to_pylist()
        compiled = [re.compile(r.pattern, re.ASCII) for r in URGENCY_RULES]
        for i, text in zip(rows.tolist(), values, strict=True):
            for rule_hits, rx in zip(hits, compiled, strict=True):
                if rule_hits[i]:
                    found = [m.group(0).strip() for m in rx.finditer(text)]
                    triggers[i].extend(dict.fromkeys(found))
    urgency = 1.0 - keep
    return UrgencyResult(
        urgency=urgency,
        escalation_risk=escalate | (urgency >= ESCALATION_THRESHOLD),
        triggers=triggers,
    )
