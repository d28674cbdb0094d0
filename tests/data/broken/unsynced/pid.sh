# Sourced by monitor.sh and stop.sh: print the PID of the running app (status 0), or status 1.
# Checked against the live process (not a zombie, still kvapp.py), so a recycled PID never counts.
unsynced_pid() {
    _f=/run/unsynced-${FALLOVER_PORT:-8080}/kvapp.pid
    [ -s "$_f" ] || return 1
    read -r _p <"$_f" || return 1
    _s=$(sed 's/.*) //' "/proc/$_p/stat" 2>/dev/null | cut -d' ' -f1)
    [ -n "$_s" ] && [ "$_s" != Z ] || return 1
    tr '\0' ' ' <"/proc/$_p/cmdline" | grep -q 'kvapp.py --ack-before-fsync' || return 1
    echo "$_p"
}
