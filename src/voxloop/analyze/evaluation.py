"""Evaluate the satisfaction and churn models on labelled files (train/test or K-fold CV)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from voxloop.analyze.churn import ChurnModel
from voxloop.analyze.design import binary_target, read_table
from voxloop.analyze.drivers import KeyDriverModel
from voxloop.analyze.satisfaction import SatisfactionModel
from voxloop.config import Settings
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
    if target not in frame.columns:
        raise UnusableInputError(
            f"target column {target!r} not found in {train}; columns are "
            f"{', '.join(map(str, frame.columns))}"
        )
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
        "n_train": len(train_rows),
        "n_scored": len(scored),
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
        "n_scored": len(scored),
        "positive_rate": float(y[scored].mean()),
        "protocol": protocol,
    }


def evaluate_operator(*, settings: Settings, truth_path: str) -> dict[str, Any]:
    """Compare store-backed analyses with a generated operator's ``ground_truth.json``.

    Checks that the top segment rule selects the planted dissatisfied customers, that the
    planted short board is the top short board, and where the planted churners rank in
    out-of-fold churn risk (share of them in the top decile of all customers).
    """
    import json

    import pyarrow as pa

    from voxloop.analyze import service
    from voxloop.ingest.service import pseudonymise

    try:
        truth = json.loads(Path(truth_path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UnusableInputError(f"cannot read ground truth {truth_path}: {exc}") from exc

    def pseudo(ids: list[str]) -> set[str]:
        if not ids:
            return set()
        return set(pseudonymise(key=settings.secret_key, ids=pa.array(ids)).to_pylist())

    out: dict[str, Any] = {}
    planted = truth.get("dissatisfied_segment") or {}
    drivers = service.drivers_analysis(settings=settings)
    out["top_driver"] = drivers["drivers"][0]["driver"] if drivers["drivers"] else None
    out["short_boards"] = drivers["short_boards"]
    out["planted_short_board"] = planted.get("short_board")
    out["short_board_ok"] = bool(
        drivers["short_boards"] and drivers["short_boards"][0] == planted.get("short_board")
    )
    frame, _ = service.survey_frame(settings=settings)
    segs = service.segments_analysis(settings=settings)
    if segs["rules"] and planted:
        from voxloop.analyze.segments import Condition, rule_mask

        top = segs["rules"][0]
        conds = [
            Condition(
                c["column"],
                c["op"],
                tuple(c["value"]) if isinstance(c["value"], list) else c["value"],
            )
            for c in top["conditions"]
        ]
        dissatisfied = frame["overall"] <= service.DISSATISFIED_AT_MOST
        hit = rule_mask(frame, conds) & dissatisfied.to_numpy()
        found = set(frame.loc[hit, "customer_id"].dropna().astype(str))
        target = pseudo(list(planted.get("customer_ids", [])))
        target_d = set(frame.loc[dissatisfied.to_numpy(), "customer_id"].dropna().astype(str))
        target &= target_d
        inter = len(found & target)
        out["top_rule"] = top["text"]
        out["top_rule_precision"] = inter / len(found) if found else 0.0
        out["top_rule_recall"] = inter / len(target) if target else 0.0
    churners = pseudo(list(truth.get("churn_customers", [])))
    if churners:
        churn = service.churn_analysis(settings=settings)
        risk = churn["oof_risk"]
        values = np.array(list(risk.values()))
        cut = float(np.quantile(values, 0.9))
        ranked = [risk[c] >= cut for c in churners if c in risk]
        out["churn_validation"] = churn["validation"]
        out["planted_churners"] = len(ranked)
        out["planted_churners_in_top_decile"] = float(np.mean(ranked)) if ranked else 0.0
    return out
