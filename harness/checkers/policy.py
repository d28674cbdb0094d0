"""Placement policy after recovery: cascading groups fail back to their best node, rotating ones stay."""

from __future__ import annotations

from harness.checkers.base import POLLER, UNKNOWN, Context, Verdict
from harness.timeline import CLUSTER_GROUP_STARTED, CLUSTER_GROUP_STOPPED, CLUSTER_NODE_JOINED, CLUSTER_NODE_LOST, Event
from harness.topology import Group

NAME = "policy"


def online_at_end(ctx: Context) -> tuple[list[str], dict[str, float]]:
    """Nodes online when the recording ended (all declared nodes, minus losses, plus rejoins), and rejoin times."""
    assert ctx.topology is not None
    online = set(ctx.topology.node_names)
    joined: dict[str, float] = {}
    for e in ctx.of(CLUSTER_NODE_LOST, CLUSTER_NODE_JOINED):
        if e.node is None:
            continue
        if e.kind == CLUSTER_NODE_LOST:
            online.discard(e.node)
        else:
            online.add(e.node)
            joined[e.node] = e.mono
    return sorted(online), joined


def _cascading(ctx: Context, g: Group, starts: list[Event]) -> Verdict:
    """The last start of the group must be on the highest-priority node that is online at the end."""
    order = " > ".join(g.nodes)
    if not starts:
        return Verdict(NAME, UNKNOWN, None, None, "node", f"cascading: no start of group {g.name} was recorded")
    last = starts[-1]
    online, joined = online_at_end(ctx)
    expected = next((n for n in g.nodes if n in online), None)
    if expected is None:
        return Verdict(NAME, UNKNOWN, last.node, None, "node",
                       f"cascading: none of {g.name}'s nodes ({order}) is online at the end")
    stops = [e for e in ctx.of(CLUSTER_GROUP_STOPPED, after=last.mono) if e.data.get("group") == g.name]
    if stops:
        return Verdict(NAME, False, None, expected, "node",
                       f"cascading: group {g.name} stopped at {ctx.rel(stops[0].mono)} and was not started again; "
                       f"it belongs on {expected} (priority {order})")
    if last.node == expected:
        return Verdict(NAME, True, last.node, expected, "node",
                       f"cascading: group {g.name} is on {expected}, the highest-priority online node "
                       f"(priority {order}), started there at {ctx.rel(last.mono)}")
    back = f", which rejoined at {ctx.rel(joined[expected])}" if expected in joined else ""
    return Verdict(NAME, False, last.node, expected, "node",
                   f"cascading: group {g.name} stayed on {last.node} (started at {ctx.rel(last.mono)}), but "
                   f"{expected} is online{back} and comes first (priority {order})")


def _rotating(ctx: Context, g: Group, starts: list[Event]) -> Verdict:
    """After the heal the group must not move: no start on a node other than the one it was on at the heal."""
    if ctx.healed is None:
        return Verdict(NAME, UNKNOWN, None, None, "node",
                       f"rotating: the fault was never healed, so group {g.name} had no reintegration to sit out")
    heal = ctx.healed
    before = [e for e in starts if e.mono < heal]
    at_heal = before[-1].node if before else None
    moves = [e for e in starts if e.mono >= heal and e.node != at_heal]
    if moves:
        where = f" from {at_heal}" if at_heal else ""
        return Verdict(NAME, False, moves[-1].node, at_heal, "node",
                       f"rotating: group {g.name} moved{where} to {moves[0].node} at {ctx.rel(moves[0].mono)}, "
                       f"after the heal at {ctx.rel(heal)}; a rotating group stays where it is")
    if at_heal is None:
        return Verdict(NAME, UNKNOWN, None, None, "node",
                       f"rotating: where group {g.name} ran at the heal ({ctx.rel(heal)}) is not recorded")
    return Verdict(NAME, True, at_heal, at_heal, "node",
                   f"rotating: group {g.name} stayed on {at_heal} after the heal at {ctx.rel(heal)}")


def check_policy(ctx: Context) -> Verdict:
    """Cascading → on the best online node at the end; rotating → no move after the last heal."""
    if ctx.topology is None or ctx.group is None:
        return Verdict(NAME, UNKNOWN, None, None, "node", "no topology or group: the placement policy is unknown")
    g = ctx.topology.group(ctx.group)
    starts = [e for e in ctx.of(CLUSTER_GROUP_STARTED) if e.data.get("group") == g.name and e.node]
    # where the group went is what the poller saw: lost polls above their limit may hide a move
    return ctx.vouch(_cascading(ctx, g, starts) if g.policy == "cascading" else _rotating(ctx, g, starts), POLLER)
