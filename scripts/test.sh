#!/usr/bin/env bash
# Every test: installs what a fresh Debian/Ubuntu machine lacks (Dovecot,
# Postfix, …), then runs formatting and lint checks, the package test and the
# whole cargo test suite. The integration tests start their own private
# Dovecot and Postfix instances on free 127.0.0.1 ports in temp dirs and stop
# them afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
# The browser test's axe-core, exactly as pinned (tests/browser/package-lock.json).
npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
# The Debian package, installed on this machine, checked and purged (README,
# "Install and run under systemd"). From a dev build, which the tests below
# mostly reuse: a release build would add minutes.
bash scripts/package-test.sh --profile dev
# Every benchmark as a small smoke run (`cargo bench` runs them full).
# Bench targets only: --benches would also run the library's unit tests,
# which the run below does.
cargo test --bench '*'
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --lib --bins --tests --no-fail-fast 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "%d passed, %d failed, %d skipped\n", p, f, i }' "$log"
exit "$status"
