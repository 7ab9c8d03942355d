#!/usr/bin/env bash
# Builds the peers sluice is tested beside from their Go modules, at the versions pinned in
# scripts/peers.lock, into a cache keyed by version:
#
#   containerd 2.2, 2.3, 2.4  ->  containerd, ctr and the stock containerd-shim-runc-v2
#   runc 1.2, 1.3, 1.4, 1.5   ->  runc (cgo, with seccomp: needs libseccomp-dev and pkg-config)
#   cri-tools 1.37            ->  crictl, critest
#
#   $SLUICE_PEERS_CACHE/<name>/<version>/bin/<program>   (default /var/cache/sluice-ci/peers)
#   $SLUICE_PEERS_CACHE/<name>/<line> -> <version>        the label the harness takes
#
# Each release's own binaries are used together: the tests run a containerd with that same
# release's ctr and stock shim (integration/src/versions.rs).
#
#   scripts/build-peers.sh                        # every entry of peers.lock
#   scripts/build-peers.sh containerd/2.4 runc    # some: name or name/line
#
# Modules come from the Go module proxy through the go command (`go mod download`), and each
# program is built inside its module's own directory, so the module's go.mod and go.sum (and
# its replace directives, which `go install pkg@version` refuses) hold, with the flags the
# project's own Makefile gives a release build: version stamped through -ldflags (sluice's
# bootstrap tells daemons apart by `containerd --version`), the shim and ctr without cgo.
# GOMODCACHE and GOCACHE live under $SLUICE_PEERS_GO (default /var/cache/sluice-ci/go), so a
# rebuild is quick. Idempotent: a version whose binaries are all present is skipped
# (SLUICE_PEERS_REBUILD=1 builds again). The time of each build is printed. Needs root only to
# write the cache and to install libseccomp-dev/pkg-config when they are missing.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOCK=$ROOT/scripts/peers.lock
CACHE=${SLUICE_PEERS_CACHE:-/var/cache/sluice-ci/peers}
GOBASE=${SLUICE_PEERS_GO:-/var/cache/sluice-ci/go}

say() { printf '[build-peers] %s\n' "$*"; }
die() { printf '[build-peers] error: %s\n' "$*" >&2; exit 1; }

GO=$(command -v go || true)
[[ -n $GO ]] || GO=/usr/local/go/bin/go
[[ -x $GO ]] || die "the go command is missing (not on PATH, not /usr/local/go/bin/go)"
export GOMODCACHE=$GOBASE/mod GOCACHE=$GOBASE/build
# -modcacherw: the module cache stays removable by rm -rf. -mod=readonly: a module zip keeps
# vendor/modules.txt but not the vendored sources, which would otherwise select -mod=vendor;
# the module's go.sum then pins every dependency.
export GOFLAGS="-trimpath -modcacherw -mod=readonly"

# libseccomp's headers for runc's seccomp build tag, found through pkg-config.
need_seccomp() {
    if pkg-config --exists libseccomp 2>/dev/null; then return 0; fi
    [[ $EUID -eq 0 ]] || die "runc needs libseccomp-dev and pkg-config: install them as root"
    say "installing libseccomp-dev pkg-config"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        libseccomp-dev pkg-config >/dev/null \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends libseccomp-dev pkg-config >/dev/null; } \
        || die "apt-get install libseccomp-dev pkg-config failed"
    pkg-config --exists libseccomp || die "pkg-config still finds no libseccomp"
}

# The directory of module@version in the module cache, downloading it when needed.
module_dir() {
    local dir
    dir=$("$GO" mod download -json "$1@$2" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
    [[ -n $dir && -d $dir ]] || die "go mod download $1@$2 gave no module directory"
    printf '%s\n' "$dir"
}

# build_program NAME VERSION SRC OUT PROGRAM: one program of one entry, into OUT/PROGRAM.
build_program() {
    local name=$1 version=$2 src=$3 out=$4 prog=$5 plain=${2#v}
    local flags=() pkg ld
    case $name in
        containerd)
            # The Makefile: -X version.{Version,Package}; the shim with no_grpc and cgo off;
            # the daemon and ctr need no cgo here (only the btrfs snapshotter does).
            local p=github.com/containerd/containerd/v2/version
            ld="-s -w -X $p.Version=$version -X $p.Package=github.com/containerd/containerd/v2"
            pkg=./cmd/$prog
            if [[ $prog == containerd-shim-runc-v2 ]]; then
                flags=(-tags "urfave_cli_no_docs no_grpc")
            else
                flags=(-tags "urfave_cli_no_docs no_btrfs")
            fi
            CGO_ENABLED=0 "$GO" -C "$src" build "${flags[@]}" -ldflags "$ld" -o "$out/$prog" "$pkg"
            ;;
        runc)
            # Release tags less libpathrs (1.5's default, a Rust library Debian lacks; runc then
            # uses its Go path resolution). 1.2 and 1.3 take the version from -X main.version,
            # later ones embed VERSION themselves.
            ld="-X main.gitCommit=$version"
            grep -q 'go:embed VERSION' "$src/main.go" || ld+=" -X main.version=$plain"
            CGO_ENABLED=1 "$GO" -C "$src" build -tags "seccomp urfave_cli_no_docs" -ldflags "$ld" \
                -o "$out/$prog" .
            ;;
        cri-tools)
            ld="-X sigs.k8s.io/cri-tools/pkg/version.Version=$plain"
            if [[ $prog == critest ]]; then
                # critest is a Ginkgo suite: the Makefile builds it with `go test -c`.
                CGO_ENABLED=0 "$GO" -C "$src" test -c -ldflags "$ld" -o "$out/$prog" ./cmd/critest
            else
                CGO_ENABLED=0 "$GO" -C "$src" build -ldflags "$ld" -o "$out/$prog" "./cmd/$prog"
            fi
            ;;
        *) die "no build recipe for '$name'" ;;
    esac
}

# buildable NAME VERSION DIR: a directory to build NAME in. runc 1.2.8 replaces go-selinux with
# a patched copy in ./internal/third_party/selinux (CVE-2025-52881, during the embargo); that copy
# is a nested module, which module zips leave out, so the replace points nowhere. The fix was
# then released as go-selinux v1.13.0 (what runc 1.3 and later require): build a copy of the
# module whose go.mod requires that instead.
buildable() {
    local name=$1 version=$2 dir=$3 work
    if [[ $name == runc ]] && grep -q '=> ./internal/third_party/selinux' "$dir/go.mod" \
        && [[ ! -d $dir/internal/third_party/selinux ]]; then
        work=$GOBASE/work/$name@$version
        rm -rf "$work"
        mkdir -p "$(dirname "$work")"
        cp -r "$dir" "$work"
        chmod -R u+w "$work"
        "$GO" -C "$work" mod edit -dropreplace=github.com/opencontainers/selinux \
            -require=github.com/opencontainers/selinux@v1.13.0
        GOFLAGS="${GOFLAGS/-mod=readonly/-mod=mod}" "$GO" -C "$work" mod download >/dev/null 2>&1 || true
        GOFLAGS="${GOFLAGS/-mod=readonly/-mod=mod}" "$GO" -C "$work" list -deps . >/dev/null \
            || die "$name $version: cannot resolve go-selinux v1.13.0 in $work"
        say "$name $version: go-selinux v1.13.0 for the vendored copy the module zip lacks" >&2
        dir=$work
    fi
    printf '%s\n' "$dir"
}

TIMES=()
build_entry() {
    local name=$1 line=$2 version=$3 module=$4
    shift 5
    local progs=("$@") plain=${version#v}
    local dest=$CACHE/$name/$plain present=1 p
    for p in "${progs[@]}"; do [[ -x $dest/bin/$p ]] || present=0; done
    if [[ -z ${SLUICE_PEERS_REBUILD:-} ]] && ((present)); then
        ln -sfn "$plain" "$CACHE/$name/$line"
        say "$name $version: present"
        TIMES+=("$(printf '%-12s %-9s %5ss  (cached)' "$name" "$version" 0)")
        return 0
    fi
    [[ $name != runc ]] || need_seccomp
    local t0=$SECONDS t src
    src=$(module_dir "$module" "$version")
    src=$(buildable "$name" "$version" "$src")
    rm -rf "$dest.tmp"
    mkdir -p "$dest.tmp/bin"
    for p in "${progs[@]}"; do
        t=$SECONDS
        build_program "$name" "$version" "$src" "$dest.tmp/bin" "$p" \
            || die "$name $version: building $p failed"
        say "$name $version: $p built in $((SECONDS - t))s"
    done
    rm -rf "$dest"
    mv "$dest.tmp" "$dest"
    ln -sfn "$plain" "$CACHE/$name/$line"
    say "$name $version: $((SECONDS - t0))s in all, in $dest/bin"
    TIMES+=("$(printf '%-12s %-9s %5ss' "$name" "$version" $((SECONDS - t0)))")
}

# wanted NAME LINE: whether the command line selects this entry (all when it names none).
wanted() {
    (($# > 2)) || return 0
    local name=$1 line=$2 a
    shift 2
    for a in "$@"; do
        [[ $a == "$name" || $a == "$name/$line" ]] && return 0
    done
    return 1
}

[[ -r $LOCK ]] || die "$LOCK missing"
mkdir -p "$CACHE"
START=$SECONDS
matched=0
while read -r name line version module runc progs; do
    [[ -z $name || $name == \#* ]] && continue
    wanted "$name" "$line" "$@" || continue
    matched=1
    mkdir -p "$CACHE/$name"
    # shellcheck disable=SC2086 # the programs are a word list
    build_entry "$name" "$line" "$version" "$module" "$runc" $progs
done <"$LOCK"
((matched)) || die "no entry of $LOCK matches: $*"
say "times:"
printf '  %s\n' "${TIMES[@]}"
say "total $((SECONDS - START))s ($("$GO" version | awk '{print $3}'))"
