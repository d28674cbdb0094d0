#!/bin/sh
# Provisions one guest of the fallover VM testbed (run by vagrant's shell provisioner as root).
# Its inputs come from the harness, in the node's payload directory (this script's directory):
# `env` (variables, see harness/testbed/vagrantconf.py:node_env), corosync.conf, authkey, cib.xml,
# fence_xvm.key and the agents. Idempotent: provisioning again changes nothing that is in place.
set -eu
P=$(dirname "$0")
. "$P/env"
log() { echo "provision $NODE: $*"; }
# Enabled as `systemctl enable` would (its [Install] section), without its reloads: on Debian it also runs
# update-rc.d for the units' init scripts, and 11 daemon-reloads of ~4 s each took 43 s of a TCG guest's
# provisioning (measured). The links take effect at the next boot; this boot starts the units itself.
enable() {   # SYSROOT: a unit test's stand-in for /
  for u in "$@"; do
    f=/lib/systemd/system/$u.service
    for t in $(sed -n 's/^WantedBy=//p' "${SYSROOT:-}$f"); do
      mkdir -p "${SYSROOT:-}/etc/systemd/system/$t.wants"
      ln -sfn "$f" "${SYSROOT:-}/etc/systemd/system/$t.wants/$u.service"
    done
    for a in $(sed -n 's/^Alias=//p' "${SYSROOT:-}$f"); do ln -sfn "$f" "${SYSROOT:-}/etc/systemd/system/$a"; done
  done
}

log "hostname, hosts, adapters"
hostnamectl set-hostname "$NODE" 2>/dev/null || echo "$NODE" > /etc/hostname
hostname "$NODE"
{ echo "127.0.0.1 localhost"; for h in $HOSTS; do echo "${h%%=*} ${h#*=}"; done; } > /etc/hosts
for nic in $NICS; do   # MAC=IFACE=ADDRESS/PREFIX
  mac=${nic%%=*}; rest=${nic#*=}; dev=${rest%%=*}; addr=${rest#*=}
  {
    printf '[Match]\nMACAddress=%s\n[Link]\nRequiredForOnline=no\n' "$mac"
    printf '[Network]\nAddress=%s\nLinkLocalAddressing=no\nIPv6AcceptRA=no\nConfigureWithoutCarrier=yes\n' "$addr"
    # fence_xvm multicasts its request on the service network (fence_virtd listens on that bridge)
    if [ "$dev" = "$FENCE_IFACE" ]; then printf '[Route]\nDestination=224.0.0.0/4\n'; fi
  } > /etc/systemd/network/20-fallover-$dev.network
done
networkctl reload
for nic in $NICS; do rest=${nic#*=}; dev=${rest%%=*}; networkctl reconfigure "$dev" >/dev/null 2>&1 || true; done

log "iSCSI: initiator, login to every LUN"
mkdir -p /etc/iscsi
echo "InitiatorName=$INITIATOR" > /etc/iscsi/initiatorname.iscsi
sed -i -e "s/^node.session.timeo.replacement_timeout = .*/node.session.timeo.replacement_timeout = $ISCSI_REPLACEMENT/" \
  -e "s/^node.conn\[0\].timeo.noop_out_interval = .*/node.conn[0].timeo.noop_out_interval = $ISCSI_NOOP_INTERVAL/" \
  -e "s/^node.conn\[0\].timeo.noop_out_timeout = .*/node.conn[0].timeo.noop_out_timeout = $ISCSI_NOOP_TIMEOUT/" \
  /etc/iscsi/iscsid.conf
sed -i 's/^node.startup = .*/node.startup = automatic/' /etc/iscsi/iscsid.conf
# bookworm's iscsiadm (2.1.8) makes its lock directory with access() then mkdir(), and gives up ("Could not open
# /run/lock/iscsi: File exists", then "No records found") when iscsid made it in between: a fenced node booted
# without its shared disk that way (open-iscsi issue #95). Made by tmpfiles before either starts, it is never raced.
# The box has this file already; older boxes get it here.
mkdir -p /etc/tmpfiles.d
printf 'd /run/lock/iscsi 0700 root root -\n' > /etc/tmpfiles.d/fallover-iscsi.conf
systemd-tmpfiles --create /etc/tmpfiles.d/fallover-iscsi.conf
systemctl restart iscsid
iscsiadm -m discovery -t st -p "$PORTAL" >/dev/null
for iqn in $IQNS; do
  iscsiadm -m node -T "$iqn" -p "$PORTAL" -o update -n node.startup -v automatic
  iscsiadm -m node -T "$iqn" -p "$PORTAL" -o update -n node.session.timeo.replacement_timeout -v "$ISCSI_REPLACEMENT"
  iscsiadm -m node -T "$iqn" -p "$PORTAL" -o update -n "node.conn[0].timeo.noop_out_interval" -v "$ISCSI_NOOP_INTERVAL"
  iscsiadm -m node -T "$iqn" -p "$PORTAL" -o update -n "node.conn[0].timeo.noop_out_timeout" -v "$ISCSI_NOOP_TIMEOUT"
  iscsiadm -m session 2>/dev/null | grep -q "$iqn" || iscsiadm -m node -T "$iqn" -p "$PORTAL" --login >/dev/null
done
enable iscsid open-iscsi
mkdir -p "$STATE/disks" "$STATE/faults" "$AGENTS"
for link in $DISK_LINKS; do   # by-path=stable name the Filesystem resource uses
  dev=${link%%=*}; name=${link#*=}
  for i in $(seq 100); do [ -e "$dev" ] && break; sleep 0.2; done
  [ -e "$dev" ] || { echo "no $dev after the iSCSI login" >&2; exit 1; }
  ln -sfn "$dev" "$name"
done
for m in $MOUNTS; do mkdir -p "$m"; done

log "agents, alert forwarder, fence key"
install -D -m 755 "$P/fallover-app" /usr/lib/ocf/resource.d/fallover/fallover-app
install -m 755 "$P/kvapp.py" "$AGENTS/kvapp.py"
install -m 755 "$P/netwatch" /usr/lib/ocf/resource.d/fallover/netwatch   # TCG guests' link/ping watcher
install -m 755 "$P/netwatch.py" "$AGENTS/netwatch.py"
install -m 755 "$P/fallover-alert" "$AGENTS/fallover-alert.real"
install -m 755 "$P/fallover-alert-forward" "$AGENTS/fallover-alert"
echo "$COLLECTOR" > "$AGENTS/collector"
chmod 755 "$STATE" "$AGENTS"
install -d -m 2775 -g haclient /var/log/cluster
touch "$NOTIFY_LOG"; chown hacluster:haclient "$NOTIFY_LOG"
install -D -m 600 "$P/fence_xvm.key" /etc/cluster/fence_xvm.key

log "corosync and pacemaker"
install -m 644 "$P/corosync.conf" /etc/corosync/corosync.conf
install -m 400 "$P/authkey" /etc/corosync/authkey
if [ ! -s /var/lib/pacemaker/cib/cib.xml ]; then
  install -m 600 -o hacluster -g haclient "$P/cib.xml" /var/lib/pacemaker/cib/cib.xml
fi
# the shared disk before the stack at boot (the local box has this drop-in already: no reload then)
dropin=/etc/systemd/system/corosync.service.d/fallover.conf
order='[Unit]
After=open-iscsi.service network-online.target'
if [ "$(cat "$dropin" 2>/dev/null)" != "$order" ]; then
  mkdir -p "${dropin%/*}"; echo "$order" > "$dropin"; systemctl daemon-reload
fi
enable corosync pacemaker
systemctl start corosync pacemaker
log "done"
