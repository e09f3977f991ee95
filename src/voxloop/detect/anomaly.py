"""Online univariate anomaly detectors scored on NAB (one value per time step).

Every detector follows the estimator conventions of the project: ``__init__`` only stores
parameters, learned state ends in ``_``, ``learn_one`` returns ``self``, ``score_one``
scores a value before it is learned, ``score_learn_many`` does both over an array (the
batch path, equal to calling ``score_one``/``learn_one`` in a loop), and ``save``/``load``
round-trip the state through JSON.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
import pandas as pd

FloatArray = npt.NDArray[np.float64]


class StreamDetector:
    """Base class: state round-trip and the one-value API on top of the batch path."""

    name: ClassVar[str] = ""
    _params: ClassVar[tuple[str, ...]] = ()

    def get_params(self) -> dict[str, Any]:
        """Return the constructor parameters."""
        return {p: getattr(self, p) for p in self._params}

    def _state(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k.endswith("_")}

    def score_learn_many(self, values: FloatArray) -> FloatArray:
        """Score each value in ``[0, 1]`` before learning it; return the scores."""
        raise NotImplementedError

    def score_one(self, x: float) -> float:
        """Return the anomaly score of ``x`` without learning it."""
        clone = type(self).from_dict(self.to_dict())
        return float(clone.score_learn_many(np.array([x], dtype=np.float64))[0])

    def learn_one(self, x: float) -> Self:
        """Learn one value; return ``self``."""
        self.score_learn_many(np.array([x], dtype=np.float64))
        return self

    def to_dict(self) -> dict[str, Any]:
        """Return parameters and learned state as JSON-compatible data."""
        state = {
            k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self._state().items()
        }
        return {"detector": self.name, "params": self.get_params(), "state": state}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Rebuild a detector from ``to_dict`` output."""
        if data.get("detector") != cls.name:
            raise ValueError(f"saved detector is {data.get('detector')!r}, not {cls.name!r}")
        obj = cls(**data["params"])
        for key, value in data["state"].items():
            setattr(obj, key, value)
        obj._restore()
        return obj

    def _restore(self) -> None:
        """Convert JSON lists back to arrays after loading."""

    def save(self, path: Path) -> None:
        """Write the detector to ``path`` as JSON."""
        path.write_text(json.dumps(self.to_dict()), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read a detector written by ``save``."""
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))


class WindowedGaussian(StreamDetector):
    """Gaussian tail probability against a window that slides in steps (NAB baseline).

    A faithful port of NAB's ``windowedGaussian`` detector, used to check the scorer
    against NAB's published per-file results.  The score of ``x`` is one minus the
    two-sided normal tail probability under the mean and deviation of the window.

    References
    ----------
    Lavin & Ahmad (2015), "Evaluating Real-time Anomaly Detection Algorithms -- the
    Numenta Anomaly Benchmark", arXiv:1510.03336.
    """

    name = "windowed_gaussian"
    _params = ("window_size", "step_size")

    def __init__(self, window_size: int = 6400, step_size: int = 100) -> None:
        self.window_size = window_size
        self.step_size = step_size

    def _ensure(self) -> None:
        if not hasattr(self, "window_"):
            self.window_: list[float] = []
            self.buffer_: list[float] = []
            self.mean_ = 0.0
            self.std_ = 1.0

    def _refresh(self) -> None:
        self.mean_ = float(np.mean(self.window_))
        self.std_ = float(np.std(self.window_)) or 1e-6

    def score_learn_many(self, values: FloatArray) -> FloatArray:
        """Score each value before learning it (sequential by nature: windows jump)."""
        self._ensure()
        out = np.zeros(len(values))
        for i, raw in enumerate(values):
            x = float(raw)
            if self.window_:
                z = abs(x - self.mean_) / self.std_
                out[i] = 1.0 - 0.5 * math.erfc(z / math.sqrt(2.0))
            if len(self.window_) < self.window_size:
                self.window_.append(x)
                self._refresh()
            else:
                self.buffer_.append(x)
                if len(self.buffer_) == self.step_size:
                    self.window_ = self.window_[self.step_size :] + self.buffer_
                    self.buffer_ = []
                    self._refresh()
        return out


class ContextEnsemble(StreamDetector):
    """Robust deviation plus contextual novelty, with alarm suppression.

    Two signals are averaged.  (1) A robust deviation: the largest of the current
    value's, the short mean's and the step's distance from a trailing median, in trailing
    MAD units, squashed to ``[0, 1)``.  (2) Contextual novelty in the spirit of CAD OSE:
    the value range is quantised at several resolutions and the last ``k`` quantised
    values form a context; the share of (resolution, k) pairs whose context was never
    seen before is the novelty.  After a score reaches ``alarm``, later scores are kept
    below it for ``suppress`` steps, because one anomaly should raise one alarm.

    References
    ----------
    Ahmad, Lavin, Purdy & Agha (2017), "Unsupervised real-time anomaly detection for
    streaming data", Neurocomputing 262 (NAB scoring, HTM anomaly likelihood).
    Smirnov (2016), "Contextual Anomaly Detector (CAD OSE)", NAB detector ``contextOSE``.
    Rousseeuw & Croux (1993), "Alternatives to the median absolute deviation", JASA 88.
    """

    name = "context_ensemble"
    _params = (
        "input_min",
        "input_max",
        "window",
        "short",
        "novelty_weight",
        "resolutions",
        "orders",
        "squash",
        "alarm",
        "suppress",
        "warmup",
    )

    def __init__(
        self,
        input_min: float | None = None,
        input_max: float | None = None,
        window: int = 750,
        short: int = 5,
        novelty_weight: float = 0.8,
        resolutions: tuple[int, ...] | list[int] = (4, 8, 16, 32),
        orders: tuple[int, ...] | list[int] = (1, 2, 3),
        squash: float = 20.0,
        alarm: float = 0.5,
        suppress: int = 375,
        warmup: int = 50,
    ) -> None:
        self.input_min = input_min
        self.input_max = input_max
        self.window = window
        self.short = short
        self.novelty_weight = novelty_weight
        self.resolutions = resolutions
        self.orders = orders
        self.squash = squash
        self.alarm = alarm
        self.suppress = suppress
        self.warmup = warmup

    def _ensure(self) -> None:
        if not hasattr(self, "history_"):
            self.history_: list[float] = []
            self.seen_: dict[str, list[int]] = {}
            self.n_ = 0
            self.last_alarm_ = -(10**12)
            self.min_ = math.inf
            self.max_ = -math.inf

    def _restore(self) -> None:
        self.seen_ = {k: list(v) for k, v in self.seen_.items()}

    def _normalise(self, x: FloatArray) -> FloatArray:
        if self.input_min is not None and self.input_max is not None:
            lo = np.full(len(x), float(self.input_min))
            hi = np.full(len(x), float(self.input_max))
        else:
            # Without a declared range, use the range seen so far (causal).
            lo = np.minimum.accumulate(np.r_[self.min_, x])[1:]
            hi = np.maximum.accumulate(np.r_[self.max_, x])[1:]
        span = np.where(hi > lo, hi - lo, 1.0)
        return np.asarray(np.clip((x - lo) / span, 0.0, 1.0), dtype=np.float64)

    def _deviation(self, v: FloatArray, n_new: int) -> FloatArray:
        s = pd.Series(v)
        past = s.shift(1)
        w, mp = self.window, min(20, self.window)
        med = past.rolling(w, min_periods=mp).median()
        mad = (past - med).abs().rolling(w, min_periods=mp).median() * 1.4826
        sd = past.rolling(w, min_periods=mp).std()
        scale = np.maximum(np.maximum(mad.to_numpy(), 0.2 * sd.to_numpy()), 1e-3)
        centre = med.to_numpy()
        z_value = np.abs(v - centre) / scale
        short_mean = s.rolling(self.short, min_periods=1).mean().to_numpy()
        z_level = np.abs(short_mean - centre) / scale * math.sqrt(self.short) / 2.0
        step = s.diff().abs()
        past_step = step.shift(1)
        step_med = past_step.rolling(w, min_periods=mp).median()
        step_q = past_step.rolling(w, min_periods=mp).quantile(0.99)
        z_step = ((step - step_q) / (step_med * 1.4826 + 1e-3)).to_numpy()
        stacked = np.vstack([z_value, z_level, z_step])[:, -n_new:]
        stacked = np.where(np.isnan(stacked), -np.inf, stacked)
        z = np.max(stacked, axis=0)
        z = np.where(np.isfinite(z), z, 0.0)
        return np.asarray(1.0 - np.exp(-np.maximum(z, 0.0) / self.squash), dtype=np.float64)

    def _novelty(self, v: FloatArray, n_new: int) -> FloatArray:
        n = len(v)
        acc = np.zeros(n_new)
        count = 0
        for res in self.resolutions:
            bins = np.minimum((v * res).astype(np.int64), res - 1)
            for k in self.orders:
                key = np.zeros(n, dtype=np.int64)
                for j in range(k):
                    shifted = np.r_[np.full(j, -1, dtype=np.int64), bins[: n - j]]
                    key = key * (res + 1) + (shifted + 1)
                # Contexts that start before the first value ever seen carry -1 digits;
                # they are as legitimate as any other context.
                new_keys = key[-n_new:]
                seen_key = f"{res}:{k}"
                seen = np.asarray(self.seen_.get(seen_key, []), dtype=np.int64)
                uniq, first = np.unique(new_keys, return_index=True)
                novel = ~np.isin(uniq, seen)
                acc[first[novel]] += 1.0
                self.seen_[seen_key] = np.union1d(seen, uniq).tolist()
                count += 1
        return acc / max(count, 1)

    def score_learn_many(self, values: FloatArray) -> FloatArray:
        """Score each value before learning it; vectorised over the batch."""
        self._ensure()
        x = np.asarray(values, dtype=np.float64)
        n_new = len(x)
        if n_new == 0:
            return np.zeros(0)
        # The MAD of a rolling median needs two windows of history to be exact.
        keep = 2 * self.window + self.short + 2
        full = np.r_[np.asarray(self.history_, dtype=np.float64), x]
        v = self._normalise(full)
        score = (1.0 - self.novelty_weight) * self._deviation(v, n_new)
        score += self.novelty_weight * self._novelty(v, n_new)
        index = self.n_ + np.arange(n_new)
        score[index < self.warmup] = 0.0
        score = self._apply_suppression(score, index)
        self.history_ = full[-keep:].tolist()
        self.n_ += n_new
        self.min_ = float(min(self.min_, float(x.min())))
        self.max_ = float(max(self.max_, float(x.max())))
        return np.asarray(np.clip(score, 0.0, 1.0), dtype=np.float64)

    def _apply_suppression(self, score: FloatArray, index: npt.NDArray[np.int64]) -> FloatArray:
        cap = self.alarm * 0.99
        last = int(self.last_alarm_)
        # Alarms are rare, so this loop runs over a handful of points per series.
        for j in np.flatnonzero(score >= self.alarm):
            if 0 < index[j] - last <= self.suppress:
                score[j] = min(score[j], cap)
            else:
                last = int(index[j])
        self.last_alarm_ = last
        return score


#: Univariate detectors, by name.
ANOMALY_DETECTORS: dict[str, type[StreamDetector]] = {
    WindowedGaussian.name: WindowedGaussian,
    ContextEnsemble.name: ContextEnsemble,
}


def nab_detector(
    name: str, *, values: FloatArray, probation: int, **overrides: Any
) -> StreamDetector:
    """Build a detector configured the way NAB configures detectors for one file.

    NAB hands every detector the file's value range and probationary length; the
    trailing window and suppression length are derived from the latter.
    """
    if name == ContextEnsemble.name:
        params: dict[str, Any] = {
            "input_min": float(values.min()),
            "input_max": float(values.max()),
            "window": max(probation, 100),
            "suppress": int(0.3 * probation),
            "warmup": min(probation, 50),
        }
        params.update(overrides)
        return ContextEnsemble(**params)
    if name in ANOMALY_DETECTORS:
        return ANOMALY_DETECTORS[name](**overrides)
    raise ValueError(f"unknown detector {name!r}; known: {sorted(ANOMALY_DETECTORS)}")


def nab_round(scores: FloatArray) -> FloatArray:
    """Round scores to 12 significant digits, as NAB's Python 2 result files did."""
    return np.array([float(f"{s:.12g}") for s in scores], dtype=np.float64)
