#!/usr/bin/env bash
# lab.sh: private, throw-away Dovecot (IMAP/IMAPS/LMTP + Sieve) and Postfix
# (SMTP) instances on 127.0.0.1 for ticketd's integration tests.
#
#   lab.sh start DIR               start a lab in DIR (created if needed), print DIR/lab.env
#   lab.sh stop DIR                stop both servers (idempotent)
#   lab.sh stop-imap|start-imap DIR   stop/restart Dovecot only, same ports (outage tests)
#   lab.sh stop-smtp|start-smtp DIR   stop/restart Postfix only, same port
#   lab.sh adduser DIR USER@example.test PASS
#   lab.sh sieve DIR USER@example.test FILE|-   install USER's active Sieve script
#   lab.sh milter DIR inet:127.0.0.1:PORT   Postfix passes every mail through that milter (restarts it)
#
# Everything (configs, sockets, queues, mail, logs, certs) lives under DIR, so
# several labs in different DIRs run side by side. Nothing is ever relayed off
# the machine: Postfix only accepts mail for example.test and hands it to
# Dovecot's LMTP; other domains are refused at RCPT time.
#
# Sieve vacation: a user's active script is HOME/.dovecot.sieve with
# HOME=DIR/mail/example.test/LOCALPART (use `lab.sh sieve`, which also fixes
# ownership). Replies are submitted to this lab's Postfix (submission_host),
# from the null sender <>, so they land in the sender's INBOX if the sender is
# @example.test. The vacation-seconds extension is enabled and
# sieve_vacation_min_period = 0, so `vacation :seconds 1 ...` works in tests.
set -euo pipefail

# Postfix and Dovecot live in sbin, which a test runner's PATH may lack.
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:${PATH:-}"

# LAB_TRACE=1: timestamped xtrace on stderr (bash ignores PS4 from the env as root).
if [[ -n ${LAB_TRACE:-} ]]; then
    PS4='+ ${EPOCHREALTIME} '
    set -x
fi

readonly MAIL_USER=ticketd-lab           # owns the maildirs (made by install-deps.sh)
readonly DOMAIN=example.test
readonly DEFAULT_PASS=secret
readonly DEFAULT_USERS=(support helpdesk customer stranger alice bob carol)
readonly WAIT_STEPS=400                  # x 0.05 s = 20 s bound on every wait

die() { echo "lab.sh: $*" >&2; exit 1; }

usage() {
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# Postfix must start as root; re-exec through sudo when that is possible.
if [[ ${EUID} -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        exec sudo -n -- "$0" "$@"
    fi
    die "must run as root (Postfix and Dovecot are started as root)"
fi

check_deps() {
    local b
    for b in dovecot doveadm postfix postconf openssl; do
        command -v "$b" >/dev/null 2>&1 || die "$b not installed: run scripts/install-deps.sh"
    done
    [[ -x /usr/lib/dovecot/imap ]] || die "dovecot-imapd not installed: run scripts/install-deps.sh"
    [[ -x /usr/lib/dovecot/lmtp ]] || die "dovecot-lmtpd not installed: run scripts/install-deps.sh"
    [[ -e /usr/lib/dovecot/modules/lib90_sieve_plugin.so ]] \
        || die "dovecot-sieve not installed: run scripts/install-deps.sh"
    id -u "$MAIL_USER" >/dev/null 2>&1 || die "user $MAIL_USER missing: run scripts/install-deps.sh"
}

# ---------------------------------------------------------------- helpers

# Absolute, symlink-free DIR. Paths go unquoted into dovecot.conf, main.cf and
# lab.env, so only boring characters are allowed.
resolve_dir() {
    local d=$1
    [[ -n $d ]] || usage
    [[ -d $d ]] || die "no such directory: $d"
    d=$(cd -- "$d" && pwd -P)
    [[ $d =~ ^[A-Za-z0-9._/+-]+$ ]] || die "DIR must match [A-Za-z0-9._/+-]+: $d"
    # Dovecot's and Postfix's unix sockets live up to ~40 bytes below DIR,
    # and a socket path has at most 107.
    ((${#d} <= 64)) || die "DIR path longer than 64 bytes (unix socket limit): $d"
    printf '%s\n' "$d"
}

# shellcheck source=scripts/lab-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lab-common.sh"

# Four currently free ports, chosen by the kernel (bind to port 0). All four
# sockets are held open together so the ports are distinct.
pick_ports() {
    local py
    py=$(command -v /usr/bin/python3 python3 2>/dev/null | head -n1 || true)
    if [[ -n $py ]]; then
        "$py" -c '
import socket
ss = []
for _ in range(4):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    ss.append(s)
print(" ".join(str(s.getsockname()[1]) for s in ss))'
        return
    fi
    # No python3: random ports below the ephemeral range that nobody answers on.
    local out=() p
    while ((${#out[@]} < 4)); do
        p=$((20000 + RANDOM % 12000))
        [[ " ${out[*]} " == *" $p "* ]] && continue
        port_open "$p" || out+=("$p")
    done
    echo "${out[*]}"
}

log_tail() {
    local f
    for f in "$@"; do
        [[ -s $f ]] || continue
        echo "--- tail of $f" >&2
        tail -n 25 "$f" >&2
    done
}

# ------------------------------------------------------------ lab layout

set_paths() {
    DIR=$1
    ENV_FILE=$DIR/lab.env
    DOVECOT_CONF=$DIR/dovecot.conf
    DOVECOT_LOG=$DIR/dovecot.log
    POSTFIX_CONF=$DIR/postfix
    POSTFIX_LOG=$DIR/postfix.log
    POSTFIX_SPOOL=$DIR/postfix-queue
    POSTFIX_DATA=$DIR/postfix-data
    CA_PEM=$DIR/ca.pem
    USERS_FILE=$DIR/users
    BASE_DIR=$DIR/run
}

# Sets DIR and the paths below it. (Not `set_paths "$(resolve_dir ..)"`:
# a failure inside that substitution would not stop the script.)
init_dir() {
    local d
    d=$(resolve_dir "$1")
    set_paths "$d"
}

load_env() {
    [[ -f $ENV_FILE ]] || die "no lab in $DIR (missing $ENV_FILE): run lab.sh start first"
    local k v
    while IFS='=' read -r k v; do
        case $k in
            IMAP_PORT | IMAPS_PORT | SMTP_PORT | LMTP_PORT) printf -v "$k" '%s' "$v" ;;
        esac
    done <"$ENV_FILE"
    [[ -n ${IMAP_PORT:-} && -n ${IMAPS_PORT:-} && -n ${SMTP_PORT:-} && -n ${LMTP_PORT:-} ]] \
        || die "$ENV_FILE lacks port numbers"
}

# PIDs of this lab's masters, or nothing. A stale pid file could name a
# recycled PID: only a process started with this lab's config counts.
dovecot_pid() {
    local pid cmd
    pid=$(cat "$BASE_DIR/master.pid" 2>/dev/null) || return 0
    cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 0
    if [[ $cmd == *" -c $DOVECOT_CONF "* ]]; then echo "$pid"; fi
}
postfix_pid() {
    local pid env
    pid=$(sed -n '1{s/ //g;p}' "$POSTFIX_SPOOL/pid/master.pid" 2>/dev/null) || return 0
    env=$(tr '\0' '\n' 2>/dev/null <"/proc/$pid/environ") || return 0
    if [[ $'\n'$env$'\n' == *$'\n'"MAIL_CONFIG=$POSTFIX_CONF"$'\n'* ]]; then echo "$pid"; fi
}

write_env() {
    local pid
    pid=$(dovecot_pid)
    alive "$pid" || pid=
    cat >"$ENV_FILE.tmp" <<EOF
LAB_DIR=$DIR
IMAP_PORT=$IMAP_PORT
IMAPS_PORT=$IMAPS_PORT
SMTP_PORT=$SMTP_PORT
LMTP_PORT=$LMTP_PORT
CA_PEM=$CA_PEM
DOVECOT_PID=$pid
POSTFIX_CONF=$POSTFIX_CONF
DOVECOT_CONF=$DOVECOT_CONF
DOVECOT_LOG=$DOVECOT_LOG
POSTFIX_LOG=$POSTFIX_LOG
LAB_DOMAIN=$DOMAIN
LAB_PASSWORD=$DEFAULT_PASS
EOF
    mv -f "$ENV_FILE.tmp" "$ENV_FILE"
}

# A private CA (DIR/ca.pem, what clients trust) and a localhost server cert it
# signed. EC P-256 keys: generated in milliseconds, unlike RSA.
make_certs() {
    local t=$DIR/tls
    [[ -s $t/server.pem && -s $t/server.key && -s $CA_PEM ]] && return 0
    mkdir -p "$t"
    chmod 700 "$t"
    cat >"$t/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = localhost
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[srv_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
    local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    openssl req -x509 -config "$t/openssl.cnf" -extensions ca_ext "${ec[@]}" -days 3650 \
        -subj "/CN=ticketd lab CA" -keyout "$t/ca.key" -out "$t/ca.pem" 2>"$t/openssl.log"
    openssl req -new -config "$t/openssl.cnf" "${ec[@]}" -subj "/CN=localhost" \
        -keyout "$t/server.key" -out "$t/server.csr" 2>>"$t/openssl.log"
    openssl x509 -req -in "$t/server.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" \
        -set_serial "0x$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')" -days 3650 \
        -extfile "$t/openssl.cnf" -extensions srv_ext -out "$t/server.pem" 2>>"$t/openssl.log"
    cp "$t/ca.pem" "$CA_PEM"
    chmod 644 "$CA_PEM"
}

# ---------------------------------------------------------------- users

add_user() {
    local addr=${1,,} pass=$2
    [[ $addr =~ ^[a-z0-9._-]+@${DOMAIN//./\\.}$ ]] || die "user must look like name@$DOMAIN: $1"
    [[ -n $pass && $pass != *[:$'\n']* ]] || die "password must be non-empty without ':' or newline"
    touch "$USERS_FILE"
    # Replace any previous line for this user (passwd-file is re-read on change).
    awk -F: -v u="$addr" '$1 != u' "$USERS_FILE" >"$USERS_FILE.tmp"
    printf '%s:{PLAIN}%s::::::\n' "$addr" "$pass" >>"$USERS_FILE.tmp"
    chmod 644 "$USERS_FILE.tmp"   # read by Dovecot's auth process (user dovecot)
    # Dovecot re-reads passwd-file when mtime or size changes; a same-size
    # edit within one second would go unseen, so make the mtime move.
    local old now
    old=$(stat -c %Y "$USERS_FILE")
    now=$(date +%s)
    ((now > old)) || touch -d "@$((old + 1))" "$USERS_FILE.tmp"
    mv -f "$USERS_FILE.tmp" "$USERS_FILE"
    # Before the first start, write_postfix_conf makes the table.
    if [[ -f $POSTFIX_CONF/main.cf ]]; then write_vmailbox; fi
}

# Postfix's list of deliverable addresses, derived from the users file.
write_vmailbox() {
    mkdir -p "$POSTFIX_CONF"
    sed -n 's/^\([^:]*\):.*/\1 ok/p' "$USERS_FILE" >"$POSTFIX_CONF/vmailbox"
    # vmailbox.db is what Postfix reads.
    postmap -c "$POSTFIX_CONF" "hash:$POSTFIX_CONF/vmailbox" || die "postmap failed"
}

has_user() {
    [[ -f $USERS_FILE ]] && awk -F: -v u="$1" '$1 == u { found = 1 } END { exit !found }' "$USERS_FILE"
}

user_home() {
    local addr=${1,,}
    printf '%s/mail/%s/%s\n' "$DIR" "${addr#*@}" "${addr%@*}"
}

# ---------------------------------------------------------------- configs

# Unique per DIR: process titles, doveadm and logs never mix labs.
instance_name() {
    local h
    h=$(printf '%s' "$DIR" | sha256sum)
    echo "ticketd-lab-${h:0:12}"
}

write_dovecot_conf() {
    local uid gid
    uid=$(id -u "$MAIL_USER")
    gid=$(id -g "$MAIL_USER")
    local inst
    inst=$(instance_name)
    cat >"$DOVECOT_CONF" <<EOF
# Generated by lab.sh: private Dovecot for $DIR. Nothing of /etc/dovecot is read.
instance_name = $inst
base_dir = $BASE_DIR
state_dir = $DIR/state
log_path = $DOVECOT_LOG
protocols = imap lmtp
listen = 127.0.0.1
hostname = lab.$DOMAIN
postmaster_address = postmaster@$DOMAIN
login_greeting = ticketd-lab ready.

# Test passwords go over plain TCP on 127.0.0.1.
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
auth_verbose = yes
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%Lu $USERS_FILE
}
# Static userdb verifies existence through the passdb (allow_all_users=no),
# so LMTP rejects unknown users.
userdb {
  driver = static
  args = uid=$uid gid=$gid home=$DIR/mail/%Ld/%Ln
}
first_valid_uid = $uid
last_valid_uid = $uid
first_valid_gid = $gid
last_valid_gid = $gid

mail_location = maildir:~/Maildir
mail_fsync = never
namespace inbox {
  inbox = yes
  separator = /
}
recipient_delimiter = +
lmtp_save_to_detail_mailbox = no
lda_mailbox_autocreate = yes
mail_max_userip_connections = 1000

ssl = yes
ssl_cert = <$DIR/tls/server.pem
ssl_key = <$DIR/tls/server.key

service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $IMAP_PORT
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $IMAPS_PORT
    ssl = yes
  }
  # One long-lived login process: faster logins than one fork per client.
  service_count = 0
  process_min_avail = 1
}
service imap {
  process_limit = 1024
}
# Failed logins from 127.0.0.1 would otherwise slow every later login of
# every test in this lab by up to 15 s (auth penalty through anvil).
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $LMTP_PORT
  }
}

# Sieve on delivery; vacation replies go out through this lab's Postfix.
submission_host = 127.0.0.1:$SMTP_PORT
protocol lmtp {
  mail_plugins = \$mail_plugins sieve
}
plugin {
  sieve = file:~/sieve;active=~/.dovecot.sieve
  sieve_extensions = +vacation-seconds
  sieve_vacation_min_period = 0
}
EOF
}

# The queue layout of /etc/postfix/postfix-files, made directly: Postfix's own
# create-missing/check pass takes ~2 s, which is most of a lab start.
make_postfix_dirs() {
    local d
    install -d -o root -m 755 "$POSTFIX_SPOOL" "$POSTFIX_SPOOL/pid"
    install -d -o postfix -m 700 "$POSTFIX_DATA"
    for d in active bounce corrupt defer deferred flush hold incoming private saved trace; do
        install -d -o postfix -m 700 "$POSTFIX_SPOOL/$d"
    done
    install -d -o postfix -g postdrop -m 730 "$POSTFIX_SPOOL/maildrop"
    install -d -o postfix -g postdrop -m 710 "$POSTFIX_SPOOL/public"
}

write_postfix_conf() {
    mkdir -p "$POSTFIX_CONF"
    cat >"$POSTFIX_CONF/main.cf" <<EOF
# Generated by lab.sh: private Postfix for $DIR.
compatibility_level = 3.6
queue_directory = $POSTFIX_SPOOL
data_directory = $POSTFIX_DATA
mail_owner = postfix
setgid_group = postdrop
syslog_name = ticketd-lab
# No syslog here: log through postlogd into a file inside the lab.
maillog_file = $POSTFIX_LOG
maillog_file_prefixes = $DIR

myhostname = lab.$DOMAIN
mydomain = $DOMAIN
myorigin = \$mydomain
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8

# Only example.test exists; it is delivered to this lab's Dovecot LMTP.
virtual_mailbox_domains = $DOMAIN
virtual_transport = lmtp:inet:127.0.0.1:$LMTP_PORT
recipient_delimiter = +
# Known users only (unknown ones get 550 at RCPT time instead of a bounce
# landing in the sender's INBOX); user+tag@ matches user@.
# A hash: table, unlike texthash:, is re-checked for changes by smtpd before
# each new connection, so lab.sh adduser takes effect at once.
virtual_mailbox_maps = hash:$POSTFIX_CONF/vmailbox

# Never send anything to the internet: other domains are refused at RCPT
# time (no permit_mynetworks), and every non-lab transport is an error.
relayhost =
relay_domains =
smtpd_relay_restrictions = reject_unauth_destination
smtpd_recipient_restrictions =
default_transport = error:no external delivery in the lab
relay_transport = error:no external delivery in the lab
local_transport = error:no local delivery in the lab
smtp_dns_support_level = disabled
alias_maps =
alias_database =
local_recipient_maps =

# STARTTLS offered (not required) with the lab certificate.
smtpd_tls_security_level = may
smtpd_tls_cert_file = $DIR/tls/server.pem
smtpd_tls_key_file = $DIR/tls/server.key
smtpd_tls_loglevel = 0

# Tests restart Dovecot: retry deferred mail within seconds, not minutes.
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
delay_warning_time = 0
message_size_limit = 52428800
smtpd_error_sleep_time = 0
biff = no
append_dot_mydomain = no
readme_directory = no
EOF
    # Observed: Postfix stalls ~1.8 s at start while main.cf's mtime is the
    # current second (it waits for the file to "settle"). Backdate it.
    touch -d '10 seconds ago' "$POSTFIX_CONF/main.cf"
    write_vmailbox
    # Own master.cf: nothing chrooted (no /etc copies needed), only the
    # services this lab uses, smtpd on 127.0.0.1 at the chosen port.
    cat >"$POSTFIX_CONF/master.cf" <<EOF
# service type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:$SMTP_PORT inet n - n - - smtpd
pickup     unix  n       -       n       60      1       pickup
cleanup    unix  n       -       n       -       0       cleanup
qmgr       unix  n       -       n       300     1       qmgr
tlsmgr     unix  -       -       n       1000?   1       tlsmgr
rewrite    unix  -       -       n       -       -       trivial-rewrite
bounce     unix  -       -       n       -       0       bounce
defer      unix  -       -       n       -       0       bounce
trace      unix  -       -       n       -       0       bounce
verify     unix  -       -       n       -       1       verify
flush      unix  n       -       n       1000?   0       flush
proxymap   unix  -       -       n       -       -       proxymap
proxywrite unix  -       -       n       -       1       proxymap
smtp       unix  -       -       n       -       -       smtp
relay      unix  -       -       n       -       -       smtp
showq      unix  n       -       n       -       -       showq
error      unix  -       -       n       -       -       error
retry      unix  -       -       n       -       -       error
discard    unix  -       -       n       -       -       discard
lmtp       unix  -       -       n       -       -       lmtp
anvil      unix  -       -       n       -       1       anvil
scache     unix  -       -       n       -       1       scache
postlog    unix-dgram n  -       n       -       1       postlogd
EOF
}

# ------------------------------------------------------------ start/stop

start_dovecot() {
    if alive "$(dovecot_pid)"; then return 0; fi
    # A stale pid file naming a recycled PID would make Dovecot refuse to start.
    rm -f "$BASE_DIR/master.pid"
    if ! dovecot -c "$DOVECOT_CONF" >"$DIR/dovecot.start.log" 2>&1; then
        cat "$DIR/dovecot.start.log" >&2
        return 1
    fi
    # Dovecot binds its listeners before it daemonizes; wait for accept().
    if ! wait_until port_open "$IMAP_PORT" || ! wait_until port_open "$LMTP_PORT"; then
        echo "lab.sh: dovecot did not open 127.0.0.1:$IMAP_PORT/$LMTP_PORT within 20 s" >&2
        log_tail "$DIR/dovecot.start.log" "$DOVECOT_LOG"
        return 1
    fi
    # The kernel accepts on the listeners before the daemonized master has
    # written master.pid.
    if ! wait_until dovecot_running; then
        echo "lab.sh: dovecot exited or wrote no $BASE_DIR/master.pid" >&2
        log_tail "$DOVECOT_LOG"
        return 1
    fi
}
dovecot_running() { alive "$(dovecot_pid)"; }

stop_dovecot() {
    local pid
    pid=$(dovecot_pid)
    if alive "$pid"; then
        # The master alone would leave running imap processes (and their
        # clients' connections, e.g. in IDLE) alive for ~10 s and linger ~1 s
        # itself: an outage has to look like one, so end them all now.
        kill -TERM "$pid" 2>/dev/null || true
        signal_instance TERM
        # Once its children are gone the master has nothing left to do but
        # it may still wait ~1 s (for `log`): don't wait with it.
        wait_until instance_gone || signal_instance KILL
        if ! dead_soon "$pid"; then
            kill -KILL "$pid" 2>/dev/null || true
            wait_until dead "$pid" || true
        fi
        # The listeners close with the master; check before reporting "down".
        if [[ -n ${IMAP_PORT:-} ]] && ! wait_until port_closed "$IMAP_PORT"; then
            echo "lab.sh: warning: port $IMAP_PORT still open" >&2
        fi
    fi
    rm -f "$BASE_DIR/master.pid"
}

# PIDs of this lab's Dovecot processes but the master: they are titled
# "dovecot-INSTANCE/SERVICE".
instance_pids() {
    local f
    for f in $(grep -lsE "^dovecot-$(instance_name)/" /proc/[0-9]*/cmdline || true); do
        f=${f#/proc/}
        echo "${f%/cmdline}"
    done
}
signal_instance() {
    local pids
    pids=$(instance_pids)
    # shellcheck disable=SC2086 # one word per PID
    if [[ -n $pids ]]; then kill "-$1" $pids 2>/dev/null || true; fi
}
instance_gone() { [[ -z $(instance_pids) ]]; }

# Like dead, but gives up after 0.2 s.
dead_soon() {
    local i
    for ((i = 0; i < 4; i++)); do
        dead "$1" && return 0
        sleep 0.05
    done
    return 1
}

start_postfix() {
    if alive "$(postfix_pid)"; then return 0; fi
    make_postfix_dirs
    # The queue is ours and fresh: skip the slow integrity check (Postfix's
    # own quick-start mechanism, as after `postfix quick-stop`).
    touch "$POSTFIX_SPOOL/quick-start"
    if ! postfix -c "$POSTFIX_CONF" start >"$DIR/postfix.start.log" 2>&1; then
        cat "$DIR/postfix.start.log" >&2
        log_tail "$POSTFIX_LOG"
        return 1
    fi
    if ! wait_until port_open "$SMTP_PORT"; then
        echo "lab.sh: postfix did not open 127.0.0.1:$SMTP_PORT within 20 s" >&2
        log_tail "$DIR/postfix.start.log" "$POSTFIX_LOG"
        return 1
    fi
}

stop_postfix() {
    local pid
    pid=$(postfix_pid)
    alive "$pid" || return 0
    # What `postfix stop` does, with a 50 ms poll instead of 1 s sleeps.
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_until dead "$pid"; then
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        wait_until dead "$pid" || true
    fi
    # smtpd children (same process group) may hold the listener a moment longer.
    if [[ -n ${SMTP_PORT:-} ]] && ! wait_until port_closed "$SMTP_PORT"; then
        kill -KILL -- "-$pid" 2>/dev/null || true
        echo "lab.sh: warning: port $SMTP_PORT still open" >&2
    fi
}

cmd_start() {
    local attempt ports
    check_deps
    [[ -n ${1:-} ]] || usage
    mkdir -p -- "$1"
    init_dir "$1"
    # A lab already running in DIR is replaced.
    if [[ -f $ENV_FILE ]]; then
        load_env
        stop_postfix
        stop_dovecot
    fi
    # Dovecot runs mail processes as $MAIL_USER, Postfix as postfix: both must
    # be able to traverse DIR (tempfile makes it 0700).
    chmod 755 "$DIR"
    mkdir -p "$DIR/mail" "$DIR/state"
    chown "$MAIL_USER:" "$DIR/mail"
    make_certs
    if [[ ! -s $USERS_FILE ]]; then
        local u
        for u in "${DEFAULT_USERS[@]}"; do add_user "$u@$DOMAIN" "$DEFAULT_PASS"; done
    fi
    # The kernel's free ports can be grabbed by someone else before our
    # servers bind them: on a bind failure pick new ports and try again.
    for attempt in 1 2 3; do
        ports=$(pick_ports)
        read -r IMAP_PORT IMAPS_PORT SMTP_PORT LMTP_PORT <<<"$ports"
        write_dovecot_conf
        write_postfix_conf
        if start_dovecot 2>"$DIR/start.err" && start_postfix 2>>"$DIR/start.err"; then
            write_env
            echo "$ENV_FILE"
            return 0
        fi
        stop_postfix 2>/dev/null || true
        stop_dovecot 2>/dev/null || true
        if ! grep -qi 'in use' "$DIR/start.err" "$DOVECOT_LOG" "$POSTFIX_LOG" 2>/dev/null \
            || ((attempt == 3)); then
            cat "$DIR/start.err" >&2
            die "lab start failed in $DIR"
        fi
        : >"$DOVECOT_LOG"
        : >"$POSTFIX_LOG"
    done
}

cmd_stop() {
    [[ -n ${1:-} ]] || usage
    [[ -d $1 ]] || return 0   # nothing there, nothing running
    init_dir "$1"
    [[ -f $ENV_FILE ]] && load_env
    stop_postfix
    stop_dovecot
    if [[ -f $ENV_FILE ]]; then write_env; fi
}

cmd_start_imap() {
    check_deps
    init_dir "${1:-}"
    load_env
    start_dovecot || die "dovecot restart failed in $DIR"
    write_env
    # Mail deferred while Dovecot was down: deliver it now, not at next retry.
    if alive "$(postfix_pid)"; then postqueue -c "$POSTFIX_CONF" -f >/dev/null 2>&1 || true; fi
}

cmd_stop_imap() {
    init_dir "${1:-}"
    load_env
    stop_dovecot
    write_env
}

cmd_start_smtp() {
    check_deps
    init_dir "${1:-}"
    load_env
    start_postfix || die "postfix restart failed in $DIR"
}

# The border as an admin runs it with a spam filter's milter (rspamd's
# proxy in milter mode): every mail received over SMTP passes it, and with
# the milter away Postfix answers 4xx (milter_default_action = tempfail),
# so nothing unscanned is delivered.
cmd_milter() {
    check_deps
    init_dir "${1:-}"
    load_env
    local addr=${2:-}
    [[ $addr =~ ^inet:127\.0\.0\.1:[0-9]+$ ]] || die "milter: expected inet:127.0.0.1:PORT, got '$addr'"
    postconf -c "$POSTFIX_CONF" -e "smtpd_milters = $addr" "milter_default_action = tempfail" \
        "milter_protocol = 6" || die "postconf failed"
    touch -d '10 seconds ago' "$POSTFIX_CONF/main.cf"
    stop_postfix
    start_postfix || die "postfix restart failed in $DIR"
}

cmd_stop_smtp() {
    init_dir "${1:-}"
    load_env
    stop_postfix
}

cmd_adduser() {
    [[ $# -eq 3 ]] || usage
    init_dir "$1"
    add_user "$2" "$3"
    # Dovecot looks at the users file at most once a second: return only
    # when it knows the user and the password, so tests need no sleeps.
    if alive "$(dovecot_pid)"; then
        wait_until dovecot_knows "${2,,}" "$3" || die "dovecot did not pick up $2 within 20 s"
    fi
}
dovecot_knows() {
    doveadm -c "$DOVECOT_CONF" user "$1" >/dev/null 2>&1 \
        && doveadm -c "$DOVECOT_CONF" auth test "$1" "$2" >/dev/null 2>&1
}

cmd_sieve() {
    [[ $# -eq 3 ]] || usage
    init_dir "$1"
    local home
    home=$(user_home "$2")
    has_user "${2,,}" || die "unknown user $2 (lab.sh adduser first)"
    install -d -o "$MAIL_USER" -g "$(id -g "$MAIL_USER")" "$(dirname "$home")" "$home"
    if [[ $3 == - ]]; then cat >"$home/.dovecot.sieve.tmp"; else cat -- "$3" >"$home/.dovecot.sieve.tmp"; fi
    chown "$MAIL_USER:" "$home/.dovecot.sieve.tmp"
    mv -f "$home/.dovecot.sieve.tmp" "$home/.dovecot.sieve"
    rm -f "$home/.dovecot.svbin"   # force recompilation on next delivery
}

main() {
    local cmd=${1:-}
    [[ $# -ge 2 ]] || usage
    shift
    case $cmd in
        start) cmd_start "$@" ;;
        stop) cmd_stop "$@" ;;
        start-imap) cmd_start_imap "$@" ;;
        stop-imap) cmd_stop_imap "$@" ;;
        start-smtp) cmd_start_smtp "$@" ;;
        stop-smtp) cmd_stop_smtp "$@" ;;
        adduser) cmd_adduser "$@" ;;
        sieve) cmd_sieve "$@" ;;
        milter) cmd_milter "$@" ;;
        *) usage ;;
    esac
}

main "$@"
