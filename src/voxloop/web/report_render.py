"""Turn report facts into a document: narrative sentences, charts, PDF (typst) and HTML.

* Narrative: zh-CN / en sentence templates from ``locale/report.yaml`` filled with the
  figures of the facts (``str.format``), so every sentence states numbers and no language
  model is involved.
* Charts: matplotlib (Agg) with a CJK font set explicitly; PNG for the PDF (typst embeds
  raster images), SVG with text as paths for the HTML (no font needed in the browser).
* PDF: ``typst`` from PyPI compiles ``templates/report/report.typ`` over a JSON document;
  the CJK font (Debian ``fonts-noto-cjk`` or ``fonts-wqy-microhei``) is passed as a font
  path, so its glyphs are embedded.  HTML: ``templates/report/report.html``,
  self-contained (inline CSS and SVG, no external asset).
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

from markupsafe import Markup

from voxloop.errors import VoxloopError
from voxloop.web.service import WEB_DIR, label, templates, translate

Format = Literal["pdf", "html"]
FORMATS: tuple[Format, ...] = ("pdf", "html")
TEMPLATE_DIR = WEB_DIR / "templates" / "report"

#: Where Debian installs the CJK fonts the report can embed, in order of preference.
CJK_FONT_CANDIDATES = (
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
    Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),
)
#: Family names typst knows these fonts by (Noto's collection holds an SC face).
_TYPST_FAMILY = {
    "NotoSansCJK-Regular.ttc": "Noto Sans CJK SC",
    "wqy-microhei.ttc": "WenQuanYi Micro Hei",
    "wqy-zenhei.ttc": "WenQuanYi Zen Hei",
}
CHART_COLORS = ("#2563eb", "#94a3b8", "#dc2626", "#16a34a", "#f59e0b", "#7c3aed")
CHART_DPI = 160

# matplotlib's pyplot state is global: one chart at a time per process.
_chart_lock = threading.Lock()


class MissingFontError(VoxloopError):
    """No CJK font is installed, so Chinese text cannot be embedded in a report."""


@dataclass(frozen=True)
class CjkFont:
    """A CJK font file and the family name typst knows it by."""

    path: Path
    family: str


@cache
def cjk_font() -> CjkFont:
    """Find an installed CJK font (``fc-list :lang=zh`` first, then Debian's paths)."""
    found: list[Path] = []
    if shutil.which("fc-list"):
        try:
            out = subprocess.run(
                ["fc-list", ":lang=zh", "file"], capture_output=True, text=True, timeout=20
            ).stdout
            found = [Path(line.split(":")[0].strip()) for line in out.splitlines() if line]
        except (OSError, subprocess.SubprocessError):
            found = []
    names = {p.name: p for p in found}
    for candidate in CJK_FONT_CANDIDATES:
        path = names.get(candidate.name) or (candidate if candidate.exists() else None)
        if path is not None and path.exists():
            return CjkFont(path=path, family=_TYPST_FAMILY[candidate.name])
    raise MissingFontError(
        "no CJK font found for the report (looked with fc-list :lang=zh and in "
        + ", ".join(str(p) for p in CJK_FONT_CANDIDATES)
        + "): install the Debian package fonts-noto-cjk (or fonts-wqy-microhei)"
    )


# ---------------------------------------------------------------------------
# Numbers and words


def fmt_int(value: float | None) -> str:
    """Format a count with thousands separators (``–`` when missing)."""
    return "–" if value is None else f"{round(value):,}"


def fmt_pct(value: float | None, digits: int = 1) -> str:
    """Format a ratio as a percentage (``0.082`` → ``8.2%``)."""
    return "–" if value is None else f"{100 * value:.{digits}f}%"


def fmt_num(value: float | None, digits: int = 1) -> str:
    """Format a decimal number (``–`` when missing)."""
    return "–" if value is None else f"{value:,.{digits}f}"


def change_of(cur: float | None, prev: float | None) -> float | None:
    """Return the relative change from ``prev`` to ``cur``."""
    if cur is None or prev is None or prev == 0:
        return None
    return (cur - prev) / prev


_EN_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


@dataclass
class Words:
    """The sentence templates and labels of one language."""

    lang: str

    def t(self, key: str, **values: Any) -> str:
        """Return the message ``key`` with ``values`` filled in."""
        text = translate(key, self.lang)
        return text.format(**values) if values else text

    def month(self, key: str) -> str:
        """Name a ``YYYY-MM`` month (``2026年10月`` / ``October 2026``)."""
        year, month = int(key[:4]), int(key[5:7])
        return self.t("report.month", year=year, month=month, name=_EN_MONTHS[month - 1])

    def change(self, cur: float | None, prev: float | None) -> str:
        """Describe the change from ``prev`` to ``cur`` in words."""
        rel = change_of(cur, prev)
        if rel is None:
            return self.t("report.no_previous")
        if abs(rel) < 0.0005:
            return self.t("report.no_change")
        return self.t("report.up" if rel > 0 else "report.down", pct=fmt_pct(abs(rel)))

    def change_cell(self, cur: float | None, prev: float | None, *, rate: bool = False) -> str:
        """Return the change column of a KPI table (relative, or points for rates)."""
        if cur is None or prev is None:
            return "–"
        if rate:
            return f"{100 * (cur - prev):+.1f} pp"
        rel = change_of(cur, prev)
        return "–" if rel is None else f"{100 * rel:+.1f}%"

    def region(self, region: str | None) -> str:
        """Name the report's region (all regions when national)."""
        return region.replace("/", " · ") if region else self.t("report.all_regions")

    def label(self, prefix: str, code: object) -> str:
        """Translate a channel, scenario or state code."""
        return label(prefix, code, self.lang)

    def factor(self, name: str) -> str:
        """Name a survey factor (analyze locale), else the driver's own name."""
        text = translate(f"factor.{name}", self.lang)
        return name if text == f"factor.{name}" else text

    def join(self, items: Sequence[str]) -> str:
        """Join names into a list (``、`` in Chinese, ``, `` in English)."""
        return ("、" if self.lang == "zh-CN" else ", ").join(items) or self.t("report.none")


# ---------------------------------------------------------------------------
# Charts


@dataclass
class Chart:
    """A chart spec: ``bar`` (vertical), ``barh`` (horizontal) or ``line``."""

    kind: Literal["bar", "barh", "line"]
    title: str
    labels: list[str]
    series: dict[str, list[float]]
    percent: bool = False
    height: float = 2.8


def _setup_matplotlib() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import font_manager

    font = cjk_font()
    font_manager.fontManager.addfont(str(font.path))
    family = font_manager.FontProperties(fname=str(font.path)).get_name()
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.family": [family, "DejaVu Sans"],
            "axes.unicode_minus": False,
            "svg.fonttype": "path",
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titlesize": 11,
            "font.size": 9,
        }
    )
    return plt


def _short(text: str, width: int = 18) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def draw(chart: Chart, fmt: Literal["png", "svg"]) -> bytes:
    """Draw ``chart`` with matplotlib; return PNG or SVG bytes."""
    with _chart_lock:
        plt = _setup_matplotlib()
        n = max(1, len(chart.labels))
        height = chart.height if chart.kind != "barh" else max(1.8, 0.32 * n + 0.9)
        fig, ax = plt.subplots(figsize=(7.2, height))
        try:
            names = list(chart.series)
            labels = [_short(x) for x in chart.labels]
            if chart.kind == "line":
                for i, name in enumerate(names):
                    ax.plot(range(n), chart.series[name], color=CHART_COLORS[i], marker="o", ms=2.5)
                step = max(1, n // 10)
                ax.set_xticks(range(0, n, step), [labels[i] for i in range(0, n, step)])
            else:
                width = 0.8 / max(1, len(names))
                for i, name in enumerate(names):
                    pos = [j + (i - (len(names) - 1) / 2) * width for j in range(n)]
                    bar = ax.barh if chart.kind == "barh" else ax.bar
                    bar(pos, chart.series[name], width, color=CHART_COLORS[i], label=name)
                if chart.kind == "barh":
                    ax.set_yticks(range(n), labels)
                    ax.invert_yaxis()
                else:
                    ax.set_xticks(range(n), labels, rotation=30 if n > 6 else 0, ha="right")
            if chart.percent:
                axis = ax.xaxis if chart.kind == "barh" else ax.yaxis
                axis.set_major_formatter(lambda v, _pos: f"{v:g}%")
            if len(names) > 1:
                ax.legend(frameon=False, fontsize=8)
            ax.set_title(chart.title, loc="left")
            ax.grid(axis="x" if chart.kind == "barh" else "y", alpha=0.3)
            fig.tight_layout()
            buf = io.BytesIO()
            fig.savefig(buf, format=fmt, dpi=CHART_DPI)
            return buf.getvalue()
        finally:
            plt.close(fig)


# ---------------------------------------------------------------------------
# Sections


@dataclass
class Table:
    """A table of a section: header and rows of text cells."""

    columns: list[str]
    rows: list[list[str]]
    #: Relative column widths in the PDF (default: the first column twice the others).
    widths: list[int] | None = None


@dataclass
class Section:
    """One section of the report: heading, narrative, chart, table and a note."""

    key: str
    title: str
    paragraphs: list[str] = field(default_factory=list)
    chart: Chart | None = None
    table: Table | None = None
    note: str | None = None


def _kpis(f: dict[str, Any], w: Words) -> Section:
    v = f["volumes"]
    cur = f["complaints"].get("current") or {}
    prev = f["complaints"].get("previous") or {}
    wo = f["work_orders"]
    month, region = w.month(f["period"]), w.region(f["region"])
    s = Section("kpis", w.t("report.section.kpis"))
    if not v["voices"]:
        s.paragraphs.append(w.t("report.text.no_voices", month=month, region=region))
    else:
        s.paragraphs.append(
            w.t(
                "report.text.kpis",
                month=month,
                region=region,
                voices=fmt_int(v["voices"]),
                change=w.change(v["voices"], v["voices_prev"]),
                complaints=fmt_int(cur.get("complaints", 0)),
                complaints_change=w.change(cur.get("complaints"), prev.get("complaints")),
                per_10k=fmt_num(cur.get("complaints_per_10k")),
            )
        )
        s.paragraphs.append(
            w.t(
                "report.text.kpis_mood",
                negative=fmt_pct(v["negative_share"]),
                negative_prev=fmt_pct(v["negative_share_prev"]),
                risk=fmt_int(v["escalation_risk"]),
                escalated=fmt_int(v["escalated_channels"]),
            )
        )
    s.paragraphs.append(
        w.t(
            "report.text.kpis_ops",
            orders=fmt_int(wo["current"]["opened"]),
            on_time=fmt_pct(wo["current"]["on_time_rate"]),
            compliance=fmt_pct(f["commitments"]["rate"]),
        )
    )
    rows: list[tuple[str, float | None, float | None, str]] = [
        ("voices", v["voices"], v["voices_prev"], "int"),
        ("complaints", cur.get("complaints"), prev.get("complaints"), "int"),
        ("per_10k", cur.get("complaints_per_10k"), prev.get("complaints_per_10k"), "num"),
        ("negative", v["negative_share"], v["negative_share_prev"], "rate"),
        ("escalation_risk", v["escalation_risk"], v["escalation_risk_prev"], "int"),
        ("repeat", cur.get("repeat_complaint_rate"), prev.get("repeat_complaint_rate"), "rate"),
        ("escalation_rate", cur.get("escalation_rate"), prev.get("escalation_rate"), "rate"),
        (
            "fcr",
            cur.get("first_contact_resolution"),
            prev.get("first_contact_resolution"),
            "rate",
        ),
        ("orders", wo["current"]["opened"], wo["previous"]["opened"], "int"),
        ("on_time", wo["current"]["on_time_rate"], wo["previous"]["on_time_rate"], "rate"),
    ]
    show = {"int": fmt_int, "num": fmt_num, "rate": fmt_pct}
    s.table = Table(
        [
            w.t("report.col.metric"),
            w.t("report.col.current"),
            w.t("report.col.previous"),
            w.t("report.col.change"),
        ],
        [
            [
                w.t(f"report.kpi.{key}"),
                show[kind](a),
                show[kind](b),
                w.change_cell(a, b, rate=kind == "rate"),
            ]
            for key, a, b, kind in rows
        ],
    )
    counts = [r for r in rows if r[3] == "int"]
    s.chart = Chart(
        "bar",
        w.t("report.chart.kpis"),
        [w.t(f"report.kpi.{key}") for key, *_ in counts],
        {
            w.t("report.series.current"): [float(a or 0) for _, a, _, _ in counts],
            w.t("report.series.previous"): [float(b or 0) for _, _, b, _ in counts],
        },
    )
    return s


def _volume(f: dict[str, Any], w: Words) -> list[Section]:
    v = f["volumes"]
    s = Section("volume", w.t("report.section.volume"))
    if not v["voices"]:
        s.paragraphs.append(
            w.t("report.text.no_voices", month=w.month(f["period"]), region=w.region(f["region"]))
        )
        return [s]
    ch, ch_prev = v["by_channel"], v["by_channel_prev"]
    top = next(iter(ch))
    s.paragraphs.append(
        w.t(
            "report.text.channels",
            channel=w.label("channel", top),
            n=fmt_int(ch[top]),
            share=fmt_pct(ch[top] / v["voices"]),
            change=w.change(ch[top], ch_prev.get(top)),
        )
    )
    rise = max(ch, key=lambda c: (ch[c] - ch_prev.get(c, 0), c))
    if ch[rise] - ch_prev.get(rise, 0) > 0 and rise != top:
        s.paragraphs.append(
            w.t(
                "report.text.channel_rise",
                channel=w.label("channel", rise),
                n=fmt_int(ch[rise]),
                prev=fmt_int(ch_prev.get(rise, 0)),
            )
        )
    sc, sc_prev = v["by_scenario"], v["by_scenario_prev"]
    if sc:
        top3 = [f"{w.label('scenario', c)} {fmt_int(n)}" for c, n in list(sc.items())[:3]]
        s.paragraphs.append(w.t("report.text.scenarios", top=w.join(top3)))
        up = max(sc, key=lambda c: (sc[c] - sc_prev.get(c, 0), c))
        if sc[up] - sc_prev.get(up, 0) > 0:
            s.paragraphs.append(
                w.t(
                    "report.text.scenario_rise",
                    scenario=w.label("scenario", up),
                    prev=fmt_int(sc_prev.get(up, 0)),
                    n=fmt_int(sc[up]),
                )
            )
    daily: dict[str, int] = v["daily"]
    if daily:
        peak = max(daily, key=lambda d: (daily[d], d))
        s.paragraphs.append(
            w.t(
                "report.text.peak",
                day=peak,
                n=fmt_int(daily[peak]),
                mean=fmt_num(v["voices"] / f["days"]),
            )
        )
    channels = list(ch)[:8]
    s.chart = Chart(
        "bar",
        w.t("report.chart.channels"),
        [w.label("channel", c) for c in channels],
        {
            w.t("report.series.current"): [float(ch[c]) for c in channels],
            w.t("report.series.previous"): [float(ch_prev.get(c, 0)) for c in channels],
        },
    )
    s.table = Table(
        [w.t("report.col.scenario"), w.t("report.col.count"), w.t("report.col.share")],
        [
            [f"{c} {w.label('scenario', c)}", fmt_int(n), fmt_pct(n / v["voices"])]
            for c, n in list(sc.items())[:8]
        ],
    )
    scen = list(sc)[:10]
    days = Section("volume-daily", w.t("report.chart.scenarios"))
    days.chart = Chart(
        "barh",
        w.t("report.chart.scenarios"),
        [w.label("scenario", c) for c in scen],
        {
            w.t("report.series.current"): [float(sc[c]) for c in scen],
            w.t("report.series.previous"): [float(sc_prev.get(c, 0)) for c in scen],
        },
    )
    trend = Section("volume-trend", w.t("report.chart.daily"))
    trend.chart = Chart(
        "line",
        w.t("report.chart.daily"),
        [d[5:] for d in daily],
        {w.t("report.col.count"): [float(n) for n in daily.values()]},
        height=2.3,
    )
    return [s, days, trend]


def _cause(values: dict[str, Any], w: Words) -> str:
    parts = []
    for dim, value in values.items():
        if dim in ("scenario", "channel"):
            parts.append(w.label(dim, value))
        else:
            parts.append(str(value))
    return " · ".join(parts) or w.t("report.all_regions")


def _surges(f: dict[str, Any], w: Words) -> Section:
    s = Section("surges", w.t("report.section.surges"))
    found: list[dict[str, Any]] = f["surges"]
    if not found:
        s.paragraphs.append(w.t("report.text.no_surges"))
        return s
    s.paragraphs.append(w.t("report.text.surges", n=fmt_int(len(found))))
    for a in found[:2]:
        cases = a.get("typical_cases") or []
        s.paragraphs.append(
            w.t(
                "report.text.surge",
                start=a["start"][:16].replace("T", " "),
                cause=_cause(a.get("values") or {}, w),
                actual=fmt_int(a["actual"]),
                expected=fmt_num(a["expected"]),
                excess=fmt_num(a["excess"]),
                share=fmt_pct(a.get("share_of_excess")),
                case=_short(str(cases[0].get("text") or ""), 80) if cases else "–",
            )
        )
    s.chart = Chart(
        "barh",
        w.t("report.chart.surges"),
        [_cause(a.get("values") or {}, w) for a in found],
        {
            w.t("report.series.actual"): [float(a["actual"]) for a in found],
            w.t("report.series.expected"): [float(a["expected"]) for a in found],
        },
    )
    s.table = Table(
        [
            w.t("report.col.start"),
            w.t("report.col.root_cause"),
            w.t("report.col.actual"),
            w.t("report.col.expected"),
        ],
        [
            [
                a["start"][:16].replace("T", " "),
                _cause(a.get("values") or {}, w),
                fmt_int(a["actual"]),
                fmt_num(a["expected"]),
            ]
            for a in found
        ],
    )
    return s


def _orders_text(orders: list[dict[str, Any]], w: Words) -> str:
    if not orders:
        return w.t("report.text.no_orders")
    states = [
        w.label("act.state", o["state"])
        + (f" ({w.t('report.bar.regressed')})" if o["regressed"] else "")
        for o in orders
    ]
    return w.join(states)


def _problems(f: dict[str, Any], w: Words) -> Section:
    p = f["problems"]
    s = Section("problems", w.t("report.section.problems"))
    if not p["largest"]:
        s.paragraphs.append(w.t("report.text.no_problems"))
        return s
    s.paragraphs.append(w.t("report.text.problems", n=fmt_int(p["count"])))
    top = p["largest"][0]
    s.paragraphs.append(
        w.t(
            "report.text.problem_top",
            title=top["title"],
            scenario=w.label("scenario", top["scenario"]),
            voices=fmt_int(top["voices"]),
            prev=fmt_int(top["voices_prev"]),
            orders=_orders_text(top["orders"], w),
            case=_short(top["typical_cases"][0], 80) if top["typical_cases"] else "–",
        )
    )
    if p["growing"]:
        g = p["growing"][0]
        s.paragraphs.append(
            w.t(
                "report.text.problem_growing",
                title=g["title"],
                growth=fmt_int(g["growth"]),
                prev=fmt_int(g["voices_prev"]),
                voices=fmt_int(g["voices"]),
                orders=_orders_text(g["orders"], w),
            )
        )
    shown = list({x["id"]: x for x in [*p["largest"], *p["growing"]]}.values())
    s.chart = Chart(
        "barh",
        w.t("report.chart.problems"),
        [x["title"] for x in shown],
        {
            w.t("report.series.current"): [float(x["voices"]) for x in shown],
            w.t("report.series.previous"): [float(x["voices_prev"]) for x in shown],
        },
    )
    s.table = Table(
        [
            w.t("report.col.problem"),
            w.t("report.col.current"),
            w.t("report.col.previous"),
            w.t("report.col.orders"),
            w.t("report.col.typical"),
        ],
        [
            [
                x["title"],
                fmt_int(x["voices"]),
                fmt_int(x["voices_prev"]),
                _orders_text(x["orders"], w),
                _short(x["typical_cases"][0], 48) if x["typical_cases"] else "–",
            ]
            for x in shown
        ],
        widths=[3, 1, 1, 2, 5],
    )
    return s


def _commitments(f: dict[str, Any], w: Words) -> Section:
    c = f["commitments"]
    s = Section("commitments", w.t("report.section.commitments"))
    rules = [r for r in c["rules"] if r["checked"] or r["pending"]]
    orders: list[dict[str, Any]] = c.get("orders") or []
    if not rules and not orders:
        s.paragraphs.append(w.t("report.text.no_commitments"))
        return s
    if rules:
        s.paragraphs.append(
            w.t(
                "report.text.commitments",
                checked=fmt_int(c["checked"]),
                ok=fmt_int(c["ok"]),
                rate=fmt_pct(c["rate"]),
                violations=fmt_int(c["violations"]),
                pending=fmt_int(c["pending"]),
            )
        )
    rated = [r for r in rules if r["compliance_rate"] is not None]
    if rated:
        worst = min(rated, key=lambda r: (r["compliance_rate"], r["rule"]))
        s.paragraphs.append(
            w.t(
                "report.text.commitment_worst",
                rule=worst["name"][w.lang],
                rate=fmt_pct(worst["compliance_rate"]),
                violations=fmt_int(worst["violations"]),
            )
        )
    if orders:
        due = sum(o["due"] for o in orders)
        on_time = sum(o["on_time"] for o in orders)
        late = sum(o["late"] for o in orders)
        s.paragraphs.append(
            w.t(
                "report.text.commitment_orders",
                n=fmt_int(len(orders)),
                due=fmt_int(due),
                on_time=fmt_int(on_time),
                late=fmt_int(late),
                rate=fmt_pct(on_time / (on_time + late) if on_time + late else None),
            )
        )
    events, tickets = w.t("report.source.events"), w.t("report.source.orders")
    labels = [f"{r['rule']} {r['name'][w.lang]}" for r in rated]
    labels += [f"{tickets}: {o['name'][w.lang]}" for o in orders if o["on_time_rate"] is not None]
    values = [round(100 * r["compliance_rate"], 1) for r in rated]
    values += [round(100 * o["on_time_rate"], 1) for o in orders if o["on_time_rate"] is not None]
    s.chart = Chart(
        "barh",
        w.t("report.chart.commitments"),
        labels,
        {w.t("report.col.on_time"): values},
        percent=True,
    )
    s.table = Table(
        [
            w.t("report.col.rule"),
            w.t("report.col.measured"),
            w.t("report.col.checked"),
            w.t("report.col.on_time"),
            w.t("report.col.violations"),
            w.t("report.col.pending"),
        ],
        [
            [
                f"{r['rule']} {r['name'][w.lang]}",
                f"{events} {r['rule']}",
                fmt_int(r["checked"]),
                fmt_pct(r["compliance_rate"]),
                fmt_int(r["violations"]),
                fmt_int(r["pending"]),
            ]
            for r in rules
        ]
        + [
            [
                o["name"][w.lang],
                tickets,
                fmt_int(o["due"]),
                fmt_pct(o["on_time_rate"]),
                fmt_int(o["late"]),
                fmt_int(o["open"]),
            ]
            for o in orders
        ],
        widths=[4, 2, 1, 1, 1, 1],
    )
    return s


def _drivers(f: dict[str, Any], w: Words) -> Section:
    sat = f["satisfaction"]
    s = Section("drivers", w.t("report.section.drivers"))
    drivers = sat.get("drivers")
    if not drivers:
        s.paragraphs.append(w.t("report.text.error", error=sat.get("drivers_error") or "–"))
        return s
    top = [f"{w.factor(d['driver'])}（{fmt_pct(d['share'])}）" for d in drivers[:3]]
    if w.lang != "zh-CN":
        top = [f"{w.factor(d['driver'])} ({fmt_pct(d['share'])})" for d in drivers[:3]]
    s.paragraphs.append(w.t("report.text.drivers", n=fmt_int(sat.get("n")), top=w.join(top)))
    boards = [w.factor(b) for b in sat.get("short_boards", [])]
    s.paragraphs.append(
        w.t("report.text.short_boards", boards=w.join(boards))
        if boards
        else w.t("report.text.no_short_boards")
    )
    s.note = w.t("report.text.drivers_note")
    shown = drivers[:10]
    s.chart = Chart(
        "barh",
        w.t("report.chart.drivers"),
        [w.factor(d["driver"]) for d in shown],
        {w.t("report.col.importance"): [round(100 * d["share"], 1) for d in shown]},
        percent=True,
    )
    s.table = Table(
        [w.t("report.col.driver"), w.t("report.col.importance"), w.t("report.col.performance")],
        [
            [
                w.factor(d["driver"])
                + (" ★" if d["driver"] in sat.get("short_boards", []) else ""),
                fmt_pct(d["share"]),
                fmt_num(d["performance"], 2),
            ]
            for d in shown
        ],
    )
    return s


def _rule_text(conditions: list[dict[str, Any]]) -> str:
    parts = []
    for c in conditions:
        value = c["value"]
        if isinstance(value, list | tuple):
            value = "{" + ", ".join(str(v) for v in value) + "}"
        elif isinstance(value, float):
            value = f"{value:g}"
        parts.append(f"{c['column']} {c['op']} {value}")
    return " AND ".join(parts)


def _segments(f: dict[str, Any], w: Words) -> Section:
    sat = f["satisfaction"]
    s = Section("segments", w.t("report.section.segments"))
    if sat.get("base_rate") is None:
        s.paragraphs.append(w.t("report.text.error", error=sat.get("segments_error") or "–"))
        return s
    rules = sat.get("segments") or []
    if rules:
        r = rules[0]
        s.paragraphs.append(
            w.t(
                "report.text.segments",
                base=fmt_pct(sat["base_rate"]),
                n=fmt_int(sat.get("segments_n")),
                rule=_rule_text(r["conditions"]),
                rate=fmt_pct(r["rate"]),
                lift=fmt_num(r["lift"]),
                coverage=fmt_pct(r["coverage"]),
            )
        )
    else:
        s.paragraphs.append(w.t("report.text.no_segments"))
    drill = sat.get("drill_down") or []
    if drill:
        worst = max(drill, key=lambda d: (d["rate"], str(d["value"])))
        s.paragraphs.append(
            w.t("report.text.segment_region", region=worst["value"], rate=fmt_pct(worst["rate"]))
        )
        s.chart = Chart(
            "bar",
            w.t("report.chart.segments"),
            [str(d["value"]) for d in drill],
            {w.t("report.col.rate"): [round(100 * d["rate"], 1) for d in drill]},
            percent=True,
        )
    if rules:
        s.table = Table(
            [
                w.t("report.col.segment"),
                w.t("report.col.rate"),
                w.t("report.col.lift"),
                w.t("report.col.coverage"),
            ],
            [
                [
                    _rule_text(r["conditions"]),
                    fmt_pct(r["rate"]),
                    fmt_num(r["lift"]),
                    fmt_pct(r["coverage"]),
                ]
                for r in rules
            ],
        )
    return s


def _churn(f: dict[str, Any], w: Words) -> Section:
    c = f["churn"]
    s = Section("churn", w.t("report.section.churn"))
    if c.get("error"):
        s.paragraphs.append(w.t("report.text.error", error=c["error"]))
        return s
    s.paragraphs.append(
        w.t(
            "report.text.churn",
            customers=fmt_int(c["customers"]),
            churned=fmt_int(c["churned"]),
            auc=fmt_num(c["roc_auc"], 3),
            threshold=fmt_pct(c["threshold"], 0),
            at_risk=fmt_int(c["at_risk"]),
        )
    )
    reasons: dict[str, int] = c.get("reasons") or {}
    if reasons:
        s.paragraphs.append(
            w.t(
                "report.text.churn_reasons",
                reasons=w.join([f"{k} ({v})" for k, v in list(reasons.items())[:3]]),
            )
        )
        s.chart = Chart(
            "barh",
            w.t("report.chart.churn"),
            list(reasons),
            {w.t("report.col.customer"): [float(n) for n in reasons.values()]},
        )
    if not c.get("national"):
        s.note = w.t("report.text.churn_region")
    elif c.get("top"):
        s.table = Table(
            [w.t("report.col.customer"), w.t("report.col.risk"), w.t("report.col.reasons")],
            [
                [x["id"], fmt_pct(x["risk"], 0), w.join([str(r) for r in x["reasons"]])]
                for x in c["top"]
            ],
        )
    return s


def _orders(f: dict[str, Any], w: Words) -> Section:
    cur, prev = f["work_orders"]["current"], f["work_orders"]["previous"]
    s = Section("orders", w.t("report.section.orders"))
    s.paragraphs.append(
        w.t(
            "report.text.orders",
            opened=fmt_int(cur["opened"]),
            opened_prev=fmt_int(prev["opened"]),
            resolved=fmt_int(cur["resolved"]),
            due=fmt_int(cur["due"]),
            on_time=fmt_int(cur["on_time"]),
            rate=fmt_pct(cur["on_time_rate"]),
            rate_prev=fmt_pct(prev["on_time_rate"]),
        )
    )
    s.paragraphs.append(
        w.t(
            "report.text.orders_sla",
            breached=fmt_int(cur["breached"]),
            escalated=fmt_int(cur["escalated"]),
            open=fmt_int(cur["open_at_end"]),
        )
    )
    keys = ("opened", "resolved", "on_time", "breached", "escalated", "open_at_end")
    s.chart = Chart(
        "bar",
        w.t("report.chart.orders"),
        [w.t(f"report.bar.{k}") for k in keys],
        {
            w.t("report.series.current"): [float(cur[k]) for k in keys],
            w.t("report.series.previous"): [float(prev[k]) for k in keys],
        },
    )
    return s


def _verification(f: dict[str, Any], w: Words) -> Section:
    v = f["verification"]
    s = Section("verification", w.t("report.section.verification"))
    if not (v["answers"] or v["verified"] or v["regressed"]):
        s.paragraphs.append(w.t("report.text.no_verification"))
        return s
    s.paragraphs.append(
        w.t(
            "report.text.verification",
            answers=fmt_int(v["answers"]),
            satisfied=fmt_int(v["satisfied"]),
            rate=fmt_pct(v["satisfied_rate"]),
            verified=fmt_int(v["verified"]),
            regressed=fmt_int(v["regressed"]),
        )
    )
    for r in v["regressions"][:3]:
        s.paragraphs.append(
            w.t("report.text.regression", title=r["title"], state=w.label("act.state", r["state"]))
        )
    keys = ("satisfied", "unsatisfied", "verified", "regressed")
    s.chart = Chart(
        "bar",
        w.t("report.chart.verification"),
        [w.t(f"report.bar.{k}") for k in keys],
        {w.t("report.col.count"): [float(v[k]) for k in keys]},
        height=2.3,
    )
    return s


def sections(facts: dict[str, Any], lang: str) -> list[Section]:
    """Build every section of the report (narrative, chart spec, table) in ``lang``."""
    w = Words(lang)
    return [
        _kpis(facts, w),
        *_volume(facts, w),
        _surges(facts, w),
        _problems(facts, w),
        _commitments(facts, w),
        _drivers(facts, w),
        _segments(facts, w),
        _churn(facts, w),
        _orders(facts, w),
        _verification(facts, w),
    ]


def headline(facts: dict[str, Any], lang: str) -> tuple[str, str]:
    """Return the report's title and subtitle."""
    w = Words(lang)
    title = w.t("report.title", month=w.month(facts["period"]))
    subtitle = w.t(
        "report.subtitle",
        region=w.region(facts["region"]),
        previous=w.month(facts["previous"]),
        generated=facts["generated_at"][:16].replace("T", " ") + " UTC",
    )
    return title, subtitle


# ---------------------------------------------------------------------------
# Documents


def render_pdf(facts: dict[str, Any], lang: str) -> bytes:
    """Render the report as PDF with typst, the CJK font embedded and PNG charts."""
    import typst

    font = cjk_font()
    title, subtitle = headline(facts, lang)
    with tempfile.TemporaryDirectory(prefix="voxloop-report-") as tmp:
        root = Path(tmp)
        doc: dict[str, Any] = {
            "lang": "zh" if lang == "zh-CN" else "en",
            "font": font.family,
            "title": title,
            "subtitle": subtitle,
            "footer": translate("report.footer", lang),
            "sections": [],
        }
        for i, sec in enumerate(sections(facts, lang)):
            image = None
            if sec.chart is not None:
                image = f"chart-{i:02d}.png"
                (root / image).write_bytes(draw(sec.chart, "png"))
            doc["sections"].append(
                {
                    "key": sec.key,
                    "title": sec.title,
                    "heading": not sec.key.startswith("volume-"),
                    "paragraphs": sec.paragraphs,
                    "chart": image,
                    "table": None
                    if sec.table is None
                    else {
                        "columns": sec.table.columns,
                        "rows": sec.table.rows,
                        "widths": sec.table.widths or [2, *([1] * (len(sec.table.columns) - 1))],
                    },
                    "note": sec.note,
                }
            )
        (root / "report.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
        shutil.copy(TEMPLATE_DIR / "report.typ", root / "report.typ")
        pdf = typst.compile(
            str(root / "report.typ"),
            root=str(root),
            font_paths=[str(font.path.parent)],
        )
    if not isinstance(pdf, bytes):  # pragma: no cover - typst returns bytes without output
        raise VoxloopError("typst did not return a PDF")
    return pdf


def render_html(facts: dict[str, Any], lang: str) -> bytes:
    """Render the report as one self-contained HTML page (inline CSS and SVG charts)."""
    title, subtitle = headline(facts, lang)
    built = []
    for sec in sections(facts, lang):
        svg = None
        if sec.chart is not None:
            text = draw(sec.chart, "svg").decode("utf-8")
            # Drop the XML prolog and DOCTYPE: the SVG is inlined into the page.
            svg = Markup(text[text.index("<svg") :])
        built.append({"section": sec, "svg": svg})
    page = (
        templates()
        .env.get_template("report/report.html")
        .render(
            lang=lang,
            title=title,
            subtitle=subtitle,
            footer=translate("report.footer", lang),
            sections=built,
            facts=facts,
        )
    )
    return page.encode("utf-8")


def render(facts: dict[str, Any], *, lang: str, fmt: str) -> bytes:
    """Render ``facts`` as ``fmt`` (``pdf`` or ``html``) in ``lang``."""
    if fmt == "pdf":
        return render_pdf(facts, lang)
    if fmt == "html":
        return render_html(facts, lang)
    from voxloop.errors import UnusableInputError

    raise UnusableInputError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
