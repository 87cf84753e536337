#!/usr/bin/env bash
# install-deps.sh: install what scripts/lab.sh and scripts/pg-lab.sh need on a
# Debian machine (Dovecot with IMAP/LMTP/Sieve, Postfix, OpenSSL, PostgreSQL)
# and the unprivileged user that owns the lab's maildirs and runs the private
# PostgreSQL servers. Idempotent and quiet on success.
#
# The labs run private instances from their own config dirs; the system
# Dovecot/Postfix services are neither configured nor started here.
set -euo pipefail

export PATH="/usr/sbin:/usr/bin:/sbin:/bin:${PATH:-}"
readonly MAIL_USER=ticketd-lab
# python3: the demo sends and reads mail with smtplib/imaplib; curl fetches
# from the API in the demo.
# prometheus: its promtool checks a real /metrics scrape (tests/api.rs); the
# Prometheus server itself is neither configured nor started.
# rspamd: scripts/rspamd-lab.sh runs a private one for the spam tests
# (tests/spam_rspamd.rs, tests/e2e_spam.rs, where it is also the lab
# Postfix's milter); the system rspamd is neither configured nor started.
# postgresql: scripts/pg-lab.sh runs private servers (initdb/pg_ctl as
# ticketd-lab) for the PostgreSQL backend's tests; the package's own cluster
# (`main`) is neither used nor left running.
# chromium, chromium-driver: tests/console_browser.rs drives the desk console
# in Debian's Chromium over WebDriver (no browser is downloaded).
PACKAGES=(dovecot-core dovecot-imapd dovecot-lmtpd dovecot-sieve postfix openssl ca-certificates python3 prometheus curl rspamd postgresql
    chromium chromium-driver)
# npm fetches the browser test's axe-core (tests/browser/package.json).
command -v npm >/dev/null 2>&1 || PACKAGES+=(nodejs npm)
readonly PACKAGES

# apt and useradd need root; use sudo only when we are not root.
if [[ ${EUID} -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        exec sudo -- "$0" "$@"
    fi
    echo "install-deps.sh: must run as root (no sudo available)" >&2
    exit 1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
fail() {
    echo "install-deps.sh: $*" >&2
    cat "$log" >&2
    exit 1
}

missing() {
    local b
    for b in dovecot doveadm postfix postconf openssl python3 promtool curl rspamd chromium chromedriver npm; do
        command -v "$b" >/dev/null 2>&1 || return 0
    done
    # The lab runs rspamd as the package's user.
    id -u _rspamd >/dev/null 2>&1 || return 0
    # Binaries of dovecot-imapd, dovecot-lmtpd and dovecot-sieve.
    [[ -x /usr/lib/dovecot/imap && -x /usr/lib/dovecot/lmtp ]] || return 0
    [[ -e /usr/lib/dovecot/modules/lib90_sieve_plugin.so ]] || return 0
    [[ -e /etc/ssl/certs/ca-certificates.crt ]] || return 0
    # Binaries of the PostgreSQL server package (any major version).
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || return 0
    compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null || return 0
    compgen -G '/usr/lib/postgresql/*/bin/psql' >/dev/null || return 0
    return 1
}

if missing; then
    # Postfix asks debconf how to configure the system MTA: "No configuration"
    # leaves /etc/postfix/main.cf alone (the labs bring their own).
    echo "postfix postfix/main_mailer_type select No configuration" \
        | debconf-set-selections >>"$log" 2>&1 || true
    # The packages' maintainer scripts would start the system daemons;
    # policy-rc.d exit 101 tells invoke-rc.d not to (only if we add it).
    policy_added=
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        policy_added=1
    fi
    ok=1
    apt-get update -qq >>"$log" 2>&1 || ok=
    if [[ -n $ok ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${PACKAGES[@]}" >>"$log" 2>&1 || ok=
    fi
    if [[ -n $policy_added ]]; then rm -f /usr/sbin/policy-rc.d; fi
    [[ -n $ok ]] || fail "apt-get install ${PACKAGES[*]} failed:"
    if missing; then fail "packages installed but binaries still missing:"; fi
    # Under systemd the new units would still start at boot (and hold ports
    # 25/143/993/11333/5432): the labs need none of that. A system MTA that
    # was there before this script is left alone.
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now dovecot.service postfix.service prometheus.service rspamd.service \
            postgresql.service >>"$log" 2>&1 || true
    fi
fi

# Owner of the lab maildirs (Dovecot refuses to deliver mail as root) and of
# the private PostgreSQL servers (which refuse to run as root).
if ! id -u "$MAIL_USER" >/dev/null 2>&1; then
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin "$MAIL_USER" >>"$log" 2>&1 \
        || fail "useradd $MAIL_USER failed:"
fi
