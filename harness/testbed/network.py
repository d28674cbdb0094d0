"""The testbed's wiring with pyroute2: bridges in a private netns, a veth per node adapter.

The bridges live in their own named namespace, so the host's root namespace never gets a
testbed address or route and no test packet can leave this machine.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Iterator
from contextlib import contextmanager

from pyroute2 import NetNS, config, netns
from pyroute2.netlink.exceptions import NetlinkError

# pyroute2 forks helper children; without this they inherit our SIGINT/SIGTERM handlers
# and would run the harness's cleanup code (tearing the testbed down) from a fork.
config.disable_mp_signal = True

from harness.errors import TestbedError
from harness.testbed import sshlab
from harness.testbed.layout import Layout


@contextmanager
def _ns(spec: str) -> Iterator[NetNS]:
    ns = NetNS(spec)
    try:
        yield ns
    finally:
        ns.close()


def _index(ns: NetNS, ifname: str) -> int:
    found = ns.link_lookup(ifname=ifname)
    if not found:
        raise LookupError(ifname)
    return int(found[0])


def create_fabric(layout: Layout) -> None:
    """Bridges (one per network) in the net namespace, and the client namespace on its network."""
    topo = layout.topology
    existing = set(netns.listnetns())
    for name in (layout.net_ns, layout.client_ns):
        if name not in existing:
            netns.create(name)
    with _ns(layout.net_ns) as ns:
        ns.link("set", index=_index(ns, "lo"), state="up")
        for net in topo.networks:
            if not ns.link_lookup(ifname=net.name):
                ns.link("add", ifname=net.name, kind="bridge")
            ns.link("set", index=_index(ns, net.name), state="up")
        client = topo.client.name
        cveth = f"c-{topo.client.network}"[:15]
        if not ns.link_lookup(ifname=cveth):
            with _ns(layout.client_ns) as cns:
                if cns.link_lookup(ifname=topo.client.network):
                    cns.link("del", index=_index(cns, topo.client.network))
            ns.link("add", ifname=cveth, kind="veth",
                    peer={"ifname": topo.client.network, "net_ns_fd": f"/run/netns/{layout.client_ns}"})
        ns.link("set", index=_index(ns, cveth), master=_index(ns, topo.client.network), state="up")
    _create_mgmt(layout)
    with _ns(layout.client_ns) as cns:
        nic = _index(cns, topo.client.network)
        _add_address(cns, nic, str(topo.address(client, topo.client.network)),
                     topo.network(topo.client.network).subnet.prefixlen)
        cns.link("set", index=nic, state="up")
        cns.link("set", index=_index(cns, "lo"), state="up")


def attach_node(layout: Layout, node: str, pid: int) -> None:
    """One adapter per network into the node's (anonymous) netns, addressed and up."""
    topo = layout.topology
    with _ns(layout.net_ns) as ns:
        for net in topo.networks:
            veth = layout.veth(node, net.name)
            _remove_stale(ns, veth)
            ns.link("add", ifname=veth, kind="veth", peer={"ifname": net.name, "net_ns_pid": pid})
            ns.link("set", index=_index(ns, veth), master=_index(ns, net.name), state="up")
    with _ns(f"/proc/{pid}/ns/net") as nns:
        nns.link("set", index=_index(nns, "lo"), state="up")
        for net in topo.networks:
            nic = _index(nns, net.name)
            _add_address(nns, nic, str(topo.address(node, net.name)), net.subnet.prefixlen)
            nns.link("set", index=nic, state="up")
    _attach_mgmt(layout, node, pid)


def _create_mgmt(layout: Layout) -> None:
    """An SSH lab's management bridge (SSH only, no fault touches it), the harness's address on it."""
    plan = sshlab.mgmt_plan(layout)
    if plan is None:
        return
    with _ns(layout.net_ns) as ns:
        if not ns.link_lookup(ifname=sshlab.MGMT):
            ns.link("add", ifname=sshlab.MGMT, kind="bridge")
        _add_address(ns, _index(ns, sshlab.MGMT), plan[0], plan[1])
        ns.link("set", index=_index(ns, sshlab.MGMT), state="up")


def _attach_mgmt(layout: Layout, node: str, pid: int) -> None:
    plan = sshlab.mgmt_plan(layout)
    if plan is None:
        return
    veth = layout.veth(node, sshlab.MGMT)
    with _ns(layout.net_ns) as ns:
        _remove_stale(ns, veth)
        ns.link("add", ifname=veth, kind="veth", peer={"ifname": sshlab.MGMT, "net_ns_pid": pid})
        ns.link("set", index=_index(ns, veth), master=_index(ns, sshlab.MGMT), state="up")
    with _ns(f"/proc/{pid}/ns/net") as nns:
        nic = _index(nns, sshlab.MGMT)
        _add_address(nns, nic, plan[2][node], plan[1])
        nns.link("set", index=nic, state="up")


def detach_node(layout: Layout, node: str) -> None:
    """Unplug every cable of a node at once: its bridge-side ports are deleted, so the pair goes too.

    A SIGKILLed node's network namespace is freed by the kernel asynchronously (seconds on a
    loaded machine), and until then its interfaces still answer ARP for the service IP: a
    powered-off node that keeps answering is a split brain that real hardware cannot have.
    """
    with _ns(layout.net_ns) as ns:
        mgmt = [sshlab.MGMT] if sshlab.mgmt_plan(layout) else []
        for net in [n.name for n in layout.topology.networks] + mgmt:
            try:
                ns.link("del", index=_index(ns, layout.veth(node, net)))
            except (LookupError, NetlinkError):
                pass  # already gone with its namespace


def _remove_stale(ns: NetNS, ifname: str, timeout: float = 10.0) -> None:
    """A previous incarnation's port: the kernel removes it with the dead netns, asynchronously,
    so it may vanish between our lookup and our delete. Either way it must be gone before the add."""
    deadline = time.monotonic() + timeout
    while ns.link_lookup(ifname=ifname):
        try:
            ns.link("del", index=_index(ns, ifname))
        except (LookupError, NetlinkError):
            pass  # gone by itself meanwhile
        if time.monotonic() > deadline:
            raise TestbedError(f"stale port {ifname} of a previous node incarnation would not go away")
        time.sleep(0.02)


def _add_address(ns: NetNS, index: int, address: str, prefixlen: int) -> None:
    try:
        ns.addr("add", index=index, address=address, prefixlen=prefixlen)
    except NetlinkError as e:
        if e.code != errno.EEXIST:
            raise


def set_link(spec: str, ifname: str, up: bool) -> None:
    """Bring a link up or down in a namespace (a name from `ip netns`, or a /proc/PID/ns/net path)."""
    with _ns(spec) as ns:
        ns.link("set", index=_index(ns, ifname), state="up" if up else "down")


def links(spec: str) -> dict[str, str]:
    """ifname → operational state (`up`, `down`, `lowerlayerdown`, …): what a pulled cable changes."""
    with _ns(spec) as ns:
        return {str(link.get("ifname")): str(link.get("operstate") or link.get("state")).lower()
                for link in ns.get_links()}


def remove_fabric(layout: Layout) -> list[str]:
    """Delete the client and bridge namespaces (with them every bridge and veth); returns what went."""
    gone = []
    existing = set(netns.listnetns())
    for name in (layout.client_ns, layout.net_ns):
        if name in existing:
            netns.remove(name)
            gone.append(f"netns {name}")
    return gone


def our_namespaces(layout: Layout) -> list[str]:
    """This testbed's named namespaces (exact names: another instance's prefix may extend ours)."""
    return sorted(set(netns.listnetns()) & {layout.net_ns, layout.client_ns})
