"""How many locust users a case runs with: `--users` when given, else the testbed's own load (its pace)."""

from __future__ import annotations

from types import SimpleNamespace

from harness.pytest_plugin import load_users
from harness.testbed.base import Pace
from harness.testbed.vagrant import TCG_PACE


def config(users: int | None) -> SimpleNamespace:
    return SimpleNamespace(getoption=lambda name: {"--users": users}[name])


def test_the_embedded_testbed_runs_ten_users_and_a_tcg_guest_two() -> None:
    assert load_users(SimpleNamespace(), config(None)) == Pace().load_users == 10  # type: ignore[arg-type]
    assert load_users(SimpleNamespace(pace=TCG_PACE), config(None)) == 2  # type: ignore[arg-type]


def test_users_asked_for_win_over_the_testbeds_own() -> None:
    assert load_users(SimpleNamespace(pace=TCG_PACE), config(7)) == 7  # type: ignore[arg-type]
    assert load_users(SimpleNamespace(), config(1)) == 1  # type: ignore[arg-type]
