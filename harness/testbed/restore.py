"""The end of `up` on a testbed that exists already: every node whole, then the cluster settled with all of them.

`up` before every test and every case is the operator's "bring it back to full redundancy". Two ways it
used to stop short, both seen in CI (2026-12-01, test_pacemaker_kill's teardown, then five tests after it):

- `up` powered on the nodes that were off *before* it waited; a node the cluster fenced *while* it waited
  (a fence the DC had scheduled for a pacemaker_kill before the heal restarted the node's stack) stays
  off, since stonith-action is off, and the wait accepted a powered-off node as settled;
- a node that runs but whose stack is not whole (pacemakerd gone) was never repaired: each later `up`
  waited 90 s for it to come online and failed, test after test.

So each node is made whole (`make_whole`: powered on, thawed, an incomplete stack restarted) before the
wait, and a node found powered off after it is started again and waited for, a few rounds at most.
"""

from __future__ import annotations

from collections.abc import Callable

from harness.errors import TestbedError, TransportError, WaitTimeout
from harness.testbed.base import Progress, Testbed, quiet

ROUNDS = 3
"""How many times a node fenced while the cluster settles is powered on again before `up` gives up."""


def restore(testbed: Testbed, *, timeout: float, progress: Progress = quiet, placement: bool = True,
            settle: bool = True, repair: Callable[[Testbed, str], None] | None = None) -> None:
    """Make every node whole, then wait (``recover``) until the cluster settles with every node on.

    Each round has the whole ``timeout``: a node fenced late in a long wait still gets the time to boot
    and join (a TCG guest: ~40 s). ``settle=False`` (an SSH lab, whose own `up` heals its journal over
    SSH and then waits) only powers on what is off, as before: repairing a stack first would pre-empt
    that journal's own, narrower heals. ``repair`` replaces `make_whole` (a user's cluster over SSH: power on
    what is off, nothing more). WaitTimeout as ``recover`` raises it, with what each node's own stack showed
    added to its last look.
    """
    from harness.drivers import open_driver
    from harness.faults.ops import make_whole

    names = testbed.topology.node_names
    if not settle:
        for n in names:
            if not testbed.running(n):
                progress(f"starting {n} (it was powered off)")
                testbed.power_on(n)
        return
    off: list[str] = []
    for _ in range(ROUNDS):
        for n in names:
            if not testbed.running(n):
                progress(f"starting {n} (it was powered off)")
            (repair or make_whole)(testbed, n)
        try:
            open_driver(testbed).recover(timeout=timeout, progress=progress, placement=placement)
        except WaitTimeout as e:
            raise WaitTimeout(e.what, e.timeout, f"{e.last}; {stacks(testbed)}") from None
        off = [n for n in names if not testbed.running(n)]
        if not off:
            return
        progress(f"{', '.join(off)} powered off while the cluster settled (fenced): starting it again")
    raise TestbedError(f"{', '.join(off)} powered off again each of the {ROUNDS} times the cluster settled "
                       "(fenced each time it came back?): see the nodes' pacemaker.log")


def stacks(testbed: Testbed) -> str:
    """What each node's own stack shows, for a timeout's message: the cluster's view says "offline", this says why."""
    from harness.drivers import open_driver
    from harness.faults.ops import pids

    needed = open_driver(testbed).stack_processes()[:3]
    wrong: list[str] = []
    for n in testbed.topology.node_names:
        try:
            if not testbed.running(n):
                wrong.append(f"{n} is powered off")
                continue
            missing = [c for c in needed if not pids(testbed, n, c)]
        except TransportError as e:
            wrong.append(f"{n} does not answer ({e})")
            continue
        if missing:
            wrong.append(f"{n} runs no {', '.join(missing)}")
    return "nodes' own stacks: " + ("; ".join(wrong) if wrong else f"every node runs {', '.join(needed)}")
