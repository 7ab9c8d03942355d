#!/usr/bin/env bash
# Proves the static shim starts on older userlands: in a debootstrap chroot of each suite
# (buster: glibc 2.28, as RHEL 8; bullseye: glibc 2.31, as Ubuntu 20.04), and in "bare", a
# root holding nothing but the binary (no libc, no shell, no loader: what the oldest or the
# most minimal node image cannot be worse than), it runs
#   -v                      answers, and says "static"
#   doctor --json           exits 0 or 1 with one JSON object (proc and sys mounted in the chroot)
#   -h / an unknown flag    exit 0 / 2 with the usage, as the stock shim's Go flag package does
#   start / delete          without containerd's environment: exit 1, naming TTRPC_ADDRESS
# and, as the control that shows the chroot is old enough to matter, that the dynamic debug build
# (target/debug) does NOT start there (glibc too old), where that build exists.
#
#   scripts/oldlands-test.sh [--prepare] [SUITE...]   default: $SLUICE_OLDLANDS or "buster bullseye bare"
#
#   --prepare            only build (or find cached) the chroots; no binary needed
#
#   SLUICE_SHIM_BIN      the static shim (default: scripts/build-static.sh's debug build)
#   SLUICE_OLDLANDS_CACHE  where chroots are kept (default /var/cache/sluice-ci/oldlands), one
#                        per suite keyed by its inputs (suite, mirror, variant, package list,
#                        debootstrap version): a change of any of them makes a new one
#   SLUICE_OLDLANDS_STRICT=1  fail, rather than skip, a suite the mirror no longer serves
#
# The mirror is the machine's own (its Debian sources, read at run time). A suite gone from it
# (Debian moves old releases to its archive, which this machine may not reach) is reported as
# SKIPPED with what was tried. Needs root (debootstrap, chroot, mounts in a private namespace:
# nothing stays mounted). Exits non-zero if any check fails.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CACHE=${SLUICE_OLDLANDS_CACHE:-/var/cache/sluice-ci/oldlands}
NAME=containerd-shim-sluice-v2
VARIANT=minbase
INCLUDE=ca-certificates

say() { printf '[oldlands] %s\n' "$*"; }
die() { printf '[oldlands] error: %s\n' "$*" >&2; exit 1; }
# A command that fails under set -e says which, rather than ending the script without a word.
trap 'say "error: line $LINENO: \"$BASH_COMMAND\" exited $?" >&2' ERR

[[ $EUID -eq 0 ]] || die "needs root (debootstrap, chroot)"
for t in debootstrap chroot unshare python3 sha256sum; do
    command -v "$t" >/dev/null 2>&1 || die "$t not found"
done
prepare=0
if [[ ${1:-} == --prepare ]]; then
    prepare=1
    shift
fi
read -r -a SUITES <<<"${*:-${SLUICE_OLDLANDS:-buster bullseye bare}}"

# shellcheck source=lib/mirror.sh
source "$ROOT/scripts/lib/mirror.sh"
MIRROR=$(mirror_uri)

bin=${SLUICE_SHIM_BIN:-}
if ((prepare)); then
    bin=/bin/true
elif [[ -z $bin ]]; then
    bin=$(bash scripts/build-static.sh | tail -n 1)
fi
[[ -x $bin ]] || die "$bin is not an executable"
if ((!prepare)); then
    v=$("$bin" -v) || die "$bin -v failed: $v"
    grep -q '^  Build:    static,' <<<"$v" || die "$bin is not a static build: $v"
fi
dynamic=$ROOT/target/debug/$NAME

# Runs "$@" chrooted in $1 with proc and sys mounted, in a private mount namespace, with an
# environment as bare as containerd's absence makes it.
in_chroot() {
    local dir=$1
    shift
    unshare --mount --propagation private -- sh -c '
        d=$1; shift
        mount -t proc proc "$d/proc" && mount --rbind /sys "$d/sys" || exit 125
        exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root chroot "$d" "$@"
    ' sh "$dir" "$@"
}

chroot_for() { # SUITE -> prints the cached chroot dir (building it when missing)
    local suite=$1 key dir
    key=$(printf '%s\n' "$suite" "$MIRROR" "$VARIANT" "$INCLUDE" "$(debootstrap --version 2>/dev/null || dpkg-query -W -f='${Version}' debootstrap)" | sha256sum | cut -c1-16)
    dir=$CACHE/$suite-$key
    if [[ -f $dir/.sluice-complete ]]; then
        say "$suite: cached chroot $dir" >&2
        echo "$dir"
        return 0
    fi
    rm -rf "$dir.tmp"
    mkdir -p "$CACHE"
    say "$suite: debootstrap --variant=$VARIANT $suite (machine's mirror) into $dir" >&2
    if ! debootstrap --variant="$VARIANT" --include="$INCLUDE" \
        --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
        "$suite" "$dir.tmp" "$MIRROR" >"$CACHE/$suite.debootstrap.log" 2>&1; then
        tail -n 5 "$CACHE/$suite.debootstrap.log" >&2
        rm -rf "$dir.tmp"
        return 1
    fi
    rm -rf "$dir"
    mv "$dir.tmp" "$dir"
    touch "$dir/.sluice-complete"
    echo "$dir"
}

# Whether the mirror serves SUITE at all (its Release file).
served() {
    local code
    code=$(python3 - "$MIRROR/dists/$1/Release" <<'EOF'
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen(urllib.request.Request(sys.argv[1], method="HEAD"), timeout=20) as r:
        print(r.status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception as e:
    print("unreachable (%s)" % e)
EOF
)
    echo "$code"
}

FAILED=() SKIPPED=() PASSED=()
fail() { say "FAIL $*"; FAILED+=("$*"); }

for suite in "${SUITES[@]}"; do
    t=$SECONDS
    if [[ $suite == bare ]]; then
        dir=$CACHE/bare
        rm -rf "$dir"
        mkdir -p "$dir/proc" "$dir/sys"
        say "bare: an empty root (no libc)"
        if ((prepare)); then
            PASSED+=("$suite")
            continue
        fi
        glibc=none
    else
        code=$(served "$suite")
        if [[ $code != 200 ]]; then
            msg="$suite: the machine's Debian mirror does not serve it (dists/$suite/Release: $code)"
            if [[ ${SLUICE_OLDLANDS_STRICT:-} == 1 ]]; then fail "$msg"; else say "SKIPPED $msg"; SKIPPED+=("$suite"); fi
            continue
        fi
        if ! dir=$(chroot_for "$suite"); then
            fail "$suite: debootstrap failed (log: $CACHE/$suite.debootstrap.log)"
            continue
        fi
        # The whole output first: `| head -n 1` would close the pipe on ldd's later lines, and
        # under pipefail its SIGPIPE failed this script at random (1 run in 3).
        glibc=$(in_chroot "$dir" /usr/bin/ldd --version 2>&1) || die "$suite: ldd --version in the chroot: $glibc"
        glibc=$(awk 'NR == 1 { print $NF }' <<<"$glibc")
        say "$suite: glibc $glibc"
        if ((prepare)); then
            PASSED+=("$suite")
            continue
        fi
    fi
    mkdir -p "$dir/opt/sluice"
    install -m 0755 "$bin" "$dir/opt/sluice/$NAME"
    ok=1
    check() { # DESCRIPTION EXPECTED-CODE GREP-PATTERN STREAM ARGS...
        local what=$1 want=$2 pat=$3 stream=$4 got out err
        shift 4
        set +e
        in_chroot "$dir" "/opt/sluice/$NAME" "$@" >"$CACHE/out" 2>"$CACHE/err"
        got=$?
        set -e
        out=$(cat "$CACHE/out") err=$(cat "$CACHE/err")
        local text=$out
        [[ $stream == err ]] && text=$err
        if [[ " $want " != *" $got "* ]] || ! grep -qE -- "$pat" <<<"$text"; then
            fail "$suite: $what: exit $got (want $want), $stream does not match /$pat/: stdout: ${out:0:300} stderr: ${err:0:300}"
            ok=0
        fi
    }
    check "-v" 0 '^  Build:    static,' out -v
    check "doctor --json" "0 1" '^\{' out doctor --json
    if ! python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$CACHE/out" 2>/dev/null; then
        fail "$suite: doctor --json printed no JSON object: $(head -c 300 "$CACHE/out")"
        ok=0
    fi
    check "-h" 0 '^Usage of /opt/sluice/containerd-shim-sluice-v2:' err -h
    check "an unknown flag" 2 '^flag provided but not defined: -nope' err -nope
    check "start without containerd" 1 '`start` needs the environment variable TTRPC_ADDRESS' err \
        -namespace oldlands -id no-such-task start
    check "delete without containerd" 1 '`delete` needs the environment variable TTRPC_ADDRESS' err \
        -namespace oldlands -id no-such-task delete
    # The control: the dynamic build does not start here (only where glibc is older than it needs).
    if [[ -x $dynamic ]]; then
        install -m 0755 "$dynamic" "$dir/opt/sluice/$NAME.dynamic"
        dcode=0
        dyn=$(in_chroot "$dir" "/opt/sluice/$NAME.dynamic" -v 2>&1) || dcode=$?
        needs=$(objdump -T "$dynamic" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n 1)
        say "$suite: control: the dynamic build (needs $needs) -> exit $dcode: $(head -n 1 <<<"$dyn")"
        rm -f "$dir/opt/sluice/$NAME.dynamic"
    fi
    rm -rf "$dir/opt/sluice" "$CACHE/out" "$CACHE/err"
    if ((ok)); then
        say "ok: $suite (glibc $glibc): -v, doctor --json, -h, flags, start/delete ($((SECONDS - t))s)"
        PASSED+=("$suite")
    fi
done

say "passed: ${PASSED[*]:-none}; skipped: ${SKIPPED[*]:-none}; failed: ${#FAILED[@]}"
((${#FAILED[@]} == 0)) || exit 1
((${#PASSED[@]} > 0)) || die "no suite could be tested"
