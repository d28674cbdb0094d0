"""The milestones of a case (fault, detected, fenced, service back, healed, redundant), from its recording.

A reader signing a cluster off asks "when did it notice, when was it fenced, when could clients
work again, when was it whole": six moments, not the hundreds of raw events. Each milestone is
taken from the same definitions the checkers judge (detection's related events, the fallover
and redundancy measurements), so the picture and the verdicts never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.checkers import CHECKERS, Context, Verdict, check_safe, fmt_s
from harness.checkers.detection import KINDS as DETECTION_KINDS
from harness.checkers.detection import describe, related
from harness.checkers.outage import outages
from harness.timeline import FAULT_HEALED, FENCED, Event

ORDER = ("fault", "detected", "fenced", "service back", "healed", "redundant")


@dataclass(frozen=True)
class Milestone:
    """One moment of a case: ``name`` from ORDER, ``mono`` on the timeline's clock, ``detail`` what it was."""

    name: str
    mono: float
    detail: str

    def rel(self, origin: float) -> str:
        return f"{self.mono - origin:+.2f} s"


def _verdict(ctx: Context, verdicts: Mapping[str, Verdict], name: str) -> Verdict:
    """The recorded verdict if there is one, else the checker run now over the same recording."""
    return verdicts[name] if name in verdicts else check_safe(CHECKERS[name], ctx, name=name)


def _seconds(v: Verdict) -> float | None:
    return float(v.measured) if v.unit == "s" and isinstance(v.measured, (int, float)) and v.judged else None


def milestones(ctx: Context, verdicts: Mapping[str, Verdict] | None = None) -> list[Milestone]:
    """The case's milestones in time order; one that did not happen is absent (the verdicts say why).

    >>> from harness.timeline import Timeline
    >>> milestones(Context(Timeline()))
    []
    """
    verdicts = verdicts or {}
    t0 = ctx.t0
    if t0 is None or ctx.fault is None:
        return []
    out = [Milestone("fault", t0, f"{ctx.fault_desc} injected")]
    if not ctx.planned:
        hits = [e for e in ctx.of(*DETECTION_KINDS, after=t0) if related(ctx, e)]
        if hits:
            out.append(Milestone("detected", hits[0].mono, describe(hits[0])))
    fenced = [e for e in ctx.of(FENCED, after=t0)]
    if fenced:
        out.append(Milestone("fenced", fenced[0].mono, _fenced(fenced[0])))
    back = _service_back(ctx, _verdict(ctx, verdicts, "fallover"))
    if back is not None:
        out.append(back)
    heals = ctx.of(FAULT_HEALED, after=t0)
    if heals:
        out.append(Milestone("healed", heals[-1].mono, f"{ctx.fault_desc} healed"))
    took = _seconds(_verdict(ctx, verdicts, "redundancy_restored"))
    if took is not None and ctx.healed is not None:
        out.append(Milestone("redundant", ctx.healed + took, f"fully redundant {fmt_s(took)} s after the heal"))
    return sorted(out, key=lambda m: (m.mono, ORDER.index(m.name)))


def _fenced(e: Event) -> str:
    return f"{e.node} fenced ({e.data.get('action', '?')}: {e.data.get('outcome', '?')})"


def _service_back(ctx: Context, fallover: Verdict) -> Milestone | None:
    """When clients were served again: the takeover's first answer, else the end of the first outage after the fault."""
    assert ctx.t0 is not None
    took = _seconds(fallover)
    if took is not None:
        return Milestone("service back", ctx.t0 + took, f"answered from the takeover node {fmt_s(took)} s after the fault")
    after = [o for o in outages(ctx.samples) if o.end >= ctx.t0 and not o.open]
    if not after:
        return None
    o = after[0]
    return Milestone("service back", o.end, f"answered again after {fmt_s(o.duration)} s without an answer")


def event_row(e: Event, origin: float) -> dict[str, Any]:
    """One raw event for the table under the plot: time since the fault, kind, node, its data in short."""
    detail = " ".join(f"{k}={_short(v)}" for k, v in sorted(e.data.items()))
    return {"t": f"{e.mono - origin:+.2f}", "kind": e.kind, "node": e.node or "", "detail": detail}


def _short(value: Any, limit: int = 160) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"
