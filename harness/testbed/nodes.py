"""Embedded cluster nodes: each one a set of namespaces whose PID 1 is `node-init.sh`.

Every process of a node (and the `unshare` that created it) lives in the node's freezer
cgroup, so "power off" is exact: SIGKILL the cgroup's tasks, then thaw.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from harness.errors import TestbedError
from harness.testbed import cgroup, clusterconf, disk, network, sshlab, vrrp
from harness.testbed.layout import ASSETS, Layout

PRIVATE_DIRS = ("etc/corosync", "var/lib/pacemaker/cib", "var/lib/pacemaker/pengine",
                "var/lib/pacemaker/blackbox", "var/lib/pacemaker/cores", "var/lib/corosync",
                "var/log/cluster", "var/log/pacemaker", "var/log/crmsh", "disks")


def init_pid(layout: Layout, node: str) -> int | None:
    """PID (in our namespace) of the node's PID 1, or None when the node is down."""
    try:
        pid = int(layout.node_pidfile(node).read_text())
    except (FileNotFoundError, ValueError):
        return None
    if pid not in cgroup.procs(layout.node_cgroup(node)):
        return None  # the pidfile outlived the node (or the PID was reused by a stranger)
    return pid


def prepare(layout: Layout, node: str, corosync_conf: str, seed_cib: str, authkey: bytes) -> None:
    """Fresh private directories for one node; a restarted node keeps its CIB and logs."""
    d = layout.node_dir(node)
    hac = pwd.getpwnam("hacluster")
    for sub in PRIVATE_DIRS:
        (d / sub).mkdir(parents=True, exist_ok=True)
    for sub in ("var/lib/pacemaker", "var/log/pacemaker"):
        for p in [d / sub, *(d / sub).iterdir()]:
            os.chown(p, hac.pw_uid, hac.pw_gid)
    (d / "etc/corosync/corosync.conf").write_text(corosync_conf)
    key = d / "etc/corosync/authkey"
    key.write_bytes(authkey)
    key.chmod(0o400)
    if sshlab.is_lab(layout):
        sshlab.ensure_keys(layout)  # before the script that starts sshd with them
    (d / "services.sh").write_text(services_script(layout))
    if layout.topology.cluster.stack == "keepalived":
        vrrp.prepare(layout, node)
    else:  # a Pacemaker group without a shared disk keeps its data on each node
        for g in (g for g in layout.topology.groups if g.disk is None):
            (d / clusterconf.local_data_dir(g.name).lstrip("/")).mkdir(parents=True, exist_ok=True)
    cib = d / "var/lib/pacemaker/cib/cib.xml"
    if not cib.exists():
        cib.write_text(seed_cib)
        os.chown(cib, hac.pw_uid, hac.pw_gid)
        cib.chmod(0o600)


def services_script(layout: Layout) -> str:
    """What starts a node's services, run by its init at power-on and by `start_services` after a stop.

    It runs inside the node and returns once the services are started (they detach themselves).
    On an SSH lab, sshd comes first: the harness reaches the node as early as it can.
    """
    lab = sshlab.services_lines(layout)
    if layout.topology.cluster.stack == "keepalived":
        return lab + vrrp.services_lines() + STARTED_MARK
    return lab + ("corosync >/var/log/cluster/corosync.stdout 2>&1\n"
            "for i in $(seq 200); do corosync-cfgtool -s >/dev/null 2>&1 && break; sleep 0.05; done\n"
            f"{_pacemaker_env(layout)}setsid -f pacemakerd >>/var/log/pacemaker/pacemakerd.stdout 2>&1 </dev/null\n"
            ) + STARTED_MARK


STARTED_MARK = "mkdir -p /run/fallover-init && : > /run/fallover-init/booted\n"
"""The script's last line: when the node's services were last started, by its init or by the harness (a
stack younger than that may still be forking its daemons: faults/ops.py `booted`)."""


def _pacemaker_env(layout: Layout) -> str:
    """`env PCMK_…=… ` for the topology's cluster.pacemaker_env (validated: no shell metacharacters)."""
    env = layout.topology.cluster.pacemaker_env
    return f"env {' '.join(f'{k}={v}' for k, v in sorted(env.items()))} " if env else ""


@contextlib.contextmanager
def power_switch(layout: Layout, node: str) -> Iterator[None]:
    """One hand on a node's power switch at a time, across processes.

    The harness, the fence broker and the SSH lab's out-of-band command each power nodes on and
    off; a fence owed from a power-off can land while the harness powers the node back on. Two
    starts at once would each see the node off, and the second would kill the first's incarnation
    half-wired (seen in CI: the node came back without its management link).
    """
    path = layout.node_dir(node).with_name(f".{node}.power.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def start(layout: Layout, node: str) -> int:
    """Start one node (namespaces, wiring, then corosync and pacemaker); returns its init PID."""
    with power_switch(layout, node):
        return _start(layout, node)


def start_if_off(layout: Layout, node: str) -> bool:
    """Power a node on unless it runs (a fence's `on` or a second `on` is no error); True if it was started."""
    with power_switch(layout, node):
        if init_pid(layout, node) is not None:
            return False
        _start(layout, node)
        return True


def _start(layout: Layout, node: str) -> int:
    if init_pid(layout, node) is not None:
        raise TestbedError(f"{node} is already running; a second incarnation would split the cluster")
    d = layout.node_dir(node)
    (d / "go").unlink(missing_ok=True)
    group = cgroup.create(layout.node_cgroup(node))
    if cgroup.procs(group):
        cgroup.kill_all(group)  # stragglers of a previous incarnation
    for shared in layout.topology.disks:  # a fresh view of each disk for this incarnation
        disk.attach_node(layout, shared.name, node)
    proc = cgroup.spawn(group, ["unshare", "--net", "--mount", "--uts", "--ipc", "--pid", "--fork", "--kill-child",
                                "--mount-proc", "--propagation", "private", str(ASSETS / "node-init.sh"), node,
                                str(d), *filter(None, [under_tmp(layout.topology.source)])], log=d / "init.log")
    pid = _child_of(proc)
    layout.node_pidfile(node).write_text(str(pid))
    network.attach_node(layout, node, pid)
    (d / "go").touch()
    return pid


def under_tmp(topology_file: Path | None) -> str | None:
    """The tree under the host's /tmp that holds the topology file, which a node's private /tmp would hide.

    The user's application commands run in the topology file's directory and may reach files
    beside it (`../examples/userapp/start.sh`). A checkout under /tmp (CI clones often are)
    would vanish in the nodes, the commands would fail, and the cluster would fence node after
    node; so node-init.sh keeps this one tree visible at the same path. None when the file is
    elsewhere (or directly in /tmp: all of /tmp is not kept).
    """
    if topology_file is None:
        return None
    parts = Path(topology_file).resolve().parts
    return str(Path("/tmp", parts[2])) if len(parts) > 3 and parts[1] == "tmp" else None


def _child_of(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """unshare forks the node's PID 1 a moment after it starts; find that child."""
    deadline = time.monotonic() + timeout
    path = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    while time.monotonic() < deadline:
        try:
            kids = path.read_text().split()
        except FileNotFoundError:
            kids = []
        if kids:
            return int(kids[0])
        if proc.poll() is not None:
            raise TestbedError(f"unshare exited {proc.returncode} before starting the node")
        time.sleep(0.005)
    raise TestbedError("unshare did not fork the node's init within 10s")


def power_off(layout: Layout, node: str) -> None:
    """Hard power off: every task dies, the cables go dead, the namespaces (VIP, mount) vanish with them.

    Frozen first, then its disk views cut, then killed: from the freeze on, no task of the node
    returns to user space, so nothing is acknowledged after the cut; the cut drops what the node
    had written but not flushed, and what its ext4 still writes back while the dead namespace is
    torn down (diskviews.py). The cables are unplugged right after the last task is gone (kill_all
    waits for that), not before: a process still alive would log the network vanishing under it
    ("Network is unreachable"), which no powered-off machine does. Unplugged at all, because the
    kernel frees the dead namespace late.
    """
    with power_switch(layout, node):
        _power_off(layout, node)


def _power_off(layout: Layout, node: str) -> None:
    group = layout.node_cgroup(node)
    if cgroup.procs(group):
        cgroup.set_state(group, "FROZEN")  # takes effect at once for user space (a task in a syscall stops on return)
    failed = []
    for shared in layout.topology.disks:
        try:
            disk.cut_node(layout, shared.name, node)
        except TestbedError as e:  # the power still goes off; the caller hears why the cut did not happen
            failed.append(str(e))
    cgroup.kill_all(group)
    for shared in layout.topology.disks:
        disk.detach_node(layout, shared.name, node)
    try:
        network.detach_node(layout, node)  # a dying namespace must not answer ARP for the VIP meanwhile
    except Exception:  # noqa: BLE001 - no switch any more (a torn-down or half-built testbed): nothing to unplug
        pass
    layout.node_pidfile(node).unlink(missing_ok=True)
    if failed:
        raise TestbedError(f"{node} is powered off, but its unflushed writes were not dropped: {'; '.join(failed)}")


def install_agents(layout: Layout) -> None:
    """Agents pacemaker looks up by fixed paths (fence: /usr/sbin; OCF: resource.d/<provider>)."""
    from harness.testbed.layout import AGENTS

    targets = {
        ASSETS / "fence_fallover": Path("/usr/sbin/fence_fallover"),
        AGENTS / "fallover-app": Path("/usr/lib/ocf/resource.d/fallover/fallover-app"),
        ASSETS / "fallover-alert": layout.agents_dir / "fallover-alert",
        ASSETS / "fallover-keepalived": layout.agents_dir / "fallover-keepalived",  # keepalived's notify/check
        # nodes have a private /tmp: the repository may live there, so they get their own copy
        AGENTS / "kvapp.py": layout.agents_dir / "kvapp.py",
    }
    for src, dst in targets.items():
        if not dst.exists() or dst.read_bytes() != src.read_bytes():
            dst.parent.mkdir(parents=True, exist_ok=True)
            # per process: two testbeds (xdist workers) install the same agents at the same moment
            tmp = dst.with_name(f"{dst.name}.tmp.{os.getpid()}")
            shutil.copyfile(src, tmp)
            tmp.chmod(0o755)
            os.replace(tmp, dst)


SHARED_AGENTS = (Path("/usr/sbin/fence_fallover"), Path("/usr/lib/ocf/resource.d/fallover"))


def uninstall_shared_agents() -> list[str]:
    """Remove the system-wide agents once no testbed of any instance is left on this machine."""
    from harness.testbed.layout import STATE_ROOT

    if STATE_ROOT.exists() and any(STATE_ROOT.iterdir()):
        return []
    gone = []
    for p in SHARED_AGENTS:
        if p.is_dir():
            shutil.rmtree(p)
            gone.append(str(p))
        elif p.exists():
            p.unlink()
            gone.append(str(p))
    return gone


def seed_files(layout: Layout) -> tuple[str, str, bytes]:
    """corosync.conf, the seed CIB and the shared authkey (kept across restarts of the testbed)."""
    key_file = layout.state / "authkey"
    if not key_file.exists():
        key_file.write_bytes(os.urandom(256))
        key_file.chmod(0o400)
    return (clusterconf.corosync_conf(layout.topology), clusterconf.cib_xml(layout, clusterconf.empty_cib()),
            key_file.read_bytes())
