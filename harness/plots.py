"""One SVG per case: a row of milestones, request latency and throughput around the fault, faults and outages shaded.

The title names the case and its verdict; the milestones (fault, detected, fenced, service
back, healed, redundant) are a readable row of markers above the load panels. Raw events do
not go on the picture — they overlap into unreadable text — but into the table under it in
the HTML report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from harness.checkers.outage import outages
from harness.report.milestones import Milestone
from harness.timeline import FAULT_HEALED, FAULT_INJECTED, Event, Request, Timeline

FAULT_COLOUR = "#f4a259"    # orange: the harness broke something here
OUTAGE_COLOUR = "#bc4b51"   # red: clients saw no answer here
STATUS_COLOURS = {"PASS": "#2d7d46", "FAIL": "#bc4b51", "ERROR": "#8a5a00"}
MILESTONE_STYLE: dict[str, tuple[str, str]] = {  # name → (colour, marker)
    "fault": ("#d9822b", "v"), "detected": ("#7b4f9d", "o"), "fenced": ("#222222", "X"),
    "service back": ("#2a7ab0", "^"), "healed": ("#9c5a1a", "s"), "redundant": ("#2d7d46", "D"),
}
LABEL_PT = 7.5
"""Milestone label size; the row has as many levels as it needs (up to MAX_LEVELS) so labels never overlap."""
MAX_LEVELS = 4
MIN_LATENCY_MS = 0.01
"""Log scale floor: a failed request with latency 0 still shows up."""
FIG_W_IN = 10.0


def fault_windows(events: Sequence[Event], end: float) -> list[tuple[float, float, str]]:
    """(start, end, name) per fault: each FAULT_INJECTED paired with the next FAULT_HEALED of the same
    fault/target; one never healed runs to `end` (the harness heals on exit, but the recording may stop first)."""
    open_: list[Event] = []
    out: list[tuple[float, float, str]] = []
    for e in sorted(events, key=lambda e: e.mono):
        if e.kind == FAULT_INJECTED:
            open_.append(e)
        elif e.kind == FAULT_HEALED and open_:
            key = (e.data.get("fault"), e.data.get("target"))
            match = next((o for o in open_ if (o.data.get("fault"), o.data.get("target")) == key), open_[0])
            open_.remove(match)
            out.append((match.mono, e.mono, _fault_name(match)))
    out += [(o.mono, max(end, o.mono), _fault_name(o)) for o in open_]
    return sorted(out)


def _fault_name(e: Event) -> str:
    target = e.data.get("target") or e.node
    return f"{e.data.get('fault') or 'fault'}{f' {target}' if target else ''}"


def _shade(axes: Sequence[Axes], windows: list[tuple[float, float]], colour: str, gid: str, label: str) -> None:
    """Shade each window on every panel; the gid ("fault-window-0", …) makes the band findable in the SVG."""
    for i, (a, b) in enumerate(windows):
        for j, ax in enumerate(axes):
            patch = ax.axvspan(a, b, color=colour, alpha=0.25, lw=0, zorder=0,
                               label=label if i == 0 and j == 0 else None)
            patch.set_gid(f"{gid}-{i}" if j == 0 else f"{gid}-{i}-{j}")


def label_levels(xs: Sequence[float], widths: Sequence[float], levels: int = MAX_LEVELS) -> list[int]:
    """A row level per label (0 = top) so that no two labels on one level overlap, left to right.

    Each label starts at its x and is ``width`` long (data units). A label goes on the first
    level whose last label ends before it; when every level is taken, on the one that frees first.

    >>> label_levels([0, 0.1, 5], [2, 2, 2])
    [0, 1, 0]
    """
    ends = [-math.inf] * levels
    out = []
    for x, w in zip(xs, widths):
        free = next((i for i, end in enumerate(ends) if end <= x), None)
        level = free if free is not None else min(range(levels), key=lambda i: ends[i])
        ends[level] = x + w
        out.append(level)
    return out


def _milestone_row(row: Axes, panels: Sequence[Axes], marks: Sequence[Milestone], origin: float,
                   xlim: tuple[float, float]) -> None:
    """Markers with short horizontal labels, staggered onto levels; a thin line through the panels below."""
    span = max(xlim[1] - xlim[0], 1e-9)
    per_char = LABEL_PT * 0.55 / 72 / (FIG_W_IN * 0.86) * span  # a label's length in data units, roughly
    xs = [m.mono - origin for m in marks]
    texts = [f"{m.name} {x:+.1f}s" for m, x in zip(marks, xs)]
    levels = label_levels(xs, [len(t) * per_char + span * 0.012 for t in texts])
    depth = max(levels, default=0) + 1
    for m, x, text, level in zip(marks, xs, texts, levels):
        colour, marker = MILESTONE_STYLE.get(m.name, ("#555555", "o"))
        y = depth - level
        row.plot([x], [y], marker=marker, color=colour, markersize=7, linestyle="none", gid=f"milestone-{m.name}")
        row.annotate(text, xy=(x, y), xytext=(6, 0), textcoords="offset points", va="center", ha="left",
                     fontsize=LABEL_PT, color=colour)
        for ax in panels:
            ax.axvline(x, color=colour, lw=0.8, ls="--", alpha=0.7)
    row.set_ylim(0.3, depth + 0.7)
    row.set_yticks([])
    for side in ("left", "right", "top"):
        row.spines[side].set_visible(False)
    row.set_ylabel("milestones", fontsize=8)
    if not marks:
        row.text(0.5, 0.5, "no fault recorded: no milestones", transform=row.transAxes, ha="center",
                 va="center", color="grey", fontsize=8)


def plot_timeline(timeline: Timeline, requests: Sequence[Request], path: Path, *, title: str | None = None,
                  status: str | None = None, subtitle: str | None = None,
                  milestones: Sequence[Milestone] = ()) -> Path:
    """Write the case's picture: a milestone row, latency (ms, log) per request, throughput per 1 s bin.

    ``title`` (default: the timeline's case name) and ``status`` (PASS/FAIL/ERROR) head the picture,
    ``subtitle`` (e.g. the expected outcome) under it.
    Time is seconds relative to the first fault (the first recorded moment without one), so plots of
    different runs line up at the injection. Uses the Figure API directly (no pyplot, no GUI backend),
    which is safe from worker threads.
    """
    events = timeline.sorted_events()
    reqs = sorted((r for r in requests if r.kind != "verify"), key=lambda r: r.mono)  # read-back is not load
    samples = sorted(timeline.probe, key=lambda p: p.mono)
    times = [e.mono for e in events] + [r.mono for r in reqs] + [p.mono for p in samples]
    faults = [e for e in events if e.kind == FAULT_INJECTED]
    origin = faults[0].mono if faults else min(times, default=0.0)
    end = max(times, default=origin)
    xlim = (min(times, default=origin - 1) - origin, max(end - origin, 1.0))
    xlim = (xlim[0] - 0.01 * (xlim[1] - xlim[0]), xlim[1] + 0.01 * (xlim[1] - xlim[0]))

    # fixed margins, not constrained_layout: measuring every tick label to place the panels cost ~0.3 s per case
    fig = Figure(figsize=(FIG_W_IN, 6.6))
    fig.subplots_adjust(left=0.075, right=0.985, top=0.9, bottom=0.075, hspace=0.12)
    row, top, bottom = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [1.0, 2.6, 1.8]})
    name = title or str(timeline.meta.get("case") or timeline.meta.get("test") or "timeline")
    fig.suptitle(f"{name} — {status}" if status else name, fontsize=11, fontweight="bold",
                 color=STATUS_COLOURS.get(status or "", "black"))
    if subtitle:
        row.set_title(subtitle, fontsize=8, loc="left", color="#444444")

    ok = [r for r in reqs if r.ok]
    bad = [r for r in reqs if not r.ok]
    for group, colour, marker, label in ((ok, "#4a7ab7", ".", "ok"), (bad, OUTAGE_COLOUR, "x", "failed")):
        if group:
            top.scatter([r.mono - origin for r in group], [max(r.latency_s * 1000, MIN_LATENCY_MS) for r in group],
                        s=4, c=colour, marker=marker, label=f"{label} ({len(group)})", linewidths=0.5,
                        rasterized=len(reqs) > 2000)  # one vector mark per request bloats the SVG
    top.set_yscale("log")
    # plain numbers ("0.1", "10", "1000"): the default 10^x labels go through mathtext, ~0.1 s per plot
    top.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    top.yaxis.set_minor_formatter(NullFormatter())
    top.set_ylabel("latency (ms)")
    if not reqs:
        top.text(0.5, 0.5, "no load requests recorded", transform=top.transAxes, ha="center", color="grey")

    if reqs:
        first = math.floor(reqs[0].mono - origin)
        bins = range(first, math.floor(reqs[-1].mono - origin) + 2)
        counts = {True: [0] * len(bins), False: [0] * len(bins)}
        for r in reqs:
            counts[r.ok][math.floor(r.mono - origin) - first] += 1
        edges = [*bins, bins[-1] + 1]
        stacked = [a + b for a, b in zip(counts[True], counts[False])]
        bottom.stairs(counts[True], edges, fill=True, color="#4a7ab7", alpha=0.85, label="ok", zorder=2)
        bottom.stairs(stacked, edges, baseline=counts[True], fill=True, color=OUTAGE_COLOUR, alpha=0.85,
                      label="failed", zorder=2)
    bottom.set_ylabel("throughput (req/s)")
    bottom.set_xlabel("time since first fault (s)" if faults else "time since start of recording (s)")

    panels = (top, bottom)
    windows = fault_windows(events, end)
    _shade((*panels, row), [(a - origin, b - origin) for a, b, _ in windows], FAULT_COLOUR, "fault-window",
           "fault")
    for a, _, fault in windows:
        bottom.annotate(fault, xy=(a - origin, 1.0), xycoords=("data", "axes fraction"), xytext=(2, -2),
                        textcoords="offset points", fontsize=6, va="top", color="#9c5a1a")
    _shade(panels, [(o.start - origin, o.end - origin) for o in outages(samples)], OUTAGE_COLOUR,
           "outage-window", "probe outage")
    _milestone_row(row, panels, milestones, origin, xlim)
    for ax in panels:
        ax.grid(True, alpha=0.3, lw=0.5)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right", fontsize=7)
    bottom.set_xlim(*xlim)

    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = path.suffix.lstrip(".").lower() or "svg"  # SVG for reports; .png works too, for a quick look
    # real <text> (small, searchable) and fixed ids/no date, so the same timeline gives the same file
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": "fallover"}):
        if fmt == "svg":
            fig.savefig(path, format=fmt, metadata={"Date": None})
        else:
            fig.savefig(path, format=fmt)
    return path
