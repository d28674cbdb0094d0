#!/usr/bin/env python3
"""The VM testbed, measured: box build, up (box cached), cluster settled, node power-off → service back,
the heal (VM started → SSH → rejoined → group back home → settled), down, and RSS per VM. Targets on a
2-core machine under TCG: up with a cached box ≤ 150 s for 3 nodes, power-off → service back ≤ 15 s,
≤ 1 GB RSS per 1 GiB VM.

After the power-off and after the heal it prints where the cluster's time went, from the guests' own
Pacemaker and Corosync logs (membership, election, fence, each resource operation: harness/audits/
pcmk_timing.py), each guest's clock offset taken out. No load and no recorders run: this is the
cluster's own pace on the testbed, the floor under what a case under load can show.

Uses FALLOVER_INSTANCE (else its own instance, "bench"); `--rebuild-box` times a box build from scratch
(minutes), otherwise the cached build's time is reported; `--keep` leaves the lab up, and a lab that is
already up is used as it is (no `down` first). The last line is machine-readable key=value pairs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.audits.departures import log_clock  # noqa: E402
from harness.audits.pcmk_timing import merged, milestones  # noqa: E402
from harness.drivers import open_driver  # noqa: E402
from harness.faults import Nemesis  # noqa: E402
from harness.status import service_answer  # noqa: E402
from harness.testbed import vagrantbox  # noqa: E402
from harness.testbed.vagrant import VagrantTestbed  # noqa: E402
from harness.topology import load_topology  # noqa: E402
from harness.wait import wait_until  # noqa: E402

TESTBED = Path(__file__).resolve().parent.parent / "testbeds" / "vagrant.yaml"
LOG_LINES = ("A new membership|S_ELECTION -> S_INTEGRATION|Requesting fencing|finalize_op|state is now member"
             "|Initiating|Result of|High CPU load")
"""What the guests' grep keeps of their logs for the breakdown (pcmk_timing's rules read the rest)."""


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


def breakdown(tb: VagrantTestbed, since_wall: float, label: str) -> None:
    """Print the cluster's steps since ``since_wall`` as the running guests logged them."""
    per_node = []
    for n in tb.topology.node_names:
        if not tb.running(n):
            continue
        try:
            clock = log_clock(tb, n)
            if clock is None:
                raise RuntimeError("it does not say its time")
            r = tb.node(n).run(["grep", "-hE", LOG_LINES, "/var/log/cluster/corosync.log",
                                "/var/log/pacemaker/pacemaker.log"], timeout=60, check=False)
        except Exception as e:  # noqa: BLE001 — a breakdown is a reading aid, never the bench's result
            print(f"  ({n}: logs not read: {e})")
            continue
        per_node.append(milestones(n, r.stdout.splitlines(), year=clock.year, offset=clock.offset,
                                   since=since_wall - 1))
    print(f"where the time went ({label}; s after it, from the guests' logs):")
    for m in merged(per_node):
        print(f"  {m.wall - since_wall:7.1f}  {m.node:6} {m.what}")


def power_off_and_back(tb: VagrantTestbed) -> dict[str, float]:
    """Power the active node off, time the takeover, heal, time the rejoin and the failback."""
    g = tb.topology.groups[0]
    nemesis = Nemesis(tb)
    active = service_answer(tb, g.name, timeout=10)
    if active is None:
        raise SystemExit("the service does not answer before the fault")
    out: dict[str, float] = {}
    w1, t1 = time.time(), time.monotonic()
    inj = nemesis.start("node_power_off", node=str(active))
    wait_until(lambda: service_answer(tb, g.name) not in (None, active), timeout=120,
               what="the service answering from another node", interval=0.2)
    out["poweroff_back_s"] = time.monotonic() - t1
    print(f"power-off of {active} → service back from {service_answer(tb, g.name)}: {out['poweroff_back_s']:.1f} s "
          f"(target ≤ 15 s, ratio {out['poweroff_back_s'] / 15:.2f})", flush=True)
    breakdown(tb, w1, f"power-off of {active}")
    driver = open_driver(tb)
    wait_until(lambda: driver.settled(s) if (s := driver.state()) else False, timeout=120, interval=1.0,
               what="the cluster settled without the powered-off node")
    w2, t2 = time.time(), time.monotonic()
    nemesis.heal(inj)  # virsh start
    out["heal_s"] = time.monotonic() - t2

    def answers() -> bool:
        try:
            return tb.node(str(active)).run(["true"], timeout=10, check=False).ok
        except Exception:  # noqa: BLE001 — not yet
            return False

    wait_until(answers, timeout=600, interval=1.0, what=f"{active} answering over SSH")
    out["ssh_s"] = time.monotonic() - t2
    wait_until(lambda: (s := driver.state()) is not None and active in s.online, timeout=600, interval=1.0,
               what=f"{active} online")
    out["rejoined_s"] = time.monotonic() - t2
    wait_until(lambda: service_answer(tb, g.name) == active, timeout=600, interval=0.5,
               what=f"the service answering from {active} again")
    out["failback_s"] = time.monotonic() - t2
    driver.wait_settled(timeout=600, placement=True)
    out["settled_back_s"] = time.monotonic() - t2
    print(f"heal of {active}: virsh start {out['heal_s']:.1f} s, SSH {out['ssh_s']:.1f} s, "
          f"online {out['rejoined_s']:.1f} s, service from {active} again {out['failback_s']:.1f} s, "
          f"settled {out['settled_back_s']:.1f} s", flush=True)
    breakdown(tb, w2, f"heal of {active}")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rebuild-box", action="store_true")
    p.add_argument("--keep", action="store_true", help="leave the lab up at the end")
    a = p.parse_args()
    t0 = time.monotonic()
    box = vagrantbox.build(force=a.rebuild_box)
    box_s = time.monotonic() - t0 if a.rebuild_box else json.loads((box.dir / "done.json").read_text())["build_s"]
    print(f"box: {box_s:.0f} s to build ({'now' if a.rebuild_box else 'cached build'}); {box.name}", flush=True)
    tb = VagrantTestbed(load_topology(TESTBED), instance=os.environ.get("FALLOVER_INSTANCE") or "bench")
    reused = tb.is_built and tb._lab_alive()
    if not reused:
        tb.down()
    rss: dict[str, float] = {}
    times: dict[str, float] = {}
    down_s, left = 0.0, []
    try:
        t0 = time.monotonic()
        tb.up(progress=lambda m: print(f"  [{time.monotonic() - t0:6.1f}s] {m}", flush=True))
        info = json.loads((tb.state / "up.json").read_text())
        first = info.get("first", info)
        print(f"up (box cached{', lab reused: first up' if reused else ''}): {first.get('provision_s', 0):.0f} s "
              f"vagrant up (boot + provisioning), {first['booted_s']:.0f} s VMs booted and provisioned, "
              f"{first['settled_s']:.0f} s cluster settled (target ≤ 150 s, ratio {first['settled_s'] / 150:.2f})",
              flush=True)
        rss = rss_mb(tb)
        print("RSS per VM: " + ", ".join(f"{n} {v:.0f} MB" for n, v in sorted(rss.items())), flush=True)
        times = power_off_and_back(tb)
    finally:
        if not a.keep:
            t2 = time.monotonic()
            tb.down()
            down_s = time.monotonic() - t2
            left = tb.leftovers()
            print(f"down: {down_s:.1f} s; left behind: {left or 'nothing'}", flush=True)
    worst = max(rss.values()) if rss else 0.0
    load = os.getloadavg()[0]
    print(f"box_s={box_s:.0f} up_s={first['booted_s']:.0f} settled_s={first['settled_s']:.0f} "
          + " ".join(f"{k}={v:.1f}" for k, v in times.items())
          + f" down_s={down_s:.1f} rss_mb_max={worst:.0f} accel={info['accel']} load1={load:.1f}")
    return 0 if not left else 1


if __name__ == "__main__":
    sys.exit(main())
