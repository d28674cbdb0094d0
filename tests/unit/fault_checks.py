"""Start a fault on a fake testbed and expect it refused or reported: the no-silent-no-op checks' helpers."""

from __future__ import annotations

from typing import Any

import pytest
from fake_testbed import FakeTestbed

from harness.faults.base import FaultNotApplicable, FaultNotInEffect
from harness.faults.nemesis import Nemesis
from harness.testbed.base import Testbed
from harness.timeline import Timeline


def failed_start(tb: Testbed, error: type[Exception], name: str,
                 **kw: Any) -> tuple[Exception, Nemesis, Timeline]:
    timeline = Timeline()
    nemesis = Nemesis(tb, timeline)
    with pytest.raises(error) as caught:
        nemesis.start(name, **kw)
    assert len(str(caught.value).splitlines()) == 1
    return caught.value, nemesis, timeline


def not_in_effect(tb: Testbed, name: str, **kw: Any) -> str:
    """Start the fault, expect FaultNotInEffect; the nemesis must have healed it (journal empty)."""
    err, nemesis, timeline = failed_start(tb, FaultNotInEffect, name, **kw)
    assert nemesis.journal.entries() == [] and nemesis.active == []
    kinds = [e.kind for e in timeline.events if e.kind != "test.mark"]  # a fault may mark when it struck
    assert kinds == ["fault.injected", "fault.healed"]
    return str(err)


def refused(tb: FakeTestbed, name: str, **kw: Any) -> str:
    """Start the fault, expect FaultNotApplicable with nothing journaled, put on the timeline or switched."""
    err, nemesis, timeline = failed_start(tb, FaultNotApplicable, name, **kw)
    assert not nemesis.journal.path.exists()
    assert timeline.events == []
    assert tb.switched == []
    return str(err)

