"""Literal histories for the checker tests: events, probe runs, requests, topologies, contexts."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from harness.checkers import CHECKERS, UNKNOWN, Context, Verdict, check_safe, merge_valid, run_all
from harness.checkers.detection import check_detection
from harness.checkers.failed_requests import check_failed_requests
from harness.checkers.fallover import check_fallover
from harness.checkers.lost_writes import check_lost_writes
from harness.checkers.notification import check_notification
from harness.checkers.outage import check_outage, outages
from harness.checkers.policy import check_policy
from harness.checkers.redundancy import check_redundancy_restored
from harness.checkers.split_brain import check_split_brain, interleaved
from harness.timeline import (ARP_GRATUITOUS, ARP_REPLY, CLUSTER_FAILED_ACTION, CLUSTER_GROUP_SPLIT,
                              CLUSTER_GROUP_STARTED, CLUSTER_GROUP_STOPPED, CLUSTER_NODE_JOINED, CLUSTER_NODE_LOST,
                              CLUSTER_REDUNDANT, FAULT_HEALED, FAULT_INJECTED, NOTIFICATION, Event, ProbeSample,
                              Request, Timeline)
from harness.topology import Topology

BASE = 5000.0  # an arbitrary monotonic origin: checkers must only use differences
MAC1, MAC2 = "52:54:00:00:00:01", "52:54:00:00:00:02"
VIP = "10.77.1.100"


def ev(t: float, kind: str, node: str | None = None, /, **data: Any) -> Event:
    return Event(mono=BASE + t, wall=1.7e9 + t, kind=kind, node=node, data=data)


def probe(t0: float, t1: float, ok: bool, node: str | None, period: float = 0.02,
          latency: float = 0.002) -> list[ProbeSample]:
    """Samples sent every `period` from t0 (inclusive) to t1 (exclusive)."""
    n = round((t1 - t0) / period)
    return [ProbeSample(mono=BASE + t0 + i * period, wall=1.7e9 + t0 + i * period, ok=ok,
                        latency_s=latency if ok else 0.5, node=node if ok else None,
                        error=None if ok else "timed out") for i in range(n)]


def req(t: float, kind: str = "put", ok: bool = True, key: str | None = None, value: str | None = None,
        **kw: Any) -> Request:
    return Request(mono=BASE + t, wall=1.7e9 + t, kind=kind, ok=ok, latency_s=kw.pop("latency_s", 0.004),
                   key=key, value=value, **kw)


def topo(policy: str = "cascading", **sla: float) -> Topology:
    return Topology.model_validate({
        "name": "unit", "nodes": [{"name": "node1"}, {"name": "node2"}, {"name": "node3"}],
        "networks": [{"name": "service", "role": "service", "subnet": "10.77.1.0/24"}],
        "disks": [{"name": "shared"}],
        "groups": [{"name": "app", "service_ip": VIP, "network": "service", "disk": "shared",
                    "nodes": ["node1", "node2", "node3"], "policy": policy}],
        "sla": {"max_detection_s": 5, "max_fallover_s": 15, "max_outage_s": 15, "max_recovery_s": 30, **sla}})


def history(*, replace: dict[str, list[Event]] | None = None, extra: Sequence[Event] = (),
            samples: list[ProbeSample] | None = None) -> Timeline:
    """A clean cascading fallover of group app: node1 powered off at 0, node2 serves from 4.2, node1 rejoins
    after the heal at 10 and takes the group back at 14; `replace` swaps one phase's events."""
    phases: dict[str, list[Event]] = {
        "setup": [ev(-5, CLUSTER_GROUP_STARTED, "node1", group="app"), ev(-4, CLUSTER_REDUNDANT),
                  ev(-3, ARP_GRATUITOUS, ip=VIP, mac=MAC1), ev(-0.01, ARP_REPLY, ip=VIP, mac=MAC1)],
        "fault": [ev(0, FAULT_INJECTED, "node1", fault="poweroff", target="node1", family="node")],
        "detect": [ev(2.0, CLUSTER_NODE_LOST, "node1")],
        "notify": [ev(2.1, NOTIFICATION, "node1", kind="node", desc="lost")],
        "takeover": [ev(3.0, CLUSTER_GROUP_STOPPED, group="app"), ev(4.0, CLUSTER_GROUP_STARTED, "node2", group="app"),
                     ev(4.01, ARP_GRATUITOUS, ip=VIP, mac=MAC2), ev(4.21, ARP_GRATUITOUS, ip=VIP, mac=MAC2)],
        "heal": [ev(10, FAULT_HEALED, "node1", fault="poweroff", target="node1")],
        "rejoin": [ev(12, CLUSTER_NODE_JOINED, "node1"), ev(13.9, CLUSTER_GROUP_STARTED, "node1", group="app"),
                   ev(13.91, ARP_GRATUITOUS, ip=VIP, mac=MAC1)],
        "redundant": [ev(15, CLUSTER_REDUNDANT)],
    }
    phases.update(replace or {})
    if samples is None:
        samples = probe(-2, 0, True, "node1") + probe(0, 4.2, False, None) + probe(4.2, 13.8, True, "node2") \
            + probe(13.8, 14.0, False, None) + probe(14.0, 20, True, "node1")
    return Timeline(events=[e for p in phases.values() for e in p] + list(extra), probe=samples)


def ctx(timeline: Timeline | None = None, requests: Sequence[Request] = (), policy: str = "cascading",
        **expectation: Any) -> Context:
    return Context(timeline=timeline or history(), requests=list(requests), topology=topo(policy),
                   expectation={"group": "app", **expectation})


# -- base -----------------------------------------------------------------------------------------
