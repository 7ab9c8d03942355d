#!/usr/bin/env bash
# Fetches Debian's Docker Engine packages of three suites and unpacks them side by side, without
# installing anything system-wide and without touching a system Docker, for the Docker suite
# (integration/tests/docker.rs):
#
#   bookworm -> docker.io 20.10.x               linked as $CACHE/20.10
#   trixie   -> docker.io + docker-cli 26.x     linked as $CACHE/26
#   sid      -> docker.io + docker-cli 28.x     linked as $CACHE/28
#
# and tini's static build (Docker's `docker-init`, for `docker run --init`) into each tree.
# Each tree has usr/sbin/dockerd and usr/bin/docker; the suite runs a private dockerd from it
# against the harness's private containerd.
#
#   scripts/fetch-docker.sh              # all three
#   scripts/fetch-docker.sh 26 28        # some
#
# The mirror is the one this machine already uses (scripts/lib/mirror.sh). apt runs with a
# private sources list, list directory and cache, so the machine's apt state is left alone.
# Idempotent: a label whose tree is present is skipped (SLUICE_DOCKER_REFRESH=1 fetches again).
set -euo pipefail

CACHE=${SLUICE_DOCKER_CACHE:-/var/cache/sluice-ci/docker}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

say() { printf '[fetch-docker] %s\n' "$*"; }
die() { printf '[fetch-docker] error: %s\n' "$*" >&2; exit 1; }

suites_of() {
    case $1 in
        20.10) echo bookworm ;;
        26) echo trixie ;;
        28) echo sid ;;
        *) die "unknown Docker label '$1' (known: 20.10 26 28)" ;;
    esac
}
# The client is in docker.io up to bookworm, in its own docker-cli package from trixie on;
# tini-static (docker-init's target) is in tini up to trixie, in its own package in sid.
packages_of() {
    case $1 in
        20.10) echo docker.io tini ;;
        26) echo docker.io docker-cli tini ;;
        28) echo docker.io docker-cli tini tini-static ;;
    esac
}

# shellcheck source=lib/mirror.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/mirror.sh"

fetch() {
    local label=$1 tree=$CACHE/$1 suite
    if [[ -z ${SLUICE_DOCKER_REFRESH:-} && -x $tree/usr/sbin/dockerd && -x $tree/usr/bin/docker ]]; then
        say "$label: present ($(readlink "$tree"))"
        return 0
    fi
    [[ -r $KEYRING ]] || die "$KEYRING missing (package debian-archive-keyring)"
    suite=$(suites_of "$label")
    local uri list state work
    uri=$(mirror_uri)
    mkdir -p "$CACHE/apt/archives/partial" "$CACHE/lists-$suite/partial"
    list=$CACHE/sources-$suite.list
    printf 'deb [signed-by=%s] %s %s main\n' "$KEYRING" "$uri" "$suite" >"$list"
    state=$CACHE/lists-$suite
    local opts=(
        -o "Dir::Etc::SourceList=$list"
        -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$state"
        -o "Dir::Cache=$CACHE/apt"
        -o Debug::NoLocking=1
        -o APT::Sandbox::User=root
    )
    say "$label: apt-get update ($suite)"
    apt-get "${opts[@]}" -qq update || die "$label: apt-get update of $suite failed"
    work=$(mktemp -d "$CACHE/dl.XXXXXX")
    local pkgs
    read -r -a pkgs <<<"$(packages_of "$label")"
    say "$label: apt-get download ${pkgs[*]} ($suite)"
    (cd "$work" && apt-get "${opts[@]}" -qq download "${pkgs[@]}") \
        || die "$label: apt-get download ${pkgs[*]} from $suite failed"
    local deb version
    deb=$(find "$work" -maxdepth 1 -name 'docker.io_*.deb' -print -quit)
    [[ -n $deb ]] || die "$label: no docker.io_*.deb in $work"
    version=$(dpkg-deb -f "$deb" Version)
    [[ $version == "$label".* ]] || die "$label: $suite has docker.io $version, not $label.x"
    local dest=$CACHE/$version
    rm -rf "$dest.tmp"
    for d in "$work"/*.deb; do
        dpkg -x "$d" "$dest.tmp" || die "$label: dpkg -x $d failed"
    done
    rm -rf "$work"
    [[ -x $dest.tmp/usr/sbin/dockerd ]] || die "$label: package $version has no usr/sbin/dockerd"
    [[ -x $dest.tmp/usr/bin/docker ]] || die "$label: packages ${pkgs[*]} have no usr/bin/docker"
    # Debian's docker.io links usr/bin/docker-init to tini-static (`docker run --init`).
    [[ -x $dest.tmp/usr/bin/docker-init ]] || die "$label: usr/bin/docker-init does not resolve"
    rm -rf "$dest"
    mv "$dest.tmp" "$dest"
    ln -sfn "$version" "$tree"
    say "$label: $("$dest/usr/sbin/dockerd" --version) in $dest"
}

labels=("$@")
((${#labels[@]})) || labels=(20.10 26 28)
mkdir -p "$CACHE"
for l in "${labels[@]}"; do
    fetch "$l"
done
