"""Work orders from their sources: requests from lake voices (one voice, a problem, an alert).

Also links the new voices of a problem to its orders (reopening fixed ones), a hook the
pipeline passes to the detect stage.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any, get_args

import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session

from voxloop.act.access import Principal
from voxloop.act.schemas import OrderCreate, ScenarioCode, SourceKind
from voxloop.act.service import on_new_voices_for_problems, problems_with_orders
from voxloop.config import Settings
from voxloop.detect.models import ProblemMember
from voxloop.detect.service import (
    MAX_ORDER_VOICES,
    ActionSource,
    default_description,
    default_priority,
)
from voxloop.errors import NotFoundError, PermissionDeniedError, UnusableInputError
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
    cursor = con.execute(
        f"""
        SELECT v.id, v.customer_id, v.province, v.city, v.district, v.channel, v.text,
               coalesce({reading}, v.attributes['scenario']) AS scenario,
               v.attributes['segment'] AS segment
        FROM (SELECT * FROM voices QUALIFY row_number() OVER (PARTITION BY id) = 1) v
        JOIN wanted w ON w.vid = v.id
        ORDER BY v.received_at
        """
    )
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


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


def order_request(
    *,
    settings: Settings,
    principal: Principal,
    source: ActionSource,
    title: str | None = None,
    description: str | None = None,
    priority: str | None = None,
    voice_ids: Sequence[str] | None = None,
    idempotency_key: str | None = None,
    lang: str = "zh-CN",
) -> OrderCreate:
    """Return the pre-filled ``OrderCreate`` for ``source`` (region, scenario, customers).

    ``voice_ids`` narrows the order to some of the source's voices (each must belong to
    it, else ``UnusableInputError`` naming them).  Region, scenario, channel, segment and
    customers come from the voices in the lake (``order_for_voices``, which refuses voices
    outside the caller's region).
    """
    chosen = list(dict.fromkeys(voice_ids)) if voice_ids else source.voice_ids
    if voice_ids:
        own = set(source.voice_ids)
        foreign = [v for v in chosen if v not in own]
        if foreign:
            raise UnusableInputError(
                f"voice_ids: not voices of {source.kind} {source.ref} in your region: "
                + ", ".join(foreign[:5])
            )
    if not chosen:
        raise UnusableInputError(
            f"{source.kind} {source.ref} has no voices in your region to open an order for"
        )
    data = order_for_voices(
        settings=settings,
        voice_ids=chosen[:MAX_ORDER_VOICES],
        source_kind="problem" if source.kind == "problem" else "alert",
        source_ref=source.ref,
        title=(title or source.title or source.ref)[:300],
        idempotency_key=idempotency_key,
        principal=principal,
    )
    return data.model_copy(
        update={
            "description": (description or default_description(source, lang=lang))[:20_000],
            "priority": priority or default_priority(source),
            "scenario": data.scenario or None,
        }
    )


def link_to_problem_orders(
    *, session: Session, voices: pa.Table, since: datetime | None = None
) -> list[str]:
    """Link newly grouped voices to their problem's work orders; reopen fixed ones (regression).

    Runs after the stage's commit (the act domain commits its own unit of work): a voice
    that arrives after a problem's order was resolved reopens it as regressed.  Returns
    the ids of the orders reopened.  ``since`` (the run's start) skips memberships made
    earlier, i.e. voices grouped by an earlier run.
    """
    if voices.num_rows == 0:
        return []
    with_orders = problems_with_orders(session=session, problem_ids=None)
    if not with_orders:
        return []
    ids = voices["id"].to_pylist()
    batch_ids = set(ids)
    members: dict[str, str] = {}
    # Problems with orders are few; their members are read per problem, not per voice, so
    # a bulk ingest of millions of voices costs a handful of queries here.
    refs = sorted(with_orders)
    for start in range(0, len(refs), 200):
        query = select(ProblemMember.voice_id, ProblemMember.problem_id).where(
            ProblemMember.problem_id.in_(refs[start : start + 200])
        )
        if since is not None:
            query = query.where(ProblemMember.assigned_at >= since)
        for vid, pid in session.execute(query).all():
            if vid in batch_ids:
                members[vid] = pid
    customers = voices["customer_id"].to_pylist()
    received = voices["received_at"].to_pylist()
    batch = [
        (members[vid], vid, customers[i], received[i])
        for i, vid in enumerate(ids)
        if members.get(vid) in with_orders
    ]
    return on_new_voices_for_problems(session=session, voices=batch)
