"""Testbed providers, looked up by the topology's `provider` and imported lazily."""

from __future__ import annotations

import importlib

from harness.testbed.base import Testbed
from harness.topology import Topology

PROVIDERS = {
    "local": "harness.testbed.local:LocalTestbed",
    "ssh": "harness.testbed.ssh:SshTestbed",
    "vagrant": "harness.testbed.vagrant:VagrantTestbed",
}


def open_testbed(topology: Topology, **options: str) -> Testbed:
    module, _, cls = PROVIDERS[topology.provider].partition(":")
    factory = getattr(importlib.import_module(module), cls)
    testbed: Testbed = factory(topology, **options)
    return testbed
