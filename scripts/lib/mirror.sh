# Sourced by the scripts that fetch from Debian (fetch-containerd.sh, oldlands-test.sh,
# vm/build-image.sh): they all use the machine's own mirror, never a name written down.
# The caller defines die().

# The first deb mirror URI of the machine's own sources (deb822 first, then one-line format),
# without a trailing slash.
mirror_uri() {
    local f uri=
    for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list.d/*.sources; do
        [[ -r $f ]] || continue
        uri=$(awk '/^URIs:/{print $2; exit}' "$f")
        [[ -n $uri ]] && break
    done
    if [[ -z $uri && -r /etc/apt/sources.list ]]; then
        uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' \
            /etc/apt/sources.list)
    fi
    [[ -n $uri ]] || die "no Debian mirror URI found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list"
    printf '%s\n' "${uri%/}"
}
