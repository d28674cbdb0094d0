#!/usr/bin/python3 -S
"""The watcher behind `ocf:fallover:netwatch`: one long-lived process per watched network that keeps
the node attribute ocf:heartbeat:ethmonitor keeps (`link`: the adapter is up and has carrier) or the
one ocf:pacemaker:ping keeps (`ping`: the client host answers), forking `attrd_updater` only when the
value changes (and every REFRESH_S, in case the node's attribute manager restarted and lost it).

Why it exists: on an emulated (TCG) guest every fork and exec costs tens of milliseconds of a host
core, and those two agents are shell scripts that Pacemaker runs every monitor interval with dozens
of forks each. Measured 2026-11-30 on three idle guests: their two monitors every 5 s took 25-30 % of
a host core per guest, 81 % of the 2-core host in all, and every takeover operation then waited for
the CPU. Here a check is a read of /sys or one ICMP echo, no fork; a dead link or network is seen
within a second or two instead of a monitor interval plus a starved agent's run.

Standard library only (Pacemaker's python, outside any virtualenv). Transitions are logged on stderr,
which the agent sends to /var/log/cluster/netwatch.log.
"""

import argparse
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time

REFRESH_S = 30.0
"""Re-push an unchanged value this often: a restarted attribute manager starts empty."""
ATTRD_TIMEOUT_S = 20.0


def log(name, msg):
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime())
    sys.stderr.write("%s netwatch[%d] %s: %s\n" % (stamp, os.getpid(), name, msg))
    sys.stderr.flush()


def link_up(interface):
    """1 if the adapter is administratively up and has carrier (ethmonitor's link_status_only test)."""
    try:
        with open("/sys/class/net/%s/carrier" % interface) as f:
            return 1 if f.read().strip() == "1" else 0
    except OSError:  # EINVAL while the adapter is down, ENOENT when it is gone
        return 0


class LinkWatch:
    """The adapter's link, re-read on every kernel link event (rtnetlink) and at least every `interval` s:
    no polling several times a second for a cable that changes once a test."""

    def __init__(self, interface, interval):
        self.interface = interface
        self.interval = interval
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.sock.bind((0, 1))  # RTMGRP_LINK

    def wait(self):
        ready, _, _ = select.select([self.sock], [], [], self.interval)
        while ready:  # drain: one re-read answers every event so far
            self.sock.recv(65536)
            ready, _, _ = select.select([self.sock], [], [], 0)

    def value(self):
        return link_up(self.interface)


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def echo_request(ident, seq):
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    payload = b"fallover-netwatch"
    return struct.pack("!BBHHH", 8, 0, checksum(header + payload), ident, seq) + payload


class Pinger:
    """Echo requests every `interval` s; the host is unreachable once ATTEMPTS echoes, each given its time to be
    answered, went unanswered in a row, and reachable again at the next reply. As ocf:pacemaker:ping's
    `attempts` = 3 with a timeout each: in a real outage the first three echoes after it are over their time
    `window` s after it (0.2 s apart, then 1.2 s for the last: the 1.6 s window of old).

    Each echo's own age counts, not the time since the last reply: on a starved TCG guest this process, or the
    whole guest, stops for a second or two now and then, and a silence while nobody asked is no news about
    the network. Measured 2026-12-01 on the VMs, no fault in effect: "no reply for 1.6 s" read 0 twice in an
    hour on the active guest (06:57:46 while a peer rejoined, the client's HTTP probe slowing to 0.7-1.0 s at
    that moment; 07:52:24), and the second time the cluster moved the group away and back for it
    (packet_corrupt-node1-service, 27 s after the heal)."""

    ATTEMPTS = 3
    KEPT = 32  # send times kept since the last reply: enough for ATTEMPTS old ones behind the young ones

    def __init__(self, host, window, interval=0.2, clock=time.monotonic, sock=None):
        self.host = host
        self.answer_s = max(window - (self.ATTEMPTS - 1) * interval, interval)
        self.clock = clock
        self.ident = os.getpid() & 0xFFFF
        self.seq = 0
        self.replied = False  # nothing seen yet: the first value waits for a reply or the window
        self.unanswered = []  # send times since the last reply
        self.sock = sock or socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)

    def send(self):
        self.seq = (self.seq + 1) & 0xFFFF
        self.unanswered = self.unanswered[-(self.KEPT - 1):] + [self.clock()]
        try:
            self.sock.sendto(echo_request(self.ident, self.seq), (self.host, 0))
        except OSError:  # no route, adapter down: no reply will come, which is the answer
            pass

    def reply(self):
        """A reply to any of our echoes (a late one too: the host answers)."""
        self.replied = True
        self.unanswered = []

    def drain(self, timeout):
        """Read replies for up to `timeout` s."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            ready, _, _ = select.select([self.sock], [], [], left)
            if not ready:
                return
            packet, (src, _) = self.sock.recvfrom(2048)
            ihl = (packet[0] & 0x0F) * 4
            if src == self.host and len(packet) >= ihl + 8:
                kind, _, _, ident, _ = struct.unpack("!BBHHH", packet[ihl:ihl + 8])
                if kind == 0 and ident == self.ident:
                    self.reply()

    def value(self):
        now = self.clock()
        overdue = sum(1 for t in self.unanswered if now - t >= self.answer_s)
        return 1 if self.replied and overdue < self.ATTEMPTS else 0


def push(name, value, dampen):
    argv = ["attrd_updater", "-n", name, "-U", str(value)] + (["-d", dampen] if dampen else [])
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           timeout=ATTRD_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log(name, "attrd_updater failed: %s" % exc)
        return False
    if r.returncode != 0:
        log(name, "attrd_updater exited %d: %s" % (r.returncode, r.stderr.decode(errors="replace").strip()))
    return r.returncode == 0


def set_process_name(name):
    """So the agent can tell this process from a recycled PID (it reads /proc/PID/comm)."""
    try:
        import ctypes
        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--name", required=True, help="the node attribute")
    p.add_argument("--interface", help="watch this adapter's link (ethmonitor's attribute)")
    p.add_argument("--host", help="watch this host's echo replies (ping's attribute)")
    p.add_argument("--interval", type=float, default=0.2, help="seconds between echoes (link: between re-reads "
                   "without an event)")
    p.add_argument("--window", type=float, default=1.6, help="ping: no reply for this long = unreachable")
    p.add_argument("--dampen", default="", help="attrd_updater's -d")
    p.add_argument("--multiplier", type=int, default=1)
    p.add_argument("--pidfile", required=True)
    a = p.parse_args(argv)
    if bool(a.interface) == bool(a.host):
        p.error("exactly one of --interface and --host")
    set_process_name("netwatch")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # at once, even in a long wait for a link event
    try:
        return watch(a)
    finally:
        log(a.name, "stopping")


def watch(a):
    pinger = Pinger(a.host, a.window, a.interval) if a.host else None
    link = LinkWatch(a.interface, a.interval) if a.interface else None
    current, pushed_at, started = None, 0.0, time.monotonic()
    while True:
        if pinger:
            pinger.send()
            pinger.drain(a.interval)
            value = pinger.value()
            if current is None and not value and time.monotonic() - started < a.window:
                continue  # as ping's own start: 0 only once the tries are over, never a guess of 1
        else:
            value = link.value()
            if current is not None and value == current:
                link.wait()
                value = link.value()
        value *= a.multiplier
        now = time.monotonic()
        if value != current or now - pushed_at >= REFRESH_S:
            if value != current:
                log(a.name, "%s -> %s" % (current, value))
            if push(a.name, value, a.dampen):
                if current is None:  # the agent's start waits for this file: the first value is in attrd
                    with open(a.pidfile + ".tmp", "w") as f:
                        f.write("%d\n" % os.getpid())
                    os.rename(a.pidfile + ".tmp", a.pidfile)
                current, pushed_at = value, now


if __name__ == "__main__":
    sys.exit(main())
