"""`fallover box build`: the VM testbed's Vagrant box, built locally from the distribution's packages.

Public boxes cannot be downloaded everywhere (not on the machine this was written on), so the box is
made here: debootstrap of Debian bookworm with the cluster software, clone hygiene (no machine-id, no
SSH host keys, no DNS), a root filesystem image made without loop devices (`mke2fs -d`), and direct
kernel boot (the kernel and initrd sit next to the box; no bootloader). The result is cached under
`BOX_ROOT/<digest>/` and added with `vagrant box add` to the shared `VAGRANT_HOME`; it is rebuilt only
when its inputs change (the package list, the build script, the suite, the mirror, the SSH key).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from harness.errors import TestbedError
from harness.testbed.base import Progress, quiet

BOX_ROOT = Path(os.environ.get("FALLOVER_BOX_ROOT", "/var/cache/fallover/vagrant"))
"""Box cache (kept across `fallover down`): images, kernels, the lab's SSH key and VAGRANT_HOME."""

SUITE = "bookworm"
PACKAGES = ("linux-image-amd64", "systemd-sysv", "udev", "dbus", "openssh-server", "sudo", "iproute2", "procps",
            "psmisc", "e2fsprogs", "python3", "curl", "iputils-ping", "iputils-arping", "bc", "nftables", "kmod",
            "stress-ng",
            "pacemaker", "corosync", "crmsh", "resource-agents", "fence-agents", "fence-virt", "open-iscsi",
            "python3-cffi-backend")
"""What the guests need: the cluster stack, iSCSI, fence_xvm; psmisc (`fuser`: without it the Filesystem
agent says "not installed"); arping and bc (ethmonitor: "not installed" without them, and then the group
never starts); nftables and stress-ng for the faults run over SSH."""

IMAGE_GB = 4


@dataclass(frozen=True)
class Box:
    name: str
    dir: Path

    @property
    def kernel(self) -> Path:
        return self.dir / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.dir / "initrd.img"

    @property
    def file(self) -> Path:
        return self.dir / "fallover.box"


def vagrant_home() -> Path:
    return BOX_ROOT / "vagrant.d"


def ssh_key() -> Path:
    """The key the harness and vagrant log in with (root and vagrant); made once, baked into the box."""
    return BOX_ROOT / "id_ed25519"


def ensure_key() -> Path:
    key = ssh_key()
    if not key.exists():
        BOX_ROOT.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fallover-vagrant", "-f", str(key)],
                       check=True, capture_output=True, timeout=30)
    return key


def mirror() -> str:
    """The host's own Debian mirror (from its apt sources), so the box needs no other network path."""
    for src in sorted(Path("/etc/apt").glob("sources.list.d/*.sources")):
        for line in src.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    lst = Path("/etc/apt/sources.list")
    if lst.exists():
        for line in lst.read_text().splitlines():
            parts = line.split()
            if parts[:1] == ["deb"] and "security" not in line:
                return next(p for p in parts[1:] if p.startswith("http"))
    return "http://deb.debian.org/debian"


def build_script(root: Path, out: Path, pubkey: str, mirror_url: str) -> str:
    """The whole build as one shell script (its text is part of the cache key)."""
    r, o = shlex.quote(str(root)), shlex.quote(str(out))
    inc = ",".join(PACKAGES)
    key = shlex.quote(pubkey.strip())
    return f"""set -eu
export DEBIAN_FRONTEND=noninteractive LC_ALL=C
echo "step: debootstrap {SUITE} ({len(PACKAGES)} packages and their dependencies)"
rm -rf {r}; mkdir -p {r}
debootstrap --variant=minbase --include={inc} {SUITE} {r} {shlex.quote(mirror_url)} >{o}/debootstrap.log 2>&1 \
  || {{ tail -20 {o}/debootstrap.log; exit 1; }}
echo "step: configure the guest (users, keys, network, clone hygiene)"
# fence-agents leaves python3-cryptography unconfigured under debootstrap: finish every package
chroot {r} sh -c 'dpkg --configure -a && apt-get clean' >>{o}/debootstrap.log 2>&1
echo fallover > {r}/etc/hostname
printf '127.0.0.1 localhost\\n127.0.1.1 fallover\\n' > {r}/etc/hosts
: > {r}/etc/resolv.conf
: > {r}/etc/machine-id; rm -f {r}/var/lib/dbus/machine-id
printf 'LABEL=root / ext4 defaults,noatime 0 1\\n' > {r}/etc/fstab
mkdir -p {r}/etc/systemd/network
printf '[Match]\\nName=eth0\\n[Network]\\nDHCP=ipv4\\nLinkLocalAddressing=no\\nIPv6AcceptRA=no\\n' \
  > {r}/etc/systemd/network/10-mgmt.network
chroot {r} systemctl enable systemd-networkd ssh >/dev/null 2>&1
chroot {r} useradd -m -s /bin/bash vagrant
echo 'vagrant ALL=(ALL) NOPASSWD: ALL' > {r}/etc/sudoers.d/vagrant; chmod 440 {r}/etc/sudoers.d/vagrant
for h in {r}/root {r}/home/vagrant; do mkdir -p $h/.ssh; echo {key} > $h/.ssh/authorized_keys; chmod 700 $h/.ssh; \
  chmod 600 $h/.ssh/authorized_keys; done
chroot {r} chown -R vagrant:vagrant /home/vagrant/.ssh
rm -f {r}/etc/ssh/ssh_host_*
printf 'UseDNS no\\nPermitRootLogin prohibit-password\\nPasswordAuthentication no\\nMaxSessions 64\\nMaxStartups 64\\n' \
  > {r}/etc/ssh/sshd_config.d/fallover.conf
# no RSA host key: its 3072-bit keygen took 20 s of a TCG guest's boot (measured), ssh waiting on it
printf 'HostKey /etc/ssh/ssh_host_ed25519_key\\nHostKey /etc/ssh/ssh_host_ecdsa_key\\n' >> {r}/etc/ssh/sshd_config.d/fallover.conf
cat > {r}/etc/systemd/system/fallover-hostkeys.service <<'EOF'
[Unit]
Description=SSH host keys of this clone
Before=ssh.service
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'for t in ed25519 ecdsa; do k=/etc/ssh/ssh_host_$${{t}}_key; [ -e $$k ] || ssh-keygen -q -t $$t -N "" -f $$k; done'
[Install]
WantedBy=multi-user.target
EOF
chroot {r} systemctl enable fallover-hostkeys >/dev/null 2>&1
# the shared disk before the stack at boot; vagrant/provision.sh writes the same (and reloads) if it is missing
mkdir -p {r}/etc/systemd/system/corosync.service.d
printf '[Unit]\\nAfter=open-iscsi.service network-online.target\\n' > {r}/etc/systemd/system/corosync.service.d/fallover.conf
# iscsiadm's lock directory made before iscsid and open-iscsi start: they race to make it (vagrant/provision.sh)
mkdir -p {r}/etc/tmpfiles.d
printf 'd /run/lock/iscsi 0700 root root -\\n' > {r}/etc/tmpfiles.d/fallover-iscsi.conf
# every clone gets its own initiator name at provisioning; none from the package
rm -f {r}/etc/iscsi/initiatorname.iscsi
sed -i 's/^node.session.timeo.replacement_timeout = .*/node.session.timeo.replacement_timeout = 10/' \
  {r}/etc/iscsi/iscsid.conf
for u in corosync pacemaker iscsid open-iscsi apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
  fstrim.timer man-db.timer rpcbind.service rpcbind.socket; do chroot {r} systemctl disable $u >/dev/null 2>&1 || true; done
# e2scrub_reap (24 s of a TCG guest's boot, measured) looks for LVM snapshots the box never has
chroot {r} systemctl mask getty@tty1 serial-getty@ttyS0 e2scrub_reap.service >/dev/null 2>&1 || true
echo "step: kernel, initrd and the root image ({IMAGE_GB} GB, qcow2)"
cp -L {r}/vmlinuz {o}/vmlinuz; cp -L {r}/initrd.img {o}/initrd.img
rm -f {o}/root.raw; mke2fs -q -t ext4 -L root -d {r} {o}/root.raw {IMAGE_GB}G
qemu-img convert -O qcow2 {o}/root.raw {o}/box.img; rm -f {o}/root.raw
echo '{{"provider": "libvirt", "format": "qcow2", "virtual_size": {IMAGE_GB}}}' > {o}/metadata.json
cat > {o}/Vagrantfile <<'EOF'
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |libvirt|
    libvirt.driver = "qemu"
  end
end
EOF
echo "step: package the box"
tar -C {o} -cf {o}/fallover.box metadata.json Vagrantfile box.img
rm -f {o}/box.img
rm -rf {r}
"""


def inputs_digest(pubkey: str, mirror_url: str) -> str:
    text = build_script(Path("/ROOT"), Path("/OUT"), pubkey, mirror_url)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def current() -> Box:
    """The box for the current inputs (built or not)."""
    pub = Path(str(ensure_key()) + ".pub").read_text()
    digest = inputs_digest(pub, mirror())
    return Box(name=f"fallover-{SUITE}-{digest}", dir=BOX_ROOT / digest)


def is_built(box: Box) -> bool:
    return (box.dir / "done.json").exists() and box.kernel.exists() and box.initrd.exists()


def vagrant_env() -> dict[str, str]:
    return {**os.environ, "VAGRANT_HOME": str(vagrant_home()), "VAGRANT_CHECKPOINT_DISABLE": "1",
            "VAGRANT_DEFAULT_PROVIDER": "libvirt"}


def box_added(box: Box) -> bool:
    return (vagrant_home() / "boxes" / box.name).is_dir()


def build(progress: Progress = quiet, force: bool = False) -> Box:
    """Build (or find in the cache) the box for the current inputs, and make sure vagrant knows it."""
    missing = [t for t in ("debootstrap", "qemu-img", "mke2fs", "vagrant") if shutil.which(t) is None]
    if missing:
        raise TestbedError(f"missing tools: {' '.join(missing)}; run `make vm-setup`")
    box = current()
    if force and box.dir.exists():
        shutil.rmtree(box.dir)
    if not is_built(box):
        t0 = time.monotonic()
        tmp = BOX_ROOT / f"{box.dir.name}.build"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        pub = Path(str(ssh_key()) + ".pub").read_text()
        script = build_script(tmp / "root", tmp, pub, mirror())
        progress(f"building box {box.name} (a few minutes; log {tmp / 'debootstrap.log'})")
        proc = subprocess.Popen(["nice", "-n", "10", "sh", "-c", script], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        tail: list[str] = []
        for line in proc.stdout:
            line = line.rstrip()
            tail = (tail + [line])[-20:]
            if line.startswith("step: "):
                progress(f"box: {line[6:]} (+{time.monotonic() - t0:.0f} s)")
        if proc.wait() != 0:
            raise TestbedError("box build failed:\n" + "\n".join(tail))
        (tmp / "done.json").write_text(json.dumps({"name": box.name, "build_s": round(time.monotonic() - t0, 1),
                                                   "built_at": time.time()}))
        if box.dir.exists():
            shutil.rmtree(box.dir)
        tmp.rename(box.dir)
        progress(f"box built in {time.monotonic() - t0:.0f} s: {box.dir}")
    if not box_added(box):
        progress(f"vagrant box add {box.name}")
        r = subprocess.run(["vagrant", "box", "add", "--force", "--name", box.name, str(box.file)],
                           capture_output=True, text=True, env=vagrant_env(), timeout=600)
        if r.returncode != 0:
            raise TestbedError(f"vagrant box add failed: {(r.stderr or r.stdout).strip()[-400:]}")
    _prune(box, progress)
    return box


def _prune(keep: Box, progress: Progress) -> None:
    """Older boxes (other inputs) go from the cache and from vagrant."""
    if not BOX_ROOT.exists():
        return
    for d in BOX_ROOT.iterdir():
        if d.is_dir() and d.name not in (keep.dir.name, "vagrant.d", "pool") and len(d.name.split(".")[0]) == 12:
            shutil.rmtree(d, ignore_errors=True)
            progress(f"removed old box {d.name}")
    pool = BOX_ROOT / "pool"
    if pool.is_dir():  # the labs' storage pool keeps each box's uploaded volume
        for vol in pool.glob(f"fallover-{SUITE}-*"):
            if not vol.name.startswith(keep.name + "_"):
                vol.unlink()
                progress(f"removed old box volume {vol.name}")
    boxes = vagrant_home() / "boxes"
    if boxes.is_dir():
        for b in boxes.iterdir():
            if b.name.startswith(f"fallover-{SUITE}-") and b.name != keep.name:
                subprocess.run(["vagrant", "box", "remove", "--force", "--all", b.name], capture_output=True,
                               env=vagrant_env(), timeout=120)
