"""The box cache key and the notification collector of the VM testbed."""

from __future__ import annotations

import json
from pathlib import Path

from harness.testbed import vagrantbox, vagrantevents


def test_the_box_is_rebuilt_only_when_its_inputs_change() -> None:
    a = vagrantbox.inputs_digest("ssh-ed25519 AAA k", "http://deb.debian.org/debian")
    assert a == vagrantbox.inputs_digest("ssh-ed25519 AAA k", "http://deb.debian.org/debian")
    assert a != vagrantbox.inputs_digest("ssh-ed25519 BBB k", "http://deb.debian.org/debian")
    assert a != vagrantbox.inputs_digest("ssh-ed25519 AAA k", "http://mirror.example/debian")


def test_the_build_script_has_the_clone_hygiene_and_the_packages_the_guests_need() -> None:
    s = vagrantbox.build_script(Path("/r"), Path("/o"), "ssh-ed25519 AAA k", "http://m/debian")
    for pkg in ("psmisc", "open-iscsi", "fence-virt", "pacemaker", "nftables", "resource-agents", "iputils-arping",
                "bc"):
        assert pkg in s
    assert ": > /r/etc/machine-id" in s and "rm -f /r/etc/ssh/ssh_host_*" in s
    assert "rm -f /r/etc/iscsi/initiatorname.iscsi" in s and ": > /r/etc/resolv.conf" in s
    assert "UseDNS no" in s and "mke2fs" in s and "qemu-img convert -O qcow2" in s
    # boot time on a TCG guest (measured): no 3072-bit RSA host key (20 s), no e2scrub_reap (24 s)
    assert "ssh-keygen -A" not in s and "for t in ed25519 ecdsa" in s and "HostKey /etc/ssh/ssh_host_ed25519_key" in s
    assert "e2scrub_reap.service" in s.split("systemctl mask")[1].splitlines()[0]


def test_collector_appends_events_and_fencing_to_the_fence_log(tmp_path: Path) -> None:
    n, f = tmp_path / "n.log", tmp_path / "f.jsonl"
    lines = [{"kind": "node", "node": "node1", "desc": "lost", "wall": 1.0},
             {"kind": "fencing", "node": "node1", "task": "off", "rc": "0", "wall": 2.0}]
    data = b"".join(json.dumps(x).encode() + b"\n" for x in lines) + b"garbage\n"
    assert vagrantevents.accept(data, n, f, now=9.0) == 2
    got = [json.loads(x) for x in n.read_text().splitlines()]
    assert [(e["kind"], e["wall"], e["guest_wall"]) for e in got] == [("node", 9.0, 1.0), ("fencing", 9.0, 2.0)]
    fence = json.loads(f.read_text())  # the harness's clock: a TCG guest's drifts
    assert fence == {"wall": 9.0, "done": 9.0, "action": "off", "node": "node1", "outcome": "ok"}
