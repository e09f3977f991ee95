"""Churn reasons and segment rules worded for a person in zh-CN and en."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from voxloop.analyze.churn import ChurnModel
from voxloop.analyze.segments import SegmentFinder
from voxloop.analyze.wording import (
    churn_reason,
    condition,
    reason_value,
    segment_rule,
    word_churn,
    word_segments,
)


def test_churn_reasons_read_as_sentences() -> None:
    assert churn_reason("unresolved_complaints", 2.0, lang="en") == "2 unresolved complaints"
    assert churn_reason("unresolved_complaints", 2.0, lang="zh-CN") == "有2次投诉答复后仍未解决"
    assert churn_reason("unresolved_complaints", 1.0, lang="en") == "1 unresolved complaint"
    recent = churn_reason("unresolved_complaints_recent", 2.0, lang="en", window_days=30)
    assert recent == "2 unresolved complaints in the last 30 days"
    assert (
        churn_reason("unresolved_complaints_recent", 2.0, lang="zh-CN", window_days=30)
        == "近30天有2次投诉答复后仍未解决"
    )
    assert churn_reason("events_recent", 7.0, lang="en") == "7 account events in the last 30 days"
    assert churn_reason("events_recent", 7.0, lang="zh-CN", window_days=14) == (
        "近14天有7次业务办理或服务事件"
    )
    assert churn_reason("surveys", 0.0, lang="en") == "never answered a survey"
    assert churn_reason("tenure_months", 3.0, lang="zh-CN") == "在网时长3个月"
    assert churn_reason("overall_min", 2.0, lang="en") == "lowest satisfaction 2/10"
    assert churn_reason("plan_is_5g", "true", lang="zh-CN") == "使用5G套餐"
    assert churn_reason("event usage_over_plan", 3.0, lang="en") == (
        "3 months over the plan's allowance"
    )
    assert churn_reason("segment", "family", lang="zh-CN") == "客户群为家庭客户"
    assert churn_reason("days_since_voice", 3.08, lang="en") == "last contact 3 days ago"
    assert churn_reason("days_since_voice", 0.2, lang="zh-CN") == "最近一天内联系过我们"
    assert churn_reason("event complaint_opened", 1.0, lang="en") == "1 complaint opened"
    assert churn_reason("event complaint_first_response", 2.0, lang="zh-CN") == "投诉首次响应2次"
    assert churn_reason("nps_last", None, lang="en") == "last NPS score unknown"
    assert churn_reason("arpu/tenure_months", 4.25, lang="en") == "ARPU per tenure: 4.25"
    # An operator's own column is worded generically, never dropped.
    assert churn_reason("contract", "monthly", lang="en") == "contract is monthly"
    assert churn_reason("contract", "monthly", lang="zh-CN") == "contract为monthly"
    # No sentence reads like a feature dump.
    for feature in ("unresolved_complaints", "events_recent", "voices_recent", "urgency_max"):
        for lang in ("zh-CN", "en"):
            text = churn_reason(feature, 2.0, lang=lang)
            assert feature not in text and "=" not in text
    with pytest.raises(ValueError, match="lang"):
        churn_reason("surveys", 1, lang="fr")


def test_reason_value_falls_back_to_the_raw_text() -> None:
    assert reason_value({"feature": "tenure_months", "reason": "tenure_months = 3"}) == 3.0
    assert reason_value({"feature": "plan_name", "reason": "plan_name = 5G畅享 128元"}) == (
        "5G畅享 128元"
    )
    assert reason_value({"feature": "nps_last", "reason": "nps_last = (missing)"}) is None
    assert reason_value({"feature": "x", "reason": "x = 1", "value": 5}) == 5


def test_segment_rules_read_as_sentences() -> None:
    assert condition("tenure_months", "<", 12.0, lang="zh-CN") == "在网不满12个月"
    assert condition("tenure_months", "<", 12.0, lang="en") == "tenure under 12 months"
    assert condition("plan_monthly_fee", ">=", 128.0, lang="zh-CN") == "套餐月费不低于128元"
    assert condition("touchpoint", "=", "installation_repair", lang="zh-CN") == "触点为装维上门"
    assert condition("touchpoint", "in", ("store", "app"), lang="en") == (
        "touchpoint is store or app"
    )
    assert condition("plan_is_5g", "=", "true", lang="en") == "on a 5G plan"
    assert condition("plan_is_5g", "!=", "true", lang="zh-CN") == "非5G套餐用户"
    conds = [
        {"column": "plan_is_5g", "op": "=", "value": "true"},
        {"column": "plan_monthly_fee", "op": ">=", "value": 128.0},
    ]
    en = segment_rule(conds, lift=2.13, coverage=0.08, recall=0.17, lang="en")
    assert en == (
        "On a 5G plan and monthly fee at least 128 yuan: 2.1× the average dissatisfied rate "
        "(8% of respondents, 17% of the dissatisfied)"
    )
    zh = segment_rule(conds, lift=2.13, coverage=0.08, recall=0.17, lang="zh-CN")
    assert zh.startswith("5G套餐用户，且套餐月费不低于128元：不满意率是平均水平的2.1倍")


def test_model_reasons_carry_value_and_wording() -> None:
    rng = np.random.default_rng(3)
    n = 1200
    unresolved = rng.poisson(0.6, n).astype(float)
    tenure = rng.integers(1, 120, n).astype(float)
    plan = rng.choice(["basic", "5G畅享"], n)
    logit = -2.5 + 1.3 * unresolved - 0.02 * tenure
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    x = pd.DataFrame(
        {"unresolved_complaints": unresolved, "tenure_months": tenure, "plan_name": plan}
    )
    model = ChurnModel(n_estimators=40, cv=2, min_child_samples=40).fit(x, y)
    ranked = model.rank(x, [f"c{i}" for i in range(n)], top=2, limit=20)
    worded = word_churn({"at_risk": ranked})
    reasons = [r for c in worded["at_risk"] for r in c["reasons"]]
    assert reasons
    top = [r for r in reasons if r["feature"] == "unresolved_complaints"]
    assert top, "the planted driver must appear among the top reasons"
    for r in top:
        assert r["reason"] == f"unresolved_complaints = {r['value']:g}"  # raw kept
        n_unresolved = int(r["value"])
        assert r["wording"]["en"].startswith(f"{n_unresolved} unresolved complaint")
        assert r["wording"]["zh-CN"] == f"有{n_unresolved}次投诉答复后仍未解决"


def test_found_segments_are_worded() -> None:
    rng = np.random.default_rng(5)
    n = 3000
    frame = pd.DataFrame(
        {
            "touchpoint": rng.choice(["store", "app", "hotline"], n),
            "tenure_months": rng.integers(1, 100, n).astype(float),
        }
    )
    rate = np.where((frame["touchpoint"] == "store") & (frame["tenure_months"] < 12), 0.6, 0.15)
    y = (rng.random(n) < rate).astype(float)
    result = SegmentFinder(max_rules=3).fit(frame, y).summary()
    worded = word_segments({**result, "outcome": "dissatisfied"})
    assert worded["rules"]
    first = worded["rules"][0]
    assert first["conditions"] == result["rules"][0]["conditions"]  # raw kept
    assert "营业厅" in first["wording"]["zh-CN"] or "在网" in first["wording"]["zh-CN"]
    assert "average dissatisfied rate" in first["wording"]["en"]
    assert "tenure_months" not in first["wording"]["en"]
