"""Disk faults: the shared disk pulled (I/O errors), and its filesystem full."""

from __future__ import annotations

from typing import Any, ClassVar

from harness.errors import TransportError
from harness.faults.base import Fault, Target
from harness.faults.ops import group_node
from harness.testbed.base import Testbed


def _groups_on(testbed: Testbed, disk: str) -> list[str]:
    return [g.name for g in testbed.topology.groups if g.disk == disk]


class DiskPull(Fault):
    name: ClassVar[str] = "disk_pull"
    family: ClassVar[str] = "disk"
    event: ClassVar[str] = "vg_down (disk failure)"
    target_kind: ClassVar[str] = "disk"
    summary: ClassVar[str] = "the shared disk is pulled: every read and write returns EIO"
    mechanism: ClassVar[str] = ("the FUSE layer under the loop device switched to `eio`; the Filesystem "
                                "monitor (OCF_CHECK_LEVEL=20) notices; heal: back to `ok`")

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        testbed.set_disk_mode(target.disk, "eio")  # type: ignore[attr-defined]

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """Plug the disk back, then remount it where it is mounted.

        ext4 aborted its journal on the I/O errors (and may already be read-only); only a fresh
        mount (the cluster's stop + start of the group) gives the pre-fault, writable state.
        """
        from harness.drivers.pacemaker import PacemakerDriver

        testbed.set_disk_mode(target.disk, "ok")  # type: ignore[attr-defined]
        driver = PacemakerDriver(testbed)
        for group in _groups_on(testbed, target.disk):  # type: ignore[arg-type]
            state = driver.state()
            if state is not None and state.groups.get(group) and state.groups[group].nodes:
                driver.restart_group(group)


class DiskFull(Fault):
    name: ClassVar[str] = "disk_full"
    family: ClassVar[str] = "disk"
    event: ClassVar[str] = "filesystem_full"
    target_kind: ClassVar[str] = "disk"
    destructive: ClassVar[bool] = False
    summary: ClassVar[str] = "the shared filesystem is filled up (root's reserved blocks too)"
    mechanism: ClassVar[str] = "fallocate of every free block in a hidden file on the mounted filesystem"

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        groups = _groups_on(testbed, target.disk)  # type: ignore[arg-type]
        if not groups:
            raise ValueError(f"disk {target.disk} carries no group: nowhere it is mounted")
        node = group_node(testbed, groups[0])
        mnt = str(testbed.layout.mountpoint(groups[0]))  # type: ignore[attr-defined]
        undo.update(node=node, file=f"{mnt}/.fallover-fill-{undo['id']}")
        # %f counts the blocks reserved for root as free: the app runs as root and may use them
        testbed.node(node).run(
            f'f={undo["file"]}; free=$(stat -f -c "%f*%S" {mnt}); fallocate -l $(( $free )) "$f" '
            f'|| dd if=/dev/zero of="$f" bs=64k status=none 2>/dev/null; sync -f {mnt}; true', timeout=60)

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        path = undo.get("file")
        if not path:
            return
        # the group may have moved since: remove the file wherever the filesystem is mounted now
        for node in testbed.topology.node_names:
            if not testbed.running(node):
                continue
            try:
                testbed.node(node).run(["rm", "-f", path], timeout=15, check=False)
            except TransportError:
                continue
