#!/usr/bin/env bash
# package-test.sh: builds the Debian package (cargo deb), installs it on this
# machine and checks what the README's "Install and run under systemd"
# section promises: files and modes, the generated credentials, the unit
# (systemd-analyze verify and security), check-config on the installed
# example, reinstall, removal and purge, and the build-from-source drop-in.
# Meant for throw-away Debian 12 CI machines and dev boxes; systemd need not
# be running.
#
#   scripts/package-test.sh [--profile PROFILE] [--deb FILE]
#
# --profile dev packages a dev build instead of the release build (test.sh
# does: cargo test reuses that build). --deb FILE tests a package built
# before. It refuses to touch a ticketd it did not install itself.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:$HOME/.cargo/bin:${PATH:-}"

readonly CARGO_DEB_VERSION=3.8.0
readonly EXPOSURE_MAX=1.5
readonly MARKER_DIR=/var/lib/ticketd-package-test
readonly UNIT=/lib/systemd/system/ticketd.service
readonly CREDS=/etc/ticketd/credentials

profile=release
deb=
while [[ $# -gt 0 ]]; do
    case $1 in
        --profile) profile=${2:?--profile needs a value}; shift 2 ;;
        --deb) deb=${2:?--deb needs a file}; shift 2 ;;
        *) echo "usage: $0 [--profile PROFILE] [--deb FILE]" >&2; exit 2 ;;
    esac
done

die() { echo "package-test.sh: $*" >&2; exit 1; }
step() { printf '\n== %s\n' "$*"; }
failures=0
ok() { echo "ok    $*"; }
bad() { echo "FAIL  $*" >&2; failures=$((failures + 1)); }
# check DESCRIPTION COMMAND...: runs COMMAND, counts a failure if it fails.
check() {
    local what=$1
    shift
    if "$@"; then ok "$what"; else bad "$what"; fi
}
# mode PATH MODE OWNER:GROUP
mode() {
    local got
    got=$(stat -c '%a %U:%G' "$1" 2>/dev/null || echo missing)
    if [[ $got == "$2 $3" ]]; then ok "$1 is $2 $3"; else bad "$1 is $got, want $2 $3"; fi
}
absent() { if [[ ! -e $1 && ! -L $1 ]]; then ok "$1 is gone"; else bad "$1 still exists"; fi; }
hex64() { [[ $(cat "$1") =~ ^[0-9a-f]{64}$ ]]; }
# ii installed, rc removed (config left), empty: unknown to dpkg or purged.
installed_status() {
    local s
    s=$(dpkg-query -W -f='${db:Status-Abbrev}' ticketd 2>/dev/null | tr -d ' ') || true
    if [[ $s == un ]]; then s=; fi
    echo "$s"
}
not_in() { ! grep -q -- "$1" "$2"; }

[[ ${EUID} -eq 0 ]] || die "must run as root (it installs a package)"
command -v dpkg >/dev/null || die "needs dpkg (a Debian machine)"

# What a minimal Debian 12 container lacks: systemd-analyze, dpkg-shlibdeps
# (cargo-deb computes Depends with it).
need=()
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v dpkg-shlibdeps >/dev/null || need+=(dpkg-dev)
if [[ ${#need[@]} -gt 0 ]]; then
    step "installing ${need[*]}"
    timeout 600 apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Leftovers of an interrupted run are ours to clean; anything else is not.
cleanup_previous() {
    if [[ -e $MARKER_DIR/installed ]]; then
        dpkg --purge ticketd >/dev/null 2>&1 || true
        rm -rf /etc/ticketd
    fi
    if [[ -e $MARKER_DIR/usr-local-bin ]]; then rm -f /usr/local/bin/ticketd; fi
    rm -rf "$MARKER_DIR"
}
cleanup_previous
if [[ -n $(installed_status) ]]; then
    die "a ticketd package is installed here ($(installed_status)) and not by this script; not touching it"
fi
[[ ! -e /etc/ticketd ]] || die "/etc/ticketd exists (a ticketd installed by hand?); not touching it"

work=$(mktemp -d /tmp/ticketd-package-test.XXXXXX)
chmod 0711 "$work"   # nobody must reach the credentials copy below
trap 'rm -rf "$work"' EXIT

if [[ -z $deb ]]; then
    if [[ $(cargo-deb --version 2>/dev/null) != "cargo-deb $CARGO_DEB_VERSION" ]]; then
        step "installing cargo-deb $CARGO_DEB_VERSION into ~/.cargo/bin (once per machine)"
        # Its own target dir: not the project's.
        CARGO_TARGET_DIR="$work/cargo-deb-build" timeout 1800 \
            cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked --quiet
        rm -rf "$work/cargo-deb-build"
    fi
    step "cargo deb --profile $profile"
    # cargo-deb names the file ticketd_<version>-1_<arch>.deb inside --output.
    timeout 1800 cargo deb --locked --profile "$profile" --fast --output "$work/" >"$work/cargo-deb.out"
    deb=$(tail -n 1 "$work/cargo-deb.out")
fi
[[ -f $deb ]] || die "no package at $deb"
echo "package: $deb"

step "package contents"
# cargo-deb writes numeric owners (0/0): that is root/root.
dpkg-deb -c "$deb" | awk '{ sub(/^0\/0$/, "root/root", $2); sub(/^\./, "", $6); print $1, $2, $6 }' >"$work/contents"
for want in \
    "-rwxr-xr-x root/root /usr/bin/ticketd" \
    "-rw-r--r-- root/root /usr/lib/systemd/system/ticketd.service" \
    "-rw-r--r-- root/root /etc/ticketd/ticketd.toml" \
    "-rw-r--r-- root/root /usr/share/doc/ticketd/README.md" \
    "-rw-r--r-- root/root /usr/share/doc/ticketd/copyright" \
    "-rw-r--r-- root/root /usr/share/doc/ticketd/examples/ticketd.example.toml"; do
    check "package has $want" grep -qxF -- "$want" "$work/contents"
done
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles >"$work/conffiles"
check "conffiles is exactly /etc/ticketd/ticketd.toml" \
    diff <(echo /etc/ticketd/ticketd.toml) "$work/conffiles"
check "the packaged config is the example" \
    cmp -s <(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./etc/ticketd/ticketd.toml) config/ticketd.example.toml

step "dpkg -i (fresh install)"
mkdir -p "$MARKER_DIR"
touch "$MARKER_DIR/installed"
timeout 300 dpkg -i "$deb" >"$work/install.log" 2>&1 || { cat "$work/install.log" >&2; die "dpkg -i failed"; }
cat "$work/install.log"
check "dpkg status is ii" test "$(installed_status)" = ii
mode /usr/bin/ticketd 755 root:root
mode "$UNIT" 644 root:root
check "$UNIT is the packaged /usr/lib/systemd/system/ticketd.service" \
    test "$UNIT" -ef /usr/lib/systemd/system/ticketd.service
mode /etc/ticketd 755 root:root
mode /etc/ticketd/ticketd.toml 644 root:root
mode "$CREDS" 700 root:root
for f in api-token secret; do
    mode "$CREDS/$f" 600 root:root
    check "$CREDS/$f holds 64 hex digits" hex64 "$CREDS/$f"
done
check "api-token and secret differ" test "$(cat "$CREDS/api-token")" != "$(cat "$CREDS/secret")"
check "postinst created no other credential" \
    test "$(find "$CREDS" -mindepth 1 -printf '%f\n' | sort | paste -sd ' ')" = "api-token secret"
mode /usr/share/doc/ticketd/README.md 644 root:root
mode /usr/share/doc/ticketd/copyright 644 root:root
doc=$(sed -n 's#^Documentation=file://##p' "$UNIT")
check "the unit's Documentation= file exists ($doc)" test -f "$doc"
check "ExecStart= runs /usr/bin/ticketd" grep -qx 'ExecStart=/usr/bin/ticketd --config /etc/ticketd/ticketd.toml run' "$UNIT"
check "the service is not enabled" test ! -e /etc/systemd/system/multi-user.target.wants/ticketd.service
check "the postinst says what to do next" grep -q 'systemctl enable --now ticketd' "$work/install.log"
check "ticketd --version runs" /usr/bin/ticketd --version

step "the unit"
if timeout 120 systemd-analyze verify "$UNIT" >"$work/verify.log" 2>&1; then
    ok "systemd-analyze verify $UNIT"
else
    cat "$work/verify.log" >&2
    bad "systemd-analyze verify $UNIT"
fi
exposure=$(timeout 120 systemd-analyze security --offline=true "$UNIT" 2>/dev/null \
    | sed -n 's/.*Overall exposure level for ticketd\.service: \([0-9.]*\).*/\1/p')
if [[ -z $exposure ]]; then
    bad "systemd-analyze security printed no exposure level"
elif awk -v e="$exposure" -v m="$EXPOSURE_MAX" 'BEGIN { exit !(e <= m) }'; then
    ok "systemd-analyze security exposure $exposure <= $EXPOSURE_MAX"
else
    bad "systemd-analyze security exposure $exposure > $EXPOSURE_MAX"
fi
for cred in smtp imap-support api-token secret; do
    check "the unit loads credential $cred from $CREDS/$cred" \
        grep -qx "LoadCredential=$cred:$CREDS/$cred" "$UNIT"
done

# The service's view without systemd: the dynamic user (here: nobody) reads
# the config, and the credentials from a copy like $CREDENTIALS_DIRECTORY.
as_service() {
    local dir="$work/credentials-directory"
    rm -rf "$dir"
    mkdir "$dir"
    cp "$CREDS"/* "$dir/"
    chown -R nobody: "$dir"
    chmod 0500 "$dir"
    chmod 0400 "$dir"/*
    timeout 60 setpriv --reuid=nobody --regid=nogroup --clear-groups \
        env -i PATH=/usr/bin:/bin CREDENTIALS_DIRECTORY="$dir" \
        /usr/bin/ticketd --config /etc/ticketd/ticketd.toml check-config
}
check_config() {
    local who=$1
    shift
    if "$@" >"$work/check.log" 2>&1; then
        ok "check-config on the installed example ($who)"
    else
        sed 's/^/      /' "$work/check.log" >&2
        bad "check-config on the installed example ($who)"
    fi
}

step "check-config"
check_config "root, fresh install: no mail passwords yet" \
    timeout 60 ticketd --config /etc/ticketd/ticketd.toml check-config
printf 'imap password\n' >"$CREDS/imap-support"
printf 'smtp password\n' >"$CREDS/smtp"
chmod 0600 "$CREDS/imap-support" "$CREDS/smtp"
check_config "root, with the passwords in $CREDS" \
    timeout 60 ticketd --config /etc/ticketd/ticketd.toml check-config
check_config "as the service would: nobody, \$CREDENTIALS_DIRECTORY" as_service

step "dpkg -i again (reinstall: nothing generated twice, nothing overwritten)"
sha=$(cd "$CREDS" && sha256sum api-token secret imap-support smtp)
echo "# edited by package-test.sh" >>/etc/ticketd/ticketd.toml
timeout 300 dpkg -i --force-confold "$deb" >"$work/reinstall.log" 2>&1 \
    || { cat "$work/reinstall.log" >&2; die "second dpkg -i failed"; }
check "credentials unchanged" test "$(cd "$CREDS" && sha256sum api-token secret imap-support smtp)" = "$sha"
check "the edited config is kept" grep -qx '# edited by package-test.sh' /etc/ticketd/ticketd.toml
check "postinst generated nothing on reinstall" not_in generated "$work/reinstall.log"
mode "$CREDS" 700 root:root
check "the service is still not enabled" test ! -e /etc/systemd/system/multi-user.target.wants/ticketd.service

step "dpkg -r (remove: configuration and credentials stay)"
timeout 300 dpkg -r ticketd >"$work/remove.log" 2>&1 || { cat "$work/remove.log" >&2; die "dpkg -r failed"; }
check "dpkg status is rc" test "$(installed_status)" = rc
absent /usr/bin/ticketd
absent /usr/lib/systemd/system/ticketd.service
mode /etc/ticketd/ticketd.toml 644 root:root
for f in api-token secret imap-support smtp; do mode "$CREDS/$f" 600 root:root; done

step "dpkg -P (purge: generated secrets go, the admin's passwords stay)"
timeout 300 dpkg -P ticketd >"$work/purge.log" 2>&1 || { cat "$work/purge.log" >&2; die "dpkg -P failed"; }
cat "$work/purge.log"
check "dpkg knows no ticketd" test -z "$(installed_status)"
absent /etc/ticketd/ticketd.toml
absent "$CREDS/api-token"
absent "$CREDS/secret"
for f in imap-support smtp; do mode "$CREDS/$f" 600 root:root; done
check "purge names what it kept" grep -q "kept $CREDS" "$work/purge.log"
rm -rf /etc/ticketd

step "install and purge with no admin files: nothing is left in /etc"
timeout 300 dpkg -i "$deb" >/dev/null 2>&1 || die "third dpkg -i failed"
timeout 300 dpkg -P ticketd >/dev/null 2>&1 || die "second dpkg -P failed"
absent /etc/ticketd
rm -f "$MARKER_DIR/installed"

step "build from source: the same unit with systemd/usr-local.conf"
# The README's `install -m 0755 target/release/ticketd /usr/local/bin/`, with
# the packaged binary. A /usr/local/bin/ticketd that was there is left alone.
if [[ ! -e /usr/local/bin/ticketd ]]; then
    mkdir -p "$MARKER_DIR"
    touch "$MARKER_DIR/usr-local-bin"
    dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/bin/ticketd >"$work/ticketd"
    install -m 0755 "$work/ticketd" /usr/local/bin/ticketd
fi
mkdir -p "$work/units/ticketd.service.d"
cp systemd/ticketd.service "$work/units/"
cp systemd/usr-local.conf "$work/units/ticketd.service.d/"
if timeout 120 systemd-analyze verify "$work/units/ticketd.service" >"$work/verify-local.log" 2>&1; then
    ok "systemd-analyze verify with the drop-in (binary in /usr/local/bin)"
else
    cat "$work/verify-local.log" >&2
    bad "systemd-analyze verify with the drop-in"
fi
check "the drop-in runs the unit's commands from /usr/local/bin" diff \
    <(grep '^ExecStart' systemd/ticketd.service | sed 's#/usr/bin/#/usr/local/bin/#') \
    <(grep '^ExecStart.*=.' systemd/usr-local.conf)
if [[ -e $MARKER_DIR/usr-local-bin ]]; then rm -f /usr/local/bin/ticketd; fi
rm -rf "$MARKER_DIR"

echo
if [[ $failures -gt 0 ]]; then
    echo "package-test.sh: $failures check(s) failed" >&2
    exit 1
fi
echo "package-test.sh: all checks passed"
