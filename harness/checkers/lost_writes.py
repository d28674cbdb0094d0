"""Lost writes: every acknowledged PUT must read back, with its value, after recovery."""

from __future__ import annotations

from harness.checkers.base import UNKNOWN, Context, Verdict
from harness.timeline import Request

NAME = "lost_writes"
SHOWN = 5
"""How many lost keys the explanation names; the count covers them all."""


def why_lost(acked: Request, verify: Request | None) -> str | None:
    """Why an acknowledged write counts as lost, or None when its verify read it back intact."""
    if verify is None:
        return "no verify read"
    if not verify.ok:
        return f"verify failed: {verify.error or f'HTTP {verify.status}'}"
    if verify.value != acked.value:
        return f"verify read {verify.value!r}, acknowledged {acked.value!r}"
    return None


def unanswered(verify: Request | None) -> bool:
    """The verify read got no HTTP answer at all (refused, reset, timed out, after its retries): that says
    nothing about the write, only about the service at that moment (an emulated guest answered a read of
    16 at once after more than 2 s, 2026-11-30)."""
    return verify is not None and not verify.ok and verify.status is None


def check_lost_writes(ctx: Context) -> Verdict:
    """Acknowledged puts (kind "put", ok, with a value) vs the last "verify" record per key; valid only at 0 lost.

    A key written more than once is judged by its last acknowledged value. Without any verify
    record the run never looked, so the verdict is "unknown", not a pass — except when the run
    had no load at all (expectation ``load`` False, e.g. --no-load, and no put or verify was
    recorded): then nothing was written, and the verdict is "not judged" (valid, judged=False),
    so the case neither fails on it nor claims that writes survived.
    """
    if ctx.expectation.get("load", True) is False and not any(r.kind in ("put", "verify") for r in ctx.requests):
        return ctx.not_judged(NAME, "writes", "no load (--no-load): no write was made, so none could be lost", 0)
    acked: dict[str, Request] = {}
    for r in ctx.requests:
        if r.kind == "put" and r.ok and r.key is not None and r.value is not None:
            acked[r.key] = r  # requests are in mono order: the last acknowledged value wins
    verifies: dict[str, Request] = {}
    for r in sorted(ctx.requests, key=lambda r: r.mono):
        if r.kind == "verify" and r.key is not None:
            verifies[r.key] = r
    if not verifies:
        return Verdict(NAME, UNKNOWN, None, 0, "writes",
                       f"{len(acked)} acknowledged writes, but no verify records: nothing was read back")
    unread = {k for k in acked if unanswered(verifies.get(k))}
    lost = [(k, why) for k, put in acked.items()
            if k not in unread and (why := why_lost(put, verifies.get(k))) is not None]
    if not lost and unread:
        key = next(k for k in acked if k in unread)  # the first acknowledged of them
        return Verdict(NAME, UNKNOWN, None, 0, "writes",
                       f"{len(unread)} of {len(acked)} acknowledged writes could not be read back (no answer, "
                       f"first: {key}: {verifies[key].error}); the other {len(acked) - len(unread)} read back intact")
    if not lost:
        return Verdict(NAME, True, 0, 0, "writes",
                       f"no lost writes: all {len(acked)} acknowledged writes read back intact")
    names = "; ".join(f"{k} (acknowledged at {ctx.rel(acked[k].mono)}, {why})" for k, why in lost[:SHOWN])
    more = f"; and {len(lost) - SHOWN} more" if len(lost) > SHOWN else ""
    more += f" ({len(unread)} more could not be read back: no answer)" if unread else ""
    if ctx.expectation.get("shared_storage", True) is False and ctx.expectation.get("expect_fallover"):
        return ctx.not_judged(NAME, "writes", f"group {ctx.group} has no shared disk: writes acknowledged before "
                                              f"the takeover stay on the old node's own disk, so a fallover loses "
                                              f"them by design ({len(lost)} of {len(acked)} lost: {names}{more})", 0)
    return Verdict(NAME, False, len(lost), 0, "writes",
                   f"{len(lost)} of {len(acked)} acknowledged writes lost: {names}{more}")
