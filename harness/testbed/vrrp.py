"""keepalived configuration generated from the topology: one keepalived.conf and one group file per node.

A group is one VRRP instance on its service network (unicast to the group's other nodes, so
nothing depends on multicast through the testbed's bridges). Priorities follow the group's node
order; a cascading group preempts (it goes home when its home node is back), a rotating one does
not (``nopreempt``). keepalived has no resource manager, so the application rides on the VRRP
state: the notify script (assets/fallover-keepalived) starts it on MASTER and stops it otherwise,
and a check script turns a dead application (or a failed start) into a *failure mark* — a
track_file that puts the node's instance in FAULT until an operator clears it (the driver's
``cleanup``), which is what Pacemaker's migration-threshold=1 and ``crm_resource --cleanup`` do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.testbed.layout import Layout
from harness.topology import Group

ADVERT_INT_S = 0.2
"""VRRPv3 advert interval: 0.2 s rather than 0.1 s leaves room for a node's scheduling hiccups on a
loaded 2-core machine (cpu_overload must not look like a dead master)."""
DOWN_TIMER_ADVERTS = 6
"""Adverts a backup misses before it takes over (keepalived's ``down_timer_adverts``; the RFC's 3).
With 3, a master whose link only loses or corrupts a share of its packets (packet_loss and
packet_corrupt: 10 %, both directions) was taken for dead whenever three adverts in a row were lost
(about once in 30 such cases), and it kept its VIP beside the backup that took over: a split brain
on a link that still works. Six in a row is 1000 times rarer, and an advert has to be missing for
1.2 s instead of 0.6 s. Every node of an instance has the same value, as keepalived requires."""
MASTER_DOWN_S = ADVERT_INT_S * (DOWN_TIMER_ADVERTS + 1)
"""Upper bound of the master-down interval (the adverts plus the skew, which is under one advert):
how long after its master goes silent a backup takes over (~1.2 s)."""
PRIORITY_TOP, PRIORITY_STEP = 250, 20
"""The group's first node gets 250, the next 230, …: below 255 (the address owner, which tracking
cannot lower) and above 0 (resigning)."""
VRID_BASE = 10
RUN_DIR = "/run/fallover-keepalived"
"""Inside a node: the failure marks and the VRRP state each notify writes (lost at power-off, as a
rebooted Pacemaker node forgets its fail counts)."""
NOTIFY_SCRIPT = "fallover-keepalived"
PID_FILE = "/run/keepalived.pid"
LOG_FILE = "/var/log/cluster/keepalived.log"
NEIGH_RETRANS_MS = 100
"""ARP retransmission interval of the node's adapters (the kernel's default is 1000 ms). Adverts are
unicast, so they wait for ARP. A node whose link dies keeps sending (its priority-0 resignation, say):
the kernel queues them behind an ARP request the dead link drops, and retries only after
``retrans_time_ms``. When the link comes back, a cascading home node preempts ~0.5 s later; with
the default, its first adverts as MASTER could still be queued then, so the old master kept the VIP
for up to a second beside it (a split brain on every failback after a short link failure). 100 ms
resolves the peers well before the master-down interval (MASTER_DOWN_S) ends."""


def priority(group: Group, node: str) -> int:
    """>>> from harness.topology import Group
    >>> g = Group(name="app", service_ip="10.0.0.100", network="service", nodes=["b", "a"])
    >>> priority(g, "b"), priority(g, "a")
    (250, 230)
    """
    return PRIORITY_TOP - PRIORITY_STEP * group.nodes.index(node)


def vrid(layout: Layout, group: str) -> int:
    return VRID_BASE + [g.name for g in layout.topology.groups].index(group)


def keepalived_dir(layout: Layout, node: str) -> Path:
    """Where a node's keepalived.conf and group files live (on the host, visible inside the node)."""
    return layout.node_dir(node) / "keepalived"


def conf_path(layout: Layout, node: str) -> Path:
    return keepalived_dir(layout, node) / "keepalived.conf"


def group_file(layout: Layout, node: str, group: str) -> Path:
    return keepalived_dir(layout, node) / f"{group}.json"


def data_dir(layout: Layout, node: str, group: str) -> Path:
    """The node's own directory for the group's data: there is no shared disk to move with the group."""
    return layout.node_dir(node) / "data" / group


def failed_file(group: str) -> str:
    return f"{RUN_DIR}/{group}.failed"


def state_file(group: str) -> str:
    return f"{RUN_DIR}/{group}.state"


def app_env(layout: Layout, node: str, g: Group) -> dict[str, str]:
    """The OCF environment of the group's application on this node (the Pacemaker CIB's parameters).

    Same instance name, state_dir and logfile as the Pacemaker resource, so the application faults
    (harness/faults/app.py) find it the same way on both stacks.
    """
    app = g.application
    env = {"OCF_ROOT": "/usr/lib/ocf", "OCF_RESOURCE_INSTANCE": f"{g.name}-app",
           "OCF_RESKEY_data_dir": str(data_dir(layout, node, g.name)), "OCF_RESKEY_port": str(app.port),
           "OCF_RESKEY_kvapp": str(layout.agents_dir / "kvapp.py"),
           "OCF_RESKEY_state_dir": f"/run/fallover-app-{g.name}",
           "OCF_RESKEY_logfile": f"/var/log/cluster/{g.name}-app.log",
           "OCF_RESKEY_fail_start_marker": str(layout.state / "faults" / f"app_start_fail.{g.name}")}
    if app.start:
        env |= {"OCF_RESKEY_start_cmd": app.start, "OCF_RESKEY_stop_cmd": app.stop or "",
                "OCF_RESKEY_monitor_cmd": app.monitor or ""}
        if layout.topology.source is not None:
            env["OCF_RESKEY_workdir"] = str(layout.topology.source.parent)
        env |= {f"OCF_RESKEY_{k}": v for k, v in (("pid_file", app.pid_file), ("process", app.process)) if v}
    return env


def group_record(layout: Layout, node: str, g: Group) -> dict[str, Any]:
    """What the notify and check script need to know about one group on one node (its JSON file)."""
    return {"group": g.name, "node": node, "vip": str(g.service_ip), "dev": g.network,
            "preempt": g.policy == "cascading",
            "priorities": {n: priority(g, n) for n in g.nodes},
            "notification_log": str(layout.notification_log),
            "agent": "/usr/lib/ocf/resource.d/fallover/fallover-app",
            "failed_file": failed_file(g.name), "state_file": state_file(g.name),
            "lock": f"{RUN_DIR}/{g.name}.lock", "env": app_env(layout, node, g)}


def _instance(layout: Layout, node: str, g: Group) -> list[str]:
    topo = layout.topology
    net = topo.network(g.network)
    script = f"{layout.agents_dir / NOTIFY_SCRIPT}"
    gfile = group_file(layout, node, g.name)
    peers = [str(topo.address(n, g.network)) for n in g.nodes if n != node]
    lines = [
        f"vrrp_instance {g.name} {{",
        "    state BACKUP",  # everyone starts as backup: the election decides, and nopreempt needs it
        f"    interface {g.network}",
        f"    virtual_router_id {vrid(layout, g.name)}",
        f"    priority {priority(g, node)}",
        f"    advert_int {ADVERT_INT_S}",
        f"    down_timer_adverts {DOWN_TIMER_ADVERTS}",
        *(["    nopreempt"] if g.policy == "rotating" else []),
        f"    unicast_src_ip {topo.address(node, g.network)}",
        "    unicast_peer {", *(f"        {p}" for p in peers), "    }",
        "    virtual_ipaddress {", f"        {g.service_ip}/{net.subnet.prefixlen} dev {g.network}", "    }",
        "    track_script {", f"        {g.name}_app", "    }",
        "    track_file {", f"        {g.name}_failed weight 0", "    }",
    ]
    for state in ("master", "backup", "fault", "stop"):
        lines.append(f'    notify_{state} "{script} notify {state.upper()} {gfile}"')
    return lines + ["}"]


def keepalived_conf(layout: Layout, node: str) -> str:
    """The whole keepalived.conf of one node: its groups' VRRP instances, checks and failure marks."""
    topo = layout.topology
    script = f"{layout.agents_dir / NOTIFY_SCRIPT}"
    lines = ["global_defs {", f"    router_id {node}", "    vrrp_version 3", "    script_user root",
             "    enable_script_security",
             "    vrrp_garp_master_delay 1",  # a second round of gratuitous ARP 1 s after a takeover
             "}"]
    for g in topo.groups:
        if node not in g.nodes:
            continue
        gfile = group_file(layout, node, g.name)
        lines += [
            f"vrrp_script {g.name}_app {{",
            f'    script "{script} check {gfile}"',
            "    interval 1",
            # a check that keepalived had to kill (slow to start on a loaded node) is no verdict on the
            # application: only two in a row put the node in FAULT. A failed monitor sets the failure mark,
            # which puts it there at once.
            "    timeout 8", "    fall 2", "    rise 1",
            "}",
            f"track_file {g.name}_failed {{",
            f'    file "{failed_file(g.name)}"',
            "    weight 0",
            "    init_file 0 overwrite",  # a (re)started keepalived starts without failures
            "}",
        ]
        lines += _instance(layout, node, g)
    return "\n".join(lines) + "\n"


def node_files(layout: Layout, node: str) -> dict[Path, str]:
    """Every file a node's keepalived needs, by host path: keepalived.conf and one JSON per group."""
    out = {conf_path(layout, node): keepalived_conf(layout, node)}
    for g in layout.topology.groups:
        if node in g.nodes:
            out[group_file(layout, node, g.name)] = json.dumps(group_record(layout, node, g), indent=1,
                                                               sort_keys=True) + "\n"
    return out


def prepare(layout: Layout, node: str) -> None:
    """Write the node's keepalived files and its local data directories (kept across restarts)."""
    for path, text in node_files(layout, node).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for g in layout.topology.groups:
        if node in g.nodes:
            data_dir(layout, node, g.name).mkdir(parents=True, exist_ok=True)


def services_lines() -> str:
    """The keepalived part of a node's services script: start it unless it already runs (VRRP only).

    The script lives in the node's directory beside keepalived/ (nodes.prepare), hence ``$0``.
    """
    return (f"mkdir -p {RUN_DIR}\n"
            f"for f in /proc/sys/net/ipv4/neigh/*/retrans_time_ms; do echo {NEIGH_RETRANS_MS} >\"$f\"; done "
            "2>/dev/null\n"  # see NEIGH_RETRANS_MS
            f"if ! kill -0 $(cat {PID_FILE} 2>/dev/null) 2>/dev/null; then\n"
            f"  setsid -f keepalived --dont-fork --vrrp --log-console --log-detail --no-syslog "
            f'--use-file="$(dirname "$0")/keepalived/keepalived.conf" --pid={PID_FILE} '
            f"--vrrp_pid=/run/keepalived-vrrp.pid >>{LOG_FILE} 2>&1 </dev/null\n"
            "fi\n")
