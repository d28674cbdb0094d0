"""The SSH lab's out-of-band controller: what IPMI or a SAN admin CLI is to a real cluster.

`testbeds/local-ssh.yaml` declares these commands as its `oob:` power and disk commands, the way
a user declares `ipmitool … chassis power off`; the SSH provider only ever runs the template.

    python -m harness.testbed.oob --testbed testbeds/local-ssh.yaml off node1
    python -m harness.testbed.oob --testbed testbeds/local-ssh.yaml status node1   # prints on / off
    python -m harness.testbed.oob --testbed testbeds/local-ssh.yaml disk-pull shared

The lab instance comes from FALLOVER_INSTANCE, as for the embedded testbed (`default_instance`).
"""

from __future__ import annotations

import argparse
import sys

from harness.errors import FalloverError
from harness.testbed.layout import Layout
from harness.topology import load_topology

ACTIONS = ("on", "off", "status", "disk-pull", "disk-restore", "disk-status")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="oob", description=__doc__.splitlines()[0])
    p.add_argument("--testbed", required=True)
    p.add_argument("action", choices=ACTIONS)
    p.add_argument("target", help="a node (power) or a disk (disk-*)")
    args = p.parse_args(argv)
    try:
        topo = load_topology(args.testbed)
        layout = Layout(topo)
        known = topo.node_names if not args.action.startswith("disk") else [d.name for d in topo.disks]
        if args.target not in known:
            print(f"oob: unknown target {args.target!r} (known: {', '.join(known)})", file=sys.stderr)
            return 2
        print(_act(layout, args.action, args.target))
    except FalloverError as e:
        print(f"oob: {args.action} {args.target}: {e}", file=sys.stderr)
        return 1
    return 0


def _act(layout: Layout, action: str, target: str) -> str:
    if action == "status":
        from harness.testbed import cgroup

        try:
            pid = int(layout.node_pidfile(target).read_text())
        except (OSError, ValueError):
            return "off"
        return "on" if pid in cgroup.procs(layout.node_cgroup(target)) else "off"
    from harness.testbed import nodes

    if action == "off":
        nodes.power_off(layout, target)
        return "off"
    if action == "on":
        nodes.start_if_off(layout, target)  # a fence may have powered it on first
        return "on"
    from harness.testbed.local import LocalTestbed

    lab = LocalTestbed(layout.topology, instance=layout.instance, state_root=str(layout.state_root))
    if action == "disk-pull":
        lab.set_disk_mode(target, "eio")
    elif action == "disk-restore":
        lab.set_disk_mode(target, "ok")
    return lab.disk_mode(target) or ""


if __name__ == "__main__":
    sys.exit(main())
