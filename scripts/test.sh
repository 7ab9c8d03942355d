#!/usr/bin/env bash
# Runs every test of the workspace: unit tests, then the integration tests, which start private
# containerd instances and real runc and therefore need root (see integration/src/lib.rs), once
# per containerd release line:
#
#   SLUICE_CONTAINERD_VERSIONS="1.6 1.7 2.x"   (default: all three)
#     1.6  the system's containerd (Debian bookworm)
#     1.7  Debian trixie's package, 2.x Debian sid's, unpacked by scripts/fetch-containerd.sh
#          (setup.sh calls it) and used with their own ctr and stock shim
#   SLUICE_IT_THREADS=2                          parallel tests per run
#
# containerd 1.6 runs every integration suite. 1.7 and 2.x run the lifecycle, fault, fault
# matrix, restart, security, CRI and request-sweep suites (SLUICE_IT_TESTS_NEWER): the parity, robustness and
# doctor suites compare with the stock shim through task API v2 calls, which 2.x's stock shim
# (task API v3 only) does not serve.
#   SLUICE_VM_LANE=0                             leave out the guest VM lane (the node suite in a
#                                                cgroup v2 + systemd guest under qemu)
#   SLUICE_PACKAGE_TEST=1                        also build the Debian package from the static
#                                                release binary and check its contents
#                                                (scripts/package.sh --check)
#
# Every version runs even if an earlier one failed; exits non-zero on any failure, after a
# summary with the wall time of each part.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

read -r -a VERSIONS <<<"${SLUICE_CONTAINERD_VERSIONS:-1.6 1.7 2.x}"
export SLUICE_CONTAINERD_VERSIONS="${VERSIONS[*]}"
START=$SECONDS
TIMES=()
FAILED=()
timed() { TIMES+=("$(printf '%-44s %4ss  %s' "$1" "$2" "$3")"); }

t=$SECONDS
bash scripts/setup.sh
timed "setup (packages, containerd 1.7/2.x, build)" $((SECONDS - t)) ok
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

read -r -a NEWER_TESTS <<<"${SLUICE_IT_TESTS_NEWER:-lifecycle environment faults matrix restarts security cri sweep}"
for v in "${VERSIONS[@]}"; do
    echo "== integration tests, containerd $v (private containerd per test, stock shim and sluice, CRI)"
    t=$SECONDS
    # Every suite but `node`, which needs a node (cgroup v2, systemd): the guest lane runs it.
    targets=()
    for f in integration/tests/*.rs; do
        name=$(basename "$f" .rs)
        [[ $name == node ]] || targets+=(--test "$name")
    done
    if [[ $v != 1.6 ]]; then
        targets=()
        for name in "${NEWER_TESTS[@]}"; do targets+=(--test "$name"); done
    fi
    if SLUICE_CONTAINERD=$v cargo test -p sluice-integration "${targets[@]}" --no-fail-fast -- \
        --ignored --test-threads="${SLUICE_IT_THREADS:-2}"; then
        timed "integration tests, containerd $v" $((SECONDS - t)) ok
    else
        timed "integration tests, containerd $v" $((SECONDS - t)) FAILED
        FAILED+=("integration tests on containerd $v")
    fi
done

# The static shim on older userlands (bullseye's glibc 2.31; buster where the mirror still
# serves it), in cached debootstrap chroots.
if [[ ${SLUICE_REQUIRE_STATIC:-} == 1 ]]; then
    echo "== older userlands (scripts/oldlands-test.sh)"
    t=$SECONDS
    if bash scripts/oldlands-test.sh; then
        timed "older userlands (static shim in chroots)" $((SECONDS - t)) ok
    else
        timed "older userlands (static shim in chroots)" $((SECONDS - t)) FAILED
        FAILED+=("older userlands")
    fi
else
    echo "== older userlands: skipped (SLUICE_SHIM_BIN is not the static build)"
fi

# The node suite where nodes run: cgroup v2, systemd as PID 1, both cgroup drivers, CRIU
# (docs/vm-lane.md). SLUICE_VM_LANE=0 leaves it out, e.g. on a machine without qemu's room.
if [[ ${SLUICE_VM_LANE:-1} == 1 ]]; then
    echo "== guest VM lane: the node suite under cgroup v2 and systemd (scripts/vm-test.sh)"
    t=$SECONDS
    # A hung guest must not eat CI's time: the node suite takes about 8 minutes under TCG.
    if SLUICE_VM_DEADLINE=${SLUICE_VM_DEADLINE:-1800} bash scripts/vm-test.sh; then
        timed "guest VM lane (node suite, containerd 1.6)" $((SECONDS - t)) ok
    else
        timed "guest VM lane (node suite, containerd 1.6)" $((SECONDS - t)) FAILED
        FAILED+=("guest VM lane")
    fi
else
    echo "== guest VM lane: skipped (SLUICE_VM_LANE=0)"
fi

if [[ ${SLUICE_PACKAGE_TEST:-} == 1 ]]; then
    echo "== Debian package (SLUICE_PACKAGE_TEST=1)"
    t=$SECONDS
    if bash scripts/package.sh --check; then
        timed "Debian package build and check" $((SECONDS - t)) ok
    else
        timed "Debian package build and check" $((SECONDS - t)) FAILED
        FAILED+=("Debian package")
    fi
else
    echo "== Debian package: skipped (set SLUICE_PACKAGE_TEST=1 to build and check it)"
fi

echo "== wall time per part"
printf '  %s\n' "${TIMES[@]}"
printf '  %-44s %4ss\n' "total" $((SECONDS - START))
if ((${#FAILED[@]})); then
    printf '== FAILED: %s\n' "${FAILED[@]}" >&2
    exit 1
fi
echo "== all tests passed"
