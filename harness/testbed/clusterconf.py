"""Cluster configuration generated from the topology: corosync.conf and the seed CIB.

The whole CIB is seeded into every node before the first start (no crmsh round trip at
bring-up): with dc-deadtime in the seed the first election does not wait 20 s, and with
the fence device in the seed the scheduler never logs "no STONITH resources defined".
"""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET

from harness.testbed.layout import Layout
from harness.topology import Group, Topology

# Location scores: cascading groups follow the priority list (failback, stickiness 0);
# rotating groups stay put, because their stickiness outweighs the whole score range.
PRIORITY_STEP = 100
ROTATING_STICKINESS = 10000
FS_MONITOR_INTERVAL_S, FS_MONITOR_TIMEOUT_S = 2, 20  # the Filesystem monitor: a hung disk is noticed at its timeout


def corosync_conf(topo: Topology, quorum_defaults: dict[str, int | str] | None = None) -> str:
    """corosync.conf from the topology; ``quorum_defaults`` are a testbed's own quorum options, under the
    topology's `cluster.corosync.quorum` (a user's value wins)."""
    hb = [n for n in topo.networks if n.heartbeat]
    c = topo.cluster
    over = c.corosync
    generated: dict[str, int | str] = {"version": 2, "cluster_name": topo.name, "transport": "knet",
                                       "token": over.hand_tuned_token or c.token_ms,
                                       "token_coefficient": c.token_coefficient_ms,
                                       "crypto_cipher": "aes256", "crypto_hash": "sha256"}
    totem = generated | over.totem  # an option given twice keeps its place, with the topology's value
    quorum: dict[str, int | str] = {"provider": "corosync_votequorum"}
    quorum |= (quorum_defaults or {}) | over.quorum
    lines = ["totem {", *(f"    {k}: {v}" for k, v in totem.items())]
    for i, _ in enumerate(hb):
        lines += ["    interface {", f"        linknumber: {i}", "    }"]
    lines += ["}", "logging {", "    to_logfile: yes", "    logfile: /var/log/cluster/corosync.log",
              "    to_syslog: no", "    to_stderr: no", "    timestamp: hires", "}",
              "quorum {", *(f"    {k}: {v}" for k, v in quorum.items()), "}", "nodelist {"]
    # one key per line: corosync rejects `node { name: x nodeid: 2 }` on a single line
    for node in topo.node_names:
        lines += ["    node {", f"        name: {node}", f"        nodeid: {topo.node_index(node)}"]
        for i, net in enumerate(hb):
            lines.append(f"        ring{i}_addr: {topo.address(node, net.name)}")
        lines.append("    }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _nvset(parent: ET.Element, tag: str, set_id: str, values: dict[str, str]) -> ET.Element:
    el = ET.SubElement(parent, tag, id=set_id)
    for k, v in values.items():
        ET.SubElement(el, "nvpair", id=f"{set_id}-{k}", name=k, value=v)
    return el


def _ops(parent: ET.Element, rid: str, ops: list[tuple[str, str, str]], check_level: int | None = None) -> None:
    el = ET.SubElement(parent, "operations")
    for name, interval, timeout in ops:
        op = ET.SubElement(el, "op", id=f"{rid}-{name}-{interval}", name=name, interval=interval, timeout=timeout)
        if name == "monitor" and check_level is not None:
            _nvset(op, "instance_attributes", f"{rid}-{name}-{interval}-params",
                   {"OCF_CHECK_LEVEL": str(check_level)})


def _primitive(parent: ET.Element, rid: str, cls: str, typ: str, params: dict[str, str],
               ops: list[tuple[str, str, str]], provider: str | None = None,
               check_level: int | None = None) -> ET.Element:
    attrs = {"id": rid, "class": cls, "type": typ}
    if provider:
        attrs["provider"] = provider
    el = ET.SubElement(parent, "primitive", attrs)
    _nvset(el, "instance_attributes", f"{rid}-params", params)
    _ops(el, rid, ops, check_level)
    return el


def _group(resources: ET.Element, layout: Layout, g: Group) -> None:
    topo = layout.topology
    grp = ET.SubElement(resources, "group", id=g.name)
    meta = {}
    if g.policy == "rotating":  # cascading groups inherit rsc_defaults' stickiness 0, and so fail back
        meta["resource-stickiness"] = str(ROTATING_STICKINESS)
    if g.migration_threshold != 1:  # rsc_defaults hold 1: the first failure moves the group
        meta["migration-threshold"] = str(g.migration_threshold)
    if g.failure_timeout_s is not None:
        meta["failure-timeout"] = f"{g.failure_timeout_s}s"
    if meta:
        _nvset(grp, "meta_attributes", f"{g.name}-meta", meta)
    net = topo.network(g.network)
    if g.disk is not None:
        _filesystem(grp, layout, g)
    _primitive(grp, f"{g.name}-ip", "ocf", "IPaddr2", {
        "ip": str(g.service_ip), "cidr_netmask": str(net.subnet.prefixlen), "nic": g.network,
    }, [("start", "0s", "20s"), ("stop", "0s", "20s"), ("monitor", "2s", "10s")], provider="heartbeat")
    app = g.application
    params = {
        "data_dir": str(layout.mountpoint(g.name)) if g.disk is not None else local_data_dir(g.name),
        "port": str(app.port), "kvapp": str(layout.agents_dir / "kvapp.py"),
        "state_dir": f"/run/fallover-app-{g.name}", "logfile": f"/var/log/cluster/{g.name}-app.log",
        "fail_start_marker": str(layout.state / "faults" / f"app_start_fail.{g.name}"),
    }
    if app.start:
        params |= {"start_cmd": app.start, "stop_cmd": app.stop or "", "monitor_cmd": app.monitor or ""}
        if topo.source is not None:  # relative paths in the commands are relative to the topology file
            params["workdir"] = str(topo.source.parent)
        params |= {k: v for k, v in (("pid_file", app.pid_file), ("process", app.process)) if v}
    _primitive(grp, f"{g.name}-app", "ocf", "fallover-app", params,
               [("start", "0s", "20s"), ("stop", "0s", "20s"), ("monitor", "2s", "10s")], provider="fallover")


def local_data_dir(group: str) -> str:
    """Where a group without a shared disk keeps its data: a directory private to each node (nodes.prepare)."""
    return f"/var/lib/pacemaker/fallover-{group}"


def _filesystem(grp: ET.Element, layout: Layout, g: Group) -> None:
    topo = layout.topology
    assert g.disk is not None
    _primitive(grp, f"{g.name}-fs", "ocf", "Filesystem", {
        "device": str(layout.disk_link(g.disk)), "directory": str(layout.mountpoint(g.name)),
        "fstype": topo.disks[[d.name for d in topo.disks].index(g.disk)].fstype,
        "options": "errors=remount-ro",
    }, [("start", "0s", "60s"), ("stop", "0s", "60s"),
        ("monitor", f"{FS_MONITOR_INTERVAL_S}s", f"{FS_MONITOR_TIMEOUT_S}s")], provider="heartbeat",  # 2 s: detection of a pulled disk must fit the default 5 s SLA with room to spare
        check_level=20)  # level 20 writes to the disk: a pulled disk is noticed, not just an unmounted one


def _fencing(resources: ET.Element, conf: ET.Element, layout: Layout) -> None:
    """One fence_fallover device per declared level, each on a broker socket of its own; with more than one
    level, a fencing-topology that tries them in order for every node."""
    topo = layout.topology
    levels = topo.cluster.fencing_topology
    for device in levels:
        _primitive(resources, device, "stonith", "fence_fallover", {
            "broker": str(layout.fence_socket_for(device)), "pcmk_host_list": " ".join(topo.node_names),
            "pcmk_host_check": "static-list",
        }, [("monitor", "60s", "20s")])
    if len(levels) < 2:
        return  # one device: Pacemaker uses it without a topology
    fencing = ET.SubElement(conf, "fencing-topology")
    for node in topo.node_names:
        for index, device in enumerate(levels, 1):
            ET.SubElement(fencing, "fencing-level", id=f"fl-{node}-{index}", target=node, index=str(index),
                          devices=device)


CLONE_OF = {"ethmonitor": "linkmon", "reach": "reach"}
"""The watcher clone that keeps each connectivity attribute (attribute prefix -> clone prefix)."""


def _stop_before(constraints: ET.Element, group: str, clone: str) -> None:
    """A node that leaves stops its group before the watchers the group's placement reads, not beside them.

    Without an order, Pacemaker stops a leaving node's watchers beside its group, and on a one-CPU VM
    guest they took the CPU of the group's own stops: the application's stop waited 14.5 s for its
    interpreter before it sent SIGTERM (node_stop-node1, 2026-12-02; the app stopped 1 s after it), and
    the node's three stops took 42.8 s, against 31.3-34.2 s with the order. The price: the watchers'
    attributes now go while the next node starts the group, and the DC plans again there (2.4-5 s).
    Waiting for the group to run elsewhere first was tried: the leaving node's own stop then lasts as
    long as the takeover (node_stop's 60 s wait for pacemakerd ran out). Optional and one-way: only a
    transition that stops both is ordered; nothing that starts, restarts or moves either waits.
    """
    ET.SubElement(constraints, "rsc_order", {
        "id": f"{group}-stops-before-{clone}-stops", "first": group, "first-action": "stop", "then": clone,
        "then-action": "stop", "kind": "Optional", "symmetrical": "false"})


def cib_xml(layout: Layout, empty_cib: str) -> str:
    """The full seed CIB; ``empty_cib`` is `cibadmin --empty` (it carries the schema version)."""
    topo = layout.topology
    c = topo.cluster
    root = ET.fromstring(empty_cib)
    conf = root.find("configuration")
    assert conf is not None
    crm_config = conf.find("crm_config")
    resources = conf.find("resources")
    constraints = conf.find("constraints")
    assert crm_config is not None and resources is not None and constraints is not None
    _nvset(crm_config, "cluster_property_set", "cib-bootstrap-options", {
        "dc-deadtime": f"{c.dc_deadtime_s}s", "stonith-enabled": str(c.stonith).lower(),
        "stonith-action": "off", "no-quorum-policy": c.no_quorum_policy,
        "cluster-recheck-interval": f"{c.recheck_s}s", "cluster-name": topo.name, "stonith-timeout": f"{c.fence_timeout_s}s",
    })
    if c.stonith:
        _fencing(resources, conf, layout)
    for net in sorted({g.network for g in topo.groups}):
        # A group's node must see its service network's link up: without this, a pulled service
        # cable leaves the service IP on a node no client can reach, and nothing notices.
        clone = ET.SubElement(resources, "clone", id=f"linkmon-{net}-clone")
        _nvset(clone, "meta_attributes", f"linkmon-{net}-clone-meta", {"interleave": "true"})
        _primitive(clone, f"linkmon-{net}", "ocf", "ethmonitor",
                   {"interface": net, "link_status_only": "true", "name": f"ethmonitor-{net}",
                    "repeat_count": "1", "repeat_interval": "1"},
                   [("start", "0s", "20s"), ("stop", "0s", "20s"), ("monitor", "1s", "10s")], provider="heartbeat")
        # The node's own cable says nothing about the switch: a group also needs its clients to be
        # reachable (here: the client host), or a dead service network goes unnoticed.
        if net != topo.client.network:
            continue  # no client host on that network to reach
        clone = ET.SubElement(resources, "clone", id=f"reach-{net}-clone")
        _nvset(clone, "meta_attributes", f"reach-{net}-clone-meta", {"interleave": "true"})
        _primitive(clone, f"reach-{net}", "ocf", "ping",
                   {"host_list": str(topo.address(topo.client.name, net)), "name": f"reach-{net}", "multiplier": "1",
                    # three pings 0.2 s apart, 1 s for the last answer: a dead network is seen in ~1.4 s
                    # (two pings 1 s apart took ~2 s and pushed detection past a 5 s SLA), while a
                    # 10 % packet loss still needs three losses in a row (0.1 %) to look like one
                    "attempts": "3", "timeout": "1", "options": "-i 0.2", "dampen": "1s"},
                   [("start", "0s", "20s"), ("stop", "0s", "20s"), ("monitor", "1s", "20s")], provider="pacemaker")
    for g in topo.groups:
        _group(resources, layout, g)
        # Both monitors set 0 when their network dies, and the test is "is 0", never "not 1": a missing
        # attribute is no news about the network. Pacemaker 2.1.5's DC erases a node's attributes
        # when its controller leaves and may schedule from a CIB read before it records the node's
        # controller offline; "not 1" then banned a node it still thought active, and the group was
        # moved by a stop sent to the dead controller, fenced only after stop timeout + cluster-delay
        # (harness/audits/pcmk_races.py). "Is 0" also lets the group start before the first monitor
        # has answered (faster bring-up). Where the link is *not monitored* (its monitor stopped or
        # failed there), the colocation below keeps the group away, as "not 1" did.
        needs = [(f"ethmonitor-{g.network}", "link", "eq", "0")]
        ET.SubElement(constraints, "rsc_colocation", {"id": f"{g.name}-with-linkmon-{g.network}", "rsc": g.name,
                                                      "with-rsc": f"linkmon-{g.network}-clone", "score": "INFINITY"})
        if g.network == topo.client.network:
            needs.append((f"reach-{g.network}", "clients", "eq", "0"))
        for attr, _, _, _ in needs:
            _stop_before(constraints, g.name, CLONE_OF[attr.split("-")[0]] + f"-{g.network}-clone")
        for attr, why, op, value in needs:
            loc = ET.SubElement(constraints, "rsc_location", id=f"{g.name}-needs-{g.network}-{why}", rsc=g.name)
            rule = ET.SubElement(loc, "rule", id=f"{g.name}-needs-{g.network}-{why}-rule", score="-INFINITY")
            ET.SubElement(rule, "expression", id=f"{g.name}-needs-{g.network}-{why}-expr",
                          attribute=attr, operation=op, value=value)
        for rank, node in enumerate(g.nodes):
            score = str(PRIORITY_STEP * (len(g.nodes) - rank))
            ET.SubElement(constraints, "rsc_location", id=f"{g.name}-prefers-{node}", rsc=g.name,
                          node=node, score=score)
        for node in topo.node_names:
            if node not in g.nodes:
                ET.SubElement(constraints, "rsc_location", id=f"{g.name}-avoids-{node}", rsc=g.name,
                              node=node, score="-INFINITY")
    rsc_defaults = ET.SubElement(conf, "rsc_defaults")
    _nvset(rsc_defaults, "meta_attributes", "rsc-options", {"migration-threshold": "1", "resource-stickiness": "0"})
    alerts = ET.SubElement(conf, "alerts")
    alert = ET.SubElement(alerts, "alert", id="fallover-notify", path=str(layout.agents_dir / "fallover-alert"))
    _nvset(alert, "meta_attributes", "fallover-notify-meta",
           {"timestamp-format": "%Y-%m-%dT%H:%M:%S.%06N%z", "timeout": "10s"})
    # Attribute alerts are the one kind Pacemaker does not send unless selected: without them a dead
    # network (the link and reachability attributes dropping) is never notified to anyone.
    select = ET.SubElement(alert, "select")
    for kind in ("select_nodes", "select_fencing", "select_resources"):
        ET.SubElement(select, kind)
    attrs = ET.SubElement(select, "select_attributes")
    # "shutdown" is the controller's own word that a node asked to leave (set by the DC at once, the
    # node's resources still running); a graceful stop's other alerts wait for its stops to run.
    ET.SubElement(attrs, "attribute", id="fallover-notify-attr-shutdown", name="shutdown")
    for net in sorted({g.network for g in topo.groups}):
        names = [f"ethmonitor-{net}"] + ([f"reach-{net}"] if net == topo.client.network else [])
        for name in names:
            ET.SubElement(attrs, "attribute", id=f"fallover-notify-attr-{name}", name=name)
    ET.SubElement(alert, "recipient", id="fallover-notify-log", value=str(layout.notification_log))
    return ET.tostring(root, encoding="unicode")


def empty_cib() -> str:
    return subprocess.run(["cibadmin", "--empty"], check=True, capture_output=True, text=True,
                          timeout=30).stdout


def verify(cib_file: str) -> str:
    """crm_verify's complaints about a CIB file ('' when valid)."""
    r = subprocess.run(["crm_verify", "--xml-file", cib_file], capture_output=True, text=True, timeout=60)
    return "" if r.returncode == 0 else (r.stderr or r.stdout).strip()
