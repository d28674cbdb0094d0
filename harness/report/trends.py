"""reports/trends.html: fallover time and outage per failure type over the nightly runs, pass rate, flaky cases.

One self-contained page (inline CSS and SVG, no script, no external resource), so it opens
from a file on a machine with no network, and is rendered from reports/history.jsonl alone:
the run directories may have been pruned. Each point is the worst case of its failure type in
that run (what an SLA is judged on); its tooltip lists every case.

>>> "<svg" in render([], [])
True
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from pathlib import Path

import jinja2

from harness.report import history
from harness.report.history import Point, RunRecord

TEMPLATES = Path(__file__).resolve().parent / "templates"
W, H, PAD_L, PAD_R, PAD_T, PAD_B = 560, 230, 56, 16, 28, 60
INSET = 22  # first and last point this far inside the axes, so markers and labels never sit on them
COLORS = {"fallover": "#1f6fb2", "outage": "#d9822b"}


def _x(i: int, n: int) -> float:
    return PAD_L + INSET + (W - PAD_L - PAD_R - 2 * INSET) * (0.5 if n <= 1 else i / (n - 1))


def short_id(run_id: str) -> str:
    """An axis label for a run: a timestamp id without its year (the tooltip and the table keep it whole).

    >>> short_id("20261129-213015"), short_id("my-run")
    ('11-29 21:30:15', 'my-run')
    """
    m = re.fullmatch(r"\d{4}(\d\d)(\d\d)-(\d\d)(\d\d)(\d\d)", run_id)
    return f"{m[1]}-{m[2]} {m[3]}:{m[4]}:{m[5]}" if m else run_id


def nice_scale(biggest: float) -> tuple[float, float]:
    """(top, step) of a y axis with 3-6 round ticks (1, 2, 2.5 or 5 × 10^k) above ``biggest``.

    >>> nice_scale(17.3), nice_scale(100.0), nice_scale(0.0)
    ((20.0, 5.0), (100.0, 25.0), (1.0, 0.25))
    """
    biggest = max(biggest, 1e-9)
    raw = biggest / 4
    mag = 10 ** math.floor(math.log10(raw))
    step = float(next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw))
    top = step * math.ceil(biggest / step - 1e-9)
    return (top, step) if biggest > 1e-8 else (1.0, 0.25)


def _y(v: float, top: float) -> float:
    return PAD_T + (H - PAD_T - PAD_B) * (1 - v / top)


def _axes(run_ids: Sequence[str], top: float, step: float, unit: str, title: str) -> list[str]:
    """Frame, y ticks and one x label per run (run ids, rotated so that many fit)."""
    e = html.escape
    out = [f'<text x="{PAD_L}" y="16" class="t">{e(title)}</text>',
           f'<line x1="{PAD_L}" y1="{H - PAD_B}" x2="{W - PAD_R}" y2="{H - PAD_B}" class="ax"/>',
           f'<line x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{H - PAD_B}" class="ax"/>']
    for k in range(round(top / step) + 1):
        v = step * k
        y = _y(v, top)
        out.append(f'<line x1="{PAD_L}" y1="{y:.1f}" x2="{W - PAD_R}" y2="{y:.1f}" class="grid"/>'
                   f'<text x="{PAD_L - 4}" y="{y + 4:.1f}" class="yl">{v:g}{e(unit)}</text>')
    step = max(1, len(run_ids) // 12)  # at most ~12 labels; every point keeps its tooltip
    for i, rid in enumerate(run_ids):
        if i % step == 0 or i == len(run_ids) - 1:
            x = _x(i, len(run_ids))
            out.append(f'<text x="{x:.1f}" y="{H - PAD_B + 12}" class="xl" '
                       f'transform="rotate(-30 {x:.1f} {H - PAD_B + 12})">{e(short_id(rid))}</text>')
    return out


def line_chart(title: str, run_ids: Sequence[str], points: Sequence[Point], limits: dict[str, float | None]) -> str:
    """Fallover time and outage of one failure type: one point per run that exercised it, dashed SLA lines."""
    index = {rid: i for i, rid in enumerate(run_ids)}
    values = [v for p in points for v in (p.fallover_s, p.outage_s) if v is not None]
    values += [v for v in limits.values() if v is not None]
    top, step = nice_scale(max(values + [1.0]) * 1.08)
    out = _axes(run_ids, top, step, "s", title)
    for name, color in COLORS.items():
        limit = limits.get(name)
        if limit is not None:  # its value is in the legend: a label on the line would sit on the points
            y = _y(limit, top)
            out.append(f'<line x1="{PAD_L}" y1="{y:.1f}" x2="{W - PAD_R}" y2="{y:.1f}" stroke="{color}" '
                       f'class="sla"/>')
        pts = [(index[p.run_id], getattr(p, f"{name}_s"), p) for p in points if p.run_id in index]
        xy = [(_x(i, len(run_ids)), _y(v, top), v, p) for i, v, p in pts if v is not None]
        if len(xy) > 1:
            out.append(f'<polyline points="{" ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in xy)}" '
                       f'fill="none" stroke="{color}" stroke-width="2"/>')
        for x, y, v, p in xy:
            bad = any(s != "PASS" for _, s, _, _ in p.cases)
            tip = "\n".join([f"{p.run_id}: {name} {v:.2f} s (worst case)"] + [
                f"{c} {s}: fallover {_s(f)}, outage {_s(o)}" for c, s, f, o in p.cases])
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4.5" fill="{color}" '
                       f'stroke="{"#c62828" if bad else "#fff"}" stroke-width="{2.5 if bad else 1}">'
                       f'<title>{html.escape(tip)}</title></circle>')
    legend = "".join(f'<rect x="{W - PAD_R - 330 + 165 * k}" y="6" width="10" height="10" fill="{c}"/>'
                     f'<line x1="{W - PAD_R - 316 + 165 * k}" y1="11" x2="{W - PAD_R - 300 + 165 * k}" y2="11" '
                     f'stroke="{c}" class="sla"/><text x="{W - PAD_R - 296 + 165 * k}" y="15" class="lg">'
                     f'{n}{f" (SLA {limits[n]:g} s)" if limits.get(n) is not None else ""}</text>'
                     for k, (n, c) in enumerate(COLORS.items()))
    return _svg(out + [legend], title)


def pass_rate_chart(records: Sequence[RunRecord]) -> str:
    """Share of pytest tests that passed, per run (bars; red below 100 %)."""
    ids = [r.run_id for r in records]
    out = _axes(ids, 100.0, 25.0, "%", "pass rate per run")
    n = max(1, len(records))
    width = max(4.0, min(36.0, (W - PAD_L - PAD_R) / n * 0.6))
    for i, r in enumerate(records):
        rate = r.pass_rate
        x = _x(i, len(records))
        if rate is None:
            out.append(f'<text x="{x:.1f}" y="{H - PAD_B - 4}" class="na">n/a</text>')
            continue
        y = min(_y(rate * 100, 100.0), H - PAD_B - 2)  # 0 % still shows as a red sliver
        color = "#2e7d32" if rate == 1 else "#c62828"
        t = r.tests
        tip = (f"{r.run_id} ({r.code}): {rate:.0%}: {t.get('passed', 0)} passed, {t.get('failed', 0)} failed, "
               f"{t.get('error', 0)} errors, {t.get('skipped', 0)} skipped"
               + (" (interrupted)" if r.interrupted else ""))
        out.append(f'<rect x="{x - width / 2:.1f}" y="{y:.1f}" width="{width:.1f}" height="{H - PAD_B - y:.1f}" '
                   f'fill="{color}"><title>{html.escape(tip)}</title></rect>'
                   f'<text x="{x:.1f}" y="{y - 3:.1f}" class="bl">{rate:.0%}</text>')
    return _svg(out, "pass rate per run")


def _svg(parts: list[str], label: str) -> str:
    return (f'<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
            f'role="img" aria-label="{html.escape(label)}">' + "".join(parts) + "</svg>")


def _s(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f} s"


def render(records: Sequence[RunRecord], problems: Sequence[str]) -> str:
    """The whole page, from history records (oldest first) and the lines that could not be read."""
    ids = [r.run_id for r in records]
    sla = records[-1].sla if records else {}
    limits = {"fallover": sla.get("max_fallover_s"), "outage": sla.get("max_outage_s")}
    charts = [(fault, line_chart(fault, ids, pts, limits)) for fault, pts in sorted(history.series(records).items())]
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    return env.get_template("trends.html.j2").render(
        records=list(reversed(records)), charts=charts, pass_rate=pass_rate_chart(records),
        flaky=history.flaky(records), problems=problems, fmt=_s)


def write(reports: Path) -> Path:
    """reports/trends.html from reports/history.jsonl; returns its path."""
    records, problems = history.read(reports / "history.jsonl")
    out = reports / "trends.html"
    out.write_text(render(records, problems))
    return out
