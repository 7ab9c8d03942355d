#!/usr/bin/env bash
# sluice vs the stock runc shim (and runc alone), side by side in one private containerd.
#
#   sudo bench/run.sh [--quick] [--only lifecycle,exec,gib,idle,conc,drain] [--json FILE]
#
# Builds what is missing (the release shim, the fault-injecting runc of the integration
# harness), makes a work dir under /tmp, runs bench/bench.py, and removes everything it
# started or made, also when interrupted. See bench/README.md.
#
# Environment: SLUICE_BIN (default target/release/containerd-shim-sluice-v2),
# SLUICE_FAULT_RUNC_BIN (default target/debug/fault-runc), SLUICE_BENCH_BUILD=1 to rebuild both.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")

if [ "$(id -u)" != 0 ]; then
    echo "bench/run.sh: run as root (it starts containerd and runc): sudo $0 $*" >&2
    exit 1
fi

missing=()
for tool in containerd ctr runc containerd-shim-runc-v2 busybox python3; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "bench/run.sh: missing: ${missing[*]} (scripts/setup.sh installs them)" >&2
    exit 1
fi

sluice_bin=${SLUICE_BIN:-$repo/target/release/containerd-shim-sluice-v2}
fault_runc=${SLUICE_FAULT_RUNC_BIN:-$repo/target/debug/fault-runc}
if [ "${SLUICE_BENCH_BUILD:-0}" = 1 ] || [ ! -x "$sluice_bin" ]; then
    echo "bench/run.sh: building the release shim (cargo build --release)" >&2
    (cd "$repo" && cargo build --release --bin containerd-shim-sluice-v2)
fi
if [ "${SLUICE_BENCH_BUILD:-0}" = 1 ] || [ ! -x "$fault_runc" ]; then
    echo "bench/run.sh: building fault-runc (cargo build -p sluice-integration --bin fault-runc)" >&2
    (cd "$repo" && cargo build -p sluice-integration --bin fault-runc)
fi

# Short: containerd's ttrpc socket path must fit in a sockaddr_un.
dir=$(mktemp -d /tmp/sb.XXXXXX)
child=

cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
        kill -TERM "$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
    fi
    # bench.py cleans up after itself; this is for a bench.py that died without doing so.
    if [ -d "$dir" ]; then
        python3 "$here/bench.py" --cleanup-only --dir "$dir" || true
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

python3 "$here/bench.py" --dir "$dir" --sluice-bin "$sluice_bin" --fault-runc "$fault_runc" "$@" &
child=$!
wait "$child"
