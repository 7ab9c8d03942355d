#!/usr/bin/env bash
# Builds the Debian package of sluice from the static release binary, with dpkg-deb (no
# cargo-deb to install): target/dist/sluice_<version>-1_<arch>.deb, holding
# /usr/bin/containerd-shim-sluice-v2 and, under /usr/share/sluice/, the containerd config
# snippets (v2, v3), the runc settings example, the RuntimeClass and install.sh.
#
#   scripts/package.sh [--check]
#
# The package is always checked (its files against packaging/, control fields, no Depends for a
# static binary, nothing under /etc, the packaged shim's -v): --check is accepted for the
# callers that pass it. scripts/release.sh builds the tarball and the .rpm as well.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
case ${1:-} in
    --check | '') ;;
    *) printf '[package] error: usage: scripts/package.sh [--check]\n' >&2; exit 1 ;;
esac
exec bash "$ROOT/scripts/release.sh" --only deb
