#!/usr/bin/env bash
# Installs sluice (containerd-shim-sluice-v2) for containerd and, on request, registers the CRI
# runtime handler "sluice". Never restarts containerd unless asked with --restart.
#
#   packaging/install.sh [options]
#
#   --binary PATH        the shim to install (default: target/release, then target/debug of
#                        this checkout)
#   --bindir DIR         where to install it (default /usr/local/bin)
#   --no-binary          install no binary (e.g. the Debian package already put it in /usr/bin)
#   --as-runc-v2         also install it as DIR/containerd-shim-runc-v2, so that every
#                        io.containerd.runc.v2 runtime is served by sluice; DIR must come
#                        before the stock shim's directory on containerd's PATH (/usr/local/bin
#                        does for systemd's default PATH; Debian's stock shim is in /usr/bin)
#   --add-to-config      add the handler table to the main config (default
#                        /etc/containerd/config.toml; a backup is kept as *.sluice-bak); once:
#                        a config that already has runtimes.sluice is left alone
#   --conf-d DIR         containerd 2.x only: install the snippet as DIR/sluice.toml and make
#                        the main config import DIR/*.toml (1.6/1.7 imports replace the whole
#                        CRI table, losing the main config's CRI settings: use --add-to-config)
#   --config FILE        the main containerd config (default /etc/containerd/config.toml)
#   --containerd-version 1.6|1.7|2
#                        which config flavour to write (default: from `containerd --version`)
#   --restart            restart containerd (systemctl) after changing its config
#   --dry-run            say what would be done, change nothing
#
# Without --add-to-config or --conf-d it prints the table to add. Snippets are read from
# $SLUICE_SNIPPETS, else next to this script, else /usr/share/sluice.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NAME=containerd-shim-sluice-v2

say() { printf '[sluice install] %s\n' "$*"; }
die() { printf '[sluice install] error: %s\n' "$*" >&2; exit 1; }

binary='' bindir=/usr/local/bin no_binary=0 as_runc=0 add_config=0 confd=''
config=/etc/containerd/config.toml version='' restart=0 dry=0
while (($#)); do
    case $1 in
        --binary) binary=${2:?--binary needs a path}; shift ;;
        --bindir) bindir=${2:?--bindir needs a dir}; shift ;;
        --no-binary) no_binary=1 ;;
        --as-runc-v2) as_runc=1 ;;
        --add-to-config) add_config=1 ;;
        --conf-d) confd=${2:?--conf-d needs a dir}; shift ;;
        --config) config=${2:?--config needs a file}; shift ;;
        --containerd-version) version=${2:?--containerd-version needs 1.6, 1.7 or 2}; shift ;;
        --restart) restart=1 ;;
        --dry-run) dry=1 ;;
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done

run() {
    if ((dry)); then
        say "would run: $*"
    else
        "$@"
    fi
}

# ---- which containerd -------------------------------------------------------------------
if [[ -z $version ]]; then
    if command -v containerd >/dev/null 2>&1; then
        version=$(containerd --version | awk '{print $3}')
        version=${version#v}
    else
        version=unknown
    fi
fi
case $version in
    1.6* | 1.7*) cfg_version=2 plugin=io.containerd.grpc.v1.cri ;;
    2*) cfg_version=3 plugin=io.containerd.cri.v1.runtime ;;
    unknown)
        if ((add_config)) || [[ -n $confd ]]; then
            die "containerd not found on PATH: say which config to write with --containerd-version"
        fi
        cfg_version=2 plugin=io.containerd.grpc.v1.cri
        ;;
    *) die "containerd $version is not supported (1.6, 1.7, 2.x)" ;;
esac

snippet_dir=${SLUICE_SNIPPETS:-}
if [[ -z $snippet_dir ]]; then
    for d in "$HERE" /usr/share/sluice; do
        [[ -f $d/containerd-config-v$cfg_version.toml ]] && { snippet_dir=$d; break; }
    done
fi
snippet=$snippet_dir/containerd-config-v$cfg_version.toml
[[ -f $snippet ]] || die "snippet containerd-config-v$cfg_version.toml not found (set SLUICE_SNIPPETS)"
table="[plugins.\"$plugin\".containerd.runtimes.sluice]"

# ---- the binary -------------------------------------------------------------------------
if ((!no_binary)); then
    if [[ -z $binary ]]; then
        for b in "$HERE/../target/release/$NAME" "$HERE/../target/debug/$NAME"; do
            [[ -x $b ]] && { binary=$b; break; }
        done
        [[ -n $binary ]] || die "no built $NAME found: build with 'cargo build --release' or pass --binary"
    fi
    [[ -x $binary ]] || die "$binary is not an executable"
    answer=$("$binary" -v 2>/dev/null || true)
    [[ $answer == "$NAME"* ]] || die "$binary -v does not answer as $NAME: ${answer:-nothing}"
    run install -D -m 0755 "$binary" "$bindir/$NAME"
    say "installed $bindir/$NAME"
    if ((as_runc)); then
        run ln -sfn "$NAME" "$bindir/containerd-shim-runc-v2"
        say "installed $bindir/containerd-shim-runc-v2 -> $NAME: io.containerd.runc.v2 runtimes now" \
            "start sluice wherever $bindir comes first on containerd's PATH"
    fi
elif ((as_runc)); then
    run ln -sfn "$(command -v "$NAME" || echo "/usr/bin/$NAME")" "$bindir/containerd-shim-runc-v2"
    say "installed $bindir/containerd-shim-runc-v2 -> $NAME"
fi

# ---- the config -------------------------------------------------------------------------
# The snippet's tables: no `version` line, no comments.
snippet_body() { grep -v -e '^version *=' -e '^#' -e '^[[:space:]]*$' "$snippet"; }

changed=0
if ((add_config)); then
    if [[ -f $config ]] && grep -qF "$table" "$config"; then
        say "$config already has $table: left alone"
    else
        if [[ -f $config ]]; then
            have=$(awk -F= '/^[[:space:]]*version[[:space:]]*=/{gsub(/[[:space:]]/, "", $2); print $2; exit}' "$config")
            [[ ${have:-1} == "$cfg_version" ]] \
                || die "$config is config version ${have:-1}; containerd $version needs version $cfg_version here: add $table by hand"
            run cp -p "$config" "$config.sluice-bak"
        fi
        if ((dry)); then
            say "would append $table to $config"
        else
            mkdir -p "$(dirname "$config")"
            [[ -f $config ]] || printf 'version = %s\n' "$cfg_version" >"$config"
            {
                printf '\n# ---- added by sluice install.sh (%s) ----\n' "$(basename "$snippet")"
                snippet_body
            } >>"$config"
        fi
        say "added $table to $config"
        changed=1
    fi
fi

if [[ -n $confd ]]; then
    [[ $cfg_version == 3 ]] || die "--conf-d: containerd $version's imports replace the main config's whole CRI table; use --add-to-config"
    run install -D -m 0644 "$snippet" "$confd/sluice.toml"
    say "installed $confd/sluice.toml"
    glob="$confd/*.toml"
    if [[ -f $config ]] && grep -qF "\"$glob\"" "$config"; then
        say "$config already imports $glob"
    elif ((dry)); then
        say "would make $config import $glob"
    else
        mkdir -p "$(dirname "$config")"
        if [[ ! -f $config ]]; then
            printf 'version = 3\nimports = ["%s"]\n' "$glob" >"$config"
        else
            cp -p "$config" "$config.sluice-bak"
            if grep -qE '^[[:space:]]*imports[[:space:]]*=[[:space:]]*\[' "$config"; then
                # Add the glob as the first element of the existing (one-line) array.
                sed -i -E "0,/^([[:space:]]*imports[[:space:]]*=[[:space:]]*\[)/s||\1\"${glob//\//\\/}\", |" "$config"
                sed -i -E 's/(imports[[:space:]]*=[[:space:]]*\["[^"]*"), \]/\1]/' "$config"
            else
                # A top-level key must come before the first table.
                awk -v line="imports = [\"$glob\"]" '
                    !done && /^[[:space:]]*\[/ { print line; print ""; done = 1 }
                    { print }
                    END { if (!done) print line }' "$config" >"$config.sluice-tmp"
                mv "$config.sluice-tmp" "$config"
            fi
        fi
        say "$config now imports $glob"
    fi
    changed=1
fi

if ((!add_config)) && [[ -z $confd ]]; then
    say "to register the CRI runtime handler \"sluice\", add to $config (containerd $version," \
        "config version $cfg_version), then restart containerd:"
    echo
    snippet_body
    echo
    say "(or rerun with --add-to-config${cfg_version:+$([[ $cfg_version == 3 ]] && echo ' or --conf-d /etc/containerd/conf.d')})"
fi

if ((changed)); then
    if ((restart)); then
        run systemctl restart containerd
        say "restarted containerd"
    else
        say "restart containerd for the change to take effect (not done: pass --restart)"
    fi
fi
say "Kubernetes: apply runtimeclass.yaml (handler: sluice) and set runtimeClassName: sluice"
