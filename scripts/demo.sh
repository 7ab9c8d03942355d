#!/usr/bin/env bash
# sluice demo: a private containerd with sluice registered next to the stock runc shim, a few
# containers through sluice, then the seed case (containerd issue 4434) side by side:
# the same faulty runc under io.containerd.runc.v2 (hangs) and under sluice (fails fast, with
# runc's own words). Everything it creates is removed on exit. Run as root.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SYS_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
STOCK_TIMEOUT=15

if [[ -t 1 ]]; then
    bold() { printf '\n\033[1m%s\033[0m\n' "$*"; }
else
    bold() { printf '\n%s\n' "$*"; }
fi
say() { printf '  %s\n' "$*"; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

[[ $EUID -eq 0 ]] || die "run as root (it starts containerd and runc)"

bold "[1/5] setup: packages and build"
bash "$ROOT/scripts/setup.sh"
command -v cargo >/dev/null 2>&1 || export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

SHIM=${SLUICE_SHIM_BIN:-$ROOT/target/debug/containerd-shim-sluice-v2}
FAULT_RUNC=${SLUICE_FAULT_RUNC_BIN:-$ROOT/target/debug/fault-runc}
[[ -x $SHIM ]] || die "sluice shim not found at $SHIM"
[[ -x $FAULT_RUNC ]] || die "fault-runc not found at $FAULT_RUNC"
REAL_RUNC=$(PATH=$SYS_PATH command -v runc)
BUSYBOX=$(PATH=$SYS_PATH command -v busybox)

D=$(mktemp -d /tmp/sluice-demo.XXXXXX)
NS=sluice-demo-$$
SOCK=$D/containerd.sock
RUNC_ROOT=/run/containerd/runc/$NS
CONTAINERD_PID=

ctr_() { ctr -a "$SOCK" -n "$NS" "$@"; }

# Pids of processes whose executable is our wrapper, i.e. runc calls stuck in the fault.
wrapper_pids() {
    local p
    for p in /proc/[0-9]*; do
        [[ $(readlink "$p/exe" 2>/dev/null) == "$D/wrap/runc" ]] && echo "${p#/proc/}"
    done
    return 0
}

# Pids of processes naming our temp dir on their command line (shims, runc, ctr).
our_pids() {
    local p
    for p in /proc/[0-9]*; do
        [[ ${p#/proc/} == "$$" ]] && continue
        tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF -- "$D/" && echo "${p#/proc/}"
    done
    return 0
}

cleanup() {
    set +e
    bold "[5/5] cleanup"
    local pids id s d
    mapfile -t pids < <(wrapper_pids)
    ((${#pids[@]})) && kill -9 "${pids[@]}" 2>/dev/null
    if [[ -n $CONTAINERD_PID ]]; then
        for id in $(timeout -s KILL 10 ctr -a "$SOCK" -n "$NS" container ls -q 2>/dev/null); do
            timeout -s KILL 10 ctr -a "$SOCK" -n "$NS" task kill -a -s SIGKILL "$id" >/dev/null 2>&1
            sleep 0.3
            timeout -s KILL 10 ctr -a "$SOCK" -n "$NS" task delete -f "$id" >/dev/null 2>&1
            timeout -s KILL 10 ctr -a "$SOCK" -n "$NS" container delete "$id" >/dev/null 2>&1
        done
        kill "$CONTAINERD_PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$CONTAINERD_PID" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$CONTAINERD_PID" 2>/dev/null
        wait "$CONTAINERD_PID" 2>/dev/null
    fi
    # Shims outlive containerd; they are ours if they name our socket.
    mapfile -t pids < <(our_pids)
    ((${#pids[@]})) && kill -9 "${pids[@]}" 2>/dev/null
    if [[ -d $RUNC_ROOT ]]; then
        for d in "$RUNC_ROOT"/*/; do
            [[ -d $d ]] || continue
            id=$(basename "$d")
            timeout -s KILL 10 "$REAL_RUNC" --root "$RUNC_ROOT" delete -f "$id" >/dev/null 2>&1
        done
        rm -rf "$RUNC_ROOT"
    fi
    # Shim sockets live in a fixed directory; the bundles' address files name ours.
    cat "$D"/state/io.containerd.runtime.v2.task/"$NS"/*/address 2>/dev/null | tr ' ' '\n' |
        while read -r s; do
            s=${s#unix://}
            [[ $s == /run/containerd/s/* ]] && rm -f "$s"
        done
    # Cgroups /<namespace>/<id> in every hierarchy (v1 controllers, unified, or pure v2).
    for d in /sys/fs/cgroup/"$NS" /sys/fs/cgroup/*/"$NS"; do
        [[ -d $d ]] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
    awk -v d="$D/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
        while read -r m; do umount -l "$m"; done
    rm -rf "$D"
    say "removed $D, namespace $NS, its cgroups and runc state"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bold "[2/5] a private containerd with sluice registered"
mkdir -p "$D"/{root,state,opt,fifo,wrap,shims,rootfs/{bin,proc,sys,dev,tmp,etc}}
cp "$BUSYBOX" "$D/rootfs/bin/busybox"
for a in $("$BUSYBOX" --list); do
    [[ $a == busybox ]] || ln -sf busybox "$D/rootfs/bin/$a"
done
ln -s "$SHIM" "$D/shims/containerd-shim-sluice-v2"
# The fault-injecting runc shadows the real one for both shims; until armed it passes through.
cp "$FAULT_RUNC" "$D/wrap/runc"
printf 'real_runc=%s\naction=none\n' "$REAL_RUNC" >"$D/wrap/fault.conf"
cat >"$D/config.toml" <<EOF
version = 2
root = "$D/root"
state = "$D/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$D/opt"
EOF
env -i PATH="$D/wrap:$D/shims:$SYS_PATH" containerd --config "$D/config.toml" \
    --log-level debug >"$D/containerd.log" 2>&1 </dev/null &
CONTAINERD_PID=$!
for _ in $(seq 100); do
    ctr_ version >/dev/null 2>&1 && break
    kill -0 "$CONTAINERD_PID" 2>/dev/null || { cat "$D/containerd.log"; die "containerd exited"; }
    sleep 0.2
done
ctr_ version >/dev/null 2>&1 || die "containerd did not come up (log: $D/containerd.log)"
say "containerd pid $CONTAINERD_PID, socket $SOCK, namespace $NS"
say "shims: io.containerd.runc.v2 (stock) and io.containerd.sluice.v2 -> $SHIM"

run_flags=(--fifo-dir "$D/fifo" --env PATH=/bin --rootfs)

bold "[3/5] containers through sluice"
say "\$ ctr run --rm --runtime io.containerd.sluice.v2 ... hello sh -c 'echo ...; echo ... >&2; exit 3'"
set +e
ctr_ run --rm --runtime io.containerd.sluice.v2 "${run_flags[@]}" "$D/rootfs" hello \
    sh -c 'echo "hello from a container run by sluice"; echo "and this is stderr" >&2; exit 3' \
    2>&1 | sed 's/^/    | /'
rc=${PIPESTATUS[0]}
set -e
say "exit code: $rc"
ctr_ run -d --runtime io.containerd.sluice.v2 "${run_flags[@]}" "$D/rootfs" sluice1 sleep 1000
ctr_ run -d --runtime io.containerd.runc.v2 "${run_flags[@]}" "$D/rootfs" stock1 sleep 1000
say "\$ ctr task exec --exec-id e0 sluice1 sh -c 'echo exec ok, pid 1 is \$(cat /proc/1/comm)'"
# shellcheck disable=SC2016 # expanded by the container's shell
ctr_ task exec --fifo-dir "$D/fifo" --exec-id e0 sluice1 \
    sh -c 'echo "exec ok, pid 1 is $(cat /proc/1/comm)"' | sed 's/^/    | /'
say "\$ ctr task ls"
ctr_ task ls | sed 's/^/    | /'

bold "[4/5] the seed case: runc exec shrinks its pipes to 4 KiB, writes a 7 KiB Go crash dump, exits 2"
arm() {
    printf 'real_runc=%s\nverb=exec\naction=crash-dump\nonce=true\n' "$REAL_RUNC" >"$D/wrap/fault.conf.tmp"
    echo once >"$D/wrap/fault.token"
    mv "$D/wrap/fault.conf.tmp" "$D/wrap/fault.conf"
}

arm
say "stock io.containerd.runc.v2: ctr task exec stock1 echo hi  (bounded by timeout ${STOCK_TIMEOUT}s)"
t0=$(now)
set +e
# In a subshell with stderr discarded: bash would otherwise report the SIGKILLed job.
(
    timeout -s KILL "$STOCK_TIMEOUT" ctr -a "$SOCK" -n "$NS" task exec --fifo-dir "$D/fifo" \
        --exec-id e1 stock1 echo hi >"$D/stock.out" 2>&1
    exit $?
) 2>/dev/null
rc=$?
set -e
if [[ $rc -eq 137 || $rc -eq 124 ]]; then
    say "  => HUNG: no answer after $(since "$t0"); the shim waits for runc, runc for its pipe."
    for p in $(wrapper_pids); do
        say "     runc (pid $p) is blocked in the kernel in: $(cat /proc/"$p"/wchan 2>/dev/null)"
    done
    say "     (killing the blocked runc to un-wedge the stock shim)"
    mapfile -t pids < <(wrapper_pids)
    ((${#pids[@]})) && kill -9 "${pids[@]}"
else
    say "  => returned (exit $rc) after $(since "$t0"):"
    sed 's/^/    | /' "$D/stock.out"
fi

arm
say "sluice: ctr task exec sluice1 echo hi"
t0=$(now)
set +e
(
    timeout -s KILL 60 ctr -a "$SOCK" -n "$NS" task exec --fifo-dir "$D/fifo" \
        --exec-id e1 sluice1 echo hi >"$D/sluice.out" 2>&1
    exit $?
) 2>/dev/null
rc=$?
set -e
if [[ $rc -eq 137 || $rc -eq 124 ]]; then
    say "  => HUNG after $(since "$t0") (this is a bug in sluice)"
else
    say "  => returned after $(since "$t0") with exit code $rc; ctr said:"
    grep '^ctr: ' "$D/sluice.out" | cut -c1-300 | sed 's/^/    | /'
fi
say "sluice1 is still manageable:"
ctr_ task exec --fifo-dir "$D/fifo" --exec-id e2 sluice1 echo "  a new exec works" | sed 's/^/    | /'
ctr_ task kill -s SIGKILL sluice1
sleep 0.5
ctr_ task delete sluice1 >/dev/null 2>&1 && say "  kill and delete work"
