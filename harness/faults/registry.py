"""The fault catalogue: every fault by name, in the order a test plan walks them."""

from __future__ import annotations

from harness.faults.app import AppHang, AppKill, AppStartFail
from harness.faults.base import Fault
from harness.faults.cluster import CorosyncKill, PacemakerKill
from harness.faults.disk import (
                                    DiskFull,
                                    DiskHang,
                                    DiskPull,
                                    DiskReadErrors,
                                    DiskWriteErrors,
)
from harness.faults.fencing import FenceFail, FenceHang
from harness.faults.network import (
                                    AdapterDown,
                                    HeartbeatLoss,
                                    NetworkDownGlobal,
                                    NetworkDownLocal,
                                    PacketCorrupt,
                                    PacketDelay,
                                    PacketLoss,
                                    Partition,
)
from harness.faults.node import CpuOverload, NodeHang, NodePowerOff, NodeStop
from harness.faults.planned import (
                                    GroupMove,
                                    NodeMaintenance,
                                    NodeStandby,
                                    RollingRestart,
)
from harness.faults.daemons import (SUBDAEMON_KILLS, CorosyncKillLoop, CorosyncPauseLong, CorosyncPauseShort,
                                    PacemakerdKill)
from harness.faults.partitions import PartitionBridge, PartitionMajority, PartitionOneWay
from harness.faults.recovery import AppFailureExpiry, AppKillThreshold
from harness.faults.whole import ClusterOneByOne, ClusterReattach, ClusterSimulRestart

_ALL: list[Fault] = [
    NodePowerOff(), NodeStop(), NodeHang(), CpuOverload(),
    AdapterDown(), NetworkDownLocal(), NetworkDownGlobal(), Partition(), PacketLoss(), HeartbeatLoss(), PacketDelay(), PacketCorrupt(),
    DiskPull(), DiskReadErrors(), DiskWriteErrors(), DiskHang(), DiskFull(),
    AppKill(), AppHang(), AppStartFail(),
    CorosyncKill(), PacemakerKill(),
    FenceFail(), FenceHang(),
    GroupMove(), NodeStandby(), NodeMaintenance(), RollingRestart(),
    # suites/cluster: too slow for the daily check (issue 14)
    PartitionMajority(), PartitionOneWay(), PartitionBridge(),
    *SUBDAEMON_KILLS, PacemakerdKill(), CorosyncKillLoop(), CorosyncPauseShort(), CorosyncPauseLong(),
    ClusterSimulRestart(), ClusterOneByOne(), ClusterReattach(),
    AppKillThreshold(), AppFailureExpiry(),
]

FAULTS: dict[str, Fault] = {f.name: f for f in _ALL}
