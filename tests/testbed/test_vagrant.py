"""The VM testbed live: 3 VMs up, the active node powered off under load (judged by the checkers), down
leaves nothing. Minutes of CPU on a small machine: it runs only when asked for, with FALLOVER_VM=1, and
each test is bounded (pytest-timeout; the fixture's `down` runs on a timeout too).

    FALLOVER_VM=1 .venv/bin/pytest tests/testbed/test_vagrant.py -v -s
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.faults import Target
from harness.plan import Case
from harness.runner import Runner
from harness.status import service_answer
from harness.testbed.vagrant import VagrantTestbed
from harness.topology import load_topology

VAGRANT = Path(__file__).resolve().parents[2] / "testbeds" / "vagrant.yaml"

pytestmark = pytest.mark.testbed
vm = pytest.mark.skipif(os.environ.get("FALLOVER_VM") != "1",
                        reason="boots 3 VMs (minutes of CPU): set FALLOVER_VM=1 to run it (README: Testbed: Vagrant)")
UP_BOUND_S = 1800
"""The first VM test's bound, `up` from nothing (box cached) included: see the README's VM numbers."""
CASE_BOUND_S = 900
"""One fault case on the VMs: reset, record, inject, ride out, heal, recover: the VM boots and the group fails
back (measured on a quiet host: the case took 4-5 min; a failback alone took ≈ 290 s at a host load of 12)."""
ANSWER_S = 10.0
"""How long the client waits for the service's answer (an emulated guest under load: seconds, not the 1 s default)."""
lab_tools = pytest.mark.skipif(any(shutil.which(t) is None for t in ("libvirtd", "tgtd", "fence_virtd", "vagrant")),
                               reason="the VM packages are not installed (`make vm-setup`)")


@lab_tools
def test_the_lab_alone_comes_and_goes_without_a_trace_even_after_a_crash() -> None:
    """No VM: the namespaces, libvirtd, virtlogd, tgtd with its LUN, fence_virtd and the collector; then
    libvirtd and tgtd die as in a crash, and `down` still removes every piece."""
    tb = VagrantTestbed(load_topology(VAGRANT), instance="labtest")
    tb.down()
    try:
        tb._build_lab(lambda _: None)
        lab = tb.labx
        assert tb._lab_alive()
        assert "fo-vagrant-labtest-mgmt" in lab.virsh("net-list", "--name").stdout
        assert lab.iqn("shared") in lab.run(["tgtadm", "--lld", "iscsi", "--op", "show", "--mode", "target"]).stdout
        assert "forward" not in lab.virsh("net-dumpxml", lab.mgmt_network).stdout
        host_addrs = subprocess.run(["ip", "-br", "addr"], capture_output=True, text=True).stdout
        assert "10.81." not in host_addrs, "no lab address in the host's namespace"
        for d in ("libvirtd", "tgtd"):
            pid = lab.pid(d)
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
        assert tb.leftovers(), "a crashed lab is seen"
    finally:
        tb.down()
    assert tb.leftovers() == []


@pytest.fixture(scope="module")
def vms() -> Iterator[VagrantTestbed]:
    """The testbed of FALLOVER_INSTANCE (one VM lab at a time on a small machine): up, and down at the end
    whatever happened, checking that nothing is left (namespaces, domains, volumes, daemons, state)."""
    tb = VagrantTestbed(load_topology(VAGRANT), instance=os.environ.get("FALLOVER_INSTANCE", ""))
    t0 = time.monotonic()
    try:
        tb.up(progress=lambda m: print(f"[{time.monotonic() - t0:6.1f}s] {m}", flush=True))
        print(f"up: {time.monotonic() - t0:.0f} s ({(tb.state / 'up.json').read_text()})", flush=True)
        yield tb
    finally:
        t1 = time.monotonic()
        tb.down()
        print(f"down: {time.monotonic() - t1:.1f} s", flush=True)
        left = tb.leftovers()
        assert left == [], f"left behind: {left}"
        assert not any(p.startswith(tb.labx.netns) or p == tb.labx.client_ns
                       for p in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split())


@vm
@lab_tools
@pytest.mark.timeout(UP_BOUND_S)
def test_three_vms_with_two_bridged_nics_and_the_shared_disk(vms: VagrantTestbed) -> None:
    lab = vms.labx
    for n in vms.topology.node_names:
        assert vms.running(n)
        xml = lab.virsh("dumpxml", lab.domain(n)).stdout
        assert xml.count("<interface type='bridge'>") == 2 and "br-service" in xml and "br-standby" in xml
        r = vms.node(n).run(["sh", "-c", "hostname; iscsiadm -m session | wc -l"], timeout=30)
        assert r.stdout.split() == [n, "1"]
    state = vms.node("node1").run(["crm_attribute", "-G", "-n", "stonith-enabled", "-q"], timeout=30).stdout
    assert state.strip() == "true"
    assert service_answer(vms, vms.topology.groups[0].name, timeout=ANSWER_S) == "node1"


@vm
@lab_tools
@pytest.mark.timeout(CASE_BOUND_S)
def test_power_off_of_the_active_node_under_load(vms: VagrantTestbed, tmp_path: Path) -> None:
    """The active node's VM destroyed (virsh) under locust load: fenced, the group on the next node, every
    acknowledged write read back, then the VM started again and the cluster whole (cascading: back home)."""
    active = service_answer(vms, vms.topology.groups[0].name, timeout=ANSWER_S)
    assert active is not None, "the service answers before the fault"
    result = Runner(vms, tmp_path, users=vms.pace.load_users).run(Case("node_power_off", Target(node=active)))
    print(result.report(), flush=True)
    assert {"detection", "fallover", "outage", "lost_writes"} <= set(result.verdicts), sorted(result.verdicts)
    assert result.passed, result.report()
    assert vms.running(active), "reintegration starts the powered-off VM again"
