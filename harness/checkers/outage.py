"""Client-visible outage: the longest run of failed probe samples, by send time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harness.checkers.base import PROBE, UNKNOWN, Context, Verdict, fmt_s
from harness.timeline import ProbeSample

NAME = "outage"


@dataclass(frozen=True)
class Outage:
    """Failed probes from `start` (send time of the first) to `end` (send time of the next success).

    `open`: the recording ended inside the outage; `end` is then the last sample's send time,
    so `duration` is only a lower bound.
    """

    start: float
    end: float
    failed: int
    open: bool = False

    @property
    def duration(self) -> float:
        return self.end - self.start


def outages(samples: Sequence[ProbeSample]) -> list[Outage]:
    """Every run of consecutive failed samples, in time order (also used by the plot)."""
    out: list[Outage] = []
    start: float | None = None
    failed = 0
    ordered = sorted(samples, key=lambda p: p.mono)
    for p in ordered:
        if not p.ok:
            if start is None:
                start, failed = p.mono, 0
            failed += 1
        elif start is not None:
            out.append(Outage(start, p.mono, failed))
            start = None
    if start is not None:
        out.append(Outage(start, ordered[-1].mono, failed, open=True))
    return out


def check_outage(ctx: Context) -> Verdict:
    """Longest outage vs max_outage_s; an open one within the limit is "unknown" (it may have gone on).

    Probe slots skipped above their limit make it "unknown": a gap can hide an outage or stretch one.
    """
    return ctx.vouch(_judge(ctx), PROBE)


def _judge(ctx: Context) -> Verdict:
    limit = ctx.limit("max_outage_s")
    if not ctx.samples:
        return Verdict(NAME, UNKNOWN, None, limit, "s", "no probe samples were recorded")
    runs = outages(ctx.samples)
    span = f"{len(ctx.samples)} probes from {ctx.rel(ctx.samples[0].mono)} to {ctx.rel(ctx.samples[-1].mono)}"
    if not runs:
        return Verdict(NAME, True, 0.0, limit, "s", f"no outage: all {span} answered")
    worst = max(runs, key=lambda r: r.duration)
    total = f"{len(runs)} outage{'s' if len(runs) > 1 else ''} in {span}"
    if worst.duration > limit:
        state = "still open at the end, " if worst.open else ""
        return Verdict(NAME, False, round(worst.duration, 3), limit, "s",
                       f"outage {state}{fmt_s(worst.duration)} s{' or more' if worst.open else ''} "
                       f"(limit {fmt_s(limit)} s): {worst.failed} failed probes from {ctx.rel(worst.start)} "
                       f"to {ctx.rel(worst.end)}; {total}")
    last = runs[-1]
    if last.open:
        return Verdict(NAME, UNKNOWN, round(last.duration, 3), limit, "s",
                       f"outage still open when the recording ended: at least {fmt_s(last.duration)} s "
                       f"(limit {fmt_s(limit)} s), {last.failed} failed probes from {ctx.rel(last.start)}; {total}")
    return Verdict(NAME, True, round(worst.duration, 3), limit, "s",
                   f"longest outage {fmt_s(worst.duration)} s (limit {fmt_s(limit)} s): {worst.failed} failed "
                   f"probes from {ctx.rel(worst.start)}, answered again at {ctx.rel(worst.end)}; {total}")
