"""Measure text classifiers on labelled files: accuracy, macro-F1, per-class P/R, speed."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from voxloop.errors import UnusableInputError
from voxloop.ingest.readers import read_file
from voxloop.understand.encoders import Encoder, HybridClassifier
from voxloop.understand.estimators import TextClassifier

TASKS = ("scenario", "sentiment", "emotion", "intent")
#: Domain name of the rows a model is evaluated on when other-domain rows also train it.
_TARGET = "target"
#: Rows per batch when reading a labelled file.
_READ_BATCH = 50_000


def task_model(task: str, *, target_domain: str | None = None) -> TextClassifier:
    """Return the default (unfitted) classifier for a task."""
    if task not in TASKS:
        raise UnusableInputError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    # Skewed emotion labels, scored by macro-F1: balanced class weights plus per-class score
    # offsets fitted to macro-F1 on cross-validated training scores (+3 points macro-F1 in
    # 3-fold CV over smp2020_ewect usual_eval with virus data in every training fold).
    if task == "emotion":
        return TextClassifier(
            class_weight="balanced", bias_metric="macro_f1", target_domain=target_domain
        )
    return TextClassifier(target_domain=target_domain)


def _model(
    task: str, *, other_domain: bool, encoder: Encoder | None
) -> TextClassifier | HybridClassifier:
    """Return the task's model: adapted to other-domain rows, or pooled with an encoder."""
    text = task_model(task, target_domain=_TARGET if other_domain else None)
    if encoder is None:
        return text
    if other_domain:
        raise UnusableInputError(
            "rows of another domain (--also-train) cannot train an encoder model yet"
        )
    return HybridClassifier(encoder=encoder, text_model=text)


def _cell(value: Any) -> str | None:
    return None if value is None else str(value)


def read_labelled(path: Path, *, text_col: str, label_col: str) -> tuple[list[str], list[str]]:
    """Read texts and labels from any file the ingest reads (CSV, JSONL, Parquet, xlsx).

    The ingest readers (``voxloop.ingest.readers``) parse the file, so quoted multi-line
    CSV fields, GBK/UTF-8 detection, ``.gz`` and Excel behave as in ``voxloop ingest``.
    A ``.json`` file holding one array of objects is read too. A row the reader cannot
    parse, or a row with an empty label, stops the evaluation with its row number.
    """
    if not path.exists():
        raise UnusableInputError(f"{path}: file not found")
    texts: list[str] = []
    labels: list[str | None] = []
    sources: list[int] = []
    try:
        for batch in read_file(path, batch_size=_READ_BATCH):
            if batch.rejects:
                bad = batch.rejects[0]
                raise UnusableInputError(f"{path}: row {bad.row} cannot be parsed: {bad.reason}")
            names = batch.table.column_names
            if batch.table.num_rows == 0 and not names:
                continue
            for col in (text_col, label_col):
                if col not in names:
                    raise UnusableInputError(
                        f"{path}: no column {col!r}; columns are {', '.join(names)}"
                    )
            texts.extend("" if t is None else str(t) for t in batch.table[text_col].to_pylist())
            labels.extend(_cell(v) for v in batch.table[label_col].to_pylist())
            sources.extend(int(r) for r in batch.rows)
    except (pa.ArrowInvalid, ValueError, OSError) as exc:
        if isinstance(exc, UnusableInputError):
            raise
        raise UnusableInputError(f"{path}: cannot parse: {exc}") from exc
    out: list[str] = []
    for i, label in enumerate(labels):
        if label is None or label.strip() == "":
            raise UnusableInputError(
                f"{path}: row {i + 1} (source row {sources[i]}) has an empty {label_col!r}"
            )
        out.append(label)
    return texts, out


def _scores(y_true: Sequence[str], y_pred: Sequence[str]) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    labels = sorted(set(y_true) | set(y_pred))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", labels=sorted(set(y_true)))),
        "per_class": {
            lab: {"precision": float(pi), "recall": float(ri), "f1": float(fi), "support": int(si)}
            for lab, pi, ri, fi, si in zip(labels, p, r, f, s, strict=True)
        },
    }


def evaluate_split(
    train: tuple[list[str], list[str]],
    test: tuple[list[str], list[str]],
    *,
    task: str = "scenario",
    model: TextClassifier | HybridClassifier | None = None,
    extra: tuple[list[str], list[str]] | None = None,
    encoder: Encoder | None = None,
) -> dict[str, Any]:
    """Fit on ``train``, score on ``test``; report quality, training time and throughput.

    ``extra`` holds labelled rows of another domain (another source, period or channel):
    they train the model too, adapted towards the domain of ``train`` and ``test``
    (``TextClassifier`` with ``target_domain``). ``encoder`` pools the default model with a
    sentence-embedding probe (``HybridClassifier``); prediction speed then includes encoding.
    """
    has_extra = extra is not None and bool(extra[0])
    clf = model if model is not None else _model(task, other_domain=has_extra, encoder=encoder)
    t0 = time.perf_counter()
    if extra is not None and has_extra:
        if not isinstance(clf, TextClassifier):
            raise UnusableInputError("rows of another domain need the default text model")
        clf.fit(
            train[0] + extra[0],
            train[1] + extra[1],
            domains=[_TARGET] * len(train[0]) + ["other"] * len(extra[0]),
        )
    else:
        clf.fit(*train)
    train_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = clf.predict(test[0])
    predict_seconds = max(time.perf_counter() - t0, 1e-9)
    out = _scores(test[1], [str(p) for p in pred])
    return {
        **out,
        "n_train": len(train[0]) + (len(extra[0]) if extra is not None else 0),
        "n_test": len(test[0]),
        "train_seconds": round(train_seconds, 3),
        "predict_per_second": round(len(test[0]) / predict_seconds, 1),
    }


def evaluate_cv(
    data: tuple[list[str], list[str]],
    *,
    task: str = "scenario",
    folds: int = 5,
    seed: int = 0,
    extra: tuple[list[str], list[str]] | None = None,
    encoder: Encoder | None = None,
) -> dict[str, Any]:
    """Stratified k-fold cross-validation; metrics are means over folds (per-class pooled).

    ``extra`` (another domain's labelled rows) joins every training fold, never a test fold.
    """
    from sklearn.model_selection import StratifiedKFold

    texts, labels = data
    y = np.asarray(labels)
    skf = StratifiedKFold(folds, shuffle=True, random_state=seed)
    runs = []
    pooled_true: list[str] = []
    pooled_pred: list[str] = []
    has_extra = extra is not None and bool(extra[0])
    for tr, te in skf.split(np.zeros(len(y)), y):
        tr_x = [texts[i] for i in tr]
        te_x = [texts[i] for i in te]
        clf = _model(task, other_domain=has_extra, encoder=encoder)
        res = evaluate_split((tr_x, y[tr].tolist()), (te_x, y[te].tolist()), model=clf, extra=extra)
        runs.append(res)
        pooled_true.extend(y[te].tolist())
        pooled_pred.extend(str(p) for p in clf.predict(te_x))
    pooled = _scores(pooled_true, pooled_pred)
    return {
        "accuracy": float(np.mean([r["accuracy"] for r in runs])),
        "macro_f1": float(np.mean([r["macro_f1"] for r in runs])),
        "accuracy_std": float(np.std([r["accuracy"] for r in runs])),
        "macro_f1_std": float(np.std([r["macro_f1"] for r in runs])),
        "per_class": pooled["per_class"],
        "n_train": int(np.mean([r["n_train"] for r in runs])),
        "n_test": int(np.mean([r["n_test"] for r in runs])),
        "folds": folds,
        "train_seconds": round(float(np.mean([r["train_seconds"] for r in runs])), 3),
        "predict_per_second": round(float(np.mean([r["predict_per_second"] for r in runs])), 1),
    }


def stratified_split(
    data: tuple[list[str], list[str]], *, test_size: float = 0.2, seed: int = 0
) -> tuple[tuple[list[str], list[str]], tuple[list[str], list[str]]]:
    """Split into stratified train and test parts (documented fallback for train-only sets).

    Labels seen fewer than twice cannot be stratified; their rows go to the training part
    (a test row of a label the model never saw would only measure that gap).
    """
    from sklearn.model_selection import train_test_split

    texts, labels = data
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    rare = [i for i, label in enumerate(labels) if counts[label] < 2]
    common = [i for i, label in enumerate(labels) if counts[label] >= 2]
    if len({labels[i] for i in common}) < 2:
        raise UnusableInputError(
            "need at least two labels with two or more rows each to hold out a test part"
        )
    tr, te = train_test_split(
        common, test_size=test_size, random_state=seed, stratify=[labels[i] for i in common]
    )
    tr = list(tr) + rare
    return ([texts[i] for i in tr], [labels[i] for i in tr]), (
        [texts[i] for i in te],
        [labels[i] for i in te],
    )
