#!/usr/bin/env bash
# Builds the shim as one static executable (glibc linked in with Rust's crt-static, on the host's
# gnu target) and checks that it needs nothing at run time: no ELF interpreter, no NEEDED entry.
#
#   scripts/build-static.sh [--release]
#   SLUICE_TARGET=aarch64-unknown-linux-gnu scripts/build-static.sh --release   # arm64
#
# Prints the binary's path as its last line: target/<triple>/<debug|release>/containerd-shim-sluice-v2.
# Explicit --target keeps crt-static off build scripts and proc macros (which must stay dynamic)
# and the static objects apart from target/debug, so the normal build stays incremental.
# relocation-model=static makes it a fixed-address executable, as build.rs makes the dynamic
# one (-no-pie), rather than rustc's default static-pie: a static-pie relocates itself at start,
# which costs each of the hundreds of shims on a node the private pages build.rs avoids.
# The shim uses no NSS (getpwnam, getaddrinfo, ...) and no dlopen, which static glibc cannot
# serve at run time; the link below fails if that ever changes.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
NAME=containerd-shim-sluice-v2

say() { printf '[build-static] %s\n' "$*" >&2; }
die() { printf '[build-static] error: %s\n' "$*" >&2; exit 1; }

profile=debug
case ${1:-} in
    --release) profile=release ;;
    '') ;;
    *) die "usage: scripts/build-static.sh [--release]" ;;
esac

command -v cargo >/dev/null 2>&1 || export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
host=$(rustc -vV | awk '/^host:/ {print $2}')
# SLUICE_TARGET=aarch64-unknown-linux-gnu cross-builds for arm64 (Debian's
# gcc-aarch64-linux-gnu links it; qemu-user-static runs its -v check).
triple=${SLUICE_TARGET:-$host}
[[ $triple == *-linux-gnu ]] || die "target $triple: the static build is for a *-linux-gnu target"

flags=(--bin "$NAME" --target "$triple"
    --config "target.$triple.rustflags=[\"-C\", \"target-feature=+crt-static\", \"-C\", \"relocation-model=static\"]")
run=()
if [[ $triple != "$host" ]]; then
    arch=${triple%%-*}
    command -v "$arch-linux-gnu-gcc" >/dev/null 2>&1 \
        || die "no $arch-linux-gnu-gcc (Debian: apt-get install gcc-${arch//_/-}-linux-gnu)"
    grep -qx "$triple" <<<"$(rustup target list --installed 2>/dev/null)" \
        || die "no Rust standard library for $triple (rustup target add $triple)"
    flags+=(--config "target.$triple.linker=\"$arch-linux-gnu-gcc\"")
    command -v "qemu-$arch-static" >/dev/null 2>&1 \
        || die "no qemu-$arch-static to check the binary (apt-get install qemu-user-static)"
    run=("qemu-$arch-static")
fi
[[ $profile == release ]] && flags+=(--release)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
say "cargo build ${flags[*]}"
if ! cargo build "${flags[@]}" 2>"$log"; then
    cat "$log" >&2
    die "static build failed"
fi
# glibc's linker warning for NSS or dlopen in a static binary: such a call would fail on a node.
if grep -E "statically linked applications requires at runtime" "$log" >&2; then
    die "the static shim calls a glibc function that needs shared libraries at run time (above)"
fi
bin=target/$triple/$profile/$NAME
[[ -x $bin ]] || die "$bin was not built"

dyn=$(readelf -d "$bin" 2>&1 || true)
if grep -q NEEDED <<<"$dyn"; then
    printf '%s\n' "$dyn" >&2
    die "$bin has NEEDED entries: it is not static"
fi
# Whole outputs into grep: `cmd | grep -q` under pipefail fails when grep's early exit
# SIGPIPEs cmd.
if grep -q 'INTERP' <<<"$(readelf -l "$bin")"; then
    die "$bin asks for an ELF interpreter: it is not static"
fi
grep -q 'Type: *EXEC' <<<"$(readelf -h "$bin")" || die "$bin is not a fixed-address executable: $(readelf -h "$bin" | grep Type:)"
grep -q '^  Build:    static,' <<<"$("${run[@]}" "$bin" -v)" || die "$bin -v does not say static: $("${run[@]}" "$bin" -v)"
say "ok: $bin (no NEEDED, no interpreter; $(du -h "$bin" | cut -f1))"
echo "$ROOT/$bin"
