"""The report's figures, drawn with matplotlib and returned as inline SVG strings.

Figures are built with the object API on an explicit Agg canvas, never through pyplot: no GUI
backend is ever chosen, nothing global is switched, and importing the probe package does not
import matplotlib (probe.report imports this module only when it renders HTML).

SVGs stay small: text stays text (svg.fonttype "none"), curves are resampled to a fixed number
of points, stall events are merged at pixel resolution, and ids are prefixed per figure so
that several SVGs can live in one HTML document.
"""

from __future__ import annotations

import bisect
import io
import itertools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

import matplotlib
from hdrh.histogram import HdrHistogram
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from probe import detect, stats, thresholds
from probe.measurement import StallEvent
from probe.model import RunResult, VariantResult

# Okabe-Ito then tab10: distinguishable for colour-blind readers, then enough for 9+ variants.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000",
           "#8c564b", "#7f7f7f", "#bcbd22", "#17becf", "#9467bd")
RESULT_STYLES = ("-", "--", ":", "-.")
RESULT_HATCHES = ("", "//", "..", "xx")
STALL_COLOURS = {"blocked": "#c62828", "computing": "#7b1fa2", "queued": "#64b5f6",
                 "preempted": "#9e9e9e"}
OVER, UNDER = "#c62828", "#2e7d32"
CURVE_POINTS = 80  # per latency curve: smooth on a log axis, a few KB of SVG
MIN_SPAN_PX = 1.5  # narrower stall marks would vanish; closer ones merge into one mark

PERCENTILE_TICKS = ((2, "50%"), (10, "90%"), (100, "99%"), (1e3, "99.9%"),
                    (1e4, "99.99%"), (1e5, "99.999%"))

RC: dict[Any, Any] = {  # matplotlib types the keys as literals
    "svg.fonttype": "none",  # real <text>: small, selectable, no glyph paths
    "text.parse_math": False,  # a route or variant name with two "$" is a name, not TeX
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
    "font.size": 9,
    "axes.edgecolor": "#666666",
    "axes.labelcolor": "#222222",
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.grid": True,
    "grid.color": "#e4e4e4",
    "grid.linewidth": 0.6,
    "xtick.color": "#444444",
    "ytick.color": "#444444",
    "legend.frameon": False,
    "lines.linewidth": 1.6,
    "axes.axisbelow": True,
}
PLAIN = FuncFormatter(lambda y, _pos: f"{y:g}")  # 0.1, 10, 100 rather than 10^-1, 10^1...


@dataclass(frozen=True)
class Labelled:
    """One result in the figures: its label ("" alone, "A", "B"... when comparing)."""

    label: str
    result: RunResult


def variant_colours(names: Sequence[str]) -> dict[str, str]:
    """A stable colour per variant name, shared by every figure and the HTML tables."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


# -- (1) latency percentiles -----------------------------------------------------------------

def latency_percentiles(runs: Sequence[Labelled], colours: dict[str, str]) -> str | None:
    """HdrHistogram-style percentile plot: one panel per histogram (SELECT 1 in bench, each
    HTTP route in run), one line per variant and result."""
    keys = _latency_keys(runs)
    if not keys:
        return None
    with matplotlib.rc_context(RC):
        fig = _figure(9.0, 3.4 * math.ceil(len(keys) / 2) + 0.3 + 0.17 * len(_labels(runs)))
        axes = fig.subplots(math.ceil(len(keys) / 2), min(len(keys), 2), squeeze=False).flat
        handles: dict[str, Line2D] = {}
        for ax, key in zip(axes, keys, strict=False):
            _percentile_panel(ax, key, runs, colours, handles)
        if not handles:
            return None  # every variant failed before it recorded a latency: nothing to draw
        for ax in list(axes)[len(keys):]:
            ax.set_visible(False)
        fig.legend(list(handles.values()), list(handles), loc="outside lower center",
                   ncol=min(len(handles), 4), fontsize=8)
        return _svg(fig, "lat", "Latency by percentile, per variant")


def _labels(runs: Sequence[Labelled]) -> list[str]:
    return [v.name + run.label for run in runs for v in run.result.variants]


def _latency_keys(runs: Sequence[Labelled]) -> list[str]:
    """Histograms users feel: every HTTP route in run, the in-greenlet SELECT 1 in bench."""
    keys: list[str] = []
    for run in runs:
        for v in run.result.variants:
            wanted = [k for k in v.measured.histograms if k.startswith("http:")] \
                if run.result.mode == "run" else ["db"]
            keys += [k for k in wanted if k in v.measured.histograms and k not in keys]
    return keys


def _percentile_panel(ax: Axes, key: str, runs: Sequence[Labelled], colours: dict[str, str],
                      handles: dict[str, Line2D]) -> None:
    top, low, high = 100.0, math.inf, 0.0
    for i, run in enumerate(runs):
        for v in run.result.variants:
            hist = stats.decode(v.measured.histograms.get(key, ""))
            xs, ys = percentile_curve(hist)
            if not xs:
                continue
            label = f"{v.name} · {run.label}" if run.label else v.name
            (line,) = ax.plot(xs, ys, color=colours[v.name], label=label,
                              linestyle=RESULT_STYLES[i % len(RESULT_STYLES)],
                              alpha=0.75 if v.control else 1.0)
            handles.setdefault(label, line)
            top, low, high = max(top, xs[-1]), min(low, min(ys)), max(high, max(ys))
    right = min(10 ** math.ceil(math.log10(top)), 1e5)
    ax.set_xscale("log")
    ax.set_xlim(1, right)
    ticks = [(x, name) for x, name in PERCENTILE_TICKS if x <= right]
    ax.set_xticks([x for x, _ in ticks], [name for _, name in ticks])
    ax.minorticks_off()
    if high > 0 and low < math.inf and high / max(low, 1e-3) > 30:
        ax.set_yscale("log")  # healthy and blocking variants differ by decades
    else:
        ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(PLAIN)
    ax.set_title("SELECT 1, timed in-greenlet" if key == "db"
                 else f"HTTP route {key.removeprefix('http:')}, end to end")
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency (ms)")


def percentile_curve(hist: HdrHistogram,
                     points: int = CURVE_POINTS) -> tuple[list[float], list[float]]:
    """(1/(1-p), ms) at `points` log-spaced positions up to the last recorded value.

    One pass over the recorded buckets, then a bisection per point: hdrh's own
    get_value_at_percentile walks every bucket on each call, 100x slower here."""
    values, counts = stats.values_us(hist)
    if not values:
        return [], []
    ranks = list(itertools.accumulate(counts))
    total = ranks[-1]
    top = max(float(total), 2.0)  # 1/(1-p) of the last value; beyond it there is no data
    xs = [top ** (i / (points - 1)) for i in range(points)]
    ys = []
    for x in xs:
        rank = max(1, int((1 - 1 / x) * total + 0.5))  # hdrh's rounding of the target count
        ys.append(values[bisect.bisect_left(ranks, rank)] / 1000)
    ys[-1] = values[-1] / 1000  # the curve ends at the max, as HdrHistogram plots do
    return xs, [max(y, 0.001) for y in ys]  # a 0 µs bucket would break a log axis


# -- (2) the load phase, second by second ----------------------------------------------------

def timeline(name: str, runs: Sequence[tuple[str, VariantResult | None]],
             colours: dict[str, str]) -> str | None:
    """One variant's load phase: RPS, p99 and loop lag per second, and when the hub stalled;
    one column per result so that before/after sit side by side on the same scales."""
    shown = [(label, v) for label, v in runs
             if v is not None and v.measured.http is not None and v.measured.http.timeline]
    if not shown:
        return None
    with matplotlib.rc_context(RC):
        fig = _figure(min(9.5, 3.2 + 4.2 * len(shown)), 4.4)
        grid = fig.subplots(3, len(shown), squeeze=False, sharex="col", sharey="row",
                            gridspec_kw={"height_ratios": [2.2, 2.2, 1]})
        for col, (label, v) in enumerate(shown):
            _timeline_column([row[col] for row in grid], label, v, colours[name])
        for row in grid[:2]:
            row[0].set_ylim(bottom=0)  # once every column is drawn: the rows share it
            for ax in row[1:]:
                ax.tick_params(labelleft=False)
        grid[0][0].set_ylabel("requests/s")
        grid[1][0].set_ylabel("ms per second")
        return _svg(fig, f"tl-{_slug(name)}", f"Load phase of {name}, second by second")


def _timeline_column(axes: Sequence[Axes], label: str, v: VariantResult, colour: str) -> None:
    http = v.measured.http
    assert http is not None
    seconds = http.timeline
    edges = [s.t for s in seconds] + [seconds[-1].t + 1]
    rps, lat, strip = axes
    rps.stairs([s.requests for s in seconds], edges, color=colour, linewidth=1.8,
               label="requests")
    if any(s.failures for s in seconds):
        rps.stairs([s.failures for s in seconds], edges, color=OVER, label="failures")
        rps.legend(loc="upper right", fontsize=7)
    rps.set_title(f"{v.name} · {label}" if label else v.name)
    lat.stairs([s.p99_ms for s in seconds], edges, color=colour, linewidth=1.8,
               label="HTTP p99")
    lat.stairs([s.lag_max_ms for s in seconds], edges, color="#555555", linestyle="--",
               linewidth=1.2, label="loop lag max")
    lat.legend(loc="upper right", fontsize=7, ncol=2)
    # the seconds count from the whole second the load started in (summary._timeline)
    _stall_strip(strip, v, int(http.started), (edges[0], edges[-1]))
    strip.set_xlabel("seconds since the load started")


def _stall_strip(ax: Axes, v: VariantResult, started: float, span: tuple[float, float]) -> None:
    kinds = list(STALL_COLOURS)
    ax.set_ylim(-0.5, len(kinds) - 0.5)
    ax.set_yticks(range(len(kinds)), kinds, fontsize=7)
    ax.invert_yaxis()
    ax.grid(False, axis="y")
    ax.set_xlim(*span)
    if not started:
        ax.text(0.5, 0.5, "stall times not placed: these results predate the recorded load "
                "start", transform=ax.transAxes, ha="center", va="center", fontsize=7,
                color="#555555")
        return
    min_width = (span[1] - span[0]) * MIN_SPAN_PX / 600  # ~600 px wide on screen
    for row, kind in enumerate(kinds):
        events = [e for e in v.measured.stalls.events if e.kind == kind]
        bars = merge_spans(events, started, min_width)
        if bars:
            ax.broken_barh(bars, (row - 0.4, 0.8), color=STALL_COLOURS[kind], linewidth=0)


def merge_spans(events: Sequence[StallEvent], started: float,
                min_width: float) -> list[tuple[float, float]]:
    """(start s, width s) marks since `started`: at least `min_width` wide, and merged where
    they would touch, so 2000 stalls draw as a handful of rectangles."""
    bars: list[tuple[float, float]] = []
    for e in sorted(events, key=lambda e: e.t):
        start, width = e.t - started, max(e.ms / 1000, min_width)
        if bars and start <= bars[-1][0] + bars[-1][1] + min_width:
            first = bars[-1][0]
            bars[-1] = (first, max(bars[-1][1], start + width - first))
        else:
            bars.append((start, width))
    return bars


# -- (3) the probe's signals against their thresholds ----------------------------------------

def thresholds_chart(runs: Sequence[Labelled], names: Sequence[str]) -> str | None:
    """Serialisation ratio, hub-thread CPU burn and time the hub was held, per variant, as bars
    against the thresholds that flag them (red: at or past the threshold)."""
    rows = [(name, i, v) for name in names for i, run in enumerate(runs)
            for v in run.result.variants if v.name == name]
    if not rows:
        return None
    panels = (  # title, value, threshold, flagged (the judge's own test), format, scale
        ("sleeps serialised (wall / sleep)", lambda v: v.measured.serialization.ratio,
         lambda v: v.measured.serialization.threshold, "serialised", "{:.1f}x", "linear"),
        ("hub-thread CPU while waiting", lambda v: v.measured.cpu.burn_ratio * 100,
         lambda v: thresholds.BURN_RATIO * 100, "burning", "{:.0f}%", "linear"),
        ("hub held off-CPU, median ms/query", lambda v: v.measured.blocked_ms.p50,
         lambda v: thresholds.BLOCKED_MS, "blocked", "{:.3g}", "symlog"),
    )
    with matplotlib.rc_context(RC):
        fig = _figure(9.5, 1.1 + 0.3 * len(names) * (1 + 0.5 * (len(runs) - 1)))
        axes = fig.subplots(1, len(panels), sharey=True)
        for ax, panel in zip(axes, panels, strict=True):
            _bar_panel(ax, rows, len(runs), names, *panel)
        axes[0].set_yticks(range(len(names)), names)
        axes[0].invert_yaxis()
        legend = [Line2D([], [], color="#222222", linestyle="--", label="threshold"),
                  Patch(color=OVER, label="flagged"), Patch(color=UNDER, label="below")]
        legend += [Patch(facecolor="white", edgecolor="#444444", label=run.label,
                         hatch=RESULT_HATCHES[i % len(RESULT_HATCHES)])
                   for i, run in enumerate(runs) if run.label]
        fig.legend(handles=legend, loc="outside lower center", ncol=len(legend), fontsize=8)
        return _svg(fig, "thr", "Probe signals against their thresholds, per variant")


def _bar_panel(ax: Axes, rows: Sequence[tuple[str, int, VariantResult]], n_runs: int,
               names: Sequence[str], title: str, value: Callable[[VariantResult], float],
               limit: Callable[[VariantResult], float],
               signal: str, fmt: str, scale: str) -> None:
    height = 0.8 / n_runs
    top = 0.0
    for name, i, v in rows:
        y = names.index(name) - 0.4 + height * (i + 0.5)
        x, threshold = value(v), limit(v)
        flagged = getattr(detect.signals(v.measured), signal)
        ax.barh(y, x, height=height * 0.9, color=OVER if flagged else UNDER,
                hatch=RESULT_HATCHES[i % len(RESULT_HATCHES)], edgecolor="white",
                linewidth=0)
        ax.vlines(threshold, y - height / 2, y + height / 2, colors="#222222",
                  linestyles="--", linewidth=1)
        ax.text(x, y, " " + fmt.format(x), va="center", fontsize=7, color="#222222")
        top = max(top, x, threshold)
    top = top or 1.0  # nothing measured (a variant that deadlocked): an empty axis, not 0-0
    if scale == "symlog":
        ax.set_xscale("symlog", linthresh=0.01)
        ax.set_xlim(0, top * 4)
        ax.xaxis.set_major_formatter(PLAIN)
    else:
        ax.set_xlim(0, top * 1.25)
    ax.set_title(title, fontsize=9)
    ax.grid(False, axis="y")


# -- SVG output ------------------------------------------------------------------------------

def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # explicit Agg canvas: never a GUI backend, no global switch
    return fig


_PROLOGUE = re.compile(r"^.*?(?=<svg\b)", re.DOTALL)
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.DOTALL)
_SIZE = re.compile(r'\s(width|height)="[^"]*"')


def _svg(fig: Figure, prefix: str, title: str) -> str:
    """The figure as an <svg> element for inline use: no XML prologue, no metadata, ids
    unique to this figure, and a width that follows its container."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = _METADATA.sub("", _PROLOGUE.sub("", buffer.getvalue(), count=1))
    text = re.sub(r'\bid="', f'id="{prefix}-', text)
    text = re.sub(r'(xlink:href="#|url\(#)', rf"\g<1>{prefix}-", text)
    head, rest = text.split(">", 1)
    width = fig.get_figwidth() * 96  # CSS px: natural size, never blown up past it
    head = _SIZE.sub("", head) + (f' class="plot" role="img" aria-label="{escape(title)}" '
                                  f'style="max-width:{width:.0f}px"')
    return f"{head}>{rest}".strip()


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name)
