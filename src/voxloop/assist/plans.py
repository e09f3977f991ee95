"""Plan recommendation: the cheapest plan that covers a customer's real monthly usage.

The "套餐适配不合理" (plan does not fit the usage) cause: a customer pays for allowances they
never use. From the profile in the lake (current plan, ``attributes["data_used_gb"]`` and
``attributes["voice_used_min"]``) the recommendation is the cheapest catalogue plan whose
data and voice allowances both cover the usage times ``1 + headroom`` (20 % by default),
that the customer may order (plan ``segments``), and that keeps 5G for a customer on a 5G
plan unless the profile says they do not use 5G (``attributes["uses_5g"] = "false"``).
Without known usage there is no recommendation, and the explanation says which figure is
missing.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from voxloop.assist.schemas import (
    CurrentPlan,
    PlanCatalogue,
    PlanOffer,
    PlanRecommendation,
    Usage,
)
from voxloop.config import Settings
from voxloop.errors import UnusableInputError

PLANS_FILE = Path(__file__).resolve().parent / "plans.yaml"
#: Profile attributes holding the usage (strings of numbers, per month).
DATA_ATTR = "data_used_gb"
VOICE_ATTR = "voice_used_min"
#: Profile attribute saying whether the customer uses 5G ("true"/"false").
USES_5G_ATTR = "uses_5g"
_FALSE = frozenset({"false", "0", "no", "n", "否"})

_CATALOGUES: dict[tuple[str, int], PlanCatalogue] = {}
_LOCK = threading.Lock()


def parse_catalogue(path: Path) -> PlanCatalogue:
    """Read and validate a plan catalogue YAML file; errors name the plan and field."""
    if not path.is_file():
        raise UnusableInputError(f"{path}: no such plan catalogue")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UnusableInputError(f"{path}: not YAML ({exc})") from exc
    try:
        return PlanCatalogue.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = list(first["loc"])
        where = ".".join(
            f"plan {p + 1}" if isinstance(p, int) and i > 0 and loc[i - 1] == "plans" else str(p)
            for i, p in enumerate(loc)
        )
        raise UnusableInputError(f"{path}: {where}: {first['msg']}") from exc


def catalogue_path(settings: Settings) -> Path:
    """Return the operator's catalogue (setting ``assist_plans_path``) or the packaged one."""
    chosen = getattr(settings, "assist_plans_path", None)
    return Path(chosen) if chosen else PLANS_FILE


def load_catalogue(settings: Settings) -> PlanCatalogue:
    """Return the plan catalogue of ``settings``, read once per file version."""
    path = catalogue_path(settings)
    try:
        stamp = path.stat().st_mtime_ns
    except OSError as exc:
        raise UnusableInputError(f"{path}: no such plan catalogue") from exc
    key = (str(path.resolve()), stamp)
    with _LOCK:
        found = _CATALOGUES.get(key)
        if found is None:
            found = parse_catalogue(path)
            _CATALOGUES[key] = found
    return found


def _number(attributes: dict[str, str], name: str) -> tuple[float | None, str | None]:
    raw = attributes.get(name)
    if raw is None or str(raw).strip() == "":
        return None, None
    try:
        value = float(str(raw).strip())
    except ValueError:
        return None, f"{name}={raw!r} is not a number"
    if value != value or value < 0 or value == float("inf"):
        return None, f"{name}={raw!r} is not a usage (negative or not finite)"
    return value, None


def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))


def _covers(plan: PlanOffer, data: float, voice: float, factor: float) -> bool:
    return plan.data_gb >= data * factor and plan.voice_minutes >= voice * factor


def recommend_plan(
    *, catalogue: PlanCatalogue, customer: dict[str, Any] | None, allow_4g: bool = False
) -> PlanRecommendation:
    """Return the cheapest catalogue plan covering the customer's usage, with the saving.

    ``customer`` is a profile row (``id``, ``plan_name``, ``plan_monthly_fee``,
    ``plan_data_gb``, ``plan_voice_minutes``, ``plan_is_5g``, ``segment``, ``attributes``)
    or None. ``allow_4g`` lets a 5G customer be offered 4G plans.
    """
    headroom = catalogue.headroom
    pct = f"{round(headroom * 100)}%"
    if customer is None:
        return PlanRecommendation(
            customer_id=None,
            status="no_customer",
            headroom=headroom,
            explanation={
                "zh-CN": "未关联客户资料，无法推荐套餐。",
                "en": "No customer profile is linked, so no plan can be recommended.",
            },
        )
    current = CurrentPlan(
        name=customer.get("plan_name"),
        monthly_fee=customer.get("plan_monthly_fee"),
        data_gb=customer.get("plan_data_gb"),
        voice_minutes=customer.get("plan_voice_minutes"),
        is_5g=customer.get("plan_is_5g"),
    )
    attributes: dict[str, str] = dict(customer.get("attributes") or {})
    data, data_err = _number(attributes, DATA_ATTR)
    voice, voice_err = _number(attributes, VOICE_ATTR)
    usage = Usage(data_used_gb=data, voice_used_min=voice)
    base: dict[str, Any] = {
        "customer_id": customer.get("id"),
        "current": current,
        "usage": usage,
        "headroom": headroom,
    }
    if data is None or voice is None:
        missing = [
            err or f"{name} is not in the profile"
            for value, err, name in ((data, data_err, DATA_ATTR), (voice, voice_err, VOICE_ATTR))
            if value is None
        ]
        return PlanRecommendation(
            **base,
            status="unknown_usage",
            explanation={
                "zh-CN": "客户实际用量未知（" + "；".join(missing) + "），不推荐套餐。",
                "en": "The customer's real usage is unknown ("
                + "; ".join(missing)
                + "), so no plan is recommended.",
            },
        )
    factor = 1.0 + headroom
    segment = customer.get("segment")
    keep_5g = bool(current.is_5g) and not allow_4g
    if keep_5g and str(attributes.get(USES_5G_ATTR, "")).strip().lower() in _FALSE:
        keep_5g = False  # the profile states the customer does not use 5G
    eligible = [
        p
        for p in catalogue.plans
        if (not p.segments or segment in p.segments) and (p.is_5g or not keep_5g)
    ]
    covering = sorted(
        (p for p in eligible if _covers(p, data, voice, factor)),
        key=lambda p: (p.monthly_fee, -p.data_gb, -p.voice_minutes),
    )
    use_zh = f"月均流量 {_fmt(data)} GB、通话 {_fmt(voice)} 分钟（留 {pct} 余量）"
    use_en = f"{_fmt(data)} GB of data and {_fmt(voice)} min of calls a month ({pct} headroom)"
    keep_zh = "；客户在用5G套餐，只比较5G套餐" if keep_5g else ""
    keep_en = "; the customer is on 5G, so only 5G plans are compared" if keep_5g else ""
    if not covering:
        return PlanRecommendation(
            **base,
            status="no_cover",
            kept_5g=keep_5g,
            explanation={
                "zh-CN": f"没有套餐能覆盖{use_zh}{keep_zh}。",
                "en": f"No plan covers {use_en}{keep_en}.",
            },
        )
    best = covering[0]
    fee = current.monthly_fee
    saving = None if fee is None else round(fee - best.monthly_fee, 2)
    on_it = current.name is not None and best.name == current.name
    current_covers = (
        current.data_gb is not None
        and current.voice_minutes is not None
        and current.data_gb >= data * factor
        and current.voice_minutes >= voice * factor
    )
    # A current plan (maybe one no longer sold) that covers the usage at no higher fee fits.
    if on_it or (saving is not None and saving <= 0 and current_covers):
        return PlanRecommendation(
            **base,
            status="fits",
            recommended=best,
            monthly_saving=0.0 if saving is not None else None,
            kept_5g=keep_5g,
            explanation={
                "zh-CN": f"当前套餐已是覆盖{use_zh}的最便宜套餐{keep_zh}。",
                "en": f"The current plan already is the cheapest that covers {use_en}{keep_en}.",
            },
        )
    if saving is not None and saving < 0:
        return PlanRecommendation(
            **base,
            status="upgrade",
            recommended=best,
            monthly_saving=saving,
            kept_5g=keep_5g,
            explanation={
                "zh-CN": f"用量超出当前套餐：覆盖{use_zh}的最便宜套餐是“{best.name}”，"
                f"每月多 {_fmt(-saving)} 元，但可避免超套费用{keep_zh}。",
                "en": f"Usage exceeds the current plan: the cheapest plan covering {use_en} is "
                f"'{best.name}', {_fmt(-saving)} CNY a month more, without overage fees{keep_en}.",
            },
        )
    saving_zh = f"，每月可省 {_fmt(saving)} 元" if saving is not None else ""
    saving_en = f", saving {_fmt(saving)} CNY a month" if saving is not None else ""
    return PlanRecommendation(
        **base,
        status="recommend",
        recommended=best,
        monthly_saving=saving,
        kept_5g=keep_5g,
        explanation={
            "zh-CN": f"套餐与用量不匹配：覆盖{use_zh}的最便宜套餐是“{best.name}”"
            f"（{_fmt(best.data_gb)} GB / {_fmt(best.voice_minutes)} 分钟）{saving_zh}{keep_zh}。",
            "en": f"The plan does not fit the usage: the cheapest plan covering {use_en} is "
            f"'{best.name}' ({_fmt(best.data_gb)} GB / {_fmt(best.voice_minutes)} min)"
            f"{saving_en}{keep_en}.",
        },
    )


_PROFILE_COLUMNS = (
    "id",
    "province",
    "city",
    "plan_name",
    "plan_monthly_fee",
    "plan_data_gb",
    "plan_voice_minutes",
    "plan_is_5g",
    "segment",
    "status",
    "attributes",
)


def pseudonym_of(*, settings: Settings, customer_id: str) -> str:
    """Return the lake pseudonym of a customer id, as ingest computes it.

    The same ``"c" + sha256(f"{key}|{id}")[:24]`` as ``voxloop.ingest.service.pseudonymise``
    (a test checks they agree), without opening a DuckDB connection per lookup.
    """
    digest = hashlib.sha256(f"{settings.secret_key}|{customer_id}".encode()).hexdigest()
    return "c" + digest[:24]


_DUCK: list[Any] = []


def _cursor() -> Any:
    # One in-memory DuckDB per process; a cursor per lookup is a cheap, thread-safe handle.
    import duckdb

    with _LOCK:
        if not _DUCK:
            _DUCK.append(duckdb.connect(":memory:"))
        return _DUCK[0].cursor()


def customer_profile(*, settings: Settings, customer_id: str) -> dict[str, Any] | None:
    """Return the latest profile of a customer from the lake (by pseudonym or real id).

    Customer ids in the lake are pseudonyms; an agent on a call knows the real id, so both
    spellings are looked up.
    """
    from voxloop.store.service import part_files, table_dir

    if not part_files(settings, "customers"):
        return None
    glob = str(table_dir(settings, "customers") / "part-*.parquet").replace("'", "''")
    cur = _cursor()
    try:
        row = cur.execute(
            f"SELECT {', '.join(_PROFILE_COLUMNS)} "
            f"FROM read_parquet('{glob}', union_by_name=true) WHERE id IN ($1, $2) "
            "ORDER BY ingested_at DESC LIMIT 1",
            [pseudonym_of(settings=settings, customer_id=customer_id), customer_id],
        ).fetchone()
    finally:
        cur.close()
    if row is None:
        return None
    out = dict(zip(_PROFILE_COLUMNS, row, strict=True))
    attrs = out.get("attributes")
    # DuckDB returns a MAP as a dict (or as key/value lists in older versions).
    if isinstance(attrs, dict) and set(attrs) == {"key", "value"}:
        attrs = dict(zip(attrs["key"], attrs["value"], strict=True))
    out["attributes"] = {str(k): str(v) for k, v in (attrs or {}).items()}
    return out
