"""Fault commands of the CLI (`faults`, `inject`, `heal`); filled in by the faults work."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

FAULT_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def add_fault_commands(sub: Any, testbed_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    """No fault commands yet."""
