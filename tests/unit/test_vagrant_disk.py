"""The VM testbed's disk pull: the nft drop of the nodes' iSCSI paths in the lab, and its sequencing.

The drop is applied for real in a throwaway network namespace of our own (fo-vdisk-<pid>), where a TCP
connection to the portal's port is held back (and counted) while one to another port passes. The
provider's sequencing (drop, wait for the guests' devices, heal) runs against fakes.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from harness.errors import TestbedError, TopologyError
from harness.testbed import vagrantdisk
from harness.testbed.layout import Layout
from harness.testbed.nfqueue import in_netns
from harness.testbed.vagrantdisk import (
    PATH_FAIL_S,
    VmDisk,
    drop_table,
    path_drop_packets,
    path_drop_script,
    path_restore_script,
)
from harness.testbed.vagrantlab import Lab
from harness.topology import load_topology

VAGRANT = Path(__file__).resolve().parents[2] / "testbeds" / "vagrant.yaml"
NODES = ["node1", "node2", "node3"]


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return Lab(Layout(load_topology(VAGRANT), instance="", state_root=tmp_path))


def test_the_drop_names_every_node_the_portal_and_the_iscsi_port_both_ways(lab: Lab) -> None:
    script = path_drop_script(lab, "shared", NODES)
    addrs = "{ 10.81.9.11, 10.81.9.12, 10.81.9.13 }"
    assert str(lab.mgmt_address) == "10.81.9.1" and drop_table(lab, "shared") == "fo_disk_1"
    assert f"ip saddr {addrs} ip daddr 10.81.9.1 tcp dport 3260 counter drop" in script
    assert f"ip saddr 10.81.9.1 ip daddr {addrs} tcp sport 3260 counter drop" in script
    assert "hook input" in script and "hook output" in script
    # replaces an earlier drop atomically (one nft transaction), so a second pull cannot fail on "exists"
    assert script.startswith("add table inet fo_disk_1\ndelete table inet fo_disk_1\ntable inet fo_disk_1 {")
    assert path_restore_script(lab, "shared") == "add table inet fo_disk_1\ndelete table inet fo_disk_1\n"
    assert "10.81.9.12" not in path_drop_script(lab, "shared", ["node1"])


def test_the_initiator_timeouts_bound_the_pull_and_reach_the_guests(lab: Lab) -> None:
    from harness.testbed import vagrantconf

    env = vagrantconf.node_env(lab, "node1")
    assert (env["ISCSI_NOOP_INTERVAL"], env["ISCSI_NOOP_TIMEOUT"], env["ISCSI_REPLACEMENT"]) == ("5", "5", "10")
    assert PATH_FAIL_S == 20 and vagrantdisk.PATH_WAIT_S > PATH_FAIL_S
    script = (Path(__file__).resolve().parents[2] / "vagrant" / "provision.sh").read_text()
    for var in ("$ISCSI_REPLACEMENT", "$ISCSI_NOOP_INTERVAL", "$ISCSI_NOOP_TIMEOUT"):
        assert script.count(var) >= 2, f"provision.sh sets {var} in iscsid.conf and on every node record"


def test_counters_are_summed_from_nft_list() -> None:
    listing = """table inet fo_disk_1 {
	chain in {
		ip saddr { 10.81.9.11, 10.81.9.12 } ip daddr 10.81.9.1 tcp dport 3260 counter packets 7 bytes 420 drop
	}
	chain out {
		ip saddr 10.81.9.1 ip daddr { 10.81.9.11 } tcp sport 3260 counter packets 2 bytes 120 drop
	}
}"""
    assert path_drop_packets(listing) == 9
    assert path_drop_packets("table inet fo_disk_1 {\n}") == 0


def test_a_path_pull_with_two_disks_is_refused_naming_the_field(tmp_path: Path) -> None:
    raw = yaml.safe_load(VAGRANT.read_text())
    raw["disks"].append({"name": "second", "size_mb": 64})
    p = tmp_path / "t.yaml"
    p.write_text(yaml.safe_dump(raw))
    with pytest.raises(TopologyError) as e:
        load_topology(p)
    assert "vagrant.disk_pull: 'path' drops a node's whole iSCSI path" in str(e.value)
    raw["vagrant"]["disk_pull"] = "device"
    p.write_text(yaml.safe_dump(raw))
    assert load_topology(p).vagrant.disk_pull == "device"  # type: ignore[union-attr]


# -- the drop on a real kernel ----------------------------------------------------------------------

NS = f"fo-vdisk-{os.getpid()}"


def _ip(*args: str) -> None:
    subprocess.run(["ip", "-n", NS, *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("nft", "nsenter", "ip")):
        pytest.skip("needs root, nft, nsenter and ip")
    subprocess.run(["ip", "netns", "add", NS], check=True, capture_output=True, timeout=30)
    try:
        _ip("link", "set", "lo", "up")
        _ip("addr", "add", "10.81.9.1/32", "dev", "lo")    # the portal (the lab's address)
        _ip("addr", "add", "10.81.9.11/32", "dev", "lo")   # node1's management address (no dummy module here)
        yield NS
    finally:
        subprocess.run(["ip", "netns", "del", NS], check=False, capture_output=True, timeout=30)


def _connects(port: int) -> bool:
    """From node1's address to the portal: True when a listener there accepts within 1 s."""
    def attempt() -> bool:
        with socket.socket() as srv, socket.socket() as cli:
            srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            srv.bind(("10.81.9.1", port))
            srv.listen()
            cli.bind(("10.81.9.11", 0))
            cli.settimeout(1.0)
            try:
                cli.connect(("10.81.9.1", port))
                return True
            except OSError:
                return False
    return in_netns(f"/run/netns/{NS}", attempt)


def _nft(ns: str, *args: str, script: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", f"--net=/run/netns/{ns}", "--", "nft", *args], check=False, input=script,
                          capture_output=True, text=True, timeout=30)


def test_the_drop_holds_back_the_iscsi_port_only_and_the_restore_is_idempotent(lab: Lab, netns: str) -> None:
    assert _connects(3260)
    for _ in range(2):  # a second pull replaces the first
        r = _nft(netns, "-f", "-", script=path_drop_script(lab, "shared", NODES))
        assert r.returncode == 0, r.stderr
    assert not _connects(3260), "the path is dropped"
    assert _connects(22), "SSH on the same network passes"
    listing = _nft(netns, "list", "table", "inet", "fo_disk_1")
    assert listing.returncode == 0 and path_drop_packets(listing.stdout) >= 1
    for _ in range(2):
        assert _nft(netns, "-f", "-", script=path_restore_script(lab, "shared")).returncode == 0
    assert _nft(netns, "list", "table", "inet", "fo_disk_1").returncode != 0
    assert _connects(3260), "the path is back"


# -- the provider's sequencing, on fakes --------------------------------------------------------------

class FakeLab(Lab):
    def __init__(self, lab: Lab) -> None:
        self.__dict__.update(lab.__dict__)
        self.calls: list[tuple[list[str], str | None]] = []
        self.table: str | None = None

    def run(self, argv, *, timeout=60, check=True, input=None, env=None):  # type: ignore[no-untyped-def]
        self.calls.append((argv, input))
        if argv[:2] == ["nft", "-f"]:
            self.table = "in" if "counter drop" in (input or "") else None
            return subprocess.CompletedProcess(argv, 0, "", "")
        if argv[:2] == ["nft", "list"]:
            ok = self.table is not None
            return subprocess.CompletedProcess(argv, 0 if ok else 1, "counter packets 3 bytes 1 drop" if ok else "", "")
        raise AssertionError(argv)


class DeviceSide:
    """The SSH provider's device pull (the base the mixin falls back to), recorded."""

    def __init__(self) -> None:
        self.device_calls: list[tuple[str, str]] = []

    def disk_mode(self, disk: str) -> str | None:
        return "ok"

    def set_disk_mode(self, disk: str, mode: str) -> None:
        self.device_calls.append((disk, mode))


class Fake(VmDisk, DeviceSide):
    def __init__(self, lab: FakeLab, states: list[dict[str, str]], lab_up: bool = True) -> None:
        DeviceSide.__init__(self)
        self.labx, self.topology = lab, lab.topology
        self.states, self.up = states, lab_up

    def _lab_up(self) -> bool:
        return self.up

    def running(self, node: str) -> bool:
        return node != "node3"  # powered off: not asked

    def device_states(self, disk: str) -> dict[str, str]:
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]


@pytest.fixture(autouse=True)
def _fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vagrantdisk, "PATH_POLL_S", 0.01)


def test_a_pull_drops_the_path_then_waits_until_every_running_guest_fails_io(lab: Lab) -> None:
    fl = FakeLab(lab)
    tb = Fake(fl, [{"node1": "running", "node2": "running"}, {"node1": "blocked", "node2": "running"},
                   {"node1": "transport-offline", "node2": "blocked"},
                   {"node1": "transport-offline", "node2": "transport-offline"}])
    assert tb.disk_mode("shared") == "ok"
    tb.set_disk_mode("shared", "eio")
    assert fl.calls[-1] == (["nft", "-f", "-"], path_drop_script(fl, "shared", NODES))
    assert tb.states == [{"node1": "transport-offline", "node2": "transport-offline"}], "waited for every node"
    assert tb.disk_mode("shared") == "eio" and tb.path_dropped("shared") == 3
    assert tb.device_calls == [], "no guest touched"
    tb.states = [{"node1": "transport-offline", "node2": "blocked"}, {"node1": "running", "node2": ""}]
    tb.set_disk_mode("shared", "ok")
    assert fl.calls[-1] == (["nft", "-f", "-"], path_restore_script(fl, "shared"))
    assert tb.disk_mode("shared") == "ok" and tb.path_dropped("shared") is None


def test_a_pull_the_guests_never_notice_is_an_error_naming_their_states(lab: Lab,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vagrantdisk, "PATH_WAIT_S", 0.05)
    tb = Fake(FakeLab(lab), [{"node1": "running", "node2": "blocked"}])
    with pytest.raises(TestbedError) as e:
        tb.set_disk_mode("shared", "eio")
    assert "disk shared: timed out" in str(e.value) and "'node1': 'running'" in str(e.value)


def test_a_heal_after_the_lab_is_gone_has_nothing_to_remove(lab: Lab) -> None:
    fl = FakeLab(lab)
    tb = Fake(fl, [{}], lab_up=False)
    tb.set_disk_mode("shared", "ok")
    assert fl.calls == [] and tb.path_dropped("shared") is None


def test_the_device_variant_is_the_guest_side_pull(lab: Lab) -> None:
    lab.settings = lab.settings.model_copy(update={"disk_pull": "device"})
    fl = FakeLab(lab)
    tb = Fake(fl, [{}])
    tb.set_disk_mode("shared", "eio")
    tb.set_disk_mode("shared", "ok")
    assert tb.device_calls == [("shared", "eio"), ("shared", "ok")] and fl.calls == []


def test_a_path_pull_is_judged_against_the_initiators_timeouts_not_the_plain_sla(tmp_path: Path) -> None:
    from harness.faults import Target
    from harness.plan import Case, expect

    topo = load_topology(VAGRANT)
    e = expect(topo, Case("disk_pull", Target(disk="shared")), {"app": "node1"})[0]
    assert e.outcome == "outage"
    assert e.limits == {"max_detection_s": 10 + PATH_FAIL_S, "max_notification_s": 15 + PATH_FAIL_S}
    raw = yaml.safe_load(VAGRANT.read_text())
    raw["vagrant"]["disk_pull"] = "device"  # instant EIO: the plain SLA
    p = tmp_path / "t.yaml"
    p.write_text(yaml.safe_dump(raw))
    assert expect(load_topology(p), Case("disk_pull", Target(disk="shared")), {"app": "node1"})[0].limits == {}
