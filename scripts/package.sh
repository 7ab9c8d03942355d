#!/usr/bin/env bash
# Builds the Debian package of sluice with cargo-deb ([package.metadata.deb] in Cargo.toml):
# target/debian/sluice_<version>-1_<arch>.deb, holding /usr/bin/containerd-shim-sluice-v2 and,
# under /usr/share/sluice/, the containerd config snippets (v2, v3), the runc settings example,
# the RuntimeClass and install.sh.
#
#   scripts/package.sh            build it (release build of the shim)
#   scripts/package.sh --check    build it, then check what it holds (dpkg-deb -c), its control
#                                 fields, and that the packaged shim answers -v
#
# cargo-deb is installed with `cargo install cargo-deb --locked` when missing:
# that alone takes several minutes, which is why scripts/test.sh runs this only with
# SLUICE_PACKAGE_TEST=1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

say() { printf '[package] %s\n' "$*"; }
die() { printf '[package] error: %s\n' "$*" >&2; exit 1; }

check=0
case ${1:-} in
    --check) check=1 ;;
    '') ;;
    *) die "usage: scripts/package.sh [--check]" ;;
esac

command -v cargo >/dev/null 2>&1 || export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
command -v cargo >/dev/null 2>&1 || die "cargo not found"
command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb not found (package dpkg)"

if ! cargo deb --version >/dev/null 2>&1; then
    say "installing cargo-deb (cargo install cargo-deb --locked; takes minutes)"
    cargo install cargo-deb --locked
fi
say "$(cargo deb --version)"

# cargo-deb builds the release binary itself (cargo build --release -p sluice).
out=$(cargo deb -p sluice 2>&1) || { printf '%s\n' "$out" >&2; die "cargo deb failed"; }
printf '%s\n' "$out" | tail -n 3
deb=$(printf '%s\n' "$out" | grep -E '\.deb$' | tail -n 1)
[[ -f $deb ]] || deb=$(find target/debian -maxdepth 1 -name 'sluice_*.deb' 2>/dev/null | sort | tail -n 1)
[[ -f $deb ]] || die "no .deb found in target/debian"
say "built $deb"

((check)) || exit 0

say "checking $deb"
listing=$(dpkg-deb -c "$deb")
missing=()
for f in \
    ./usr/bin/containerd-shim-sluice-v2 \
    ./usr/share/sluice/containerd-config-v2.toml \
    ./usr/share/sluice/containerd-config-v3.toml \
    ./usr/share/sluice/sluice-runc.toml \
    ./usr/share/sluice/runtimeclass.yaml \
    ./usr/share/sluice/install.sh \
    ./usr/share/doc/sluice/README.md \
    ./usr/share/doc/sluice/INSTALL.md; do
    grep -qE "[[:space:]]$f\$" <<<"$listing" || missing+=("$f")
done
((${#missing[@]} == 0)) || { printf '%s\n' "$listing" >&2; die "missing from the package: ${missing[*]}"; }
grep -qE '^-rwxr-xr-x .* \./usr/bin/containerd-shim-sluice-v2$' <<<"$listing" \
    || die "the shim is not installed executable: $(grep containerd-shim <<<"$listing")"
[[ $(dpkg-deb -f "$deb" Package) == sluice ]] || die "Package is not sluice"
[[ $(dpkg-deb -f "$deb" Architecture) == "$(dpkg --print-architecture)" ]] || die "wrong Architecture"
if dpkg-deb -c "$deb" | grep -qE '\./etc/'; then
    die "the package must not ship files under /etc (it changes no containerd config)"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "$deb" "$tmp"
v=$("$tmp/usr/bin/containerd-shim-sluice-v2" -v || true)
[[ $v == containerd-shim-sluice-v2* ]] || die "the packaged shim's -v said: $v"
cmp -s "$tmp/usr/share/sluice/containerd-config-v2.toml" packaging/containerd-config-v2.toml \
    || die "packaged containerd-config-v2.toml differs from packaging/"
bash "$tmp/usr/share/sluice/install.sh" --help | grep -q -- '--add-to-config' \
    || die "packaged install.sh --help does not work"
say "ok: $(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version) $(dpkg-deb -f "$deb" Architecture)," \
    "$(grep -c '' <<<"$listing") entries"
printf '%s\n' "$listing" | awk '{print "  " $1, $6}'
