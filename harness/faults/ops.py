"""Small operations several faults share: find where a group runs, signal a node's process, make a node whole."""

from __future__ import annotations

import time

from harness.errors import FalloverError, TestbedError, TransportError, WaitTimeout
from harness.testbed.base import Testbed
from harness.wait import wait_until


def group_node(testbed: Testbed, group: str) -> str:
    """The node a group runs on right now (a fault on "the application" strikes there)."""
    from harness.drivers import open_driver

    state = open_driver(testbed).state()
    node = state.group_node(group) if state else None
    if node is None:
        raise FalloverError(f"group {group} is not running anywhere: "
                            f"{state.summary() if state else 'no node answers'}")
    return node


def pids(testbed: Testbed, node: str, comm: str) -> list[int]:
    """PIDs (in the node's own PID namespace) of processes named ``comm``: all of them are ours."""
    r = testbed.node(node).run(["pidof", comm], timeout=10, check=False)
    return [int(p) for p in r.stdout.split()]


def signal_processes(testbed: Testbed, node: str, comm: str, sig: str) -> list[int]:
    found = pids(testbed, node, comm)
    if found:
        testbed.node(node).run(["kill", f"-{sig}", *map(str, found)], timeout=10, check=False)
    return found


def make_whole(testbed: Testbed, node: str) -> None:
    """Power on / thaw / restart the cluster software, whichever the node needs, and check it worked.

    The cluster may fence the node while we look at it (that is what it is for): then we look
    again and power it on. A node still not whole after five tries raises: the heal failed; one that
    runs but does not answer (booting: its SSH not up yet) is tried until REACH_S have passed as well.
    """
    attempt, deadline = 0, None
    while True:
        try:
            _make_whole_once(testbed, node)
            return
        except TransportError:
            deadline = deadline or time.monotonic() + REACH_S
            attempt += 1
            if attempt >= 5 and time.monotonic() >= deadline:
                raise
            time.sleep(0.5 if attempt < 5 else 2.0)
        except TestbedError:
            attempt += 1
            if attempt >= 5:
                raise
            time.sleep(0.5)


REACH_S = 120.0
"""How long a node that does not answer is tried again before its repair is called failed.

A node the cluster fenced and powered on again while a heal ran answers only once its boot has started sshd:
on the VMs (corosync_kill-node2, 2026-12-02) the heal's release met the port closed 1 s before sshd listened,
its five tries took 2.5 s, and the heal of a cluster that did everything right was called failed. A TCG
guest's SSH is up 35-60 s after its power-on."""


def _make_whole_once(testbed: Testbed, node: str) -> None:
    if not testbed.running(node):
        testbed.power_on(node)
        _check_whole(testbed, node, stack=False)  # its init starts the stack, in its own time
        return
    from harness.drivers import open_driver

    testbed.thaw(node)
    init_starts_it = booted(testbed, node)
    stack = open_driver(testbed).stack_processes()

    def whole() -> bool:
        return all(pids(testbed, node, comm) for comm in stack[:3])

    complete = whole()
    if not complete and init_starts_it:  # its init may be starting it still: looked at until STARTING_S have passed
        try:
            complete = wait_until(whole, timeout=STARTING_S, interval=RELOOK_S,
                                  what=f"{node}'s cluster stack started by its init")
        except WaitTimeout:
            complete = False
    if not complete:
        # a half-dead stack (corosync gone, pacemaker lingering) is restarted as a whole, members first
        for comm in (*stack[1:], stack[0]):
            signal_processes(testbed, node, comm, "KILL")
        testbed.start_services(node)
    # a stack just seen complete is not looked for again (2 pidof over SSH: 4.3 s on a loaded TCG guest)
    _check_whole(testbed, node, stack=not complete)


RELOOK_S = 3.0
"""How often a stack its init may still be starting is looked at again."""
STARTING_S = 15.0
"""How long a stack its init may still be starting gets to be complete before it is restarted as a whole.

systemd calls a boot finished once every unit has started, and a `Type=simple` unit (pacemaker.service)
has started when systemd has forked it: on a loaded TCG guest pacemakerd ran 4.7 s after
`systemctl is-system-running --wait` returned, its controller 0.4 s later (heartbeat_loss-node1 on the
VMs, 2026-12-01). One second look 3 s after the first found no pacemakerd, and the harness SIGKILLed the
stack systemd was starting: its log's errors failed a case the cluster had passed."""
BOOT_WAIT_S = 90
"""How long a node's init may take to finish booting before its stack is judged anyway (a TCG guest: ~40 s, its
SSH up after ~35 of them)."""
SYSTEMD_RUN = "${FALLOVER_SYSTEMD_RUN:-/run/systemd/system}"
"""Present where systemd runs the node (shell; another directory in the unit tests only)."""
INIT_MARKS = "${FALLOVER_INIT_MARKS:-/run/fallover-init}"
"""Where the embedded testbed's init (assets/node-init.sh) notes `booting` at its start, and its services script
`booted` each time it has started them (at boot or restarted by the harness); /run is new with each power-on."""
BOOT_GRACE_S = 15
"""How long after its services were started a node's incomplete stack may still be one that is starting."""
_BOOTED = (f"if [ -d {SYSTEMD_RUN} ]; then\n"
           f"  timeout {BOOT_WAIT_S} systemctl is-system-running --wait >/dev/null 2>&1; echo systemd; exit 0\n"
           f"fi\n[ -e {INIT_MARKS}/booting ] || exit 0\n"  # an init that starts nothing: the harness does
           f"timeout {BOOT_WAIT_S} sh -c 'until [ -e {INIT_MARKS}/booted ]; do sleep 0.1; done'\n"
           f"echo init $(( $(date +%s) - $(stat -c %Y {INIT_MARKS}/booted 2>/dev/null || echo 0) ))")


def booted(testbed: Testbed, node: str) -> bool:
    """Wait until the node's init has finished booting; True if its init may still be starting the stack.

    A stack that the node's own init is still starting is not a half-dead one. Seen on the VMs
    (corosync_kill-node2, 2026-12-01): the node fenced during the fault was powered on by the heal,
    the heal's next step met its SSH up while corosync had started and pacemakerd not yet, took that
    for a half-dead stack and SIGKILLed it daemon by daemon over 10 s while the boot went on starting
    it: the node's log filled with the errors of a stack killed mid-start, and the case failed its
    log audit for the harness's doing. The same on the embedded testbed once `up` made every node
    whole (2026-12-01): a node the heal had just powered on was restarted mid-start ("Aborting start-up
    because active Pacemaker instance found").

    Under systemd always True (a unit is "started" at its fork, seconds before pacemakerd runs on a loaded
    guest and forks its controller, and systemd restarts what dies: see STARTING_S); under the embedded
    init only within BOOT_GRACE_S of its services script last returning (later a missing daemon is a dead
    one: nothing there restarts it)."""
    r = testbed.node(node).run(["sh", "-c", _BOOTED], timeout=BOOT_WAIT_S + 30, check=False)
    out = r.stdout.split()
    if out[:1] == ["systemd"]:
        return True
    return out[:1] == ["init"] and len(out) == 2 and out[1].lstrip("-").isdigit() and int(out[1]) < BOOT_GRACE_S


def _check_whole(testbed: Testbed, node: str, stack: bool = True, timeout: float = 5.0) -> None:
    """The node runs, is not frozen, and (``stack``) its cluster stack has started; TestbedError if not."""
    from harness.drivers import open_driver

    stack_names = open_driver(testbed).stack_processes()[:2]
    wrong: list[str] = []

    def whole() -> bool:
        if not testbed.running(node):
            wrong[:] = ["its init is not running"]
        elif testbed.freezer_state(node) not in ("THAWED", "ABSENT"):
            wrong[:] = [f"its freezer reads {testbed.freezer_state(node)}"]
        else:
            wrong[:] = [f"{comm} is not running" for comm in stack_names if stack and not pids(testbed, node, comm)]
        return not wrong

    try:  # one wait (harness/wait.py): a recovery's runbook shows it as one step, not its polls
        wait_until(whole, timeout=timeout, interval=0.1,
                   what=f"{node} running{' with ' + ' and '.join(stack_names) if stack else ''} after its repair")
    except WaitTimeout:
        raise TestbedError(f"{node} is not whole after its repair: {', '.join(wrong)}") from None
