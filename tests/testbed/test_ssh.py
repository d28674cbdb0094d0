"""The SSH provider, live: the SSH lab comes up and is driven over SSH only; bad inventories are refused.

The lab (testbeds/local-ssh.yaml) is the embedded cluster with sshd in each node; these tests use
instance `s` (their own namespaces), so they never touch a session testbed. The bad-inventory
cases run the CLI as a user would and need no lab: a throwaway sshd on 127.0.0.1 stands in.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from harness.faults import Nemesis
from harness.status import service_answer
from harness.testbed.ssh import SshTestbed
from harness.topology import load_topology
from harness.transport.ssh import SshTransport
from harness.wait import wait_until

pytestmark = pytest.mark.testbed

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "testbeds" / "local-ssh.yaml"
INSTANCE = "s"


def fallover(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FALLOVER_INSTANCE": INSTANCE}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          timeout=120, env=env, cwd=REPO)


# -- bad inventories: one line naming the host, exit 2, nothing touched --------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, timeout=30)
    return path


@pytest.fixture
def loopback_sshd(tmp_path: Path) -> Iterator[tuple[int, Path, Path]]:
    """sshd on 127.0.0.1 that accepts one key: (port, known_hosts, the accepted key)."""
    port, host_key, good = free_port(), keygen(tmp_path / "host"), keygen(tmp_path / "good")
    (tmp_path / "authorized_keys").write_text((tmp_path / "good.pub").read_text())
    (tmp_path / "known_hosts").write_text(f"[127.0.0.1]:{port} " + " ".join(
        (tmp_path / "host.pub").read_text().split()[:2]) + "\n")
    made_run_sshd = not Path("/run/sshd").exists()
    Path("/run/sshd").mkdir(exist_ok=True)
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", "/dev/null", "-o", f"HostKey={host_key}",
                             "-o", f"AuthorizedKeysFile={tmp_path / 'authorized_keys'}", "-o", "StrictModes=no",
                             "-o", "UsePAM=no", "-o", "ListenAddress=127.0.0.1", "-o", f"Port={port}",
                             "-o", f"PidFile={tmp_path / 'sshd.pid'}"], stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, timeout=10, what="loopback sshd")
        yield port, tmp_path / "known_hosts", good
    finally:
        proc.kill()
        proc.wait()
        if made_run_sshd:
            Path("/run/sshd").rmdir()


def inventory(tmp_path: Path, hosts: dict, known_hosts: Path | None = None) -> Path:  # type: ignore[type-arg]
    raw = yaml.safe_load(LAB.read_text())
    raw["name"] = "badinv"
    raw["groups"][0]["mount"] = "/srv/app"
    raw["ssh"] = {"hosts": hosts, "connect_timeout_s": 2,
                  **({"known_hosts": str(known_hosts)} if known_hosts else {})}
    p = tmp_path / "inventory.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def assert_refused(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()  # progress lines (stderr is no terminal here), then the error
    errors = [ln for ln in lines if ln.startswith("fallover")]
    assert errors == lines[-1:] and all(n in errors[0] for n in needles), r.stderr
    assert "BEGIN" not in r.stderr and "PRIVATE" not in r.stderr


def test_unreachable_host_is_one_line_and_exit_2(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    hosts = {n: {"host": "127.0.0.1", "port": port} for n in ("node1", "node2", "node3")}
    r = fallover("up", "--testbed", str(inventory(tmp_path, hosts)))
    assert_refused(r, "ssh.hosts.node1", f"root@127.0.0.1:{port}", "Connection refused")
    assert not Path("/var/lib/fallover/ssh-badinv-s").exists()  # nothing touched, not even our state


def test_wrong_key_is_one_line_and_exit_2(tmp_path: Path, loopback_sshd: tuple[int, Path, Path]) -> None:
    port, known, _good = loopback_sshd
    wrong = keygen(tmp_path / "wrong")
    hosts = {n: {"host": "127.0.0.1", "port": port, "key_file": str(wrong)} for n in ("node1", "node2", "node3")}
    r = fallover("up", "--testbed", str(inventory(tmp_path, hosts, known)))
    assert_refused(r, "ssh.hosts.node1", f"127.0.0.1:{port}", "authentication failed")


def test_host_not_in_the_inventory_is_one_line_and_exit_2(tmp_path: Path) -> None:
    hosts = {n: {"host": "127.0.0.1"} for n in ("node1", "node2")}
    r = fallover("up", "--testbed", str(inventory(tmp_path, hosts)))
    assert_refused(r, "inventory.yaml", "ssh.hosts", "node3")
    r = fallover("exec", "--testbed", str(LAB), "node9", "--", "true")
    assert_refused(r, "node9")


def test_unknown_host_key_is_refused_when_checking_is_on(tmp_path: Path, loopback_sshd: tuple[int, Path, Path]) -> None:
    port, _known, good = loopback_sshd
    (tmp_path / "empty_known_hosts").write_text("")
    hosts = {n: {"host": "127.0.0.1", "port": port, "key_file": str(good)} for n in ("node1", "node2", "node3")}
    r = fallover("up", "--testbed", str(inventory(tmp_path, hosts, tmp_path / "empty_known_hosts")))
    assert_refused(r, "ssh.hosts.node1", "not in known_hosts")


# -- the lab ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab() -> Iterator[SshTestbed]:
    tb = SshTestbed(load_topology(LAB), instance=INSTANCE)
    tb.down()
    try:
        tb.up()
        yield tb
    finally:
        tb.down()
        assert tb.leftovers() == []


def test_commands_go_over_ssh_from_the_management_network(lab: SshTestbed) -> None:
    r = lab.node("node2").run(["sh", "-c", "hostname; echo $SSH_CONNECTION"], timeout=10)
    name, conn = r.stdout.splitlines()
    assert name == "node2" and conn.split()[0] == "10.78.9.1" and conn.split()[2] == "10.78.9.12"
    assert all(not a.startswith("10.78.") for a in subprocess.run(["hostname", "-I"], capture_output=True,
                                                                 text=True).stdout.split())  # no route here
    before = SshTransport.connections_opened
    for _ in range(5):
        lab.node("node2").run(["true"], timeout=10)
    assert SshTransport.connections_opened == before  # one connection, reused


def test_power_off_under_load_and_back(lab: SshTestbed) -> None:
    g = lab.topology.groups[0]
    url = f"http://{g.service_ip}:{g.application.port}/kv"
    writer = subprocess.Popen(lab.client().wrap(["sh", "-c", f"i=0; while :; do curl -sf -m 1 -X PUT --data v$i "  # type: ignore[attr-defined]
                                                 f"{url}/ssh-$i >/dev/null && echo $i; i=$((i+1)); sleep 0.05; done"]),
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    nemesis = Nemesis(lab)
    try:
        time.sleep(2)
        opened = SshTransport.connections_opened
        inj = nemesis.start("node_power_off", node="node1")
        assert not lab.running("node1")
        wait_until(lambda: service_answer(lab, g.name) == "node2", timeout=30, what="app answering from node2")
        time.sleep(1)
        nemesis.heal(inj)
        lab.up()
        assert lab.running("node1") and service_answer(lab, g.name) == "node1"
        assert SshTransport.connections_opened - opened <= 2  # node1 again (and at most one more)
    finally:
        os.killpg(writer.pid, 9)
    acked = writer.communicate()[0].split()
    assert len(acked) > 20
    for i in acked[::10]:
        r = lab.client().run(["curl", "-sf", "-m", "5", f"{url}/ssh-{i}"], timeout=10)
        assert r.stdout == f"v{i}", f"acknowledged write ssh-{i} lost"


def test_a_nodes_alert_lines_are_mirrored_over_ssh(lab: SshTestbed, tmp_path: Path) -> None:
    """What a real inventory's `ssh.alerts_log` does, on the lab: the alert log read through node2's
    connection (the lab's agent writes it on the harness's side, which the nodes see), new lines only."""
    from harness.notifications import read_notifications
    from harness.testbed.base import LogFile
    from harness.testbed.sshevents import EventMirror

    log = str(lab.event_logs()["notifications"])
    mirror = EventMirror(lab.log_size, lab.read_log, [LogFile("node2", log, required=False)],
                         tmp_path / "notifications.log", tmp_path / "fences.jsonl")
    mirror.start()  # from the end: nothing the lab wrote before is copied
    try:
        assert not (tmp_path / "notifications.log").exists()
        lab.node("node2").run(["crm_resource", "--refresh"], timeout=30)  # re-probes every resource: alerts
        wait_until(lambda: (tmp_path / "notifications.log").exists(), timeout=30, what="a mirrored alert line")
    finally:
        mirror.stop()
    got = read_notifications(tmp_path / "notifications.log")
    assert got and all(e.data.get("kind") for e in got) and mirror.errors == 0
    assert not (tmp_path / "fences.jsonl").exists()  # no fencing happened, none invented


def test_mounts_are_watched_on_the_nodes_and_the_watchers_end_with_the_connection(lab: SshTestbed) -> None:
    """One watcher per node reports a mount when it happens (no command per look); closed, none is left."""
    def watchers(node: str) -> list[str]:  # each lab node has a /proc of its own
        r = lab.node(node).run(["ps", "-eo", "comm=,args="], timeout=10)
        return [ln for ln in r.stdout.splitlines() if ln.startswith("python3") and "self/mounts" in ln]

    def reporting() -> bool:
        lab.mounts()  # a look starts the watchers that are not running yet
        found = [lab.mount_watches._watches.get(n) for n in lab.topology.node_names]
        return all(w is not None and w.targets() is not None for w in found)

    g = lab.topology.groups[0]
    wait_until(reporting, timeout=30, what="every node's mount watcher reporting")
    assert lab.mounts() == {g.disk: [g.nodes[0]]}
    assert all(len(watchers(n)) == 1 for n in lab.topology.node_names)
    node2 = lab.mount_watches._watches["node2"]
    lab.node("node2").run(["sh", "-c", "mkdir -p /run/fo-watch && mount -t tmpfs none /run/fo-watch"], timeout=10)
    try:
        wait_until(lambda: "/run/fo-watch" in (node2.targets() or ()), timeout=10, what="the mount reported")
    finally:
        lab.node("node2").run(["sh", "-c", "umount /run/fo-watch; rmdir /run/fo-watch"], timeout=10, check=False)
    wait_until(lambda: "/run/fo-watch" not in (node2.targets() or {"/run/fo-watch"}), timeout=10,
               what="the unmount reported")
    lab.close_mount_watches()
    wait_until(lambda: not any(watchers(n) for n in lab.topology.node_names), timeout=15,
               what="no mount watcher left on the nodes")
