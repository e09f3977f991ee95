"""Turn per-series surge flags into alerts: one per root cause, deduplicated over windows."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from voxloop.detect.rootcause import Candidate, explain
from voxloop.detect.series import dense_counts, parse_key
from voxloop.detect.surge import SurgeDetector


@dataclass
class SurgeAlert:
    """A surge with its root cause, as raised by ``scan_counts``."""

    root_cause: str
    values: dict[str, str]
    share: float
    anchor: str
    first_bucket: int
    last_bucket: int
    actual: float
    expected: float
    pvalue: float
    windows: int = 1
    series: list[str] = field(default_factory=list)
    breakdown: list[Candidate] = field(default_factory=list)

    @property
    def excess(self) -> float:
        """Return the extra volume over the expectation."""
        return self.actual - self.expected


def _is_ancestor(a: dict[str, str], b: dict[str, str]) -> bool:
    return len(a) < len(b) and all(b.get(k) == v for k, v in a.items())


def _related(a: dict[str, str], b: dict[str, str]) -> bool:
    return a == b or _is_ancestor(a, b) or _is_ancestor(b, a)


def window_alerts(detector: SurgeDetector, counts: np.ndarray, *, bucket: int) -> list[SurgeAlert]:
    """Explain the series that alerted in the window the detector just scored."""
    idx = np.flatnonzero(detector.alerts_)
    if len(idx) == 0:
        return []
    keys = [detector.series_[i] for i in idx]
    parsed = {k: parse_key(k) for k in keys}
    anchors = [k for k in keys if not any(_is_ancestor(parsed[o], parsed[k]) for o in keys)]
    active = np.flatnonzero((counts > 0) | (detector.expected_ > 0.01))
    observed = {
        detector.series_[i]: (float(counts[i]), float(detector.expected_[i])) for i in active
    }
    out: dict[str, SurgeAlert] = {}
    for anchor in sorted(anchors, key=lambda k: -observed[k][0] + observed[k][1]):
        cause = explain(anchor, observed)
        if cause.key in out:
            out[cause.key].series.append(anchor)
            continue
        a, f = observed.get(cause.key, observed[anchor])
        i = detector.index_[anchor]
        out[cause.key] = SurgeAlert(
            root_cause=cause.key,
            values=cause.values,
            share=cause.share,
            anchor=anchor,
            first_bucket=bucket,
            last_bucket=bucket,
            actual=a,
            expected=f,
            pvalue=float(detector.pvalue_[i]),
            series=[anchor],
            breakdown=cause.breakdown,
        )
    return list(out.values())


def scan_counts(
    counts: pa.Table,
    *,
    detector: SurgeDetector,
    first: int | None = None,
    last: int | None = None,
    merge_gap: int | None = None,
) -> list[SurgeAlert]:
    """Run ``detector`` window by window over a count table; return deduplicated alerts.

    An alert whose root cause alerted again within ``merge_gap`` windows (default: the
    detector's cooldown) extends the earlier alert instead of raising a new one.
    """
    if counts.num_rows == 0:
        return []
    buckets = counts["bucket"].to_numpy()
    lo = int(buckets.min()) if first is None else first
    hi = int(buckets.max()) if last is None else last
    series = sorted(set(counts["series"].to_pylist()))
    order = detector.add_series(series)
    gap = detector.cooldown if merge_gap is None else merge_gap
    open_alerts: dict[str, SurgeAlert] = {}
    done: list[SurgeAlert] = []
    chunk = 256
    for start in range(lo, hi + 1, chunk):
        end = min(start + chunk - 1, hi)
        matrix = dense_counts(counts, series=series, first=start, last=end)
        for row, bucket in enumerate(range(start, end + 1)):
            x = np.zeros(len(detector.series_))
            x[order] = matrix[row]
            detector.update(x, bucket=bucket)
            for alert in window_alerts(detector, x, bucket=bucket):
                # The same surge may be explained one level finer or coarser in another
                # window (e.g. with or without its channel): keep one alert for it.
                prev = open_alerts.get(alert.root_cause) or next(
                    (
                        a
                        for a in open_alerts.values()
                        if bucket - a.last_bucket <= gap and _related(a.values, alert.values)
                    ),
                    None,
                )
                if prev is not None and bucket - prev.last_bucket <= gap:
                    prev.last_bucket = bucket
                    prev.windows += 1
                    prev.actual += alert.actual
                    prev.expected += alert.expected
                    continue
                if prev is not None:
                    done.append(prev)
                open_alerts[alert.root_cause] = alert
    return sorted([*done, *open_alerts.values()], key=lambda a: (a.first_bucket, a.root_cause))
