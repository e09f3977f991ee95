"""Server-side SVG charts for the dashboard: no JavaScript, no external assets.

Every function returns a :class:`markupsafe.Markup` string (a ``str`` subclass) holding one
``<svg>`` element, so a Jinja template can write ``{{ chart }}`` without ``|safe``.  All
text coming from the caller (titles, labels, series names) is escaped.  Charts scale with
their container (``viewBox`` plus ``width="100%"``) and carry an accessible ``<title>`` /
``<desc>``; each data mark has its own ``<title>`` (a native hover tooltip) and
``data-*`` attributes (``data-series``, ``data-label``, ``data-value``) for tests and
scripts.

API
---
``line_chart(series, *, title, ...)``
    Multi-series line chart.  ``series`` maps a series name to ``[(x, value), ...]``
    where ``x`` is a ``date``/``datetime`` (proportional time axis) or a string
    (categorical axis, in first-seen order).
``bar_chart(categories, values, *, title, orientation="horizontal", stacked=False, ...)``
    Bars per category; ``values`` is a list aligned with ``categories`` (one series) or a
    mapping ``{series name: list aligned with categories}`` (grouped or stacked).
    ``hrefs`` turns each category into a link (drill-down).
``scatter_quadrant(points, *, x_label, y_label, x_split, y_split, ...)``
    Importance x performance quadrant chart; ``points`` are :class:`QuadrantPoint` or
    ``(label, x, y)`` tuples.
``sparkline(values, *, title="")``
    Small inline trend line for tables and cards.

Axis ticks use the "nice numbers" method of Heckbert, P. S. (1990), *Nice numbers for
graph labels*, in Graphics Gems, Academic Press, pp. 61-63.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Literal

from markupsafe import Markup, escape

#: Colour-blind-safe palette after Okabe & Ito (2008, "Color Universal Design"), with their
#: yellow swapped for Tol's olive and wine, which keep contrast on a white background.
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#882255",
    "#999933",
    "#000000",
    "#8C564B",
)
#: Colour for an "other" / remainder series.
OTHER_COLOR = "#9AA5B1"

#: Conventional colours for sentiment series; pass as ``colors=`` to any chart.
SENTIMENT_COLORS = {"negative": "#D55E00", "neutral": "#9AA5B1", "positive": "#009E73"}

XValue = str | date | datetime
Number = int | float

_FONT = 'font-family="system-ui, sans-serif"'


@dataclass(frozen=True)
class QuadrantPoint:
    """One point of a quadrant chart: a named item at ``(x, y)``, optionally a link."""

    label: str
    x: float
    y: float
    href: str | None = None
    size: float | None = None


# ---------------------------------------------------------------------------
# helpers


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Return round tick values covering ``[lo, hi]`` with about ``count`` ticks.

    Uses Heckbert's nice-number rounding (Graphics Gems, 1990).
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        hi = lo + (abs(lo) if lo else 1.0)
    span = _nice(hi - lo, round_=False)
    step = _nice(span / max(count - 1, 1), round_=True)
    start = math.floor(lo / step) * step
    stop = math.ceil(hi / step) * step
    n = round((stop - start) / step)
    return [_clean(start + i * step) for i in range(n + 1)]


def _nice(x: float, *, round_: bool) -> float:
    # Below 1e-300, 10**exp underflows to zero (subnormal spans): no chart needs finer.
    x = max(x, 1e-300)
    exp = math.floor(math.log10(x))
    frac = x / 10**exp
    if round_:
        nice = 1 if frac < 1.5 else 2 if frac < 3 else 5 if frac < 7 else 10
    else:
        nice = 1 if frac <= 1 else 2 if frac <= 2 else 5 if frac <= 5 else 10
    return float(nice * 10**exp)


def _clean(v: float) -> float:
    # Float steps accumulate error (0.30000000000000004); round to 12 significant digits.
    return float(f"{v:.12g}")


def format_number(value: float) -> str:
    """Format ``value`` compactly for chart labels (``1,234``, ``0.42``, ``12.5k``)."""
    if not math.isfinite(value):
        return "–"
    a = abs(value)
    if a >= 1_000_000:
        return f"{value / 1_000_000:.3g}M"
    if a >= 100_000:
        return f"{value / 1_000:.3g}k"
    if a >= 100 or float(value).is_integer():
        return f"{value:,.0f}"
    if a >= 1:
        return f"{value:.3g}"
    return f"{value:.2g}"


def _text_width(text: str, size: float) -> float:
    # CJK glyphs are about one em wide, Latin glyphs about 0.6 em: enough to size margins.
    return sum(size if ord(ch) > 0x2E80 else 0.6 * size for ch in text)


def _truncate(text: str, max_width: float, size: float) -> str:
    if _text_width(text, size) <= max_width:
        return text
    out = ""
    for ch in text:
        if _text_width(out + ch + "…", size) > max_width:
            break
        out += ch
    return out + "…"


def _chart_id(kind: str, *parts: object) -> str:
    digest = hashlib.sha1(repr((kind, *parts)).encode("utf-8")).hexdigest()[:10]
    return f"{kind}-{digest}"


def _f(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def _svg_open(cid: str, width: int, height: int, title: str, desc: str, kind: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-{kind}" id="{cid}" '
        f'viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-labelledby="{cid}-t {cid}-d" data-chart="{kind}" {_FONT}>',
        f'<title id="{cid}-t">{escape(title)}</title>',
        f'<desc id="{cid}-d">{escape(desc)}</desc>',
    ]


def _empty(cid: str, width: int, height: int, title: str, kind: str, message: str) -> Markup:
    parts = _svg_open(cid, width, height, title, message, kind)
    parts.append(
        f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" '
        f'font-size="13" fill="#6b7785" class="chart-empty">{escape(message)}</text>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))


def _colors(names: Sequence[str], colors: Mapping[str, str] | None) -> dict[str, str]:
    chosen = dict(colors or {})
    free = [c for c in PALETTE if c not in chosen.values()] or list(PALETTE)
    i = 0
    out: dict[str, str] = {}
    for name in names:
        if name in chosen:
            out[name] = str(escape(chosen[name]))
        else:
            out[name] = free[i % len(free)]
            i += 1
    return out


def _legend(
    names: Sequence[str], color: Mapping[str, str], x: float, y: float, width: float
) -> str:
    parts = ['<g class="legend">']
    cx, cy = x, y
    for name in names:
        w = 18 + _text_width(name, 11) + 14
        if cx + w > x + width and cx > x:
            cx, cy = x, cy + 16
        parts.append(
            f'<rect x="{_f(cx)}" y="{_f(cy - 8)}" width="10" height="10" rx="2" '
            f'fill="{color[name]}"/>'
            f'<text x="{_f(cx + 14)}" y="{_f(cy + 1)}" font-size="11" fill="#33414f">'
            f"{escape(name)}</text>"
        )
        cx += w
    parts.append("</g>")
    return "".join(parts)


def _legend_rows(names: Sequence[str], width: float) -> int:
    rows, cx = 1, 0.0
    for name in names:
        w = 18 + _text_width(name, 11) + 14
        if cx + w > width and cx > 0:
            rows, cx = rows + 1, 0.0
        cx += w
    return rows


def _x_number(x: XValue) -> float:
    if isinstance(x, datetime):
        ts = x if x.tzinfo else x.replace(tzinfo=UTC)
        return ts.timestamp()
    if isinstance(x, date):
        return datetime.combine(x, time(), tzinfo=UTC).timestamp()
    raise TypeError(f"not a time value: {x!r}")


def _x_label(x: XValue, span_s: float) -> str:
    if isinstance(x, datetime):
        if span_s <= 86_400:
            return x.strftime("%H:%M")
        if (x.hour, x.minute) != (0, 0) and span_s <= 14 * 86_400:
            return x.strftime("%m-%d %H:%M")
        return x.strftime("%m-%d") if span_s <= 366 * 86_400 else x.strftime("%Y-%m")
    if isinstance(x, date):
        return x.strftime("%m-%d") if span_s <= 366 * 86_400 else x.strftime("%Y-%m")
    return str(x)


def _check_number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: value {value!r} is not a number")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{where}: value {value!r} is not finite")
    return v


# ---------------------------------------------------------------------------
# line chart


def line_chart(
    series: Mapping[str, Sequence[tuple[XValue, Number]]],
    *,
    title: str,
    width: int = 640,
    height: int = 260,
    y_label: str = "",
    y_min: float | None = 0.0,
    y_max: float | None = None,
    colors: Mapping[str, str] | None = None,
    empty_message: str = "No data",
    show_points: bool | None = None,
) -> Markup:
    """Render a multi-series line chart over a time or categorical x axis.

    Parameters
    ----------
    series
        ``{name: [(x, value), ...]}``.  ``x`` is a ``date``/``datetime`` (all series must
        then use time values; positions are proportional to time) or a string (categories
        in first-seen order across series).  Points are sorted by ``x`` for time axes.
    title
        Accessible title (``<title>``), also used in the description.
    y_min, y_max
        Fix the value axis ends; ``y_min=None`` fits the data (e.g. scores in [-1, 1]).
    colors
        Optional ``{series name: CSS colour}``; others take the palette in order.
    show_points
        Draw a dot per point; by default only when a series has at most 60 points.

    Returns
    -------
    Markup
        One ``<svg>`` element; each point is a ``<circle class="point">`` with
        ``data-series``, ``data-label`` and ``data-value`` and a tooltip ``<title>``.
    """
    names = [str(n) for n in series]
    cid = _chart_id("line", title, sorted((k, tuple(v)) for k, v in series.items()))
    points: dict[str, list[tuple[XValue, float]]] = {}
    for name, pts in series.items():
        points[str(name)] = [
            (x, _check_number(v, f"series {name!r}, point {i}")) for i, (x, v) in enumerate(pts)
        ]
    all_x = [x for pts in points.values() for x, _ in pts]
    if not all_x:
        return _empty(cid, width, height, title, "line", empty_message)
    is_time = all(isinstance(x, date) for x in all_x)
    if not is_time and any(isinstance(x, date) for x in all_x):
        raise ValueError("line_chart: mix of time and text x values; use one kind per chart")

    values = [v for pts in points.values() for _, v in pts]
    lo = min(values) if y_min is None else min(y_min, min(values))
    hi = max(values) if y_max is None else y_max
    ticks = nice_ticks(lo, hi)
    t_lo, t_hi = ticks[0], ticks[-1]

    tick_w = max(_text_width(format_number(t), 11) for t in ticks)
    left = 14 + tick_w + (16 if y_label else 0)
    right = 16
    legend_h = 16 * _legend_rows(names, width - left - right) if len(names) > 1 else 0
    top = 12 + legend_h
    bottom = 30
    pw, ph = width - left - right, height - top - bottom

    if is_time:
        nums = [_x_number(x) for x in all_x]
        x_lo, x_hi = min(nums), max(nums)
        span = x_hi - x_lo

        def xpos(x: XValue) -> float:
            if span == 0:
                return left + pw / 2
            return left + (_x_number(x) - x_lo) / span * pw

        uniq: dict[float, XValue] = {}
        for x in all_x:
            uniq.setdefault(_x_number(x), x)
        ordered = [uniq[k] for k in sorted(uniq)]
    else:
        seen: dict[str, int] = {}
        for x in all_x:
            seen.setdefault(str(x), len(seen))
        ordered = list(seen)
        span = 0.0

        def xpos(x: XValue) -> float:
            n = len(seen)
            return left + (pw / 2 if n == 1 else seen[str(x)] / (n - 1) * pw)

    def ypos(v: float) -> float:
        return top + ph - (v - t_lo) / (t_hi - t_lo) * ph

    color = _colors(names, colors)
    desc = f"{title}: " + "; ".join(
        f"{n} ({len(points[n])} points, max {format_number(max(v for _, v in points[n]))})"
        for n in names
        if points[n]
    )
    out = _svg_open(cid, width, height, title, desc, "line")
    if legend_h:
        out.append(_legend(names, color, left, 14, pw))
    out.append('<g class="axis y-axis">')
    for t in ticks:
        y = ypos(t)
        out.append(
            f'<line x1="{_f(left)}" x2="{_f(left + pw)}" y1="{_f(y)}" y2="{_f(y)}" '
            f'stroke="#e3e8ee" stroke-width="1"/>'
            f'<text x="{_f(left - 6)}" y="{_f(y + 4)}" text-anchor="end" font-size="11" '
            f'fill="#5b6773">{format_number(t)}</text>'
        )
    if y_label:
        cy = top + ph / 2
        out.append(
            f'<text transform="translate(12 {_f(cy)}) rotate(-90)" text-anchor="middle" '
            f'font-size="11" fill="#5b6773">{escape(y_label)}</text>'
        )
    out.append("</g>")
    out.append('<g class="axis x-axis">')
    out.append(
        f'<line x1="{_f(left)}" x2="{_f(left + pw)}" y1="{_f(top + ph)}" y2="{_f(top + ph)}" '
        f'stroke="#9aa5b1" stroke-width="1"/>'
    )
    label_w = max(_text_width(_x_label(x, span), 11) for x in ordered) + 12
    max_labels = max(2, int(pw // max(label_w, 52)))
    step = max(1, math.ceil(len(ordered) / max_labels))
    for i in range(0, len(ordered), step):
        x = ordered[i]
        px = xpos(x)
        label = _truncate(_x_label(x, span), 96, 11)
        out.append(
            f'<line x1="{_f(px)}" x2="{_f(px)}" y1="{_f(top + ph)}" y2="{_f(top + ph + 4)}" '
            f'stroke="#9aa5b1"/>'
            f'<text x="{_f(px)}" y="{_f(top + ph + 17)}" text-anchor="middle" font-size="11" '
            f'fill="#5b6773">{escape(label)}</text>'
        )
    out.append("</g>")
    for name in names:
        pts = points[name]
        if is_time:
            pts = sorted(pts, key=lambda p: _x_number(p[0]))
        coords = [(xpos(x), ypos(v)) for x, v in pts]
        if not coords:
            continue
        c = color[name]
        out.append(f'<g class="series" data-series="{escape(name)}">')
        if len(coords) > 1:
            path = " ".join(f"{_f(px)},{_f(py)}" for px, py in coords)
            out.append(
                f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="2" '
                f'stroke-linejoin="round" stroke-linecap="round"/>'
            )
        dots = show_points if show_points is not None else len(coords) <= 60
        r = 3 if dots else 6
        opacity = "" if dots else ' fill-opacity="0" stroke-opacity="0"'
        for (x, v), (px, py) in zip(pts, coords, strict=True):
            label = _x_label(x, span) if is_time else str(x)
            full = x.isoformat() if isinstance(x, date) else str(x)
            out.append(
                f'<circle class="point" cx="{_f(px)}" cy="{_f(py)}" r="{r}" fill="{c}"'
                f'{opacity} data-series="{escape(name)}" data-label="{escape(full)}" '
                f'data-value="{v:g}"><title>{escape(name)} · {escape(label)}: '
                f"{format_number(v)}</title></circle>"
            )
        out.append("</g>")
    out.append("</svg>")
    return Markup("".join(out))


# ---------------------------------------------------------------------------
# bar chart


def bar_chart(
    categories: Sequence[str],
    values: Sequence[Number] | Mapping[str, Sequence[Number]],
    *,
    title: str,
    orientation: Literal["horizontal", "vertical"] = "horizontal",
    stacked: bool = False,
    hrefs: Sequence[str | None] | None = None,
    width: int = 640,
    height: int | None = None,
    colors: Mapping[str, str] | None = None,
    value_labels: bool = True,
    empty_message: str = "No data",
) -> Markup:
    """Render a bar chart, horizontal or vertical, single, grouped or stacked.

    Parameters
    ----------
    categories
        Category labels, in display order (top to bottom, or left to right).
    values
        A list aligned with ``categories`` (one series), or ``{series: list}`` with every
        list aligned with ``categories`` (grouped bars, or stacked with ``stacked=True``).
        Values must be finite and, for stacked bars, non-negative.
    hrefs
        Optional link per category (``None`` for no link): the bar and its label become an
        ``<a>`` element, e.g. for drill-down from province to city.
    height
        Defaults to 26 px per category (horizontal) or 260 px (vertical).

    Returns
    -------
    Markup
        One ``<svg>``; each bar is a ``<rect class="bar">`` with ``data-series``,
        ``data-label`` and ``data-value`` and a tooltip ``<title>``.
    """
    cats = [str(c) for c in categories]
    if isinstance(values, Mapping):
        data = {str(k): list(v) for k, v in values.items()}
        single = False
    else:
        data = {"": list(values)}
        single = True
    for name, vals in data.items():
        if len(vals) != len(cats):
            raise ValueError(
                f"bar_chart: series {name!r} has {len(vals)} values for {len(cats)} categories"
            )
    nums = {
        name: [
            _check_number(v, f"series {name!r}, category {cats[i]!r}") for i, v in enumerate(vals)
        ]
        for name, vals in data.items()
    }
    if stacked and any(v < 0 for vals in nums.values() for v in vals):
        raise ValueError("bar_chart: stacked bars need non-negative values")
    if hrefs is not None and len(hrefs) != len(cats):
        raise ValueError(f"bar_chart: {len(hrefs)} hrefs for {len(cats)} categories")
    horizontal = orientation == "horizontal"
    if height is None:
        height = 40 + 26 * len(cats) if horizontal else 260
    names = list(nums)
    cid = _chart_id("bar", title, orientation, stacked, cats, sorted(nums.items()))
    if not cats:
        return _empty(cid, width, max(height, 80), title, "bar", empty_message)

    if stacked:
        totals = [sum(nums[n][i] for n in names) for i in range(len(cats))]
        lo, hi = 0.0, max(totals)
    else:
        flat = [v for vals in nums.values() for v in vals]
        lo, hi = min(0.0, min(flat)), max(0.0, max(flat))
    ticks = nice_ticks(lo, hi if hi > lo else lo + 1)
    t_lo, t_hi = ticks[0], ticks[-1]
    color = _colors(names, colors) if not single else {"": (colors or {}).get("", PALETTE[0])}
    legend = not single and len(names) > 1

    desc = f"{title}: " + "; ".join(
        f"{c} {format_number(sum(nums[n][i] for n in names))}" for i, c in enumerate(cats[:20])
    )
    out = _svg_open(cid, width, height, title, desc, "bar")
    if horizontal:
        label_w = min(max(_text_width(c, 12) for c in cats) + 10, width * 0.32)
        left, right = label_w + 8, 48 if value_labels else 16
        legend_h = 16 * _legend_rows(names, width - left - right) if legend else 0
        top, bottom = 8 + legend_h, 22
    else:
        tick_w = max(_text_width(format_number(t), 11) for t in ticks)
        left, right = 14 + tick_w, 12
        legend_h = 16 * _legend_rows(names, width - left - right) if legend else 0
        top, bottom = 14 + legend_h, 40
    pw, ph = width - left - right, height - top - bottom
    if legend:
        out.append(_legend(names, color, left, 14, pw))

    def scale(v: float) -> float:
        return (v - t_lo) / (t_hi - t_lo) * (pw if horizontal else ph)

    zero = scale(0.0)
    out.append('<g class="axis">')
    for t in ticks:
        if horizontal:
            x = left + scale(t)
            out.append(
                f'<line x1="{_f(x)}" x2="{_f(x)}" y1="{_f(top)}" y2="{_f(top + ph)}" '
                f'stroke="#e3e8ee"/><text x="{_f(x)}" y="{_f(top + ph + 15)}" '
                f'text-anchor="middle" font-size="10" fill="#5b6773">{format_number(t)}</text>'
            )
        else:
            y = top + ph - scale(t)
            out.append(
                f'<line x1="{_f(left)}" x2="{_f(left + pw)}" y1="{_f(y)}" y2="{_f(y)}" '
                f'stroke="#e3e8ee"/><text x="{_f(left - 6)}" y="{_f(y + 4)}" '
                f'text-anchor="end" font-size="11" fill="#5b6773">{format_number(t)}</text>'
            )
    out.append("</g>")

    band = (ph if horizontal else pw) / len(cats)
    pad = band * 0.18
    groups = 1 if stacked or single else len(names)
    thick = (band - 2 * pad) / groups
    for i, cat in enumerate(cats):
        href = hrefs[i] if hrefs is not None else None
        out.append(f'<g class="category" data-label="{escape(cat)}">')
        if href:
            out.append(f'<a href="{escape(href)}" class="drill">')
        base = top + i * band if horizontal else left + i * band
        acc = 0.0
        for j, name in enumerate(names):
            v = nums[name][i]
            if stacked:
                a, b = scale(acc), scale(acc + v)
                acc += v
                offset = pad
            else:
                a, b = sorted((zero, scale(v)))
                offset = pad + j * thick
            length = max(b - a, 0.0)
            tip = f"{cat} · {name}: " if name else f"{cat}: "
            if horizontal:
                geom = (
                    f'x="{_f(left + a)}" y="{_f(base + offset)}" '
                    f'width="{_f(length)}" height="{_f(thick)}"'
                )
            else:
                geom = (
                    f'x="{_f(base + offset)}" y="{_f(top + ph - a - length)}" '
                    f'width="{_f(thick)}" height="{_f(length)}"'
                )
            out.append(
                f'<rect class="bar" {geom} rx="2" fill="{color[name]}" '
                f'data-series="{escape(name)}" data-label="{escape(cat)}" data-value="{v:g}">'
                f"<title>{escape(tip)}{format_number(v)}</title></rect>"
            )
        total = sum(nums[n][i] for n in names)
        if horizontal:
            cy = base + band / 2 + 4
            label = _truncate(cat, label_w - 4, 12)
            fill = "#0b5cab" if href else "#33414f"
            out.append(
                f'<text x="{_f(left - 8)}" y="{_f(cy)}" text-anchor="end" font-size="12" '
                f'fill="{fill}">{escape(label)}</text>'
            )
            if value_labels and (stacked or single):
                end = left + max(scale(total), zero)
                out.append(
                    f'<text class="value" x="{_f(end + 4)}" y="{_f(cy)}" font-size="11" '
                    f'fill="#33414f">{format_number(total)}</text>'
                )
        else:
            cx = base + band / 2
            label = _truncate(cat, max(band - 2, 24), 11)
            fill = "#0b5cab" if href else "#33414f"
            out.append(
                f'<text x="{_f(cx)}" y="{_f(top + ph + 15)}" text-anchor="middle" '
                f'font-size="11" fill="{fill}">{escape(label)}</text>'
            )
            if value_labels and (stacked or single):
                y = top + ph - max(scale(total), zero)
                out.append(
                    f'<text class="value" x="{_f(cx)}" y="{_f(y - 4)}" text-anchor="middle" '
                    f'font-size="10" fill="#33414f">{format_number(total)}</text>'
                )
        if href:
            out.append("</a>")
        out.append("</g>")
    if horizontal:
        x0 = left + zero
        out.append(
            f'<line x1="{_f(x0)}" x2="{_f(x0)}" y1="{_f(top)}" y2="{_f(top + ph)}" '
            f'stroke="#9aa5b1"/>'
        )
    else:
        y0 = top + ph - zero
        out.append(
            f'<line x1="{_f(left)}" x2="{_f(left + pw)}" y1="{_f(y0)}" y2="{_f(y0)}" '
            f'stroke="#9aa5b1"/>'
        )
    out.append("</svg>")
    return Markup("".join(out))


# ---------------------------------------------------------------------------
# quadrant scatter


def scatter_quadrant(
    points: Sequence[QuadrantPoint | tuple[str, Number, Number]],
    *,
    x_label: str,
    y_label: str,
    x_split: float,
    y_split: float,
    title: str,
    quadrant_labels: tuple[str, str, str, str] | None = None,
    width: int = 560,
    height: int = 400,
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    empty_message: str = "No data",
) -> Markup:
    """Render an importance x performance quadrant chart (IPA).

    Importance-performance analysis after Martilla, J. A. & James, J. C. (1977),
    *Importance-performance analysis*, Journal of Marketing 41(1), 77-79: items with high
    importance (x) and low performance (y) are the short boards to fix first.

    Parameters
    ----------
    points
        :class:`QuadrantPoint` or ``(label, x, y)``; ``href`` makes a point a link.
    x_split, y_split
        Where the dividing lines go (e.g. the mean importance and mean performance).
    quadrant_labels
        Captions for (top-left, top-right, bottom-left, bottom-right), e.g. ``("维持",
        "保持优势", "次要", "优先改进")``.
    x_range, y_range
        Fix the axis ends; by default they fit the points and the split lines.

    Returns
    -------
    Markup
        One ``<svg>``; each point is a ``<circle class="point">`` with ``data-label``,
        ``data-x``, ``data-y`` and ``data-quadrant`` (``tl``, ``tr``, ``bl``, ``br``).
    """
    pts = [
        p if isinstance(p, QuadrantPoint) else QuadrantPoint(str(p[0]), p[1], p[2]) for p in points
    ]
    for p in pts:
        _check_number(p.x, f"point {p.label!r} x")
        _check_number(p.y, f"point {p.label!r} y")
    cid = _chart_id("quadrant", title, [(p.label, p.x, p.y) for p in pts], x_split, y_split)
    if not pts:
        return _empty(cid, width, height, title, "quadrant", empty_message)
    xs = [p.x for p in pts] + [x_split]
    ys = [p.y for p in pts] + [y_split]
    xt = nice_ticks(*(x_range or (min(xs), max(xs))))
    yt = nice_ticks(*(y_range or (min(ys), max(ys))))
    x_lo, x_hi, y_lo, y_hi = xt[0], xt[-1], yt[0], yt[-1]
    tick_w = max(_text_width(format_number(t), 11) for t in yt)
    left, right, top, bottom = 30 + tick_w, 16, 14, 44
    pw, ph = width - left - right, height - top - bottom

    def xp(v: float) -> float:
        return left + (v - x_lo) / (x_hi - x_lo) * pw

    def yp(v: float) -> float:
        return top + ph - (v - y_lo) / (y_hi - y_lo) * ph

    sx, sy = xp(x_split), yp(y_split)
    desc = f"{title}: " + "; ".join(
        f"{p.label} ({format_number(p.x)}, {format_number(p.y)})" for p in pts[:30]
    )
    out = _svg_open(cid, width, height, title, desc, "quadrant")
    shades = (
        ("tl", left, top, sx - left, sy - top, "#f4f7fa"),
        ("tr", sx, top, left + pw - sx, sy - top, "#eef6f1"),
        ("bl", left, sy, sx - left, top + ph - sy, "#f7f7f4"),
        ("br", sx, sy, left + pw - sx, top + ph - sy, "#fbefe9"),
    )
    for name, x, y, w, h, fill in shades:
        out.append(
            f'<rect class="quadrant quadrant-{name}" x="{_f(x)}" y="{_f(y)}" '
            f'width="{_f(max(w, 0))}" height="{_f(max(h, 0))}" fill="{fill}"/>'
        )
    spots = (
        (left + 6, top + 14, "start"),
        (left + pw - 6, top + 14, "end"),
        (left + 6, top + ph - 6, "start"),
        (left + pw - 6, top + ph - 6, "end"),
    )
    if quadrant_labels:
        for text, (x, y, anchor) in zip(quadrant_labels, spots, strict=True):
            out.append(
                f'<text class="quadrant-label" x="{_f(x)}" y="{_f(y)}" text-anchor="{anchor}" '
                f'font-size="11" font-weight="600" fill="#7b8794">{escape(text)}</text>'
            )
    for t in xt:
        out.append(
            f'<text x="{_f(xp(t))}" y="{_f(top + ph + 15)}" text-anchor="middle" font-size="11" '
            f'fill="#5b6773">{format_number(t)}</text>'
        )
    for t in yt:
        out.append(
            f'<text x="{_f(left - 6)}" y="{_f(yp(t) + 4)}" text-anchor="end" font-size="11" '
            f'fill="#5b6773">{format_number(t)}</text>'
        )
    out.append(
        f'<rect x="{_f(left)}" y="{_f(top)}" width="{_f(pw)}" height="{_f(ph)}" fill="none" '
        f'stroke="#9aa5b1"/>'
        f'<line x1="{_f(sx)}" x2="{_f(sx)}" y1="{_f(top)}" y2="{_f(top + ph)}" stroke="#5b6773" '
        f'stroke-dasharray="4 3"/>'
        f'<line x1="{_f(left)}" x2="{_f(left + pw)}" y1="{_f(sy)}" y2="{_f(sy)}" stroke="#5b6773" '
        f'stroke-dasharray="4 3"/>'
        f'<text x="{_f(left + pw / 2)}" y="{_f(height - 8)}" text-anchor="middle" font-size="12" '
        f'fill="#33414f">{escape(x_label)}</text>'
        f'<text transform="translate(12 {_f(top + ph / 2)}) rotate(-90)" text-anchor="middle" '
        f'font-size="12" fill="#33414f">{escape(y_label)}</text>'
    )
    # Labels are placed after every mark is known, so they can avoid one another, the
    # points and the quadrant captions (greedy candidate positions, as in Christensen,
    # Marks & Shieber (1995), An empirical study of algorithms for point-feature label
    # placement, ACM Transactions on Graphics 14(3), 203-232).  A label with no free spot
    # is left out; its point keeps the tooltip.
    radius = [5.0 if p.size is None else max(3.0, min(14.0, float(p.size))) for p in pts]
    centers = [(xp(p.x), yp(p.y)) for p in pts]
    obstacles: list[tuple[float, float, float, float]] = [
        (cx - r, cy - r, cx + r, cy + r) for (cx, cy), r in zip(centers, radius, strict=True)
    ]
    if quadrant_labels:
        for text, (x, y, anchor) in zip(quadrant_labels, spots, strict=True):
            w = _text_width(text, 11)
            x0 = x if anchor == "start" else x - w
            obstacles.append((x0, y - 11, x0 + w, y + 2))
    # Points nearest the short-board corner (high importance, low performance) first.
    order = sorted(range(len(pts)), key=lambda i: (-(pts[i].x - x_split), pts[i].y, i))
    placed: dict[int, tuple[float, float]] = {}
    boxes: dict[int, Box] = {}
    for i in order:
        text = _truncate(pts[i].label, 120, 11)
        box = _place_label(
            centers[i],
            radius[i],
            _text_width(text, 11),
            obstacles,
            (left + 1, top + 1, left + pw - 1, top + ph - 1),
        )
        if box is not None:
            obstacles.append(box)
            placed[i] = (box[0], box[3] - 3)
            boxes[i] = box
    for i, p in enumerate(pts):
        quad = ("t" if p.y >= y_split else "b") + ("r" if p.x >= x_split else "l")
        fill = "#D55E00" if quad == "br" else "#0072B2"
        (px, py), r = centers[i], radius[i]
        mark = (
            f'<circle class="point" cx="{_f(px)}" cy="{_f(py)}" r="{_f(r)}" fill="{fill}" '
            f'fill-opacity="0.85" data-label="{escape(p.label)}" data-x="{p.x:g}" '
            f'data-y="{p.y:g}" data-quadrant="{quad}"><title>{escape(p.label)}: '
            f"{escape(x_label)} {format_number(p.x)}, {escape(y_label)} {format_number(p.y)}"
            f"</title></circle>"
        )
        if i in placed:
            tx, ty = placed[i]
            box = boxes[i]
            # A label moved away from its point is tied back to it by a thin leader line.
            nx = min(max(px, box[0]), box[2])
            ny = min(max(py, box[1]), box[3])
            if math.hypot(nx - px, ny - py) > r + 8:
                mark += (
                    f'<line class="leader" x1="{_f(px)}" y1="{_f(py)}" x2="{_f(nx)}" '
                    f'y2="{_f(ny)}" stroke="#9aa5b1" stroke-width="0.8"/>'
                )
            mark += (
                f'<text class="point-label" x="{_f(tx)}" y="{_f(ty)}" text-anchor="start" '
                f'font-size="11" fill="#1d2733" data-for="{escape(p.label)}">'
                f"{escape(_truncate(p.label, 120, 11))}</text>"
            )
        if p.href:
            mark = f'<a href="{escape(p.href)}">{mark}</a>'
        out.append(mark)
    out.append("</svg>")
    return Markup("".join(out))


Box = tuple[float, float, float, float]


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _place_label(
    center: tuple[float, float], r: float, w: float, obstacles: list[Box], area: Box
) -> Box | None:
    """Return a free box (x0, y0, x1, y1) for a ``w``-wide label near a point, or ``None``."""
    cx, cy = center
    h = 13.0
    gap = r + 3
    candidates: list[tuple[float, float]] = []
    # Nearest spots first; the farther ones get a leader line back to the point.
    for dx in (0.0, 24.0, 48.0):
        for dy in (0.0, -h, h, -2 * h, 2 * h, -3 * h, 3 * h):
            candidates.append((cx + gap + dx, cy - h / 2 + dy))  # right
            candidates.append((cx - gap - dx - w, cy - h / 2 + dy))  # left
        if dx == 0.0:
            candidates += [(cx - w / 2, cy - gap - h), (cx - w / 2, cy + gap)]  # above, below
    for x0, y0 in candidates:
        box = (x0, y0, x0 + w, y0 + h)
        if box[0] < area[0] or box[1] < area[1] or box[2] > area[2] or box[3] > area[3]:
            continue
        if not any(_overlaps(box, other) for other in obstacles):
            return box
    return None


# ---------------------------------------------------------------------------
# sparkline


def sparkline(
    values: Sequence[Number],
    *,
    title: str = "",
    width: int = 120,
    height: int = 28,
    color: str = PALETTE[0],
) -> Markup:
    """Render a small trend line (no axes) with the last value marked.

    Returns
    -------
    Markup
        One ``<svg class="chart chart-sparkline">`` with ``data-values`` listing the values.
    """
    nums = [_check_number(v, f"sparkline value {i}") for i, v in enumerate(values)]
    cid = _chart_id("spark", title, nums)
    label = title or "trend"
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-sparkline" id="{cid}" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-labelledby="{cid}-t" data-chart="sparkline" '
        f'data-values="{" ".join(f"{v:g}" for v in nums)}">'
        f'<title id="{cid}-t">{escape(label)}</title>'
    )
    if not nums:
        return Markup(head + "</svg>")
    lo, hi = min(nums), max(nums)
    rng = hi - lo or 1.0
    pad = 3.0
    n = len(nums)

    def xy(i: int, v: float) -> tuple[float, float]:
        x = pad + (i / (n - 1) * (width - 2 * pad) if n > 1 else (width - 2 * pad) / 2)
        y = height - pad - (v - lo) / rng * (height - 2 * pad)
        return x, y

    coords = [xy(i, v) for i, v in enumerate(nums)]
    path = " ".join(f"{_f(x)},{_f(y)}" for x, y in coords)
    lx, ly = coords[-1]
    body = (
        f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.5" '
        f'stroke-linejoin="round"/>'
        f'<circle cx="{_f(lx)}" cy="{_f(ly)}" r="2.2" fill="{color}"/>'
    )
    return Markup(head + body + "</svg>")
