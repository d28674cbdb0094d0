"""Split brain: the service owned by two nodes at once, seen in ARP, in the probe, by the cluster itself,
as one shared filesystem mounted on two nodes at once, or as a takeover begun while the owner still served."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from harness.checkers.base import POLLER, PROBE, UNKNOWN, Context, Verdict, fmt_s
from harness.timeline import (ARP_GRATUITOUS, ARP_REPLY, CLUSTER_GROUP_SPLIT, CLUSTER_MOUNTS, FAULT_HEALED,
                              FAULT_INJECTED, NOTIFICATION, Event)

NAME = "split_brain"
WINDOW_S = 1.0
"""Default for expectation split_brain_window_s: the longest A…B…A alternation that counts."""


def interleaved(sightings: Iterable[tuple[float, str]], window: float) -> tuple[float, str, str, float] | None:
    """The first A, B, A (A ≠ B) in time order whose first and last sightings are ≤ `window` apart.

    Why alternation and not "two owners within a window": a clean handover shows A…A then B…B
    (the new owner's gratuitous ARPs may follow the old owner's last reply by milliseconds),
    but A answering again after B has answered means both held the address at once. A failback
    is not mistaken for one, because two moves never fit in one window.
    Returns (time of the first A, A, B, time of the second A).
    """
    last: dict[str, float] = {}
    for t, who in sorted(sightings):
        prev = last.get(who)
        if prev is not None and t - prev <= window:
            other = next((o for o, seen in last.items() if o != who and seen > prev), None)
            if other is not None:
                return prev, who, other, t
        last[who] = t
    return None


def double_mounts(ctx: Context) -> list[tuple[float, str]]:
    """One finding per time a shared disk's filesystem was seen mounted on two or more nodes at once.

    From the poller's CLUSTER_MOUNTS events (each the whole picture when it changed). No window:
    the poller confirms a double mount by reading every node twice, so a handover (unmounted
    here, then mounted there) is never one; a filesystem mounted twice corrupts it at once.
    """
    out: list[tuple[float, str]] = []
    since: dict[str, tuple[float, tuple[str, ...]]] = {}
    for e in ctx.of(CLUSTER_MOUNTS):
        mounts = e.data.get("mounts") or {}
        for disk in sorted(set(mounts) | set(since)):
            nodes = tuple(sorted(map(str, mounts.get(disk) or [])))
            if len(nodes) > 1 and disk not in since:
                since[disk] = (e.mono, nodes)
            elif len(nodes) <= 1 and disk in since:
                t, both = since.pop(disk)
                out.append((t, f"shared filesystem {disk} mounted on {' and '.join(both)} at {ctx.rel(t)} "
                               f"(until {ctx.rel(e.mono)})"))
    for disk, (t, both) in since.items():
        out.append((t, f"shared filesystem {disk} mounted on {' and '.join(both)} at {ctx.rel(t)} "
                       f"(still when the recording ended)"))
    return sorted(out)


def takeovers_beside_the_owner(ctx: Context) -> list[tuple[float, str]]:
    """One finding per start of a group member on a node while another node still served the group.

    A start is reported (by the alert agent) when it ends, ok or not; if the probe is then answered
    by another node that has not started the group again since, that node still held the whole group
    (its filesystem is stopped last) while this one began to take it over. A correct cluster stops
    the group, or fences its node, before it starts it elsewhere. Whether the second mount then
    succeeds is the disk's luck: on the embedded testbed each node has its own view of the shared
    disk, and a mount next to a node that is writing can fail as "probably corrupted filesystem".
    """
    starts = sorted((e.mono, str(e.data.get("node") or e.node), str(e.data.get("rsc")), e.data.get("rc"))
                    for e in ctx.of(NOTIFICATION)
                    if e.data.get("kind") == "resource" and e.data.get("task") == "start"
                    and ctx.is_group_resource(e.data.get("rsc")))
    answers = [(p.mono, p.node) for p in ctx.samples if p.ok and p.node is not None]
    out: list[tuple[float, str]] = []
    for t, node, rsc, rc in starts:
        owner = next(((ta, a) for ta, a in answers if ta > t and a != node), None)
        if owner is None or out and out[-1][0] == t:
            continue
        ta, a = owner
        if any(a == n and t < ts <= ta for ts, n, _, _ in starts):
            continue  # the other node started the group again: a move back, not two owners
        result = "" if rc in (None, 0, "0") else f", rc={rc}"
        out.append((t, f"{rsc} started on {node} at {ctx.rel(t)}{result} while {a} still served "
                       f"(answered at {ctx.rel(ta)})"))
    return out


def corrupted_in_flight(ctx: Context, arp: list[Event]) -> list[Event]:
    """The ARP sightings from a MAC of no node while a packet_corrupt fault was in effect.

    ARP has no checksum, and a corrupting link (netem in a guest: any byte of the frame) delivers an
    answer of node1's with a flipped bit in its MAC as it is: 52:54:f5:0a:41:01 for …:01:01 once in
    192 answers (packet_corrupt-node1-service on the VMs, 2026-12-01), which alternated with the real
    one. That is the fault's damage, not a second owner; a MAC of no node outside such a window (an
    address conflict) still counts.
    """
    windows = []
    for f in ctx.of(FAULT_INJECTED):
        if f.data.get("fault") != "packet_corrupt":
            continue
        heal = next((h.mono for h in ctx.of(FAULT_HEALED, after=f.mono)
                     if h.data.get("target") == f.data.get("target")), float("inf"))
        windows.append((f.mono, heal))
    return [e for e in arp if e.node is None and any(a <= e.mono <= b for a, b in windows)]


def check_split_brain(ctx: Context) -> Verdict:
    """Invalid on a CLUSTER_GROUP_SPLIT, on a shared filesystem mounted on two nodes at once, on a group
    member started on a node while another still served, on two MACs alternating for one IP, or on two
    nodes alternating in probe answers, each within the window;
    "unknown" when there is neither ARP, probe-node, mount nor cluster data, or when lost polls or probe
    slots exceed their limits (a hole may hide the overlap)."""
    return ctx.vouch(_judge(ctx), POLLER + PROBE)


def _judge(ctx: Context) -> Verdict:
    window = float(ctx.expectation.get("split_brain_window_s", WINDOW_S))
    findings: list[tuple[float, str]] = double_mounts(ctx) + takeovers_beside_the_owner(ctx)
    for e in ctx.of(CLUSTER_GROUP_SPLIT):
        nodes = "+".join(map(str, e.data.get("nodes") or [])) or "several nodes"
        findings.append((e.mono, f"cluster reported group {e.data.get('group', '?')} active on {nodes} "
                                 f"at {ctx.rel(e.mono)}"))
    arp = ctx.of(ARP_REPLY, ARP_GRATUITOUS)
    by_ip: dict[str, list[tuple[float, str]]] = defaultdict(list)
    garbled = corrupted_in_flight(ctx, arp)
    for e in arp:
        if e.data.get("ip") and e.data.get("mac") and e not in garbled:
            # by node where the MAC is a node's: one node's two MACs (a restarted node) are not two owners
            by_ip[str(e.data["ip"])].append((e.mono, e.node or str(e.data["mac"]).lower()))
    for ip, seen in sorted(by_ip.items()):
        hit = interleaved(seen, window)
        if hit:
            t1, a, b, t2 = hit
            findings.append((t1, f"{ip} answered by {a} and {b} alternately within {fmt_s(t2 - t1)} s "
                                 f"({ctx.rel(t1)} to {ctx.rel(t2)})"))
    answers: list[tuple[float, str]] = [(p.mono, p.node) for p in ctx.samples if p.ok and p.node is not None]
    hit = interleaved(answers, window)
    if hit:
        t1, a, b, t2 = hit
        findings.append((t1, f"probe answered by {a}, then {b}, then {a} again within {fmt_s(t2 - t1)} s "
                             f"({ctx.rel(t1)} to {ctx.rel(t2)})"))
    cluster_seen = any(e.source == "cluster" for e in ctx.events)
    if findings:
        findings.sort()
        more = f" (+{len(findings) - 1} more)" if len(findings) > 1 else ""
        return Verdict(NAME, False, len(findings), 0, "findings", f"split brain: {findings[0][1]}{more}")
    if not arp and not answers and not cluster_seen:
        return Verdict(NAME, UNKNOWN, None, 0, "findings",
                       "no ARP sightings, no probe answers naming a node and no cluster events to judge by")
    macs = {ip: len({m for _, m in seen}) for ip, seen in by_ip.items()}
    mounts = ctx.of(CLUSTER_MOUNTS)
    if mounts:
        disks = sorted({d for e in mounts for d in (e.data.get("mounts") or {})})
        fs = f"{len(mounts)} mount changes of {', '.join(disks) or 'no disk'}, never on two nodes at once"
    else:
        fs = "shared-filesystem mounts were not recorded (this testbed cannot report them)"
    skipped = (f", {len(garbled)} more from a MAC of no node while the fault corrupted packets (ARP has no "
               f"checksum: a flipped bit in flight, not an owner)") if garbled else ""
    return Verdict(NAME, True, 0, 0, "findings",
                   f"no split brain (window {fmt_s(window)} s): {len(arp) - len(garbled)} ARP sightings of "
                   f"{len(by_ip)} IP(s) ({sum(macs.values())} IP/owner pairs, never alternating){skipped}, "
                   f"{len(answers)} probe answers "
                   f"from {len({n for _, n in answers})} nodes, no {CLUSTER_GROUP_SPLIT} event, {fs}")
