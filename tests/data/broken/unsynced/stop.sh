#!/bin/sh
# OCF stop: 0 once the app is gone (also when it was not running).
set -u
. "$(dirname "$0")/pid.sh"
if pid=$(unsynced_pid); then
    kill -TERM "$pid"
    kill -CONT "$pid" 2>/dev/null   # a stopped (hung) app acts on SIGTERM only once continued
    i=0
    while unsynced_pid >/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    unsynced_pid >/dev/null && kill -KILL "$pid"
fi
rm -f "/run/unsynced-${FALLOVER_PORT:-8080}/kvapp.pid"
exit 0
