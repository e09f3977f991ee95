"""Server-side SVG charts: well-formed, escaped, accessible, data carried on every mark."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from datetime import date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import Markup

from voxloop.web.charts import (
    QuadrantPoint,
    bar_chart,
    format_number,
    line_chart,
    nice_ticks,
    scatter_quadrant,
    sparkline,
)

NS = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    """Parse chart markup as XML (fails on malformed or unescaped output)."""
    assert isinstance(svg, Markup)
    return ET.fromstring(str(svg))


def marks(root: ET.Element, tag: str, cls: str) -> list[ET.Element]:
    """Return the elements ``tag`` with class ``cls``."""
    return [e for e in root.iter(f"{NS}{tag}") if e.get("class") == cls]


def test_nice_ticks_cover_range_with_round_steps() -> None:
    ticks = nice_ticks(0, 87)
    assert ticks[0] <= 0 and ticks[-1] >= 87
    steps = {round(b - a, 9) for a, b in itertools.pairwise(ticks)}
    assert steps == {20.0}
    assert nice_ticks(-0.73, 0.41) == [-1.0, -0.5, 0.0, 0.5]
    assert nice_ticks(5, 5)[0] <= 5 <= nice_ticks(5, 5)[-1]


def test_format_number() -> None:
    assert format_number(1234) == "1,234"
    assert format_number(250_000) == "250k"
    assert format_number(0.4213) == "0.42"
    assert format_number(3.14159) == "3.14"


def test_line_chart_time_axis_multi_series() -> None:
    start = date(2026, 9, 1)
    series = {
        "hotline_10086": [(start + timedelta(days=i), 10 + i) for i in range(10)],
        "app": [(start + timedelta(days=i), 20 - i) for i in range(0, 10, 2)],
    }
    root = parse(line_chart(series, title="Voices per day", y_label="voices"))
    assert root.get("role") == "img"
    assert root.find(f"{NS}title").text == "Voices per day"  # type: ignore[union-attr]
    points = marks(root, "circle", "point")
    assert len(points) == 15
    hotline = [p for p in points if p.get("data-series") == "hotline_10086"]
    assert [float(p.get("data-value", "nan")) for p in hotline] == [10 + i for i in range(10)]
    # Proportional time axis: the app series (every 2 days) lines up with the daily one.
    app_x = [float(p.get("cx", "0")) for p in points if p.get("data-series") == "app"]
    hot_x = [float(p.get("cx", "0")) for p in hotline]
    assert app_x == pytest.approx(hot_x[::2], abs=0.11)
    assert len(root.findall(f".//{NS}polyline")) == 2
    # Larger values sit higher (smaller y).
    assert float(hotline[-1].get("cy", "0")) < float(hotline[0].get("cy", "0"))


def test_line_chart_categorical_and_datetime_and_negative_values() -> None:
    root = parse(line_chart({"s": [("a", -0.5), ("b", 0.25)]}, title="t", y_min=None))
    assert [p.get("data-label") for p in marks(root, "circle", "point")] == ["a", "b"]
    t0 = datetime(2026, 9, 1, 8)
    root = parse(line_chart({"x": [(t0, 1), (t0 + timedelta(hours=1), 3)]}, title="hourly"))
    assert len(marks(root, "circle", "point")) == 2


def test_line_chart_rejects_bad_input_and_handles_empty() -> None:
    with pytest.raises(ValueError, match="series 's', point 1"):
        line_chart({"s": [("a", 1), ("b", float("nan"))]}, title="t")
    with pytest.raises(ValueError, match="mix of time and text"):
        line_chart({"s": [("a", 1), (date(2026, 1, 1), 2)]}, title="t")
    root = parse(line_chart({}, title="empty", empty_message="暂无数据"))
    assert "暂无数据" in ET.tostring(root, encoding="unicode")


def test_bar_chart_horizontal_with_links_and_escaping() -> None:
    cats = ["江苏", "广东", "<script>"]
    svg = bar_chart(cats, [30, 12, 1], title="By province", hrefs=["/?p=1", None, "/?p=3&x=1"])
    assert "<script>" not in svg
    root = parse(svg)
    bars = marks(root, "rect", "bar")
    assert [b.get("data-label") for b in bars] == cats
    assert [float(b.get("data-value", "0")) for b in bars] == [30, 12, 1]
    widths = [float(b.get("width", "0")) for b in bars]
    assert widths[0] > widths[1] > widths[2] > 0
    links = list(root.iter(f"{NS}a"))
    assert [a.get("href") for a in links] == ["/?p=1", "/?p=3&x=1"]


def test_bar_chart_vertical_stacked() -> None:
    cats = ["BILL", "MNET"]
    values = {"negative": [5, 2], "neutral": [3, 3], "positive": [1, 0]}
    root = parse(bar_chart(cats, values, title="t", orientation="vertical", stacked=True))
    bars = marks(root, "rect", "bar")
    assert len(bars) == 6
    bill = [b for b in bars if b.get("data-label") == "BILL"]
    heights = {b.get("data-series"): float(b.get("height", "0")) for b in bill}
    assert heights["negative"] > heights["neutral"] > heights["positive"]
    # Stacked: the BILL segments share one x and do not overlap vertically.
    assert len({b.get("x") for b in bill}) == 1
    ys = sorted((float(b.get("y", "0")), float(b.get("height", "0"))) for b in bill)
    for (y1, h1), (y2, _) in itertools.pairwise(ys):
        assert y1 + h1 <= y2 + 0.11
    assert root.find(f"{NS}g[@class='legend']") is not None


def test_bar_chart_grouped_and_errors() -> None:
    root = parse(bar_chart(["a", "b"], {"x": [1, -2], "y": [3, 4]}, title="g"))
    assert len(marks(root, "rect", "bar")) == 4
    with pytest.raises(ValueError, match="series 'x' has 1 values for 2 categories"):
        bar_chart(["a", "b"], {"x": [1]}, title="t")
    with pytest.raises(ValueError, match="non-negative"):
        bar_chart(["a"], {"x": [-1]}, title="t", stacked=True)
    assert marks(parse(bar_chart([], [], title="none")), "rect", "bar") == []


def test_scatter_quadrant_assigns_quadrants() -> None:
    points: list[QuadrantPoint | tuple[str, float, float]] = [
        QuadrantPoint("tariff", 0.9, 5.1, href="/satisfaction?factor=tariff"),
        ("network_speed", 0.8, 8.2),
        ("store_service", 0.2, 8.5),
        ("app_experience", 0.1, 6.0),
    ]
    root = parse(
        scatter_quadrant(
            points,
            x_label="importance",
            y_label="performance",
            x_split=0.5,
            y_split=7.0,
            title="IPA",
            quadrant_labels=("keep up", "strength", "low priority", "fix first"),
        )
    )
    quads = {p.get("data-label"): p.get("data-quadrant") for p in marks(root, "circle", "point")}
    assert quads == {
        "tariff": "br",
        "network_speed": "tr",
        "store_service": "tl",
        "app_experience": "bl",
    }
    assert [a.get("href") for a in root.iter(f"{NS}a")] == ["/satisfaction?factor=tariff"]
    assert len(marks(root, "text", "quadrant-label")) == 4


def test_sparkline() -> None:
    root = parse(sparkline([1, 3, 2, 5], title="trend"))
    assert root.get("data-values") == "1 3 2 5"
    assert len(root.findall(f"{NS}polyline")) == 1
    assert parse(sparkline([])).get("data-values") == ""


def test_chart_ids_are_stable_and_distinct() -> None:
    a = bar_chart(["x"], [1], title="a")
    assert a == bar_chart(["x"], [1], title="a")
    assert parse(a).get("id") != parse(bar_chart(["x"], [2], title="a")).get("id")


def test_line_chart_hourly_axis_labels_carry_the_day() -> None:
    t0 = datetime(2026, 9, 1, 0)
    hourly = [(t0 + timedelta(hours=h), h % 5) for h in range(72)]
    root = parse(line_chart({"s": hourly}, title="hourly"))
    labels = [e.text or "" for e in root.iter(f"{NS}text") if e.get("text-anchor") == "middle"]
    assert labels[0] == "09-01" and "09-01 11:00" in labels
    assert len(set(labels)) == len(labels) > 3
    within_day = parse(line_chart({"s": hourly[:24]}, title="day"))
    assert "06:00" in [e.text for e in within_day.iter(f"{NS}text")]


labels = st.text(min_size=1, max_size=12).filter(
    lambda s: all(ord(c) >= 32 and not 0xD800 <= ord(c) <= 0xDFFF for c in s)
)
values = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(labels, st.lists(st.tuples(labels, values), max_size=8), max_size=4))
def test_line_chart_any_input_is_well_formed(series: dict[str, list[tuple[str, float]]]) -> None:
    root = parse(line_chart(series, title="<t>", y_min=None))
    assert len(marks(root, "circle", "point")) == sum(len(v) for v in series.values())


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(labels, st.floats(0, 1e6)), max_size=12), st.booleans())
def test_bar_chart_any_input_is_well_formed(data: list[tuple[str, float]], vertical: bool) -> None:
    cats = [c for c, _ in data]
    svg = bar_chart(
        cats,
        {"a": [v for _, v in data], "b": [v / 2 for _, v in data]},
        title="t & <u>",
        orientation="vertical" if vertical else "horizontal",
        stacked=True,
        hrefs=[f"/x?c={c}" for c in cats],
    )
    root = parse(svg)
    bars = marks(root, "rect", "bar")
    assert len(bars) == 2 * len(cats)
    assert all(float(b.get("width", "0")) >= 0 and float(b.get("height", "0")) >= 0 for b in bars)
    assert [b.get("data-label") for b in bars[::2]] == cats
