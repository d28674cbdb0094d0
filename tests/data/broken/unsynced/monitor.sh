#!/bin/sh
# OCF monitor: 0 running and answering, 7 not running, 1 running but not answering.
set -u
. "$(dirname "$0")/pid.sh"
unsynced_pid >/dev/null || exit 7
curl -sf -o /dev/null -m 2 "http://127.0.0.1:${FALLOVER_PORT:-8080}/health" || exit 1
exit 0
