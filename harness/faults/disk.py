"""Disk faults: the shared disk pulled (I/O errors), and its filesystem full."""

from __future__ import annotations

from typing import Any, ClassVar

from harness.errors import FalloverError, TransportError
from harness.faults.base import Fault, Target, embedded
from harness.faults.ops import group_node
from harness.testbed.base import Testbed

FULL_BELOW = 0.01  # a filled filesystem has less than this share of its blocks free


def _groups_on(testbed: Testbed, disk: str) -> list[str]:
    return [g.name for g in testbed.topology.groups if g.disk == disk]


def _free_blocks(testbed: Testbed, node: str, mnt: str) -> tuple[int, int] | None:
    """(free blocks, root's reserve included; total blocks) of the filesystem mounted at ``mnt`` on
    ``node`` (`stat -f`); None when nothing is mounted there."""
    r = testbed.node(node).run(f'mountpoint -q {mnt} && stat -f -c "%f %b" {mnt}', timeout=15, check=False)
    if not r.ok:
        return None
    free, total = r.stdout.split()
    return int(free), int(total)


class DiskPull(Fault):
    name: ClassVar[str] = "disk_pull"
    family: ClassVar[str] = "disk"
    event: ClassVar[str] = "vg_down (disk failure)"
    target_kind: ClassVar[str] = "disk"
    summary: ClassVar[str] = "the shared disk is pulled: every read and write returns EIO"
    mechanism: ClassVar[str] = ("the FUSE layer under the loop device switched to `eio`; the Filesystem "
                                "monitor (OCF_CHECK_LEVEL=20) notices; heal: back to `ok`")

    def precheck(self, testbed: Testbed, target: Target) -> None:
        mode = embedded(testbed).disk_mode(target.need("disk"))
        if mode is None:
            raise self.refused(target, f"disk {target.disk} is not attached (its FUSE layer is not mounted; "
                                       f"is the testbed up?)")
        if mode != "ok":
            raise self.refused(target, f"disk {target.disk} is already in mode {mode!r}")

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        embedded(testbed).set_disk_mode(target.need("disk"), "eio")

    def verify(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """A direct read of the loop device (the cluster's own path to the disk) returns EIO."""
        error = embedded(testbed).disk_read_error(target.need("disk"))
        if error is None:
            raise self.not_in_effect(target, "a direct read of its loop device still succeeds")
        if "Input/output error" not in error:
            raise self.not_in_effect(target, f"a direct read of its loop device got {error!r}, not EIO")

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """Plug the disk back, then remount it where it is mounted.

        ext4 aborted its journal on the I/O errors (and may already be read-only); only a fresh
        mount (the cluster's stop + start of the group) gives the pre-fault, writable state.
        """
        from harness.drivers.pacemaker import PacemakerDriver

        disk = target.need("disk")
        embedded(testbed).set_disk_mode(disk, "ok")  # waits until the layer reports `ok`
        if embedded(testbed).disk_mode(disk) is not None and (error := embedded(testbed).disk_read_error(disk)):
            raise FalloverError(f"disk {disk} still fails a direct read after it was plugged back: {error}")
        driver = PacemakerDriver(testbed)
        for group in _groups_on(testbed, disk):
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

    def precheck(self, testbed: Testbed, target: Target) -> None:
        groups = _groups_on(testbed, target.need("disk"))
        if not groups:
            raise self.refused(target, f"disk {target.disk} carries no group: it is mounted nowhere")
        try:
            node = group_node(testbed, groups[0])
        except FalloverError as e:
            raise self.refused(target, f"its filesystem is mounted nowhere: {e}") from None
        mnt = embedded(testbed).layout.mountpoint(groups[0])
        seen = _free_blocks(testbed, node, str(mnt))
        if seen is None:
            raise self.refused(target, f"group {groups[0]} runs on {node}, but nothing is mounted at {mnt} there")
        if seen[0] < FULL_BELOW * seen[1]:
            raise self.refused(target, f"the filesystem at {mnt} on {node} is full already "
                                       f"({seen[0]} of {seen[1]} blocks free)")

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        group = _groups_on(testbed, target.need("disk"))[0]
        node = group_node(testbed, group)
        mnt = str(embedded(testbed).layout.mountpoint(group))
        undo.update(node=node, mnt=mnt, file=f"{mnt}/.fallover-fill-{undo['id']}")
        # %f counts the blocks reserved for root as free: the app runs as root and may use them.
        # dd ends in ENOSPC by design: whether the filesystem is full is verify's to judge.
        testbed.node(node).run(
            f'f={undo["file"]}; free=$(stat -f -c "%f*%S" {mnt}) && '
            f'{{ fallocate -l $(( $free )) "$f" || dd if=/dev/zero of="$f" bs=64k status=none 2>/dev/null || '
            f'test -s "$f"; }} && sync -f {mnt}', timeout=60)

    def verify(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """`stat -f` where the group runs: the filesystem mounted there has < 1 % of its blocks free."""
        node, mnt = undo["node"], undo["mnt"]
        seen = _free_blocks(testbed, node, mnt)
        if seen is None:
            raise self.not_in_effect(target, f"no filesystem is mounted at {mnt} on {node}")
        free, total = seen
        if free >= FULL_BELOW * total:
            raise self.not_in_effect(target, f"the fill left {100 * free / total:.1f} % free "
                                             f"({free} of {total} blocks) at {mnt} on {node}")

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """Remove the fill file wherever the filesystem is mounted now (the group may have moved).

        A node that vanishes meanwhile took its mount with it. If the filesystem is mounted on
        no running node, the file is still on the disk and cannot be reached: that raises.
        """
        path = undo.get("file")
        if not path:
            return  # inject failed before it chose a file: nothing was written
        mnt = undo.get("mnt") or path.rsplit("/", 1)[0]
        mounted_on = []
        for node in testbed.topology.node_names:
            if not testbed.running(node):
                continue
            try:  # also where it is not mounted: a fill that missed the mount landed in the bare directory
                r = testbed.node(node).run(f'rm -f {path} && ! test -e {path} && {{ mountpoint -q {mnt}; '
                                           f'echo $?; }}', timeout=15)
            except TransportError:
                continue
            if r.stdout.strip() == "0":
                mounted_on.append(node)
        if not mounted_on:
            raise FalloverError(f"{path} may still fill disk {target.disk}: its filesystem is mounted on no "
                                f"running node; heal again once the group runs")
