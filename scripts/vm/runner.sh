#!/bin/bash
# Runs inside the guest (started by the image's sluice-vm.service from the payload drive at
# /payload; scripts/vm-test.sh puts it there). Records the environment, then runs every selected
# test of every test binary alone, once per containerd version, and writes the results under
# /payload/out for the host to read after poweroff:
#
#   out/env.txt        key=value: kernel, cgroup_fs, pid1, containerd, runc, criu, ...
#   out/results.tsv    suite<TAB>test<TAB>containerd<TAB>ok(1|0)<TAB>seconds<TAB>log file<TAB>driver
#   out/logs/N.log     each test's whole output
#   out/done           written last: the run finished (its absence means it did not)
#
# Its settings come from /payload/config.env (written by the host), the tests to run from
# /payload/tests.txt (suite<TAB>test<TAB>cgroup driver or "-", listed and filtered on the host), the tests' environment
# from /payload/test.env (KEY=VALUE lines, exported as they are).
set -u
# Guest uptime when the runner starts: the boot's share of the wall time.
read -r BOOT_SECONDS _ </proc/uptime
P=/payload
OUT=$P/out
mkdir -p "$OUT/logs"
: >"$OUT/results.tsv"
# shellcheck source=/dev/null
. "$P/config.env"

say() { echo "SLUICE-VM|$*"; }

# The tests' environment.
set -a
# shellcheck source=/dev/null
. "$P/test.env"
set +a
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root

# Test binaries embed the host checkout's path (CARGO_MANIFEST_DIR) for repository files such
# as packaging/; the checkout's tracked files are in the payload, linked at that path.
if [[ -n ${HOST_ROOT:-} && ! -e $HOST_ROOT ]]; then
    mkdir -p "$(dirname "$HOST_ROOT")"
    ln -s "$P/repo" "$HOST_ROOT"
fi

first() { "$@" 2>/dev/null | head -n1; }
{
    echo "kernel=$(uname -r)"
    echo "cgroup_fs=$(stat -fc %T /sys/fs/cgroup)"
    echo "pid1=$(cat /proc/1/comm)"
    echo "systemd=$(first systemctl --version | awk '{print $2}')"
    v=""
    for c in $VERSIONS; do
        if [[ $c == 1.6 ]]; then bin=/usr/bin/containerd; else bin=$SLUICE_CONTAINERD_CACHE/$c/usr/bin/containerd; fi
        v="$v${v:+ }$(first "$bin" --version | awk '{print $3}')"
    done
    echo "containerd=$v"
    echo "runc=$(first runc --version | awk '{print $3}')"
    echo "criu=$(criu --version 2>/dev/null | awk '/^Version:/{print $2; exit}')"
    if criu check >/dev/null 2>&1; then echo "criu_check=ok"; else echo "criu_check=failed"; fi
    echo "cgroup_controllers=$(cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null)"
    echo "mem_total_kb=$(awk '/^MemTotal:/{print $2}' /proc/meminfo)"
    echo "nproc=$(nproc)"
    echo "boot_seconds=$BOOT_SECONDS"
} >"$OUT/env.txt"
sed 's/^/SLUICE-VM|env|/' "$OUT/env.txt"
sync

n=0
passed=0
failed=0
start=$(date +%s.%N)
cd "${HOST_ROOT:-$P/repo}/integration" 2>/dev/null || cd "$P/repo/integration" 2>/dev/null || cd /
for c in $VERSIONS; do
    while IFS=$'\t' read -r suite t driver; do
        [[ -n $suite && -n $t ]] || continue
        bin=$P/tests/$suite
        n=$((n + 1))
        log=logs/$n.log
        t0=$(date +%s.%N)
        # "-": the test picks its drivers itself; otherwise the cri suite's driver for this run.
        d=${driver:--}
        [[ $d == - ]] && d=${SLUICE_IT_CGROUP_DRIVER:-}
        SLUICE_CONTAINERD=$c SLUICE_IT_CGROUP_DRIVER=$d timeout -k 15 "$TEST_TIMEOUT" \
            "$bin" --exact --ignored --test-threads=1 "$t" >"$OUT/$log" 2>&1 </dev/null
        rc=$?
        secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b - a}')
        if [[ $rc -eq 0 ]] && grep -q '^test result: ok. 1 passed' "$OUT/$log"; then
            ok=1
            passed=$((passed + 1))
        else
            ok=0
            failed=$((failed + 1))
            if [[ $rc -eq 124 || $rc -eq 137 ]]; then
                echo "sluice-vm: timed out after ${TEST_TIMEOUT}s (timeout exit $rc)" >>"$OUT/$log"
            elif [[ $rc -eq 0 ]]; then
                # Exit 0 without "1 passed": the name matched no test, or the test is not #[ignore]d.
                echo "sluice-vm: exit 0 but not exactly one test passed" >>"$OUT/$log"
            fi
        fi
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$suite" "$t" "$c" "$ok" "$secs" "$log" "${driver:--}" >>"$OUT/results.tsv"
        shown=$suite::$t
        [[ ${driver:--} == - ]] || shown="$shown [$driver]"
        say "test|$c|$shown|$([[ $ok == 1 ]] && echo ok || echo FAILED)|${secs}s"
        # The host reads results even from a guest it had to kill.
        sync
    done <"$P/tests.txt"
done
total=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b - a}')
echo "tests_seconds=$total" >>"$OUT/env.txt"
say "summary|$passed passed, $failed failed|${total}s"
date -u +%FT%TZ >"$OUT/done"
sync
