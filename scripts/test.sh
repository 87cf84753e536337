#!/usr/bin/env bash
# Every test: installs what a fresh Debian/Ubuntu machine lacks (Dovecot,
# Postfix, …), then runs formatting and lint checks and the whole cargo test
# suite. The integration tests start their own private Dovecot and Postfix
# instances on free 127.0.0.1 ports in temp dirs and stop them afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test --all-targets --no-fail-fast
