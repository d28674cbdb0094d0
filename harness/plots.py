"""One SVG per test: request latency and throughput around the fault, with fault and outage windows shaded."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from harness.checkers.outage import outages
from harness.timeline import (CLUSTER_GROUP_STARTED, FAULT_HEALED, FAULT_INJECTED, NOTIFICATION, Event, Request,
                              Timeline)

FAULT_COLOUR = "#f4a259"    # orange: the harness broke something here
OUTAGE_COLOUR = "#bc4b51"   # red: clients saw no answer here
NOTIFY_COLOUR = "#5b8e7d"
STARTED_COLOUR = "#3d5a80"
MAX_LABELS = 30
"""Vertical event lines beyond this many are drawn but not labelled, so the labels stay readable."""
MIN_LATENCY_MS = 0.01
"""Log scale floor: a failed request with latency 0 still shows up."""


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


def _event_lines(axes: Sequence[Axes], events: list[Event], origin: float) -> None:
    """A vertical line per notification and group start; small labels on the top panel only."""
    for n, e in enumerate(events):
        x = e.mono - origin
        notify = e.kind == NOTIFICATION
        colour = NOTIFY_COLOUR if notify else STARTED_COLOUR
        for ax in axes:
            ax.axvline(x, color=colour, lw=0.7, ls=":" if notify else "--", alpha=0.8)
        if n < MAX_LABELS:
            d = e.data
            text = (f"notify {d.get('kind', '')} {d.get('rsc') or e.node or ''} {d.get('task') or d.get('desc') or ''}"
                    if notify else f"{d.get('group', 'group')} started on {e.node}")
            axes[0].annotate(" ".join(text.split()), xy=(x, 1.0), xycoords=("data", "axes fraction"),
                             rotation=90, fontsize=6, va="top", ha="right", color=colour)


def plot_timeline(timeline: Timeline, requests: Sequence[Request], path: Path) -> Path:
    """Write the test's picture as SVG: top latency (ms, log) per request, bottom throughput per 1 s bin.

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

    fig = Figure(figsize=(10, 6), constrained_layout=True)
    top, bottom = fig.subplots(2, 1, sharex=True)
    fig.suptitle(str(timeline.meta.get("test") or timeline.meta.get("name") or "timeline"), fontsize=9)

    ok = [r for r in reqs if r.ok]
    bad = [r for r in reqs if not r.ok]
    for group, colour, marker, label in ((ok, "#4a7ab7", ".", "ok"), (bad, OUTAGE_COLOUR, "x", "failed")):
        if group:
            top.scatter([r.mono - origin for r in group], [max(r.latency_s * 1000, MIN_LATENCY_MS) for r in group],
                        s=4, c=colour, marker=marker, label=f"{label} ({len(group)})", linewidths=0.5,
                        rasterized=len(reqs) > 2000)  # one vector mark per request bloats the SVG
    top.set_yscale("log")
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

    axes = (top, bottom)
    windows = fault_windows(events, end)
    _shade(axes, [(a - origin, b - origin) for a, b, _ in windows], FAULT_COLOUR, "fault-window", "fault")
    for a, _, name in windows:
        bottom.annotate(name, xy=(a - origin, 1.0), xycoords=("data", "axes fraction"), xytext=(2, -2),
                        textcoords="offset points", fontsize=6, va="top", color="#9c5a1a")
    _shade(axes, [(o.start - origin, o.end - origin) for o in outages(samples)], OUTAGE_COLOUR,
           "outage-window", "probe outage")
    _event_lines(axes, [e for e in events if e.kind in (NOTIFICATION, CLUSTER_GROUP_STARTED)], origin)
    for ax in axes:
        ax.grid(True, alpha=0.3, lw=0.5)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right", fontsize=7)
    if not times:
        bottom.set_xlim(-1, 1)

    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = path.suffix.lstrip(".").lower() or "svg"  # SVG for reports; .png works too, for a quick look
    # real <text> (small, searchable) and fixed ids/no date, so the same timeline gives the same file
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": "fallover"}):
        if fmt == "svg":
            fig.savefig(path, format=fmt, metadata={"Date": None})
        else:
            fig.savefig(path, format=fmt)
    return path
