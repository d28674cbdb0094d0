"""The `ssh:` inventory: a bad one is one line naming file and field; the lab file loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.errors import TopologyError
from harness.topology import load_topology

LAB = Path(__file__).resolve().parents[2] / "testbeds" / "local-ssh.yaml"


def real_inventory() -> dict:  # type: ignore[type-arg]
    raw = yaml.safe_load(LAB.read_text())
    raw["ssh"] = {"hosts": {n: {"host": f"db{i}.example.net", "user": "ops", "sudo": True,
                                "key_file": "/home/ops/.ssh/id_ed25519", "interfaces": {"service": "eth0"}}
                            for i, n in enumerate(["node1", "node2", "node3"], 1)},
                  "oob": {"power_off": "ipmitool -H {node}-ipmi chassis power off",
                          "power_on": "ipmitool -H {node}-ipmi chassis power on",
                          "power_status": "ipmitool -H {node}-ipmi chassis power status"}}
    raw["groups"][0]["mount"] = "/srv/app"
    return raw


def load(tmp_path: Path, raw: dict) -> object:  # type: ignore[type-arg]
    p = tmp_path / "inv.yaml"
    p.write_text(yaml.safe_dump(raw))
    return load_topology(p)


def test_the_lab_and_a_real_inventory_load(tmp_path: Path) -> None:
    lab = load_topology(LAB)
    assert lab.provider == "ssh" and lab.ssh is not None and lab.ssh.lab == "embedded"
    assert str(lab.ssh.harness_address) == "10.78.9.1"
    real = load(tmp_path, real_inventory())
    assert real.ssh.strict_host_key_checking is True  # type: ignore[attr-defined]  # on unless turned off
    assert real.ssh.hosts["node2"].interfaces == {"service": "eth0"}  # type: ignore[attr-defined]


@pytest.mark.parametrize("mutate, field", [
    (lambda r: r["ssh"]["hosts"].pop("node3"), "ssh.hosts: node 'node3' has no host"),
    (lambda r: r["ssh"]["hosts"].update(node9={"host": "x"}), "ssh.hosts.node9: 'node9' is not a node"),
    (lambda r: r["ssh"]["hosts"]["node1"].update(port=0), "ssh.hosts.node1.port"),
    (lambda r: r["ssh"]["hosts"]["node1"].update(password="hunter2"), "ssh.hosts.node1.password: unknown field"),
    (lambda r: r["ssh"]["hosts"]["node1"]["interfaces"].update(nosuch="eth9"), "ssh.hosts.node1.interfaces"),
    (lambda r: r["ssh"]["oob"].pop("power_status"), "ssh.oob: power_status: required with power_off"),
    (lambda r: r.pop("ssh"), "ssh: required with provider ssh"),
    (lambda r: r.update(provider="local"), "provider: an ssh inventory needs provider: ssh"),
    (lambda r: r["ssh"].update(lab_subnet="10.78.9.0/24"), "ssh.lab_subnet: only for lab: embedded"),
    (lambda r: r["cluster"].update(corosync={"totem": {"consensus": 3000}}), "cluster.corosync: fallover does not"),
    (lambda r: r["cluster"].update(recheck_s=2), "cluster.recheck_s: fallover does not write the CIB"),
])
def test_bad_inventory_is_one_line_naming_file_and_field(tmp_path: Path, mutate, field: str) -> None:  # type: ignore[no-untyped-def]
    raw = real_inventory()
    mutate(raw)
    with pytest.raises(TopologyError) as e:
        load(tmp_path, raw)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(tmp_path / "inv.yaml") + ": ") and field in msg, msg
    assert "hunter2" not in msg  # a value the user typed as a secret is never echoed


@pytest.mark.parametrize("mutate, field", [
    (lambda s: s.pop("lab_subnet"), "ssh.lab_subnet: required with lab: embedded"),
    (lambda s: s["hosts"]["node1"].update(host="10.99.0.11"), "ssh.hosts.node1.host"),
    (lambda s: s["hosts"]["node1"].update(host="10.78.9.1"), "ssh.hosts.node1.host"),
    (lambda s: s.update(lab_subnet="10.78.1.0/24"), "ssh.lab_subnet: overlaps"),
])
def test_bad_lab(tmp_path: Path, mutate, field: str) -> None:  # type: ignore[no-untyped-def]
    raw = yaml.safe_load(LAB.read_text())
    mutate(raw["ssh"])
    with pytest.raises(TopologyError, match=field.replace(".", r"\.")):
        load(tmp_path, raw)


@pytest.mark.parametrize("oob, field", [
    ({"sysrq": "reboot", "power_off": "x", "power_on": "y", "power_status": "z"}, "ssh.oob: sysrq: not with power_off"),
    ({"sysrq": "off"}, "ssh.oob: power_on: required with sysrq: off"),
    ({"sysrq": "off", "power_on": "y"}, "ssh.oob: power_status: required with sysrq: off"),
    ({"sysrq": "reboot", "power_on": "y"}, "ssh.oob: power_on: not with sysrq: reboot"),
    ({"sysrq": "halt"}, "ssh.oob.sysrq"),
])
def test_sysrq_power_comes_with_the_right_commands(tmp_path: Path, oob: dict, field: str) -> None:  # type: ignore[type-arg]
    raw = real_inventory()
    raw["ssh"]["oob"] = oob
    with pytest.raises(TopologyError, match=field.replace(".", r"\.")):
        load(tmp_path, raw)


def test_sysrq_is_refused_on_the_embedded_lab(tmp_path: Path) -> None:
    """The lab's nodes share this machine's kernel: a sysrq there would cut the harness host's power."""
    raw = yaml.safe_load(LAB.read_text())
    raw["ssh"]["oob"] = {"sysrq": "reboot"}
    with pytest.raises(TopologyError, match=r"ssh\.oob\.sysrq: not with lab: embedded"):
        load(tmp_path, raw)
    for ok in ({"sysrq": "reboot"}, {"sysrq": "off", "power_on": "y", "power_status": "z"}):
        real = real_inventory()
        real["ssh"]["oob"] = ok
        assert load(tmp_path, real).ssh.oob.sysrq == ok["sysrq"]  # type: ignore[attr-defined]
