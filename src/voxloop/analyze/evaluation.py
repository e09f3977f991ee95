"""Evaluate the satisfaction and churn models on labelled files (train/test or K-fold CV)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from voxloop.analyze.churn import ChurnModel
from voxloop.analyze.design import binary_target, read_table
from voxloop.analyze.drivers import KeyDriverModel
from voxloop.analyze.satisfaction import SatisfactionModel
from voxloop.errors import UnusableInputError


def _features(frame: pd.DataFrame, *, target: str, drop: list[str]) -> pd.DataFrame:
    if target not in frame.columns:
        raise UnusableInputError(
            f"target column {target!r} not found; columns are {', '.join(map(str, frame.columns))}"
        )
    unknown = [c for c in drop if c not in frame.columns]
    if unknown:
        raise UnusableInputError(f"columns to drop not found: {', '.join(unknown)}")
    # A column literally called "id" is a row key, never a driver.
    auto = [c for c in frame.columns if str(c).lower() == "id"]
    return frame.drop(columns=[target, *drop, *auto])


def _folds(y: np.ndarray, cv: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import StratifiedKFold

    if cv < 2:
        raise UnusableInputError("--cv needs at least 2 folds")
    split = StratifiedKFold(cv, shuffle=True, random_state=seed)
    return [(a, b) for a, b in split.split(np.zeros(len(y)), y)]


def _splits(
    train: str, test: str | None, cv: int | None, *, target: str, positive: str | None, seed: int
) -> tuple[pd.DataFrame, np.ndarray, list[tuple[np.ndarray, np.ndarray]], str]:
    """Load data and return (frame, y, folds, protocol); a test file is one extra fold."""
    frame = read_table(train)
    if test is not None:
        test_frame = read_table(test)
        missing = [c for c in frame.columns if c not in test_frame.columns]
        if missing:
            raise UnusableInputError(f"test file lacks columns: {', '.join(map(str, missing))}")
        n_train = len(frame)
        frame = pd.concat([frame, test_frame[frame.columns]], ignore_index=True)
        y = binary_target(frame[target], positive=positive, name=target)
        folds = [(np.arange(n_train), np.arange(n_train, len(frame)))]
        return frame, y, folds, "train/test"
    y = binary_target(frame[target], positive=positive, name=target)
    k = cv or 5
    return frame, y, _folds(y, k, seed), f"{k}-fold stratified CV on the train file"


def evaluate_satisfaction(
    *,
    train: str,
    test: str | None,
    target: str,
    positive: str | None = None,
    cv: int | None = None,
    drop: list[str] | None = None,
    drivers: list[str] | None = None,
    top_k: int = 5,
    n_boot: int = 0,
    seed: int = 0,
    model: SatisfactionModel | None = None,
) -> dict[str, Any]:
    """Measure satisfied/not prediction (accuracy, ROC-AUC) and name the top drivers.

    Drivers come from LMG relative importance on the training rows (all of them under CV).
    """
    from sklearn.metrics import accuracy_score, roc_auc_score

    frame, y, folds, protocol = _splits(
        train, test, cv, target=target, positive=positive, seed=seed
    )
    x = _features(frame, target=target, drop=drop or [])
    prob = np.full(len(y), np.nan)
    for tr, te in folds:
        m = SatisfactionModel(**(model.get_params() if model else {"seed": seed}))
        m.fit(x.iloc[tr], y[tr])
        prob[te] = m.predict_proba(x.iloc[te])
    scored = np.concatenate([te for _tr, te in folds])
    train_rows = folds[0][0] if test is not None else np.arange(len(y))
    driver_cols = drivers or [str(c) for c in x.columns]
    unknown = [c for c in driver_cols if c not in x.columns]
    if unknown:
        raise UnusableInputError(f"driver columns not found: {', '.join(unknown)}")
    kda = KeyDriverModel(n_boot=n_boot, top_k=top_k, seed=seed)
    kda.fit(x.iloc[train_rows][driver_cols], y[train_rows])
    out: dict[str, Any] = {
        "accuracy": float(accuracy_score(y[scored], prob[scored] >= 0.5)),
        "roc_auc": float(roc_auc_score(y[scored], prob[scored])),
        "top_drivers": kda.ranking()[:top_k],
        "n_train": int(len(train_rows)),
        "n_scored": int(len(scored)),
        "protocol": protocol,
    }
    if kda.stability_ is not None:
        out["top_drivers_identical_in_bootstrap"] = kda.stability_.top_k_identical
    return out


def evaluate_churn(
    *,
    train: str,
    test: str | None,
    target: str,
    id_column: str,
    positive: str | None = None,
    cv: int | None = None,
    drop: list[str] | None = None,
    seed: int = 0,
    model: ChurnModel | None = None,
) -> dict[str, Any]:
    """Measure calibrated churn risk on held-out customers (ROC-AUC, PR-AUC, Brier)."""
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    frame, y, folds, protocol = _splits(
        train, test, cv, target=target, positive=positive, seed=seed
    )
    if id_column not in frame.columns:
        raise UnusableInputError(f"id column {id_column!r} not found")
    ids = frame[id_column].astype("string")
    if test is not None:
        overlap = set(ids.iloc[folds[0][0]]) & set(ids.iloc[folds[0][1]])
        if overlap:
            raise UnusableInputError(
                f"{len(overlap)} customers are in both train and test (e.g. "
                f"{sorted(overlap)[0]}); held-out customers must be new"
            )
    x = _features(frame, target=target, drop=[id_column, *(drop or [])])
    prob = np.full(len(y), np.nan)
    for tr, te in folds:
        m = ChurnModel(**(model.get_params() if model else {"seed": seed}))
        m.fit(x.iloc[tr], y[tr])
        prob[te] = m.predict_proba(x.iloc[te])
    scored = np.concatenate([te for _tr, te in folds])
    return {
        "roc_auc": float(roc_auc_score(y[scored], prob[scored])),
        "pr_auc": float(average_precision_score(y[scored], prob[scored])),
        "brier": float(brier_score_loss(y[scored], prob[scored])),
        "n_scored": int(len(scored)),
        "positive_rate": float(y[scored].mean()),
        "protocol": protocol,
    }
