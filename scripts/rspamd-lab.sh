#!/usr/bin/env bash
# rspamd-lab.sh: a private, throw-away rspamd (Debian's package) on 127.0.0.1
# for ticketd's spam tests.
#
#   rspamd-lab.sh start DIR   start rspamd in DIR (created if needed), print DIR/rspamd.env
#   rspamd-lab.sh stop DIR    stop it (idempotent)
#
# The normal worker (the HTTP scanning API, POST /checkv2) and the proxy in
# milter mode (for a lab Postfix's smtpd_milters, as a border runs it) run,
# each on a free port. Config, pid file, state and log live under DIR: nothing of
# /etc/rspamd is changed and the system service is never started; the
# package's stock config is read and overridden through DIR's own local.d
# and override.d. No Redis: the modules that need it stay off. Network
# checks (RBL, SPF, DKIM, DMARC, fuzzy, hfilter, ASN) are off too, so a
# verdict depends on the message alone and no test waits for DNS.
# Startup takes under a second: the URL matcher gets a short TLD list
# instead of the public suffix list (whose compilation takes ~8 s).
#
# As root rspamd runs as the package's _rspamd user; otherwise as the caller.
set -euo pipefail

export PATH="/usr/sbin:/usr/bin:/sbin:/bin:${PATH:-}"

readonly WAIT_STEPS=400                  # x 0.05 s = 20 s bound on every wait
readonly RSPAMD_USER=_rspamd             # made by Debian's rspamd package

die() { echo "rspamd-lab.sh: $*" >&2; exit 1; }

usage() {
    sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# Absolute, symlink-free DIR. Paths go unquoted into rspamd's config, so
# only boring characters are allowed; rspamd's control socket lives in
# DIR/db and a socket path has at most 107 bytes.
resolve_dir() {
    local d=$1
    [[ -n $d ]] || usage
    mkdir -p -- "$d"
    d=$(cd -- "$d" && pwd -P)
    [[ $d =~ ^[A-Za-z0-9._/+-]+$ ]] || die "DIR must match [A-Za-z0-9._/+-]+: $d"
    ((${#d} <= 80)) || die "DIR path longer than 80 bytes (unix socket limit): $d"
    printf '%s\n' "$d"
}

# shellcheck source=scripts/lab-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lab-common.sh"

# A currently free port, chosen by the kernel (bind to port 0).
pick_port() {
    local py p
    py=$(command -v python3 2>/dev/null || true)
    if [[ -n $py ]]; then
        "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
        return
    fi
    while :; do
        p=$((20000 + RANDOM % 12000))
        port_open "$p" || { echo "$p"; return; }
    done
}

set_paths() {
    DIR=$1
    ENV_FILE=$DIR/rspamd.env
    ETC=$DIR/etc
    RUN=$DIR/run
    DB=$DIR/db
    LOGDIR=$DIR/log
    LOG=$LOGDIR/rspamd.log
    PID_FILE=$RUN/rspamd.pid
}

# The PID of this lab's rspamd, or nothing. A stale pid file could name a
# recycled PID, and rspamd rewrites its command line and environment, so
# only a process that holds this lab's log file open counts.
lab_pid() {
    local pid fd
    pid=$(cat "$PID_FILE" 2>/dev/null) || return 0
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    for fd in /proc/"$pid"/fd/*; do
        if [[ $(readlink "$fd" 2>/dev/null) == "$LOG" ]]; then
            echo "$pid"
            return 0
        fi
    done
}

write_config() {
    local port=$1 milter_port=$2
    mkdir -p "$ETC/local.d" "$ETC/override.d" "$RUN" "$DB" "$LOGDIR"
    # The normal worker alone, on our port; controller and proxy off.
    cat >"$ETC/override.d/worker-normal.inc" <<EOF
bind_socket = "127.0.0.1:$port";
count = 1;
mime = true;
EOF
    printf 'enabled = false;\ncount = 0;\n' >"$ETC/override.d/worker-controller.inc"
    # The milter, scanning in its own process (no upstream to reach).
    cat >"$ETC/override.d/worker-proxy.inc" <<EOF
bind_socket = "127.0.0.1:$milter_port";
milter = yes;
timeout = 30s;
count = 1;
upstream "local" {
  default = yes;
  self_scan = yes;
}
discard_on_reject = false;
quarantine_on_reject = false;
spam_header = "X-Spam";
reject_message = "Spam message rejected";
EOF
    # A subject containing "lab-spammy" scores 8: "add header" (6), not
    # "reject" (15), so the milter lets it through with X-Spam: Yes. No
    # greylisting (a soft reject at SMTP) below that.
    cat >"$ETC/rspamd.local.lua" <<'EOF'
rspamd_config.LAB_SPAMMY = {
  callback = function(task)
    local subject = task:get_subject()
    return subject ~= nil and subject:find('lab-spammy', 1, true) ~= nil
  end,
  score = 8.0,
  description = 'ticketd lab: a subject the tests call spam',
  group = 'ticketd_lab',
}
EOF
    printf 'greylist = 14;\n' >"$ETC/local.d/actions.conf"
    printf 'com\nnet\norg\ntest\nexample\ninvalid\nlocalhost\n' >"$ETC/tld.dat"
    cat >"$ETC/local.d/options.inc" <<EOF
url_tld = "$ETC/tld.dat";
disable_hyperscan = true;
dns {
  timeout = 0.5s;
  retransmits = 1;
}
EOF
    cat >"$ETC/local.d/logging.inc" <<EOF
type = "file";
filename = "$LOG";
level = "info";
EOF
    local m
    for m in rbl fuzzy_check hfilter asn spf dkim dmarc arc mx_check dcc greylist ratelimit replies \
        neural reputation url_redirector history_redis clickhouse elastic metadata_exporter \
        rspamd_update whitelist phishing; do
        printf 'enabled = false;\n' >"$ETC/local.d/$m.conf"
    done
    # Statistics (Bayes) would need Redis.
    printf 'backend = "none";\n' >"$ETC/local.d/classifier-bayes.conf"
}

start() {
    command -v rspamd >/dev/null 2>&1 || die "rspamd not installed: run scripts/install-deps.sh"
    local d
    d=$(resolve_dir "${1:-}")
    set_paths "$d"
    if alive "$(lab_pid)"; then
        cat "$ENV_FILE"
        return 0
    fi
    local port milter_port
    port=$(pick_port)
    milter_port=$(pick_port)
    while [[ $milter_port == "$port" ]]; do milter_port=$(pick_port); done
    write_config "$port" "$milter_port"
    : >"$LOG"
    local as=()
    if [[ ${EUID} -eq 0 ]]; then
        id -u "$RSPAMD_USER" >/dev/null 2>&1 || die "user $RSPAMD_USER missing: reinstall the rspamd package"
        chown -R "$RSPAMD_USER:$RSPAMD_USER" "$RUN" "$DB" "$LOGDIR"
        as=(-u "$RSPAMD_USER" -g "$RSPAMD_USER")
    fi
    rm -f "$PID_FILE"
    # Daemonizes once the config is loaded.
    if ! rspamd -c /etc/rspamd/rspamd.conf \
        --var="LOCAL_CONFDIR=$ETC" --var="RUNDIR=$RUN" --var="DBDIR=$DB" --var="LOGDIR=$LOGDIR" \
        -p "$PID_FILE" "${as[@]}" >"$DIR/start.log" 2>&1; then
        cat "$DIR/start.log" >&2
        tail -n 25 "$LOG" >&2 || true
        die "rspamd did not start"
    fi
    if ! wait_until port_open "$port" || ! wait_until port_open "$milter_port"; then
        echo "rspamd-lab.sh: rspamd did not open 127.0.0.1:$port and :$milter_port within 20 s" >&2
        tail -n 25 "$DIR/start.log" "$LOG" >&2 || true
        stop "$DIR"
        exit 1
    fi
    cat >"$ENV_FILE.tmp" <<EOF
RSPAMD_DIR=$DIR
RSPAMD_PORT=$port
RSPAMD_URL=http://127.0.0.1:$port
RSPAMD_MILTER=inet:127.0.0.1:$milter_port
RSPAMD_PID=$(lab_pid)
RSPAMD_LOG=$LOG
EOF
    mv -f "$ENV_FILE.tmp" "$ENV_FILE"
    cat "$ENV_FILE"
}

stop() {
    local d
    d=$(resolve_dir "${1:-}")
    set_paths "$d"
    local pid port=
    pid=$(lab_pid)
    if [[ -f $ENV_FILE ]]; then port=$(sed -n 's/^RSPAMD_PORT=//p' "$ENV_FILE"); fi
    if alive "$pid"; then
        # The main process stops its workers on TERM.
        kill -TERM "$pid" 2>/dev/null || true
        if ! wait_until dead "$pid"; then
            echo "rspamd-lab.sh: rspamd $pid ignored TERM for 20 s; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    if [[ -n $port ]] && ! wait_until port_closed "$port"; then
        die "127.0.0.1:$port still answers after stopping rspamd"
    fi
    rm -f "$PID_FILE"
}

case ${1:-} in
    start) start "${2:-}" ;;
    stop) stop "${2:-}" ;;
    *) usage ;;
esac
