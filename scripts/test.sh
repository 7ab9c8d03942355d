#!/usr/bin/env bash
# Runs every test of the workspace: unit tests, then the integration tests, which start private
# containerd instances and real runc and therefore need root (see integration/src/lib.rs).
# Exits non-zero on any failure.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

bash scripts/setup.sh
# setup.sh may have found cargo outside PATH; do the same here.
command -v cargo >/dev/null 2>&1 || export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

echo "== unit tests"
cargo test --workspace --exclude sluice-integration --no-fail-fast
# The harness's own unit tests (fault-runc config and payloads); the integration tests below
# run only the #[ignore]d ones.
cargo test -p sluice-integration --lib --bins

echo "== integration tests (private containerd per test, stock shim and sluice)"
[[ $EUID -eq 0 ]] || { echo "test.sh: integration tests need root" >&2; exit 1; }
export SLUICE_SHIM_BIN=${SLUICE_SHIM_BIN:-$ROOT/target/debug/containerd-shim-sluice-v2}
cargo build -p sluice-integration --tests --bins
cargo test -p sluice-integration --tests --no-fail-fast -- --ignored --test-threads="${SLUICE_IT_THREADS:-2}"

echo "== all tests passed"
