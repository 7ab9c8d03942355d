#!/usr/bin/env bash
# Runs every test of the workspace: unit tests, then the integration tests, which start private
# containerd instances and real runc and therefore need root (see integration/src/lib.rs), once
# per containerd release line:
#
#   SLUICE_CONTAINERD_VERSIONS="1.6 1.7 2.x 2.4"   (the default)
#     1.6  the system's containerd (Debian bookworm)
#     1.7  Debian trixie's package, 2.x Debian sid's, unpacked by scripts/fetch-containerd.sh
#          (setup.sh calls it) and used with their own ctr and stock shim
#     2.2, 2.3, 2.4  upstream releases built from their Go modules by scripts/build-peers.sh
#          (setup.sh calls it; versions in scripts/peers.lock), each with its own ctr and stock
#          shim and the runc line its release was tested with (SLUICE_RUNC overrides it)
#   SLUICE_IT_THREADS=2                          parallel tests per run
#
# containerd 1.6 runs every integration suite but `node`. The other lines run the lifecycle,
# environment, fault, fault matrix, restart, security, CRI, request-sweep, bootstrap and
# 2.x-behaviour suites (SLUICE_IT_TESTS_NEWER); Debian's 1.7 and 2.x add classes, userns and docker (SLUICE_IT_TESTS_DEBIAN): the parity, robustness and doctor suites compare with the stock shim
# through task API v2 calls, which 2.x's stock shim (task API v3 only) does not serve.
# Then, once: the static shim in older-userland chroots (scripts/oldlands-test.sh), the release
# artifacts of amd64 and arm64 (scripts/release.sh), and the guest VM lane, which runs the
# `node` and `cri` suites under cgroup v2 and systemd (scripts/vm-test.sh; SLUICE_VM_LANE=0 leaves it out).
#
# Every version runs even if an earlier one failed; exits non-zero on any failure, after a
# summary with the wall time of each part.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

read -r -a VERSIONS <<<"${SLUICE_CONTAINERD_VERSIONS:-1.6 1.7 2.x 2.4}"
export SLUICE_CONTAINERD_VERSIONS="${VERSIONS[*]}"
START=$SECONDS
TIMES=()
FAILED=()
timed() { TIMES+=("$(printf '%-44s %4ss  %s' "$1" "$2" "$3")"); }

t=$SECONDS
bash scripts/setup.sh
timed "setup (packages, containerd 1.7/2.x, peers, build)" $((SECONDS - t)) ok
# setup.sh may have found cargo outside PATH; do the same here.
command -v cargo >/dev/null 2>&1 || export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

echo "== unit tests"
t=$SECONDS
cargo test --workspace --exclude sluice-integration --no-fail-fast
# The harness's own unit tests (fault-runc config and payloads, OCI image, CRI log parsing);
# the integration tests below run only the #[ignore]d ones.
cargo test -p sluice-integration --lib --bins
timed "unit tests" $((SECONDS - t)) ok

[[ $EUID -eq 0 ]] || { echo "test.sh: integration tests need root" >&2; exit 1; }
# The suite runs the static shim (setup.sh built it), the build that ships; packaging.rs then
# also checks that it is static. SLUICE_SHIM_BIN=... runs another build instead.
if [[ -z ${SLUICE_SHIM_BIN:-} ]]; then
    SLUICE_SHIM_BIN=$ROOT/target/$(rustc -vV | awk '/^host:/ {print $2}')/debug/containerd-shim-sluice-v2
    export SLUICE_REQUIRE_STATIC=1
fi
export SLUICE_SHIM_BIN
t=$SECONDS
cargo build -p sluice-integration --tests --bins
timed "integration test build" $((SECONDS - t)) ok

read -r -a NEWER_TESTS <<<"${SLUICE_IT_TESTS_NEWER:-lifecycle environment faults matrix restarts security cri sweep bootstrap behaviours}"
# step NAME COMMAND...: runs one part, records its wall time, and goes on when it fails.
step() {
    local name=$1 t=$SECONDS
    shift
    echo "== $name"
    if "$@"; then
        timed "$name" $((SECONDS - t)) ok
    else
        timed "$name" $((SECONDS - t)) FAILED
        FAILED+=("$name")
    fi
}

# " (runc 1.5)" for a line run with a runc of the peers cache.
runc_note() {
    local r=${SLUICE_RUNC:-}
    [[ -n $r ]] || r=$(awk -v l="$1" '$1 == "containerd" && $2 == l {print $5}' scripts/peers.lock)
    [[ -z $r || $r == - || $r == system ]] || printf ' (runc %s)' "$r"
}

integration() {
    local v=$1 name targets=()
    if [[ $v == 1.6 ]]; then
        # Every suite but `node`, which needs a node (cgroup v2, systemd): the guest lane runs it.
        for f in integration/tests/*.rs; do
            name=$(basename "$f" .rs)
            [[ $name == node ]] || targets+=(--test "$name")
        done
    else
        for name in "${NEWER_TESTS[@]}"; do targets+=(--test "$name"); done
        # Debian's 1.7 and 2.x also run the failure classes, the Go client's user-namespace
        # cases and Docker (26 on 1.7, 28 on 2.x); upstream 2.N lines run the list above.
        if [[ $v == 1.7 || $v == 2.x ]]; then
            for name in ${SLUICE_IT_TESTS_DEBIAN:-classes userns docker}; do
                targets+=(--test "$name")
            done
        fi
    fi
    # A line built from source runs with the runc its release was tested with (peers.lock).
    local runc=${SLUICE_RUNC:-}
    if [[ -z $runc ]]; then
        runc=$(awk -v l="$v" '$1 == "containerd" && $2 == l {print $5}' scripts/peers.lock)
        [[ -n $runc && $runc != - ]] || runc=system
    fi
    SLUICE_CONTAINERD=$v SLUICE_RUNC=$runc cargo test -p sluice-integration "${targets[@]}" \
        --no-fail-fast -- --ignored --test-threads="${SLUICE_IT_THREADS:-2}"
}
for v in "${VERSIONS[@]}"; do
    step "integration tests, containerd $v$(runc_note "$v")" integration "$v"
    if [[ $v == 1.6 ]]; then
        # The benchmark in its quick mode, so it cannot rot: it fails only when it breaks; a
        # missed target is in its table, not a failure. It measures the static release shim; the
        # benchmark itself runs as a debug build, whose dependencies the tests above built.
        step "benchmark (quick), containerd 1.6" env -u SLUICE_SHIM_BIN \
            cargo run -p sluice-bench -- --quick --containerd 1.6 \
            --json target/bench-quick.json --svg target/bench-quick.svg
    fi
done

# The static shim on older userlands (bullseye's glibc 2.31; buster where the mirror still
# serves it), in cached debootstrap chroots.
if [[ ${SLUICE_REQUIRE_STATIC:-} == 1 ]]; then
    step "older userlands (static shim in chroots)" bash scripts/oldlands-test.sh
else
    echo "== older userlands: skipped (SLUICE_SHIM_BIN is not the static build)"
fi

# The release artifacts of both architectures, each checked by release.sh (contents, -v of
# the packaged binary, rpm metadata, SHA256SUMS); arm64 is cross-built and run under qemu-user.
releases() {
    local dist rc=0
    dist=$(mktemp -d)
    bash scripts/release.sh --out "$dist" || rc=1
    if grep -qx aarch64-unknown-linux-gnu <<<"$(rustup target list --installed 2>/dev/null)"; then
        bash scripts/release.sh --arch arm64 --out "$dist" || rc=1
    else
        echo "== arm64 release: skipped (no Rust standard library for aarch64-unknown-linux-gnu)"
    fi
    [[ ! -s $dist/SHA256SUMS ]] || cat "$dist/SHA256SUMS"
    rm -rf "$dist"
    return $rc
}
step "release artifacts (amd64, arm64)" releases

# The node and cri suites where nodes run: cgroup v2, systemd as PID 1, both cgroup drivers
# (through ctr and through the CRI plugin), CRIU (docs/vm-lane.md). SLUICE_VM_LANE=0 leaves it out, e.g. on a machine without qemu's room.
# A hung guest must not eat CI's time: the suites take about 10 minutes under TCG.
if [[ ${SLUICE_VM_LANE:-1} == 1 ]]; then
    step "guest VM lane (node and cri suites, containerd 1.6)" \
        env SLUICE_VM_TESTS="${SLUICE_VM_TESTS:-node cri}" \
        SLUICE_VM_DEADLINE="${SLUICE_VM_DEADLINE:-1800}" bash scripts/vm-test.sh
else
    echo "== guest VM lane: skipped (SLUICE_VM_LANE=0)"
fi

echo "== wall time per part"
printf '  %s\n' "${TIMES[@]}"
printf '  %-44s %4ss\n' "total" $((SECONDS - START))
if ((${#FAILED[@]})); then
    printf '== FAILED: %s\n' "${FAILED[@]}" >&2
    exit 1
fi
echo "== all tests passed"
