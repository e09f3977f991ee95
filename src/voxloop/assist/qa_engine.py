"""Quality-inspection (质检) rule language and the vectorised engine that applies it.

A rule pack (YAML, see ``qa_rules.yaml`` and docs/qa.md) holds rules; a rule names
conditions and combines them with a boolean expression; the rule is *hit* (a violation)
when the expression is true. A condition is one operator with a role and a range:

* operators: ``keywords`` (a word set, hit when at least ``min`` distinct words occur),
  ``regex`` (RE2 pattern with an optional ``exclude`` pattern), ``similarity`` (char
  n-gram TF-IDF cosine to example sentences), ``emotion`` (the understand lexicon per
  turn), ``intent`` (the voice's stored reading), and on timed turns ``silence`` (gap
  before a turn over N s), ``interruption`` (turn starts before the other side's ends),
  ``speaking_rate`` (characters per second over a long enough turn);
* role: ``agent``, ``customer`` or ``any``;
* range: whole conversation, ``{first: N}`` / ``{last: N}`` turns of the role,
  ``{after: <condition>, turns: N}`` (the N turns after the first turn where the other
  condition matched) or ``{before: <condition>}``.

The engine explodes a batch of conversations into one array of turns, evaluates each
operator once over all turns of its role (RE2 in Arrow compute, one sparse product for
similarity) and reduces with NumPy, so no Python code runs per turn or per rule-and-turn.

References
----------
Alibaba Cloud 智能对话分析 (SCA), detection operators (keyword, regex, similarity, role,
range, silence, speaking rate, interruption, emotion), help.aliyun.com/zh/sca.
"""

from __future__ import annotations

import ast
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from voxloop.errors import VoxloopError

DEFAULT_PACK = Path(__file__).resolve().parent / "qa_rules.yaml"
OPERATORS = (
    "keywords",
    "regex",
    "similarity",
    "emotion",
    "intent",
    "silence",
    "interruption",
    "speaking_rate",
)
ROLES = {"agent": 0, "customer": 1, "any": -1}
SEVERITIES = ("normal", "critical")
#: Operators read from the conversation as a whole, not from single turns.
CONVERSATION_OPERATORS = ("intent",)
_TIMED = ("silence", "interruption", "speaking_rate")

_ROLE_WORDS = r"坐席|客服|客户|用户|[Aa]gent|AGENT|[Cc]ustomer|CUSTOMER"
# Turns joined by spaces (the older demo format) are put on lines of their own first.
_JOINED = rf"([^\]\s])[ \t]+((?:\[[0-9.]+\s*-\s*[0-9.]+\][ \t]*)?(?:{_ROLE_WORDS})\s*[:：])"
_LINE = (
    r"^\s*(?:\[(?P<s>[0-9]+(?:\.[0-9]+)?)\s*-\s*(?P<e>[0-9]+(?:\.[0-9]+)?)\]\s*)?"
    rf"(?:(?P<r>{_ROLE_WORDS})\s*[:：])?\s*(?P<t>.*)"
)
_AGENT_WORDS = ("坐席", "客服", "agent")
_UNIT = r"\p{Han}|[A-Za-z0-9]+(?:[.'][A-Za-z0-9]+)*"
_CUSTOMER_WORDS = ("客户", "用户", "customer")


class QaRuleError(VoxloopError, ValueError):
    """A rule pack is malformed; the message names the rule, condition and field."""


# ---------------------------------------------------------------------------
# Rule pack


@dataclass(frozen=True)
class Condition:
    """One operator with its role and range, compiled from a rule's ``conditions``."""

    name: str
    operator: str
    role: str
    range_kind: str  # all | first | last | after | before
    range_n: int
    range_ref: tuple[str, ...] | None  # conditions whose first matched turn anchors it
    params: dict[str, Any]


@dataclass(frozen=True)
class Rule:
    """A named check: conditions, a boolean expression, severity and score deduction."""

    id: str
    name: dict[str, str]
    category: str
    severity: str
    score: float
    conditions: tuple[Condition, ...]
    expression: str
    tree: ast.expr = field(repr=False, compare=False)
    positive: tuple[str, ...] = ()

    @property
    def timed(self) -> bool:
        """Return whether the rule needs turn timestamps."""
        return any(c.operator in _TIMED for c in self.conditions)


@dataclass(frozen=True)
class RulePack:
    """A versioned set of rules; ``version`` includes a hash of the file's content."""

    name: str
    version: str
    pass_mark: float
    sources: tuple[str, ...]
    rules: tuple[Rule, ...]

    def rule(self, rule_id: str) -> Rule:
        """Return the rule ``rule_id`` or raise ``KeyError``."""
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)


def _need(raw: dict[str, Any], key: str, where: str) -> Any:
    if key not in raw or raw[key] in (None, "", []):
        raise QaRuleError(f"{where}: '{key}' is required")
    return raw[key]


def _check_regex(pattern: str, where: str) -> None:
    try:
        pc.match_substring_regex(pa.array([""]), pattern)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise QaRuleError(f"{where}: not a valid RE2 pattern: {exc}") from None


def _condition(name: str, raw: Any, where: str) -> Condition:
    if not isinstance(raw, dict):
        raise QaRuleError(f"{where}: a condition must be a mapping")
    op = _need(raw, "operator", where)
    if op not in OPERATORS:
        raise QaRuleError(f"{where}: operator {op!r} is not one of {list(OPERATORS)}")
    role = raw.get("role", "any")
    if role not in ROLES:
        raise QaRuleError(f"{where}: role {role!r} is not one of {list(ROLES)}")
    rng = raw.get("range") or "all"
    kind, n = "all", 0
    ref: tuple[str, ...] | None = None
    if rng != "all":
        if not isinstance(rng, dict) or len(set(rng) & {"first", "last", "after", "before"}) != 1:
            raise QaRuleError(
                f"{where}: range must be 'all' or one of {{first: N}}, {{last: N}}, "
                "{after: <condition(s)>, turns: N}, {before: <condition(s)>}"
            )
        if "first" in rng or "last" in rng:
            kind = "first" if "first" in rng else "last"
            n = rng[kind]
        else:
            kind = "after" if "after" in rng else "before"
            named = rng[kind]
            ref = tuple(str(x) for x in (named if isinstance(named, list) else [named]))
            n = rng.get("turns", 1) if kind == "after" else 0
        if not isinstance(n, int) or n < 0:
            raise QaRuleError(f"{where}: range turn count must be a whole number >= 0")
    params = {k: v for k, v in raw.items() if k not in ("operator", "role", "range")}
    if op == "keywords":
        words = _need(raw, "words", where)
        if not isinstance(words, list) or not all(isinstance(w, str) and w for w in words):
            raise QaRuleError(f"{where}: 'words' must be a list of non-empty strings")
        n_min = params.setdefault("min", 1)
        if not isinstance(n_min, int) or not 1 <= n_min <= len(words):
            raise QaRuleError(f"{where}: 'min' must be between 1 and the number of words")
    elif op == "regex":
        _check_regex(str(_need(raw, "pattern", where)), f"{where}.pattern")
        if raw.get("exclude"):
            _check_regex(str(raw["exclude"]), f"{where}.exclude")
    elif op == "similarity":
        examples = _need(raw, "examples", where)
        if not isinstance(examples, list) or not all(isinstance(e, str) for e in examples):
            raise QaRuleError(f"{where}: 'examples' must be a list of sentences")
        threshold = params.setdefault("threshold", 0.5)
        if not isinstance(threshold, int | float) or not 0 < threshold <= 1:
            raise QaRuleError(f"{where}: 'threshold' must be in (0, 1]")
    elif op in ("emotion", "intent"):
        key = "emotions" if op == "emotion" else "intents"
        values = _need(raw, key, where)
        if not isinstance(values, list):
            raise QaRuleError(f"{where}: '{key}' must be a list")
    elif op == "silence" or op == "interruption":
        seconds = params.setdefault("seconds", 10.0 if op == "silence" else 0.0)
        if not isinstance(seconds, int | float) or seconds < 0:
            raise QaRuleError(f"{where}: 'seconds' must be a number >= 0")
    elif op == "speaking_rate":
        for key in ("max_chars_per_second", "min_seconds"):
            value = params.setdefault(key, 6.0 if key.startswith("max") else 3.0)
            if not isinstance(value, int | float) or value < 0:
                raise QaRuleError(f"{where}: '{key}' must be a number >= 0")
    return Condition(name, op, role, kind, int(n), ref, params)


_BOOL_NODES = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.Name)


def _parse_expression(text: str, names: set[str], where: str) -> tuple[ast.expr, tuple[str, ...]]:
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise QaRuleError(f"{where}: expression {text!r} does not parse: {exc.msg}") from None
    positive: list[str] = []

    def walk(node: ast.AST, negated: bool) -> None:
        if not isinstance(node, _BOOL_NODES) or isinstance(node, ast.Load):
            raise QaRuleError(
                f"{where}: expression {text!r} may use only condition names, "
                "'and', 'or', 'not' and parentheses"
            )
        if isinstance(node, ast.Name):
            if node.id not in names:
                raise QaRuleError(f"{where}: expression names unknown condition {node.id!r}")
            if not negated:
                positive.append(node.id)
        elif isinstance(node, ast.UnaryOp):
            walk(node.operand, not negated)
        elif isinstance(node, ast.BoolOp):
            for value in node.values:
                walk(value, negated)
        elif isinstance(node, ast.Expression):
            walk(node.body, negated)

    walk(tree, False)
    return tree.body, tuple(dict.fromkeys(positive))


def _rule(raw: Any, index: int) -> Rule:
    where = f"rule #{index + 1}"
    if not isinstance(raw, dict):
        raise QaRuleError(f"{where}: a rule must be a mapping")
    rule_id = str(_need(raw, "id", where))
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", rule_id):
        raise QaRuleError(f"{where}: id {rule_id!r} must be lower-case letters, digits and _")
    where = f"rule {rule_id!r}"
    severity = raw.get("severity", "normal")
    if severity not in SEVERITIES:
        raise QaRuleError(f"{where}: severity {severity!r} is not one of {list(SEVERITIES)}")
    score = raw.get("score", 0)
    if not isinstance(score, int | float) or score < 0:
        raise QaRuleError(f"{where}: score must be a number >= 0 (points deducted when hit)")
    conds_raw = _need(raw, "conditions", where)
    if not isinstance(conds_raw, dict):
        raise QaRuleError(f"{where}: conditions must map names to operators")
    conditions: list[Condition] = []
    for name, body in conds_raw.items():
        if not str(name).isidentifier():
            raise QaRuleError(f"{where}: condition name {name!r} must be an identifier")
        conditions.append(_condition(str(name), body, f"{where}, condition {name!r}"))
    names = {c.name for c in conditions}
    for cond in conditions:
        for ref in cond.range_ref or ():
            if ref not in names - {cond.name}:
                raise QaRuleError(
                    f"{where}, condition {cond.name!r}: range refers to unknown condition {ref!r}"
                )
    ordered = _order(conditions, where)
    label = raw.get("name") or {}
    if isinstance(label, str):
        label = {"zh-CN": label, "en": label}
    expression = str(_need(raw, "expression", where))
    tree, positive = _parse_expression(expression, names, where)
    return Rule(
        id=rule_id,
        name={"zh-CN": str(label.get("zh-CN", rule_id)), "en": str(label.get("en", rule_id))},
        category=str(raw.get("category", "other")),
        severity=severity,
        score=float(score),
        conditions=tuple(ordered),
        expression=expression,
        tree=tree,
        positive=positive,
    )


def _order(conditions: list[Condition], where: str) -> list[Condition]:
    # Range references form a graph; evaluate referenced conditions first.
    by_name = {c.name: c for c in conditions}
    done: dict[str, Condition] = {}
    visiting: set[str] = set()

    def visit(cond: Condition) -> None:
        if cond.name in done:
            return
        if cond.name in visiting:
            raise QaRuleError(f"{where}: condition ranges refer to each other in a cycle")
        visiting.add(cond.name)
        for ref in cond.range_ref or ():
            visit(by_name[ref])
        visiting.discard(cond.name)
        done[cond.name] = cond

    for cond in conditions:
        visit(cond)
    return list(done.values())


def parse_pack(text: str, *, where: str = "rule pack") -> RulePack:
    """Parse and check a YAML rule pack; raise ``QaRuleError`` naming what is wrong."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise QaRuleError(f"{where}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise QaRuleError(f"{where}: the file must be a mapping with 'rules'")
    rules_raw = raw.get("rules")
    if not isinstance(rules_raw, list) or not rules_raw:
        raise QaRuleError(f"{where}: 'rules' must be a non-empty list")
    rules = [_rule(r, i) for i, r in enumerate(rules_raw)]
    seen: set[str] = set()
    for rule in rules:
        if rule.id in seen:
            raise QaRuleError(f"{where}: rule id {rule.id!r} appears twice")
        seen.add(rule.id)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
    pass_mark = raw.get("pass_mark", 80)
    if not isinstance(pass_mark, int | float):
        raise QaRuleError(f"{where}: pass_mark must be a number")
    return RulePack(
        name=str(raw.get("name", "rules")),
        version=f"{raw.get('version', '0')}+{digest}",
        pass_mark=float(pass_mark),
        sources=tuple(str(s) for s in raw.get("sources") or ()),
        rules=tuple(rules),
    )


@cache
def _load_cached(path: str, mtime_ns: int) -> RulePack:
    return parse_pack(Path(path).read_text(encoding="utf-8"), where=path)


def load_pack(path: Path | None = None) -> RulePack:
    """Load a rule pack file (the shipped China Mobile hotline pack by default)."""
    chosen = Path(path) if path is not None else DEFAULT_PACK
    if not chosen.is_file():
        raise QaRuleError(f"rule pack {chosen} does not exist")
    return _load_cached(str(chosen.resolve()), chosen.stat().st_mtime_ns)


# ---------------------------------------------------------------------------
# Turns


@dataclass
class Turns:
    """Every turn of a batch of conversations, as flat arrays in conversation order."""

    n_conv: int
    conv: np.ndarray  # conversation index of each turn
    k: np.ndarray  # turn index within its conversation
    role: np.ndarray  # 0 agent, 1 customer, -1 unknown
    start: np.ndarray  # seconds (NaN when the line has no timing)
    end: np.ndarray
    text: pa.Array  # turn text without the timing and role prefix
    ordinal: np.ndarray = field(default_factory=lambda: np.empty(0))  # index among the role
    ordinal_rev: np.ndarray = field(default_factory=lambda: np.empty(0))

    def role_ordinals(self) -> None:
        """Fill ``ordinal``/``ordinal_rev``: position among the same role's turns."""
        n = len(self.conv)
        self.ordinal = np.zeros(n, dtype=np.int64)
        self.ordinal_rev = np.zeros(n, dtype=np.int64)
        if n == 0:
            return
        # Stable sort by (conversation, role): consecutive runs are one role's turns.
        key = self.conv.astype(np.int64) * 4 + (self.role + 1)
        order = np.argsort(key, kind="stable")
        skey = key[order]
        starts = np.r_[0, np.flatnonzero(np.diff(skey)) + 1]
        run_len = np.diff(np.r_[starts, n])
        first = np.repeat(starts, run_len)
        pos = np.arange(n) - first
        self.ordinal[order] = pos
        self.ordinal_rev[order] = np.repeat(run_len, run_len) - 1 - pos


def _to_float(arr: pa.Array) -> np.ndarray:
    out: np.ndarray = pc.cast(
        pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr), pa.float64()
    ).to_numpy(zero_copy_only=False)
    return out.astype(np.float64)


def parse_turns(texts: pa.Array | pa.ChunkedArray) -> Turns:
    """Split conversation texts into turns: ``[start-end] role：text`` per line.

    Timing is optional (NaN when absent); roles ``坐席``/``客服``/``Agent`` are the agent,
    ``客户``/``用户``/``Customer`` the customer; a line without a role keeps role -1.
    """
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    texts = pc.fill_null(texts.cast(pa.string()), "")
    lines_list = pc.split_pattern_regex(
        pc.replace_substring_regex(texts, _JOINED, "\\1\n\\2"), r"\r?\n"
    )
    parents = pc.list_parent_indices(lines_list).to_numpy(zero_copy_only=False)
    lines = pc.list_flatten(lines_list)
    parts = pc.extract_regex(lines, _LINE)
    text = pc.utf8_trim_whitespace(parts.field("t"))
    keep = pc.greater(pc.utf8_length(text), 0).to_numpy(zero_copy_only=False)
    keep_idx = np.flatnonzero(keep)
    conv = parents[keep_idx].astype(np.int64)
    role_raw = pc.utf8_lower(parts.field("r")).take(pa.array(keep_idx))
    role = np.full(len(keep_idx), -1, dtype=np.int64)
    role[pc.is_in(role_raw, pa.array(_AGENT_WORDS)).to_numpy(zero_copy_only=False)] = 0
    role[pc.is_in(role_raw, pa.array(_CUSTOMER_WORDS)).to_numpy(zero_copy_only=False)] = 1
    start = _to_float(parts.field("s").take(pa.array(keep_idx)))
    end = _to_float(parts.field("e").take(pa.array(keep_idx)))
    # Turn index within the conversation: position minus the conversation's first turn.
    n = len(conv)
    if n:
        firsts = np.r_[0, np.flatnonzero(np.diff(conv)) + 1]
        counts = np.diff(np.r_[firsts, n])
        k = np.arange(n) - np.repeat(firsts, counts)
    else:
        k = np.zeros(0, dtype=np.int64)
    turns = Turns(
        n_conv=len(texts),
        conv=conv,
        k=k,
        role=role,
        start=start,
        end=end,
        text=text.take(pa.array(keep_idx)),
    )
    turns.role_ordinals()
    return turns


def turn_list(text: str) -> list[dict[str, Any]]:
    """Return the turns of one conversation as dicts (for display)."""
    turns = parse_turns(pa.array([text], pa.string()))
    names = {0: "agent", 1: "customer", -1: "unknown"}
    return [
        {
            "index": int(turns.k[i]),
            "role": names[int(turns.role[i])],
            "start": None if np.isnan(turns.start[i]) else float(turns.start[i]),
            "end": None if np.isnan(turns.end[i]) else float(turns.end[i]),
            "text": turns.text[i].as_py(),
        }
        for i in range(len(turns.conv))
    ]


# ---------------------------------------------------------------------------
# Engine


def _alternation(words: Sequence[str]) -> str:
    ordered = sorted({w.lower() for w in words}, key=len, reverse=True)
    return "|".join(re.escape(w) for w in ordered)


class _Similarity:
    """Char bi-/tri-gram TF-IDF cosine of each turn to the nearest example sentence.

    The vocabulary and IDF come from the examples; n-grams of a turn that no example has
    carry the largest IDF and count in the turn's norm only (each occurrence taken as a
    distinct n-gram), so a long turn sharing one n-gram with an example scores low.
    N-grams are computed with NumPy over code points, without a Python loop per turn.

    Notes
    -----
    Salton & Buckley 1988, term-weighting approaches in automatic text retrieval;
    character n-grams avoid word segmentation of Chinese.
    """

    def __init__(self, examples: Sequence[str]) -> None:
        arr = pc.utf8_lower(pa.array(list(examples), pa.string()))
        ids, owner = _char_ngrams(arr)
        self.vocabulary_ = np.unique(ids)
        n_docs = len(examples)
        col = np.searchsorted(self.vocabulary_, ids)
        pairs = np.unique(owner * len(self.vocabulary_) + col)
        df = np.bincount(pairs % len(self.vocabulary_), minlength=len(self.vocabulary_))
        self.idf_ = np.log((1 + n_docs) / (1 + df)) + 1.0
        self.idf_unseen_ = float(np.log(1 + n_docs) + 1.0)
        matrix, norm2 = self._weights(ids, owner, n_docs)
        self.examples_ = matrix.multiply(1.0 / np.sqrt(np.maximum(norm2, 1e-12))[:, None]).tocsr()

    def _weights(self, ids: np.ndarray, owner: np.ndarray, n_rows: int) -> tuple[Any, np.ndarray]:
        from scipy.sparse import csr_matrix

        size = len(self.vocabulary_)
        pos = np.minimum(np.searchsorted(self.vocabulary_, ids), size - 1)
        known = self.vocabulary_[pos] == ids
        keys, counts = np.unique(owner[known] * size + pos[known], return_counts=True)
        rows, cols = keys // size, keys % size
        weights = (1.0 + np.log(counts)) * self.idf_[cols]
        unseen = np.bincount(owner[~known], minlength=n_rows)
        norm2 = np.bincount(rows, weights * weights, minlength=n_rows) + unseen * (
            self.idf_unseen_**2
        )
        return csr_matrix((weights, (rows, cols)), shape=(n_rows, size)), norm2

    def best(self, texts: pa.Array) -> np.ndarray:
        """Return each text's highest cosine similarity to an example."""
        if len(texts) == 0:
            return np.zeros(0)
        ids, owner = _char_ngrams(pc.utf8_lower(texts))
        matrix, norm2 = self._weights(ids, owner, len(texts))
        dots = (matrix @ self.examples_.T).toarray()
        with np.errstate(divide="ignore", invalid="ignore"):
            sims = dots / np.sqrt(norm2)[:, None]
        out: np.ndarray = np.nan_to_num(sims.max(axis=1))
        return out


_PLANE = 0x110000


def _char_ngrams(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Return the ids of every character bigram and trigram and the index of its text."""
    joined = "\x00".join(texts.to_pylist()) + "\x00"
    cp = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    lengths = pc.utf8_length(texts).to_numpy(zero_copy_only=False).astype(np.int64)
    owner = np.repeat(np.arange(len(texts), dtype=np.int64), lengths + 1)
    a, b = cp[:-1], cp[1:]
    ok2 = (a != 0) & (b != 0)
    ok3 = ok2[:-1] & (cp[2:] != 0)
    # Trigram ids start above every bigram id, so both share one id space.
    bigrams = a * _PLANE + b
    trigrams = (a[:-1] + 1) * _PLANE * _PLANE + b[:-1] * _PLANE + cp[2:]
    ids = np.concatenate([bigrams[ok2], trigrams[ok3]])
    return ids, np.concatenate([owner[:-1][ok2], owner[:-2][ok3]])


class Inspector:
    """Compiled rule pack: evaluate every rule over a batch of conversations at once."""

    def __init__(self, pack: RulePack) -> None:
        self.pack = pack
        self._similarity: dict[tuple[str, str], _Similarity] = {}
        self._emotion: Any = None
        self._plans: dict[str, tuple[tuple[Condition, ...], str | None]] = {
            rule.id: _plan(rule) for rule in pack.rules
        }
        self._patterns: dict[tuple[str, str], tuple[str, str | None]] = {}
        for rule in pack.rules:
            for cond in rule.conditions:
                key = (rule.id, cond.name)
                if cond.operator == "similarity":
                    self._similarity[key] = _Similarity(cond.params["examples"])
                elif cond.operator == "keywords":
                    self._patterns[key] = (_alternation(cond.params["words"]), None)
                elif cond.operator == "regex":
                    self._patterns[key] = (cond.params["pattern"], cond.params.get("exclude"))
                elif cond.operator == "emotion" and self._emotion is None:
                    from voxloop.understand.lexicon import LexiconEmotion

                    self._emotion = LexiconEmotion().fit()

    # One operator over the turns of one role: a boolean per selected turn.
    def _match(
        self, rule: Rule, cond: Condition, turns: Turns, idx: np.ndarray, texts: pa.Array
    ) -> np.ndarray:
        op, key = cond.operator, (rule.id, cond.name)
        if op == "keywords":
            # Keyword texts arrive lower-cased; case-sensitive RE2 is the faster one.
            return _regex(texts, self._patterns[key][0])
        if op == "regex":
            pattern, exclude = self._patterns[key]
            hit = _regex(texts, pattern)
            if exclude:
                hit &= ~_regex(texts, exclude)
            return hit
        if op == "similarity":
            best = self._similarity[key].best(texts)
            return np.asarray(best >= float(cond.params["threshold"]), dtype=bool)
        if op == "emotion":
            labels = self._emotion.predict(texts) if len(texts) else np.zeros(0, dtype=str)
            return np.isin(labels, [str(e) for e in cond.params["emotions"]])
        prev = idx - 1
        has_prev = turns.k[idx] > 0
        prev_safe = np.where(has_prev, prev, idx)
        start, end = turns.start[idx], turns.end[idx]
        if op == "silence":
            gap = start - turns.end[prev_safe]
            silent: np.ndarray = has_prev & (gap > float(cond.params["seconds"]))
            return silent
        if op == "interruption":
            other = turns.role[prev_safe] != turns.role[idx]
            cut = start < turns.end[prev_safe] - float(cond.params["seconds"])
            cut_in: np.ndarray = has_prev & other & cut
            return cut_in
        if op == "speaking_rate":
            duration = end - start
            # Spoken units: one per Chinese character, one per latin word or number.
            chars = pc.count_substring_regex(texts, _UNIT).to_numpy(zero_copy_only=False)
            with np.errstate(divide="ignore", invalid="ignore"):
                rate = chars / duration
            fast: np.ndarray = (duration >= float(cond.params["min_seconds"])) & (
                rate > float(cond.params["max_chars_per_second"])
            )
            return fast
        raise QaRuleError(f"rule {rule.id!r}: operator {op!r} has no turn-level evaluation")

    def inspect(
        self, turns: Turns, *, intents: Sequence[str | None] | None = None
    ) -> dict[str, tuple[np.ndarray, list[list[int]]]]:
        """Return ``{rule_id: (hit per conversation, evidence turn indices per hit)}``."""
        n_conv = turns.n_conv
        by_role: dict[int, tuple[np.ndarray, pa.Array]] = {}
        for role in (0, 1, -1):
            idx = np.arange(len(turns.conv)) if role == -1 else np.flatnonzero(turns.role == role)
            by_role[role] = (idx, turns.text.take(pa.array(idx)) if role != -1 else turns.text)
        lowered: dict[int, pa.Array] = {}
        cache: dict[tuple[int, str, str], np.ndarray] = {}
        intent_arr = np.array(
            [i or "" for i in intents] if intents is not None else [""] * n_conv, dtype=object
        )
        out: dict[str, tuple[np.ndarray, list[list[int]]]] = {}
        big = np.iinfo(np.int64).max // 4
        for rule in self.pack.rules:
            per_conv: dict[str, np.ndarray] = {}
            per_turn: dict[str, np.ndarray] = {}  # matched global turn indices
            first_turn: dict[str, np.ndarray] = {}
            order, lazy = self._plans[rule.id]
            for cond in order:
                if cond.operator in CONVERSATION_OPERATORS:
                    wanted = [str(v) for v in cond.params["intents"]]
                    per_conv[cond.name] = np.isin(intent_arr, wanted)
                    per_turn[cond.name] = np.zeros(0, dtype=np.int64)
                    first_turn[cond.name] = np.full(n_conv, big, dtype=np.int64)
                    continue
                role = ROLES[cond.role]
                idx, texts = by_role[role]
                if cond.operator == "keywords":
                    texts = lowered.setdefault(role, pc.utf8_lower(texts))
                if cond.name == lazy:
                    # Only conversations whose outcome still depends on this condition.
                    ones, zeros = np.ones(n_conv, dtype=bool), np.zeros(n_conv, dtype=bool)
                    need = _evaluate(rule.tree, {**per_conv, cond.name: ones}) != _evaluate(
                        rule.tree, {**per_conv, cond.name: zeros}
                    )
                    keep = need[turns.conv[idx]]
                    hit = np.zeros(len(idx), dtype=bool)
                    hit[keep] = self._match(rule, cond, turns, idx[keep], texts.filter(keep))
                else:
                    sig = (role, cond.operator, repr(sorted(cond.params.items())))
                    if sig not in cache:
                        cache[sig] = self._match(rule, cond, turns, idx, texts)
                    hit = cache[sig]
                mask = _range_mask(cond, turns, idx, first_turn, big)
                if cond.operator == "keywords" and int(cond.params["min"]) > 1:
                    conv_hit = _any_n(cond, turns, idx, texts, mask, n_conv)
                    sel = idx[mask & hit & conv_hit[turns.conv[idx]]]
                else:
                    sel = idx[mask & hit]
                    conv_hit = np.zeros(n_conv, dtype=bool)
                    conv_hit[turns.conv[sel]] = True
                per_conv[cond.name] = conv_hit
                per_turn[cond.name] = sel
                first = np.full(n_conv, big, dtype=np.int64)
                # Turns are in order, so the minimum index per conversation is the first.
                np.minimum.at(first, turns.conv[sel], turns.k[sel])
                first_turn[cond.name] = first
            result = _evaluate(rule.tree, per_conv)
            evidence: list[list[int]] = [[] for _ in range(int(result.sum()))]
            if rule.positive and result.any():
                sel = np.unique(np.concatenate([per_turn[name] for name in rule.positive]))
                sel = sel[result[turns.conv[sel]]]
                slot = np.cumsum(result) - 1
                for conv_i, k in zip(turns.conv[sel].tolist(), turns.k[sel].tolist(), strict=True):
                    evidence[slot[conv_i]].append(int(k))
            out[rule.id] = (result, evidence)
        return out


#: Operators worth skipping where the rule's outcome no longer depends on them.
_EXPENSIVE = ("similarity", "emotion")


def _plan(rule: Rule) -> tuple[tuple[Condition, ...], str | None]:
    """Return the evaluation order and the one expensive condition to evaluate lazily.

    A similarity or emotion condition that no range refers to goes last; it is then only
    computed on conversations where the expression's value still depends on it.
    """
    referenced = {ref for c in rule.conditions for ref in c.range_ref or ()}
    lazy = [c for c in rule.conditions if c.operator in _EXPENSIVE and c.name not in referenced]
    if len(lazy) != 1:
        return rule.conditions, None
    rest = tuple(c for c in rule.conditions if c is not lazy[0])
    return (*rest, lazy[0]), lazy[0].name


def _regex(texts: pa.Array, pattern: str, *, ignore_case: bool = False) -> np.ndarray:
    if len(texts) == 0:
        return np.zeros(0, dtype=bool)
    out: np.ndarray = pc.match_substring_regex(texts, pattern, ignore_case=ignore_case).to_numpy(
        zero_copy_only=False
    )
    return out.astype(bool)


def _range_mask(
    cond: Condition,
    turns: Turns,
    idx: np.ndarray,
    first_turn: dict[str, np.ndarray],
    big: int,
) -> np.ndarray:
    if cond.range_kind == "all":
        return np.ones(len(idx), dtype=bool)
    if cond.range_kind in ("first", "last"):
        ordinals = turns.ordinal if cond.range_kind == "first" else turns.ordinal_rev
        if cond.role == "any":
            ordinals = turns.k if cond.range_kind == "first" else _reverse_k(turns)
        out: np.ndarray = ordinals[idx] < cond.range_n
        return out
    assert cond.range_ref is not None
    # The first turn where any of the referenced conditions matched.
    anchor = np.min(np.vstack([first_turn[name] for name in cond.range_ref]), axis=0)
    ref = anchor[turns.conv[idx]]
    k = turns.k[idx]
    if cond.range_kind == "after":
        within: np.ndarray = (ref < big) & (k > ref) & (k <= ref + cond.range_n)
        return within
    # before: the turns before the reference matched (all turns when it never did)
    after_ref: np.ndarray = k < ref
    return after_ref


def _reverse_k(turns: Turns) -> np.ndarray:
    n = len(turns.conv)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    counts = np.bincount(turns.conv, minlength=turns.n_conv)
    out: np.ndarray = counts[turns.conv] - 1 - turns.k
    return out


def _any_n(
    cond: Condition,
    turns: Turns,
    idx: np.ndarray,
    texts: pa.Array,
    mask: np.ndarray,
    n_conv: int,
) -> np.ndarray:
    # Any-N: count distinct words present anywhere in the range, per conversation.
    present = np.zeros(n_conv, dtype=np.int64)
    conv = turns.conv[idx][mask]
    masked = texts.filter(pa.array(mask))
    for word in dict.fromkeys(w.lower() for w in cond.params["words"]):
        found = pc.match_substring(masked, word).to_numpy(zero_copy_only=False).astype(bool)
        seen = np.zeros(n_conv, dtype=bool)
        seen[conv[found]] = True
        present += seen
    out: np.ndarray = present >= int(cond.params["min"])
    return out


def _evaluate(node: ast.expr, values: dict[str, np.ndarray]) -> np.ndarray:
    if isinstance(node, ast.Name):
        return values[node.id]
    if isinstance(node, ast.UnaryOp):
        return ~_evaluate(node.operand, values)
    assert isinstance(node, ast.BoolOp)
    parts = [_evaluate(v, values) for v in node.values]
    out = parts[0].copy()
    for part in parts[1:]:
        out = (out & part) if isinstance(node.op, ast.And) else (out | part)
    return out


# ---------------------------------------------------------------------------
# Batch inspection: conversations in, conversation scores and hits out (Arrow).

CONVERSATION_SCHEMA = pa.schema(
    [
        pa.field("voice_id", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("pack_version", pa.string(), nullable=False),
        pa.field("inspected_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("kind", pa.string()),
        pa.field("channel", pa.string()),
        pa.field("province", pa.string()),
        pa.field("city", pa.string()),
        pa.field("district", pa.string()),
        pa.field("agent_id", pa.string()),
        pa.field("team", pa.string()),
        pa.field("received_at", pa.timestamp("us", tz="UTC")),
        pa.field("n_turns", pa.int32()),
        pa.field("n_agent_turns", pa.int32()),
        pa.field("timed", pa.bool_()),
        pa.field("inspected", pa.bool_(), nullable=False),
        pa.field("score", pa.float64()),
        pa.field("passed", pa.bool_()),
        pa.field("n_hits", pa.int32()),
        pa.field("n_critical", pa.int32()),
        pa.field("rules_hit", pa.list_(pa.string())),
    ]
)
HIT_SCHEMA = pa.schema(
    [
        pa.field("hit_id", pa.string(), nullable=False),
        pa.field("voice_id", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("rule_id", pa.string(), nullable=False),
        pa.field("severity", pa.string()),
        pa.field("score", pa.float64()),
        pa.field("turns", pa.list_(pa.int32())),
    ]
)
_PASSTHROUGH = (
    "kind",
    "channel",
    "province",
    "city",
    "district",
    "agent_id",
    "team",
    "received_at",
)


def hit_id(voice_id: str, rule_id: str) -> str:
    """Return the stable id of a rule's hit on a conversation (labels refer to it)."""
    return hashlib.sha1(f"{voice_id}\x00{rule_id}".encode()).hexdigest()[:16]


def inspect_table(
    table: pa.Table | pa.RecordBatch,
    *,
    inspector: Inspector,
    run_id: str,
    inspected_at: datetime,
) -> tuple[pa.Table, pa.Table]:
    """Inspect conversations (columns ``id``, ``text``; optional region, agent, intent).

    Returns the per-conversation table (``CONVERSATION_SCHEMA``: score = 100 minus the
    deductions of the rules hit, floored at 0; passed = no critical hit and score at
    least the pack's pass mark) and the hits (``HIT_SCHEMA``). Conversations without an
    agent turn are recorded as not inspected. Timing rules apply to timed conversations.
    """
    pack = inspector.pack
    n = table.num_rows
    ids = table.column("id").to_pylist()
    turns = parse_turns(table.column("text"))
    intents = table.column("intent").to_pylist() if "intent" in table.column_names else None
    results = inspector.inspect(turns, intents=intents)
    n_turns = np.bincount(turns.conv, minlength=n)
    n_agent = np.bincount(turns.conv[turns.role == 0], minlength=n)
    timed_turns = np.bincount(turns.conv[~np.isnan(turns.start)], minlength=n)
    timed = (n_turns > 0) & (timed_turns == n_turns)
    inspected = n_agent > 0
    deduction = np.zeros(n)
    n_hits = np.zeros(n, dtype=np.int64)
    n_critical = np.zeros(n, dtype=np.int64)
    rules_hit: list[list[str]] = [[] for _ in range(n)]
    hits: dict[str, list[Any]] = {name: [] for name in HIT_SCHEMA.names}
    for rule in pack.rules:
        hit, evidence = results[rule.id]
        valid = inspected & (timed if rule.timed else True)
        slots = np.flatnonzero(hit)
        for slot, conv_i in enumerate(slots.tolist()):
            if not valid[conv_i]:
                continue
            deduction[conv_i] += rule.score
            n_hits[conv_i] += 1
            n_critical[conv_i] += rule.severity == "critical"
            rules_hit[conv_i].append(rule.id)
            voice = str(ids[conv_i])
            hits["hit_id"].append(hit_id(voice, rule.id))
            hits["voice_id"].append(voice)
            hits["run_id"].append(run_id)
            hits["rule_id"].append(rule.id)
            hits["severity"].append(rule.severity)
            hits["score"].append(rule.score)
            hits["turns"].append(evidence[slot])
    score = np.maximum(0.0, 100.0 - deduction)
    passed = (n_critical == 0) & (score >= pack.pass_mark)
    cols: dict[str, Any] = {
        "voice_id": [str(v) for v in ids],
        "run_id": [run_id] * n,
        "pack_version": [pack.version] * n,
        "inspected_at": [inspected_at] * n,
    }
    for name in _PASSTHROUGH:
        cols[name] = table.column(name) if name in table.column_names else [None] * n
    cols.update(
        n_turns=n_turns.astype(np.int32),
        n_agent_turns=n_agent.astype(np.int32),
        timed=timed,
        inspected=inspected,
        score=pa.array(score, mask=~inspected),
        passed=pa.array(passed, mask=~inspected),
        n_hits=n_hits.astype(np.int32),
        n_critical=n_critical.astype(np.int32),
        rules_hit=rules_hit,
    )
    arrays = []
    for fld in CONVERSATION_SCHEMA:
        value = cols[fld.name]
        if isinstance(value, pa.ChunkedArray):
            value = value.combine_chunks()
        arrays.append(
            value.cast(fld.type) if isinstance(value, pa.Array) else pa.array(value, fld.type)
        )
    conversations = pa.Table.from_arrays(arrays, schema=CONVERSATION_SCHEMA)
    return conversations, pa.Table.from_pydict(hits, schema=HIT_SCHEMA)
