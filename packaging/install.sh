#!/usr/bin/env bash
# Installs sluice (containerd-shim-sluice-v2) for containerd and, on request, registers the CRI
# runtime handler "sluice". Never restarts containerd unless asked with --restart.
#
#   packaging/install.sh [options]
#
#   --binary PATH        the shim to install (default: a release tarball's bin/, else
#                        target/release, then target/debug of this checkout)
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
#   --state-dir DIR      where the install manifest is kept (default /var/lib/sluice): each
#                        file installed, link made, file replaced (kept as *.sluice-bak) and
#                        config changed (the original kept as *.sluice-bak), with checksums
#   --uninstall          undo what the manifest records: remove the binary and links installed
#                        (only while they are still what was installed: a binary changed or put
#                        there by something else is left, and the command exits 1), put every
#                        replaced file and changed config back as it was before the first
#                        install (a config edited since keeps the edits, less sluice's tables),
#                        then remove the manifest. Takes --state-dir, --restart, --dry-run.
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
state_dir=/var/lib/sluice uninstall=0
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
        --state-dir) state_dir=${2:?--state-dir needs a dir}; shift ;;
        --uninstall) uninstall=1 ;;
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

# ---- the manifest: what this script did, so that --uninstall undoes exactly that ----------
# One line per thing, tab-separated: KIND PATH SHA256 EXTRA
#   file    PATH  sha-installed  -              a file installed (binary, conf.d snippet)
#   link    PATH  -              TARGET         a symbolic link made
#   backup  PATH  -              PATH.sluice-bak  PATH existed before and was replaced or
#                                                 changed; the backup is the first install's
#   created PATH  -              -              a config that did not exist before
#   config  PATH  sha-after      -              what the config was after the last change
#   dir     PATH  -              -              a directory made for a file (removed if empty)
manifest=$state_dir/install-manifest
sha() { sha256sum "$1" | cut -d' ' -f1; }
recorded() { [[ -f $manifest ]] && awk -F'\t' -v k="$1" -v p="$2" '$1 == k && $2 == p {f = 1} END {exit !f}' "$manifest"; }
field() { awk -F'\t' -v k="$1" -v p="$2" -v n="$3" '$1 == k && $2 == p {v = $n} END {print v}' "$manifest"; }
record() { # KIND PATH SHA EXTRA: replaces an earlier line of the same KIND and PATH
    ((dry)) && return 0
    mkdir -p "$state_dir"
    touch "$manifest"
    awk -F'\t' -v k="$1" -v p="$2" '!($1 == k && $2 == p)' "$manifest" >"$manifest.tmp"
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "${3:--}" "${4:--}" >>"$manifest.tmp"
    mv "$manifest.tmp" "$manifest"
}
# Before PATH is first replaced or changed: keep it as PATH.sluice-bak (once: a later install
# must not overwrite the original with what an earlier install made), or note it was absent.
keep_original() {
    local path=$1 kind=${2:-file}
    recorded backup "$path" && return 0
    recorded created "$path" && return 0
    recorded file "$path" && return 0
    recorded link "$path" && return 0
    if [[ -e $path || -L $path ]]; then
        run cp -a "$path" "$path.sluice-bak"
        record backup "$path" - "$path.sluice-bak"
    elif [[ $kind == config ]]; then
        record created "$path"
    fi
}
install_file() { # SRC DEST MODE
    local d
    d=$(dirname "$2")
    [[ -d $d ]] || recorded dir "$d" || record dir "$d"
    keep_original "$2"
    run install -D -m "$3" "$1" "$2"
    ((dry)) || record file "$2" "$(sha "$2")"
}
make_link() { # TARGET PATH
    keep_original "$2"
    run ln -sfn "$1" "$2"
    record link "$2" - "$1"
}

uninstall_all() {
    [[ -f $manifest ]] || die "nothing to undo: no $manifest (install.sh installed nothing with --state-dir $state_dir)"
    local kind path hash extra changed_config=0
    local -a left=() edited=()
    refuse() { printf '[sluice install] error: %s\n' "$2" >&2; left+=("$1"); }
    is_in() { local x=$1; shift; [[ " $* " == *" $x "* ]]; }
    # Files and links first, then configs edited since, then backups: the reverse of install.
    while IFS=$'\t' read -r kind path hash extra; do
        case $kind in
            file)
                if [[ ! -e $path && ! -L $path ]]; then
                    say "$path is gone already"
                elif [[ -L $path || $(sha "$path") != "$hash" ]]; then
                    refuse "$path" "refusing to remove $path: it is not the file install.sh put there (changed or replaced since); remove it by hand if it should go"
                else
                    run rm -f "$path"
                    say "removed $path"
                fi
                ;;
            link)
                if [[ -L $path && $(readlink "$path") == "$extra" ]]; then
                    run rm -f "$path"
                    say "removed $path"
                elif [[ -e $path || -L $path ]]; then
                    refuse "$path" "refusing to remove $path: it is no longer the link to $extra that install.sh made"
                fi
                ;;
            config)
                changed_config=1
                if [[ -f $path && $(sha "$path") != "$hash" ]]; then
                    # Edited since: keep the edits, take out only what install.sh added.
                    if ((dry)); then
                        say "would remove sluice's tables from $path (edited since install: its backup is not restored)"
                    else
                        strip_sluice "$path"
                        say "$path was edited since install: removed sluice's tables only, kept the rest"
                    fi
                    edited+=("$path")
                fi
                ;;
        esac
    done <"$manifest"
    while IFS=$'\t' read -r kind path hash extra; do
        is_in "$path" "${left[@]}" && continue
        case $kind in
            backup)
                if is_in "$path" "${edited[@]}"; then
                    run rm -f "$extra"
                elif [[ -e $extra || -L $extra ]]; then
                    # rm first: mv onto a link install.sh made would follow it.
                    run rm -f "$path"
                    run mv "$extra" "$path"
                    say "restored $path as it was before install"
                else
                    refuse "$path" "the backup $extra of $path is gone: $path left as it is"
                fi
                ;;
            created)
                if ! is_in "$path" "${edited[@]}"; then
                    run rm -f "$path"
                    say "removed $path (install.sh created it)"
                fi
                ;;
        esac
    done <"$manifest"
    # Directories made, once empty, deepest first.
    awk -F'\t' '$1 == "dir" {print $2}' "$manifest" | sort -r | while read -r path; do
        run rmdir "$path" 2>/dev/null && say "removed $path" || true
    done
    if ((${#left[@]})); then
        # Keep what was not undone, so that --uninstall can finish after a fix.
        if ((!dry)); then
            awk -F'\t' -v keep=" ${left[*]} " 'index(keep, " " $2 " ")' "$manifest" >"$manifest.tmp"
            mv "$manifest.tmp" "$manifest"
        fi
        die "not everything was undone (above): what was not is still in $manifest"
    fi
    run rm -f "$manifest"
    ((dry)) || rmdir "$state_dir" 2>/dev/null || true
    say "uninstalled: everything install.sh recorded in $manifest is undone"
    if ((restart)); then
        run systemctl restart containerd
        say "restarted containerd"
    elif ((changed_config)); then
        say "restart containerd for the change to take effect (not done: pass --restart)"
    fi
}

# Removes what install.sh appended (the marked block up to the end of the file) and its
# imports glob from a config edited since.
strip_sluice() {
    local f=$1
    awk '/^# ---- added by sluice install.sh/ {skip = 1} !skip' "$f" >"$f.sluice-tmp"
    sed -i -E 's#"[^"]*/\*\.toml", ##; /^imports = \["[^"]*\/\*\.toml"\]$/d' "$f.sluice-tmp"
    cat "$f.sluice-tmp" >"$f"
    rm -f "$f.sluice-tmp"
}

if ((uninstall)); then
    uninstall_all
    exit 0
fi

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
        # A release tarball's bin/ (share/sluice/../../bin), else this checkout's build.
        for b in "$HERE/../../bin/$NAME" "$HERE/../target/release/$NAME" "$HERE/../target/debug/$NAME"; do
            [[ -x $b ]] && { binary=$b; break; }
        done
        [[ -n $binary ]] || die "no built $NAME found: build with 'cargo build --release' or pass --binary"
    fi
    [[ -x $binary ]] || die "$binary is not an executable"
    answer=$("$binary" -v 2>/dev/null || true)
    [[ $answer == "$NAME"* ]] || die "$binary -v does not answer as $NAME: ${answer:-nothing}"
    if [[ -e $bindir/$NAME && $(realpath "$binary") == $(realpath "$bindir/$NAME") ]]; then
        say "$bindir/$NAME is the binary given: left in place, not recorded (install.sh did not put it there)"
    else
        install_file "$binary" "$bindir/$NAME" 0755
        say "installed $bindir/$NAME"
    fi
    if ((as_runc)); then
        make_link "$NAME" "$bindir/containerd-shim-runc-v2"
        say "installed $bindir/containerd-shim-runc-v2 -> $NAME: io.containerd.runc.v2 runtimes now" \
            "start sluice wherever $bindir comes first on containerd's PATH"
    fi
elif ((as_runc)); then
    make_link "$(command -v "$NAME" || echo "/usr/bin/$NAME")" "$bindir/containerd-shim-runc-v2"
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
        fi
        keep_original "$config" config
        if ((dry)); then
            say "would append $table to $config"
        else
            mkdir -p "$(dirname "$config")"
            [[ -f $config ]] || printf 'version = %s\n' "$cfg_version" >"$config"
            {
                printf '\n# ---- added by sluice install.sh (%s) ----\n' "$(basename "$snippet")"
                snippet_body
            } >>"$config"
            record config "$config" "$(sha "$config")"
        fi
        say "added $table to $config"
        changed=1
    fi
fi

if [[ -n $confd ]]; then
    [[ $cfg_version == 3 ]] || die "--conf-d: containerd $version's imports replace the main config's whole CRI table; use --add-to-config"
    install_file "$snippet" "$confd/sluice.toml" 0644
    say "installed $confd/sluice.toml"
    glob="$confd/*.toml"
    if [[ -f $config ]] && grep -qF "\"$glob\"" "$config"; then
        say "$config already imports $glob"
    elif ((dry)); then
        say "would make $config import $glob"
    else
        mkdir -p "$(dirname "$config")"
        keep_original "$config" config
        if [[ ! -f $config ]]; then
            printf 'version = 3\nimports = ["%s"]\n' "$glob" >"$config"
        else
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
        record config "$config" "$(sha "$config")"
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
