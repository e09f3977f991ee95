"""Question matching: do two customer questions ask the same thing?

Pair features are lexical (word and character overlap, IDF-weighted overlap, edit
similarity), mismatch cues (numbers, negation words) and sentence-encoder interaction
features — the cosine and the element-wise ``|u - v|`` and ``u * v`` of the two
embeddings (Conneau et al. 2017, "Supervised Learning of Universal Sentence
Representations", EMNLP) — fed to gradient-boosted trees (Ke et al. 2017, LightGBM).
"""

from __future__ import annotations

import difflib
import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any, Self

import numpy as np

from voxloop.understand.estimators import PersistMixin

_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_NEGATION = ("不", "没", "未", "无", "别", "非", "否")


def _words(text: str) -> list[str]:
    import rjieba

    return [w for w in rjieba.cut(text) if w.strip()]


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def _bigrams(text: str) -> set[str]:
    return {text[i : i + 2] for i in range(len(text) - 1)}


class QuestionMatcher(PersistMixin):
    """Gradient-boosted classifier of "same intent?" for question pairs.

    Parameters
    ----------
    encoder : an object with ``encode(texts) -> ndarray`` (L2-normalised rows), or None
        for lexical features only.
    n_estimators, learning_rate, num_leaves : LightGBM parameters.
    threshold : probability above which a pair is called a match.
    """

    def __init__(
        self,
        *,
        encoder: Any | None = None,
        n_estimators: int = 400,
        learning_rate: float = 0.05,
        num_leaves: int = 63,
        threshold: float = 0.5,
    ) -> None:
        self.encoder = encoder
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.threshold = threshold

    def _lexical(self, a: str, b: str, idf: dict[str, float], default_idf: float) -> list[float]:
        wa, wb = _words(a), _words(b)
        sa, sb = set(wa), set(wb)
        shared = sa & sb
        w_all = sum(idf.get(w, default_idf) for w in sa | sb) or 1.0
        na, nb = set(_NUMBER.findall(a)), set(_NUMBER.findall(b))
        nega = sum(a.count(n) for n in _NEGATION)
        negb = sum(b.count(n) for n in _NEGATION)
        return [
            _jaccard(sa, sb),
            _jaccard(set(a), set(b)),
            _jaccard(_bigrams(a), _bigrams(b)),
            sum(idf.get(w, default_idf) for w in shared) / w_all,
            difflib.SequenceMatcher(None, a, b).ratio(),
            abs(len(a) - len(b)) / max(len(a), len(b), 1),
            float(len(a) + len(b)),
            float(na != nb),
            float(bool(na) or bool(nb)),
            float((nega % 2) != (negb % 2)),
            float(abs(nega - negb)),
        ]

    def features(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Return the feature matrix of ``pairs`` (needs the IDF learned by ``fit``)."""
        lex = np.asarray(
            [self._lexical(a, b, self.idf_, self.default_idf_) for a, b in pairs], dtype=np.float32
        )
        if self.encoder is None:
            return lex
        u = self.encoder.encode([a for a, _ in pairs])
        v = self.encoder.encode([b for _, b in pairs])
        cos = np.sum(u * v, axis=1, keepdims=True)
        return np.hstack([lex, cos, np.abs(u - v), u * v]).astype(np.float32)

    def fit(self, pairs: Sequence[tuple[str, str]], labels: Sequence[int]) -> Self:
        """Learn IDF weights from the pairs' questions and fit the trees."""
        import lightgbm as lgb

        df: Counter[str] = Counter()
        questions = {q for pair in pairs for q in pair}
        for q in questions:
            df.update(set(_words(q)))
        n = max(len(questions), 1)
        self.idf_ = {w: math.log(1 + n / c) for w, c in df.items()}
        self.default_idf_ = math.log(1 + n)
        x = self.features(pairs)
        self.model_ = lgb.LGBMClassifier(
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            subsample=0.8,
            subsample_freq=1,
            colsample_bytree=0.5,
            n_jobs=1,
            verbose=-1,
        ).fit(x, np.asarray(labels, dtype=int))
        return self

    def predict_proba(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Return the probability that each pair has the same intent."""
        proba = np.asarray(self.model_.predict_proba(self.features(pairs)))
        return proba[:, 1]

    def predict(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Return 1 for pairs judged to have the same intent, else 0."""
        return (self.predict_proba(pairs) >= self.threshold).astype(int)


def read_pairs(path: Any) -> tuple[list[tuple[str, str]], list[int]]:
    """Read a ``sentence1,sentence2,label`` CSV; bad rows raise an error naming the row."""
    import csv
    from pathlib import Path

    from voxloop.errors import UnusableInputError

    pairs: list[tuple[str, str]] = []
    labels: list[int] = []
    with Path(path).open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"sentence1", "sentence2", "label"} - set(reader.fieldnames or ())
        if missing:
            raise UnusableInputError(f"{path}: missing column(s) {sorted(missing)}")
        for i, row in enumerate(reader, start=2):
            if row["label"] not in ("0", "1"):
                raise UnusableInputError(f"{path}: row {i}: field 'label' must be 0 or 1")
            pairs.append((row["sentence1"] or "", row["sentence2"] or ""))
            labels.append(int(row["label"]))
    return pairs, labels


def evaluate_match(
    *,
    train: Any,
    test: Any | None = None,
    folds: int = 5,
    encoder: Any | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Measure the matcher: train→test when ``test`` is given, else stratified k-fold CV."""
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import StratifiedKFold

    pairs, labels = read_pairs(train)
    y = np.asarray(labels)
    if test is not None:
        test_pairs, test_labels = read_pairs(test)
        pred = QuestionMatcher(encoder=encoder).fit(pairs, labels).predict(test_pairs)
        return {
            "accuracy": round(float(accuracy_score(test_labels, pred)), 4),
            "f1": round(float(f1_score(test_labels, pred)), 4),
            "n_train": len(pairs),
            "n_test": len(test_pairs),
        }
    accs, f1s = [], []
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for tr, te in splitter.split(np.zeros(len(y)), y):
        model = QuestionMatcher(encoder=encoder).fit([pairs[i] for i in tr], y[tr].tolist())
        pred = model.predict([pairs[i] for i in te])
        accs.append(accuracy_score(y[te], pred))
        f1s.append(f1_score(y[te], pred))
    return {
        "accuracy": round(float(np.mean(accs)), 4),
        "accuracy_std": round(float(np.std(accs)), 4),
        "f1": round(float(np.mean(f1s)), 4),
        "folds": folds,
        "n_train": len(pairs),
    }
