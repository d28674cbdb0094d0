#!/usr/bin/env python3
"""Bring-up and teardown times of the embedded testbed (targets: settled ≤ 10 s, down ≤ 3 s).

Uses its own testbed instance ("bench"), so it never disturbs a running one. Prints one
line per round, then medians; the last line is machine-readable key=value pairs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.drivers.pacemaker import PacemakerDriver  # noqa: E402
from harness.testbed.local import LocalTestbed  # noqa: E402
from harness.topology import DEFAULT_TESTBED, load_topology  # noqa: E402


def one_round(tb: LocalTestbed) -> dict[str, float]:
    driver = PacemakerDriver(tb)
    t0 = time.monotonic()
    tb._build(progress=lambda _: None)
    ready = time.monotonic() - t0
    names = sorted(tb.topology.node_names)
    driver.wait_until(lambda s: s.online == names and s.dc is not None, timeout=120, what="all nodes online",
                      interval=0.1)
    online = time.monotonic() - t0
    driver.wait_settled(timeout=120)
    settled = time.monotonic() - t0
    t1 = time.monotonic()
    tb.down()
    down = time.monotonic() - t1
    left = tb.leftovers()
    if left:
        raise SystemExit(f"leftovers after down: {left}")
    return {"ready_s": ready, "online_s": online, "settled_s": settled, "down_s": down}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    tb = LocalTestbed(load_topology(DEFAULT_TESTBED), instance="bench")
    tb.down()
    rounds = []
    try:
        for i in range(a.rounds):
            r = one_round(tb)
            rounds.append(r)
            print(f"round {i + 1}: namespaces ready {r['ready_s']:.2f}s, all nodes online {r['online_s']:.2f}s, "
                  f"group started {r['settled_s']:.2f}s, torn down {r['down_s']:.2f}s", flush=True)
    finally:
        tb.down()
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    print(f"median of {len(rounds)}: settled {med['settled_s']:.2f}s (target ≤ 10 s, ratio "
          f"{med['settled_s'] / 10:.2f}), down {med['down_s']:.2f}s (target ≤ 3 s, ratio {med['down_s'] / 3:.2f})")
    print(" ".join(f"{k}={v:.2f}" for k, v in med.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
