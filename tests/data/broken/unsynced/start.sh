#!/bin/sh
# Start fallover's sample key-value app broken on purpose: --ack-before-fsync acknowledges a PUT
# before it is durable. Exit codes speak OCF: 0 started, 1 failed.
set -u
here=$(cd "$(dirname "$0")" && pwd)
run=/run/unsynced-${FALLOVER_PORT:-8080}
mkdir -p "$run"
if "$here/monitor.sh"; then
    exit 0
fi
setsid -f /usr/bin/python3 "$here/../../../../harness/agents/kvapp.py" --ack-before-fsync \
    --pidfile "$run/kvapp.pid" </dev/null >>/var/log/cluster/unsynced-kvapp.log 2>&1 || exit 1
i=0
while [ $i -lt 150 ]; do
    "$here/monitor.sh" && exit 0
    sleep 0.1
    i=$((i + 1))
done
echo "unsynced kvapp: not answering 15 s after start"
exit 1
