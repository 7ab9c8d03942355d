#!/usr/bin/env bash
# Prepares a Debian machine for building and testing sluice, then builds the workspace.
#
#   - installs containerd, runc and busybox-static if missing (never starts containerd: the
#     tests and the demo run their own private containerd), and protobuf-compiler (protoc, for
#     the CRI client the integration tests build);
#   - unpacks containerd 1.7 and 2.x next to the system's 1.6 for the tests
#     (scripts/fetch-containerd.sh: Debian trixie's and sid's packages, never installed), and
#     builds containerd 2.2/2.3/2.4 with the runc each was tested with from their Go modules
#     (scripts/build-peers.sh, versions in scripts/peers.lock; libseccomp-dev and pkg-config
#     for runc), for each version in SLUICE_CONTAINERD_VERSIONS other than 1.6 (default
#     "1.6 1.7 2.x 2.4"), and the runc SLUICE_RUNC names;
#   - unpacks Docker Engine 20.10, 26 and 28 for the Docker suite (scripts/fetch-docker.sh:
#     Debian bookworm's, trixie's and sid's packages, never installed);
#   - checks that cargo is there;
#   - builds every binary of the workspace (debug): the shim and the fault-injecting runc;
#   - builds the static shim the integration tests run (scripts/build-static.sh, debug profile:
#     target/<host triple>/debug/containerd-shim-sluice-v2), which is what the release ships;
#   - installs rpm, cpio and binutils for scripts/release.sh (rpmbuild, rpm2cpio, readelf), and
#     debootstrap for the older-userland chroots (scripts/oldlands-test.sh), which test.sh runs
#     before the guest lane installs its own tools; iproute2 for `ss` (which shim socket is
#     connected to which: integration/src/procs.rs).
#
# Idempotent; needs root for the package steps only. No standard input is read.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PACKAGES=(containerd runc busybox-static protobuf-compiler debian-archive-keyring rpm cpio binutils
    gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static debootstrap
    iproute2 libseccomp-dev pkg-config)

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing=()
for p in "${PACKAGES[@]}"; do
    installed "$p" || missing+=("$p")
done

if ((${#missing[@]})); then
    [[ $EUID -eq 0 ]] || die "need root to install: ${missing[*]}"
    say "installing ${missing[*]}"
    # A policy-rc.d answering 101 keeps package scripts from starting the system containerd
    # service during the install (honoured by invoke-rc.d and deb-systemd-invoke). Only ours
    # is removed afterwards.
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        own_policy=1
    fi
    cleanup_policy() { if ((own_policy)); then rm -f "$policy"; fi; }
    trap cleanup_policy EXIT
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    cleanup_policy
    trap - EXIT
fi

for tool in containerd ctr runc containerd-shim-runc-v2 busybox protoc; do
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin command -v "$tool" >/dev/null \
        || die "$tool is still missing after installing ${PACKAGES[*]}"
done

extra=()
peers=()
for v in ${SLUICE_CONTAINERD_VERSIONS:-1.6 1.7 2.x 2.4}; do
    case $v in
        1.6) ;;
        2.2 | 2.3 | 2.4)
            # Built from source (peers.lock), with the runc line that release was tested with.
            peers+=("containerd/$v")
            r=$(awk -v l="$v" '$1 == "containerd" && $2 == l {print $5}' "$ROOT/scripts/peers.lock")
            [[ -z $r || $r == - ]] || peers+=("runc/$r")
            ;;
        *) extra+=("$v") ;;
    esac
done
case ${SLUICE_RUNC:-system} in system) ;; *) peers+=("runc/$SLUICE_RUNC") ;; esac
if ((${#extra[@]})); then
    [[ $EUID -eq 0 ]] || die "need root to unpack containerd ${extra[*]} into the cache"
    bash "$ROOT/scripts/fetch-containerd.sh" "${extra[@]}"
fi
if ((${#peers[@]})); then
    [[ $EUID -eq 0 ]] || die "need root to build ${peers[*]} into the cache"
    t=$SECONDS
    bash "$ROOT/scripts/build-peers.sh" "${peers[@]}"
    say "peers ${peers[*]}: $((SECONDS - t))s"
fi

[[ $EUID -eq 0 ]] || die "need root to unpack Docker into the cache"
bash "$ROOT/scripts/fetch-docker.sh"

if ! command -v cargo >/dev/null 2>&1; then
    # rustup installs into ~/.cargo/bin, which a non-login shell may not have on PATH.
    if [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo ]]; then
        export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    else
        die "cargo not found: install a Rust toolchain (rustup, Rust >= 1.80) and retry"
    fi
fi

# The arm64 release artifacts (scripts/release.sh --arch arm64) need Rust's aarch64 standard
# library; without it they are skipped, by name, and everything else still works.
if command -v rustup >/dev/null 2>&1; then
    rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1 \
        || say "warning: rustup target add aarch64-unknown-linux-gnu failed: no arm64 release"
fi

say "building the workspace (cargo build --workspace --bins)"
cd "$ROOT"
cargo build --workspace --bins
say "building the static shim (scripts/build-static.sh)"
static=$(bash "$ROOT/scripts/build-static.sh" | tail -n 1)
say "static shim: $static"
say "ok: $(cargo --version), containerd $(containerd --version | awk '{print $3}'), $(runc --version | head -n1)"
