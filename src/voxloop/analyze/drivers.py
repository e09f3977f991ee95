"""Key-driver analysis: regression, relative importance, ranking stability, short boards.

Regression follows the textbook estimators (OLS with classical standard errors; logistic
regression by Newton-Raphson / IRLS, McCullagh & Nelder 1989, ch. 4).  Relative
importance is the LMG / Shapley decomposition of R² (Lindeman, Merenda & Gold 1980;
Grömping 2007, "Estimators of relative importance in linear regression based on variance
decomposition", The American Statistician 61(2)), which equals the general dominance
weights of Budescu (1993).  Every subset R² comes from the correlation matrix, so the
exact decomposition costs 2^p small solves and never touches the rows again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import expit

from voxloop.analyze.design import fit_encoder
from voxloop.analyze.estimators import Estimator, register_model
from voxloop.errors import UnusableInputError

#: Largest number of driver groups decomposed exactly (2^15 subset regressions).
EXACT_MAX_GROUPS = 15


@dataclass
class Regression:
    """Fitted regression: coefficients with inference and goodness of fit."""

    kind: str  # "ols" or "logit"
    names: list[str]  # "const" first
    coef: np.ndarray
    std_err: np.ndarray
    statistic: np.ndarray  # t (OLS) or z (logit)
    p_values: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    std_coef: np.ndarray  # standardised slopes (NaN for the intercept)
    r2: float  # R² (OLS) or McFadden pseudo-R² (logit)
    adj_r2: float
    n: int
    log_likelihood: float


def _check_xy(x: np.ndarray, y: np.ndarray) -> None:
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise UnusableInputError(f"drivers {x.shape} and outcome {y.shape} do not line up")
    if x.shape[0] <= x.shape[1] + 1:
        raise UnusableInputError(
            f"{x.shape[0]} rows are too few for {x.shape[1]} drivers and an intercept"
        )
    bad = ~np.isfinite(x)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise UnusableInputError(f"row {row}: driver column {col} is missing or not finite")
    if not np.isfinite(y).all():
        raise UnusableInputError(f"row {int(np.flatnonzero(~np.isfinite(y))[0])}: outcome missing")


def ols(x: np.ndarray, y: np.ndarray, names: list[str], *, alpha: float = 0.05) -> Regression:
    """Fit ordinary least squares with an intercept and classical inference.

    Parameters
    ----------
    x : (n, p) drivers, y : (n,) outcome, names : p driver names, alpha : CI level 1 - alpha.

    References
    ----------
    Greene, W. H. (2012). Econometric Analysis, 7th ed., ch. 4.
    """
    _check_xy(x, y)
    n, p = x.shape
    # Centred normal equations: one pass over the rows (QR of a million-row design costs
    # far more) and, after centring, as well conditioned as the data allow.
    x_mean = x.mean(axis=0)
    y_mean = float(y.mean())
    xc = x - x_mean
    gram = xc.T @ xc
    scale = np.sqrt(np.diag(gram))
    if np.any(scale == 0):
        raise UnusableInputError("a driver is constant; drop it")
    corr = gram / np.outer(scale, scale)
    eig = np.linalg.eigvalsh(corr)
    if eig[0] < 1e-12 * eig[-1]:
        raise UnusableInputError("drivers are perfectly collinear; drop a redundant column")
    gram_inv = np.linalg.inv(corr) / np.outer(scale, scale)
    slopes = gram_inv @ (xc.T @ (y - y_mean))
    intercept = y_mean - float(x_mean @ slopes)
    coef = np.concatenate([[intercept], slopes])
    resid = y - intercept - x @ slopes
    df = n - p - 1
    rss = float(resid @ resid)
    sigma2 = rss / df
    cov_slopes = sigma2 * gram_inv
    var_intercept = sigma2 / n + float(x_mean @ cov_slopes @ x_mean)
    se = np.sqrt(np.concatenate([[var_intercept], np.diag(cov_slopes)]))
    tval = coef / se
    pval = 2 * stats.t.sf(np.abs(tval), df)
    crit = stats.t.ppf(1 - alpha / 2, df)
    tss = float(((y - y.mean()) ** 2).sum())
    r2 = 1 - rss / tss if tss > 0 else 0.0
    adj = 1 - (1 - r2) * (n - 1) / df
    sd_x = x.std(axis=0, ddof=1)
    sd_y = y.std(ddof=1)
    std_coef = np.concatenate([[np.nan], coef[1:] * sd_x / sd_y if sd_y > 0 else coef[1:] * 0])
    llf = -n / 2 * (math.log(2 * math.pi) + math.log(rss / n) + 1)
    return Regression(
        "ols",
        ["const", *names],
        coef,
        se,
        tval,
        pval,
        coef - crit * se,
        coef + crit * se,
        std_coef,
        r2,
        adj,
        n,
        llf,
    )


def logit(
    x: np.ndarray,
    y: np.ndarray,
    names: list[str],
    *,
    alpha: float = 0.05,
    max_iter: int = 100,
    tol: float = 1e-10,
) -> Regression:
    """Fit logistic regression by Newton-Raphson (IRLS) with Wald inference.

    Parameters
    ----------
    x : (n, p) drivers, y : (n,) 0/1 outcome, names : p driver names, alpha : CI level.

    References
    ----------
    McCullagh, P. & Nelder, J. A. (1989). Generalized Linear Models, 2nd ed., ch. 4.
    McFadden, D. (1974). Conditional logit analysis of qualitative choice behavior.
    """
    _check_xy(x, y)
    if not np.isin(y, (0.0, 1.0)).all():
        raise UnusableInputError("logistic regression needs a 0/1 outcome")
    n, p = x.shape
    design = np.column_stack([np.ones(n), x])
    coef = np.zeros(p + 1)
    for _ in range(max_iter):
        prob = expit(design @ coef)
        weight = prob * (1 - prob)
        hessian = (design * weight[:, None]).T @ design
        step = np.linalg.solve(hessian, design.T @ (y - prob))
        coef = coef + step
        if np.max(np.abs(step)) < tol:
            break
    else:
        raise UnusableInputError(
            "logistic regression did not converge (perfect separation?); drop the "
            "driver that predicts the outcome exactly"
        )
    prob = expit(design @ coef)
    weight = prob * (1 - prob)
    cov = np.linalg.inv((design * weight[:, None]).T @ design)
    se = np.sqrt(np.diag(cov))
    zval = coef / se
    pval = 2 * stats.norm.sf(np.abs(zval))
    crit = stats.norm.ppf(1 - alpha / 2)
    eps = 1e-300
    llf = float(np.sum(y * np.log(prob + eps) + (1 - y) * np.log(1 - prob + eps)))
    ybar = float(y.mean())
    llnull = n * (ybar * math.log(ybar) + (1 - ybar) * math.log(1 - ybar))
    pseudo = 1 - llf / llnull
    adj = 1 - (llf - p) / llnull
    std_coef = np.concatenate([[np.nan], coef[1:] * x.std(axis=0, ddof=1)])
    return Regression(
        "logit",
        ["const", *names],
        coef,
        se,
        zval,
        pval,
        coef - crit * se,
        coef + crit * se,
        std_coef,
        pseudo,
        adj,
        n,
        llf,
    )


# ---------------------------------------------------------------------------
# Relative importance (LMG / Shapley decomposition of R²)


def correlation(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Return the correlation matrix of ``[x, y]`` (optionally frequency-weighted)."""
    data = np.column_stack([x, y])
    if weights is None:
        centred = data - data.mean(axis=0)
        cov = centred.T @ centred
    else:
        mean = weights @ data / weights.sum()
        centred = data - mean
        cov = (centred * weights[:, None]).T @ centred
    sd = np.sqrt(np.diag(cov))
    sd = np.where(sd > 0, sd, 1.0)
    corr: np.ndarray = cov / np.outer(sd, sd)
    return corr


def pairwise_correlation(x: np.ndarray, y: np.ndarray, *, floor: float = 0.05) -> np.ndarray:
    """Return the correlation matrix of ``[x, y]`` from pairwise-complete observations.

    Survey factors are asked only where relevant, so most rows miss some drivers; each
    pair uses the rows where both are present.  Such a matrix is often indefinite, and
    a near-zero eigenvalue would let R² reach 1, so eigenvalues are clipped at ``floor``
    and the matrix rescaled to unit diagonal; R² then stays below 1 - floor.

    References
    ----------
    Higham, N. J. (2002). Computing the nearest correlation matrix. IMA J. Numer. Anal.
    22(3), 329-343 (here the simpler one-step eigenvalue clipping).
    """
    data = np.column_stack([x, y])
    seen = np.isfinite(data).astype(np.float64)
    filled = np.where(seen > 0, data, 0.0)
    n = seen.T @ seen
    s1 = filled.T @ seen  # s1[i, j] = sum of column i over rows where j is present
    s2 = (filled**2).T @ seen
    sxy = filled.T @ filled
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sxy / n - (s1 / n) * (s1.T / n)
        var_i = s2 / n - (s1 / n) ** 2
        corr = cov / np.sqrt(var_i * var_i.T)
    corr = np.where(np.isfinite(corr) & (n >= 3), corr, 0.0)
    np.fill_diagonal(corr, 1.0)
    vals, vecs = np.linalg.eigh(corr)
    if vals.min() < floor:
        fixed = (vecs * np.maximum(vals, floor)) @ vecs.T
        d = np.sqrt(np.diag(fixed))
        corr = fixed / np.outer(d, d)
    result: np.ndarray = corr
    return result


def _group_columns(group_of_column: list[int], n_groups: int) -> list[np.ndarray]:
    cols = np.asarray(group_of_column)
    return [np.flatnonzero(cols == g) for g in range(n_groups)]


def subset_r2(corr: np.ndarray, group_of_column: list[int], n_groups: int) -> np.ndarray:
    """Return R² of every subset of driver groups, indexed by bitmask (2^g values).

    R²(S) = r_Sy' R_SS⁻¹ r_Sy from the correlation matrix; subsets with the same number of
    columns are solved together in one batched call.
    """
    p = corr.shape[0] - 1
    r_xx = corr[:p, :p]
    r_xy = corr[:p, p]
    masks = np.arange(1 << n_groups, dtype=np.int64)
    group_bits = ((masks[:, None] >> np.arange(n_groups)) & 1).astype(bool)
    col_bits = group_bits[:, np.asarray(group_of_column, dtype=np.int64)]
    sizes = col_bits.sum(axis=1)
    out = np.zeros(len(masks))
    ridge = 1e-10 * np.eye(p)
    for k in range(1, p + 1):
        rows = np.flatnonzero(sizes == k)
        if rows.size == 0:
            continue
        # Stable argsort of "not selected" lists the selected columns first, in order.
        idx = np.argsort(~col_bits[rows], axis=1, kind="stable")[:, :k]
        a = r_xx[idx[:, :, None], idx[:, None, :]] + ridge[:k, :k]
        b = r_xy[idx]
        sol = np.linalg.solve(a, b[..., None])[..., 0]
        out[rows] = np.einsum("ij,ij->i", b, sol)
    return out


def lmg_exact(corr: np.ndarray, group_of_column: list[int], n_groups: int) -> np.ndarray:
    """Return the exact LMG (Shapley) share of R² of each driver group.

    References
    ----------
    Lindeman, R. H., Merenda, P. F. & Gold, R. Z. (1980). Introduction to Bivariate and
    Multivariate Analysis, p. 119 ff.; Grömping, U. (2007), Am. Stat. 61(2), 139-147.
    """
    if n_groups > 22:
        raise UnusableInputError(f"{n_groups} driver groups are too many for exact LMG")
    r2 = subset_r2(corr, group_of_column, n_groups)
    masks = np.arange(1 << n_groups, dtype=np.int64)
    popcount = np.zeros(len(masks), dtype=np.int64)
    for g in range(n_groups):
        popcount += (masks >> g) & 1
    g_fact = math.factorial(n_groups)
    weight = np.array(
        [math.factorial(s) * math.factorial(n_groups - s - 1) / g_fact for s in range(n_groups)]
    )
    shares = np.zeros(n_groups)
    for g in range(n_groups):
        without = masks[((masks >> g) & 1) == 0]
        gain = r2[without | (1 << g)] - r2[without]
        shares[g] = float(weight[popcount[without]] @ gain)
    return shares


def lmg_sampled(
    corr: np.ndarray,
    group_of_column: list[int],
    n_groups: int,
    *,
    n_permutations: int = 2000,
    seed: int = 0,
    permutations: np.ndarray | None = None,
) -> np.ndarray:
    """Estimate LMG shares by sampling orderings of the driver groups.

    For one ordering, the Cholesky factor L of the reordered R_XX gives every prefix R² at
    once: with z = L⁻¹ r_xy, R²(first k columns) = Σ_{i≤k} z_i².  Each sampled ordering is
    paired with its reverse (antithetic sampling) to reduce the variance.

    References
    ----------
    Castro, J., Gómez, D. & Tejada, J. (2009). Polynomial calculation of the Shapley value
    based on sampling. Computers & Operations Research 36(5), 1726-1730.
    """
    perms = (
        permutations
        if permutations is not None
        else sample_orderings(n_groups, n_permutations=n_permutations, seed=seed)
    )
    p = corr.shape[0] - 1
    r_xx = corr[:p, :p] + 1e-10 * np.eye(p)
    r_xy = corr[:p, p]
    columns = _group_columns(group_of_column, n_groups)
    shares = np.zeros(n_groups)
    chunk = 512
    for start in range(0, len(perms), chunk):
        block = perms[start : start + chunk]
        order = np.array([np.concatenate([columns[g] for g in perm]) for perm in block])
        lower = np.linalg.cholesky(r_xx[order[:, :, None], order[:, None, :]])
        z = np.linalg.solve(lower, r_xy[order][..., None])[..., 0]
        prefix = np.cumsum(z**2, axis=1)
        ends = np.cumsum(np.array([[len(columns[g]) for g in perm] for perm in block]), axis=1)
        at_end = np.take_along_axis(prefix, ends - 1, axis=1)
        gain = np.diff(np.column_stack([np.zeros(len(block)), at_end]), axis=1)
        np.add.at(shares, block.ravel(), gain.ravel())
    result: np.ndarray = shares / len(perms)
    return result


def sample_orderings(n_groups: int, *, n_permutations: int, seed: int) -> np.ndarray:
    """Draw random orderings of the groups, each followed by its reverse."""
    rng = np.random.default_rng(seed)
    half = max(1, n_permutations // 2)
    forward = np.argsort(rng.random((half, n_groups)), axis=1)
    return np.concatenate([forward, forward[:, ::-1]])


def relative_importance(
    corr: np.ndarray,
    group_of_column: list[int],
    n_groups: int,
    *,
    exact_max: int = EXACT_MAX_GROUPS,
    n_permutations: int = 2000,
    seed: int = 0,
) -> tuple[np.ndarray, str]:
    """Return LMG shares per group and the method used ("exact" or "sampled")."""
    if n_groups <= exact_max:
        return lmg_exact(corr, group_of_column, n_groups), "exact"
    shares = lmg_sampled(corr, group_of_column, n_groups, n_permutations=n_permutations, seed=seed)
    return shares, "sampled"


@dataclass
class RankingStability:
    """How often the bootstrap reproduces the full-sample driver ranking."""

    top_k: int
    n_boot: int
    top_k_identical: float  # share of resamples with the same ordered top-k
    top_k_same_set: float  # share with the same top-k drivers, any order
    rank_mean: np.ndarray
    rank_ci_low: np.ndarray
    rank_ci_high: np.ndarray
    share_ci_low: np.ndarray
    share_ci_high: np.ndarray


def bootstrap_ranking(
    x: np.ndarray,
    y: np.ndarray,
    group_of_column: list[int],
    n_groups: int,
    *,
    reference: np.ndarray,
    top_k: int = 5,
    n_boot: int = 100,
    seed: int = 0,
    exact_max: int = EXACT_MAX_GROUPS,
    n_permutations: int = 2000,
) -> RankingStability:
    """Bootstrap the rows and measure the stability of the LMG driver ranking.

    Resamples are frequency weights (multinomial counts), and sampled LMG reuses the same
    orderings in every resample so Monte-Carlo noise does not pose as instability.

    References
    ----------
    Efron, B. & Tibshirani, R. (1993). An Introduction to the Bootstrap, ch. 6.
    """
    rng = np.random.default_rng(seed)
    n = x.shape[0]
    k = min(top_k, n_groups)
    ref_top = np.argsort(-reference, kind="stable")[:k]
    perms = (
        None
        if n_groups <= exact_max
        else sample_orderings(n_groups, n_permutations=n_permutations, seed=seed)
    )
    ranks = np.zeros((n_boot, n_groups))
    shares_all = np.zeros((n_boot, n_groups))
    same_order = 0
    same_set = 0
    for b in range(n_boot):
        weights = rng.multinomial(n, np.full(n, 1.0 / n)).astype(np.float64)
        corr = correlation(x, y, weights)
        if perms is None:
            shares = lmg_exact(corr, group_of_column, n_groups)
        else:
            shares = lmg_sampled(corr, group_of_column, n_groups, permutations=perms)
        order = np.argsort(-shares, kind="stable")
        ranks[b, order] = np.arange(1, n_groups + 1)
        shares_all[b] = shares
        same_order += bool(np.array_equal(order[:k], ref_top))
        same_set += bool(set(order[:k].tolist()) == set(ref_top.tolist()))
    return RankingStability(
        k,
        n_boot,
        same_order / n_boot,
        same_set / n_boot,
        ranks.mean(axis=0),
        np.quantile(ranks, 0.025, axis=0),
        np.quantile(ranks, 0.975, axis=0),
        np.quantile(shares_all, 0.025, axis=0),
        np.quantile(shares_all, 0.975, axis=0),
    )


@dataclass
class Quadrant:
    """One driver placed on the importance × performance matrix."""

    name: str
    importance: float
    performance: float
    quadrant: str  # "short_board" | "strength" | "maintain" | "low_priority"


def importance_performance(
    names: list[str], importance: np.ndarray, performance: np.ndarray
) -> list[Quadrant]:
    """Place drivers on the importance × performance matrix split at the means.

    High importance with low performance is a "short board" (fix first), high importance
    with high performance a "strength", low/high "maintain", low/low "low_priority".

    References
    ----------
    Martilla, J. A. & James, J. C. (1977). Importance-performance analysis. Journal of
    Marketing 41(1), 77-79.
    """
    imp_cut = float(np.mean(importance))
    perf_cut = float(np.nanmean(performance))
    out: list[Quadrant] = []
    for name, imp, perf in zip(names, importance, performance, strict=True):
        high_imp = imp >= imp_cut
        high_perf = perf >= perf_cut
        if high_imp and not high_perf:
            quadrant = "short_board"
        elif high_imp:
            quadrant = "strength"
        elif high_perf:
            quadrant = "maintain"
        else:
            quadrant = "low_priority"
        out.append(Quadrant(name, float(imp), float(perf), quadrant))
    # Worst short boards first: most important and furthest below the mean performance.
    out.sort(key=lambda q: (q.quadrant != "short_board", -q.importance))
    return out


@register_model("drivers")
class KeyDriverModel(Estimator):
    """Key-driver analysis of one outcome over factor ratings and customer attributes.

    Fits OLS (numeric outcome) or logistic regression (0/1 outcome), decomposes R² of the
    linear model into LMG shares per driver group (exact up to ``exact_max`` groups,
    sampled orderings beyond), optionally bootstraps the ranking, and places numeric
    drivers on the importance × performance matrix.
    """

    def __init__(
        self,
        *,
        outcome: str = "auto",
        exact_max: int = EXACT_MAX_GROUPS,
        n_permutations: int = 2000,
        n_boot: int = 0,
        top_k: int = 5,
        seed: int = 0,
        missing: str = "impute",
    ) -> None:
        self.outcome = outcome
        self.exact_max = exact_max
        self.n_permutations = n_permutations
        self.n_boot = n_boot
        self.top_k = top_k
        self.seed = seed
        self.missing = missing

    def fit(self, x: pd.DataFrame, y: np.ndarray) -> Self:
        """Fit the regression and the relative importances; return ``self``."""
        y = np.asarray(y, dtype=np.float64)
        if len(x) != len(y):
            raise UnusableInputError(f"{len(x)} rows of drivers but {len(y)} outcomes")
        encoder = fit_encoder(x)
        design = encoder.transform(x)
        kind = self.outcome
        if kind == "auto":
            kind = "logit" if np.isin(y, (0.0, 1.0)).all() else "ols"
        if kind not in ("ols", "logit"):
            raise UnusableInputError(f"outcome must be auto, ols or logit, not {self.outcome!r}")
        try:
            fitter = logit if kind == "logit" else ols
            regression = fitter(design.matrix, y, design.columns)
        except np.linalg.LinAlgError as exc:
            raise UnusableInputError(f"drivers are collinear: {exc}") from exc
        n_groups = len(design.groups)
        if self.missing == "pairwise":
            raw = encoder.codes(x)
            if encoder.categorical:
                # Level codes are not numbers: pairwise mode keeps numeric drivers only.
                raise UnusableInputError("missing='pairwise' needs numeric drivers only")
            corr = pairwise_correlation(raw, y)
        elif self.missing == "impute":
            corr = correlation(design.matrix, y)
        else:
            raise UnusableInputError(f"missing must be impute or pairwise: {self.missing!r}")
        shares, method = relative_importance(
            corr,
            design.group_of_column,
            n_groups,
            exact_max=self.exact_max,
            n_permutations=self.n_permutations,
            seed=self.seed,
        )
        performance = np.array(
            [
                float(np.nanmean(pd.to_numeric(x[design.groups[g]], errors="coerce")))
                if design.groups[g] in encoder.numeric
                else np.nan
                for g in range(n_groups)
            ]
        )
        self.encoder_ = encoder
        self.kind_ = kind
        self.regression_ = regression
        self.groups_ = list(design.groups)
        self.importance_ = shares
        self.importance_method_ = method
        self.r2_linear_ = float(shares.sum())
        self.performance_ = performance
        numeric = [g for g in range(n_groups) if not np.isnan(performance[g])]
        self.quadrants_ = (
            importance_performance(
                [self.groups_[g] for g in numeric], shares[numeric], performance[numeric]
            )
            if numeric
            else []
        )
        self.stability_: RankingStability | None = None
        if self.n_boot > 0 and self.missing == "impute":
            self.stability_ = bootstrap_ranking(
                design.matrix,
                y,
                design.group_of_column,
                n_groups,
                reference=shares,
                top_k=self.top_k,
                n_boot=self.n_boot,
                seed=self.seed,
                exact_max=self.exact_max,
                n_permutations=self.n_permutations,
            )
        return self

    def ranking(self) -> list[str]:
        """Return the driver groups from most to least important."""
        self._require_fitted()
        order = np.argsort(-self.importance_, kind="stable")
        return [self.groups_[i] for i in order]

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        """Predict the outcome (probability for a logistic fit) from the regression."""
        self._require_fitted()
        design = self.encoder_.transform(x)
        linear = self.regression_.coef[0] + design.matrix @ self.regression_.coef[1:]
        result: np.ndarray = expit(linear) if self.kind_ == "logit" else linear
        return result

    def summary(self) -> dict[str, Any]:
        """Return the analysis as plain JSON-ready data."""
        self._require_fitted()
        reg = self.regression_
        total = float(self.importance_.sum()) or 1.0
        order = np.argsort(-self.importance_, kind="stable")
        drivers = []
        for rank, g in enumerate(order, start=1):
            item: dict[str, Any] = {
                "driver": self.groups_[g],
                "rank": rank,
                "importance": float(self.importance_[g]),
                "share": float(self.importance_[g] / total),
                "performance": None
                if np.isnan(self.performance_[g])
                else float(self.performance_[g]),
            }
            if self.stability_ is not None:
                item["rank_ci"] = [
                    float(self.stability_.rank_ci_low[g]),
                    float(self.stability_.rank_ci_high[g]),
                ]
            drivers.append(item)
        coefficients = [
            {
                "term": reg.names[i],
                "coef": float(reg.coef[i]),
                "std_err": float(reg.std_err[i]),
                "p_value": float(reg.p_values[i]),
                "ci": [float(reg.ci_low[i]), float(reg.ci_high[i])],
                "std_coef": None if np.isnan(reg.std_coef[i]) else float(reg.std_coef[i]),
            }
            for i in range(len(reg.names))
        ]
        out: dict[str, Any] = {
            "model": reg.kind,
            "n": reg.n,
            "r2" if reg.kind == "ols" else "pseudo_r2": reg.r2,
            "r2_linear": self.r2_linear_,
            "importance_method": self.importance_method_,
            "drivers": drivers,
            "coefficients": coefficients,
            "quadrants": [vars(q) for q in self.quadrants_],
            "short_boards": [q.name for q in self.quadrants_ if q.quadrant == "short_board"],
        }
        if self.stability_ is not None:
            out["stability"] = {
                "top_k": self.stability_.top_k,
                "n_boot": self.stability_.n_boot,
                "top_k_identical": self.stability_.top_k_identical,
                "top_k_same_set": self.stability_.top_k_same_set,
            }
        return out
