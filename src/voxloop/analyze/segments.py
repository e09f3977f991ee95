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

import math
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
import pandas as pd
from scipy import stats

from voxloop.analyze.design import fit_encoder, is_numeric_column
from voxloop.analyze.estimators import Estimator, register_model
from voxloop.errors import UnusableInputError


@dataclass(frozen=True)
class Condition:
    """One selector of a rule."""

    column: str
    op: str  # "=", "!=", "<", ">=", "<=", ">", "in"
    value: str | float | tuple[str, ...]

    def text(self) -> str:
        """Render the selector readably, e.g. ``tenure_months < 12``."""
        if isinstance(self.value, tuple):
            return f"{self.column} in {{{', '.join(self.value)}}}"
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


def adjust_p(
    p_values: np.ndarray, *, method: str = "holm", n_hypotheses: int | None = None
) -> np.ndarray:
    """Adjust p-values for multiple tests (Holm step-down or Benjamini-Hochberg).

    ``n_hypotheses`` (default: as many as given) counts hypotheses of the family that
    were never evaluated; they enter as p = 1, which only raises the adjusted values.

    References
    ----------
    Holm, S. (1979). Scand. J. Statist. 6, 65-70.  Benjamini, Y. & Hochberg, Y. (1995).
    J. R. Statist. Soc. B 57, 289-300.
    """
    p = np.asarray(p_values, dtype=np.float64)
    k = len(p)
    m = max(k, n_hypotheses or 0)
    if k == 0:
        return p
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    rank = np.arange(1, k + 1)
    if method == "holm":
        adj = np.maximum.accumulate((m - rank + 1) * ranked)
    elif method == "bh":
        adj = np.minimum.accumulate((m / rank * ranked)[::-1])[::-1]
    else:
        raise UnusableInputError(f"unknown p-value adjustment {method!r} (holm or bh)")
    out = np.empty(k)
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


def _distinct_more_than(values: np.ndarray, k: int) -> bool:
    head = values[:10_000]
    if np.unique(head[np.isfinite(head)]).size > k:
        return True
    return bool(np.unique(values[np.isfinite(values)]).size > k)


def _attributes(frame: pd.DataFrame, *, n_bins: int) -> list[_Attribute]:
    out: list[_Attribute] = []
    for name in frame.columns:
        series = frame[name]
        values = (
            pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            if is_numeric_column(series)
            else None
        )
        if values is not None and _distinct_more_than(values, 2):
            finite = values[np.isfinite(values)]
            if finite.size == 0:
                continue
            cuts = np.unique(
                np.quantile(finite, np.linspace(0, 1, n_bins + 1)[1:-1], method="inverted_cdf")
            )
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


def _search_space(attrs: list[_Attribute], depth: int, max_set: int) -> int:
    """Count every rule the search could have returned.

    These are the conjunctions of up to ``depth`` selectors on distinct attributes (all
    cuts, levels and level sets up to ``max_set``).  The beam evaluates only part of
    this space, but which part depends on the outcome, so the correction is for the
    whole space (Webb 2007, "direct adjustment").
    """
    sizes = []
    for a in attrs:
        if a.numeric:
            sizes.append(2 * len(a.cuts))
        else:
            n = len(a.labels)
            sizes.append(sum(math.comb(n, k) for k in range(1, min(max_set, n - 1) + 1)))
    # Elementary symmetric polynomials e_1..e_depth of the selector counts.
    e = [1] + [0] * depth
    for size in sizes:
        for d in range(depth, 0, -1):
            e[d] += e[d - 1] * size
    return max(1, sum(e[1:]))


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else 1.0


def _enriched(rule: np.ndarray, parent: np.ndarray, y: np.ndarray, alpha: float) -> bool:
    n_parent = int(parent.sum())
    pos_parent = int(y[parent].sum())
    n = int(rule.sum())
    pos = int(y[rule].sum())
    p = float(enrichment_p(np.array([n]), np.array([pos]), n_parent, pos_parent)[0])
    return p <= alpha


def _selector_mask(attr: _Attribute, kind: str, k: Any) -> np.ndarray:
    codes = attr.codes
    if kind == "eq":
        out: np.ndarray = codes == k
    elif kind == "in":
        out = np.isin(codes, k)
    elif kind == "lt":
        out = codes <= k
    else:
        out = (codes > k) & (codes <= len(attr.cuts))
    return out


def rule_mask(frame: pd.DataFrame, conditions: list[Condition]) -> np.ndarray:
    """Return which rows of ``frame`` satisfy every condition of a rule."""
    mask = np.ones(len(frame), dtype=bool)
    for cond in conditions:
        if cond.column not in frame.columns:
            raise UnusableInputError(f"rule column {cond.column!r} is not in the data")
        col = frame[cond.column]
        if cond.op in ("=", "!=", "in"):
            text = col.astype("string").fillna("(missing)")
            values = cond.value if isinstance(cond.value, tuple) else (str(cond.value),)
            hit = text.isin(values).to_numpy(dtype=bool)
            mask &= ~hit if cond.op == "!=" else hit
        else:
            num = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
            value = float(cond.value)  # type: ignore[arg-type]
            with np.errstate(invalid="ignore"):
                if cond.op == "<":
                    mask &= num < value
                elif cond.op == "<=":
                    mask &= num <= value
                elif cond.op == ">":
                    mask &= num > value
                else:
                    mask &= num >= value
    return mask


@register_model("segments")
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
        max_levels_in_set: int = 5,
        redundancy: float = 0.8,
        parsimony: float = 0.95,
        max_tree_rows: int = 200_000,
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
        self.max_levels_in_set = max_levels_in_set
        self.redundancy = redundancy
        self.parsimony = parsimony
        self.max_tree_rows = max_tree_rows
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
        self.search_space_ = 0
        if self.method in ("subgroup", "both"):
            rules, tested_p = self._beam(frame, y)
            family.append(tested_p)
        self.tree_rules_: list[Rule] = []
        if self.method in ("tree", "both"):
            self.tree_rules_ = self._tree(frame, y)
            family.append(np.array([r.p_value for r in self.tree_rules_]))
        # One family of tests: every rule the beam search could have reached (evaluated or
        # not) plus every tree leaf, so a rule's adjusted p-value pays for the whole search.
        p_all = np.concatenate(family) if family else np.array([])
        self.n_tests_ = self.search_space_ + len(self.tree_rules_)
        adj_all = adjust_p(p_all, method=self.correction, n_hypotheses=self.n_tests_)
        for rule in rules:
            rule.p_adjusted = float(adj_all[rule.extra.pop("test_index")])
        offset = len(p_all) - len(self.tree_rules_)
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
        # Beam entries: conditions, row mask, used columns, rows, positives.
        beam: list[tuple[list[Condition], np.ndarray, set[str], int, int]] = [
            ([], np.ones(total, dtype=bool), set(), total, total_pos)
        ]
        seen: set[frozenset[Condition]] = set()
        # Candidates: quality, conditions, rows, positives.
        candidates: list[tuple[float, list[Condition], int, int]] = []
        for _depth in range(self.max_depth):
            layer: list[tuple[float, list[Condition], int, int, int, int, str, Any]] = []
            for bi, (conds, mask, used, _bn, _bp) in enumerate(beam):
                idx = np.flatnonzero(mask)
                y_in = y[idx]
                for ai, attr in enumerate(attrs):
                    if attr.name in used:
                        continue
                    for cond, sel, nn, pp in self._selectors(attr, attr.codes[idx], y_in):
                        key = frozenset([*conds, cond])
                        if key in seen:
                            continue
                        seen.add(key)
                        score = float(self._score(np.array([nn]), np.array([pp]))[0])
                        if not np.isfinite(score):
                            continue
                        layer.append((score, [*conds, cond], int(nn), int(pp), bi, ai, *sel))
            if not layer:
                break
            layer.sort(key=lambda item: (-item[0], len(item[1])))
            candidates.extend((item[0], item[1], item[2], item[3]) for item in layer)
            # Masks are rebuilt only for the beam: keeping one per candidate would cost
            # rows × candidates bytes.
            next_beam = []
            for _s, conds, nn, pp, bi, ai, kind, k in layer[: self.beam_width]:
                sub = _selector_mask(attrs[ai], kind, k)
                next_beam.append(
                    (conds, beam[bi][1] & sub, {c.column for c in conds}, int(nn), int(pp))
                )
            beam = next_beam
        candidates.sort(key=lambda item: (-item[0], len(item[1])))
        raw_p = enrichment_p(
            np.array([c[2] for c in candidates], dtype=np.int64),
            np.array([c[3] for c in candidates], dtype=np.int64),
            total,
            total_pos,
        )
        tested_p = np.asarray(raw_p, dtype=np.float64)
        rules: list[Rule] = []
        kept_masks: list[np.ndarray] = []
        cache: dict[Condition, np.ndarray] = {}

        def mask_of(conds: list[Condition]) -> np.ndarray:
            mask = np.ones(total, dtype=bool)
            for cond in conds:
                if cond not in cache:
                    cache[cond] = rule_mask(frame, [cond])
                mask = mask & cache[cond]
            return mask

        for index, (quality, conds, nn, pp) in enumerate(candidates):
            # A rule must be productive (Webb 2007, "Discovering significant patterns",
            # Machine Learning 68): within every generalisation (one condition dropped)
            # its rate must beat the rest significantly, or that condition only adds noise.
            if len(conds) > 1 and not all(
                _enriched(mask_of(conds), mask_of(conds[:i] + conds[i + 1 :]), y, self.alpha)
                for i in range(len(conds))
            ):
                continue
            # Rules selecting (nearly) the same rows are one segment: keep the simplest one
            # whose quality is within ``parsimony`` of the best (Occam's razor; the extra
            # condition usually fits noise).
            mask = mask_of(conds)
            twin = next(
                (
                    i
                    for i, kept_mask in enumerate(kept_masks)
                    if _jaccard(mask, kept_mask) >= self.redundancy
                ),
                None,
            )
            rule = self._rule(conds, nn, pp, quality, total, total_pos, "subgroup")
            rule.extra["test_index"] = index
            if twin is not None:
                kept = rules[twin]
                if len(conds) < len(kept.conditions) and quality >= self.parsimony * kept.quality:
                    rules[twin] = rule
                    kept_masks[twin] = mask
                continue
            rules.append(rule)
            kept_masks.append(mask)
            if len(rules) >= self.max_rules * 3:
                break
        self.search_space_ = _search_space(attrs, self.max_depth, self.max_levels_in_set)
        return rules, np.asarray(tested_p, dtype=np.float64)

    def _selectors(
        self, attr: _Attribute, codes: np.ndarray, y_in: np.ndarray
    ) -> list[tuple[Condition, tuple[str, Any], float, float]]:
        """Return every selector of one attribute with its rows and positives in a subgroup."""
        out: list[tuple[Condition, tuple[str, Any], float, float]] = []
        width = (len(attr.cuts) + 2) if attr.numeric else len(attr.labels)
        cnt = np.bincount(codes, minlength=width).astype(np.float64)
        pos = np.bincount(codes, weights=y_in, minlength=width)
        if attr.numeric:
            c_cnt, c_pos = np.cumsum(cnt), np.cumsum(pos)
            finite_n, finite_p = c_cnt[len(attr.cuts)], c_pos[len(attr.cuts)]
            for k, cut in enumerate(attr.cuts):
                out.append((Condition(attr.name, "<", float(cut)), ("lt", k), c_cnt[k], c_pos[k]))
                out.append(
                    (
                        Condition(attr.name, ">=", float(cut)),
                        ("ge", k),
                        finite_n - c_cnt[k],
                        finite_p - c_pos[k],
                    )
                )
            return out
        for k, label in enumerate(attr.labels):
            out.append((Condition(attr.name, "=", label), ("eq", k), cnt[k], pos[k]))
        # Level sets: for a 0/1 outcome the best grouping of levels is a prefix of the
        # levels sorted by rate (Breiman et al. 1984, section 4.2.2).
        rate = np.divide(pos, cnt, out=np.zeros_like(pos), where=cnt > 0)
        by_rate = [int(i) for i in np.argsort(-rate, kind="stable") if cnt[i] > 0]
        for size in range(2, min(len(by_rate) - 1, self.max_levels_in_set) + 1):
            members = sorted(by_rate[:size])
            labels = tuple(attr.labels[i] for i in members)
            out.append(
                (
                    Condition(attr.name, "in", labels),
                    ("in", members),
                    float(cnt[members].sum()),
                    float(pos[members].sum()),
                )
            )
        return out

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
        """Fit CART and read its leaves as rules.

        A text attribute becomes one column of level ranks ordered by outcome rate, so a
        single split groups levels ("plan in {a, b}"); for a 0/1 outcome that ordering
        contains the best binary grouping (Breiman et al. 1984, section 4.2.2).
        """
        from sklearn.tree import DecisionTreeClassifier

        encoder = fit_encoder(frame)
        codes = encoder.codes(frame)
        ordered: dict[int, list[str]] = {}
        matrix = codes.copy()
        for j in encoder.categorical_indices():
            col = codes[:, j]
            levels = encoder.categorical[encoder.order[j]]
            known = np.isfinite(col)
            idx = col[known].astype(np.int64)
            cnt = np.bincount(idx, minlength=len(levels)).astype(np.float64)
            pos = np.bincount(idx, weights=y[known], minlength=len(levels))
            rate = np.divide(pos, cnt, out=np.full(len(levels), -1.0), where=cnt > 0)
            order = np.argsort(rate, kind="stable")
            rank = np.empty(len(levels))
            rank[order] = np.arange(len(levels))
            matrix[known, j] = rank[idx]
            matrix[~known, j] = -1.0
            ordered[j] = [levels[i] for i in order]
        for j, name in enumerate(encoder.order):
            if name in encoder.numeric:
                matrix[:, j] = np.where(np.isnan(matrix[:, j]), encoder.numeric[name], matrix[:, j])
        # Split points need no more than a few hundred thousand rows; leaf counts below
        # still come from every row.
        fit_rows = np.arange(len(y))
        if len(y) > self.max_tree_rows:
            fit_rows = np.sort(
                np.random.default_rng(0).choice(len(y), self.max_tree_rows, replace=False)
            )
        min_leaf = max(1, int(self.min_support * len(fit_rows)))
        tree = DecisionTreeClassifier(max_depth=self.max_depth, min_samples_leaf=min_leaf)
        tree.fit(matrix[fit_rows], y[fit_rows])
        self.tree_ = tree
        self.tree_columns_ = list(encoder.order)
        struct = tree.tree_
        total = len(y)
        total_pos = int(y.sum())
        leaves = tree.apply(matrix)
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
            j = int(struct.feature[node])
            col = encoder.order[j]
            thr = float(struct.threshold[node])
            if j in ordered:
                cut = int(np.floor(thr)) + 1
                low = tuple(sorted(ordered[j][: max(cut, 0)]))
                high = tuple(sorted(ordered[j][max(cut, 0) :]))
                walk(left, [*conds, Condition(col, "in", low)])
                walk(right, [*conds, Condition(col, "in", high)])
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
    """Merge repeated bounds on one numeric column and intersect repeated level sets."""
    out: list[Condition] = []
    for cond in conds:
        if cond.op == "in" and isinstance(cond.value, tuple):
            same = [i for i, c in enumerate(out) if c.column == cond.column and c.op == "in"]
            if same:
                prev = out[same[0]]
                assert isinstance(prev.value, tuple)
                both = tuple(v for v in prev.value if v in cond.value)
                out[same[0]] = Condition(cond.column, "in", both)
                continue
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
    return [
        Condition(c.column, "=", c.value[0])
        if c.op == "in" and isinstance(c.value, tuple) and len(c.value) == 1
        else c
        for c in out
    ]


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
