#!/usr/bin/env bash
# The guest VM lane: runs the integration tests where Kubernetes nodes run them -- unified
# cgroup v2, systemd as PID 1 -- in a Debian bookworm guest under qemu, and reports per test.
# Documentation: docs/vm-lane.md.
#
#   scripts/vm-test.sh                                   # the node suite, containerd 1.6
#   SLUICE_VM_TESTS="lifecycle node" scripts/vm-test.sh  # suites = integration/tests/<name>.rs
#   SLUICE_VM_FILTER="sluice::" scripts/vm-test.sh       # only tests whose suite::name contains
#                                                        # one of these words
#
# Settings (environment):
#   SLUICE_VM_TESTS         test binaries (suite names) to run; default "node"
#   SLUICE_VM_CRI_DRIVERS   cgroup drivers each test of the cri suite runs under (it takes its
#                           driver from SLUICE_IT_CGROUP_DRIVER); default "cgroupfs systemd"
#   SLUICE_VM_FILTER        words; a test runs if "suite::name" contains one (default: all)
#   SLUICE_VM_CONTAINERD    containerd lines to run each test on; default "1.6" (the guest's
#                           package); 1.7 and 2.x come from scripts/fetch-containerd.sh's cache
#   SLUICE_VM_ACCEL         tcg (default) or kvm (`-accel kvm -cpu host`; did not work on the
#                           machine the lane was built on)
#   SLUICE_VM_MEM           guest memory in MiB (default 2048); SLUICE_VM_SMP vCPUs (default 2)
#   SLUICE_VM_DEADLINE      seconds before a guest is killed (default: 2400, or 600 plus 180
#                           per selected test run when that is more)
#   SLUICE_VM_TEST_TIMEOUT  seconds per test inside the guest (default 600)
#   SLUICE_SHIM_BIN         the shim build to run in the guest (default target/debug's;
#                           scripts/test.sh passes the static build, the one that ships)
#   SLUICE_VM_CACHE         image cache (default /var/cache/sluice-vm); SLUICE_VM_REBUILD=1
#   SLUICE_IT_SYSTEMD       passed to the tests as is; default 1 (containerd as a systemd unit)
#   SLUICE_IT_*, SLUICE_SOAK_*, RUST_BACKTRACE, RUST_LOG  passed through to the tests
#
# Prints one line per test, then `N passed, N failed` alone on a line; writes
# target/vm-test/report.json and keeps the console log and each test's output in
# target/vm-test/. Exits non-zero if a test failed or the lane could not run. Needs root.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUTDIR=$ROOT/target/vm-test
SUITES=${SLUICE_VM_TESTS:-node}
FILTER=${SLUICE_VM_FILTER:-}
CRI_DRIVERS=${SLUICE_VM_CRI_DRIVERS:-cgroupfs systemd}
VERSIONS=${SLUICE_VM_CONTAINERD:-1.6}
ACCEL=${SLUICE_VM_ACCEL:-tcg}
MEM=${SLUICE_VM_MEM:-2048}
SMP=${SLUICE_VM_SMP:-2}
TEST_TIMEOUT=${SLUICE_VM_TEST_TIMEOUT:-600}
CONTAINERD_CACHE=${SLUICE_CONTAINERD_CACHE:-/var/cache/sluice-ci/containerd}

say() { printf '[vm-test] %s\n' "$*"; }
# A lane that cannot run is a failure, never a skip.
die() {
    printf '[vm-test] error: %s\n' "$*" >&2
    echo "0 passed, 1 failed"
    exit 1
}

[[ $EUID -eq 0 ]] || die "needs root (debootstrap, chroot; the tests in the guest run as root anyway)"
command -v cargo >/dev/null 2>&1 || export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
command -v cargo >/dev/null 2>&1 || die "cargo not found"

# Host tools, installed from Debian when missing.
declare -A PKG=([qemu-system-x86_64]=qemu-system-x86 [debootstrap]=debootstrap [mkfs.ext4]=e2fsprogs
    [debugfs]=e2fsprogs [jq]=jq [strip]=binutils [protoc]=protobuf-compiler)
missing=()
for t in "${!PKG[@]}"; do
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin command -v "$t" >/dev/null 2>&1 \
        || missing+=("${PKG[$t]}")
done
if ((${#missing[@]})); then
    read -r -a missing <<<"$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')"
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
        || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } \
        || die "apt-get install ${missing[*]} failed"
fi
export PATH=$PATH:/usr/sbin:/sbin
[[ -e /usr/share/seabios/bios-256k.bin || -e /usr/share/qemu/bios-256k.bin ]] \
    || die "qemu has no BIOS (bios-256k.bin; Debian package seabios)"

case $ACCEL in
    tcg) ACCEL_ARGS=(-accel tcg,thread=multi -cpu max) ;;
    kvm)
        [[ -w /dev/kvm ]] || die "SLUICE_VM_ACCEL=kvm but /dev/kvm is not usable"
        ACCEL_ARGS=(-accel kvm -cpu host)
        ;;
    *) die "SLUICE_VM_ACCEL=$ACCEL: use tcg or kvm" ;;
esac

t_all=$SECONDS
rm -rf "$OUTDIR"
mkdir -p "$OUTDIR"

# 1. The guest image (cached).
t=$SECONDS
IMAGE=$(bash "$ROOT/scripts/vm/build-image.sh" | tail -n1) || die "guest image build failed"
[[ -s $IMAGE/guest.img ]] || die "no guest image in '$IMAGE'"
T_IMAGE=$((SECONDS - t))

# 2. The host build: shim, fault-runc, test binaries.
t=$SECONDS
say "cargo build --workspace --bins; cargo test -p sluice-integration --no-run"
cargo build --workspace --bins -q || die "cargo build --workspace --bins failed"
cargo test -p sluice-integration --no-run -q --message-format=json >"$OUTDIR/cargo-tests.json" \
    || die "cargo test --no-run failed"
T_BUILD=$((SECONDS - t))

PAYLOAD=$OUTDIR/payload
mkdir -p "$PAYLOAD/bin" "$PAYLOAD/tests" "$PAYLOAD/out" "$PAYLOAD/containerd"
: >"$PAYLOAD/tests.txt"
# A test is selected when SLUICE_VM_FILTER is empty or one of its words is in "suite::name".
selected() {
    local w
    [[ -z $FILTER ]] && return 0
    for w in $FILTER; do [[ $1 == *"$w"* ]] && return 0; done
    return 1
}
# Debug info is most of a debug binary's size; the guest has no use for it.
put() { cp "$1" "$2" && { strip --strip-debug "$2" 2>/dev/null || true; }; }
SHIM=${SLUICE_SHIM_BIN:-$ROOT/target/debug/containerd-shim-sluice-v2}
put "$SHIM" "$PAYLOAD/bin/containerd-shim-sluice-v2" || die "no shim binary at $SHIM"
put "$ROOT/target/debug/fault-runc" "$PAYLOAD/bin/fault-runc" || die "no target/debug/fault-runc"
for s in $SUITES; do
    exe=$(jq -r --arg s "$s" 'select(.reason == "compiler-artifact" and .target.kind == ["test"]
        and .target.name == $s and .executable != null) | .executable' "$OUTDIR/cargo-tests.json" | tail -n1)
    if [[ -z $exe ]]; then
        have=$(jq -r 'select(.reason == "compiler-artifact" and .target.kind == ["test"]) | .target.name' \
            "$OUTDIR/cargo-tests.json" | sort -u | tr '\n' ' ')
        die "SLUICE_VM_TESTS names '$s', which is not an integration test binary (there are: $have)"
    fi
    put "$exe" "$PAYLOAD/tests/$s"
    # Listed and filtered here, so an empty selection fails before a boot.
    "$exe" --list --ignored 2>"$OUTDIR/list-$s.err" | sed -n 's/: test$//p' >"$OUTDIR/list-$s.txt" \
        || die "$exe --list --ignored failed: $(head -c 400 "$OUTDIR/list-$s.err")"
    [[ -s $OUTDIR/list-$s.txt ]] || die "suite $s lists no #[ignore]d tests"
    # The node suite runs each case under both drivers itself; the cri suite is told its driver.
    drivers=-
    if [[ $s == cri ]]; then drivers=$CRI_DRIVERS; fi
    while IFS= read -r name; do
        for d in $drivers; do
            case $d in -|cgroupfs|systemd) ;; *) die "SLUICE_VM_CRI_DRIVERS names '$d' (known: cgroupfs systemd)" ;; esac
            if selected "$s::$name"; then printf '%s\t%s\t%s\n' "$s" "$name" "$d"; fi
        done
    done <"$OUTDIR/list-$s.txt" >>"$PAYLOAD/tests.txt"
done
NTESTS=$(( $(wc -l <"$PAYLOAD/tests.txt") * $(wc -w <<<"$VERSIONS") ))
((NTESTS > 0)) || die "no test of '$SUITES' matches SLUICE_VM_FILTER='$FILTER'"
DEADLINE=${SLUICE_VM_DEADLINE:-$(( 600 + 180 * NTESTS > 2400 ? 600 + 180 * NTESTS : 2400 ))}
for c in $VERSIONS; do
    case $c in
        1.6) ;;
        1.7 | 2.x)
            [[ -x $CONTAINERD_CACHE/$c/usr/bin/containerd ]] || bash "$ROOT/scripts/fetch-containerd.sh" "$c" \
                || die "containerd $c: scripts/fetch-containerd.sh $c failed"
            cp -a "$(readlink -f "$CONTAINERD_CACHE/$c")/." "$PAYLOAD/containerd/$c/"
            ;;
        *) die "SLUICE_VM_CONTAINERD names '$c' (known: 1.6 1.7 2.x)" ;;
    esac
done
# The checkout's tracked files, for tests that read repository files by their host path.
git -C "$ROOT" ls-files -z | tar -C "$ROOT" --null -T - -cf - | tar -C "$PAYLOAD" --one-top-level=repo -xf - \
    || die "copying the checkout's files into the payload failed"
install -m 755 "$ROOT/scripts/vm/runner.sh" "$PAYLOAD/runner.sh"
{
    printf 'VERSIONS=%q\nTEST_TIMEOUT=%q\nHOST_ROOT=%q\n' "$VERSIONS" "$TEST_TIMEOUT" "$ROOT"
} >"$PAYLOAD/config.env"
{
    printf 'SLUICE_SHIM_BIN=/payload/bin/containerd-shim-sluice-v2\n'
    printf 'SLUICE_FAULT_RUNC_BIN=/payload/bin/fault-runc\n'
    printf 'SLUICE_CONTAINERD_CACHE=/payload/containerd\n'
    if [[ ! -v SLUICE_IT_SYSTEMD ]]; then printf 'SLUICE_IT_SYSTEMD=1\n'; fi
    while IFS= read -r name; do
        printf '%s=%q\n' "$name" "${!name}"
    done < <(compgen -e | grep -E '^(SLUICE_IT_|SLUICE_SOAK_|RUST_BACKTRACE$|RUST_LOG$)' || true)
} >"$PAYLOAD/test.env"
size_mb=$(( $(du -sm "$PAYLOAD" | cut -f1) + 512 ))
mkfs.ext4 -q -F -L sluicepayload -d "$PAYLOAD" "$OUTDIR/payload.img" "${size_mb}M" >/dev/null \
    || die "mkfs.ext4 -d of the payload failed"
rm -rf "$PAYLOAD"
T_PAYLOAD=$((SECONDS - t - T_BUILD))

# 3. Boot a fresh copy of the image; the runner powers the guest off when done.
cp --sparse=always "$IMAGE/guest.img" "$OUTDIR/run.img"
say "booting the guest ($ACCEL, ${SMP} vCPUs, ${MEM} MiB; deadline ${DEADLINE}s): $NTESTS test runs of '$SUITES' on containerd '$VERSIONS'"
t=$SECONDS
set +e
timeout -k 10 "$DEADLINE" qemu-system-x86_64 "${ACCEL_ARGS[@]}" -smp "$SMP" -m "$MEM" \
    -nographic -nic none -no-reboot -kernel "$IMAGE/vmlinuz" -initrd "$IMAGE/initrd.img" \
    -append "root=/dev/vda rw console=ttyS0 systemd.unified_cgroup_hierarchy=1 panic=-1 systemd.show_status=0 loglevel=4" \
    -drive file="$OUTDIR/run.img",if=virtio,format=raw,cache=unsafe \
    -drive file="$OUTDIR/payload.img",if=virtio,format=raw,cache=unsafe \
    </dev/null >"$OUTDIR/console.log" 2>&1
QEMU_RC=$?
set -e
T_VM=$((SECONDS - t))
rm -f "$OUTDIR/run.img"

# 4. Results back from the payload drive.
debugfs -R "rdump /out $OUTDIR" "$OUTDIR/payload.img" >/dev/null 2>&1 || true
OUT=$OUTDIR/out
lane_error=
if [[ $QEMU_RC -eq 124 || $QEMU_RC -eq 137 ]]; then
    lane_error="guest killed at the deadline (${DEADLINE}s, SLUICE_VM_DEADLINE)"
elif [[ $QEMU_RC -ne 0 ]]; then
    lane_error="qemu exited $QEMU_RC"
elif [[ ! -e $OUT/done ]]; then
    lane_error="the guest powered off before the runner finished"
fi
if [[ -z $lane_error ]]; then rm -f "$OUTDIR/payload.img"; fi

envval() { sed -n "s/^$1=//p" "$OUT/env.txt" 2>/dev/null | head -n1; }
tail_of() { tail -n "${2:-25}" "$1" 2>/dev/null | tail -c 3000; }
rows=$OUTDIR/rows.jsonl
: >"$rows"
if [[ -s $OUT/results.tsv ]]; then
    while IFS=$'\t' read -r suite name c ok secs log driver; do
        detail=
        [[ $ok == 1 ]] || detail=$(tail_of "$OUT/$log")
        jq -nc --arg suite "$suite" --arg name "$name" --arg c "$c" --arg ok "$ok" --arg secs "$secs" \
            --arg detail "$detail" --arg driver "${driver:--}" '
            ($name | split("::")) as $seg
            | {name: ($suite + "::" + $name + (if $driver == "-" then "" else "::" + $driver end)),
               # cri tests that install sluice under another name say "sluice" or "packaged".
               shim: (if ($seg | any(. == "sluice" or startswith("sluice_") or endswith("_sluice")
                                     or startswith("packaged_"))) then "sluice"
                      elif ($seg | any(. == "stock" or . == "stock_runc_v2" or startswith("stock_")))
                      then "runc.v2" else null end),
               systemd_cgroup: (($seg | any(. == "systemd")) or $driver == "systemd"),
               ok: ($ok == "1"), seconds: ($secs | tonumber), detail: $detail, containerd: $c}' >>"$rows"
    done <"$OUT/results.tsv"
fi
if [[ -n $lane_error ]]; then
    jq -nc --arg d "$lane_error; console tail: $(tail_of "$OUTDIR/console.log" 40)" \
        '{name: "vm-lane::run", shim: null, systemd_cgroup: false, ok: false, seconds: 0, detail: $d,
          containerd: null}' >>"$rows"
fi
jq -s --arg kernel "$(envval kernel)" --arg cgroup_fs "$(envval cgroup_fs)" --arg pid1 "$(envval pid1)" \
    --arg containerd "$(envval containerd)" --arg runc "$(envval runc)" --arg criu "$(envval criu)" \
    --arg accel "$ACCEL" --arg systemd "$(envval systemd)" --arg criu_check "$(envval criu_check)" \
    --arg boot "$(envval boot_seconds)" --arg tests "$(envval tests_seconds)" \
    --argjson image "$T_IMAGE" --argjson build "$T_BUILD" --argjson payload "$T_PAYLOAD" --argjson vm "$T_VM" '
    {environment: {kernel: $kernel, cgroup_fs: $cgroup_fs, pid1: $pid1, containerd: $containerd,
                   runc: $runc, criu: $criu, accel: $accel, systemd: $systemd, criu_check: $criu_check},
     timings: {image_seconds: $image, host_build_seconds: $build, payload_seconds: $payload,
               vm_seconds: $vm, guest_boot_seconds: (($boot | tonumber?) // null),
               tests_seconds: (($tests | tonumber?) // null)},
     results: .}' "$rows" >"$OUTDIR/report.json"
rm -f "$rows"

jq -r '.environment | to_entries[] | "[vm-test] guest \(.key): \(.value)"' "$OUTDIR/report.json"
jq -r '.results[] | "\(if .ok then "ok    " else "FAILED" end) \(.seconds)s  \(.name)  [\(.containerd // "-")]"' \
    "$OUTDIR/report.json"
jq -r '.results[] | select(.ok | not) | "---- \(.name)\n\(.detail)"' "$OUTDIR/report.json"
[[ -z $lane_error ]] || say "LANE FAILURE: $lane_error (console: $OUTDIR/console.log)"
say "wall: image ${T_IMAGE}s, host build ${T_BUILD}s, payload ${T_PAYLOAD}s, vm ${T_VM}s (boot $(envval boot_seconds)s, tests $(envval tests_seconds)s), total $((SECONDS - t_all))s"
say "report: $OUTDIR/report.json"
passed=$(jq '[.results[] | select(.ok)] | length' "$OUTDIR/report.json")
failed=$(jq '[.results[] | select(.ok | not)] | length' "$OUTDIR/report.json")
if ((passed + failed == 0)); then failed=1; say "no test ran"; fi
echo "$passed passed, $failed failed"
((failed == 0))
