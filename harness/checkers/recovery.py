"""Recovery in place (CTS ResourceRecover): the fail count rises where the application is restarted, the
group stays until the migration threshold, and the count expires after failure-timeout.

Reads the "fail count" marks of harness/faults/recovery.py; "not judged" for any other case.
"""

from __future__ import annotations

from harness.checkers.base import UNKNOWN, Context, Verdict, fmt_s
from harness.timeline import TEST_MARK, Event

NAME = "fail_counts"


def _marks(ctx: Context, label: str) -> list[Event]:
    return [e for e in ctx.of(TEST_MARK) if e.data.get("label") == label]


def check_fail_counts(ctx: Context) -> Verdict:
    """Each failure before the threshold restarted the application on its node with the count one higher;
    an expiry mark (if any) read 0 within failure-timeout + margin."""
    kills, expiry = _marks(ctx, "fail count"), _marks(ctx, "fail count expired")
    if not kills:
        return ctx.not_judged(NAME, "failures", "no recovery-in-place failures in this case")
    problems, seen = [], []
    for k in kills:
        d = k.data
        where, home, value = d.get("node"), d.get("home"), d.get("value")
        if where is None:
            problems.append(f"after failure {d.get('kill')} the group did not run again anywhere")
        elif where != home:
            problems.append(f"failure {d.get('kill')} moved the group from {home} to {where} before the migration "
                            f"threshold (fail count on {home}: {d.get('on_home')})")
        elif value != d.get("kill"):
            problems.append(f"after failure {d.get('kill')} the fail count on {home} is {value}, not {d.get('kill')}")
        seen.append(f"{d.get('kill')} → {where}, count {value}")
    for e in expiry:
        d = e.data
        if d.get("value") != 0:
            problems.append(f"the fail count on {d.get('node')} still reads {d.get('value')} {fmt_s(d.get('after_s', 0))} s "
                            f"after the failure (failure-timeout {d.get('failure_timeout_s')} s)")
        else:
            seen.append(f"expired after {fmt_s(d.get('after_s', 0))} s (failure-timeout {d.get('failure_timeout_s')} s)")
    if problems:
        return Verdict(NAME, False, len(problems), 0, "problems", "; ".join(problems + [f"seen: {', '.join(seen)}"]))
    if any(k.data.get("value") is None for k in kills):
        return Verdict(NAME, UNKNOWN, None, None, "", "a fail count could not be read")
    return Verdict(NAME, True, len(kills), None, "failures", "restarted in place with the fail count rising: "
                   + ", ".join(seen))
