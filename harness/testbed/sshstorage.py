"""The SSH provider's shared disk and evidence: disk pulls, mounts and node logs, read over SSH.

A mixin of `SshTestbed` (kept apart so each module stays readable). Disks are pulled through the
inventory's out-of-band SAN commands when declared, else with /sys/block/X/device/state on every
node that has the device. Logs are read with `stat` + `tail -c`, base64-encoded so no byte of a
log is lost to a decoder.
"""

from __future__ import annotations

import base64
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import CommandFailed, FalloverError, TestbedError, TransportError
from harness.testbed.base import LogFile
from harness.testbed.mountwatch import WATCH_S, WATCHER, MountWatches, Stream

if TYPE_CHECKING:
    from harness.testbed.local import LocalTestbed
    from harness.inventory import SshInventory
    from harness.topology import Topology
    from harness.transport.base import Transport


class SshStorage:
    """Disk, mounts and logs of `SshTestbed`; uses its `node`, `running`, `_sh` and `_oob`."""

    topology: Topology
    inventory: SshInventory
    lab: LocalTestbed | None
    state: Path
    _mount_watches: MountWatches | None = None

    @property
    def mount_watches(self) -> MountWatches:
        """One mount watcher per node, started at the first look (closed by `down`)."""
        if self._mount_watches is None:
            def start(node: str) -> Stream:
                return self.node(node).stream(["python3", "-S", "-c", WATCHER], timeout=WATCH_S)  # type: ignore[attr-defined]
            self._mount_watches = MountWatches(start)
        return self._mount_watches

    def close_mount_watches(self) -> None:
        if self._mount_watches is not None:
            self._mount_watches.close()
            self._mount_watches = None

    if TYPE_CHECKING:
        def node(self, name: str) -> Transport: ...

        def running(self, node: str) -> bool: ...

        def _sh(self, node: str, script: str, *, timeout: float = 30, check: bool = True) -> str: ...

        def _oob(self, key: str, **subst: str) -> str: ...

    # -- shared disk ----------------------------------------------------------------------------

    def _device(self, disk: str, node: str) -> str | None:
        if self.lab is not None:
            return str(self.lab.layout.disk_link(disk))
        return self.inventory.hosts[node].disks.get(disk)

    def _sysfs_state(self, disk: str, node: str) -> str:
        dev = shlex.quote(self._device(disk, node) or "/nonexistent")
        return f"/sys/block/$(basename $(readlink -f {dev}))/device/state"

    def disk_mode(self, disk: str) -> str | None:
        oob = self.inventory.oob
        if oob.disk_status:
            words = self._oob("disk_status", disk=disk).split()
            return words[0] if words else None
        for n in (n for n in self.topology.node_names if self.running(n)):
            state = self._sh(n, f"cat {self._sysfs_state(disk, n)} 2>/dev/null", check=False).strip()
            return {"running": "ok", "offline": "eio"}.get(state, state or None)
        return None

    def set_disk_mode(self, disk: str, mode: str) -> None:
        oob = self.inventory.oob
        if mode not in ("ok", "eio"):
            raise TestbedError(f"disk {disk}: mode {mode!r} is beyond the SSH provider (ok and eio only)")
        if oob.disk_pull:
            self._oob("disk_pull" if mode == "eio" else "disk_restore", disk=disk)
            return
        state = "offline" if mode == "eio" else "running"
        for n in (n for n in self.topology.node_names if self.running(n)):
            self._sh(n, f"echo {state} > {self._sysfs_state(disk, n)}")

    def disk_read_error(self, disk: str, timeout: float = 10.0) -> str | None:
        for n in (n for n in self.topology.node_names if self.running(n)):
            dev = self._device(disk, n)
            if dev is None:
                continue
            try:
                r = self.node(n).run(["dd", f"if={dev}", "of=/dev/null", "bs=4096", "count=1", "iflag=direct",
                                      "status=none"], timeout=timeout, check=False)
            except CommandFailed:  # timed out
                return f"a read of {dev} on {n} got no answer within {timeout:g}s"
            return None if r.ok else (r.stderr.strip() or f"dd exited {r.exit_status}")
        return f"no running node has a device for disk {disk}"

    def mountpoint(self, group: str) -> str:
        g = self.topology.group(group)
        if self.lab is not None:
            return str(self.lab.layout.mountpoint(group))
        return g.mount or f"/mnt/{group}"

    # -- evidence -------------------------------------------------------------------------------

    def log_files(self) -> list[LogFile]:
        if self.lab is not None:
            return list(self.lab.log_files())
        out = []
        for n in self.topology.node_names:
            out += [LogFile(n, "/var/log/pacemaker/pacemaker.log"),
                    LogFile(n, "/var/log/corosync/corosync.log", required=False)]
        return out

    def log_size(self, log_file: LogFile) -> tuple[int, int]:
        try:
            out = self._sh(log_file.node, f"stat -c '%i %s' {shlex.quote(log_file.path)}", timeout=15).split()
            return int(out[0]), int(out[1])
        except (FalloverError, ValueError, IndexError):
            return 0, 0

    def read_log(self, log_file: LogFile, start: int) -> tuple[int, bytes]:
        p = shlex.quote(log_file.path)
        try:
            r = self.node(log_file.node).run(
                ["sh", "-c", f"test -e {p} || exit 3; stat -c '%i %s' {p} && "
                             f"s=$(stat -c %s {p}); o={start}; [ $s -lt $o ] && o=0; "
                             f"tail -c +$((o+1)) {p} | base64 -w0"],
                timeout=60, check=False)
        except TransportError as e:
            raise OSError(str(e)) from None
        if r.exit_status == 3:
            raise FileNotFoundError(f"{log_file.node}:{log_file.path}")
        if r.failed:
            raise OSError(f"{log_file.node}:{log_file.path}: {r.tail() or r.exit_status}")
        head, _, data = r.stdout.partition("\n")
        return int(head.split()[0]), base64.b64decode(data.strip())

    def event_logs(self) -> dict[str, Path]:
        """The lab's alert agent and fence broker write here. A real inventory has no harness-side log:
        two files that stay empty (in our state directory), so the verdicts that read them find no event."""
        if self.lab is not None:
            return dict(self.lab.event_logs())
        return {"notifications": self.state / "notifications.log", "fences": self.state / "fence-events.jsonl"}

    def mounts(self) -> dict[str, list[str]] | None:
        """Each node's watcher's last report (harness.testbed.mountwatch), or a `findmnt` where it has none."""
        where: dict[str, list[str]] = {d.name: [] for d in self.topology.disks}
        for n in self.topology.node_names:
            if not self.running(n):
                continue
            try:
                targets = self.mount_watches.targets(
                    n, lambda: set(self._sh(n, "findmnt -rn -o TARGET", timeout=15).split()))  # noqa: B023
            except FalloverError:
                return None
            for g in self.topology.groups:
                if g.disk is not None and self.mountpoint(g.name) in targets and n not in where[g.disk]:
                    where[g.disk].append(n)
        return where
