"""Failed load requests: how many client requests the fault cost (informational unless a limit is set)."""

from __future__ import annotations

from collections import Counter

from harness.checkers.base import UNKNOWN, Context, Verdict

NAME = "failed_requests"


def check_failed_requests(ctx: Context) -> Verdict:
    """Count and share of failed put/get requests; verify reads belong to lost_writes and are left out.

    Valid is True (a measurement for the report) unless the expectation sets max_failed_requests
    (a count) or max_failed_share (a fraction, 0..1); with a share limit the share is the measurement.
    """
    load = [r for r in ctx.requests if r.kind != "verify"]
    max_count = ctx.expectation.get("max_failed_requests")
    max_share = ctx.expectation.get("max_failed_share")
    limited = max_count is not None or max_share is not None
    unit, limit = ("share", float(max_share)) if max_share is not None else \
        ("requests", int(max_count) if max_count is not None else None)
    if not load and ctx.expectation.get("load", True) is False:
        return ctx.not_judged(NAME, unit, "no load (--no-load): no request was made", limit)
    if not load:
        return Verdict(NAME, UNKNOWN if limited else True, None, limit, unit, "no load requests were recorded")
    failed = [r for r in load if not r.ok]
    share = len(failed) / len(load)
    totals, fails = Counter(r.kind for r in load), Counter(r.kind for r in failed)
    per_kind = ", ".join(f"{k} {fails[k]}/{totals[k]}" for k in sorted(totals))
    text = f"{len(failed)} of {len(load)} load requests failed ({share:.2%}; {per_kind})"
    if failed:
        errors = Counter(r.error or (f"HTTP {r.status}" if r.status else "error") for r in failed)
        common, n = errors.most_common(1)[0]
        text += f", from {ctx.rel(failed[0].mono)} to {ctx.rel(failed[-1].mono)}; most common: {common} ({n}x)"
    measured: float | int = round(share, 6) if max_share is not None else len(failed)
    if max_share is not None:
        ok = share <= float(max_share)
        text += f" (limit {float(max_share):.2%})"
    elif max_count is not None:
        ok = len(failed) <= int(max_count)
        text += f" (limit {int(max_count)})"
    else:
        ok = True
    return Verdict(NAME, ok, measured, limit, unit, text)
