"""Lexicon models for sentiment and emotion: no training data needed, vectorised over Arrow.

Cue words live in ``lexicon.yaml``. Counting runs as RE2 regexes in pyarrow compute, so a
batch of texts is scored without a Python loop per row.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any, Self

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from voxloop.understand.estimators import PersistMixin, register_model

LEXICON_PATH = Path(__file__).resolve().parent / "lexicon.yaml"
SENTIMENTS = np.array(["negative", "neutral", "positive"])
_NEGATED_JOY = "不满意|不满|不开心|不高兴|不喜欢|不太好|不好|不感谢|not happy|not satisfied"
EMOTIONS = np.array(["anger", "fear", "sadness", "surprise", "joy", "neutral"])


@cache
def lexicon() -> dict[str, Any]:
    """Return the built-in cue-word lexicon."""
    data: dict[str, Any] = yaml.safe_load(LEXICON_PATH.read_text(encoding="utf-8"))
    return data


def _alternation(words: Sequence[str]) -> str:
    # Longest first so that RE2's leftmost-first alternation prefers "不满意" over "不满".
    ordered = sorted({w.lower() for w in words}, key=len, reverse=True)
    return "|".join(re.escape(w) for w in ordered)


#: An agent's turn in a transcript, up to the next customer turn (RE2 syntax).
TURN_TIMING = r"(?m)^\[\d+(?:\.\d+)?-\d+(?:\.\d+)?\]\s*"
AGENT_TURN = r"(?s)(?:坐席|客服|agent)[:：].*?(客户[:：]|用户[:：]|customer:|$)"


def customer_side(texts: pa.Array) -> pa.Array:
    """Drop agents' turns from transcripts so their courtesy phrases are not read as mood."""
    # Turn timings of timed transcripts ("[12.5-18.0] 客户：…") are not words either.
    untimed = pc.replace_substring_regex(texts, TURN_TIMING, "")
    return pc.replace_substring_regex(untimed, AGENT_TURN, r"\1")


def _as_array(texts: Sequence[str] | pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if not isinstance(texts, pa.Array):
        texts = pa.array(list(texts), type=pa.string())
    return customer_side(pc.utf8_lower(pc.fill_null(texts.cast(pa.string()), "")))


def _count(texts: pa.Array, pattern: str) -> np.ndarray:
    out: np.ndarray = pc.count_substring_regex(texts, pattern).to_numpy(zero_copy_only=False)
    return out.astype(np.float64)


@register_model("lexicon_sentiment")
class LexiconSentiment(PersistMixin):
    """Cue-word sentiment: negative / neutral / positive with a score in [-1, 1].

    Parameters
    ----------
    threshold : absolute score below which a text is neutral.
    sharpness : slope of the logistic map from score to probability.

    Notes
    -----
    Lexicon-based polarity with negation-aware phrases, in the spirit of Taboada et al.
    2011 ("Lexicon-Based Methods for Sentiment Analysis", Computational Linguistics).
    ``fit`` compiles the lexicon and, given labels, picks the threshold that maximises
    accuracy on them.
    """

    def __init__(self, *, threshold: float = 0.1, sharpness: float = 8.0) -> None:
        self.threshold = threshold
        self.sharpness = sharpness

    def fit(self, texts: Sequence[str] | None = None, labels: Sequence[str] | None = None) -> Self:
        """Compile the lexicon; with labels, choose the neutral threshold on them."""
        lex = lexicon()["sentiment"]
        self.exceptions_ = _alternation(lex["positive_exceptions"])
        self.negative_ = _alternation(lex["negative"])
        self.positive_ = _alternation(lex["positive"])
        self.classes_ = SENTIMENTS
        self.threshold_ = self.threshold
        if texts is not None and labels is not None:
            y = np.asarray([str(v) for v in labels])
            s = self.score(texts)
            grid = [0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5]
            accs = [float(np.mean(self._labels(s, t) == y)) for t in grid]
            self.threshold_ = grid[int(np.argmax(accs))]
        return self

    def score(self, texts: Sequence[str] | pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Return a polarity score in [-1, 1] per text."""
        arr = _as_array(texts)
        # Exceptions become a positive marker first, so their negators are not re-read.
        arr = pc.replace_substring_regex(arr, self.exceptions_, "\x02")
        neg = _count(arr, self.negative_)
        arr = pc.replace_substring_regex(arr, self.negative_, "\x01")
        pos = _count(arr, self.positive_) + _count(arr, "\x02")
        out: np.ndarray = (pos - neg) / (pos + neg + 1.0)
        return out

    def _proba(self, s: np.ndarray, threshold: float) -> np.ndarray:
        k = self.sharpness
        pos = 1.0 / (1.0 + np.exp(-k * (s - threshold)))
        neg = 1.0 / (1.0 + np.exp(-k * (-s - threshold)))
        neu = np.clip(1.0 - pos - neg, 0.02, None)
        p = np.column_stack([neg, neu, pos])
        out: np.ndarray = p / p.sum(axis=1, keepdims=True)
        return out

    def _labels(self, s: np.ndarray, threshold: float) -> np.ndarray:
        out: np.ndarray = SENTIMENTS[np.argmax(self._proba(s, threshold), axis=1)]
        return out

    def predict_proba(self, texts: Sequence[str] | pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Return probabilities of (negative, neutral, positive)."""
        return self._proba(self.score(texts), self.threshold_)

    def predict(self, texts: Sequence[str] | pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Return negative / neutral / positive per text."""
        return self._labels(self.score(texts), self.threshold_)


@register_model("lexicon_emotion")
class LexiconEmotion(PersistMixin):
    """Cue-word emotion: anger, fear, sadness, surprise, joy or neutral.

    Parameters
    ----------
    neutral_prior : pseudo-count of neutral; texts without cues are neutral.

    Notes
    -----
    Word-emotion association counting as in Mohammad & Turney 2013 (NRC Emotion Lexicon),
    with a Chinese cue list written for customer voices.
    """

    def __init__(self, *, neutral_prior: float = 0.5) -> None:
        self.neutral_prior = neutral_prior

    def fit(self, texts: Sequence[str] | None = None, labels: Sequence[str] | None = None) -> Self:
        """Compile the lexicon (labels are accepted for interface compatibility)."""
        lex = lexicon()["emotion"]
        self.patterns_ = [_alternation(lex[e]) for e in EMOTIONS[:-1]]
        self.classes_ = EMOTIONS
        return self

    def predict_proba(self, texts: Sequence[str] | pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Return probabilities in ``classes_`` order."""
        # Negated joy words ("不满意", "不开心") must not count as joy.
        arr = pc.replace_substring_regex(_as_array(texts), _NEGATED_JOY, "\x01")
        counts = np.column_stack(
            [_count(arr, p) for p in self.patterns_] + [np.full(len(arr), self.neutral_prior)]
        )
        out: np.ndarray = counts / counts.sum(axis=1, keepdims=True)
        return out

    def predict(self, texts: Sequence[str] | pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Return the most likely emotion per text."""
        out: np.ndarray = self.classes_[np.argmax(self.predict_proba(texts), axis=1)]
        return out
