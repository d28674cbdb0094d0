"""Repository-wide pytest setup: the fallover plugin itself is registered through its pytest11 entry point."""

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Tests against the embedded testbed need root; say so plainly instead of failing obscurely.
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root: the embedded testbed makes namespaces, loop devices, cgroups")
    for item in items:
        if "testbed" in item.keywords:
            item.add_marker(skip)
