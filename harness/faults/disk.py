"""Disk faults: the shared disk pulled (I/O errors), and its filesystem full."""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

from harness.errors import FalloverError, TransportError
from harness.faults.base import Fault, Target, look_until
from harness.faults.ops import group_node
from harness.testbed.base import Testbed

FULL_BELOW = 0.01  # a filled filesystem has less than this share of its blocks free
LAST_BLOCKS = 256  # what disk_full's fallocate leaves, for its one write to take (see DiskFull.inject)


def _groups_on(testbed: Testbed, disk: str) -> list[str]:
    return [g.name for g in testbed.topology.groups if g.disk == disk]


PULLED_ERRORS = ("Input/output error", "No such device or address")
"""How a read of a pulled disk fails: EIO from the device, or ENXIO from a SCSI device its initiator offlined."""


def pulled(error: str | None) -> bool:
    """Whether a read's error says the disk is gone (not merely that the read failed for another reason)."""
    return error is not None and any(e in error for e in PULLED_ERRORS)


class Space(NamedTuple):
    usable: int      # blocks root can still allocate
    total: int
    block_size: int


def space_on(testbed: Testbed, node: str, mnt: str) -> Space | None:
    """The space of the filesystem mounted at ``mnt`` on ``node``; None when nothing is mounted there.

    `stat -f` %f counts root's reserve as free (root may use it) but also ext4's reserved
    clusters (kept back for metadata: min(2 %, 4096 clusters), which nobody's writes get), so
    those are subtracted, from /sys/fs/ext4/<device>/reserved_clusters (absent: not ext4, none).
    """
    r = testbed.node(node).run(
        f'mountpoint -q {mnt} && dev=$(readlink -f "$(findmnt -n -o SOURCE {mnt})") && echo '
        f'$(stat -f -c "%f %b %S" {mnt}) $(cat /sys/fs/ext4/${{dev##*/}}/reserved_clusters 2>/dev/null || echo 0)',
        timeout=15, check=False)
    if not r.ok:
        return None
    free, total, block_size, kept_back = (int(x) for x in r.stdout.split())
    return Space(max(0, free - kept_back), total, block_size)


class DiskPull(Fault):
    name: ClassVar[str] = "disk_pull"
    family: ClassVar[str] = "disk"
    event: ClassVar[str] = "vg_down (disk failure)"
    target_kind: ClassVar[str] = "disk"
    summary: ClassVar[str] = "the shared disk is pulled: every read and write returns EIO"
    mechanism: ClassVar[str] = ("the FUSE layer under the loop device switched to `eio`; the Filesystem "
                                "monitor (OCF_CHECK_LEVEL=20) notices; heal: back to `ok`")
    needs: ClassVar[tuple[str, ...]] = ("disk", "shared_disk")
    mode: ClassVar[str] = "eio"  # what the disk layer is switched to

    def precheck(self, testbed: Testbed, target: Target) -> None:
        mode = testbed.disk_mode(target.need("disk"))
        if mode is None:
            raise self.refused(target, f"disk {target.disk} is not attached (its FUSE layer is not mounted; "
                                       f"is the testbed up?)")
        if mode != "ok":
            raise self.refused(target, f"disk {target.disk} is already in mode {mode!r}")

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        testbed.set_disk_mode(target.need("disk"), self.mode)

    def verify(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """A direct read of the disk's device (the cluster's own path to it) fails with EIO, or with ENXIO
        where an iSCSI initiator has given the lost LUN up and offlined its SCSI device (the VMs)."""
        error = look_until(lambda: testbed.disk_read_error(target.need("disk")), lambda e: pulled(e))
        if error is None:
            raise self.not_in_effect(target, "a direct read of its device still succeeds")
        if not pulled(error):
            raise self.not_in_effect(target, f"a direct read of its device got {error!r}, not EIO or ENXIO")

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """Plug the disk back, then remount it where it is mounted.

        ext4 aborted its journal on the I/O errors (and may already be read-only); only a fresh
        mount (the cluster's stop + start of the group) gives the pre-fault, writable state. The
        restart also forgets the group's failures: where its filesystem's start failed on every node,
        nothing else would let it start again.
        """
        from harness.drivers import open_driver

        disk = target.need("disk")
        testbed.set_disk_mode(disk, "ok")  # waits until the layer reports `ok`
        if testbed.disk_mode(disk) is not None:
            # a request already under way when the mode changed may still fail (seen after ext4 aborted)
            error = look_until(lambda: testbed.disk_read_error(disk), lambda e: e is None)
            if error:
                raise FalloverError(f"disk {disk} still fails a direct read after it was plugged back: {error}")
        driver = open_driver(testbed)
        for group in _groups_on(testbed, disk):
            state = driver.state()
            if state is not None and state.groups.get(group) and state.groups[group].nodes:
                driver.restart_group(group)


class DiskReadErrors(DiskPull):
    name: ClassVar[str] = "disk_read_errors"
    event: ClassVar[str] = "disk_read_error"
    summary: ClassVar[str] = "the shared disk's reads fail with EIO; its writes still succeed"
    mechanism: ClassVar[str] = ("the FUSE layer under the loop device switched to `eio-read`; the Filesystem "
                                "monitor (OCF_CHECK_LEVEL=20) reads its status file back; heal: back to `ok`")
    needs: ClassVar[tuple[str, ...]] = ("disk_modes", "shared_disk")
    mode: ClassVar[str] = "eio-read"  # verify: DiskPull's (a direct read of the loop device returns EIO)


class DiskWriteErrors(DiskPull):
    name: ClassVar[str] = "disk_write_errors"
    event: ClassVar[str] = "disk_write_error"
    summary: ClassVar[str] = "the shared disk's writes fail with EIO; its reads still succeed"
    mechanism: ClassVar[str] = ("the FUSE layer under the loop device switched to `eio-write`; the Filesystem "
                                "monitor (OCF_CHECK_LEVEL=20) writes its status file with O_DIRECT; heal: back to `ok`")
    needs: ClassVar[tuple[str, ...]] = ("disk_modes", "shared_disk")
    mode: ClassVar[str] = "eio-write"

    def verify(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """A direct write of the loop device's unused first sector returns EIO, while direct reads succeed.

        The loop device now and then fails a read too while its writes fail (measured: about one read in
        five, on this kernel, though the layer under it serves every read), so one read of three must work.
        """
        disk = target.need("disk")
        error = look_until(lambda: testbed.disk_write_error(disk), lambda e: e is not None and "Input/output" in e)
        if error is None or "Input/output error" not in error:
            raise self.not_in_effect(target, f"a direct write of its loop device got {error or 'no error'}, not EIO")
        reads = [testbed.disk_read_error(disk) for _ in range(3)]
        if None not in reads:
            raise self.not_in_effect(target, f"direct reads fail too ({reads[-1]}): that is a pull, not write errors")


class DiskHang(DiskPull):
    name: ClassVar[str] = "disk_hang"
    event: ClassVar[str] = "disk_hang (hung path)"
    summary: ClassVar[str] = ("every I/O to the shared disk blocks without an answer; the Filesystem monitor "
                              "times out")
    mechanism: ClassVar[str] = ("the FUSE layer under the loop device holds every read and write (`hang`); heal: "
                                "`ok` by signal (held requests then complete), then a restart of the group")
    needs: ClassVar[tuple[str, ...]] = ("disk_modes", "shared_disk")
    mode: ClassVar[str] = "hang"
    suite: ClassVar[str | None] = "slow"  # the cluster notices only when a monitor times out

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """Let the held I/O go (by signal: every FUSE thread may be held) and wait until the disk reads again.

        No remount: held requests complete once the layer answers, so ext4 saw no error; what the
        cluster started on the monitor's timeout (a recovery, a fence) is its own to finish.
        """
        disk = target.need("disk")
        testbed.set_disk_mode(disk, "ok")
        if testbed.disk_mode(disk) is not None:
            error = look_until(lambda: testbed.disk_read_error(disk), lambda e: e is None, timeout=30)
            if error:
                raise FalloverError(f"disk {disk} still fails a direct read after the hang ended: {error}")

    def verify(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """A direct read of the loop device gets no answer (it is left blocked until the heal)."""
        error = testbed.disk_read_error(target.need("disk"), timeout=2.0)
        if error is None or "no answer" not in error:
            raise self.not_in_effect(target, f"a direct read of its loop device got {error or 'its data'}, "
                                             f"not a hang")


class DiskFull(Fault):
    name: ClassVar[str] = "disk_full"
    family: ClassVar[str] = "disk"
    event: ClassVar[str] = "filesystem_full"
    target_kind: ClassVar[str] = "disk"
    destructive: ClassVar[bool] = False
    summary: ClassVar[str] = "the shared filesystem is filled up (root's reserved blocks too)"
    mechanism: ClassVar[str] = ("a hidden file on the mounted filesystem: fallocate of the blocks root may still "
                                "allocate, then one write larger than the rest, which stops short at ENOSPC")
    needs: ClassVar[tuple[str, ...]] = ("shared_disk",)

    def precheck(self, testbed: Testbed, target: Target) -> None:
        groups = _groups_on(testbed, target.need("disk"))
        if not groups:
            raise self.refused(target, f"disk {target.disk} carries no group: it is mounted nowhere")
        try:
            node = group_node(testbed, groups[0])
        except FalloverError as e:
            raise self.refused(target, f"its filesystem is mounted nowhere: {e}") from None
        mnt = testbed.mountpoint(groups[0])
        space = space_on(testbed, node, str(mnt))
        if space is None:
            raise self.refused(target, f"group {groups[0]} runs on {node}, but nothing is mounted at {mnt} there")
        if space.usable < FULL_BELOW * space.total:
            raise self.refused(target, f"the filesystem at {mnt} on {node} is full already "
                                       f"({space.usable} of {space.total} blocks free)")

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        group = _groups_on(testbed, target.need("disk"))[0]
        node = group_node(testbed, group)
        mnt = testbed.mountpoint(group)
        undo.update(node=node, mnt=mnt, file=f"{mnt}/.fallover-fill-{undo['id']}")
        # fallocate (fast: no data written) of all but LAST_BLOCKS of the blocks root may allocate, then
        # ONE write larger than what is left: it stops short at ENOSPC, by design (its status says nothing,
        # verify judges the result). One write, not appends until ENOSPC: Filesystem's OCF_CHECK_LEVEL=20
        # monitor rewrites its status file (truncate, then write one block), and an append loop that ran
        # while it did took the block it had just freed: the monitor failed on a cluster doing nothing wrong
        # (disk_full-shared on the VMs, 2026-12-01, where the appends took seconds).
        space = space_on(testbed, node, mnt)
        if space is None:  # never fill the bare directory: it is the host's filesystem
            raise FalloverError(f"nothing is mounted at {mnt} on {node}, where group {group} runs")
        size = max(0, (space.usable - LAST_BLOCKS) * space.block_size)
        last = 2 * LAST_BLOCKS * space.block_size
        testbed.node(node).run(
            f'f={undo["file"]}; mountpoint -q {mnt} && {{ [ {size} -eq 0 ] || fallocate -l {size} "$f"; }} && '
            f'{{ dd if=/dev/zero of="$f" bs={last} count=1 iflag=fullblock oflag=append conv=notrunc status=none '
            f'2>/dev/null; sync -f {mnt}; }}',
            timeout=60)

    def verify(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """`stat -f` where the group runs: root can allocate < 1 % of the filesystem's blocks there."""
        node, mnt = undo["node"], undo["mnt"]
        space = space_on(testbed, node, mnt)
        if space is None:
            raise self.not_in_effect(target, f"no filesystem is mounted at {mnt} on {node}")
        free, total = space.usable, space.total
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
