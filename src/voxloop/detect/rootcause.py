"""Root cause of a surge: the smallest attribute combination explaining its excess volume.

Adtributor (Bhagwan et al. 2014) ranks, per dimension, the elements whose share of the
actual volume diverges most from their share of the forecast (Jensen-Shannon
*surprise*) and keeps the succinct set of them that explains at least ``t_ep`` of the
change (*explanatory power*).  We apply it recursively down the series cube: starting
from a surging series, the dimension whose candidate set is a single element with the
highest surprise is fixed, and the search continues inside that child while the child
still explains ``t_ep`` of the original excess.  The path gives a conjunction such as
``scenario=BILL|province=四川|city=成都|channel=hotline_10086`` and its share of the excess.

References
----------
Bhagwan, Kumar, Ramjee, Varghese, Mohapatra, Manoharan & Mohan (2014), "Adtributor:
Revenue Debugging in Advertising Systems", USENIX NSDI.
Persson & Rudenius (2018), "Anomaly detection and fault localization: an automated process
for advertising systems" (recursive Adtributor), Chalmers MSc thesis.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from voxloop.detect.series import ALL, DIMENSIONS, parse_key, series_key


@dataclass
class Candidate:
    """One dimension's Adtributor result: its elements, explanatory power and surprise."""

    dimension: str
    elements: list[str]
    explanatory_power: float
    surprise: float
    complete: bool = True


@dataclass
class RootCause:
    """A conjunction of attribute values and the share of the excess it explains."""

    key: str
    values: dict[str, str]
    share: float
    excess: float
    path: list[str] = field(default_factory=list)
    #: Adtributor's candidate sets below the conjunction (several elements each).
    breakdown: list[Candidate] = field(default_factory=list)


def surprise(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Return the per-element Jensen-Shannon divergence between shares ``p`` and ``q``."""
    m = (p + q) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(p > 0, p * np.log(p / m), 0.0)
        b = np.where(q > 0, q * np.log(q / m), 0.0)
    return np.asarray(0.5 * (a + b), dtype=np.float64)


def adtributor(
    breakdown: dict[str, dict[str, tuple[float, float]]],
    *,
    t_eep: float = 0.1,
    t_ep: float = 0.67,
    top: int = 3,
    partial: bool = False,
) -> list[Candidate]:
    """Rank dimensions by the surprise of their succinct explanatory element sets.

    ``breakdown[dimension][element] = (actual, forecast)``; every dimension's elements
    partition the same total.  Returns at most ``top`` candidates, most surprising first;
    with ``partial``, dimensions whose elements above ``t_eep`` do not reach ``t_ep`` are
    returned too, marked ``complete=False``.
    """
    out: list[Candidate] = []
    for dim, elements in breakdown.items():
        names = list(elements)
        actual = np.array([elements[n][0] for n in names], dtype=np.float64)
        forecast = np.array([elements[n][1] for n in names], dtype=np.float64)
        a_tot, f_tot = actual.sum(), forecast.sum()
        change = a_tot - f_tot
        if a_tot <= 0 or f_tot <= 0 or change == 0:
            continue
        s = surprise(forecast / f_tot, actual / a_tot)
        ep = (actual - forecast) / change
        chosen: list[str] = []
        explained = 0.0
        total_surprise = 0.0
        for j in np.argsort(-s, kind="stable"):
            if ep[j] > t_eep:
                chosen.append(names[j])
                explained += float(ep[j])
                total_surprise += float(s[j])
                if explained >= t_ep:
                    break
        if explained >= t_ep:
            out.append(Candidate(dim, chosen, explained, total_surprise))
        elif chosen and partial:
            # No succinct set reaches t_ep (the change is spread out); keep the leaders.
            out.append(Candidate(dim, chosen, explained, total_surprise, complete=False))
    out.sort(key=lambda c: -c.surprise)
    return out[:top]


def _next_dimensions(fixed: dict[str, str], dims: tuple[str, ...]) -> list[str]:
    region = ("province", "city", "district")
    out: list[str] = []
    for d in dims:
        if d in fixed:
            continue
        if d in region:
            # Regions are hierarchical: only the next level below the fixed one.
            level = region.index(d)
            if any(r not in fixed for r in region[:level]):
                continue
        out.append(d)
    return out


def explain(
    anchor: str,
    observed: dict[str, tuple[float, float]],
    *,
    dims: tuple[str, ...] = DIMENSIONS,
    t_eep: float = 0.1,
    t_ep: float = 0.67,
) -> RootCause:
    """Descend from the surging ``anchor`` series to the conjunction explaining its excess.

    ``observed[key] = (actual, expected)`` for the window, over every series key.
    """
    if anchor not in observed:
        raise KeyError(f"anchor series {anchor!r} not observed in this window")
    a0, f0 = observed[anchor]
    excess0 = a0 - f0
    parsed = {k: parse_key(k) for k in observed}
    node = parse_key(anchor)
    path = [anchor]
    share = 1.0
    below: list[Candidate] = []
    while excess0 > 0:
        breakdown: dict[str, dict[str, tuple[float, float]]] = {}
        only_child: tuple[str, str] | None = None
        for d in _next_dimensions(node, dims):
            elements: dict[str, tuple[float, float]] = {}
            for key, values in parsed.items():
                if (
                    len(values) == len(node) + 1
                    and d in values
                    and all(values.get(k) == v for k, v in node.items())
                ):
                    elements[values[d]] = observed[key]
            # A dimension with a single value explains everything and says nothing; a
            # region level with one value (a municipality's city) is passed through.
            if len(elements) > 1:
                breakdown[d] = elements
            elif len(elements) == 1 and d in ("province", "city") and only_child is None:
                only_child = (d, next(iter(elements)))
        if (
            only_child is not None
            and not breakdown.get("district")
            and not any(d in breakdown for d in ("province", "city"))
        ):
            below_node = {**node, only_child[0]: only_child[1]}
            a, f = observed[series_key(below_node, dims)]
            if a - f >= t_ep * excess0:
                node = below_node
                path.append(series_key(node, dims))
                continue
        best: tuple[str, str, float] | None = None
        below = adtributor(breakdown, t_eep=t_eep, t_ep=t_ep, top=len(breakdown), partial=True)
        for cand in below:
            if len(cand.elements) != 1 or not cand.complete:
                continue
            a, f = breakdown[cand.dimension][cand.elements[0]]
            child_share = (a - f) / excess0
            if child_share >= t_ep:
                best = (cand.dimension, cand.elements[0], child_share)
                break
        if best is None:
            break
        node = {**node, best[0]: best[1]}
        share = best[2]
        path.append(series_key(node, dims))
    key = series_key(node, dims) if node else ALL
    rest = [c for c in below if len(c.elements) > 1 or not c.complete]
    return RootCause(key=key, values=node, share=share, excess=excess0, path=path, breakdown=rest)
