#!/usr/bin/env bash
# Builds sluice's release artifacts from one static binary (scripts/build-static.sh --release)
# and checks each of them:
#
#   target/dist/sluice-<version>-linux-<arch>.tar.gz   laid out as containerd's release tarballs (unpack
#                                               with `tar -C /usr/local -xzf`):
#                                                 bin/containerd-shim-sluice-v2
#                                                 share/sluice/  config snippets, runc settings,
#                                                                runtimeclass.yaml, install.sh
#                                                 share/doc/sluice/  README.md, INSTALL.md, ROLLOUT.md
#   target/dist/sluice_<version>-1_<debarch>.deb       dpkg-deb: /usr/bin, /usr/share/sluice, /usr/share/doc
#   target/dist/sluice-<version>-1.<rpmarch>.rpm       rpmbuild (Debian's rpm package): the same files
#   target/dist/SHA256SUMS                             sha256sum of the three (and of another
#                                                      --arch's, built into the same dir)
#
#   scripts/release.sh [--arch amd64|arm64] [--binary PATH] [--out DIR] [--only deb]
#
# --binary takes an already built static shim (it must say "static" in -v); --only deb builds
# and checks only the .deb (scripts/package.sh). --arch arm64 on an x86_64 machine
# cross-builds (SLUICE_TARGET=aarch64-unknown-linux-gnu scripts/build-static.sh: Debian's
# gcc-aarch64-linux-gnu, rustup's aarch64 standard library) and runs every -v check of the
# arm64 binary under qemu-aarch64-static. No package installs anything under /etc and
# none changes a containerd config: install.sh does that on request.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
NAME=containerd-shim-sluice-v2

say() { printf '[release] %s\n' "$*"; }
die() { printf '[release] error: %s\n' "$*" >&2; exit 1; }

binary='' out=$ROOT/target/dist only='' want_arch=''
while (($#)); do
    case $1 in
        --arch) want_arch=${2:?--arch needs amd64 or arm64}; shift ;;
        --binary) binary=${2:?--binary needs a path}; shift ;;
        --out) out=${2:?--out needs a dir}; shift ;;
        --only) only=${2:?--only needs deb}; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done
[[ -z $only || $only == deb ]] || die "--only takes deb"

for tool in dpkg-deb dpkg sha256sum tar readelf; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found"
done
if [[ -z $only ]]; then
    command -v rpmbuild >/dev/null 2>&1 || die "rpmbuild not found (Debian package rpm)"
fi

case $(uname -m) in
    x86_64) host_arch=amd64 ;;
    aarch64) host_arch=arm64 ;;
    *) die "unsupported architecture $(uname -m)" ;;
esac
arch=${want_arch:-$host_arch}
case $arch in
    amd64) rpmarch=x86_64 triple=x86_64-unknown-linux-gnu ;;
    arm64) rpmarch=aarch64 triple=aarch64-unknown-linux-gnu ;;
    *) die "--arch takes amd64 or arm64, not $arch" ;;
esac
# How this machine runs the artifact's binary: natively, or under qemu-user.
run=()
if [[ $arch != "$host_arch" ]]; then
    command -v "qemu-$rpmarch-static" >/dev/null 2>&1 \
        || die "no qemu-$rpmarch-static to check the $arch binary (apt-get install qemu-user-static)"
    run=("qemu-$rpmarch-static")
fi
if [[ -z $binary ]]; then
    binary=$(SLUICE_TARGET=$triple bash scripts/build-static.sh --release | tail -n 1)
fi
[[ -x $binary ]] || die "$binary is not an executable"
vout=$("${run[@]}" "$binary" -v) || die "$binary -v failed"
grep -q "^  Build:    .*, $triple\$" <<<"$vout" || die "$binary is not built for $triple: $vout"
grep -q '^  Build:    static,' <<<"$vout" || die "$binary is not the static build: $vout"
version=$(awk '/^  Version:/ {print $2}' <<<"$vout")
[[ -n $version ]] || die "no version in $binary -v"
# Debian's and the release tarballs' names for the architecture are the same.
debarch=$arch

mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The files every artifact ships, in one tree under a prefix ($1), the snippets and docs from
# packaging/ and the README.
stage() {
    local p=$1
    install -D -m 0755 "$binary" "$p/bin/$NAME"
    for f in containerd-config-v2.toml containerd-config-v3.toml sluice-runc.toml runtimeclass.yaml; do
        install -D -m 0644 "packaging/$f" "$p/share/sluice/$f"
    done
    install -D -m 0755 packaging/install.sh "$p/share/sluice/install.sh"
    install -D -m 0644 README.md "$p/share/doc/sluice/README.md"
    install -D -m 0644 packaging/README.md "$p/share/doc/sluice/INSTALL.md"
    install -D -m 0644 packaging/ROLLOUT.md "$p/share/doc/sluice/ROLLOUT.md"
}
FILES=(
    bin/$NAME
    share/sluice/containerd-config-v2.toml
    share/sluice/containerd-config-v3.toml
    share/sluice/sluice-runc.toml
    share/sluice/runtimeclass.yaml
    share/sluice/install.sh
    share/doc/sluice/README.md
    share/doc/sluice/INSTALL.md
    share/doc/sluice/ROLLOUT.md
)
DESCRIPTION="containerd runc shim (v2) that never deadlocks on runc's output pipes"
LONG="containerd-shim-sluice-v2 is a drop-in replacement for containerd's runc shim
(io.containerd.runc.v2) that reads runc's output pipes while runc runs, so a runc that
writes more than a pipe holds can never deadlock the shim (containerd issue 4434).
Register it as the CRI runtime handler \"sluice\" with the snippets in /usr/share/sluice
(install.sh there does it on request) and select it with the RuntimeClass.
The binary is static: it needs no shared library."

# The extracted artifact's files ($1: root, $2: prefix in it) are those staged, the same bytes,
# and its shim answers -v as the one built.
check_tree() {
    local root=$1 prefix=$2 what=$3 f
    for f in "${FILES[@]}"; do
        [[ -f $root/$prefix/$f ]] || die "$what lacks $prefix/$f"
        cmp -s "$root/$prefix/$f" "$work/stage/$f" || die "$what: $prefix/$f differs from what was staged"
    done
    [[ -x $root/$prefix/bin/$NAME ]] || die "$what: the shim is not executable"
    [[ $("${run[@]}" "$root/$prefix/bin/$NAME" -v) == "$vout" ]] || die "$what: the packaged shim's -v differs"
    if find "$root" -path "$root/etc*" -print -quit | grep -q .; then
        die "$what ships files under /etc (it must change no containerd config)"
    fi
}

stage "$work/stage"
artifacts=()

# ---- tarball -----------------------------------------------------------------------------
if [[ -z $only ]]; then
    tgz=sluice-$version-linux-$arch.tar.gz
    # Reproducible: fixed owner, order and times (the commit's, else the epoch).
    mtime=$(git log -1 --format=%ct 2>/dev/null || echo 0)
    tar -C "$work/stage" --sort=name --owner=0 --group=0 --numeric-owner \
        --mtime="@$mtime" -czf "$out/$tgz" bin share
    mkdir "$work/tgz"
    tar -C "$work/tgz" -xzf "$out/$tgz"
    check_tree "$work/tgz" . "$tgz"
    extra=$(tar -tzf "$out/$tgz" | grep -v '/$' | sort | comm -23 - <(printf '%s\n' "${FILES[@]}" | sort))
    [[ -z $extra ]] || die "$tgz holds files not meant to ship: $extra"
    # The unpacked install.sh finds its snippets and the binary (dry run into a scratch dir).
    # It runs the binary's -v, so only where the binary runs natively: install.sh is the same
    # file in every architecture's tarball.
    if ((${#run[@]} == 0)); then
        bash "$work/tgz/share/sluice/install.sh" --dry-run --containerd-version 1.7 \
            --bindir "$work/scratch-bin" --state-dir "$work/scratch-state" >"$work/install.out" \
            || { cat "$work/install.out" >&2; die "$tgz: share/sluice/install.sh --dry-run failed"; }
        grep -q "would run: install -D -m 0755 $work/tgz/share/sluice/../../bin/$NAME" "$work/install.out" \
            || { cat "$work/install.out" >&2; die "$tgz: install.sh does not pick the tarball's bin/$NAME"; }
    else
        say "$tgz: install.sh --dry-run not run (it would start the $arch binary natively)"
    fi
    say "ok: $tgz ($(tar -tzf "$out/$tgz" | grep -vc '/$') files)"
    artifacts+=("$tgz")
fi

# ---- .deb --------------------------------------------------------------------------------
debver=$version-1
deb=sluice_${debver}_$debarch.deb
d=$work/deb
stage "$d/usr"
mkdir -p "$d/DEBIAN"
{
    echo "Package: sluice"
    echo "Version: $debver"
    echo "Architecture: $debarch"
    echo "Maintainer: sluice developers <sluice@localhost>"
    echo "Installed-Size: $(du -sk "$d/usr" | cut -f1)"
    echo "Recommends: containerd | containerd.io, runc"
    echo "Section: admin"
    echo "Priority: optional"
    echo "Description: $DESCRIPTION"
    sed 's/^/ /' <<<"$LONG"
} >"$d/DEBIAN/control"
(cd "$d" && find usr -type f -print0 | sort -z | xargs -0 md5sum) >"$d/DEBIAN/md5sums"
dpkg-deb --root-owner-group -Zxz --build "$d" "$out/$deb" >/dev/null
listing=$(dpkg-deb -c "$out/$deb")
grep -qE "^-rwxr-xr-x root/root .* \./usr/bin/$NAME\$" <<<"$listing" \
    || die "$deb: the shim is not installed executable, owned by root: $(grep "$NAME" <<<"$listing")"
[[ $(dpkg-deb -f "$out/$deb" Package) == sluice ]] || die "$deb: Package is not sluice"
[[ $(dpkg-deb -f "$out/$deb" Version) == "$debver" ]] || die "$deb: Version is not $debver"
[[ $(dpkg-deb -f "$out/$deb" Architecture) == "$debarch" ]] || die "$deb: wrong Architecture"
[[ -z $(dpkg-deb -f "$out/$deb" Depends) ]] || die "$deb: a static shim depends on nothing"
mkdir "$work/debx"
dpkg-deb -x "$out/$deb" "$work/debx"
check_tree "$work/debx" usr "$deb"
say "ok: $deb ($(grep -c '^-' <<<"$listing") files)"
artifacts+=("$deb")

# ---- .rpm --------------------------------------------------------------------------------
if [[ -z $only ]]; then
    rpmver=$version
    rpm=sluice-$rpmver-1.$rpmarch.rpm
    top=$work/rpmbuild
    mkdir -p "$top"/{SPECS,RPMS,BUILD,BUILDROOT}
    # A prebuilt static binary: no debuginfo split, no strip, no library dependencies to find.
    {
        echo "%global debug_package %{nil}"
        echo "%global __os_install_post %{nil}"
        echo "Name: sluice"
        echo "Version: $rpmver"
        echo "Release: 1"
        echo "Summary: $DESCRIPTION"
        echo "License: Apache-2.0"
        # rpmbuild refuses a BuildArch the build machine cannot run; --target alone names the
        # package's architecture, and nothing here is compiled.
        ((${#run[@]})) || echo "BuildArch: $rpmarch"
        echo "AutoReqProv: no"
        echo "Recommends: containerd, runc"
        echo
        echo "%description"
        echo "$LONG"
        echo
        echo "%install"
        echo "mkdir -p %{buildroot}/usr"
        echo "cp -a $work/stage/. %{buildroot}/usr/"
        echo
        echo "%files"
        echo "%attr(0755,root,root) /usr/bin/$NAME"
        echo "%dir /usr/share/sluice"
        echo "%dir /usr/share/doc/sluice"
        for f in "${FILES[@]}"; do
            [[ $f == bin/* ]] && continue
            echo "/usr/$f"
        done
    } >"$top/SPECS/sluice.spec"
    rpmbuild --quiet --define "_topdir $top" --define "_build_id_links none" \
        --target "$rpmarch" -bb "$top/SPECS/sluice.spec" >"$work/rpmbuild.log" 2>&1 \
        || { cat "$work/rpmbuild.log" >&2; die "rpmbuild failed"; }
    cp "$top/RPMS/$rpmarch/$rpm" "$out/$rpm"
    info=$(rpm -qip "$out/$rpm" 2>/dev/null)
    grep -qE '^Name +: sluice$' <<<"$info" || die "$rpm: Name is not sluice: $info"
    grep -qE "^Version +: $rpmver\$" <<<"$info" || die "$rpm: Version is not $rpmver"
    grep -qE "^Architecture: $rpmarch\$" <<<"$info" || die "$rpm: Architecture is not $rpmarch"
    reqs=$(rpm -qpR "$out/$rpm" 2>/dev/null | grep -v '^rpmlib(' || true)
    [[ -z $reqs ]] || die "$rpm: a static shim requires nothing, it says: $reqs"
    mkdir "$work/rpmx"
    (cd "$work/rpmx" && rpm2cpio "$out/$rpm" | cpio -idm --quiet)
    check_tree "$work/rpmx" usr "$rpm"
    rpm -qplv "$out/$rpm" 2>/dev/null | grep -qE "^-rwxr-xr-x +1 root +root .* /usr/bin/$NAME\$" \
        || die "$rpm: the shim is not installed executable, owned by root"
    say "ok: $rpm ($(rpm -qpl "$out/$rpm" 2>/dev/null | grep -c '') entries)"
    artifacts+=("$rpm")
fi

# ---- checksums ---------------------------------------------------------------------------
# One SHA256SUMS for every architecture built into $out: this run's artifacts replace their
# own lines, another architecture's stay.
(
    cd "$out"
    touch SHA256SUMS
    keep=$(grep -vF -f <(printf '  %s\n' "${artifacts[@]}") SHA256SUMS || true)
    { [[ -z $keep ]] || printf '%s\n' "$keep"; sha256sum "${artifacts[@]}"; } >SHA256SUMS.new
    mv SHA256SUMS.new SHA256SUMS
    sha256sum --quiet -c SHA256SUMS
) || die "SHA256SUMS does not check"
say "ok: SHA256SUMS"
say "artifacts in $out (from $binary, $(grep -m1 Revision <<<"$vout" | awk '{print $2}')):"
(cd "$out" && ls -l "${artifacts[@]}" SHA256SUMS | awk '{print "  " $5, $9}')
