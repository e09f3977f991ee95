"""Surge detectors over many count series at once (one window per ``update`` call).

The expected count of series ``s`` in a window is ``rate_s x profile[day type, slot]``:
``rate_s`` is an exponentially weighted, bias-corrected mean of the de-seasonalised
counts and ``profile`` a shared seasonal profile by time of day and day type (workday,
or weekend/public holiday, with make-up workdays counted as workdays, from the
``chinese-calendar`` package).  A window surges when the upper tail probability of its
count under a Poisson or negative-binomial law is below ``alpha``, the count reaches
``min_count`` and the series did not alert in the last ``cooldown`` windows.  Windows that
surge are learnt clipped near their expectation, so an incident does not become the
baseline while a lasting change of level is still absorbed.

All state is arrays over series, so a window costs a few vectorised operations whatever
the number of series.

References
----------
Farrington, Andrews, Beale & Catchpole (1996), "A statistical algorithm for the early
detection of outbreaks of infectious disease", JRSS A 159(3) (count-tail surveillance).
Noufaily et al. (2013), "An improved algorithm for outbreak detection in multiple
surveillance systems", Statistics in Medicine 32(7) (negative-binomial thresholds).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
from scipy import stats

from voxloop.detect.series import GRANULARITY_SECONDS, LOCAL_OFFSET_S

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def is_offday(day: date) -> bool:
    """Return whether ``day`` is a weekend or Chinese public holiday (make-up days work)."""
    import chinese_calendar

    try:
        return not bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        # The package only knows the years the State Council has published.
        return day.weekday() >= 5


def bucket_calendar(bucket: int, granularity: str) -> tuple[int, int]:
    """Return (day type: 0 workday / 1 off day, slot of the day) of a local bucket."""
    width = GRANULARITY_SECONDS[granularity]
    local = datetime.fromtimestamp(bucket * width - LOCAL_OFFSET_S, tz=UTC) + timedelta(
        seconds=LOCAL_OFFSET_S
    )
    slot = (local.hour * 3600 + local.minute * 60) // width if width < 86400 else 0
    return int(is_offday(local.date())), int(slot)


class SurgeDetector:
    """Seasonal count-tail surge detector, vectorised across series.

    Parameters
    ----------
    granularity : "5min", "hour" or "day".
    alpha : tail probability below which a window surges.
    dispersion : negative-binomial dispersion ``phi`` (variance ``mu + phi mu^2``);
        0 gives the Poisson law.
    min_count : smallest count that may alert (minimum-volume floor).
    cooldown : windows after an alert during which the series does not alert again.
    halflife_days : half-life of the rate and profile averages, in days.
    warmup_days : days learnt before any alert.
    min_rate : floor of the expected count, so empty series are not infinitely surprised.
    """

    name: ClassVar[str] = "seasonal_nb"
    _params: ClassVar[tuple[str, ...]] = (
        "granularity",
        "alpha",
        "dispersion",
        "min_count",
        "cooldown",
        "halflife_days",
        "warmup_days",
        "min_rate",
    )

    def __init__(
        self,
        granularity: str = "hour",
        alpha: float = 1e-6,
        dispersion: float = 0.2,
        min_count: int = 5,
        cooldown: int = 24,
        halflife_days: float = 7.0,
        warmup_days: float = 7.0,
        min_rate: float = 0.02,
    ) -> None:
        self.granularity = granularity
        self.alpha = alpha
        self.dispersion = dispersion
        self.min_count = min_count
        self.cooldown = cooldown
        self.halflife_days = halflife_days
        self.warmup_days = warmup_days
        self.min_rate = min_rate

    # -- state -------------------------------------------------------------------------

    def _ensure(self) -> None:
        if not hasattr(self, "series_"):
            if self.granularity not in GRANULARITY_SECONDS:
                raise ValueError(f"granularity {self.granularity!r} unknown")
            width = GRANULARITY_SECONDS[self.granularity]
            slots = max(1, 86400 // width)
            self.series_: list[str] = []
            self.index_: dict[str, int] = {}
            self.rate_ = np.zeros(0)
            self.last_alert_ = np.zeros(0, dtype=np.int64)
            self.profile_ = np.ones((2, slots))
            self.profile_weight_ = np.zeros((2, slots))
            self.total_level_ = 0.0
            self.n_ = 0
            self.bucket_ = -1
            self.expected_ = np.zeros(0)
            self.pvalue_ = np.ones(0)
            self.alerts_ = np.zeros(0, dtype=bool)

    def get_params(self) -> dict[str, Any]:
        """Return the constructor parameters."""
        return {p: getattr(self, p) for p in self._params}

    def add_series(self, keys: list[str]) -> IntArray:
        """Register series keys (new ones start empty); return their indices."""
        self._ensure()
        new = [k for k in dict.fromkeys(keys) if k not in self.index_]
        if new:
            start = len(self.series_)
            self.series_.extend(new)
            self.index_.update({k: start + i for i, k in enumerate(new)})
            grow = len(new)
            self.rate_ = np.r_[self.rate_, np.zeros(grow)]
            self.last_alert_ = np.r_[self.last_alert_, np.full(grow, -(10**9), dtype=np.int64)]
            self.expected_ = np.r_[self.expected_, np.zeros(grow)]
            self.pvalue_ = np.r_[self.pvalue_, np.ones(grow)]
            self.alerts_ = np.r_[self.alerts_, np.zeros(grow, dtype=bool)]
        return np.array([self.index_[k] for k in keys], dtype=np.int64)

    @property
    def windows_per_day(self) -> float:
        """Return the number of windows in a day."""
        return 86400 / GRANULARITY_SECONDS[self.granularity]

    def _alpha_ewm(self) -> float:
        return float(1.0 - 0.5 ** (1.0 / (self.halflife_days * self.windows_per_day)))

    # -- scoring -----------------------------------------------------------------------

    def tail(self, counts: FloatArray, expected: FloatArray) -> FloatArray:
        """Return ``P(X >= count)`` under the detector's count law."""
        mu = np.maximum(expected, self.min_rate)
        if self.dispersion <= 0:
            return np.asarray(stats.poisson.sf(counts - 1, mu), dtype=np.float64)
        r = 1.0 / self.dispersion
        return np.asarray(stats.nbinom.sf(counts - 1, r, r / (r + mu)), dtype=np.float64)

    def expected(self, bucket: int) -> FloatArray:
        """Return every series' expected count in ``bucket``."""
        self._ensure()
        daytype, slot = bucket_calendar(bucket, self.granularity)
        correction = 1.0 - (1.0 - self._alpha_ewm()) ** max(self.n_, 1)
        return np.asarray(self.rate_ / correction * self.profile_[daytype, slot], np.float64)

    def update(self, counts: FloatArray | IntArray, *, bucket: int) -> Self:
        """Score one window of counts (aligned with ``series_``), then learn it.

        After the call ``expected_``, ``pvalue_`` and ``alerts_`` describe this window.
        """
        self._ensure()
        x = np.asarray(counts, dtype=np.float64)
        if x.shape != self.rate_.shape:
            raise ValueError(
                f"counts has {x.shape[0]} series, the detector knows {self.rate_.shape[0]}"
            )
        if bucket <= self.bucket_:
            raise ValueError(f"bucket {bucket} is not after the last one ({self.bucket_})")
        daytype, slot = bucket_calendar(bucket, self.granularity)
        mu = self.expected(bucket) if self.n_ else np.zeros_like(x)
        p = self.tail(x, mu)
        warm = self.n_ >= self.warmup_days * self.windows_per_day
        surging = (p < self.alpha) & (x >= self.min_count)
        alerts = surging & warm & (bucket - self.last_alert_ > self.cooldown)
        self.last_alert_ = np.where(alerts, bucket, self.last_alert_)
        self.expected_, self.pvalue_, self.alerts_ = mu, p, alerts
        # Learn: surging windows are clipped to about three deviations above the
        # expectation, so an incident barely moves the baseline while a lasting change of
        # level is still absorbed over a few half-lives.
        a = self._alpha_ewm()
        mu_floor = np.maximum(mu, self.min_rate)
        upper = mu_floor + 3.0 * np.sqrt(mu_floor + self.dispersion * mu_floor**2) + 1.0
        learn = np.where(surging & warm, np.minimum(x, upper), x)
        total = float(learn.sum())
        if self.total_level_ > 0:
            share = total / self.total_level_
            w = self.profile_weight_[daytype, slot]
            step = max(a * self.windows_per_day, 1.0 / (w + 1.0))
            self.profile_[daytype, slot] += min(step, 1.0) * (share - self.profile_[daytype, slot])
            self.profile_weight_[daytype, slot] = w + 1.0
        level_step = a if self.n_ else 1.0
        self.total_level_ += level_step * (total - self.total_level_)
        factor = max(float(self.profile_[daytype, slot]), 1e-3)
        self.rate_ = self.rate_ + a * (learn / factor - self.rate_)
        self.n_ += 1
        self.bucket_ = bucket
        return self

    def learn_one(self, counts: FloatArray | IntArray, *, bucket: int) -> Self:
        """Alias of ``update`` (river convention)."""
        return self.update(counts, bucket=bucket)

    # -- persistence -------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write parameters and state to ``path`` (``.npz``; series keys as JSON)."""
        self._ensure()
        meta = {
            "detector": self.name,
            "params": self.get_params(),
            "series": self.series_,
            "total_level": self.total_level_,
            "n": self.n_,
            "bucket": self.bucket_,
        }
        with path.open("wb") as fh:
            np.savez(
                fh,
                meta=np.array(json.dumps(meta, ensure_ascii=False)),
                rate=self.rate_,
                last_alert=self.last_alert_,
                profile=self.profile_,
                profile_weight=self.profile_weight_,
                expected=self.expected_,
                pvalue=self.pvalue_,
                alerts=self.alerts_,
            )

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read a detector written by ``save``."""
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta["detector"] != cls.name:
                raise ValueError(f"{path}: holds {meta['detector']!r}, not {cls.name!r}")
            obj = cls(**meta["params"])
            obj._ensure()
            obj.series_ = list(meta["series"])
            obj.index_ = {k: i for i, k in enumerate(obj.series_)}
            obj.total_level_ = float(meta["total_level"])
            obj.n_ = int(meta["n"])
            obj.bucket_ = int(meta["bucket"])
            obj.rate_ = data["rate"].astype(np.float64)
            obj.last_alert_ = data["last_alert"].astype(np.int64)
            obj.profile_ = data["profile"].astype(np.float64)
            obj.profile_weight_ = data["profile_weight"].astype(np.float64)
            obj.expected_ = data["expected"].astype(np.float64)
            obj.pvalue_ = data["pvalue"].astype(np.float64)
            obj.alerts_ = data["alerts"].astype(bool)
        return obj


class PoissonSurgeDetector(SurgeDetector):
    """The seasonal surge detector under the Poisson law (no over-dispersion)."""

    name = "seasonal_poisson"

    def __init__(self, **params: Any) -> None:
        params.setdefault("dispersion", 0.0)
        super().__init__(**params)


#: Surge detectors, by name.
SURGE_DETECTORS: dict[str, type[SurgeDetector]] = {
    SurgeDetector.name: SurgeDetector,
    PoissonSurgeDetector.name: PoissonSurgeDetector,
}
