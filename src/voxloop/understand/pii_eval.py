"""Measure PII masking: insert synthetic PII at known places into real sentences, score per type.

Each sample is ``prefix + lead + value + suffix`` where ``prefix``/``suffix`` come from a
real sentence split at a random character. A sample counts as a strict hit when the
masked sample equals ``mask(prefix + lead) + "<TYPE>" + mask(suffix)``: the exact span and
nothing else was masked, with the right type. Detections the masker makes on the clean
sentence alone are subtracted, so PII already present in the source text (rare) is not
counted against it. Extra or wrongly-typed placeholders are false positives.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from voxloop.ingest.pii import PII_TYPES, luhn_ok, mask_text

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_AREAS = ("110105", "320106", "440305", "510107", "330106", "370102", "420111", "610113")
_PROVINCES = (
    ("江苏省", "南京市", "鼓楼区"),
    ("广东省", "深圳市", "南山区"),
    ("浙江省", "杭州市", "西湖区"),
)
_CITIES = (("北京市", "朝阳区"), ("上海市", "浦东新区"), ("成都市", "武侯区"), ("武汉市", "洪山区"))
_ROADS = ("中山路", "解放大道", "人民街", "建设路", "长江路", "学院路", "科技园南路")
_PLATE_P = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
_PLATE_L = "ABCDEFGHJKLMNPQRSTUVWXYZ"
_NAMES = ("zhang.wei", "li_na88", "wangfang", "john.smith", "m.garcia", "chen2019")
_DOMAINS = ("qq.com", "163.com", "139.com", "gmail.com", "example.org", "mail.example.cn")

_LEADS_ZH: dict[str, tuple[str, ...]] = {
    "PHONE": ("，我的手机号是", "，联系电话", "，请回电", "，"),
    "LANDLINE": ("，座机", "，办公电话", "，"),
    "ID": ("，身份证号", "，证件号码是", "，"),
    "CARD": ("，银行卡号", "，扣款卡", "，"),
    "EMAIL": ("，邮箱", "，发到", "，"),
    "PLATE": ("，车牌号", "，我的车", "，"),
    "ADDRESS": ("，家庭住址：", "，地址", "，装机地址是"),
}
_LEADS_EN: dict[str, tuple[str, ...]] = {
    "PHONE": (" Call me at ", " My number is ", " "),
    "CARD": (" My card number is ", " card ", " "),
    "EMAIL": (" Email me at ", " my email is ", " "),
}


def _resident_id(rng: random.Random) -> str:
    body = (
        rng.choice(_AREAS)
        + f"{rng.randint(1950, 2008)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
        + f"{rng.randint(0, 999):03d}"
    )
    total = sum(int(d) * w for d, w in zip(body, _ID_WEIGHTS, strict=True))
    return body + _ID_CHECK[total % 11]


def _luhn_complete(prefix: str) -> str:
    # The one check digit of ten that the masker's own Luhn test accepts.
    return next(prefix + d for d in "0123456789" if luhn_ok(prefix + d))


def _card(rng: random.Random) -> str:
    n = rng.choice((16, 16, 19))
    start = rng.choice(("6222", "6217", "4367", "6228", "5187"))
    digits = _luhn_complete(start + "".join(str(rng.randint(0, 9)) for _ in range(n - 5)))
    if rng.random() < 0.4:
        return " ".join(digits[i : i + 4] for i in range(0, n, 4))
    return digits


def _mobile(rng: random.Random) -> str:
    num = f"1{rng.choice('3456789')}{rng.randint(0, 9)}{rng.randint(0, 99_999_999):08d}"
    style = rng.randint(0, 4)
    if style == 1:
        return f"{num[:3]}-{num[3:7]}-{num[7:]}"
    if style == 2:
        return f"{num[:3]} {num[3:7]} {num[7:]}"
    if style == 3:
        return f"+86 {num}"
    return num


def _us_phone(rng: random.Random) -> str:
    a, b, c = rng.randint(201, 989), rng.randint(200, 999), rng.randint(0, 9999)
    return rng.choice((f"({a}) {b}-{c:04d}", f"{a}-{b}-{c:04d}", f"+1 {a}.{b}.{c:04d}"))


def _landline(rng: random.Random) -> str:
    area = rng.choice(("010", "021", "025", "0755", "0571", "028"))
    local = str(rng.randint(2, 8)) + "".join(
        str(rng.randint(0, 9)) for _ in range(7 if len(area) == 3 else 6)
    )
    return rng.choice((f"{area}-{local}", f"({area}){local}", f"{area}{local}"))


def _email(rng: random.Random) -> str:
    return f"{rng.choice(_NAMES)}{rng.randint(0, 99)}@{rng.choice(_DOMAINS)}"


def _plate(rng: random.Random) -> str:
    p, letter = rng.choice(_PLATE_P), rng.choice(_PLATE_L)
    if rng.random() < 0.3:
        return f"{p}{letter}{rng.choice('DF')}{rng.randint(0, 99999):05d}"
    tail = "".join(rng.choice("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(5))
    return f"{p}{letter}{tail}"


def _address(rng: random.Random) -> str:
    if rng.random() < 0.5:
        prov, city, dist = rng.choice(_PROVINCES)
        head = prov + city + dist
    else:
        city, dist = rng.choice(_CITIES)
        head = city + dist
    tail = f"{rng.choice(_ROADS)}{rng.randint(1, 999)}号"
    if rng.random() < 0.5:
        tail += f"{rng.randint(1, 30)}栋{rng.randint(101, 2505)}室"
    return head + tail


_ZH_MAKERS: dict[str, Callable[[random.Random], str]] = {
    "PHONE": _mobile,
    "LANDLINE": _landline,
    "ID": _resident_id,
    "CARD": _card,
    "EMAIL": _email,
    "PLATE": _plate,
    "ADDRESS": _address,
}
_EN_MAKERS: dict[str, Callable[[random.Random], str]] = {
    "PHONE": _us_phone,
    "CARD": _card,
    "EMAIL": _email,
}


@dataclass(frozen=True)
class PiiSample:
    """One evaluation sample: the text with PII inserted and its expected masked form."""

    text: str
    kind: str
    value: str
    prefix: str
    suffix: str


def make_samples(sentences: Sequence[str], *, english: bool, n: int, seed: int) -> list[PiiSample]:
    """Insert one synthetic PII value into each of ``n`` sentences drawn with ``seed``."""
    rng = random.Random(seed)
    makers = _EN_MAKERS if english else _ZH_MAKERS
    leads = _LEADS_EN if english else _LEADS_ZH
    kinds = sorted(makers)
    pool = [s for s in sentences if s and len(s) >= 4]
    out: list[PiiSample] = []
    for i in range(n):
        base = rng.choice(pool)[:400]
        kind = kinds[i % len(kinds)]
        value = makers[kind](rng)
        cut = rng.randint(0, len(base))
        if english:
            # Cut between words so the value does not glue onto a word.
            space = base.rfind(" ", 0, cut)
            cut = space if space >= 0 else 0
        prefix = base[:cut] + rng.choice(leads[kind])
        suffix = (", " if english else "，") + base[cut:]
        out.append(PiiSample(prefix + value + suffix, kind, value, prefix, suffix))
    return out


@dataclass
class TypeScore:
    """Counts of one PII type."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    lenient_hits: int = 0

    @property
    def precision(self) -> float:
        """Return tp / (tp + fp)."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        """Return tp / (tp + fn)."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0


@dataclass
class PiiReport:
    """Scores per PII type plus false positives on clean text."""

    per_type: dict[str, TypeScore] = field(default_factory=dict)
    n_samples: int = 0


def score(
    samples: Sequence[PiiSample], mask: Callable[[str], tuple[str, dict[str, int]]] = mask_text
) -> PiiReport:
    """Score a masker on inserted-PII samples (strict span match, typed placeholders)."""
    report = PiiReport(per_type={k: TypeScore() for k in PII_TYPES}, n_samples=len(samples))
    for s in samples:
        masked, counts = mask(s.text)
        expected = mask(s.prefix)[0] + f"<{s.kind}>" + mask(s.suffix)[0]
        base_counts: dict[str, int] = {}
        for part in (s.prefix, s.suffix):
            for k, v in mask(part)[1].items():
                base_counts[k] = base_counts.get(k, 0) + v
        ts = report.per_type[s.kind]
        if masked == expected:
            ts.tp += 1
        else:
            ts.fn += 1
            if s.value not in masked and counts.get(s.kind, 0) > base_counts.get(s.kind, 0):
                ts.lenient_hits += 1
        extra = dict(counts)
        extra[s.kind] = extra.get(s.kind, 0) - (1 if masked == expected else 0)
        for k, v in extra.items():
            surplus = v - base_counts.get(k, 0)
            if surplus > 0:
                report.per_type[k].fp += surplus
    return report


def clean_false_positives(sentences: Sequence[str]) -> dict[str, int]:
    """Count placeholders the masker puts into real sentences that carry no inserted PII."""
    totals: dict[str, int] = {}
    for s in sentences:
        for k, v in mask_text(s)[1].items():
            totals[k] = totals.get(k, 0) + v
    return totals
