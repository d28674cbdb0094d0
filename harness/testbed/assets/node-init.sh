#!/bin/bash
# PID 1 of an embedded cluster node (runs inside fresh net/mount/uts/ipc/pid namespaces).
# Why a shell script: it must reap re-parented orphans (bash `wait` does) and stay tiny.
# Usage: node-init.sh NODE NODE_STATE_DIR [HOST_DIR_UNDER_TMP]
# HOST_DIR_UNDER_TMP (nodes.under_tmp): the tree holding the topology file, kept visible at its path
# although the node gets a private /tmp (the user's commands may live there).
set -eu
NODE=$1
S=$2
KEEP=${3:-}
hostname "$NODE"
# Private state for this node; /var/log is replaced whole so no log dir is made on the host.
for d in /etc/corosync /var/lib/pacemaker /var/lib/corosync /var/log; do
    mount --bind "$S$d" "$d"
done
mount -t sysfs fallover-sys /sys                       # per-netns /sys/class/net
# Pacemaker's panic (PCMK_fail_fast, fence-reaction=panic) writes "b" to /proc/sysrq-trigger before its
# reboot(2), which in this PID namespace only ends the node: the host's trigger must not be reachable.
if [ -e /proc/sysrq-trigger ]; then mount --bind /dev/null /proc/sysrq-trigger; fi
mount -t tmpfs -o mode=755,size=64m fallover-run /run
# Boot marks for the harness (faults/ops.py booted): a stack still being started here is not a dead one.
mkdir -p /run/fallover-init && : > /run/fallover-init/booting
# This node's own links to its loop devices (layout.NODE_DISKS): one view of each shared disk
# per node, so that a power cut loses what this node had not flushed (diskviews.py).
mkdir -p /run/fallover-disks && mount --bind "$S/disks" /run/fallover-disks
mount -t tmpfs -o mode=1777,size=256m fallover-shm /dev/shm   # libqb IPC ring buffers
if [ -n "$KEEP" ]; then mkdir -p /run/fallover-keep && mount --bind "$KEEP" /run/fallover-keep; fi
mount -t tmpfs -o mode=1777,size=64m fallover-tmp /tmp
if [ -n "$KEEP" ]; then mkdir -p "$KEEP" && mount --move /run/fallover-keep "$KEEP" && rmdir /run/fallover-keep; fi
mkdir -p /run/lock /run/resource-agents
# The harness configures our network from outside, then creates "go".
while [ ! -e "$S/go" ]; do sleep 0.02; done
set +e
# The node's services (the cluster stack, and sshd on an SSH lab): nodes.services_script writes it.
/bin/sh "$S/services.sh"   # its last line marks /run/fallover-init/booted
while :; do wait; sleep 1; done
