"""Fault commands of the CLI: `faults` (the catalogue), `inject`, `heal`, `plan`."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from harness.errors import UsageError
from harness.topology import load_topology

console = Console(stderr=True, highlight=False)


def add_fault_commands(sub: Any, testbed_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    f = sub.add_parser("faults", help="the fault catalogue")
    f.add_argument("--json", action="store_true")
    testbed_arg(f)
    i = sub.add_parser("inject", help="inject one fault: fallover inject adapter_down --node node1 --network service")
    testbed_arg(i)
    i.add_argument("fault", help="a fault name from `fallover faults`")
    i.add_argument("--node", action="append", default=[], help="target node (repeat for partition: the cut-off side)")
    i.add_argument("--network")
    i.add_argument("--disk")
    i.add_argument("--group")
    i.add_argument("--rate", type=float, help="loss/corruption probability, or CPU load fraction (0-1]")
    i.add_argument("--delay", type=float, dest="delay_ms", help="added delay in ms (packet_delay)")
    i.add_argument("--jitter", type=float, dest="jitter_ms", help="delay jitter in ms (packet_delay)")
    i.add_argument("--device", help="one fence device (level) of cluster.fencing_topology (fence_fail, fence_hang)")
    i.add_argument("--duration", type=float, help="inject, wait this many seconds, then heal")
    i.add_argument("--dry-run", action="store_true", help="validate and show what would be done; touch nothing")
    i.add_argument("--allow-disruptive", action="store_true",
                   help="inject into a cluster fallover did not build (an SSH inventory of your own)")
    h = sub.add_parser("heal", help="undo every fault in the journal (after a crash, or an inject without --duration)")
    testbed_arg(h)
    pl = sub.add_parser("plan", help="the test plan of a testbed: every case, its expected outcome, what is left out")
    testbed_arg(pl)


def cmd_faults(args: argparse.Namespace) -> int:
    import json

    from harness.faults import FAULTS

    topo = load_topology(args.testbed)
    if args.json:
        print(json.dumps([{"name": f.name, "family": f.family, "event": f.event, "target": f.target_kind,
                           "destructive": f.destructive, "summary": f.summary, "mechanism": f.mechanism,
                           "targets": [t.label for t in f.targets(topo)]} for f in FAULTS.values()], indent=2))
        return 0
    table = Table(title=f"fault catalogue ({len(FAULTS)} faults; targets from {args.testbed})")
    for col in ("fault", "family", "classic event", "target", "destructive", "what happens"):
        table.add_column(col)
    for f in FAULTS.values():
        table.add_row(f.name, f.family, f.event, f.target_kind, "yes" if f.destructive else "no", f.summary)
    Console(highlight=False).print(table)
    return 0


def cmd_inject(args: argparse.Namespace) -> int:
    from harness.faults.nemesis import Nemesis, resolve
    from harness.testbed import open_testbed

    topo = load_topology(args.testbed)
    fault = resolve(args.fault)
    if not topo.built_by_fallover and not args.allow_disruptive and not args.dry_run:
        raise UsageError(f"{args.testbed}: provider {topo.provider!r} reaches a cluster fallover did not build; "
                         "pass --allow-disruptive to inject faults into it")
    if args.duration is not None and args.duration < 0:
        raise UsageError("--duration must be ≥ 0")
    kw: dict[str, Any] = {k: getattr(args, k) for k in ("network", "disk", "group", "rate", "delay_ms", "jitter_ms",
                                                             "device")
                          if getattr(args, k) is not None}
    if fault.target_kind == "partition":
        kw["nodes"] = tuple(args.node)
    elif len(args.node) > 1:
        raise UsageError(f"{fault.name} takes one --node")
    elif args.node:
        kw["node"] = args.node[0]
    tb = open_testbed(topo)
    nemesis = Nemesis(tb, log=lambda m: console.print(m))
    _, target = nemesis.target(fault.name, **kw)  # validates before anything is touched
    built = getattr(tb, "is_built", True)
    if args.dry_run:
        if built:
            fault.precheck(tb, target)  # touches nothing: a dry run also says whether it could take effect
        console.print(f"would inject {fault.name} on {target.label}: {fault.mechanism}")
        return 0
    if not built:
        raise UsageError(f"testbed {topo.name} is not up (run `fallover up`)")
    inj = nemesis.start(fault.name, **kw)  # prechecks, injects, verifies: one line if any refuses
    if args.duration is None:
        console.print(f"{fault.name} stays in effect; `fallover heal` undoes it")
        return 0
    try:
        with console.status("") as st:
            end = time.monotonic() + args.duration
            while (left := end - time.monotonic()) > 0:
                st.update(f"{fault.name} on {target.label}: healing in {left:4.1f}s (Ctrl-C heals now)")
                time.sleep(min(0.2, left))
    finally:
        nemesis.heal(inj)
    return 0


def cmd_heal(args: argparse.Namespace) -> int:
    from harness.faults.nemesis import HealFailed, Nemesis
    from harness.testbed import open_testbed

    tb = open_testbed(load_topology(args.testbed))
    try:
        undone = Nemesis(tb).replay()
    except HealFailed as e:  # every entry was tried: say what did heal, then the one-line failure
        for u in e.healed:
            console.print(f"healed {u}")
        raise
    for u in undone:
        console.print(f"healed {u}")
    if not undone:
        console.print("the fault journal is empty: nothing to heal")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    """The cases `pytest suites/fallover` runs on this testbed, with what a correct cluster does, and
    every case left out with its reason (the provider's and the stack's capabilities decide)."""
    from harness.plan import capabilities_of, excluded, expect, plan

    topo = load_topology(args.testbed)
    caps = capabilities_of(topo)
    home = {g.name: g.nodes[0] for g in topo.groups}
    table = Table(title=f"test plan of {args.testbed} (groups at home: "
                        f"{', '.join(f'{g} on {n}' for g, n in home.items()) or 'no group'})")
    for col in ("case", "expected"):
        table.add_column(col)
    cases = plan(topo, capabilities=caps)
    for case in cases:
        table.add_row(case.id, "; ".join(e.describe() for e in expect(topo, case, home)))
    out = Console(highlight=False)
    out.print(table)
    left_out = excluded(topo, capabilities=caps)
    for e in left_out:
        out.print(str(e))
    if caps.get("notifications"):
        out.print(f"notification: not judged in any case: {caps['notifications']}")
    out.print(f"{len(cases)} cases, {len(left_out)} left out")
    return 0


FAULT_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "faults": cmd_faults, "inject": cmd_inject, "heal": cmd_heal, "plan": cmd_plan,
}
