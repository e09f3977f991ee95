"""Realistic demo operator: customers, voices, surveys and journey events with ground truth.

``generate_operator`` writes a fictional China-Mobile-like operator in the canonical flat
file format (``customers.csv``, ``voices.jsonl``, ``surveys.jsonl``, ``events.jsonl``) so
``voxloop ingest OUT_DIR`` loads it with no mapping, plus ``ground_truth.json`` describing
what was planted: a billing mis-charge surge, a home-broadband outage, recurring problems,
a tariff-dissatisfied 5G segment, churn journeys and service-commitment violations
(rules R4, R6, R7, R8 and R13 of the domain reference).

Hotline calls (``call_transcript``) and online chats (``chat``) are timed conversations,
one turn a line, ``[<start>-<end>] 坐席：…`` / ``客户：…`` (``Agent:`` / ``Customer:`` in
English), seconds with one decimal. Agents (``attributes.agent_id``, ``attributes.team``;
teams belong to the voice's city) follow the hotline script: greeting with job number
(工号), identity verification before any account operation, empathy after an angry
customer turn, a solution or next step, consent before a plan change, closing and an
invitation to rate. A few percent of conversations per rule leave a step out or add a
prohibited word, a promise, a long silence, an interruption or an over-fast turn; agents
and teams differ in how often. ``ground_truth.json`` lists the conversations
(``qa_conversations``), their violations by rule id (``qa_violations``, see ``QA_RULES``)
and the agents' teams (``qa_agents``). Customer profiles carry their real average monthly
usage (``attributes.data_used_gb``, ``attributes.voice_used_min``); a planted group on
plans far too big for it is listed as ``overpaying_customers``.

Arrival times, customers, scenarios, channels and scores are drawn with vectorised numpy;
only the final text assembly and serialisation loop over rows. Background voices are an
inhomogeneous Poisson process (hour-of-day x weekday x public-holiday intensity), so only
the planted incidents stand out from the seasonal baseline. Everything is deterministic
for a seed.
"""

from __future__ import annotations

import csv
import json
import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

FloatArr = npt.NDArray[np.float64]
IntArr = npt.NDArray[np.int64]
BoolArr = npt.NDArray[np.bool_]
ObjArr = npt.NDArray[np.object_]

TZ = timezone(timedelta(hours=8))
DEFAULT_START = datetime(2026, 9, 1, tzinfo=TZ)
DAY = 86_400.0
HOUR = 3_600.0
MINUTE = 60.0

#: Scenario codes of the domain taxonomy and their share of background voices; the split
#: follows MIIT's appeal classes (service ~41 %, tariff ~39 %, marketing ~11 %, network).
SCENARIO_MIX: dict[str, float] = {
    "BILL": 0.20,
    "USAGE": 0.07,
    "PLAN": 0.09,
    "UNSUB": 0.08,
    "MKT": 0.10,
    "CHNL": 0.06,
    "PRIV": 0.02,
    "INTL": 0.03,
    "MNET": 0.10,
    "HBB": 0.10,
    "CMPL": 0.04,
    "SVC": 0.06,
    "SUPV": 0.03,
    "TERM": 0.02,
}
SCENARIOS = tuple(SCENARIO_MIX)

#: Relative voice intensity per local hour (night is quiet, mornings and afternoons peak).
HOUR_WEIGHTS = np.array(
    [0.10, 0.06, 0.04, 0.03, 0.03, 0.05, 0.15, 0.40, 0.85, 1.25, 1.35, 1.30,
     1.05, 1.10, 1.25, 1.25, 1.20, 1.10, 0.95, 0.95, 0.95, 0.80, 0.55, 0.25],
    dtype=np.float64,
)  # fmt: skip
_HOUR_CDF = np.cumsum(HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
_HOUR_CDF /= _HOUR_CDF[-1]
WEEKDAY_FACTORS = (1.10, 1.0, 1.0, 1.0, 1.0, 0.80, 0.75)
HOLIDAY_FACTOR = 0.70

#: Provinces (weight) -> cities (weight) -> real district names.
GEOGRAPHY: tuple[tuple[str, float, tuple[tuple[str, float, tuple[str, ...]], ...]], ...] = (
    ("江苏", 0.22, (
        ("南京", 0.40, ("玄武区", "秦淮区", "鼓楼区", "建邺区", "江宁区", "栖霞区")),
        ("苏州", 0.35, ("姑苏区", "吴中区", "相城区", "吴江区", "虎丘区")),
        ("无锡", 0.25, ("梁溪区", "滨湖区", "新吴区", "锡山区")),
    )),
    ("广东", 0.24, (
        ("广州", 0.45, ("天河区", "越秀区", "海珠区", "白云区", "番禺区")),
        ("深圳", 0.40, ("福田区", "南山区", "罗湖区", "宝安区", "龙岗区")),
        ("佛山", 0.15, ("禅城区", "南海区", "顺德区")),
    )),
    ("浙江", 0.17, (
        ("杭州", 0.55, ("西湖区", "上城区", "拱墅区", "滨江区", "余杭区")),
        ("宁波", 0.30, ("海曙区", "江北区", "鄞州区", "北仑区")),
        ("温州", 0.15, ("鹿城区", "龙湾区", "瓯海区")),
    )),
    ("四川", 0.15, (
        ("成都", 0.80, ("锦江区", "青羊区", "金牛区", "武侯区", "成华区", "双流区")),
        ("绵阳", 0.20, ("涪城区", "游仙区")),
    )),
    ("北京", 0.12, (
        ("北京", 1.00, ("东城区", "西城区", "朝阳区", "海淀区", "丰台区", "通州区")),
    )),
    ("山东", 0.10, (
        ("济南", 0.50, ("历下区", "市中区", "槐荫区", "历城区")),
        ("青岛", 0.50, ("市南区", "市北区", "黄岛区", "崂山区")),
    )),
)  # fmt: skip

#: First six digits of resident IDs issued in each province (a real district code).
_ID_AREA = {
    "江苏": "320102",
    "广东": "440106",
    "浙江": "330106",
    "四川": "510107",
    "北京": "110105",
    "山东": "370102",
}
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_MOBILE_PREFIXES = np.array(
    [134, 135, 136, 137, 138, 139, 147, 150, 151, 152, 157, 158, 159, 172, 178, 182, 183,
     184, 187, 188, 195, 197, 198],
    dtype=np.int64,
)  # fmt: skip


@dataclass(frozen=True)
class PlanSpec:
    """One tariff plan of the demo operator."""

    name: str
    monthly_fee: float
    data_gb: float
    voice_minutes: float
    is_5g: bool
    share: float
    segment: str = "mass_market"


PLANS: tuple[PlanSpec, ...] = (
    PlanSpec("神州行畅听卡 8元", 8, 0.1, 30, False, 0.04, "senior"),
    PlanSpec("4G飞享套餐 18元", 18, 1, 50, False, 0.05),
    PlanSpec("动感地带校园卡 19元", 19, 20, 100, False, 0.06, "youth"),
    PlanSpec("移动花卡宝藏版 29元", 29, 30, 0, False, 0.06, "youth"),
    PlanSpec("4G飞享套餐 38元", 38, 5, 100, False, 0.11),
    PlanSpec("4G飞享套餐 58元", 58, 10, 200, False, 0.10),
    PlanSpec("5G智享套餐 98元", 98, 20, 300, True, 0.14),
    PlanSpec("5G智享套餐 128元", 128, 30, 500, True, 0.14),
    PlanSpec("全家享套餐 169元", 169, 40, 1000, True, 0.10, "family"),
    PlanSpec("5G畅享套餐 199元", 199, 60, 700, True, 0.10),
    PlanSpec("5G智享套餐 298元", 298, 100, 1000, True, 0.06),
    PlanSpec("5G尊享套餐 398元", 398, 150, 1500, True, 0.04),
)
#: Plans open to every customer (no age, student or family condition).
OPEN_PLANS = tuple(p for p in PLANS if p.segment == "mass_market")
#: The 5G large-data plans whose customers are planted as dissatisfied with the tariff.
LARGE_DATA_PLANS = tuple(p.name for p in PLANS if p.is_5g and p.data_gb >= 60)

#: Escalation channels (10080, 12300, 12315, media) only carry SUPV and CMPL voices.
_CHANNELS = ("hotline_10086", "app", "mini_program", "store", "social", "web")
_CHANNEL_P = (0.57, 0.16, 0.05, 0.12, 0.08, 0.02)
_CHANNEL_OVERRIDES: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "SUPV": (
        ("supervision_10080", "regulator_12300", "consumer_12315", "social", "media"),
        (0.55, 0.15, 0.08, 0.17, 0.05),
    ),
    "CMPL": (
        ("hotline_10086", "supervision_10080", "app", "store", "social"),
        (0.50, 0.25, 0.10, 0.08, 0.07),
    ),
}
_KIND_BY_CHANNEL: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "hotline_10086": (("call_transcript", "complaint", "ticket"), (0.50, 0.25, 0.25)),
    "supervision_10080": (("complaint", "ticket", "call_transcript"), (0.60, 0.20, 0.20)),
    "regulator_12300": (("complaint",), (1.0,)),
    "consumer_12315": (("complaint",), (1.0,)),
    "app": (("chat", "app_review", "complaint"), (0.50, 0.25, 0.25)),
    "mini_program": (("chat", "complaint"), (0.60, 0.40)),
    "store": (("ticket", "complaint"), (0.60, 0.40)),
    "social": (("social_post",), (1.0,)),
    "media": (("social_post",), (1.0,)),
    "web": (("complaint", "chat"), (0.60, 0.40)),
}
_ANONYMOUS_CHANNELS = ("social", "media")

#: Survey factor means for ordinary customers (0-10) and their weight in overall.
FACTOR_MEANS: dict[str, float] = {
    "network_coverage": 8.1, "network_speed": 7.7, "call_quality": 8.2,
    "broadband_speed": 7.6, "broadband_stability": 7.4, "tariff": 7.0,
    "billing_transparency": 7.2, "plan_change_ease": 7.3, "marketing_honesty": 7.1,
    "no_disturbance": 6.9, "store_service": 8.5, "hotline_service": 7.9,
    "app_experience": 7.8, "installation_repair": 8.0, "complaint_handling": 6.9,
    "information_security": 8.0,
}  # fmt: skip
FACTOR_WEIGHTS: dict[str, float] = {
    "network_coverage": 0.08, "network_speed": 0.12, "call_quality": 0.05,
    "broadband_speed": 0.05, "broadband_stability": 0.05, "tariff": 0.32,
    "billing_transparency": 0.06, "plan_change_ease": 0.04, "marketing_honesty": 0.04,
    "no_disturbance": 0.03, "store_service": 0.04, "hotline_service": 0.05,
    "app_experience": 0.03, "installation_repair": 0.04, "complaint_handling": 0.06,
    "information_security": 0.03,
}  # fmt: skip
FACTORS = tuple(FACTOR_MEANS)
_TOUCHPOINTS = ("store", "hotline", "app", "installation_repair", "complaint_handling",
                "network", "billing")  # fmt: skip
_TOUCHPOINT_P = (0.15, 0.25, 0.15, 0.08, 0.07, 0.15, 0.15)
_TOUCHPOINT_FACTORS: dict[str, tuple[str, ...]] = {
    "store": ("store_service", "plan_change_ease"),
    "hotline": ("hotline_service", "complaint_handling"),
    "app": ("app_experience", "billing_transparency"),
    "installation_repair": ("installation_repair", "broadband_speed", "broadband_stability"),
    "complaint_handling": ("complaint_handling", "hotline_service"),
    "network": (
        "network_coverage",
        "network_speed",
        "call_quality",
        "broadband_speed",
        "broadband_stability",
    ),
    "billing": ("billing_transparency", "tariff", "plan_change_ease"),
}
_GENERAL_FACTORS = ("tariff", "network_speed")
_OPTIONAL_FACTORS = ("marketing_honesty", "no_disturbance", "information_security",
                     "network_coverage", "call_quality")  # fmt: skip
_BROADBAND_FACTORS = ("broadband_speed", "broadband_stability", "installation_repair")
#: Scenario a dissatisfied survey comment talks about, by its lowest factor.
_FACTOR_SCENARIO = {
    "network_coverage": "MNET", "network_speed": "MNET", "call_quality": "MNET",
    "broadband_speed": "HBB", "broadband_stability": "HBB", "tariff": "BILL",
    "billing_transparency": "BILL", "plan_change_ease": "PLAN", "marketing_honesty": "MKT",
    "no_disturbance": "MKT", "store_service": "CHNL", "hotline_service": "SVC",
    "app_experience": "CHNL", "installation_repair": "HBB", "complaint_handling": "CMPL",
    "information_security": "PRIV",
}  # fmt: skip

_SERVICES = ("视频彩铃", "咪咕视频会员", "和彩云", "来电提醒", "流量加油包", "音乐随心听",
             "手机报", "12580生活播报", "优酷会员权益包", "5G流量包", "云盘会员",
             "咪咕阅读")  # fmt: skip
_ROADS = ("中山路", "人民路", "解放路", "建设路", "长江路", "和平路", "新华路", "文化路")
_COMPOUNDS = ("阳光花园", "翠苑小区", "金色家园", "幸福里", "锦绣华庭", "东方明珠苑", "枫林湾")
_PHONE_MODELS = ("华为Mate60", "iPhone 15", "小米14", "OPPO Reno11", "vivo X100", "荣耀90")
_MONTHS_EN = ("January", "February", "March", "April", "May", "June", "July", "August",
              "September", "October", "November", "December")  # fmt: skip
_NORTHERN = ("北京", "山东", "四川")

#: Voice kinds generated as timed multi-turn conversations with an agent.
CONVERSATION_KINDS = ("call_transcript", "chat")
#: QA rule ids planted in conversations (a "violation" is the rule being hit), each with
#: its rate per conversation for an average agent of an average team. Conditional rules
#: are planted only where they can apply: ``identity_verification`` where the account is
#: touched, ``empathy_when_angry`` where the customer is angry, ``speaking_rate`` in
#: Chinese (English is read at 2-2.8 words/s, i.e. over 6 letters/s but never fast).
QA_RULES: dict[str, float] = {
    "greeting": 0.03,
    "self_intro": 0.05,
    "identity_verification": 0.07,
    "prohibited_words": 0.02,
    "unauthorised_promise": 0.03,
    "empathy_when_angry": 0.16,
    "solution_offered": 0.04,
    "no_unauthorised_plan_change": 0.02,
    "closing": 0.04,
    "invite_rating": 0.07,
    "long_silence": 0.04,
    "interruption": 0.04,
    "speaking_rate": 0.03,
}
QA_RULE_IDS = tuple(QA_RULES)
#: Scenarios whose handling touches the account (查询话费/办理/变更套餐/退订).
ACCOUNT_SCENARIOS = ("BILL", "USAGE", "PLAN", "UNSUB", "MKT", "INTL", "TERM")
_TEAM_NUMERALS = "一二三四"
#: What is counted as one spoken unit when timing a turn: a CJK character, or a run of
#: latin letters or digits (so "19.9元" is two units whichever way a checker counts).
_UNITS = re.compile(r"[\u4e00-\u9fff]|[A-Za-z0-9]+(?:[.'][A-Za-z0-9]+)*")
#: Headroom the "overpaying" ground truth allows over real usage, and the share of the
#: current fee the cheapest plan covering it may cost at most (套餐适配不合理).
OVERPAY_HEADROOM = 1.2
OVERPAY_FEE_SHARE = 0.5


# ---------------------------------------------------------------------------
# Small helpers


def load_lexicon() -> dict[str, Any]:
    """Load the generator's phrase material shipped with the package."""
    text = (
        resources.files("voxloop.demo")
        .joinpath("generator_lexicon.yaml")
        .read_text(encoding="utf-8")
    )
    # The C loader when libyaml is there: the pure-Python one takes a good share of a run.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    data = yaml.load(text, Loader=loader)  # a safe loader either way
    if not isinstance(data, dict):
        raise ValueError("generator_lexicon.yaml: top level must be a mapping")
    return data


def resident_id(rnd: random.Random, province: str) -> str:
    """Return a random 18-digit resident ID with a valid GB 11643-1999 check digit."""
    area = _ID_AREA.get(province, "320102")
    birth = date(1955, 1, 1) + timedelta(days=rnd.randrange(0, 18_250))
    body = f"{area}{birth:%Y%m%d}{rnd.randrange(0, 1000):03d}"
    total = sum(int(d) * w for d, w in zip(body, _ID_WEIGHTS, strict=True))
    return body + _ID_CHECK[total % 11]


def _flat_regions() -> tuple[ObjArr, ObjArr, ObjArr, FloatArr]:
    prov: list[str] = []
    city: list[str] = []
    dist: list[str] = []
    weight: list[float] = []
    for p_name, p_w, cities in GEOGRAPHY:
        for c_name, c_w, districts in cities:
            for d_name in districts:
                prov.append(p_name)
                city.append(c_name)
                dist.append(d_name)
                weight.append(p_w * c_w / len(districts))
    w = np.asarray(weight, dtype=np.float64)
    return (
        np.asarray(prov, dtype=object),
        np.asarray(city, dtype=object),
        np.asarray(dist, dtype=object),
        w / w.sum(),
    )


def _iso(origin: datetime, seconds: FloatArr) -> ObjArr:
    """Format offsets (seconds after a naive local origin) as ISO-8601 with +08:00."""
    base = np.datetime64(origin.replace(tzinfo=None), "s")
    stamps = base + np.round(seconds).astype(np.int64).astype("timedelta64[s]")
    text = np.datetime_as_string(stamps, unit="s")
    return np.asarray(np.char.add(text.astype(str), "+08:00"), dtype=object)


def day_factors(first_day: date, days: int) -> FloatArr:
    """Return the weekday x public-holiday intensity factor of every day of the window."""
    import chinese_calendar

    out = np.empty(days, dtype=np.float64)
    for i in range(days):
        d = first_day + timedelta(days=i)
        factor = WEEKDAY_FACTORS[d.weekday()]
        try:
            if chinese_calendar.is_holiday(d) and d.weekday() < 5:
                factor = HOLIDAY_FACTOR
            elif chinese_calendar.is_workday(d) and d.weekday() >= 5:
                factor = 1.0  # 调休: a weekend day worked in lieu of a holiday
        except NotImplementedError:
            pass  # year outside the calendar package: weekday pattern only
        out[i] = factor
    return out


def _pick(
    rng: np.random.Generator, options: tuple[str, ...], p: tuple[float, ...], n: int
) -> ObjArr:
    probs = np.asarray(p, dtype=np.float64)
    idx = rng.choice(len(options), size=n, p=probs / probs.sum())
    return np.asarray(options, dtype=object)[idx]


def _channels_for(rng: np.random.Generator, scenarios: ObjArr) -> ObjArr:
    out = _pick(rng, _CHANNELS, _CHANNEL_P, len(scenarios))
    for code, (options, p) in _CHANNEL_OVERRIDES.items():
        mask = scenarios == code
        if mask.any():
            out[mask] = _pick(rng, options, p, int(mask.sum()))
    return out


def _kinds_for(rng: np.random.Generator, channels: ObjArr) -> ObjArr:
    out = np.empty(len(channels), dtype=object)
    for channel, (options, p) in _KIND_BY_CHANNEL.items():
        mask = channels == channel
        if mask.any():
            out[mask] = _pick(rng, options, p, int(mask.sum()))
    return out


# ---------------------------------------------------------------------------
# Simulation state


@dataclass
class _Customers:
    ids: ObjArr
    region: IntArr
    plan: IntArr
    tenure: FloatArr
    arpu: FloatArr
    segment: ObjArr
    broadband: BoolArr
    activity: FloatArr
    large_data: BoolArr
    close_t: FloatArr

    @property
    def n(self) -> int:
        return len(self.ids)


@dataclass
class _Voices:
    """Column chunks of voices before ids and texts are assigned."""

    t: list[FloatArr] = field(default_factory=list)
    cust: list[IntArr] = field(default_factory=list)
    region: list[IntArr] = field(default_factory=list)
    scenario: list[ObjArr] = field(default_factory=list)
    sub: list[ObjArr] = field(default_factory=list)
    channel: list[ObjArr] = field(default_factory=list)
    kind: list[ObjArr] = field(default_factory=list)
    incident: list[ObjArr] = field(default_factory=list)
    problem: list[ObjArr] = field(default_factory=list)
    repeat: list[IntArr] = field(default_factory=list)

    def add(
        self,
        *,
        t: FloatArr,
        cust: IntArr,
        region: IntArr,
        scenario: ObjArr,
        sub: ObjArr,
        channel: ObjArr,
        kind: ObjArr,
        incident: str | None = None,
        problem: str | None = None,
        repeat: IntArr | None = None,
    ) -> None:
        n = len(t)
        self.t.append(t)
        self.cust.append(cust)
        self.region.append(region)
        self.scenario.append(scenario)
        self.sub.append(sub)
        self.channel.append(channel)
        self.kind.append(kind)
        self.incident.append(np.full(n, incident, dtype=object))
        self.problem.append(np.full(n, problem, dtype=object))
        self.repeat.append(repeat if repeat is not None else np.zeros(n, dtype=np.int64))


@dataclass
class _Events:
    """Journey events; ids are assigned at creation so ground truth can point at them."""

    ids: list[str] = field(default_factory=list)
    cust: list[int] = field(default_factory=list)
    region: list[int] = field(default_factory=list)
    type: list[str] = field(default_factory=list)
    t: list[float] = field(default_factory=list)
    channel: list[str | None] = field(default_factory=list)
    attrs: list[dict[str, str]] = field(default_factory=list)

    def add(
        self,
        *,
        cust: int,
        region: int,
        type: str,
        t: float,
        channel: str | None,
        attrs: dict[str, str] | None = None,
    ) -> str:
        event_id = f"e{len(self.ids) + 1:07d}"
        self.ids.append(event_id)
        self.cust.append(cust)
        self.region.append(region)
        self.type.append(type)
        self.t.append(float(t))
        self.channel.append(channel)
        self.attrs.append(attrs or {})
        return event_id


# ---------------------------------------------------------------------------
# Text composition


class _SlotValues(dict[str, str]):
    """Lazily drawn slot values for one text, so every phrase gets fresh amounts and dates."""

    def __init__(self, rnd: random.Random, base: dict[str, str]) -> None:
        super().__init__(base)
        self.rnd = rnd

    def __missing__(self, key: str) -> str:
        value = self._draw(key)
        self[key] = value
        return value

    def _amount(self) -> str:
        r = self.rnd
        yuan = r.choice((5, 8, 9.9, 10, 15, 19.9, 20, 25, 29.9, 30, 38, 49, 50, 58, 99, 128))
        if r.random() < 0.3:
            yuan = round(r.uniform(3, 300), r.choice((0, 1, 2)))
        style = r.random()
        if self.get("lang") == "en":
            return f"¥{yuan:g}" if style < 0.6 else f"{yuan:g} yuan"
        if style < 0.45:
            return f"{yuan:g}元"
        if style < 0.65:
            return f"¥{yuan:g}"
        if style < 0.80:
            whole = int(yuan)
            frac = round((yuan - whole) * 10)
            return f"{whole}块{frac}" if frac else f"{whole}块钱"
        if style < 0.92:
            return f"{yuan:.2f}元"
        return f"{yuan:g}块"

    def _draw(self, key: str) -> str:
        r = self.rnd
        if key in ("amount", "amount_b"):
            return self._amount()
        if key == "plan":
            return r.choice(PLANS).name
        if key == "plan_b":
            current = self["plan"]
            return r.choice([p.name for p in PLANS if p.name != current])
        if key == "service":
            return r.choice(_SERVICES)
        if key == "date":
            month = r.choice((7, 8, 9, 10))
            day = r.randint(1, 28)
            return r.choice(
                (
                    f"{month}月{day}号",
                    f"{month}月{day}日",
                    f"{day}号",
                    "上周",
                    "前天",
                    "昨天",
                    "上个月",
                    f"2026-{month:02d}-{day:02d}",
                )
            )
        if key == "date_en":
            return f"{r.choice(_MONTHS_EN[6:10])} {r.randint(1, 28)}"
        if key == "month":
            return str(r.choice((7, 8, 9, 10)))
        if key == "month_en":
            return r.choice(_MONTHS_EN[6:10])
        if key in ("days", "times"):
            return str(r.choice((2, 3, 3, 4, 5, 6, 7, 10, 15)))
        if key == "hours":
            return str(r.choice((2, 3, 24, 48, 72, 96)))
        if key == "minutes":
            return str(r.choice((10, 15, 20, 25, 30, 40)))
        if key == "gb":
            return str(r.choice((1, 2, 3, 5, 8, 10, 20)))
        if key == "speed":
            return str(r.choice((2, 5, 10, 30, 100, 300, 500, 1000)))
        if key == "tenure":
            return str(r.randint(2, 20))
        if key == "points":
            return str(r.randrange(500, 20_000, 100))
        if key == "number":
            return f"{r.choice(('0', '95', '400', '170'))}{r.randrange(10**6, 10**7)}"
        if key == "intl_number":
            return r.choice(("+855", "+63", "+95", "+86-00", "+44", "+1"))
        if key == "phone_model":
            return r.choice(_PHONE_MODELS)
        if key == "agent_id":
            return str(r.randrange(1000, 99999))
        if key == "id4":
            return f"{r.randrange(0, 10000):04d}"
        if key == "nth":
            return r.choice(("third", "fourth", "fifth"))
        if key == "store":
            return r.choice(("营业厅", "旗舰厅", "合作厅", "街道营业厅"))
        return ""


class _Composer:
    """Assemble varied complaint texts from the lexicon's phrase fragments."""

    def __init__(self, lexicon: dict[str, Any], rnd: random.Random) -> None:
        self.zh: dict[str, Any] = lexicon["zh"]
        self.en: dict[str, Any] = lexicon["en"]
        self.rnd = rnd
        self._anger_cues = {
            lang: re.compile(
                "|".join(re.escape(str(w)) for w in lexicon[lang]["dialogue"]["anger_cues"]),
                re.IGNORECASE,
            )
            for lang in ("zh", "en")
        }

    def subcategories(self, scenario: str) -> list[str]:
        return list(self.zh["scenarios"][scenario])

    def _fill(self, template: str, slots: _SlotValues) -> str:
        return template.format_map(slots)

    def _dialect(self, text: str, province: str) -> str:
        r = self.rnd
        if province in _NORTHERN and r.random() < 0.45:
            for word, local in self.zh["dialect_words"].items():
                if word in text and r.random() < 0.7:
                    text = text.replace(word, local, 1)
        if r.random() < 0.3:
            particles = self.zh["particles"].get(province, self.zh["particles"]["default"])
            # A particle closes the first clause, where speakers usually put it.
            cuts = [i for i in (text.find("，"), text.find("。"), text.find("！")) if i > 0]
            particle = r.choice(particles)
            cut = min(cuts) if cuts else len(text)
            text = text[:cut] + particle + text[cut:]
        return text

    def _typo(self, text: str) -> str:
        r = self.rnd
        if r.random() < 0.18:
            candidates = [w for w in self.zh["typos"] if w in text]
            if candidates:
                word = r.choice(candidates)
                text = text.replace(word, self.zh["typos"][word], 1)
        return text

    def _end(self) -> str:
        return self.rnd.choices(
            ("。", "！", "！！", "！！！", "？", "？？", "。。。", "", "!!", "～"),
            weights=(30, 20, 8, 6, 6, 3, 6, 12, 5, 4),
        )[0]

    def _join_zh(self, parts: list[str]) -> str:
        r = self.rnd
        parts = [p for p in parts if p]
        out = ""
        for i, part in enumerate(parts):
            out += part
            if i < len(parts) - 1:
                out += r.choices(("，", "。", "！", " ", "，"), weights=(50, 25, 8, 4, 13))[0]
        return out + self._end()

    def _cores(self, scenario: str, sub: str, problem: str | None, lang: str) -> list[str]:
        lex = self.en if lang == "en" else self.zh
        if problem is not None:
            return list(lex["problems"][problem])
        if lang == "en":
            return list(self.en["scenarios"][scenario])
        return list(self.zh["scenarios"][scenario][sub])

    def text(
        self,
        *,
        scenario: str,
        sub: str,
        kind: str,
        channel: str,
        lang: str,
        base_slots: dict[str, str],
        problem: str | None,
        repeat: int,
        pii: str | None,
    ) -> str:
        """Compose one voice text."""
        slots = _SlotValues(self.rnd, {**base_slots, "lang": lang})
        cores = self._cores(scenario, sub, problem, lang)
        if lang == "en":
            return self._english(cores, kind, slots, repeat, pii)
        province = base_slots.get("province", "")
        r = self.rnd
        size = r.choices(("short", "medium", "long"), weights=(30, 45, 25))[0]
        first = r.choice(cores)
        core = self._fill(first, slots)
        body = [core]
        details = self.zh["details"]
        if size == "long" and len(cores) > 1 and r.random() < 0.6:
            second = r.choice([c for c in cores if c != first])
            body.append(self._fill(second, _SlotValues(r, base_slots)))
        n_details = {"short": 0, "medium": r.randint(0, 1), "long": r.randint(1, 2)}[size]
        for detail in r.sample(details["generic"], n_details):
            body.insert(r.randint(0, len(body)), self._fill(detail, slots))
        if repeat > 0:
            slots["times"] = str(repeat + 1)
            body.append(self._fill(r.choice(details["repeat"]), slots))
        if pii:
            body.insert(r.randint(0, len(body)), pii)
        emotion = r.choice(self.zh["emotions"]) if r.random() < 0.45 else ""
        if emotion and not emotion.startswith(("太", "真", "简直")) and r.random() < 0.3:
            emotion = r.choice(self.zh["intensifiers"]) + emotion
        demand = r.choice(self.zh["demands"]) if size != "short" and r.random() < 0.6 else ""

        if kind == "ticket":
            heads = self.zh["ticket_heads"]
            head = r.choice(heads.get(channel, heads["default"]))
            ask = r.choice(self.zh["ticket_asks"])
            text = f"{head}：{'，'.join(body)}。"
            if demand:
                text += f"{ask}：{demand}。"
            if r.random() < 0.3:
                text = f"[工单WO{r.randrange(10**7, 10**8)}] " + text
        elif kind == "social_post":
            tag = r.choice(self.zh["social_tags"])
            mention = r.choice(self.zh["social_mentions"]) if r.random() < 0.6 else ""
            text = self._join_zh([*body, emotion])
            text = f"{tag}{text}{mention}" if r.random() < 0.6 else f"{text}{tag}{mention}"
        elif kind == "app_review":
            head = r.choice(self.zh["review_heads"]) if r.random() < 0.5 else ""
            text = self._join_zh([head, core, emotion])
        else:
            opener = r.choice(self.zh["openers"]) if size != "short" and r.random() < 0.5 else ""
            closer = r.choice(self.zh["closers"]) if r.random() < 0.2 else ""
            text = self._join_zh([opener, *body, emotion, demand, closer])
        return self._typo(self._dialect(text, province))

    def _english(
        self, cores: list[str], kind: str, slots: _SlotValues, repeat: int, pii: str | None
    ) -> str:
        r = self.rnd
        en = self.en
        core = self._fill(r.choice(cores), slots)
        parts = [core + r.choice((".", "!", "!!", ".", "?!"))]
        if r.random() < 0.5:
            parts.append(self._fill(r.choice(en["details"]), slots))
        if repeat > 0:
            parts.append(f"This is complaint number {repeat + 1} about this.")
        if pii:
            parts.append(pii)
        if r.random() < 0.4:
            parts.append(r.choice(en["emotions"]))
        if r.random() < 0.5:
            parts.append(r.choice(en["demands"]))
        if r.random() < 0.4:
            parts.insert(0, r.choice(en["openers"]) + ",")
        closer = r.choice(en["closers"]) if r.random() < 0.3 else ""
        text = " ".join(p for p in (*parts, closer) if p)
        if kind == "social_post":
            text += " #ChinaMobile"
        return text

    # -- Conversations (call_transcript, chat) with agent behaviour ---------------------

    def _customer_zh(
        self,
        *,
        cores: list[str],
        slots: _SlotValues,
        base_slots: dict[str, str],
        repeat: int,
        pii: str | None,
        angry: bool,
    ) -> tuple[list[str], str, str]:
        """Return the customer's statements (body parts), emotion and demand in Chinese."""
        r = self.rnd
        size = r.choices(("short", "medium", "long"), weights=(30, 45, 25))[0]
        first = r.choice(cores)
        body = [self._fill(first, slots)]
        details = self.zh["details"]
        if size == "long" and len(cores) > 1 and r.random() < 0.6:
            second = r.choice([c for c in cores if c != first])
            body.append(self._fill(second, _SlotValues(r, base_slots)))
        n_details = {"short": 0, "medium": r.randint(0, 1), "long": r.randint(1, 2)}[size]
        for detail in r.sample(details["generic"], n_details):
            body.insert(r.randint(0, len(body)), self._fill(detail, slots))
        if repeat > 0:
            slots["times"] = str(repeat + 1)
            body.append(self._fill(r.choice(details["repeat"]), slots))
        if pii:
            body.insert(r.randint(0, len(body)), pii)
        emotion = ""
        if angry:
            emotion = r.choice(self.zh["emotions"])
            if not emotion.startswith(("太", "真", "简直")) and r.random() < 0.3:
                emotion = r.choice(self.zh["intensifiers"]) + emotion
        demand = r.choice(self.zh["demands"]) if size != "short" and r.random() < 0.6 else ""
        return body, emotion, demand

    def _customer_en(
        self, *, cores: list[str], slots: _SlotValues, repeat: int, pii: str | None, angry: bool
    ) -> tuple[list[str], str, str]:
        """Return the customer's statements, emotion and demand in English."""
        r = self.rnd
        en = self.en
        body = [self._fill(r.choice(cores), slots) + r.choice((".", "!", "."))]
        if r.random() < 0.5:
            body.append(self._fill(r.choice(en["details"]), slots))
        if repeat > 0:
            body.append(f"This is complaint number {repeat + 1} about this.")
        if pii:
            body.append(pii + ".")
        emotion = r.choice(en["emotions"]) if angry else ""
        demand = r.choice(en["demands"]) if r.random() < 0.5 else ""
        return body, emotion, demand

    def conversation(
        self,
        *,
        scenario: str,
        sub: str,
        kind: str,
        lang: str,
        base_slots: dict[str, str],
        problem: str | None,
        repeat: int,
        pii: str | None,
        job: str,
        angry: bool,
        violations: frozenset[str],
        account_op: bool,
        plan_change: bool,
    ) -> str:
        """Compose a timed hotline or chat conversation with the planted QA violations.

        Every step a QA rule checks (greeting, self-introduction, identity verification
        before an account operation, empathy after an angry customer turn, a solution,
        consent before a plan change, closing, rating invitation) is present unless its
        rule id is in ``violations``; prohibited words, promises, long silences, agent
        interruptions and over-fast agent turns appear only when planted.
        """
        r = self.rnd
        en = lang == "en"
        lex = self.en if en else self.zh
        d: dict[str, Any] = lex["dialogue"]
        slots = _SlotValues(r, {**base_slots, "lang": lang, "job": job})
        cores = self._cores(scenario, sub, problem, lang)
        if en:
            body, emotion, demand = self._customer_en(
                cores=cores, slots=slots, repeat=repeat, pii=pii, angry=angry
            )
            join = " "
        else:
            body, emotion, demand = self._customer_zh(
                cores=cores,
                slots=slots,
                base_slots=base_slots,
                repeat=repeat,
                pii=pii,
                angry=angry,
            )
            join = "，"
        cust_lines: dict[str, list[str]] = d["customer"]
        # (is_agent, text, hold, angry_customer_turn)
        turns: list[tuple[bool, str, bool, bool]] = []

        def say(text: str, *, hold: bool = False) -> None:
            if pending_empathy[0]:
                pending_empathy[0] = False
                text = r.choice(d["empathy"]) + ("，" if not en else " ") + text
            turns.append((True, self._fill(text, slots), hold, False))

        cues = self._anger_cues["en" if en else "zh"]

        def hear(text: str, *, mad: bool = False, hold: bool = False) -> None:
            turns.append((False, text, hold, mad))
            # A clean agent answers an angry turn, or any turn that could read as one
            # (坑, 投诉, 12300 ...), with empathy first, so the truth is not arguable.
            if "empathy_when_angry" not in violations and (mad or cues.search(text)):
                pending_empathy[0] = True

        pending_empathy = [False]

        def end_zh(mad: bool) -> str:
            if en:
                return ""
            return r.choice(("！", "！！", "！")) if mad else r.choice(("。", "", "？", "。"))

        # Opening.
        greet_missing = "greeting" in violations
        intro_missing = "self_intro" in violations
        if greet_missing and intro_missing:
            opening = r.choice(d["bare"])
        elif greet_missing:
            opening = r.choice(d["intro_no_greet"])
        elif intro_missing:
            opening = r.choice(d["greet_no_intro"])
        else:
            opening = r.choice(d["greet"]["chat" if kind == "chat" else "call"])
        say(opening)

        # The customer's problem, in one or two turns.
        split = len(body) > 1 and r.random() < 0.5
        head = body[:1] if split else body
        first = join.join(head)
        if emotion:
            first += join + emotion
        if not en:
            opener = r.choice(self.zh["openers"]) if r.random() < 0.25 else ""
            first = self._typo((opener + "，" if opener else "") + first)
            if kind == "chat":
                first = self._dialect(first, base_slots.get("province", ""))
        hear(first + end_zh(angry), mad=angry)
        if not angry and r.random() < 0.25:
            pending_empathy[0] = True  # courtesy apology, not only when the customer is angry
        if split:
            say(r.choice(d["prompt"]))
            hear(join.join(body[1:]) + end_zh(False))

        verify_first = account_op and "identity_verification" not in violations
        if not verify_first and not account_op and r.random() < 0.3:
            verify_first = True
        if verify_first:
            self._verify(d, say, hear)

        ops = scenario if scenario in d["op_check"] else None
        if account_op and ops is not None:
            check = r.choice(d["op_check"][ops])
            say(check + (" One moment please." if en else "，请稍等"), hold=True)
            say(r.choice(d["op_do"][ops]))
            hear(r.choice(cust_lines["ack"]))
        # Verifying only after the account was already queried is still a violation.
        late_verify = (
            ops is not None
            and account_op
            and not verify_first
            and "identity_verification" in violations
            and r.random() < 0.25
        )
        if late_verify:
            self._verify(d, say, hear)

        explain = d["explain"]
        for _ in range(r.randint(0, 2)):
            lines = explain.get(scenario) if r.random() < 0.6 else None
            say(r.choice(lines or explain["generic"]))
            mad = angry and r.random() < 0.4
            hear(r.choice(cust_lines["angry" if mad else "calm"]), mad=mad)
        if "prohibited_words" in violations:
            say(r.choice(d["prohibited"]))
            hear(r.choice(cust_lines["angry"]), mad=True)
        if "speaking_rate" in violations or r.random() < 0.25:
            own = d["long"].get(scenario)
            say(r.choice(own if own and r.random() < 0.7 else d["long"]["generic"]))
            hear(r.choice(cust_lines["ack"]))

        if plan_change:
            plan = d["plan"]
            if "no_unauthorised_plan_change" not in violations:
                say(r.choice(plan["offer"]))
                hear(r.choice(plan["agree"]))
                say(r.choice(plan["done"]))
            elif r.random() < 0.6:
                say(r.choice(plan["forced"]))
            else:
                say(r.choice(plan["offer"]))
                hear(r.choice(plan["decline"]))
                say(r.choice(plan["after_no"]))
            hear(r.choice(cust_lines["ack"]))

        if demand:
            hear(demand + (end_zh(True) if angry else r.choice(("。", ""))), mad=angry)
        if "solution_offered" in violations:
            say(r.choice(d["no_solution"]))
        else:
            own = d["solution"].get(scenario)
            say(r.choice(own if own and r.random() < 0.6 else d["solution"]["generic"]))
        if "unauthorised_promise" in violations:
            say(r.choice(d["promise"]))
        mad = angry and r.random() < 0.3
        hear(r.choice(cust_lines["angry" if mad else "calm"]), mad=mad)

        # Closing and rating invitation (together in the last agent turn when both).
        close_ok = "closing" not in violations
        rate_ok = "invite_rating" not in violations
        if close_ok and r.random() < 0.7:
            say(r.choice(d["close"]["ask"]))
            hear(r.choice(cust_lines["bye"]))
        last: list[str] = []
        if rate_ok:
            last.append(r.choice(d["rating"]["chat" if kind == "chat" else "call"]))
        if close_ok:
            last.append(r.choice(d["close"]["chat" if kind == "chat" else "call"]))
        if last:
            say(("，" if not en else " ").join(last))
        elif r.random() < 0.5:
            hear(r.choice(cust_lines["end"]))
        return self._timeline(turns, lang=lang, violations=violations)

    def _verify(
        self, d: dict[str, Any], say: Callable[..., None], hear: Callable[..., None]
    ) -> None:
        r = self.rnd
        v = d["verify"]
        say(r.choice(v["ask"]))
        if r.random() < 0.04:
            # The customer looks for the ID card: a long pause that is not the agent's.
            hear(r.choice(v["pause"]), hold=True)
        hear(self._fill(r.choice(v["answer"]), _SlotValues(r, {})))
        say(r.choice(v["ok"]))

    def _timeline(
        self, turns: list[tuple[bool, str, bool, bool]], *, lang: str, violations: frozenset[str]
    ) -> str:
        """Time the turns (deciseconds) and render them as ``[start-end] role：text`` lines.

        Chinese is read at 3-5 characters/s (every character, punctuation included, so no
        way of counting makes a clean turn faster than 5/s), English at 2.0-2.8 words/s;
        gaps are 0.3-2 s, 3-8 s after an agent's "please hold". A planted ``speaking_rate``
        turn runs at 7.5-9 Chinese characters/s counting only CJK characters and one per
        latin or digit run; a planted ``long_silence`` leaves 12-30 s before an agent turn;
        a planted ``interruption`` starts an agent turn 0.5-2 s before the customer's ends.
        """
        r = self.rnd
        en = lang == "en"
        agent_role, cust_role, sep = ("Agent", "Customer", ": ") if en else ("坐席", "客户", "：")
        agents = [i for i, t in enumerate(turns) if t[0]]
        after_customer = [i for i in agents if i > 0 and not turns[i - 1][0]]
        fast_at = silence_at = interrupt_at = -1
        if "speaking_rate" in violations:
            long_turns = [i for i in agents if len(_UNITS.findall(turns[i][1])) >= 34]
            fast_at = r.choice(long_turns) if long_turns else -1
        if "long_silence" in violations:
            silence_at = r.choice([i for i in agents if i > 0])
        if "interruption" in violations:
            options = [i for i in after_customer if i != silence_at] or after_customer
            interrupt_at = r.choice(options)
        out: list[str] = []
        rand = r.random  # timing draws are the hot loop: plain floats, no randint
        cursor = 3 + int(13 * rand())
        prev_start = prev_dur = 0
        prev_hold = False
        for k, (is_agent, text, hold, _mad) in enumerate(turns):
            if k == fast_at:
                dur = int(10 * len(_UNITS.findall(text)) / (7.5 + 1.5 * rand()))
            elif en:
                dur = math.ceil(10 * len(text.split()) / (2.0 + 0.8 * rand()))
            else:
                dur = math.ceil(10 * len(text) / (3.0 + 2.0 * rand()))
            if dur < 6:
                dur = 6
            if k == 0:
                start = cursor
            elif k == silence_at:
                start = cursor + 120 + int(181 * rand())
            elif k == interrupt_at:
                start = max(cursor - 5 - int(16 * rand()), prev_start + max(prev_dur // 2, 1))
                start = min(start, cursor - 1)
            elif prev_hold:
                # An agent's hold is short; a customer looking for the ID card is not the
                # agent's silence however long it is.
                start = cursor + (30 + int(51 * rand()) if is_agent else 100 + int(51 * rand()))
            elif not is_agent and turns[k - 1][0] and rand() < 0.03:
                # The customer cuts in: an interruption, but not the agent's.
                start = max(cursor - 3 - int(3 * rand()), prev_start + 1)
            else:
                start = cursor + 3 + int(18 * rand())
            end = start + dur
            out.append(
                f"[{start // 10}.{start % 10}-{end // 10}.{end % 10}] "
                f"{agent_role if is_agent else cust_role}{sep}{text}"
            )
            if end > cursor:
                cursor = end
            prev_start, prev_dur, prev_hold = start, dur, hold
        return "\n".join(out)

    def pii(self, *, lang: str, phone: str, province: str, city: str, district: str) -> str:
        """Return a sentence carrying one kind of personal data."""
        r = self.rnd
        what = r.choices(("phone", "other_phone", "id", "address"), weights=(40, 15, 20, 25))[0]
        if what == "phone":
            return f"my number is {phone}" if lang == "en" else f"我的号码是{phone}"
        if what == "other_phone":
            other = f"1{r.choice((3, 5, 8))}{r.randrange(10**8, 10**9)}"
            return f"call me back on {other}" if lang == "en" else f"回电请打{other}"
        if what == "id":
            ident = resident_id(r, province)
            return f"my ID number is {ident}" if lang == "en" else f"身份证号{ident}"
        addr = (
            f"{city}市{district}{r.choice(_ROADS)}{r.randint(1, 300)}号"
            f"{r.choice(_COMPOUNDS)}{r.randint(1, 30)}栋{r.randint(1, 6)}单元"
            f"{r.randint(101, 2802)}室"
        )
        return f"address: {addr}" if lang == "en" else f"地址是{addr}"

    def comment(self, *, scenario: str | None, province: str, base_slots: dict[str, str]) -> str:
        """Compose a short survey comment: a complaint fragment, or praise when satisfied."""
        r = self.rnd
        if scenario is None:
            return str(r.choice(self.zh["praise"])) + self._end()
        sub = r.choice(self.subcategories(scenario))
        slots = _SlotValues(r, base_slots)
        parts = [self._fill(r.choice(self.zh["scenarios"][scenario][sub]), slots)]
        if r.random() < 0.4:
            parts.append(r.choice(self.zh["emotions"]))
        return self._typo(self._dialect(self._join_zh(parts), province))


# ---------------------------------------------------------------------------
# Generation steps


def _make_customers(rng: np.random.Generator, n: int, region_w: FloatArr) -> _Customers:
    prefix = rng.choice(_MOBILE_PREFIXES, size=n)
    numbers = prefix * 10**8 + rng.integers(0, 10**8, size=n)
    while True:
        _, first = np.unique(numbers, return_index=True)
        dup = np.ones(n, dtype=bool)
        dup[first] = False
        if not dup.any():
            break
        numbers[dup] = rng.choice(_MOBILE_PREFIXES, size=int(dup.sum())) * 10**8 + rng.integers(
            0, 10**8, size=int(dup.sum())
        )
    ids = np.asarray(numbers.astype(str), dtype=object)
    region = rng.choice(len(region_w), size=n, p=region_w).astype(np.int64)
    share = np.asarray([p.share for p in PLANS], dtype=np.float64)
    plan = rng.choice(len(PLANS), size=n, p=share / share.sum()).astype(np.int64)
    fee = np.asarray([p.monthly_fee for p in PLANS], dtype=np.float64)[plan]
    tenure = np.round(np.minimum(rng.gamma(1.6, 30.0, size=n) + 1.0, 300.0)).astype(np.float64)
    arpu = np.round(fee * rng.lognormal(0.05, 0.18, size=n) + rng.exponential(6.0, size=n), 2)
    segment = np.asarray([p.segment for p in PLANS], dtype=object)[plan]
    business = rng.random(n) < 0.05
    segment[business & (segment == "mass_market")] = "business"
    p_bb = np.where(segment == "family", 0.9, np.where(segment == "youth", 0.2, 0.55))
    broadband = rng.random(n) < p_bb
    activity = rng.lognormal(0.0, 1.0, size=n)
    large = np.isin(np.asarray([p.name for p in PLANS], dtype=object)[plan], LARGE_DATA_PLANS)
    return _Customers(
        ids=ids,
        region=region,
        plan=plan,
        tenure=tenure,
        arpu=arpu,
        segment=segment,
        broadband=broadband,
        activity=activity,
        large_data=large,
        close_t=np.full(n, np.inf),
    )


def _hour_grid(day_factor: FloatArr, first_hour: float) -> FloatArr:
    """Return the relative intensity of every hour of the window."""
    hours = np.arange(len(day_factor) * 24)
    local_hour = ((hours + first_hour) % 24).astype(np.int64)
    return HOUR_WEIGHTS[local_hour] * day_factor[hours // 24]


def _sample_times(
    rng: np.random.Generator, grid: FloatArr, n: int, t0: float, t1: float
) -> FloatArr:
    """Draw ``n`` times in [t0, t1) following the hourly intensity grid."""
    h0 = max(int(t0 // HOUR), 0)
    h1 = min(math.ceil(t1 / HOUR), len(grid))
    w = grid[h0:h1]
    hours = rng.choice(np.arange(h0, h1), size=n, p=w / w.sum())
    t = hours * HOUR + rng.random(n) * HOUR
    return np.clip(t, t0, np.nextafter(t1, t0))


def _daytime(rng: np.random.Generator, t: FloatArr) -> FloatArr:
    """Move each time to a local hour drawn from the daily profile, keeping its day."""
    # Same draws as ``rng.choice(24, p=HOUR_WEIGHTS / sum)`` (inverse CDF of one uniform
    # each), without its per-call validation: this runs once per journey event.
    hours = _HOUR_CDF.searchsorted(rng.random(len(t)), side="right")
    return np.asarray(np.floor(t / DAY) * DAY + (hours + rng.random(len(t))) * HOUR)


def _day_time(rng: np.random.Generator, t: float, latest: float) -> float:
    """Move one time to a daytime-profile hour of its day, no later than ``latest``."""
    return min(float(_daytime(rng, np.asarray([t]))[0]), latest)


def _draw_customers(
    rng: np.random.Generator, pool: IntArr, weights: FloatArr, n: int, *, replace: bool = True
) -> IntArr:
    if len(pool) == 0:
        raise ValueError("no customer matches the planted incident; raise --customers")
    w = weights[pool]
    if not replace and n > len(pool):
        replace = True
    return np.asarray(rng.choice(pool, size=n, replace=replace, p=w / w.sum()), dtype=np.int64)


def _subcats(rng: np.random.Generator, composer: _Composer, scenarios: ObjArr) -> ObjArr:
    out = np.empty(len(scenarios), dtype=object)
    for code in SCENARIOS:
        mask = scenarios == code
        if mask.any():
            subs = composer.subcategories(code)
            out[mask] = np.asarray(subs, dtype=object)[rng.integers(0, len(subs), int(mask.sum()))]
    return out


@dataclass
class _Agents:
    """Hotline/online agents: id, team, the team's city and per-rule violation rates."""

    ids: ObjArr
    job: ObjArr
    team: ObjArr
    city: ObjArr
    rates: FloatArr  # (agents, rules)


def _make_agents(rng: np.random.Generator, conv_city: ObjArr) -> _Agents:
    """Staff teams in each city in proportion to its conversations, agents of mixed quality.

    An agent's violation rate for a rule is the base rate times an agent factor, a team
    factor and a per-rule habit (all log-normal), so some agents and teams are clearly
    worse than others and per-agent and per-team QA scores have something to find.
    """
    cities = [c for _, _, cs in GEOGRAPHY for c, _, _ in cs]
    team: list[str] = []
    city: list[str] = []
    team_of_team: list[int] = []
    n_teams_total = 0
    for c in cities:
        k = int((conv_city == c).sum())
        n_teams = int(np.clip(math.ceil(k / 150), 1, len(_TEAM_NUMERALS)))
        per_team = int(np.clip(round(k / n_teams / 30), 3, 12))
        for j in range(n_teams):
            for _ in range(per_team):
                team.append(f"{c}{_TEAM_NUMERALS[j]}组")
                city.append(c)
                team_of_team.append(n_teams_total)
            n_teams_total += 1
    n = len(team)
    numbers = rng.choice(np.arange(1000, 10000), size=n, replace=False)
    agent_f = rng.lognormal(0.0, 0.8, size=n)
    agent_f /= agent_f.mean()
    team_f = rng.lognormal(0.0, 0.4, size=n_teams_total)[np.asarray(team_of_team)]
    habit = rng.lognormal(0.0, 0.5, size=(n, len(QA_RULES)))
    base = np.asarray(list(QA_RULES.values()), dtype=np.float64)
    rates = np.minimum(base[None, :] * (agent_f * team_f)[:, None] * habit, 0.6)
    return _Agents(
        ids=np.asarray([f"A{x}" for x in numbers], dtype=object),
        job=np.asarray([str(x) for x in numbers], dtype=object),
        team=np.asarray(team, dtype=object),
        city=np.asarray(city, dtype=object),
        rates=rates,
    )


@dataclass
class _QaPlan:
    """What each conversation will contain: agent, anger, account touch, violations."""

    agent: IntArr
    angry: BoolArr
    account_op: BoolArr
    plan_change: BoolArr
    violations: BoolArr  # (conversations, rules)


def _plan_conversations(
    rng: np.random.Generator,
    agents: _Agents,
    *,
    city: ObjArr,
    scenario: ObjArr,
    lang: ObjArr,
    repeat: IntArr,
    problem: ObjArr,
) -> _QaPlan:
    """Assign agents and draw, vectorised, which QA rules each conversation violates."""
    n = len(city)
    agent = np.zeros(n, dtype=np.int64)
    for c in np.unique(city).tolist():
        mask = city == c
        pool = np.flatnonzero(agents.city == c)
        agent[mask] = pool[rng.integers(0, len(pool), int(mask.sum()))]
    col = {r: j for j, r in enumerate(QA_RULES)}
    # Escalations, repeat contacts and planted incidents bring more angry customers.
    heated = (
        np.isin(scenario, ("SUPV", "CMPL")) | (repeat > 0) | np.isin(problem, ("surge", "outage"))
    )
    angry = rng.random(n) < np.where(heated, 0.55, 0.28)
    viol = rng.random((n, len(QA_RULES))) < agents.rates[agent]
    viol[:, col["empathy_when_angry"]] &= angry
    viol[:, col["speaking_rate"]] &= lang != "en"
    no_solution = viol[:, col["solution_offered"]]
    viol[:, col["no_unauthorised_plan_change"]] &= ~no_solution
    offered = ((scenario == "PLAN") & (rng.random(n) < 0.5)) | (rng.random(n) < 0.04)
    plan_change = viol[:, col["no_unauthorised_plan_change"]] | (offered & ~no_solution)
    account_op = (np.isin(scenario, ACCOUNT_SCENARIOS) & ~no_solution) | plan_change
    viol[:, col["identity_verification"]] &= account_op
    return _QaPlan(
        agent=agent,
        angry=angry,
        account_op=account_op,
        plan_change=plan_change,
        violations=viol,
    )


def _cheapest_cover(data_gb: FloatArr, voice_min: FloatArr) -> FloatArr:
    """Return the fee of the cheapest open plan covering usage with ``OVERPAY_HEADROOM``.

    Only plans anyone may take count (senior, youth and family plans have conditions).
    """
    best = np.full(len(data_gb), np.inf)
    for p in OPEN_PLANS:
        fits = (p.data_gb >= OVERPAY_HEADROOM * data_gb) & (
            p.voice_minutes >= OVERPAY_HEADROOM * voice_min
        )
        best = np.where(fits, np.minimum(best, p.monthly_fee), best)
    return best


def _usage(
    rng: np.random.Generator, cust: _Customers, over_data: IntArr
) -> tuple[FloatArr, FloatArr, IntArr]:
    """Draw each customer's average monthly data (GB) and voice (minutes) use.

    Most use 30-95 % of their allowance; half the customers with an over-plan usage
    event and a few others exceed it on average; a planted 5 % on plans of 58 yuan or
    more use what a plan at most 40 % of their fee covers (套餐适配不合理). Background
    draws that would meet the overpaying criterion by chance are raised, so the planted
    group is exactly the set of customers whose cheapest covering plan costs at most
    ``OVERPAY_FEE_SHARE`` of theirs.
    """
    n = cust.n
    data_allow = np.asarray([p.data_gb for p in PLANS], dtype=np.float64)[cust.plan]
    voice_allow = np.asarray([p.voice_minutes for p in PLANS], dtype=np.float64)[cust.plan]
    fee = np.asarray([p.monthly_fee for p in PLANS], dtype=np.float64)[cust.plan]
    data = data_allow * (0.3 + 0.65 * rng.beta(2.0, 1.8, n))
    voice = voice_allow * (0.3 + 0.65 * rng.beta(1.6, 2.0, n))
    # Pay-per-minute plans (no minutes included) still see calls.
    payg = voice_allow == 0
    voice[payg] = rng.gamma(2.0, 25.0, int(payg.sum()))
    # Half of those who went over their plan in some month also average above it; the
    # others average just under it.
    had_event = np.zeros(n, dtype=bool)
    had_event[over_data] = True
    exceed_d = rng.random(n) < 0.02
    exceed_d[over_data[rng.random(len(over_data)) < 0.5]] = True
    near = had_event & ~exceed_d
    exceed_v = (rng.random(n) < 0.015) & ~payg
    data[near] = data_allow[near] * rng.uniform(0.9, 1.0, int(near.sum()))
    data[exceed_d] = data_allow[exceed_d] * rng.uniform(1.05, 1.6, int(exceed_d.sum()))
    voice[exceed_v] = voice_allow[exceed_v] * rng.uniform(1.05, 1.5, int(exceed_v.sum()))
    cand = np.flatnonzero((fee >= 58) & ~had_event & ~exceed_d & ~exceed_v)
    picked = np.sort(rng.choice(cand, size=min(len(cand), round(0.05 * n)), replace=False))
    for i, p in enumerate(PLANS):
        rows = picked[cust.plan[picked] == i]
        targets = [t for t in OPEN_PLANS if t.monthly_fee <= 0.4 * p.monthly_fee]
        if not len(rows) or not targets:
            continue
        which = rng.integers(0, len(targets), len(rows))
        t_data = np.asarray([targets[w].data_gb for w in which], dtype=np.float64)
        t_voice = np.asarray([targets[w].voice_minutes for w in which], dtype=np.float64)
        data[rows] = t_data * rng.uniform(0.3, 0.75, len(rows))
        voice[rows] = t_voice * rng.uniform(0.3, 0.75, len(rows))
    planted = np.zeros(n, dtype=bool)
    planted[picked] = True
    chance = ~planted & (_cheapest_cover(data, voice) <= OVERPAY_FEE_SHARE * fee)
    data[chance] = np.maximum(data[chance], 0.6 * data_allow[chance])
    voice[chance] = np.maximum(voice[chance], 0.6 * voice_allow[chance])
    overpaying = np.flatnonzero(_cheapest_cover(data, voice) <= OVERPAY_FEE_SHARE * fee)
    return np.round(data, 2), np.round(voice), overpaying.astype(np.int64)


def generate_operator(
    *,
    customers: int = 20_000,
    days: int = 60,
    seed: int = 7,
    out_dir: Path | str,
    start: datetime = DEFAULT_START,
    voice_rate: float = 0.01,
    survey_rate: float = 0.006,
) -> dict[str, Any]:
    """Write a realistic demo operator's flat files and ``ground_truth.json`` to ``out_dir``.

    Parameters
    ----------
    customers, days, seed
        Size of the operator, length of the window (local days from ``start``'s midnight)
        and random seed; the output is byte-identical for equal arguments.
    out_dir
        Folder to write into (created when missing).
    start
        First day of the window; naive values are read as Asia/Shanghai local time.
    voice_rate, survey_rate
        Background voices and survey responses per customer per day.

    Returns
    -------
    dict
        Summary: row counts per file, planted incidents, problems, churn and violations.

    Notes
    -----
    R13 violations (no reply within 15 days) are planted only when ``days >= 17``, since
    the deadline must have passed inside the window for a checker to decide them.
    """
    if customers < 200:
        raise ValueError(f"customers={customers}: at least 200 are needed to plant incidents")
    if days < 14:
        raise ValueError(f"days={days}: at least 14 days are needed to plant the journeys")
    if voice_rate <= 0 or survey_rate <= 0:
        raise ValueError("voice_rate and survey_rate must be positive")
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    aware = start if start.tzinfo is not None else start.replace(tzinfo=TZ)
    origin = aware.astimezone(TZ).replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    window = days * DAY

    rng = np.random.default_rng(seed)
    rnd = random.Random(int(rng.integers(0, 2**63)))
    composer = _Composer(load_lexicon(), rnd)
    prov, city, dist, region_w = _flat_regions()
    cust = _make_customers(rng, customers, region_w)
    day_factor = day_factors(origin.date(), days)
    grid = _hour_grid(day_factor, 0.0)
    events = _Events()
    voices = _Voices()
    truth: dict[str, Any] = {
        "seed": seed,
        "start": origin.replace(tzinfo=TZ).isoformat(),
        "days": days,
        "customers": customers,
    }

    # --- Churn: planted journeys (strong signals) and a background hazard (weak ones).
    tenure_w = (1.0 + 2.0 * (cust.tenure < 24)) * (1.0 + 1.5 * cust.large_data)
    n_churn = max(6, round(0.008 * customers))
    churners = rng.choice(customers, size=n_churn, replace=False, p=tenure_w / tenure_w.sum())
    churners = np.sort(churners).astype(np.int64)
    lo = max(0.45 * window, 9 * DAY)
    cust.close_t[churners] = rng.uniform(lo, 0.97 * window, size=n_churn)
    hazard = 0.0005 * (1.0 + (cust.tenure < 12)) * (1.0 + 0.8 * cust.large_data)
    hazard = hazard * np.where(cust.segment == "family", 0.6, 1.0)
    bg = (rng.random(customers) < 1.0 - np.exp(-hazard * days)) & ~np.isfinite(cust.close_t)
    bg_churners = np.flatnonzero(bg).astype(np.int64)
    cust.close_t[bg_churners] = rng.uniform(0.5 * DAY, window - 0.5 * DAY, size=len(bg_churners))
    stayers = np.flatnonzero(~np.isfinite(cust.close_t)).astype(np.int64)
    is_stayer = ~np.isfinite(cust.close_t)

    # --- Background voices: inhomogeneous Poisson process over the hourly grid.
    lam = grid / HOUR_WEIGHTS.sum() * voice_rate * customers
    counts = rng.poisson(lam)
    t_bg = np.repeat(np.arange(len(grid)), counts) * HOUR + rng.random(int(counts.sum())) * HOUR
    n_bg = len(t_bg)
    mix = np.asarray(list(SCENARIO_MIX.values()))
    scen_bg = np.asarray(SCENARIOS, dtype=object)[rng.choice(len(mix), size=n_bg, p=mix)]
    all_idx = np.arange(customers, dtype=np.int64)
    c_bg = _draw_customers(rng, all_idx, cust.activity, n_bg)
    gone = cust.close_t[c_bg] <= t_bg
    c_bg[gone] = _draw_customers(rng, stayers, cust.activity, int(gone.sum()))
    bb_stayers = stayers[cust.broadband[stayers]]
    no_bb = (scen_bg == "HBB") & ~cust.broadband[c_bg]
    c_bg[no_bb] = _draw_customers(rng, bb_stayers, cust.activity, int(no_bb.sum()))
    ch_bg = _channels_for(rng, scen_bg)
    voices.add(
        t=t_bg,
        cust=c_bg,
        region=cust.region[c_bg],
        scenario=scen_bg,
        sub=_subcats(rng, composer, scen_bg),
        channel=ch_bg,
        kind=_kinds_for(rng, ch_bg),
    )

    # --- Planted incident 1: billing mis-charge surge in one city over two days.
    city_names = np.asarray(city[cust.region], dtype=object)
    top_cities = [str(c) for c in _top_values(city_names[stayers], 3)]
    surge_city = top_cities[int(rng.integers(0, len(top_cities)))]
    surge_day = int(np.clip(int(days * 0.55) + rng.integers(-2, 3), 2, days - 3))
    s0, s1 = surge_day * DAY, (surge_day + 2) * DAY
    n_surge = max(40, round(0.006 * customers))
    hours48 = np.arange(48)
    shape = HOUR_WEIGHTS[hours48 % 24] * (np.exp(-(((hours48 - 22.0) / 13.0) ** 2)) + 0.25)
    t_surge = (
        s0 + (rng.choice(48, size=n_surge, p=shape / shape.sum()) + rng.random(n_surge)) * HOUR
    )
    pool = stayers[city_names[stayers] == surge_city]
    c_surge = _draw_customers(rng, pool, np.ones(customers), n_surge, replace=False)
    ch_surge = _pick(
        rng,
        ("hotline_10086", "app", "store", "mini_program", "social"),
        (0.76, 0.11, 0.06, 0.04, 0.03),
        n_surge,
    )
    voices.add(
        t=t_surge,
        cust=c_surge,
        region=cust.region[c_surge],
        scenario=np.full(n_surge, "BILL", dtype=object),
        sub=np.full(n_surge, "unexplained_charge", dtype=object),
        channel=ch_surge,
        kind=_kinds_for(rng, ch_surge),
        incident="inc-billing-surge",
        problem="surge",
    )
    surge_province = str(prov[cust.region[c_surge[0]]])

    # --- Planted incident 2: home-broadband outage in one district.
    other_cities = [c for c in _top_values(city_names[stayers], 5) if c != surge_city]
    outage_city = str(other_cities[int(rng.integers(0, len(other_cities)))])
    city_bb = bb_stayers[city_names[bb_stayers] == outage_city]
    if len(city_bb) == 0:
        raise ValueError(f"no broadband customer in {outage_city}; raise --customers")
    outage_region = int(_top_values(cust.region[city_bb], 1)[0])
    outage_day = int(np.clip(int(days * 0.3) + rng.integers(-2, 3), 1, days - 2))
    o0 = outage_day * DAY + (19.0 + 3.0 * rng.random()) * HOUR
    o1 = o0 + (10.0 + 6.0 * rng.random()) * HOUR
    district_bb = bb_stayers[cust.region[bb_stayers] == outage_region]
    n_outage = int(min(max(25, round(0.004 * customers)), max(10, int(0.8 * len(district_bb)))))
    t_out = o0 + (o1 - o0) * rng.beta(1.3, 2.5, size=n_outage)
    c_out = _draw_customers(rng, district_bb, np.ones(customers), n_outage, replace=False)
    ch_out = _pick(
        rng, ("hotline_10086", "app", "mini_program", "social"), (0.6, 0.2, 0.1, 0.1), n_outage
    )
    voices.add(
        t=t_out,
        cust=c_out,
        region=cust.region[c_out],
        scenario=np.full(n_outage, "HBB", dtype=object),
        sub=np.full(n_outage, "fault_repair", dtype=object),
        channel=ch_out,
        kind=_kinds_for(rng, ch_out),
        incident="inc-broadband-outage",
        problem="outage",
    )
    events.add(
        cust=-1,
        region=outage_region,
        type="outage_started",
        t=o0,
        channel=None,
        attrs={"outage_id": "out-major", "service": "broadband", "cause": "fiber_cut"},
    )
    events.add(
        cust=-1,
        region=outage_region,
        type="outage_ended",
        t=o1,
        channel=None,
        attrs={"outage_id": "out-major", "service": "broadband"},
    )

    # --- Recurring smaller problems, spread thinly so they form groups but no surge.
    theme_plan = "5G畅享套餐 199元"
    plan_names = np.asarray([p.name for p in PLANS], dtype=object)
    recurring: list[
        tuple[str, str, str, str, float, float, IntArr, tuple[str, ...], tuple[float, ...]]
    ] = []
    recurring.append(
        (
            "prob-mkt-harassment",
            "harassment",
            "MKT",
            "non_10085_calls",
            0.0,
            window,
            stayers,
            ("hotline_10086", "app", "social", "mini_program"),
            (0.5, 0.2, 0.15, 0.15),
        )
    )
    a0 = float(int(days * 0.15)) * DAY
    recurring.append(
        (
            "prob-app-login",
            "app_login",
            "CHNL",
            "app_failure",
            a0,
            a0 + min(10.0, days / 2) * DAY,
            stayers,
            ("app", "hotline_10086", "mini_program", "social"),
            (0.6, 0.2, 0.1, 0.1),
        )
    )
    refusal_pool = stayers[plan_names[cust.plan[stayers]] == theme_plan]
    recurring.append(
        (
            "prob-plan-refusal",
            "plan_refusal",
            "PLAN",
            "change_refused",
            0.0,
            window,
            refusal_pool,
            ("hotline_10086", "store"),
            (0.7, 0.3),
        )
    )
    shares = {"harassment": 0.0025, "app_login": 0.002, "plan_refusal": 0.0015}
    for _pid, key, code, sub, r0, r1, rpool, chans, chp in recurring:
        n_p = max(12, round(shares[key] * customers))
        t_p = _sample_times(rng, grid, n_p, r0, r1)
        c_p = _draw_customers(rng, rpool, cust.activity, n_p, replace=False)
        ch_p = _pick(rng, chans, chp, n_p)
        voices.add(
            t=t_p,
            cust=c_p,
            region=cust.region[c_p],
            scenario=np.full(n_p, code, dtype=object),
            sub=np.full(n_p, sub, dtype=object),
            channel=ch_p,
            kind=_kinds_for(rng, ch_p),
            problem=key,
        )

    # --- Planted churn journeys: repeated unresolved complaints, outages, port-out, closure.
    minor_outages: dict[tuple[int, str], list[tuple[float, float]]] = {}
    churn_scen = ("BILL", "PLAN", "SVC", "MKT", "MNET")
    for c in churners.tolist():
        close = float(cust.close_t[c])
        k = int(rng.integers(2, 5))
        first = float(rng.uniform(max(1.0 * DAY, close - 25 * DAY), close - 6 * DAY))
        times = np.sort(
            _daytime(rng, np.concatenate([[first], rng.uniform(first, close - 3.5 * DAY, k - 1)]))
        )
        first = float(times[0])
        exposed = rng.random() < 0.6
        if exposed:
            code = "HBB" if cust.broadband[c] else "MNET"
            sub = "fault_repair" if code == "HBB" else "coverage"
            reg = int(cust.region[c])
            spans = minor_outages.setdefault((reg, "broadband" if code == "HBB" else "mobile"), [])
            if not any(e < first and e > first - 4 * DAY for _, e in spans):
                os_ = max(0.05 * DAY, first - float(rng.uniform(0.5, 3.0)) * DAY)
                oe = min(os_ + float(rng.uniform(3.0, 10.0)) * HOUR, first - HOUR)
                spans.append((os_, oe))
        else:
            code = str(churn_scen[int(rng.integers(0, len(churn_scen)))])
            sub = composer.subcategories(code)[int(rng.integers(0, 3))]
        scen = np.full(k, code, dtype=object)
        subs = np.full(k, sub, dtype=object)
        churn_chans = np.full(k, "hotline_10086", dtype=object)
        kinds = _pick(rng, ("complaint", "ticket"), (0.6, 0.4), k)
        if rng.random() < 0.5:
            scen[-1], subs[-1], churn_chans[-1] = "CMPL", "repeat_complaint", "supervision_10080"
        voices.add(
            t=times,
            cust=np.full(k, c, dtype=np.int64),
            region=np.full(k, cust.region[c], dtype=np.int64),
            scenario=scen,
            sub=subs,
            channel=churn_chans,
            kind=kinds,
            repeat=np.arange(k, dtype=np.int64),
        )
    outages: list[tuple[str, int, str, float, float]] = [
        ("out-major", outage_region, "broadband", o0, o1)
    ]
    for (reg, service), spans in minor_outages.items():
        for os_, oe in spans:
            oid = f"out-minor-{len(outages):03d}"
            outages.append((oid, reg, service, os_, oe))
            events.add(
                cust=-1,
                region=reg,
                type="outage_started",
                t=os_,
                channel=None,
                attrs={"outage_id": oid, "service": service, "cause": "equipment"},
            )
            events.add(
                cust=-1,
                region=reg,
                type="outage_ended",
                t=oe,
                channel=None,
                attrs={"outage_id": oid, "service": service},
            )

    # Weaker signal for part of the background churners: one complaint before leaving.
    weak = bg_churners[(rng.random(len(bg_churners)) < 0.3) & (cust.close_t[bg_churners] > DAY)]
    if len(weak):
        t_w = _daytime(rng, cust.close_t[weak] * rng.uniform(0.2, 0.8, size=len(weak)))
        scen_w = np.asarray(("BILL", "MNET", "SVC", "PLAN"), dtype=object)[
            rng.integers(0, 4, size=len(weak))
        ]
        voices.add(
            t=t_w,
            cust=weak,
            region=cust.region[weak],
            scenario=scen_w,
            sub=_subcats(rng, composer, scen_w),
            channel=np.full(len(weak), "hotline_10086", dtype=object),
            kind=_pick(rng, ("complaint", "call_transcript"), (0.5, 0.5), len(weak)),
        )

    # --- Finalise voices: drop anything after a customer's closure, sort, assign ids.
    v_t = np.concatenate(voices.t)
    v_c = np.concatenate(voices.cust)
    keep = (v_c < 0) | (cust.close_t[np.maximum(v_c, 0)] > v_t)
    keep &= (v_t >= 0) & (v_t < window)
    order = np.argsort(v_t[keep], kind="stable")

    def _col(chunks: list[Any]) -> Any:
        return np.concatenate(chunks)[keep][order]

    v_t = v_t[keep][order]
    v_c = v_c[keep][order]
    v_region = _col(voices.region)
    v_scen = _col(voices.scenario)
    v_sub = _col(voices.sub)
    v_chan = _col(voices.channel)
    v_kind = _col(voices.kind)
    v_inc = _col(voices.incident)
    v_prob = _col(voices.problem)
    v_rep = _col(voices.repeat)
    n_v = len(v_t)
    v_ids = np.asarray([f"v{i + 1:07d}" for i in range(n_v)], dtype=object)
    anonymous = np.isin(v_chan, _ANONYMOUS_CHANNELS) & (rng.random(n_v) < 0.7)
    v_cust_out = v_c.copy()
    v_cust_out[anonymous] = -1
    v_lang = np.where(rng.random(n_v) < 0.10, "en", "zh").astype(object)
    v_pii = rng.random(n_v) < 0.08
    occurred_lag = np.where(rng.random(n_v) < 0.3, rng.exponential(1.5 * DAY, n_v), np.nan)

    themes = {
        "theme_amount": "19.9元",
        "theme_service": "视频彩铃尊享包",
        "theme_light": "LOS灯亮红灯",
        "theme_number": f"95{int(rng.integers(100_000, 999_999))}",
        "theme_version": "V11.2.0",
        "theme_error": "“系统繁忙(错误码E2031)”",
        "theme_plan": theme_plan,
        "theme_plan_b": "4G飞享套餐 38元",
    }
    # --- Conversations: agents of teams in the voice's city and planted QA violations,
    # drawn from their own stream so the voices, events and surveys above are unchanged.
    qrng = np.random.default_rng([seed, 0x0A])
    conv_idx = np.flatnonzero(np.isin(v_kind, CONVERSATION_KINDS))
    conv_city = np.asarray(city[v_region[conv_idx]], dtype=object)
    agents = _make_agents(qrng, conv_city)
    qa = _plan_conversations(
        qrng,
        agents,
        city=conv_city,
        scenario=v_scen[conv_idx],
        lang=v_lang[conv_idx],
        repeat=v_rep[conv_idx],
        problem=v_prob[conv_idx],
    )
    conv_pos = np.full(n_v, -1, dtype=np.int64)
    conv_pos[conv_idx] = np.arange(len(conv_idx))
    rows, cols = np.nonzero(qa.violations)
    viol_sets: list[list[str]] = [[] for _ in range(len(conv_idx))]
    for row, c in zip(rows.tolist(), cols.tolist(), strict=True):
        viol_sets[row].append(QA_RULE_IDS[c])
    frozen = [frozenset(v) for v in viol_sets]
    v_agent = np.full(n_v, None, dtype=object)
    v_team = np.full(n_v, None, dtype=object)
    v_agent[conv_idx] = agents.ids[qa.agent]
    v_team[conv_idx] = agents.team[qa.agent]

    texts: list[str] = []
    for i in range(n_v):
        reg = int(v_region[i])
        ci = int(v_c[i])
        base = {
            "province": str(prov[reg]),
            "city": str(city[reg]),
            "district": str(dist[reg]),
            **themes,
        }
        if ci >= 0:
            base["plan"] = PLANS[int(cust.plan[ci])].name
        pii = None
        if v_pii[i] and v_kind[i] != "social_post":
            phone = str(cust.ids[ci]) if ci >= 0 else "13812345678"
            pii = composer.pii(
                lang=str(v_lang[i]),
                phone=phone,
                province=base["province"],
                city=base["city"],
                district=base["district"],
            )
        j = int(conv_pos[i])
        if j >= 0:
            texts.append(
                composer.conversation(
                    scenario=str(v_scen[i]),
                    sub=str(v_sub[i]),
                    kind=str(v_kind[i]),
                    lang=str(v_lang[i]),
                    base_slots=base,
                    problem=None if v_prob[i] is None else str(v_prob[i]),
                    repeat=int(v_rep[i]),
                    pii=pii,
                    job=str(agents.job[qa.agent[j]]),
                    angry=bool(qa.angry[j]),
                    violations=frozen[j],
                    account_op=bool(qa.account_op[j]),
                    plan_change=bool(qa.plan_change[j]),
                )
            )
            continue
        texts.append(
            composer.text(
                scenario=str(v_scen[i]),
                sub=str(v_sub[i]),
                kind=str(v_kind[i]),
                channel=str(v_chan[i]),
                lang=str(v_lang[i]),
                base_slots=base,
                problem=None if v_prob[i] is None else str(v_prob[i]),
                repeat=int(v_rep[i]),
                pii=pii,
            )
        )

    # --- Complaint journeys for registered complaints (R13 checks these).
    limit = np.where(v_c >= 0, np.minimum(window, cust.close_t[np.maximum(v_c, 0)]), window)
    registered = (
        np.isin(v_kind, ("complaint", "ticket"))
        & (v_c >= 0)
        & ~np.isin(v_chan, _ANONYMOUS_CHANNELS)
        & (limit - v_t >= 2 * DAY)
    )
    reg_idx = np.flatnonzero(registered)
    open_t = v_t[reg_idx] + rng.uniform(0.0, 5.0, len(reg_idx)) * MINUTE
    room = limit[reg_idx] - open_t
    first_t = open_t + rng.uniform(0.5 * HOUR, np.minimum(24 * HOUR, room / 4))
    reply_hi = np.minimum(10 * DAY, limit[reg_idx] - first_t - 0.25 * DAY)
    reply_t = first_t + rng.uniform(2 * HOUR, np.maximum(reply_hi, 2 * HOUR + 1))
    churner_set = set(churners.tolist())
    n_viol = max(4, round(customers / 1000))
    r13_cand = np.flatnonzero(is_stayer[v_c[reg_idx]] & (open_t <= window - 16.5 * DAY))
    r13_pick = set(_choose(rng, r13_cand, n_viol).tolist())
    violations: list[dict[str, Any]] = []
    resolved_draw = rng.random(len(reg_idx)) < 0.85
    for j, vi in enumerate(reg_idx.tolist()):
        ci = int(v_c[vi])
        reg = int(cust.region[ci])
        chan = str(v_chan[vi]) if v_chan[vi] != "regulator_12300" else "hotline_10086"
        rid = f"cmp-{j + 1:06d}"
        e_open = events.add(
            cust=ci,
            region=reg,
            type="complaint_opened",
            t=open_t[j],
            channel=chan,
            attrs={"request_id": rid, "voice_id": str(v_ids[vi]), "scenario": str(v_scen[vi])},
        )
        e_first = events.add(
            cust=ci,
            region=reg,
            type="complaint_first_response",
            t=first_t[j],
            channel="hotline_10086",
            attrs={"request_id": rid},
        )
        if j in r13_pick:
            violations.append(
                {"rule": "R13", "customer_id": str(cust.ids[ci]), "event_ids": [e_open, e_first]}
            )
            continue
        resolved = "false" if ci in churner_set else ("true" if resolved_draw[j] else "false")
        events.add(
            cust=ci,
            region=reg,
            type="complaint_replied",
            t=reply_t[j],
            channel="hotline_10086",
            attrs={"request_id": rid, "resolved": resolved},
        )

    # --- Port-out and closure of every churner.
    for c in np.concatenate([churners, bg_churners]).tolist():
        close = float(cust.close_t[c])
        reg = int(cust.region[c])
        planted = c in churner_set
        attrs = {"reason": "other"}
        if planted or (rng.random() < 0.4 and close > 1.2 * DAY):
            lead = float(rng.uniform(1.0, 2.5) if planted else rng.uniform(0.5, 5.0)) * DAY
            pid = f"po-{c:06d}"
            events.add(
                cust=c,
                region=reg,
                type="port_out_requested",
                t=max(0.1 * DAY, close - lead),
                channel="sms",
                attrs={"request_id": pid},
            )
            attrs = {"reason": "port_out", "request_id": pid}
        events.add(
            cust=c,
            region=reg,
            type="account_closed",
            t=close,
            channel=str(rng.choice(("store", "hotline_10086"))),
            attrs=attrs,
        )

    # --- Monthly bills for every account open on the 1st of a month.
    for d in range(days):
        day = origin.date() + timedelta(days=d)
        if day.day != 1:
            continue
        t_bill = d * DAY + rng.uniform(8.0, 12.0, customers) * HOUR
        amount = cust.arpu * rng.lognormal(0.0, 0.08, customers)
        open_acc = np.flatnonzero(cust.close_t > t_bill)
        month = f"{day:%Y-%m}"
        for c in open_acc.tolist():
            events.add(
                cust=c,
                region=int(cust.region[c]),
                type="bill_issued",
                t=t_bill[c],
                channel="sms",
                attrs={"month": month, "amount": f"{amount[c]:.2f}"},
            )

    violations += _compliance_journeys(
        rng=rng,
        events=events,
        cust=cust,
        stayers=stayers,
        days=days,
        n_viol=n_viol,
        origin=origin,
    )

    # --- Real monthly usage in the profiles, with the overpaying group planted.
    over_data = np.asarray(
        sorted(
            {c for c, t in zip(events.cust, events.type, strict=True) if t == "usage_over_plan"}
        ),
        dtype=np.int64,
    )
    data_used, voice_used, overpaying = _usage(np.random.default_rng([seed, 0x0B]), cust, over_data)

    # --- Surveys (instant post-interaction ratings) with the tariff short board planted.
    surveys = _surveys(
        rng=rng,
        cust=cust,
        grid=grid,
        days=days,
        rate=survey_rate,
        composer=composer,
        prov=prov,
        city=city,
        dist=dist,
    )

    # --- Write everything.
    _write_customers(
        out / "customers.csv",
        cust,
        prov,
        city,
        dist,
        origin,
        data_used=data_used,
        voice_used=voice_used,
    )
    _write_voices(
        out / "voices.jsonl",
        origin=origin,
        ids=v_ids,
        t=v_t,
        lag=occurred_lag,
        cust_out=v_cust_out,
        cust=cust,
        region=v_region,
        prov=prov,
        city=city,
        dist=dist,
        channel=v_chan,
        kind=v_kind,
        lang=v_lang,
        texts=texts,
        scenario=v_scen,
        sub=v_sub,
        incident=v_inc,
        agent=v_agent,
        team=v_team,
    )
    _write_surveys(out / "surveys.jsonl", origin, surveys, cust, prov, city, dist)
    n_events = _write_events(out / "events.jsonl", origin, events, cust, prov, city, dist)

    def _window(a: float, b: float) -> tuple[str, str]:
        iso = _iso(origin, np.asarray([a, b], dtype=np.float64))
        return str(iso[0]), str(iso[1])

    surge_start, surge_end = _window(s0, s1)
    out_start, out_end = _window(o0, o1)
    surge_ids = v_ids[v_inc == "inc-billing-surge"].tolist()
    outage_ids = v_ids[v_inc == "inc-broadband-outage"].tolist()
    truth["incidents"] = [
        {
            "id": "inc-billing-surge",
            "kind": "surge",
            "scenario": "BILL",
            "subcategory": "unexplained_charge",
            "province": surge_province,
            "city": surge_city,
            "district": None,
            "channel": "hotline_10086",
            "start": surge_start,
            "end": surge_end,
            "theme": f"{themes['theme_service']} {themes['theme_amount']}",
            "n_voices": len(surge_ids),
        },
        {
            "id": "inc-broadband-outage",
            "kind": "outage",
            "scenario": "HBB",
            "subcategory": "fault_repair",
            "province": str(prov[outage_region]),
            "city": str(city[outage_region]),
            "district": str(dist[outage_region]),
            "channel": "hotline_10086",
            "start": out_start,
            "end": out_end,
            "outage_id": "out-major",
            "n_voices": len(outage_ids),
        },
    ]
    problems = [
        {"id": "inc-billing-surge", "scenario": "BILL", "voice_ids": surge_ids},
        {"id": "inc-broadband-outage", "scenario": "HBB", "voice_ids": outage_ids},
    ]
    for pid, key, code, *_ in recurring:
        problems.append({"id": pid, "scenario": code, "voice_ids": v_ids[v_prob == key].tolist()})
    truth["problems"] = problems
    seg_members = np.flatnonzero(cust.large_data)
    truth["dissatisfied_segment"] = {
        "description": "5G large-data plans dissatisfied with tariff",
        "conditions": {"plan_name": list(LARGE_DATA_PLANS)},
        "short_board": "tariff",
        "customer_ids": cust.ids[seg_members].tolist(),
    }
    truth["outages"] = [
        {
            "id": oid,
            "service": service,
            "province": str(prov[reg]),
            "city": str(city[reg]),
            "district": str(dist[reg]),
            "start": _window(a, b)[0],
            "end": _window(a, b)[1],
        }
        for oid, reg, service, a, b in outages
    ]
    truth["churn_customers"] = cust.ids[churners].tolist()
    truth["background_churn_customers"] = cust.ids[bg_churners].tolist()
    truth["commitment_violations"] = violations
    truth["overpaying_customers"] = cust.ids[overpaying].tolist()
    truth["overpaying_rule"] = (
        f"the cheapest mass-market plan whose allowances cover {OVERPAY_HEADROOM:g}x the "
        f"customer's monthly data_used_gb and voice_used_min costs at most {OVERPAY_FEE_SHARE:g}x "
        "the current plan's monthly fee"
    )
    conv_ids = v_ids[conv_idx]
    truth["qa_conversations"] = conv_ids.tolist()
    truth["qa_violations"] = {str(conv_ids[j]): rules for j, rules in enumerate(viol_sets) if rules}
    truth["qa_agents"] = {
        str(a): {"team": str(t), "city": str(c)}
        for a, t, c in zip(agents.ids, agents.team, agents.city, strict=True)
    }
    (out / "ground_truth.json").write_text(
        json.dumps(truth, ensure_ascii=False, indent=1), encoding="utf-8"
    )

    by_rule: dict[str, int] = {}
    for v in violations:
        by_rule[v["rule"]] = by_rule.get(v["rule"], 0) + 1
    return {
        "out_dir": str(out),
        "seed": seed,
        "customers": customers,
        "voices": n_v,
        "surveys": len(surveys["t"]),
        "events": n_events,
        "incidents": [i["id"] for i in truth["incidents"]],
        "problems": {p["id"]: len(p["voice_ids"]) for p in problems},
        "churn_customers": len(churners),
        "background_churn_customers": len(bg_churners),
        "violations": dict(sorted(by_rule.items())),
        "qa_conversations": len(conv_idx),
        "qa_violations": {r: int(qa.violations[:, k].sum()) for k, r in enumerate(QA_RULE_IDS)},
        "overpaying_customers": len(overpaying),
        "seconds": round(time.perf_counter() - started, 2),
    }


def _top_values(values: ObjArr | IntArr, k: int) -> list[Any]:
    """Return the ``k`` most frequent values, ties broken by value for determinism."""
    uniq, counts = np.unique(values, return_counts=True)
    order = sorted(range(len(uniq)), key=lambda i: (-int(counts[i]), str(uniq[i])))
    return [uniq[i] for i in order[:k]]


def _choose(rng: np.random.Generator, candidates: IntArr, n: int) -> IntArr:
    if len(candidates) == 0:
        return np.zeros(0, dtype=np.int64)
    picked = rng.choice(candidates, size=min(n, len(candidates)), replace=False)
    return np.sort(np.asarray(picked, dtype=np.int64))


def _local_date(origin: datetime, t: float) -> date:
    return (origin + timedelta(seconds=t)).date()


def _compliance_journeys(
    *,
    rng: np.random.Generator,
    events: _Events,
    cust: _Customers,
    stayers: IntArr,
    days: int,
    n_viol: int,
    origin: datetime,
) -> list[dict[str, Any]]:
    """Emit order, overage, plan-change, unsubscribe and broadband-cancel journeys.

    Compliant journeys keep wide margins from every threshold (48 h, same interaction,
    same day, reminder sent) so a rule checker finds exactly the planted violations.
    """
    window = days * DAY
    months = days / 30.0
    violations: list[dict[str, Any]] = []

    def sample(p: float, pool: IntArr) -> IntArr:
        picked = np.asarray(pool[rng.random(len(pool)) < min(p * months, 0.9)], dtype=np.int64)
        # Small operators still get enough journeys to hide the planted violations among.
        minimum = min(3 * n_viol + 2, len(pool))
        if len(picked) < minimum:
            picked = np.sort(rng.choice(pool, size=minimum, replace=False)).astype(np.int64)
        return picked

    def ids(c: int) -> str:
        return str(cust.ids[c])

    # Orders with consent and success SMS (R2/R3 always compliant here).
    for n_o, c in enumerate(sample(0.03, stayers).tolist()):
        t = _day_time(rng, float(rng.uniform(0.0, window - 2 * HOUR)), window - 2 * HOUR)
        reg = int(cust.region[c])
        chan = str(rng.choice(("app", "hotline_10086", "store")))
        rid, iid = f"ord-{n_o + 1:06d}", f"int-o{n_o + 1:06d}"
        base = {"request_id": rid, "interaction_id": iid}
        service = str(rng.choice(_SERVICES))
        events.add(
            cust=c,
            region=reg,
            type="consent_recorded",
            t=t,
            channel=chan,
            attrs={**base, "method": str(rng.choice(("sms_reply", "otp", "signature")))},
        )
        t_act = t + float(rng.uniform(1.0, 5.0)) * MINUTE
        events.add(
            cust=c,
            region=reg,
            type="order_activated",
            t=t_act,
            channel=chan,
            attrs={**base, "service": service},
        )
        events.add(
            cust=c,
            region=reg,
            type="success_sms_sent",
            t=t_act + float(rng.uniform(0.5, 10.0)) * MINUTE,
            channel="sms",
            attrs={"request_id": rid},
        )

    # Usage over plan -> reminder within minutes; R4 violations get none.
    usage = sample(0.05, stayers)
    usage_t = [
        _day_time(rng, float(rng.uniform(0.0, window - 2 * HOUR)), window - 2 * HOUR)
        for _ in range(len(usage))
    ]
    # A missing reminder is only decidable once the reminder deadline has passed.
    r4_cand = np.flatnonzero(np.asarray(usage_t, dtype=np.float64) <= window - 2 * DAY)
    r4 = set(_choose(rng, r4_cand, n_viol).tolist())
    for j, c in enumerate(usage.tolist()):
        t = usage_t[j]
        reg = int(cust.region[c])
        rid = f"ovr-{j + 1:06d}"
        e = events.add(
            cust=c,
            region=reg,
            type="usage_over_plan",
            t=t,
            channel=None,
            attrs={"request_id": rid, "usage": "data"},
        )
        if j in r4:
            violations.append({"rule": "R4", "customer_id": ids(c), "event_ids": [e]})
            continue
        events.add(
            cust=c,
            region=reg,
            type="overage_reminder_sent",
            t=t + float(rng.uniform(1.0, 20.0)) * MINUTE,
            channel="sms",
            attrs={"request_id": rid},
        )

    # Plan changes: done within 30 h (or within 24 h of contract end); R6 after 60-120 h.
    changes = sample(0.03, stayers)
    contract = rng.random(len(changes)) < 0.2
    r6 = set(_choose(rng, np.flatnonzero(~contract), n_viol).tolist())
    for j, c in enumerate(changes.tolist()):
        t = _day_time(rng, float(rng.uniform(0.0, window - 6.5 * DAY)), window - 6 * DAY)
        reg = int(cust.region[c])
        rid, iid = f"pc-{j + 1:06d}", f"int-p{j + 1:06d}"
        to_plan = PLANS[int(rng.integers(0, len(PLANS)))].name
        attrs = {
            "request_id": rid,
            "interaction_id": iid,
            "eligible": "true",
            "from_plan": PLANS[int(cust.plan[c])].name,
            "to_plan": to_plan,
        }
        if contract[j]:
            end_day = math.floor(t / DAY) + int(rng.integers(2, 5))
            attrs["contract_end"] = _local_date(origin, end_day * DAY).isoformat()
            done = end_day * DAY + float(rng.uniform(2.0, 24.0)) * HOUR
        elif j in r6:
            done = t + float(rng.uniform(60.0, 120.0)) * HOUR
        else:
            done = t + float(rng.uniform(0.5, 30.0)) * HOUR
        chan = str(rng.choice(("hotline_10086", "app", "store")))
        e_req = events.add(
            cust=c, region=reg, type="plan_change_requested", t=t, channel=chan, attrs=attrs
        )
        e_done = events.add(
            cust=c,
            region=reg,
            type="plan_change_done",
            t=done,
            channel=chan,
            attrs={"request_id": rid, "to_plan": to_plan},
        )
        if j in r6:
            violations.append({"rule": "R6", "customer_id": ids(c), "event_ids": [e_req, e_done]})

    # Value-added unsubscriptions: done in the same interaction; R7 days later, new contact.
    unsubs = sample(0.04, stayers)
    chans = _pick(rng, ("hotline_10086", "store", "app"), (0.55, 0.25, 0.20), len(unsubs))
    eligible = rng.random(len(unsubs)) < 0.92
    r7_cand = np.flatnonzero(eligible & (chans != "app"))
    r7 = set(_choose(rng, r7_cand, n_viol).tolist())
    for j, c in enumerate(unsubs.tolist()):
        t = _day_time(rng, float(rng.uniform(0.0, window - 5 * DAY)), window - 4.5 * DAY)
        reg = int(cust.region[c])
        chan = str(chans[j])
        rid, iid = f"us-{j + 1:06d}", f"int-u{j + 1:06d}"
        service = str(rng.choice(_SERVICES))
        attrs = {
            "request_id": rid,
            "interaction_id": iid,
            "service": service,
            "eligible": "true" if eligible[j] else "false",
        }
        if not eligible[j]:
            attrs["reason"] = "contract_period"
        e_req = events.add(
            cust=c, region=reg, type="unsubscribe_requested", t=t, channel=chan, attrs=attrs
        )
        if not eligible[j]:
            continue
        if j in r7:
            done_t = t + float(rng.uniform(1.5, 4.0)) * DAY
            done_attrs = {"request_id": rid, "interaction_id": f"int-u{j + 1:06d}-late"}
        else:
            done_t = t + float(rng.uniform(1.0, 8.0)) * MINUTE
            done_attrs = {"request_id": rid, "interaction_id": iid}
        e_done = events.add(
            cust=c, region=reg, type="unsubscribe_done", t=done_t, channel=chan, attrs=done_attrs
        )
        if j in r7:
            violations.append({"rule": "R7", "customer_id": ids(c), "event_ids": [e_req, e_done]})

    # Broadband cancellations: requested 09-14 h, closed within 4 h; R8 days later.
    bb = stayers[cust.broadband[stayers]]
    cancels = sample(0.01, bb)
    r8 = set(_choose(rng, np.arange(len(cancels)), n_viol).tolist())
    for j, c in enumerate(cancels.tolist()):
        day = int(rng.integers(0, days - 6))
        t = day * DAY + float(rng.uniform(9.0, 14.0)) * HOUR
        reg = int(cust.region[c])
        rid, iid = f"bc-{j + 1:06d}", f"int-b{j + 1:06d}"
        chan = str(rng.choice(("hotline_10086", "store")))
        e_req = events.add(
            cust=c,
            region=reg,
            type="broadband_cancel_requested",
            t=t,
            channel=chan,
            attrs={"request_id": rid, "interaction_id": iid, "eligible": "true"},
        )
        late = j in r8
        done = t + (float(rng.uniform(2.0, 5.0)) * DAY if late else float(rng.uniform(1, 4)) * HOUR)
        e_done = events.add(
            cust=c,
            region=reg,
            type="broadband_cancel_done",
            t=done,
            channel=chan,
            attrs={"request_id": rid, "pickup_appointment": "true"},
        )
        if late:
            violations.append({"rule": "R8", "customer_id": ids(c), "event_ids": [e_req, e_done]})
    return violations


def _surveys(
    *,
    rng: np.random.Generator,
    cust: _Customers,
    grid: FloatArr,
    days: int,
    rate: float,
    composer: _Composer,
    prov: ObjArr,
    city: ObjArr,
    dist: ObjArr,
) -> dict[str, Any]:
    """Draw survey responses whose overall score is driven most by the tariff factor."""
    window = days * DAY
    counts = rng.poisson(rate * days, size=cust.n)
    sc = np.repeat(np.arange(cust.n, dtype=np.int64), counts)
    t = _sample_times(rng, grid, len(sc), 0.0, window)
    keep = cust.close_t[sc] > t
    sc, t = sc[keep], t[keep]
    order = np.argsort(t, kind="stable")
    sc, t = sc[order], t[order]
    n = len(sc)
    tp = _pick(rng, _TOUCHPOINTS, _TOUCHPOINT_P, n)
    tp[(tp == "installation_repair") & ~cust.broadband[sc]] = "network"
    present = np.zeros((n, len(FACTORS)), dtype=bool)
    col = {f: i for i, f in enumerate(FACTORS)}
    for name, fs in _TOUCHPOINT_FACTORS.items():
        rows = tp == name
        for f in fs:
            present[rows, col[f]] = True
    for f in _GENERAL_FACTORS:
        present[:, col[f]] = True
    extra = rng.integers(0, len(_OPTIONAL_FACTORS), size=n)
    present[np.arange(n), [col[_OPTIONAL_FACTORS[i]] for i in extra]] = True
    for f in _BROADBAND_FACTORS:
        present[~cust.broadband[sc], col[f]] = False
    mu = np.asarray([FACTOR_MEANS[f] for f in FACTORS], dtype=np.float64)
    shift = np.zeros((n, len(FACTORS)))
    seg = cust.large_data[sc]
    shift[seg, col["tariff"]] = -3.6
    shift[seg, col["billing_transparency"]] = -0.6
    latent = rng.normal(0.0, 0.8, size=cust.n)[sc]
    raw = mu + shift + 0.6 * latent[:, None] + rng.normal(0.0, 1.2, size=(n, len(FACTORS)))
    scores = np.clip(np.round(raw), 0, 10)
    w = np.asarray([FACTOR_WEIGHTS[f] for f in FACTORS], dtype=np.float64)
    drive = ((scores - mu) * w * present).sum(axis=1) * 1.4
    overall = np.clip(np.round(7.6 + drive + 0.3 * latent + rng.normal(0, 0.7, n)), 0, 10)
    nps = np.clip(np.round(overall + rng.normal(0, 1.0, n)), 0, 10).astype(np.int64)
    has_comment = rng.random(n) < 0.3
    comments: list[str | None] = []
    masked = np.where(present, scores, np.inf)
    lowest = masked.argmin(axis=1)
    for i in range(n):
        if not has_comment[i]:
            comments.append(None)
            continue
        reg = int(cust.region[sc[i]])
        scenario = _FACTOR_SCENARIO[FACTORS[int(lowest[i])]] if overall[i] <= 6 else None
        comments.append(
            composer.comment(
                scenario=scenario,
                province=str(prov[reg]),
                base_slots={"city": str(city[reg]), "district": str(dist[reg])},
            )
        )
    return {
        "cust": sc,
        "t": t,
        "touchpoint": tp,
        "present": present,
        "scores": scores,
        "overall": overall,
        "nps": nps,
        "comment": comments,
    }


# ---------------------------------------------------------------------------
# Writers (canonical flat columns, see voxloop.ingest.schemas)

#: One encoder for every row: ``json.dumps`` with options builds a new one per call.
_encode = json.JSONEncoder(ensure_ascii=False).encode


def _write_customers(
    path: Path,
    cust: _Customers,
    prov: ObjArr,
    city: ObjArr,
    dist: ObjArr,
    origin: datetime,
    *,
    data_used: FloatArr,
    voice_used: FloatArr,
) -> None:
    closed = np.isfinite(cust.close_t)
    closed_at = _iso(origin, np.where(closed, cust.close_t, 0.0))
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            [
                "id",
                "province",
                "city",
                "district",
                "plan_name",
                "plan_monthly_fee",
                "plan_data_gb",
                "plan_voice_minutes",
                "plan_is_5g",
                "tenure_months",
                "arpu",
                "segment",
                "status",
                "churned_at",
                "attributes",
            ]
        )
        for i in range(cust.n):
            reg = int(cust.region[i])
            plan = PLANS[int(cust.plan[i])]
            attrs = {
                "has_broadband": "true" if cust.broadband[i] else "false",
                "data_used_gb": f"{data_used[i]:.2f}",
                "voice_used_min": f"{voice_used[i]:.0f}",
            }
            writer.writerow(
                [
                    cust.ids[i],
                    prov[reg],
                    city[reg],
                    dist[reg],
                    plan.name,
                    f"{plan.monthly_fee:g}",
                    f"{plan.data_gb:g}",
                    f"{plan.voice_minutes:g}",
                    "true" if plan.is_5g else "false",
                    f"{cust.tenure[i]:g}",
                    f"{cust.arpu[i]:.2f}",
                    cust.segment[i],
                    "churned" if closed[i] else "active",
                    closed_at[i] if closed[i] else "",
                    _encode(attrs),
                ]
            )


def _write_voices(
    path: Path,
    *,
    origin: datetime,
    ids: ObjArr,
    t: FloatArr,
    lag: FloatArr,
    cust_out: IntArr,
    cust: _Customers,
    region: IntArr,
    prov: ObjArr,
    city: ObjArr,
    dist: ObjArr,
    channel: ObjArr,
    kind: ObjArr,
    lang: ObjArr,
    texts: list[str],
    scenario: ObjArr,
    sub: ObjArr,
    incident: ObjArr,
    agent: ObjArr,
    team: ObjArr,
) -> None:
    received = _iso(origin, t)
    has_lag = np.isfinite(lag)
    occurred = _iso(origin, np.maximum(np.where(has_lag, t - lag, t), 0.0))
    with path.open("w", encoding="utf-8") as fh:
        for i in range(len(ids)):
            reg = int(region[i])
            ci = int(cust_out[i])
            attrs = {"scenario": str(scenario[i]), "subcategory": str(sub[i])}
            if incident[i] is not None:
                attrs["incident"] = str(incident[i])
            if agent[i] is not None:
                attrs["agent_id"] = str(agent[i])
                attrs["team"] = str(team[i])
            row = {
                "id": ids[i],
                "source": "voxloop-demo",
                "kind": kind[i],
                "received_at": received[i],
                "occurred_at": occurred[i] if has_lag[i] else None,
                "customer_id": str(cust.ids[ci]) if ci >= 0 else None,
                "province": prov[reg],
                "city": city[reg],
                "district": dist[reg],
                "channel": channel[i],
                "language": lang[i],
                "text": texts[i],
                "attributes": attrs,
            }
            fh.write(_encode(row) + "\n")


def _write_surveys(
    path: Path,
    origin: datetime,
    s: dict[str, Any],
    cust: _Customers,
    prov: ObjArr,
    city: ObjArr,
    dist: ObjArr,
) -> None:
    occurred = _iso(origin, s["t"])
    with path.open("w", encoding="utf-8") as fh:
        for i in range(len(s["t"])):
            c = int(s["cust"][i])
            reg = int(cust.region[c])
            factors = {
                f: float(s["scores"][i, j]) for j, f in enumerate(FACTORS) if s["present"][i, j]
            }
            row = {
                "id": f"s{i + 1:07d}",
                "customer_id": str(cust.ids[c]),
                "touchpoint": s["touchpoint"][i],
                "occurred_at": occurred[i],
                "overall": float(s["overall"][i]),
                "nps": int(s["nps"][i]),
                "factors": factors,
                "comment": s["comment"][i],
                "province": prov[reg],
                "city": city[reg],
                "district": dist[reg],
                "attributes": {"program": "instant_rating"},
            }
            fh.write(_encode(row) + "\n")


def _write_events(
    path: Path,
    origin: datetime,
    ev: _Events,
    cust: _Customers,
    prov: ObjArr,
    city: ObjArr,
    dist: ObjArr,
) -> int:
    t = np.asarray(ev.t, dtype=np.float64)
    stamps = _iso(origin, t)
    order = np.argsort(t, kind="stable")
    with path.open("w", encoding="utf-8") as fh:
        for i in order.tolist():
            c = ev.cust[i]
            reg = ev.region[i]
            row = {
                "id": ev.ids[i],
                "customer_id": str(cust.ids[c]) if c >= 0 else None,
                "type": ev.type[i],
                "occurred_at": stamps[i],
                "channel": ev.channel[i],
                "province": prov[reg],
                "city": city[reg],
                "district": dist[reg],
                "attributes": ev.attrs[i],
            }
            fh.write(_encode(row) + "\n")
    return len(order)
