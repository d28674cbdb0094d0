#!/usr/bin/env python3
"""Pacemaker vs keepalived: fallover time and client-visible outage for the same faults, in one run.

Each stack runs on its own embedded testbed (testbeds/local.yaml, testbeds/local-keepalived.yaml:
different names and subnets), one after the other, through the same Runner the suites use (load,
100 Hz probe, checkers): node_power_off of the group's home node, and adapter_down of that node's
service adapter. ``--repeat N`` runs each case N times and reports the median. Prints a table; the
last line is key=value (`<stack>_<fault>_fallover_s`, `<stack>_<fault>_outage_s`, and the status).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.faults import Target
from harness.plan import Case
from harness.runner import Runner
from harness.testbed import open_testbed
from harness.topology import load_topology

STACKS = {"pacemaker": ROOT / "testbeds" / "local.yaml", "keepalived": ROOT / "testbeds" / "local-keepalived.yaml"}


def cases(topology_file: Path) -> list[Case]:
    topo = load_topology(topology_file)
    g = topo.groups[0]
    home = g.nodes[0]
    return [Case("node_power_off", Target(node=home)), Case("adapter_down", Target(node=home, network=g.network))]


def measure(stack: str, repeat: int, out: Path) -> dict[str, dict[str, list[float | str]]]:
    """fault → {"fallover": [...], "outage": [...], "status": [...]} for one stack (its testbed up, then down)."""
    tb = open_testbed(load_topology(STACKS[stack]))
    built = getattr(tb, "is_built", False)
    results: dict[str, dict[str, list[float | str]]] = {}
    try:
        tb.up()
        runner = Runner(tb, out / stack)
        for _ in range(repeat):
            for case in cases(STACKS[stack]):
                r = runner.run(case)
                row = results.setdefault(case.fault, {"fallover": [], "outage": [], "status": []})
                for name in ("fallover", "outage"):
                    v = r.verdicts.get(name)
                    row[name].append(float(v.measured) if v is not None and isinstance(v.measured, (int, float))
                                     else float("nan"))
                row["status"].append(str(r.status))
                print(f"  {stack:10s} {case.id:28s} {r.status}  fallover {row['fallover'][-1]:.2f} s  "
                      f"outage {row['outage'][-1]:.2f} s  ({r.run_dir})", flush=True)
    finally:
        if not built:
            tb.down()
    return results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--stacks", default="pacemaker,keepalived")
    args = p.parse_args()
    out = Path(tempfile.mkdtemp(prefix="fallover-stacks-", dir=ROOT / "reports"))
    table: dict[tuple[str, str], dict[str, list[float | str]]] = {}
    for stack in args.stacks.split(","):
        for fault, row in measure(stack, args.repeat, out).items():
            table[(stack, fault)] = row
    print(f"\n{'stack':11s} {'fault':16s} {'fallover s':>11s} {'outage s':>9s}  status")
    figures = []
    for (stack, fault), row in table.items():
        fo = statistics.median(float(x) for x in row["fallover"])
        ou = statistics.median(float(x) for x in row["outage"])
        print(f"{stack:11s} {fault:16s} {fo:11.2f} {ou:9.2f}  {','.join(map(str, row['status']))}")
        figures += [f"{stack}_{fault}_fallover_s={fo:.3f}", f"{stack}_{fault}_outage_s={ou:.3f}",
                    f"{stack}_{fault}_status={'+'.join(map(str, row['status']))}"]
    print(" ".join(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
