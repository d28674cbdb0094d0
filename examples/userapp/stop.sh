#!/bin/sh
# OCF stop: 0 once the server is gone (also when it was not running).
set -u
. "$(dirname "$0")/pid.sh"
pidfile=/run/userapp-${FALLOVER_PORT:-8080}/userapp.pid
if pid=$(userapp_pid); then
    kill -TERM "$pid"
    kill -CONT "$pid" 2>/dev/null   # a stopped (hung) server acts on SIGTERM only once continued
    i=0
    while userapp_pid >/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    if userapp_pid >/dev/null; then
        echo "userapp: pid $pid ignored SIGTERM for 5 s, sending SIGKILL"
        kill -KILL "$pid"
    fi
fi
rm -f "$pidfile"
exit 0
