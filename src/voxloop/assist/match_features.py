"""Pair features for question matching: lexical overlap, BM25, mismatch cues, token diffs.

Two families, both computed on a normalised form of each question (synonyms and the
product names' spelling variants folded, so that 蚂蚁花呗/花呗 or 怎么/如何 do not count
as differences):

- dense features (``DenseFeaturizer``): character 1–3-gram and word Jaccard and
  containment both ways, IDF-weighted overlap, TF-IDF cosines, BM25 both directions
  (Robertson & Zaragoza 2009), longest common substring/subsequence ratios, lengths,
  number/negation/question-word/product mismatch;
- sparse token-difference features (``diff_tokens``): the tokens present in one question
  and not the other, and the pairs of such tokens across the two questions, hashed into a
  sparse vector for a linear model. On AFQMC most negative pairs share their topic and
  differ by a word or two (花呗 vs 借呗, 还款 vs 提额), which is what these tokens expose.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Self

import numpy as np
from scipy import sparse

_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_NEGATION = ("不", "没", "未", "无", "别", "非", "否")

#: Spelling variants and synonyms folded before any feature (longest first, applied in
#: order). The product-name variants are frequent typos of AFQMC users (花被, 借贝).
_SYNONYMS: tuple[tuple[str, str], ...] = (
    ("蚂蚁花呗", "花呗"),
    ("蚂蚁借呗", "借呗"),
    ("花被", "花呗"),
    ("花贝", "花呗"),
    ("花唄", "花呗"),
    ("借贝", "借呗"),
    ("借被", "借呗"),
    ("可不可以", "能"),
    ("能不能", "能"),
    ("可以", "能"),
    ("能否", "能"),
    ("为什么", "为何"),
    ("为啥", "为何"),
    ("怎么样", "怎么"),
    ("如何", "怎么"),
    ("怎样", "怎么"),
    ("咋", "怎么"),
    ("了", ""),
    ("呢", ""),
    ("啊", ""),
    ("吧", ""),
    ("？", ""),
    ("?", ""),
    ("，", ""),
    ("。", ""),
    (" ", ""),
)

#: Question-word categories: a pair that asks "why" against "how" rarely matches.
_QUESTION_WORDS: dict[str, tuple[str, ...]] = {
    "why": ("为何", "怎么回事", "什么原因", "原因"),
    "how": ("怎么",),
    "what": ("什么", "啥"),
    "howmuch": ("多少", "几"),
    "when": ("多久", "什么时候", "何时", "多长时间", "几天"),
    "can": ("能", "会不会", "行不行"),
    "where": ("哪里", "哪儿", "在哪"),
    "yesno": ("吗", "么"),
}

#: Products and services whose confusion decides many AFQMC pairs.
_PRODUCTS = ("花呗", "借呗", "余额宝", "支付宝", "信用卡", "银行卡", "网商贷", "芝麻信用")


def normalise(text: str) -> str:
    """Return ``text`` with spelling variants, synonyms and filler particles folded."""
    out = text.strip().lower()
    for src, dst in _SYNONYMS:
        out = out.replace(src, dst)
    return out


@functools.cache
def _tokenizer() -> Any:
    """Return an rjieba tokenizer that knows the product names (built once, on first use)."""
    import rjieba

    # jieba's dictionary splits 花呗/借呗 into two characters, which would make the
    # product confusion invisible to word features; a private instance keeps the
    # shared default tokenizer of the other domains unchanged.
    tok = rjieba.Jieba()
    for word in _PRODUCTS:
        tok.add_word(word, 100_000, None)
    return tok


def words(text: str) -> list[str]:
    """Return the rjieba words of ``text`` (whitespace dropped, product names kept whole)."""
    return [w for w in _tokenizer().cut(text) if w.strip()]


def char_ngrams(text: str, n: int) -> set[str]:
    """Return the set of character ``n``-grams of ``text``."""
    return {text[i : i + n] for i in range(len(text) - n + 1)}


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def _contain(a: set[str], b: set[str]) -> float:
    """Share of ``a`` found in ``b``."""
    return len(a & b) / len(a) if a else 1.0


def _lcsubstring(a: str, b: str) -> int:
    best = 0
    prev = [0] * (len(b) + 1)
    for ca in a:
        cur = [0] * (len(b) + 1)
        for j, cb in enumerate(b, start=1):
            if ca == cb:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best


def _lcsubsequence(a: str, b: str) -> int:
    prev = [0] * (len(b) + 1)
    for ca in a:
        cur = [0] * (len(b) + 1)
        for j, cb in enumerate(b, start=1):
            cur[j] = prev[j - 1] + 1 if ca == cb else max(prev[j], cur[j - 1])
        prev = cur
    return prev[-1]


def _edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, start=1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
        prev = cur
    return prev[-1]


class _Question:
    """One question's normalised text and token sets, computed once per distinct text."""

    __slots__ = ("chars", "grams2", "grams3", "neg", "norm", "nums", "prods", "qcats", "wlist")

    def __init__(self, text: str) -> None:
        self.norm = normalise(text)
        self.wlist = words(self.norm)
        self.chars = set(self.norm)
        self.grams2 = char_ngrams(self.norm, 2)
        self.grams3 = char_ngrams(self.norm, 3)
        self.nums = frozenset(_NUMBER.findall(self.norm))
        self.neg = sum(self.norm.count(n) for n in _NEGATION)
        self.qcats = frozenset(
            cat for cat, cues in _QUESTION_WORDS.items() if any(c in self.norm for c in cues)
        )
        self.prods = frozenset(p for p in _PRODUCTS if p in self.norm)


def _parse(texts: Iterable[str]) -> dict[str, _Question]:
    return {t: _Question(t) for t in set(texts)}


class DenseFeaturizer:
    """Dense pair features; ``fit`` learns document frequencies from the questions.

    Parameters
    ----------
    k1, b : BM25 parameters (Robertson & Zaragoza 2009, "The Probabilistic Relevance
        Framework: BM25 and Beyond").
    """

    def __init__(self, *, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b

    def fit(self, texts: Sequence[str]) -> Self:
        """Learn word and character-bigram document frequencies of ``texts``."""
        parsed = _parse(texts)
        wdf: Counter[str] = Counter()
        cdf: Counter[str] = Counter()
        total_len = 0
        for q in parsed.values():
            wdf.update(set(q.wlist))
            cdf.update(q.chars | q.grams2)
            total_len += len(q.wlist)
        n = max(len(parsed), 1)
        self.n_docs_ = n
        self.word_idf_ = {w: math.log(1 + n / c) for w, c in wdf.items()}
        self.char_idf_ = {w: math.log(1 + n / c) for w, c in cdf.items()}
        self.default_idf_ = math.log(1 + n)
        # BM25's IDF (with the +1 that keeps it positive for very common words).
        self.bm25_idf_ = {w: math.log(1 + (n - c + 0.5) / (c + 0.5)) for w, c in wdf.items()}
        self.avg_len_ = total_len / n
        return self

    @property
    def names(self) -> list[str]:
        """Return the feature names, in column order."""
        base = [
            "word_jaccard",
            "word_contain_min",
            "word_contain_max",
            "char1_jaccard",
            "char2_jaccard",
            "char3_jaccard",
            "char2_contain_min",
            "char2_contain_max",
            "char3_contain_min",
            "char3_contain_max",
            "idf_word_overlap",
            "idf_char_overlap",
            "idf_word_diff_max",
            "tfidf_word_cos",
            "tfidf_char_cos",
            "bm25_min",
            "bm25_max",
            "bm25_mean",
            "lcsubstr_ratio",
            "lcsubseq_ratio",
            "edit_ratio",
            "len_min",
            "len_max",
            "len_diff_ratio",
            "words_min",
            "words_max",
            "num_mismatch",
            "num_any",
            "neg_parity",
            "neg_diff",
            "qword_jaccard",
            "qword_mismatch",
            "prod_mismatch",
            "prod_any",
            "same_text",
        ]
        return base + [f"q_{c}_xor" for c in _QUESTION_WORDS] + [f"p_{p}_xor" for p in _PRODUCTS]

    def _idf(self, table: dict[str, float], tokens: Iterable[str]) -> float:
        return sum(table.get(t, self.default_idf_) for t in tokens)

    def _tfidf_cos(self, table: dict[str, float], a: Counter[str], b: Counter[str]) -> float:
        def weight(t: str, c: int) -> float:
            return (1 + math.log(c)) * table.get(t, self.default_idf_)

        wa = {t: weight(t, c) for t, c in a.items()}
        wb = {t: weight(t, c) for t, c in b.items()}
        dot = sum(v * wb[t] for t, v in wa.items() if t in wb)
        na = math.sqrt(sum(v * v for v in wa.values()))
        nb = math.sqrt(sum(v * v for v in wb.values()))
        return dot / (na * nb) if na and nb else 0.0

    def _bm25(self, query: list[str], doc: list[str]) -> float:
        """BM25 of ``doc`` for ``query``, divided by the query's score against itself."""

        def score(q: list[str], d: list[str]) -> float:
            tf = Counter(d)
            norm = self.k1 * (1 - self.b + self.b * len(d) / max(self.avg_len_, 1e-9))
            return sum(
                self.bm25_idf_.get(t, self.default_idf_) * tf[t] * (self.k1 + 1) / (tf[t] + norm)
                for t in set(q)
                if t in tf
            )

        self_score = score(query, query)
        return score(query, doc) / self_score if self_score else 0.0

    def _pair(self, qa: _Question, qb: _Question) -> list[float]:
        a, b = qa.norm, qb.norm
        sa, sb = set(qa.wlist), set(qb.wlist)
        la, lb = len(a), len(b)
        ca = _contain(qa.grams2, qb.grams2), _contain(qb.grams2, qa.grams2)
        c3 = _contain(qa.grams3, qb.grams3), _contain(qb.grams3, qa.grams3)
        cw = _contain(sa, sb), _contain(sb, sa)
        w_all = self._idf(self.word_idf_, sa | sb) or 1.0
        c_all = self._idf(self.char_idf_, qa.chars | qb.chars | qa.grams2 | qb.grams2) or 1.0
        diff_idf = [self.word_idf_.get(w, self.default_idf_) for w in sa ^ sb]
        bab, bba = self._bm25(qa.wlist, qb.wlist), self._bm25(qb.wlist, qa.wlist)
        longest = max(la, lb, 1)
        row = [
            _jaccard(sa, sb),
            min(cw),
            max(cw),
            _jaccard(qa.chars, qb.chars),
            _jaccard(qa.grams2, qb.grams2),
            _jaccard(qa.grams3, qb.grams3),
            min(ca),
            max(ca),
            min(c3),
            max(c3),
            self._idf(self.word_idf_, sa & sb) / w_all,
            self._idf(self.char_idf_, (qa.chars & qb.chars) | (qa.grams2 & qb.grams2)) / c_all,
            max(diff_idf, default=0.0),
            self._tfidf_cos(self.word_idf_, Counter(qa.wlist), Counter(qb.wlist)),
            self._tfidf_cos(
                self.char_idf_, Counter(list(a) + _grams(a)), Counter(list(b) + _grams(b))
            ),
            min(bab, bba),
            max(bab, bba),
            (bab + bba) / 2,
            _lcsubstring(a, b) / longest,
            _lcsubsequence(a, b) / longest,
            1 - _edit_distance(a, b) / longest,
            float(min(la, lb)),
            float(max(la, lb)),
            abs(la - lb) / longest,
            float(min(len(qa.wlist), len(qb.wlist))),
            float(max(len(qa.wlist), len(qb.wlist))),
            float(qa.nums != qb.nums),
            float(bool(qa.nums) or bool(qb.nums)),
            float((qa.neg % 2) != (qb.neg % 2)),
            float(abs(qa.neg - qb.neg)),
            _jaccard(set(qa.qcats), set(qb.qcats)),
            float(qa.qcats != qb.qcats),
            float(qa.prods != qb.prods),
            float(bool(qa.prods) or bool(qb.prods)),
            float(a == b),
        ]
        row += [float((c in qa.qcats) != (c in qb.qcats)) for c in _QUESTION_WORDS]
        row += [float((p in qa.prods) != (p in qb.prods)) for p in _PRODUCTS]
        return row

    def transform(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Return one row of dense features per pair (columns as ``names``)."""
        parsed = _parse(t for pair in pairs for t in pair)
        return np.asarray(
            [self._pair(parsed[a], parsed[b]) for a, b in pairs], dtype=np.float32
        ).reshape(len(pairs), len(self.names))


def _grams(text: str) -> list[str]:
    return [text[i : i + 2] for i in range(len(text) - 1)]


def diff_tokens(a: str, b: str) -> list[str]:
    """Return the token-difference features of a pair (symmetric in ``a`` and ``b``).

    Words and characters present in only one question (``d:``), the unordered pairs of
    such words across the two questions (``x:``: 花呗↔借呗 becomes one feature), the
    shared words (``s:``), and a marker when nothing differs. Exchanging ``a`` and ``b``
    gives the same tokens, so the linear model's weights are order-free.
    """
    qa, qb = _Question(a), _Question(b)
    return _diff_from(qa, qb)


def _diff_from(qa: _Question, qb: _Question) -> list[str]:
    sa, sb = set(qa.wlist), set(qb.wlist)
    only_a, only_b = sa - sb, sb - sa
    out = [f"d:{w}" for w in only_a | only_b]
    out += [f"s:{w}" for w in sa & sb]
    out += [f"c:{c}" for c in qa.chars ^ qb.chars]
    out += ["x:" + "|".join(sorted((x, y))) for x in only_a for y in only_b]
    if not only_a and not only_b:
        out.append("same-words")
    if not only_a or not only_b:
        out.append("contained")
    return out


class DiffHasher:
    """Hash the token-difference features of pairs into a sparse, L2-normalised matrix.

    Parameters
    ----------
    n_features : width of the hashed space (the hashing trick, Weinberger et al. 2009,
        "Feature Hashing for Large Scale Multitask Learning", ICML).
    """

    def __init__(self, *, n_features: int = 2**20) -> None:
        self.n_features = n_features

    def transform(self, pairs: Sequence[tuple[str, str]]) -> sparse.csr_matrix:
        """Return the hashed token-difference matrix of ``pairs``."""
        from sklearn.feature_extraction import FeatureHasher

        parsed = _parse(t for pair in pairs for t in pair)
        hasher = FeatureHasher(
            n_features=self.n_features, input_type="string", alternate_sign=False
        )
        mat = hasher.transform(_diff_from(parsed[a], parsed[b]) for a, b in pairs)
        from sklearn.preprocessing import normalize

        out: Any = normalize(mat.tocsr())
        return sparse.csr_matrix(out)
