"""Dissatisfied segments: readable rules from a decision tree and from subgroup discovery.

Subgroup discovery is a beam search over conjunctions of selectors ("attribute = level",
"number < cut", "number >= cut" with quantile cuts), scored by weighted relative accuracy
(Lavrač, Kavšek, Flach & Todorovski 2004, "Subgroup discovery with CN2-SD", JMLR 5) or by
lift with a minimum support.  Every evaluated candidate is one hypothesis test (one-sided
Fisher exact test of the subgroup against the rest), so p-values are adjusted for the
number of candidates actually searched (Holm 1979, or Benjamini & Hochberg 1995).  The
tree is CART (Breiman et al. 1984) via scikit-learn, its leaves read back as rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
import pandas as pd
from scipy import stats

from voxloop.analyze.design import fit_encoder, is_numeric_column
from voxloop.analyze.estimators import Estimator
from voxloop.errors import UnusableInputError


@dataclass(frozen=True)
class Condition:
    """One selector of a rule."""

    column: str
    op: str  # "=", "!=", "<", ">="
    value: str | float

    def text(self) -> str:
        """Render the selector readably, e.g. ``tenure_months < 12``."""
        value = f"{self.value:g}" if isinstance(self.value, float) else self.value
        return f"{self.column} {self.op} {value}"


@dataclass
class Rule:
    """A segment: its conditions and how it compares with everyone."""

    conditions: list[Condition]
    n: int
    positives: int
    rate: float
    lift: float
    coverage: float  # share of all rows in the segment
    recall: float  # share of all positives in the segment
    quality: float
    p_value: float
    p_adjusted: float = 1.0
    source: str = "subgroup"
    extra: dict[str, Any] = field(default_factory=dict)

    def text(self, *, outcome: str = "dissatisfied") -> str:
        """Render the rule as one readable English line."""
        lhs = " AND ".join(c.text() for c in self.conditions) or "everyone"
        return (
            f"{lhs} → {outcome} {self.lift:.1f}× the base rate, "
            f"{self.coverage:.0%} of respondents, {self.recall:.0%} of the {outcome}"
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the rule as JSON-ready data."""
        return {
            "conditions": [
                {"column": c.column, "op": c.op, "value": c.value} for c in self.conditions
            ],
            "text": self.text(),
            "n": self.n,
            "positives": self.positives,
            "rate": self.rate,
            "lift": self.lift,
            "coverage": self.coverage,
            "recall": self.recall,
            "quality": self.quality,
            "p_value": self.p_value,
            "p_adjusted": self.p_adjusted,
            "source": self.source,
        }


def adjust_p(p_values: np.ndarray, *, method: str = "holm") -> np.ndarray:
    """Adjust p-values for multiple tests (Holm step-down or Benjamini-Hochberg).

    References
    ----------
    Holm, S. (1979). Scand. J. Statist. 6, 65-70.  Benjamini, Y. & Hochberg, Y. (1995).
    J. R. Statist. Soc. B 57, 289-300.
    """
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    if method == "holm":
        adj = np.maximum.accumulate((m - np.arange(m)) * ranked)
    elif method == "bh":
        adj = np.minimum.accumulate(m / np.arange(m, 0, -1) * ranked[::-1])[::-1]
    else:
        raise UnusableInputError(f"unknown p-value adjustment {method!r} (holm or bh)")
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return out


def enrichment_p(n: np.ndarray, pos: np.ndarray, total: int, total_pos: int) -> np.ndarray:
    """One-sided Fisher exact p-value that the subgroups hold more positives than chance."""
    result: np.ndarray = stats.hypergeom.sf(np.asarray(pos) - 1, total, total_pos, np.asarray(n))
    return result


@dataclass
class _Attribute:
    name: str
    numeric: bool
    codes: np.ndarray  # int codes per row (bins for numbers, level index for text)
    labels: list[str]  # level names (text) or cut values (numbers, len = n_bins - 1)
    cuts: np.ndarray


def _attributes(frame: pd.DataFrame, *, n_bins: int) -> list[_Attribute]:
    out: list[_Attribute] = []
    for name in frame.columns:
        series = frame[name]
        if is_numeric_column(series) and pd.to_numeric(series, errors="coerce").nunique() > 2:
            values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)
            finite = values[np.isfinite(values)]
            if finite.size == 0:
                continue
            cuts = np.unique(np.quantile(finite, np.linspace(0, 1, n_bins + 1)[1:-1]))
            # Cuts at observed values make the rule text match the data ("< 12" not "< 11.7").
            codes = np.searchsorted(cuts, values, side="right")
            codes = np.where(np.isfinite(values), codes, len(cuts) + 1)
            out.append(_Attribute(str(name), True, codes, [], cuts))
        else:
            text = series.astype("string").fillna("(missing)")
            codes_, uniques = pd.factorize(text, sort=True)
            out.append(
                _Attribute(
                    str(name), False, codes_.astype(np.int64), list(map(str, uniques)), np.array([])
                )
            )
    return out


class SegmentFinder(Estimator):
    """Find readable segments where the outcome (e.g. dissatisfied) is over-represented.

    ``method`` is "subgroup" (beam search), "tree" (CART leaves) or "both".
    """

    def __init__(
        self,
        *,
        method: str = "both",
        quality: str = "wracc",
        max_depth: int = 3,
        min_support: float = 0.02,
        beam_width: int = 20,
        n_bins: int = 5,
        max_rules: int = 10,
        correction: str = "holm",
        alpha: float = 0.05,
    ) -> None:
        self.method = method
        self.quality = quality
        self.max_depth = max_depth
        self.min_support = min_support
        self.beam_width = beam_width
        self.n_bins = n_bins
        self.max_rules = max_rules
        self.correction = correction
        self.alpha = alpha

    def fit(self, x: pd.DataFrame, y: np.ndarray) -> Self:
        """Search segments of rows with ``y == 1``; return ``self``."""
        y = np.asarray(y, dtype=np.float64)
        if len(x) != len(y):
            raise UnusableInputError(f"{len(x)} rows but {len(y)} outcomes")
        if not np.isin(y, (0.0, 1.0)).all() or y.sum() == 0:
            raise UnusableInputError("segment outcome must be 0/1 with some positives")
        if self.method not in ("subgroup", "tree", "both"):
            raise UnusableInputError(f"method must be subgroup, tree or both: {self.method}")
        if self.quality not in ("wracc", "lift"):
            raise UnusableInputError(f"quality must be wracc or lift: {self.quality}")
        frame = x.reset_index(drop=True)
        self.base_rate_ = float(y.mean())
        self.n_ = len(y)
        rules: list[Rule] = []
        family: list[np.ndarray] = []
        if self.method in ("subgroup", "both"):
            rules, tested_p = self._beam(frame, y)
            family.append(tested_p)
        self.tree_rules_: list[Rule] = []
        if self.method in ("tree", "both"):
            self.tree_rules_ = self._tree(frame, y)
            family.append(np.array([r.p_value for r in self.tree_rules_]))
        # One family of tests: every candidate the beam search scored plus every tree leaf,
        # so a rule's adjusted p-value pays for the whole search, not only the rules shown.
        p_all = np.concatenate(family) if family else np.array([])
        self.n_tests_ = len(p_all)
        adj_all = adjust_p(p_all, method=self.correction)
        for rule in rules:
            rule.p_adjusted = float(adj_all[rule.extra.pop("test_index")])
        offset = self.n_tests_ - len(self.tree_rules_)
        for i, rule in enumerate(self.tree_rules_):
            rule.p_adjusted = float(adj_all[offset + i])
        self.rules_ = sorted(
            (r for r in rules if r.p_adjusted <= self.alpha),
            key=lambda r: -r.quality,
        )[: self.max_rules]
        return self

    # -- subgroup discovery ---------------------------------------------------------

    def _score(self, n: np.ndarray, pos: np.ndarray) -> np.ndarray:
        rate = np.divide(pos, n, out=np.zeros_like(pos, dtype=np.float64), where=n > 0)
        if self.quality == "wracc":
            score: np.ndarray = n / self.n_ * (rate - self.base_rate_)
        else:
            score = rate / self.base_rate_
        return np.where(n >= self.min_support * self.n_, score, -np.inf)

    def _beam(self, frame: pd.DataFrame, y: np.ndarray) -> tuple[list[Rule], np.ndarray]:
        attrs = _attributes(frame, n_bins=self.n_bins)
        total = len(y)
        total_pos = int(y.sum())
        beam: list[tuple[list[Condition], np.ndarray, set[str]]] = [
            ([], np.ones(total, dtype=bool), set())
        ]
        seen: set[frozenset[Condition]] = set()
        candidates: list[tuple[float, list[Condition], int, int]] = []
        for _depth in range(self.max_depth):
            layer: list[tuple[float, list[Condition], int, int, int, int, str, int]] = []
            for bi, (conds, mask, used) in enumerate(beam):
                idx = np.flatnonzero(mask)
                y_in = y[idx]
                for ai, attr in enumerate(attrs):
                    if attr.name in used:
                        continue
                    codes = attr.codes[idx]
                    width = (len(attr.cuts) + 2) if attr.numeric else len(attr.labels)
                    cnt = np.bincount(codes, minlength=width).astype(np.float64)
                    pos = np.bincount(codes, weights=y_in, minlength=width)
                    sel_n: list[float] = []
                    sel_pos: list[float] = []
                    sels: list[tuple[Condition, Any]] = []
                    if attr.numeric:
                        c_cnt, c_pos = np.cumsum(cnt), np.cumsum(pos)
                        finite_n = c_cnt[len(attr.cuts)]
                        finite_p = c_pos[len(attr.cuts)]
                        for k, cut in enumerate(attr.cuts):
                            sels.append((Condition(attr.name, "<", float(cut)), ("lt", k)))
                            sel_n.append(c_cnt[k])
                            sel_pos.append(c_pos[k])
                            sels.append((Condition(attr.name, ">=", float(cut)), ("ge", k)))
                            sel_n.append(finite_n - c_cnt[k])
                            sel_pos.append(finite_p - c_pos[k])
                    else:
                        for k, label in enumerate(attr.labels):
                            sels.append((Condition(attr.name, "=", label), ("eq", k)))
                            sel_n.append(cnt[k])
                            sel_pos.append(pos[k])
                    n_arr = np.array(sel_n)
                    p_arr = np.array(sel_pos)
                    score = self._score(n_arr, p_arr)
                    for (cond, (kind, k)), s, nn, pp in zip(sels, score, n_arr, p_arr, strict=True):
                        if not np.isfinite(s):
                            continue
                        key = frozenset([*conds, cond])
                        if key in seen:
                            continue
                        seen.add(key)
                        layer.append((float(s), [*conds, cond], int(nn), int(pp), bi, ai, kind, k))
            if not layer:
                break
            layer.sort(key=lambda item: -item[0])
            candidates.extend((item[0], item[1], item[2], item[3]) for item in layer)
            # Masks are rebuilt only for the beam: keeping one per candidate would cost
            # rows × candidates bytes.
            next_beam = []
            for _s, conds, _n, _p, bi, ai, kind, k in layer[: self.beam_width]:
                codes = attrs[ai].codes
                if kind == "eq":
                    sub = codes == k
                elif kind == "lt":
                    sub = codes <= k
                else:
                    sub = (codes > k) & (codes <= len(attrs[ai].cuts))
                next_beam.append((conds, beam[bi][1] & sub, {c.column for c in conds}))
            beam = next_beam
        candidates.sort(key=lambda item: -item[0])
        tested_p = enrichment_p(
            np.array([c[2] for c in candidates], dtype=np.int64),
            np.array([c[3] for c in candidates], dtype=np.int64),
            total,
            total_pos,
        )
        rules: list[Rule] = []
        kept: list[tuple[list[Condition], float]] = []
        for index, (quality, conds, nn, pp) in enumerate(candidates):
            # A refinement must beat every shorter rule it extends, or it adds nothing.
            if any(set(k) < set(conds) and quality <= ks for k, ks in kept):
                continue
            kept.append((conds, quality))
            rule = self._rule(conds, nn, pp, quality, total, total_pos, "subgroup")
            rule.extra["test_index"] = index
            rules.append(rule)
            if len(rules) >= self.max_rules * 3:
                break
        return rules, np.asarray(tested_p, dtype=np.float64)

    def _rule(
        self,
        conds: list[Condition],
        n: int,
        pos: int,
        score: float,
        total: int,
        total_pos: int,
        source: str,
    ) -> Rule:
        rate = pos / n if n else 0.0
        p_value = float(enrichment_p(np.array([n]), np.array([pos]), total, total_pos)[0])
        return Rule(
            conds,
            n,
            pos,
            rate,
            rate / self.base_rate_,
            n / total,
            pos / total_pos,
            score,
            p_value,
            source=source,
        )

    # -- decision tree ---------------------------------------------------------------

    def _tree(self, frame: pd.DataFrame, y: np.ndarray) -> list[Rule]:
        from sklearn.tree import DecisionTreeClassifier

        encoder = fit_encoder(frame)
        design = encoder.transform(frame)
        min_leaf = max(1, int(self.min_support * len(y)))
        tree = DecisionTreeClassifier(max_depth=self.max_depth, min_samples_leaf=min_leaf)
        tree.fit(design.matrix, y)
        self.tree_ = tree
        self.tree_columns_ = design.columns
        struct = tree.tree_
        total = len(y)
        total_pos = int(y.sum())
        leaves = tree.apply(design.matrix)
        rules: list[Rule] = []

        def walk(node: int, conds: list[Condition]) -> None:
            left, right = struct.children_left[node], struct.children_right[node]
            if left == -1:
                in_leaf = leaves == node
                n = int(in_leaf.sum())
                pos = int(y[in_leaf].sum())
                rate = pos / n if n else 0.0
                score = n / total * (rate - self.base_rate_)
                rules.append(self._rule(_simplify(conds), n, pos, score, total, total_pos, "tree"))
                return
            col = design.columns[struct.feature[node]]
            thr = float(struct.threshold[node])
            if "=" in col and col.split("=", 1)[0] in encoder.categorical:
                name, level = col.split("=", 1)
                walk(left, [*conds, Condition(name, "!=", level)])
                walk(right, [*conds, Condition(name, "=", level)])
            else:
                walk(left, [*conds, Condition(col, "<=", thr)])
                walk(right, [*conds, Condition(col, ">", thr)])

        walk(0, [])
        rules.sort(key=lambda r: -r.quality)
        return rules

    def summary(self) -> dict[str, Any]:
        """Return the found segments as JSON-ready data."""
        self._require_fitted()
        return {
            "n": self.n_,
            "base_rate": self.base_rate_,
            "n_tests": self.n_tests_,
            "correction": self.correction,
            "rules": [r.to_dict() for r in self.rules_],
            "tree_rules": [r.to_dict() for r in self.tree_rules_ if r.lift > 1],
        }


def _simplify(conds: list[Condition]) -> list[Condition]:
    """Merge repeated bounds on one numeric column and drop "!=" implied by an "="."""
    out: list[Condition] = []
    for cond in conds:
        if cond.op in ("<=", "<", ">", ">="):
            same = [i for i, c in enumerate(out) if c.column == cond.column and c.op == cond.op]
            if same:
                prev = out[same[0]]
                assert isinstance(prev.value, float) and isinstance(cond.value, float)
                tighter = (
                    min(prev.value, cond.value)
                    if cond.op in ("<=", "<")
                    else max(prev.value, cond.value)
                )
                out[same[0]] = Condition(cond.column, cond.op, tighter)
                continue
        out.append(cond)
    equal = {c.column for c in out if c.op == "="}
    return [c for c in out if not (c.op == "!=" and c.column in equal)]


def drill_down(
    frame: pd.DataFrame,
    y: np.ndarray,
    *,
    levels: list[str],
    path: dict[str, str] | None = None,
    correction: str = "holm",
) -> list[dict[str, Any]]:
    """Return the next level of a hierarchy below ``path`` with the same metric everywhere.

    Each child row carries its size, positives, rate, lift against the overall base rate,
    share of all positives and a Fisher test against the rest of its parent (adjusted
    across siblings).  ``levels`` is e.g. ["province", "city", "district"]; any
    attribute list works.
    """
    path = path or {}
    unknown = [c for c in [*levels, *path] if c not in frame.columns]
    if unknown:
        raise UnusableInputError(f"drill-down columns not in the data: {', '.join(unknown)}")
    y = np.asarray(y, dtype=np.float64)
    mask = np.ones(len(frame), dtype=bool)
    for col, value in path.items():
        mask &= (frame[col].astype("string") == value).fillna(False).to_numpy(dtype=bool)
    depth = len([lv for lv in levels if lv in path])
    if depth >= len(levels):
        return []
    level = levels[depth]
    base = float(y.mean()) if len(y) else 0.0
    total_pos = float(y.sum()) or 1.0
    sub = pd.DataFrame(
        {"key": frame.loc[mask, level].astype("string").fillna("(missing)"), "y": y[mask]}
    )
    grouped = sub.groupby("key", sort=False)["y"].agg(["size", "sum"])
    parent_n = int(mask.sum())
    parent_pos = int(y[mask].sum())
    p = enrichment_p(
        grouped["size"].to_numpy(), grouped["sum"].to_numpy().astype(np.int64), parent_n, parent_pos
    )
    adj = adjust_p(p, method=correction)
    rows: list[dict[str, Any]] = []
    for (key, row), pv, pa in zip(grouped.iterrows(), p, adj, strict=True):
        n = int(row["size"])
        pos = float(row["sum"])
        rate = pos / n if n else 0.0
        rows.append(
            {
                "level": level,
                "value": str(key),
                "n": n,
                "positives": int(pos),
                "rate": rate,
                "lift": rate / base if base else 0.0,
                "share_of_positives": pos / total_pos,
                "p_value": float(pv),
                "p_adjusted": float(pa),
            }
        )
    rows.sort(key=lambda r: (-r["lift"], -r["n"]))
    return rows
