"""Routing as data: ordered YAML rules map scenario/region/channel/segment to a team and queue."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import yaml
from pydantic import BaseModel, ConfigDict, Field

ROUTING_FILE = Path(__file__).resolve().parent / "routing.yaml"
CONDITION_FIELDS = ("scenario", "province", "city", "channel", "segment", "source_kind")


class Route(BaseModel):
    """Where an order goes; ``{province}`` in a value becomes the order's province."""

    model_config = ConfigDict(extra="forbid")

    department: str
    team: str
    queue: str


class RoutingRule(BaseModel):
    """One rule: every listed condition must match (lists are alternatives)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    when: dict[str, list[str]] = Field(default_factory=dict)
    route: Route

    def model_post_init(self, _context: object) -> None:
        """Refuse conditions on unknown fields."""
        unknown = set(self.when) - set(CONDITION_FIELDS)
        if unknown:
            raise ValueError(
                f"routing rule {self.id!r}: unknown condition(s) {sorted(unknown)}; "
                f"known: {', '.join(CONDITION_FIELDS)}"
            )


class RoutingTable(BaseModel):
    """Ordered rules plus the default route."""

    model_config = ConfigDict(extra="forbid")

    default: Route
    rules: list[RoutingRule]


class RouteDecision(BaseModel):
    """The route chosen for one order and the rule that chose it (``default`` if none)."""

    rule_id: str
    department: str
    team: str
    queue: str


def load_routing(path: Path | None = None) -> RoutingTable:
    """Read and validate a routing YAML file (the packaged one by default)."""
    if path is None:
        return _packaged()
    return RoutingTable.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


@cache
def _packaged() -> RoutingTable:
    return RoutingTable.model_validate(yaml.safe_load(ROUTING_FILE.read_text(encoding="utf-8")))


def _fill(value: str, province: str | None) -> str:
    return value.replace("{province}", province or "national")


def route(*, table: RoutingTable, **fields: str | None) -> RouteDecision:
    """Return the first matching rule's route for one order (``fields``: CONDITION_FIELDS)."""
    unknown = set(fields) - set(CONDITION_FIELDS)
    if unknown:
        raise ValueError(f"unknown routing field(s) {sorted(unknown)}")
    province = fields.get("province")
    for rule in table.rules:
        if all(fields.get(name) in allowed for name, allowed in rule.when.items()):
            r = rule.route
            return RouteDecision(
                rule_id=rule.id,
                department=_fill(r.department, province),
                team=_fill(r.team, province),
                queue=_fill(r.queue, province),
            )
    d = table.default
    return RouteDecision(
        rule_id="default",
        department=_fill(d.department, province),
        team=_fill(d.team, province),
        queue=_fill(d.queue, province),
    )


def route_batch(batch: pa.Table, *, table: RoutingTable) -> pa.Table:
    """Route every row of ``batch`` at once; append rule_id, department, team and queue columns.

    Rules are applied last-to-first with vectorised masks, so earlier rules win, matching
    :func:`route`.  Missing condition columns count as null (never match a listed value).
    """
    n = batch.num_rows
    province = (
        batch.column("province") if "province" in batch.column_names else pa.nulls(n, pa.string())
    )
    province_filled = pc.fill_null(province.cast(pa.string()), "national")

    def expand(template: str) -> pa.Array:
        if "{province}" not in template:
            return pa.array([template] * n, pa.string())
        head, _, tail = template.partition("{province}")
        return pc.binary_join_element_wise(head, province_filled, tail, "")

    out = {
        "rule_id": pa.array(["default"] * n, pa.string()),
        "department": expand(table.default.department),
        "team": expand(table.default.team),
        "queue": expand(table.default.queue),
    }
    for rule in reversed(table.rules):
        mask = pa.array([True] * n)
        for name, allowed in rule.when.items():
            if name not in batch.column_names:
                mask = pa.array([False] * n)
                break
            hit = pc.fill_null(pc.is_in(batch.column(name), value_set=pa.array(allowed)), False)
            mask = pc.and_(mask, hit)
        values = {
            "rule_id": pa.array([rule.id] * n, pa.string()),
            "department": expand(rule.route.department),
            "team": expand(rule.route.team),
            "queue": expand(rule.route.queue),
        }
        for key in out:
            out[key] = pc.if_else(mask, values[key], out[key])
    for key, column in out.items():
        batch = batch.append_column(key, column)
    return batch
