#!/usr/bin/env python3
"""Inject and heal time of every fault in the catalogue on the embedded testbed (one target each).

The cluster is made whole between faults (not timed). Prints one line per fault; the last line
is machine-readable key=value pairs (`<fault>_inject_s`, `<fault>_heal_s`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.faults import FAULTS, Nemesis  # noqa: E402
from harness.plan import plan  # noqa: E402
from harness.testbed import open_testbed  # noqa: E402
from harness.topology import DEFAULT_TESTBED, load_topology  # noqa: E402


def main() -> int:
    tb = open_testbed(load_topology(DEFAULT_TESTBED))
    built = getattr(tb, "is_built", False)
    tb.up()
    nemesis = Nemesis(tb)
    figures: dict[str, float] = {}
    seen: set[str] = set()
    try:
        for case in plan(tb.topology):
            if case.fault in seen or case.fault == "rolling_restart":
                continue  # one target per fault; a rolling restart is a procedure, timed by the suites
            seen.add(case.fault)
            tb.up()  # whole, and every group home (a planned move needs somewhere to go)
            inj = nemesis.start(case.fault, **case.target.to_dict())
            time.sleep(6.0)  # longer than detection + fencing: a heal before the cluster noticed is not a fault
            nemesis.heal(inj)
            figures[f"{case.fault}_inject_s"] = inj.inject_s
            figures[f"{case.fault}_heal_s"] = inj.heal_s or 0.0
            print(f"{case.fault:20s} on {case.target.label:16s} inject {inj.inject_s:6.3f}s  heal {inj.heal_s:6.3f}s  "
                  f"({FAULTS[case.fault].mechanism})", flush=True)
    finally:
        nemesis.heal_all()
        tb.up(placement=False)
        if not built:
            tb.down()
    print(" ".join(f"{k}={v:.3f}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
