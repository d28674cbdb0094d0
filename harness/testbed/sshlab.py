"""The SSH lab (`ssh.lab: embedded`): the embedded cluster with sshd in each node, for the SSH provider.

Everything lab-specific lives here, so `SshTestbed` stays the code path of a real inventory:
the keys (a host key and a client key pair generated per lab build, and the known_hosts that
pins the host key), sshd's configuration and its line in each node's services script, and the
socket factory that opens each TCP connection from inside the lab's switch namespace (the
harness's root namespace never gets a route to the lab: workplace rule).
"""

from __future__ import annotations

import ipaddress
import shlex
import socket
import subprocess
from pathlib import Path

from harness.inventory import MGMT
from harness.testbed.layout import Layout


def is_lab(layout: Layout) -> bool:
    inv = layout.topology.ssh
    return inv is not None and inv.lab == "embedded"


def ssh_dir(layout: Layout) -> Path:
    return layout.state / "ssh"


def client_key(layout: Layout) -> Path:
    return ssh_dir(layout) / "id_ed25519"


def known_hosts(layout: Layout) -> Path:
    return ssh_dir(layout) / "known_hosts"


def mgmt_plan(layout: Layout) -> tuple[str, int, dict[str, str]] | None:
    """(the harness's address, prefix length, node → address) on the lab's management network."""
    inv = layout.topology.ssh
    if inv is None or inv.lab != "embedded" or inv.lab_subnet is None:
        return None
    return str(inv.harness_address), inv.lab_subnet.prefixlen, {n: h.host for n, h in inv.hosts.items()}


def ensure_keys(layout: Layout) -> None:
    """Generate the lab's host key and client key once per build; write known_hosts and sshd_config."""
    d = ssh_dir(layout)
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    for key in ("host_ed25519", "id_ed25519"):
        if not (d / key).exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"fallover-{layout.prefix}",
                            "-f", str(d / key)], check=True, capture_output=True, timeout=30)
    (d / "authorized_keys").write_text((d / "id_ed25519.pub").read_text())
    host_pub = " ".join((d / "host_ed25519.pub").read_text().split()[:2])
    inv = layout.topology.ssh
    assert inv is not None
    lines = [f"{h.host if h.port == 22 else f'[{h.host}]:{h.port}'} {host_pub}" for h in inv.hosts.values()]
    known_hosts(layout).write_text("\n".join(lines) + "\n")
    (d / "sshd_config").write_text(
        f"HostKey {d / 'host_ed25519'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes no\nPrintMotd no\nMaxSessions 64\nMaxStartups 64\n"
        "ClientAliveInterval 5\nClientAliveCountMax 3\nLogLevel ERROR\nPidFile /run/sshd.pid\n")


def services_lines(layout: Layout) -> str:
    """sshd in the node, listening on its management address only (first: SSH answers early)."""
    plan = mgmt_plan(layout)
    if plan is None:
        return ""
    inv = layout.topology.ssh
    assert inv is not None
    cases = " ".join(f"{n}) A={a} P={inv.hosts[n].port};;" for n, a in plan[2].items())
    conf = shlex.quote(str(ssh_dir(layout) / "sshd_config"))
    # A home of the node's own: sshd runs every command through root's login shell, and Debian's bash
    # then reads ~/.bashrc, which is the host's here (a pyenv hook in it hung every command on a lock
    # left by a node powered off mid-rehash, and wrote into the host's home). A real node has its own.
    return (f'case "$(hostname)" in {cases} esac\n'
            "grep -q ' /root tmpfs ' /proc/self/mounts || mount -t tmpfs -o mode=700,size=16m fallover-root /root\n"
            "if ! { test -s /run/sshd.pid && kill -0 $(cat /run/sshd.pid) 2>/dev/null; }; then\n"
            f"  mkdir -p /run/sshd && /usr/sbin/sshd -f {conf} -o ListenAddress=$A -o Port=$P "
            ">>/var/log/sshd.stdout 2>&1 </dev/null\n"
            "fi\n")


def socket_factory(layout: Layout):  # type: ignore[no-untyped-def]
    """Connections from inside the switch namespace, where the harness owns the management address."""
    from harness.testbed.nfqueue import in_netns

    def connect(host: str, port: int, timeout: float) -> socket.socket:
        plan = mgmt_plan(layout)
        if plan is None or ipaddress.IPv4Address(host) not in ipaddress.IPv4Network(f"{plan[0]}/{plan[1]}",
                                                                                      strict=False):
            raise OSError(f"{host} is not on the lab's management network")  # never anywhere else
        return in_netns(layout.net_ns, lambda: socket.create_connection((host, port), timeout=timeout))

    return connect


__all__ = ["MGMT", "is_lab", "mgmt_plan", "ensure_keys", "services_lines", "socket_factory"]
