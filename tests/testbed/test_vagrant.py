"""The VM testbed live: 3 VMs up, the active node powered off under load (judged by the checkers), down
leaves nothing. Minutes of CPU on a small machine: it runs only when asked for, with FALLOVER_VM=1.

    FALLOVER_VM=1 .venv/bin/pytest tests/testbed/test_vagrant.py -v
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
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
    tb = VagrantTestbed(load_topology(VAGRANT), instance=os.environ.get("FALLOVER_INSTANCE", ""))
    try:
        tb.up()
        yield tb
    finally:
        tb.down()
        left = tb.leftovers()
        assert left == [], f"left behind: {left}"
        assert not any(p.startswith(tb.labx.netns) or p == tb.labx.client_ns
                       for p in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split())


@vm
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
    assert service_answer(vms, vms.topology.groups[0].name) == "node1"


@vm
def test_power_off_of_the_active_node_under_load(vms: VagrantTestbed, tmp_path: Path) -> None:
    result = Runner(vms, tmp_path).run(Case("node_power_off", Target(node="node1")))
    assert result.passed, result.report()
    assert vms.running("node1"), "reintegration starts the powered-off VM again"
