"""A checkout under the host's /tmp stays visible in the nodes (their /tmp is private)."""

from __future__ import annotations

from pathlib import Path

from harness.testbed.nodes import under_tmp


def test_the_tree_under_tmp_holding_the_topology_is_kept() -> None:
    assert under_tmp(Path("/tmp/ci-clone/testbeds/local-userapp.yaml")) == "/tmp/ci-clone"
    assert under_tmp(Path("/tmp/x/y/z/t.yaml")) == "/tmp/x"


def test_elsewhere_or_directly_in_tmp_nothing_is_kept() -> None:
    assert under_tmp(Path("/work/main/testbeds/local.yaml")) is None
    assert under_tmp(Path("/tmp/t.yaml")) is None
    assert under_tmp(None) is None
