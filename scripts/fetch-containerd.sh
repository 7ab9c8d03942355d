#!/usr/bin/env bash
# Fetches Debian's containerd packages of newer suites and unpacks them side by side, without
# installing anything system-wide, so the tests can run against containerd 1.7 and 2.x next to
# bookworm's 1.6:
#
#   trixie -> containerd 1.7.x   unpacked in $CACHE/<version>/, linked as $CACHE/1.7
#   sid    -> containerd 2.x     unpacked in $CACHE/<version>/, linked as $CACHE/2.x
#             (testing when sid has no 2.x containerd at the moment)
#
# Each unpacked tree has its own usr/bin/{containerd,ctr,containerd-shim-runc-v2}; a test uses
# one tree's containerd with that same tree's ctr and stock shim.
#
#   scripts/fetch-containerd.sh            # both
#   scripts/fetch-containerd.sh 2.x        # only one
#
# The mirror is the one this machine already uses: read from its Debian sources at run time.
# apt runs with a private sources list, list directory and cache, so the machine's own apt
# state is left alone. Idempotent: a label whose tree is present is skipped (set
# SLUICE_CONTAINERD_REFRESH=1 to fetch again). Needs root only to write the cache dir.
set -euo pipefail

CACHE=${SLUICE_CONTAINERD_CACHE:-/var/cache/sluice-ci/containerd}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

say() { printf '[fetch-containerd] %s\n' "$*"; }
die() { printf '[fetch-containerd] error: %s\n' "$*" >&2; exit 1; }

# Suites to try, in order, and the version prefix the package must have.
suites_of() {
    case $1 in
        1.7) echo trixie ;;
        2.x) echo sid testing ;;
        *) die "unknown containerd label '$1' (known: 1.7 2.x)" ;;
    esac
}
prefix_of() {
    case $1 in
        1.7) echo 1.7. ;;
        2.x) echo 2. ;;
    esac
}

# shellcheck source=lib/mirror.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/mirror.sh"

fetch() {
    local label=$1 suite
    local tree=$CACHE/$label
    if [[ -z ${SLUICE_CONTAINERD_REFRESH:-} && -x $tree/usr/bin/containerd && -x $tree/usr/bin/ctr ]]; then
        say "$label: present ($(readlink "$tree"))"
        return 0
    fi
    [[ -r $KEYRING ]] || die "$KEYRING missing (package debian-archive-keyring)"
    for suite in $(suites_of "$label"); do
        fetch_from "$label" "$suite" && return 0
    done
    die "$label: no suite of '$(suites_of "$label")' had a containerd $(prefix_of "$label")x package"
}

# Downloads containerd from `suite` and unpacks it for `label`; fails (returns 1) when the suite
# has no containerd of that line.
fetch_from() {
    local label=$1 suite=$2 tree=$CACHE/$1
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
    say "$label: apt-get download containerd ($suite)"
    if ! (cd "$work" && apt-get "${opts[@]}" -qq download containerd); then
        say "$label: $suite has no containerd to download"
        rm -rf "$work"
        return 1
    fi
    local deb version
    deb=$(find "$work" -maxdepth 1 -name 'containerd_*.deb' | head -n1)
    [[ -n $deb ]] || die "$label: apt-get download produced no containerd_*.deb in $work"
    version=$(dpkg-deb -f "$deb" Version)
    [[ -n $version ]] || die "$label: cannot read the version of $deb"
    if [[ $version != "$(prefix_of "$label")"* ]]; then
        say "$label: $suite has containerd $version, not $(prefix_of "$label")x"
        rm -rf "$work"
        return 1
    fi
    local dest=$CACHE/$version
    rm -rf "$dest.tmp"
    dpkg -x "$deb" "$dest.tmp" || die "$label: dpkg -x $deb failed"
    rm -rf "$work"
    for b in containerd ctr containerd-shim-runc-v2; do
        [[ -x $dest.tmp/usr/bin/$b ]] || die "$label: package $version has no usr/bin/$b"
    done
    rm -rf "$dest"
    mv "$dest.tmp" "$dest"
    ln -sfn "$version" "$tree"
    say "$label: containerd $version in $dest ($("$dest/usr/bin/containerd" --version | awk '{print $3}'))"
}

labels=("$@")
((${#labels[@]})) || labels=(1.7 2.x)
mkdir -p "$CACHE"
for l in "${labels[@]}"; do
    fetch "$l"
done
