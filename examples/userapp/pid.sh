# Sourced by monitor.sh and stop.sh: print the PID of the running server (status 0), or status 1.
# The PID file is checked against the live process (not a zombie, still our server.py), so a PID
# recycled after a crash is never taken for the server.
userapp_pid() {
    _f=/run/userapp-${FALLOVER_PORT:-8080}/userapp.pid
    [ -s "$_f" ] || return 1
    read -r _p <"$_f" || return 1
    _s=$(sed 's/.*) //' "/proc/$_p/stat" 2>/dev/null | cut -d' ' -f1)
    [ -n "$_s" ] && [ "$_s" != Z ] || return 1
    tr '\0' ' ' <"/proc/$_p/cmdline" | grep -q 'userapp/server.py' || return 1
    echo "$_p"
}
