# Process and port helpers shared by the private labs (lab.sh, rspamd-lab.sh,
# pg-lab.sh): sourced, never run. The sourcing script sets WAIT_STEPS.

# True while something accepts TCP connections on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# True while pid $1 exists and is not a zombie (PID 1 may not reap here).
alive() {
    local stat
    [[ -n ${1:-} ]] || return 1
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

# wait_until CMD...: poll CMD every 50 ms, at most WAIT_STEPS times.
wait_until() {
    local i
    for ((i = 0; i < WAIT_STEPS; i++)); do
        "$@" && return 0
        sleep 0.05
    done
    return 1
}
port_closed() { ! port_open "$1"; }
dead() { ! alive "$1"; }
