"""Numenta Anomaly Benchmark: corpus loading and a re-implementation of NAB's scoring.

NAB scores a detector by thresholding its per-point anomaly scores.  Every labelled
anomaly window counts once: its earliest detection earns a scaled-sigmoid reward (earlier
is better), a missed window costs ``fnWeight``; every detection outside a window costs
``fpWeight`` times a sigmoid of its distance past the previous window.  The first 15 %
of each file (at most 750 points) is a probationary period that is not scored.  The
threshold is optimised over the whole corpus and the total is normalised so that the null
detector scores 0 and the perfect detector 100.

References
----------
Lavin & Ahmad (2015), "Evaluating Real-time Anomaly Detection Algorithms -- the Numenta
Anomaly Benchmark", IEEE ICMLA, arXiv:1510.03336.
Ahmad, Lavin, Purdy & Agha (2017), "Unsupervised real-time anomaly detection for
streaming data", Neurocomputing 262, doi:10.1016/j.neucom.2017.04.070.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from voxloop.errors import UnusableInputError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: NAB's cost matrices (``config/profiles.json``), keyed by our short profile names.
PROFILES: dict[str, dict[str, float]] = {
    "standard": {"tp": 1.0, "fn": 1.0, "fp": 0.11},
    "low_fp": {"tp": 1.0, "fn": 1.0, "fp": 0.22},
    "low_fn": {"tp": 1.0, "fn": 2.0, "fp": 0.11},
}
#: NAB's own profile names, as used in its result files.
NAB_PROFILE_NAMES = {
    "standard": "standard",
    "low_fp": "reward_low_FP_rate",
    "low_fn": "reward_low_FN_rate",
}
PROBATION_PERCENT = 0.15
#: Window id of points inside the probationary period (never scored).
PROBATION = -2
#: Window id of scored points outside every window.
OUTSIDE = -1


@dataclass
class NabFile:
    """One NAB series with its labelled windows as inclusive index ranges."""

    name: str
    timestamps: npt.NDArray[np.datetime64]
    values: FloatArray
    windows: list[tuple[int, int]] = field(default_factory=list)

    @property
    def probation(self) -> int:
        """Return the length of the probationary period (NAB: 15 %, at most 750 points)."""
        return probation_length(len(self.values))


def probation_length(n: int) -> int:
    """Return NAB's probationary length for a file of ``n`` points."""
    return int(min(math.floor(PROBATION_PERCENT * n), PROBATION_PERCENT * 5000))


def _read_series(path: Path) -> tuple[npt.NDArray[np.datetime64], FloatArray]:
    stamps: list[str] = []
    values: list[float] = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or header[:2] != ["timestamp", "value"]:
            raise UnusableInputError(f"{path}: expected header 'timestamp,value', got {header}")
        for lineno, row in enumerate(reader, start=2):
            try:
                stamps.append(row[0].replace(" ", "T"))
                values.append(float(row[1]))
            except (IndexError, ValueError) as exc:
                raise UnusableInputError(f"{path}:{lineno}: bad row {row!r}: {exc}") from exc
    return np.array(stamps, dtype="datetime64[s]"), np.array(values, dtype=np.float64)


def load_corpus(data_dir: Path, *, names: list[str] | None = None) -> list[NabFile]:
    """Load NAB series and their combined windows from a NAB checkout folder."""
    labels_path = data_dir / "labels" / "combined_windows.json"
    if not labels_path.is_file():
        raise UnusableInputError(f"{data_dir}: no labels/combined_windows.json (not a NAB copy)")
    labels: dict[str, list[list[str]]] = json.loads(labels_path.read_text(encoding="utf-8"))
    files: list[NabFile] = []
    for name in sorted(labels):
        if names is not None and name not in names:
            continue
        stamps, values = _read_series(data_dir / "data" / name)
        windows: list[tuple[int, int]] = []
        for start, end in labels[name]:
            lo = np.datetime64(start.replace(" ", "T")[:19], "s")
            hi = np.datetime64(end.replace(" ", "T")[:19], "s")
            i = int(np.searchsorted(stamps, lo))
            j = int(np.searchsorted(stamps, hi))
            if i >= len(stamps) or stamps[i] != lo or j >= len(stamps) or stamps[j] != hi:
                raise UnusableInputError(f"{name}: window {start}..{end} not on a timestamp")
            windows.append((i, j))
        files.append(NabFile(name=name, timestamps=stamps, values=values, windows=windows))
    if names is not None and len(files) != len(names):
        missing = sorted(set(names) - {f.name for f in files})
        raise UnusableInputError(f"{data_dir}: unknown NAB files {missing}")
    return files


def scaled_sigmoid(position: FloatArray) -> FloatArray:
    """Return NAB's scaled sigmoid ``2/(1+exp(5x)) - 1`` (-1 beyond 3 window widths)."""
    out = 2.0 / (1.0 + np.exp(5.0 * position)) - 1.0
    return np.where(position > 3.0, -1.0, out)


def sweep_weights(
    n: int, windows: list[tuple[int, int]], profile: dict[str, float]
) -> tuple[FloatArray, IntArray]:
    """Return each point's score if detected and its window id (``OUTSIDE``/``PROBATION``).

    Mirrors ``Sweeper.calcSweepScore`` of NAB: inside a window the reward is the scaled
    sigmoid of the relative position, normalised so the first point earns ``tpWeight``;
    outside, a detection costs ``fpWeight`` times the sigmoid of the distance past the
    previous window (``-fpWeight`` when no window precedes it).
    """
    idx = np.arange(n, dtype=np.float64)
    weight = np.full(n, -1.0 * profile["fp"])
    window_id = np.full(n, OUTSIDE, dtype=np.int64)
    max_tp = float(scaled_sigmoid(np.array([-1.0]))[0])
    prev_right: int | None = None
    prev_width = 0.0
    bounds = [*windows, (n, n)]
    for k, (left, right) in enumerate(bounds):
        # Points between the previous window and this one are false-positive candidates.
        gap_lo = 0 if prev_right is None else prev_right + 1
        if prev_right is not None and gap_lo < left:
            past = np.abs(prev_right - idx[gap_lo:left]) / (prev_width - 1.0)
            weight[gap_lo:left] = scaled_sigmoid(past) * profile["fp"]
        if k == len(windows):
            break
        width = float(right - left + 1)
        pos = -(right - idx[left : right + 1] + 1.0) / width
        weight[left : right + 1] = scaled_sigmoid(pos) * profile["tp"] / max_tp
        window_id[left : right + 1] = k
        prev_right, prev_width = right, width
    window_id[: probation_length(n)] = PROBATION
    return weight, window_id


@dataclass
class FileScore:
    """Score and confusion counts of one file at one threshold."""

    name: str
    score: float
    tp: int
    tn: int
    fp: int
    fn: int
    total: int


def score_file(
    scores: FloatArray,
    windows: list[tuple[int, int]],
    threshold: float,
    profile: dict[str, float],
    *,
    name: str = "",
) -> FileScore:
    """Score one file's anomaly scores at ``threshold`` (detected = score >= threshold)."""
    n = len(scores)
    weight, wid = sweep_weights(n, windows, profile)
    detected = scores >= threshold
    scored = wid != PROBATION
    inside = wid >= 0
    fp_mask = detected & (wid == OUTSIDE)
    total = float(weight[fp_mask].sum())
    for k in np.unique(wid[inside]):
        hit = detected & (wid == k)
        total += float(weight[hit].max()) if hit.any() else -profile["fn"]
    tp = int((detected & inside).sum())
    fp = int(fp_mask.sum())
    return FileScore(
        name=name,
        score=total,
        tp=tp,
        tn=int((scored & ~inside).sum()) - fp,
        fp=fp,
        fn=int(inside.sum()) - tp,
        total=n,
    )


def optimise_threshold(
    scores: list[FloatArray], windows: list[list[tuple[int, int]]], profile: dict[str, float]
) -> tuple[float, float]:
    """Return the threshold maximising the corpus score, and that score.

    Exact sweep over every distinct anomaly score (NAB's ``calcScoreByThreshold`` over
    the pooled corpus); ties go to the highest threshold, as in NAB.
    """
    weights: list[FloatArray] = []
    groups: list[IntArray] = []
    offset = 0
    for s, w in zip(scores, windows, strict=True):
        weight, wid = sweep_weights(len(s), w, profile)
        weights.append(weight)
        glob = np.where(wid >= 0, wid + offset, wid)
        groups.append(glob)
        offset += len(w)
    a = np.concatenate(scores)
    wt = np.concatenate(weights)
    gid = np.concatenate(groups)
    n_windows = len(np.unique(gid[gid >= 0]))
    null_score = -profile["fn"] * n_windows
    keep = gid != PROBATION
    a, wt, gid = a[keep], wt[keep], gid[keep]
    order = np.argsort(-a, kind="stable")
    a, wt, gid = a[order], wt[order], gid[order]
    delta = np.where(gid == OUTSIDE, wt, 0.0)
    inside = np.flatnonzero(gid >= 0)
    if len(inside):
        # Within each window the contribution is the running max of detected rewards
        # (starting from -fnWeight); offset groups so one accumulate covers all windows.
        g = gid[inside]
        by_group = np.lexsort((inside, g))
        gi, pos = g[by_group], inside[by_group]
        span = 10.0 * (profile["tp"] + profile["fn"] + 1.0)
        shifted = wt[pos] + gi * span
        starts = np.r_[True, gi[1:] != gi[:-1]]
        base = np.where(starts, -profile["fn"] + gi * span, -np.inf)
        run = np.maximum.accumulate(np.maximum(shifted, base))
        prev = np.where(starts, -profile["fn"] + gi * span, np.r_[0.0, run[:-1]])
        delta[pos] = run - prev
    total = null_score + np.cumsum(delta)
    # A threshold equal to a[i] flags every point up to the last one tied with a[i].
    last_of_tie = np.r_[a[1:] != a[:-1], True]
    cand_thr = np.r_[np.inf, a[last_of_tie]]
    cand_score = np.r_[null_score, total[last_of_tie]]
    best = int(np.argmax(cand_score))
    return float(cand_thr[best]), float(cand_score[best])


@dataclass
class CorpusResult:
    """Normalised NAB score of a detector under one profile, with its per-file rows."""

    profile: str
    threshold: float
    raw: float
    null: float
    perfect: float
    normalised: float
    files: list[FileScore]


def score_corpus(files: list[NabFile], scores: list[FloatArray], profile_name: str) -> CorpusResult:
    """Optimise the threshold over the corpus, score every file and normalise."""
    profile = PROFILES[profile_name]
    windows = [f.windows for f in files]
    threshold, _ = optimise_threshold(scores, windows, profile)
    rows = [
        score_file(s, f.windows, threshold, profile, name=f.name)
        for f, s in zip(files, scores, strict=True)
    ]
    raw = sum(r.score for r in rows)
    n_windows = 0
    for f in files:
        _, wid = sweep_weights(len(f.values), f.windows, profile)
        n_windows += len(np.unique(wid[wid >= 0]))
    null = -profile["fn"] * n_windows
    perfect = profile["tp"] * n_windows
    return CorpusResult(
        profile=profile_name,
        threshold=threshold,
        raw=raw,
        null=null,
        perfect=perfect,
        normalised=normalise(raw, null=null, perfect=perfect),
        files=rows,
    )


def normalise(raw: float, *, null: float, perfect: float) -> float:
    """Map a raw corpus score to NAB's scale: null detector 0, perfect detector 100."""
    return 100.0 * (raw - null) / (perfect - null)


def evaluate(
    files: list[NabFile], detect: Callable[[NabFile], FloatArray]
) -> dict[str, CorpusResult]:
    """Run ``detect`` on every file and score the corpus under the three profiles."""
    scores = [np.asarray(detect(f), dtype=np.float64) for f in files]
    for f, s in zip(files, scores, strict=True):
        if s.shape != f.values.shape:
            raise ValueError(f"{f.name}: detector returned {s.shape}, expected {f.values.shape}")
        if not np.all((s >= 0.0) & (s <= 1.0)):
            raise ValueError(f"{f.name}: anomaly scores must lie in [0, 1]")
    return {name: score_corpus(files, scores, name) for name in PROFILES}
