"""Build work-order requests from lake voices: one voice, a problem's voices, or an alert's."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, get_args

import pyarrow as pa

from voxloop.act.access import Principal
from voxloop.act.schemas import OrderCreate, ScenarioCode, SourceKind
from voxloop.config import Settings
from voxloop.errors import NotFoundError, PermissionDeniedError
from voxloop.store.service import lake_connection

_SCENARIOS = frozenset(get_args(ScenarioCode))


def _voices(settings: Settings, voice_ids: Sequence[str]) -> list[dict[str, Any]]:
    con = lake_connection(settings, ("voices", "readings"))
    views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views()").fetchall()}
    if "voices" not in views:
        raise NotFoundError("the lake holds no voices yet")
    con.register("wanted", pa.table({"vid": pa.array(list(dict.fromkeys(voice_ids)), pa.string())}))
    reading = (
        "(SELECT arg_max(scenario, read_at) FROM readings r WHERE r.voice_id = v.id)"
        if "readings" in views
        else "NULL"
    )
    rows = con.execute(
        f"""
        SELECT v.id, v.customer_id, v.province, v.city, v.district, v.channel, v.text,
               coalesce({reading}, v.attributes['scenario']) AS scenario,
               v.attributes['segment'] AS segment
        FROM (SELECT * FROM voices QUALIFY row_number() OVER (PARTITION BY id) = 1) v
        JOIN wanted w ON w.vid = v.id
        ORDER BY v.received_at
        """
    ).fetchall()
    names = (
        "id",
        "customer_id",
        "province",
        "city",
        "district",
        "channel",
        "text",
        "scenario",
        "segment",
    )
    return [dict(zip(names, row, strict=True)) for row in rows]


def _common(values: list[Any]) -> Any:
    present = [v for v in values if v]
    return Counter(present).most_common(1)[0][0] if present else None


def _shared(values: list[Any]) -> Any:
    present = {v for v in values if v}
    return present.pop() if len(present) == 1 else None


def order_for_voices(
    *,
    settings: Settings,
    voice_ids: Sequence[str],
    source_kind: SourceKind = "voice",
    source_ref: str | None = None,
    title: str | None = None,
    idempotency_key: str | None = None,
    principal: Principal | None = None,
) -> OrderCreate:
    """Return the order request covering ``voice_ids`` (region, scenario, customers from the lake).

    With ``principal``, every voice must lie inside the caller's region scope: an order may
    not pull in customers the caller cannot see.

    One voice gives a per-customer order; several (a problem or an alert) give one order
    linked to every voice and customer.  The region is the voices' shared province/city
    (left empty when they span several), the scenario the most frequent one.
    """
    if not voice_ids:
        raise ValueError("voice_ids: at least one voice is needed")
    rows = _voices(settings, voice_ids)
    found = {r["id"] for r in rows}
    missing = [v for v in voice_ids if v not in found]
    if missing:
        raise NotFoundError(f"voice(s) not in the lake: {', '.join(missing[:5])}")
    if principal is not None:
        outside = [r["id"] for r in rows if not principal.sees(r["province"], r["city"])]
        if outside:
            raise PermissionDeniedError(
                f"voice(s) outside your region scope: {', '.join(map(str, outside[:5]))}"
            )
    scenario = _common([r["scenario"] for r in rows])
    province = _shared([r["province"] for r in rows])
    city = _shared([r["city"] for r in rows]) if province else None
    first_text = str(rows[0]["text"] or "")
    default_title = first_text[:80] if len(rows) == 1 else f"{scenario or '?'} × {len(rows)}"
    return OrderCreate(
        title=(title or default_title or "voice")[:300],
        description=first_text[:20_000] if len(rows) == 1 else None,
        source_kind=source_kind,
        source_ref=source_ref or (rows[0]["id"] if len(rows) == 1 else None),
        scenario=scenario if scenario in _SCENARIOS else None,
        channel=_common([r["channel"] for r in rows]),
        segment=_common([r["segment"] for r in rows]),
        province=province,
        city=city,
        district=_shared([r["district"] for r in rows]) if city else None,
        voice_ids=[r["id"] for r in rows],
        customer_ids=[r["customer_id"] or "" for r in rows],
        idempotency_key=idempotency_key,
    )
