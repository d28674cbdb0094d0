"""`fallover backup DIR` and `fallover restore DIR`: the operator's procedures, on any testbed and stack that can.

Backup: the cluster configuration (`Driver.config_dump`), then each group's shared filesystem,
copied from the node that mounts it under a freeze (harness/backup/data.py); then backup.json
and the manifest. The directory appears only when complete (it is built beside it and renamed).

Restore: the whole directory is checked against its manifest first, and against the topology
(another cluster's backup is refused): bad input is one line and exit 2, and nothing is touched.
Then the configuration, when the cluster's differs from the saved one (normalised: harness/backup/cib.py);
then each group's data, with the group's application stopped and its filesystem left mounted;
then the service must answer again. That span is the restore time (RTO). Full redundancy is the
caller's next step (`Driver.recover`), timed on its own.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

from harness.backup.cib import differences, normalise
from harness.backup.data import copy_out, pack, put_back, unpack
from harness.backup.manifest import (
    CIB,
    DATA,
    META,
    BackupMeta,
    GroupData,
    read_meta,
    verify,
    write_manifest,
    write_meta,
)
from harness.drivers.base import DRIVER_CAPABILITIES, Driver
from harness.drivers.state import ClusterState
from harness.errors import BackupRefused, FalloverError, UsageError
from harness.status import service_answer
from harness.testbed.base import Progress, Testbed, quiet
from harness.topology import Topology
from harness.wait import wait_until

NEEDS = ("resource_manager", "shared_disk")
"""What the stack must have: a configuration to save and a way to stop the application (a resource
manager), and data on a filesystem that moves with the group (a shared disk)."""
Only = Literal["data", "config"] | None


@dataclass
class BackupDone:
    path: Path
    meta: BackupMeta
    points: dict[str, float]
    """group → the harness's monotonic clock just before its freeze (the clock of the load log)."""
    backup_s: float


@dataclass
class RestoreDone:
    restore_s: float
    """Start → the configuration and data back and every group's service answering (the RTO)."""
    config_replaced: bool
    nodes: dict[str, str] = field(default_factory=dict)
    """group → the node its data was put back on."""
    timings: dict[str, float] = field(default_factory=dict)


def refuse_unless_able(driver: Driver) -> None:
    caps = driver.capabilities()
    for need in NEEDS:
        why = caps.get(need)
        if why is not None:
            raise UsageError(f"backup and restore need {need} ({DRIVER_CAPABILITIES[need]}), which this cluster "
                             f"lacks: {why}")


def backup(testbed: Testbed, driver: Driver, dest: Path, *, progress: Progress = quiet) -> BackupDone:
    """Back the cluster up into the new (or empty) directory ``dest``."""
    topo = testbed.topology
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UsageError(f"{dest}: exists and is not an empty directory; a backup goes to a new one")
    refuse_unless_able(driver)
    t0 = time.monotonic()
    staging = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    try:
        staging.mkdir(parents=True)
    except OSError as e:
        raise UsageError(f"{dest}: cannot create it: {e.strerror}") from None
    try:
        progress("saving the cluster configuration")
        (staging / CIB).parent.mkdir()
        (staging / CIB).write_text(driver.config_dump())
        t_conf = time.monotonic() - t0
        state = driver.state()
        if state is None:
            raise FalloverError("no cluster node answers: nothing to back up from")
        groups: dict[str, GroupData] = {}
        points: dict[str, float] = {}
        for g in topo.groups:
            node = state.group_node(g.name)
            if node is None:
                raise FalloverError(f"group {g.name} is not running ({state.summary()}): its filesystem is "
                                    "mounted nowhere to copy it from")
            mount = testbed.mountpoint(g.name)
            progress(f"{g.name}: freezing {mount} on {node} and copying it")
            points[g.name], wall = time.monotonic(), time.time()
            copy = copy_out(testbed, node, mount)
            files, size = unpack(copy.archive, staging / DATA / g.name)
            groups[g.name] = GroupData(node, mount, files, size, point_wall=wall, freeze_s=copy.freeze_s)
            progress(f"{g.name}: {files} files ({size} bytes) from {node}; writes held for {copy.freeze_s} s")
        meta = BackupMeta(topology=topo.name, stack=topo.cluster.stack, created_wall=time.time(), groups=groups,
                          config=CIB, timings={"config_s": round(t_conf, 3)})
        meta.timings["backup_s"] = round(time.monotonic() - t0, 3)
        write_meta(staging, meta)
        progress("writing the manifest (sha256 of every file)")
        write_manifest(staging)
        if dest.exists():
            dest.rmdir()
        staging.rename(dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return BackupDone(dest, meta, points, time.monotonic() - t0)


def check_backup(src: Path, topo: Topology, only: Only = None) -> tuple[BackupMeta, dict[str, str]]:
    """The backup's description and manifest, once every byte is as backed up and it fits ``topo``."""
    sums = verify(src)
    meta = read_meta(src)
    where = src / META
    if meta.topology != topo.name:
        raise BackupRefused(f"{where}: a backup of cluster {meta.topology!r}, not of {topo.name!r} ({topo.source})")
    for name in meta.groups:
        if name not in [g.name for g in topo.groups]:
            raise BackupRefused(f"{where}: group {name!r} is not in {topo.source}")
    if only == "config" and meta.config is None:
        raise BackupRefused(f"{where}: this backup holds no cluster configuration")
    if only == "data" and not meta.groups:
        raise BackupRefused(f"{where}: this backup holds no data")
    return meta, sums


def restore(testbed: Testbed, driver: Driver, src: Path, *, only: Only = None, progress: Progress = quiet,
            timeout: float = 120.0) -> RestoreDone:
    """Put the backup in ``src`` back (``only`` one half of it); every wait bounded by ``timeout``."""
    meta, sums = check_backup(src, testbed.topology, only)
    refuse_unless_able(driver)
    t0 = time.monotonic()
    done = RestoreDone(0.0, False)
    if meta.config is not None and only in (None, "config"):
        saved = (src / meta.config).read_text()
        diff = differences(normalise(saved), normalise(driver.config_dump()))
        if diff:
            progress(f"the cluster configuration differs from the saved one ({diff[0].strip()[:80]} …): replacing it")
            driver.config_restore(saved)
            done.config_replaced = True
        else:
            progress("the cluster configuration is as saved: left as it is")
        done.timings["config_s"] = round(time.monotonic() - t0, 3)
    for name, data in meta.groups.items() if only in (None, "data") else ():
        t_group = time.monotonic()
        # running, and the cluster idle: right after a configuration change the cluster re-probes every
        # resource everywhere, and stopping the application in the middle of that only adds to it
        def running_and_idle(s: ClusterState, group: str = name) -> bool:
            return s.group_node(group) is not None and driver.busy(s) is None

        driver.wait_until(running_and_idle, timeout=timeout, what=f"{name} running and the cluster idle",
                          progress=progress)
        prefix = f"{DATA}/{name}/"
        mine = {rel[len(prefix):]: h for rel, h in sums.items() if rel.startswith(prefix)}
        archive = pack(src / DATA / name)
        with driver.application_stopped(name, timeout=timeout, progress=progress) as node:
            mount = testbed.mountpoint(name)
            progress(f"{name}: putting {data.files} files back into {mount} on {node}")
            put_back(testbed, node, mount, archive, mine)
            progress(f"{name}: {len(mine)} files on {node} match the backup (sha256)")
            done.nodes[name] = node
        done.timings[f"data_{name}_s"] = round(time.monotonic() - t_group, 3)
    for g in testbed.topology.groups:
        progress(f"waiting for {g.name} to answer at {g.service_ip}")
        wait_until(partial(service_answer, testbed, g.name), timeout=timeout, interval=0.2,
                   what=f"{g.name} answering at {g.service_ip}:{g.application.port}")
    done.restore_s = time.monotonic() - t0
    return done
