"""The one deadline loop (`wait.poll`) under its two callers: wait_until raises, look_until returns the last look.

Counted looks, no wall-clock limits: a timeout of 0 allows exactly one look.
"""

from __future__ import annotations

import pytest

from harness.errors import WaitTimeout
from harness.faults import base
from harness.faults.base import look_until
from harness.wait import poll, wait_until


def test_poll_returns_the_last_look_at_the_deadline_without_raising() -> None:
    looks: list[int] = []

    def look() -> int:
        looks.append(len(looks))
        return looks[-1]

    assert poll(look, lambda n: n < 0, timeout=0, interval=0.01) == (0, False)
    assert looks == [0]


def test_poll_stops_at_the_first_good_look_even_a_falsy_one() -> None:
    answers = iter([True, True, False, True])
    assert poll(lambda: next(answers), lambda carrier: carrier is False, timeout=60, interval=0) == (False, True)
    assert next(answers) is True  # the look after the good one never happened


def test_wait_until_raises_naming_what_and_the_last_state() -> None:
    with pytest.raises(WaitTimeout, match="waiting for the carrier; last seen: still up") as caught:
        wait_until(lambda: None, timeout=0, what="the carrier", describe=lambda: "still up")
    assert caught.value.timeout == 0


def test_look_until_waits_as_long_as_settle_s_says_when_called(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "SETTLE_S", 0)
    looks: list[str] = []

    def freezer() -> str:
        looks.append("THAWED")
        return looks[-1]

    assert look_until(freezer, lambda state: state == "FROZEN") == "THAWED"
    assert looks == ["THAWED"]  # SETTLE_S = 0: one look, no second after a sleep
