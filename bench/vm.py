#!/usr/bin/env python3
"""The VM testbed, measured: box build, up (box cached), cluster settled, node power-off → service back,
down, and RSS per VM. Targets on a 2-core machine under TCG: up with a cached box ≤ 150 s for 3 nodes,
power-off → service back ≤ 15 s, ≤ 1 GB RSS per 1 GiB VM.

Uses its own instance ("bench"); `--rebuild-box` times a box build from scratch (minutes), otherwise the
cached build's time is reported. The last line is machine-readable key=value pairs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.faults import Nemesis  # noqa: E402
from harness.status import service_answer  # noqa: E402
from harness.testbed import vagrantbox  # noqa: E402
from harness.testbed.vagrant import VagrantTestbed  # noqa: E402
from harness.topology import load_topology  # noqa: E402
from harness.wait import wait_until  # noqa: E402

TESTBED = Path(__file__).resolve().parent.parent / "testbeds" / "vagrant.yaml"


def rss_mb(tb: VagrantTestbed) -> dict[str, float]:
    """Resident memory of each VM's qemu process (MB)."""
    out = {}
    for pid, cmd in tb.labx.processes().items():
        if "qemu-system" in cmd:
            for n in tb.topology.node_names:
                if f"guest={tb.labx.domain(n)}," in cmd:
                    status = Path(f"/proc/{pid}/status").read_text()
                    kb = next(int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmRSS:"))
                    out[n] = kb / 1024
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rebuild-box", action="store_true")
    a = p.parse_args()
    t0 = time.monotonic()
    box = vagrantbox.build(force=a.rebuild_box)
    box_s = time.monotonic() - t0 if a.rebuild_box else json.loads((box.dir / "done.json").read_text())["build_s"]
    print(f"box: {box_s:.0f} s to build ({'now' if a.rebuild_box else 'cached build'}); {box.name}", flush=True)
    tb = VagrantTestbed(load_topology(TESTBED), instance="bench")
    tb.down()
    try:
        t0 = time.monotonic()
        tb.up(progress=lambda m: print(f"  [{time.monotonic() - t0:6.1f}s] {m}", flush=True))
        up_s = time.monotonic() - t0
        info = json.loads((tb.state / "up.json").read_text())
        print(f"up (box cached): {info.get('provision_s', 0):.0f} s vagrant up (boot + provisioning), "
              f"{info['booted_s']:.0f} s VMs booted and provisioned, {up_s:.0f} s cluster settled "
              f"(target ≤ 150 s, ratio {up_s / 150:.2f})", flush=True)
        rss = rss_mb(tb)
        print("RSS per VM: " + ", ".join(f"{n} {v:.0f} MB" for n, v in sorted(rss.items())), flush=True)
        g = tb.topology.groups[0]
        nemesis = Nemesis(tb)
        active = service_answer(tb, g.name, timeout=10)
        t1 = time.monotonic()
        inj = nemesis.start("node_power_off", node=str(active))
        wait_until(lambda: service_answer(tb, g.name) not in (None, active), timeout=120,
                   what="the service answering from another node", interval=0.2)
        back_s = time.monotonic() - t1
        print(f"power-off of {active} → service back from {service_answer(tb, g.name)}: {back_s:.1f} s "
              f"(target ≤ 15 s, ratio {back_s / 15:.2f})", flush=True)
        nemesis.heal(inj)
    finally:
        t2 = time.monotonic()
        tb.down()
        down_s = time.monotonic() - t2
        left = tb.leftovers()
    print(f"down: {down_s:.1f} s; left behind: {left or 'nothing'}", flush=True)
    worst = max(rss.values()) if rss else 0.0
    print(f"box_s={box_s:.0f} up_s={info['booted_s']:.0f} settled_s={up_s:.0f} poweroff_back_s={back_s:.1f} "
          f"down_s={down_s:.1f} rss_mb_max={worst:.0f} accel={info['accel']}")
    return 0 if not left else 1


if __name__ == "__main__":
    sys.exit(main())
