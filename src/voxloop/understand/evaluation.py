"""Measure text classifiers on labelled files: accuracy, macro-F1, per-class P/R, speed."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson

from voxloop.errors import UnusableInputError
from voxloop.understand.encoders import Encoder, HybridClassifier
from voxloop.understand.estimators import TextClassifier

TASKS = ("scenario", "sentiment", "emotion", "intent")
#: Domain name of the rows a model is evaluated on when other-domain rows also train it.
_TARGET = "target"


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


def read_labelled(path: Path, *, text_col: str, label_col: str) -> tuple[list[str], list[str]]:
    """Read texts and labels from CSV, CSV.gz, JSON Lines or a JSON array file."""
    if not path.exists():
        raise UnusableInputError(f"{path}: file not found")
    name = path.name.lower()
    try:
        if name.endswith((".csv", ".csv.gz", ".tsv")):
            opts = pacsv.ConvertOptions(
                column_types={text_col: pa.string(), label_col: pa.string()}
            )
            parse = pacsv.ParseOptions(delimiter="\t" if name.endswith(".tsv") else ",")
            table = pacsv.read_csv(path, parse_options=parse, convert_options=opts)
        elif name.endswith((".jsonl", ".ndjson", ".jsonl.gz")):
            table = pajson.read_json(path)
        elif name.endswith(".json"):
            import json

            rows = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(rows, list):
                raise UnusableInputError(f"{path}: a JSON file must hold a list of objects")
            table = pa.Table.from_pylist(rows)
        else:
            raise UnusableInputError(f"{path}: unsupported file type (csv, csv.gz, jsonl, json)")
    except (pa.ArrowInvalid, ValueError) as exc:
        if isinstance(exc, UnusableInputError):
            raise
        raise UnusableInputError(f"{path}: cannot parse: {exc}") from exc
    for col in (text_col, label_col):
        if col not in table.column_names:
            raise UnusableInputError(
                f"{path}: no column {col!r}; columns are {', '.join(table.column_names)}"
            )
    texts = [("" if t is None else str(t)) for t in table.column(text_col).to_pylist()]
    labels_raw = table.column(label_col).to_pylist()
    for i, label in enumerate(labels_raw):
        if label is None or str(label) == "":
            raise UnusableInputError(f"{path}: row {i + 1} has an empty {label_col!r}")
    return texts, [str(v) for v in labels_raw]


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
