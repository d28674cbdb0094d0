#!/bin/sh
# Start userapp like an init script does: daemonize it, then wait until it answers.
# Exit codes speak OCF: 0 started, 1 failed.
set -u
here=$(cd "$(dirname "$0")" && pwd)
run=/run/userapp-${FALLOVER_PORT:-8080}
mkdir -p "$run"
if "$here/monitor.sh"; then
    echo "userapp: already running"
    exit 0
fi
/usr/bin/python3 "$here/server.py" --daemon "$run/userapp.pid" </dev/null || exit 1
i=0
while [ $i -lt 150 ]; do
    "$here/monitor.sh" && exit 0
    sleep 0.1
    i=$((i + 1))
done
echo "userapp: not answering 15 s after start"
exit 1
