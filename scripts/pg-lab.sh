#!/usr/bin/env bash
# pg-lab.sh: a private, throw-away PostgreSQL (Debian's package) for ticketd's
# tests, run as an unprivileged user from its own directory.
#
#   pg-lab.sh start DIR [OWNER_PID]   start it in DIR (initdb on first use), print DIR/pg.env;
#                                     with OWNER_PID, a watcher stops it when that process is gone
#   pg-lab.sh stop DIR                stop it (fast shutdown; idempotent)
#   pg-lab.sh crash DIR               stop it the way a crash does (-m immediate); `start` again after
#   pg-lab.sh psql DIR [ARGS...]      psql as the superuser over the Unix socket
#
# Everything (data, Unix socket, log, TLS certs) lives under DIR. The server
# listens on 127.0.0.1 on a free port and on DIR's Unix socket; TCP logins use
# SCRAM passwords (superuser `postgres`, role `ticketd` with CREATEDB), the
# socket trusts local users. TLS is on with a certificate for DNS:localhost
# only (no IP), signed by DIR/tls/ca.pem; DIR/tls/other-ca.pem signed nothing
# the server has. fsync is off (logic tests) unless PGLAB_FSYNC=on.
#
# Started as root, the server runs as ticketd-lab (scripts/install-deps.sh
# makes that user); otherwise as the calling user. The system cluster is
# never touched.
set -euo pipefail

export PATH="/usr/sbin:/usr/bin:/sbin:/bin:${PATH:-}"
readonly LAB_USER=ticketd-lab
readonly WAIT_STEPS=400 # x 0.05 s = 20 s bound on every wait

die() {
    echo "pg-lab.sh: $*" >&2
    exit 1
}

usage() {
    sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

pg_bin() {
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x $d/initdb && -x $d/pg_ctl && -x $d/postgres ]]; then
            echo "$d"
            return 0
        fi
    done
    die "PostgreSQL is not installed: run scripts/install-deps.sh"
}

# Runs a command as the server's owner.
as_owner() {
    if [[ ${EUID} -eq 0 ]]; then
        runuser -u "$LAB_USER" -- "$@"
    else
        "$@"
    fi
}

resolve_dir() {
    local d=${1:-}
    [[ -n $d ]] || usage
    [[ -d $d ]] || die "no such directory: $d"
    d=$(cd -- "$d" && pwd -P)
    [[ $d =~ ^[A-Za-z0-9._/+-]+$ ]] || die "DIR must match [A-Za-z0-9._/+-]+: $d"
    # The socket is DIR/.s.PGSQL.PORT; a socket path has at most 107 bytes.
    ((${#d} <= 80)) || die "DIR path longer than 80 bytes (Unix socket limit): $d"
    printf '%s\n' "$d"
}

free_port() {
    local py
    py=$(command -v python3 2>/dev/null || true)
    if [[ -n $py ]]; then
        "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
        return
    fi
    local p
    while :; do
        p=$((20000 + RANDOM % 12000))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || {
            echo "$p"
            return
        }
    done
}

# A private CA, a server certificate it signed (DNS:localhost only), and a
# second CA that signed nothing here. EC P-256: generated in milliseconds.
make_certs() {
    local t=$DIR/tls
    [[ -s $t/server.pem && -s $t/ca.pem && -s $t/other-ca.pem ]] && return 0
    command -v openssl >/dev/null 2>&1 || die "openssl not installed: run scripts/install-deps.sh"
    mkdir -p "$t"
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
subjectAltName = DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
    local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    {
        openssl req -x509 -config "$t/openssl.cnf" -extensions ca_ext "${ec[@]}" -days 3650 \
            -subj "/CN=ticketd pg-lab CA" -keyout "$t/ca.key" -out "$t/ca.pem"
        openssl req -x509 -config "$t/openssl.cnf" -extensions ca_ext "${ec[@]}" -days 3650 \
            -subj "/CN=some other CA" -keyout "$t/other-ca.key" -out "$t/other-ca.pem"
        openssl req -new -config "$t/openssl.cnf" "${ec[@]}" -subj "/CN=localhost" \
            -keyout "$t/server.key" -out "$t/server.csr"
        openssl x509 -req -in "$t/server.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" \
            -set_serial "0x$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')" -days 3650 \
            -extfile "$t/openssl.cnf" -extensions srv_ext -out "$t/server.pem"
    } >"$t/openssl.log" 2>&1 || die "making certificates failed: $(tail -n 5 "$t/openssl.log")"
    chmod 644 "$t/ca.pem" "$t/other-ca.pem" "$t/server.pem"
    chmod 600 "$t/server.key"
    if [[ ${EUID} -eq 0 ]]; then chown "$LAB_USER" "$t/server.key"; fi
}

random_secret() { od -An -N12 -tx1 /dev/urandom | tr -d ' \n'; }

# shellcheck source=scripts/lab-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lab-common.sh"

running() {
    [[ -f $DIR/data/postmaster.pid ]] || return 1
    local pid
    pid=$(head -n1 "$DIR/data/postmaster.pid" 2>/dev/null) || return 1
    alive "$pid"
}

psql_su() {
    # shellcheck disable=SC1091
    source "$DIR/pg.env"
    "$PGLAB_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$DIR" -p "$PGLAB_PORT" -U postgres -d postgres "$@"
}

init() {
    local bin=$1 port su_pw pw
    port=$(free_port)
    su_pw=$(random_secret)
    pw=$(random_secret)
    make_certs
    umask 077
    printf '%s\n' "$su_pw" >"$DIR/superuser.pw"
    umask 022
    if [[ ${EUID} -eq 0 ]]; then
        id -u "$LAB_USER" >/dev/null 2>&1 || die "user $LAB_USER missing: run scripts/install-deps.sh"
        chown "$LAB_USER" "$DIR" "$DIR/superuser.pw"
    fi
    as_owner "$bin/initdb" -D "$DIR/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
        --pwfile="$DIR/superuser.pw" -E UTF8 --locale=C --no-sync >"$DIR/initdb.log" 2>&1 \
        || die "initdb failed: $(tail -n 5 "$DIR/initdb.log")"
    local fsync=off
    [[ ${PGLAB_FSYNC:-off} == on ]] && fsync=on
    cat >>"$DIR/data/postgresql.conf" <<EOF
# pg-lab.sh
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$DIR'
fsync = $fsync
full_page_writes = $fsync
max_connections = 200
shared_buffers = 32MB
ssl = on
ssl_cert_file = '$DIR/tls/server.pem'
ssl_key_file = '$DIR/tls/server.key'
EOF
    cat >"$DIR/pg.env.tmp" <<EOF
PGLAB_DIR=$DIR
PGLAB_BIN=$bin
PGLAB_PORT=$port
PGLAB_USER=ticketd
PGLAB_PASSWORD=$pw
PGLAB_SUPERUSER=postgres
PGLAB_SUPERUSER_PASSWORD=$su_pw
PGLAB_CA=$DIR/tls/ca.pem
PGLAB_OTHER_CA=$DIR/tls/other-ca.pem
PGLAB_URL=postgres://ticketd:$pw@127.0.0.1:$port/postgres?sslmode=disable
EOF
    mv -f "$DIR/pg.env.tmp" "$DIR/pg.env"
    chmod 600 "$DIR/pg.env"
}

start_server() {
    # shellcheck disable=SC1091
    source "$DIR/pg.env"
    if running; then return 0; fi
    rm -f "$DIR/data/postmaster.pid"
    as_owner "$PGLAB_BIN/pg_ctl" -D "$DIR/data" -l "$DIR/postgres.log" -w -t 30 start \
        </dev/null >>"$DIR/pg_ctl.log" 2>&1 \
        || die "the server did not start: $(tail -n 15 "$DIR/postgres.log" 2>/dev/null)"
}

# Stops the server (SIGQUIT: immediate) once OWNER_PID is gone or DIR is.
watch_owner() {
    local owner=$1
    [[ -f $DIR/watcher.pid ]] && kill "$(cat "$DIR/watcher.pid")" 2>/dev/null || true
    setsid bash -c '
        owner=$1 dir=$2
        alive() { local s; s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1; s=${s##*) }; [[ ${s:0:1} != Z ]]; }
        while alive "$owner" && [[ -d $dir/data ]]; do sleep 1; done
        pid=$(head -n1 "$dir/data/postmaster.pid" 2>/dev/null) && kill -QUIT "$pid" 2>/dev/null
        exit 0' _ "$owner" "$DIR" </dev/null >/dev/null 2>&1 &
    echo $! >"$DIR/watcher.pid"
}

cmd_start() {
    local bin
    bin=$(pg_bin)
    local t0=${EPOCHREALTIME}
    [[ -f $DIR/pg.env ]] || init "$bin"
    start_server
    # shellcheck disable=SC1091
    source "$DIR/pg.env"
    if [[ ! -f $DIR/role.done ]]; then
        psql_su -c "CREATE ROLE ticketd LOGIN CREATEDB PASSWORD '$PGLAB_PASSWORD'" \
            || die "creating the role failed"
        touch "$DIR/role.done"
    fi
    if [[ -n ${1:-} ]]; then watch_owner "$1"; fi
    echo "PGLAB_START_SECONDS=$(awk -v a="$t0" -v b="${EPOCHREALTIME}" 'BEGIN { printf "%.2f", b - a }')" >>"$DIR/pg.env"
    cat "$DIR/pg.env"
}

cmd_stop() {
    local mode=$1
    if [[ -f $DIR/pg.env ]] && running; then
        # shellcheck disable=SC1091
        source "$DIR/pg.env"
        as_owner "$PGLAB_BIN/pg_ctl" -D "$DIR/data" -m "$mode" -w -t 20 stop </dev/null >>"$DIR/pg_ctl.log" 2>&1 \
            || { pid=$(head -n1 "$DIR/data/postmaster.pid" 2>/dev/null) && kill -QUIT "$pid" 2>/dev/null; } || true
    fi
    local i
    for ((i = 0; i < WAIT_STEPS; i++)); do
        running || break
        sleep 0.05
    done
    running && die "the server in $DIR did not stop"
    if [[ $mode != immediate && -f $DIR/watcher.pid ]]; then
        kill "$(cat "$DIR/watcher.pid")" 2>/dev/null || true
        rm -f "$DIR/watcher.pid"
    fi
    return 0
}

[[ $# -ge 2 ]] || usage
action=$1
DIR=$(resolve_dir "$2")
shift 2
case $action in
    start) cmd_start "${1:-}" ;;
    stop) cmd_stop fast ;;
    crash) cmd_stop immediate ;;
    psql) psql_su "$@" ;;
    *) usage ;;
esac
