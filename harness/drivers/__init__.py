"""Cluster drivers: read and steer the cluster software, chosen by the topology's `cluster.stack`."""

from __future__ import annotations

import importlib

from harness.drivers.base import Driver
from harness.testbed.base import Testbed

STACKS = {
    "pacemaker": "harness.drivers.pacemaker:PacemakerDriver",
    "keepalived": "harness.drivers.keepalived:KeepalivedDriver",
}


def open_driver(testbed: Testbed) -> Driver:
    """The driver of the testbed's cluster stack (imported lazily: a stack's tools may be absent)."""
    module, _, cls = STACKS[testbed.topology.cluster.stack].partition(":")
    driver: Driver = getattr(importlib.import_module(module), cls)(testbed)
    return driver
