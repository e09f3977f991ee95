"""Churn risk: gradient-boosted trees stacked with a logistic model, calibrated, explained.

The model is a LightGBM classifier (Ke et al. 2017, "LightGBM: A highly efficient gradient
boosting decision tree", NeurIPS) and an L2-regularised logistic regression over the same
profile; their out-of-fold log-odds are stacked by a two-input logistic regression
(Platt 1999 scaling, Wolpert 1992 stacking) or, on request, calibrated isotonically
(Zadrozny & Elkan 2002).  Because the stacker is linear in the two log-odds, a customer's
risk splits exactly into per-column contributions: TreeSHAP values of the trees
(Lundberg et al. 2020, Nature Machine Intelligence 2, 56-67) plus the linear model's
``coef * (x - mean)``; the largest positive ones are the customer's top reasons.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import pandas as pd

from voxloop.analyze.design import Encoder, fit_encoder, is_numeric_column
from voxloop.analyze.estimators import Estimator, register_model
from voxloop.errors import UnusableInputError

#: Text values counted as "has this service / flag".
_YES = ("yes", "true", "y", "1")


def _derived_spec(frame: pd.DataFrame, *, max_numeric: int = 6) -> list[tuple[str, str]]:
    """Pick the numeric column pairs whose ratio becomes a derived feature."""
    numeric = [
        str(c)
        for c in frame.columns
        if is_numeric_column(frame[c]) and pd.to_numeric(frame[c], errors="coerce").nunique() > 10
    ][:max_numeric]
    return [(a, b) for i, a in enumerate(numeric) for b in numeric[i + 1 :]]


def add_derived(frame: pd.DataFrame, ratios: list[tuple[str, str]]) -> pd.DataFrame:
    """Add ratio features of numeric pairs and the count of yes-flags to ``frame``."""
    out = frame.copy()
    for a, b in ratios:
        num = pd.to_numeric(out[a], errors="coerce")
        den = pd.to_numeric(out[b], errors="coerce")
        out[f"{a}/{b}"] = num / den.where(den > 0)
    text = out.select_dtypes(include=["object", "string", "category"])
    if text.shape[1]:
        lowered = text.astype("string").apply(lambda s: s.str.strip().str.lower())
        out["count of yes flags"] = lowered.isin(_YES).sum(axis=1).astype(np.float64)
    return out


@register_model("churn")
class ChurnModel(Estimator):
    """Calibrated churn-risk model with per-customer reasons.

    Parameters are LightGBM's (trees, learning rate, leaves, minimum leaf size, row and
    column subsampling, L2), ``c_linear`` (inverse L2 strength of the logistic part),
    ``calibration`` ("platt" stacks both models; "isotonic" maps their mean log-odds)
    and ``cv`` (folds for the out-of-fold scores the calibration is fitted on).
    """

    def __init__(
        self,
        *,
        n_estimators: int = 200,
        learning_rate: float = 0.04,
        num_leaves: int = 6,
        min_child_samples: int = 80,
        subsample: float = 0.7,
        colsample_bytree: float = 0.5,
        reg_lambda: float = 10.0,
        c_linear: float = 0.3,
        calibration: str = "platt",
        cv: int = 5,
        seed: int = 0,
        n_jobs: int = 1,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.c_linear = c_linear
        self.calibration = calibration
        self.cv = cv
        self.seed = seed
        self.n_jobs = n_jobs

    # -- parts -----------------------------------------------------------------------

    def _lgbm_params(self) -> dict[str, Any]:
        return {
            "objective": "binary",
            "n_estimators": self.n_estimators,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "subsample": self.subsample,
            "subsample_freq": 1,
            "colsample_bytree": self.colsample_bytree,
            "reg_lambda": self.reg_lambda,
            "cat_smooth": 50,
            "min_data_per_group": 50,
            "random_state": self.seed,
            "n_jobs": self.n_jobs,
            "verbose": -1,
        }

    def _fit_parts(self, frame: pd.DataFrame, y: np.ndarray) -> dict[str, Any]:
        import lightgbm as lgb
        from sklearn.linear_model import LogisticRegression

        encoder = fit_encoder(frame)
        codes = encoder.codes(frame)
        trees = lgb.LGBMClassifier(**self._lgbm_params())
        trees.fit(codes, y, categorical_feature=encoder.categorical_indices())
        design = encoder.transform(frame).matrix
        mean = design.mean(axis=0)
        scale = design.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        linear = LogisticRegression(C=self.c_linear, max_iter=5000)
        linear.fit((design - mean) / scale, y)
        return {
            "encoder": encoder,
            "booster": trees.booster_,
            "mean": mean,
            "scale": scale,
            "coef": linear.coef_[0] / scale,
            "intercept": float(linear.intercept_[0]),
        }

    @staticmethod
    def _raw(parts: dict[str, Any], frame: pd.DataFrame) -> np.ndarray:
        encoder: Encoder = parts["encoder"]
        # Scoring may use every core (num_threads=0: OpenMP default); training stays at
        # ``n_jobs`` so cross-validation does not oversubscribe the machine.
        tree_raw = parts["booster"].predict(encoder.codes(frame), raw_score=True, num_threads=0)
        design = encoder.transform(frame).matrix
        lin_raw = parts["intercept"] + (design - parts["mean"]) @ parts["coef"]
        return np.column_stack([tree_raw, lin_raw])

    # -- estimator API ---------------------------------------------------------------

    def fit(self, x: pd.DataFrame, y: np.ndarray) -> Self:
        """Fit trees and logistic model, then calibrate on out-of-fold scores; return self."""
        from sklearn.model_selection import StratifiedKFold

        y = np.asarray(y, dtype=np.float64)
        if len(x) != len(y):
            raise UnusableInputError(f"{len(x)} customers but {len(y)} labels")
        if not np.isin(y, (0.0, 1.0)).all() or y.min() == y.max():
            raise UnusableInputError("churn labels must be 0/1 and contain both classes")
        if self.calibration not in ("platt", "isotonic"):
            raise UnusableInputError(f"calibration must be platt or isotonic: {self.calibration}")
        ratios = _derived_spec(x)
        frame = add_derived(x.reset_index(drop=True), ratios)
        oof = np.zeros((len(y), 2))
        folds = StratifiedKFold(self.cv, shuffle=True, random_state=self.seed)
        for train, test in folds.split(frame, y):
            parts = self._fit_parts(frame.iloc[train], y[train])
            oof[test] = self._raw(parts, frame.iloc[test])
        self.ratios_ = ratios
        self.columns_ = [str(c) for c in x.columns]
        self.parts_ = self._fit_parts(frame, y)
        if self.calibration == "platt":
            from sklearn.linear_model import LogisticRegression

            stacker = LogisticRegression(C=1e6, max_iter=1000).fit(oof, y)
            self.stack_coef_ = stacker.coef_[0].astype(np.float64)
            self.stack_intercept_ = float(stacker.intercept_[0])
            self.isotonic_ = None
        else:
            from sklearn.isotonic import IsotonicRegression

            self.stack_coef_ = np.array([0.5, 0.5])
            self.stack_intercept_ = 0.0
            self.isotonic_ = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(
                oof.mean(axis=1), y
            )
        return self

    def _frame(self, x: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in self.columns_ if c not in x.columns]
        if missing:
            raise UnusableInputError(f"columns missing from the input: {', '.join(missing)}")
        return add_derived(x[self.columns_].reset_index(drop=True), self.ratios_)

    def decision_function(self, x: pd.DataFrame) -> np.ndarray:
        """Return the stacked log-odds of churn."""
        self._require_fitted()
        raw = self._raw(self.parts_, self._frame(x))
        result: np.ndarray = self.stack_intercept_ + raw @ self.stack_coef_
        return result

    def predict_proba(self, x: pd.DataFrame) -> np.ndarray:
        """Return the calibrated probability of churn per customer."""
        self._require_fitted()
        if self.isotonic_ is not None:
            raw = self._raw(self.parts_, self._frame(x))
            iso: np.ndarray = self.isotonic_.predict(raw.mean(axis=1))
            return iso
        result: np.ndarray = 1.0 / (1.0 + np.exp(-self.decision_function(x)))
        return result

    def contributions(self, x: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
        """Return per-column log-odds contributions (rows × derived columns) and their names.

        Sums with the bias give the stacked log-odds exactly (Platt calibration).
        """
        self._require_fitted()
        frame = self._frame(x)
        encoder: Encoder = self.parts_["encoder"]
        tree = self.parts_["booster"].predict(encoder.codes(frame), pred_contrib=True)[:, :-1]
        design = encoder.transform(frame)
        lin_cols = (design.matrix - self.parts_["mean"]) * self.parts_["coef"]
        lin = np.zeros_like(tree)
        np.add.at(lin.T, np.asarray(design.group_of_column), lin_cols.T)
        result = self.stack_coef_[0] * tree + self.stack_coef_[1] * lin
        return result, list(encoder.order)

    def reasons(self, x: pd.DataFrame, *, top: int = 3) -> list[list[dict[str, Any]]]:
        """Return each customer's top reasons: the columns that raise the risk most.

        Each reason names the ``feature``, its ``value`` for the customer (``None`` when
        missing), the raw ``reason`` text (``name = value``) and its log-odds
        ``contribution``; ``voxloop.analyze.wording`` turns them into sentences.
        """
        contrib, names = self.contributions(x)
        frame = self._frame(x)
        encoder: Encoder = self.parts_["encoder"]
        codes = encoder.codes(frame)
        order = np.argsort(-contrib, axis=1)[:, :top]
        out: list[list[dict[str, Any]]] = []
        for i in range(len(frame)):
            row = []
            for j in order[i]:
                if contrib[i, j] <= 0:
                    break
                code = float(codes[i, j])
                name = names[j]
                value: float | str | None
                if np.isnan(code):
                    value = None
                elif name in encoder.categorical:
                    value = encoder.categorical[name][int(code)]
                else:
                    value = code
                row.append(
                    {
                        "feature": name,
                        "reason": encoder.describe(int(j), code),
                        "value": value,
                        "contribution": float(contrib[i, j]),
                    }
                )
            out.append(row)
        return out

    def rank(
        self, x: pd.DataFrame, ids: list[str] | np.ndarray, *, top: int = 3, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Return the customers most at risk first, with probability and reasons."""
        prob = self.predict_proba(x)
        order = np.argsort(-prob, kind="stable")[:limit]
        sub = x.iloc[order]
        why = self.reasons(sub, top=top)
        return [
            {"id": str(ids[i]), "risk": float(prob[i]), "reasons": why[k]}
            for k, i in enumerate(order)
        ]
