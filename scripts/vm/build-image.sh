#!/usr/bin/env bash
# Builds (or finds cached) the guest image of the VM lane: Debian bookworm from debootstrap,
# systemd as PID 1, containerd/runc/criu/iptables/busybox-static from Debian, and a oneshot unit
# that mounts the run's payload drive (/dev/vdb) and runs its runner.sh, then powers off.
#
#   scripts/vm/build-image.sh          # prints the cache directory on the last line of stdout
#
# The image lives in $SLUICE_VM_CACHE/<key>/ (default /var/cache/sluice-vm): guest.img (ext4,
# sparse), vmlinuz, initrd.img, packages.txt (dpkg -l of the guest). The key hashes what went
# into it: this script, the package list, the mirror's suite date (its InRelease `Date:`), the
# architecture. A new key builds a new image; SLUICE_VM_REBUILD=1 builds even if cached.
# Needs root (debootstrap, chroot). Mirror: read from the host's Debian sources at run time.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${SLUICE_VM_CACHE:-/var/cache/sluice-vm}
SUITE=bookworm
SIZE=${SLUICE_VM_IMAGE_SIZE:-4G}
# What the guest needs at run time: systemd/udev/dbus for PID 1 and the systemd cgroup driver
# (runc talks to systemd over dbus); kmod loads overlay for CRI; the rest is the test matrix
# (criu needs iptables-restore and ip to lock the network during a dump) and the harness's
# tools (bash, tar, coreutils come with minbase).
PACKAGES=(systemd-sysv udev dbus kmod procps iproute2 iptables util-linux
    linux-image-cloud-amd64 containerd runc criu busybox-static ca-certificates)

say() { printf '[vm-image] %s\n' "$*" >&2; }
die() { printf '[vm-image] error: %s\n' "$*" >&2; exit 1; }

# shellcheck source=lib/mirror.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/mirror.sh"

# The suite's `Date:` as the mirror publishes it now (one small download with apt's own
# helper); falls back to the host's apt lists when the mirror cannot be reached.
suite_date() {
    local uri=$1 tmp date=
    tmp=$(mktemp)
    if /usr/lib/apt/apt-helper download-file "$uri/dists/$SUITE/InRelease" "$tmp" >/dev/null 2>&1; then
        date=$(awk '/^Date:/{sub(/^Date: */, ""); print; exit}' "$tmp")
    fi
    rm -f "$tmp"
    if [[ -z $date ]]; then
        local list
        list=$(find /var/lib/apt/lists -maxdepth 1 -name "*_dists_${SUITE}_InRelease" 2>/dev/null | head -n1)
        [[ -n $list ]] && date=$(awk '/^Date:/{sub(/^Date: */, ""); print; exit}' "$list")
        [[ -n $date ]] && say "mirror unreachable; suite date from the host's apt lists: $date"
    fi
    printf '%s\n' "$date"
}

[[ $EUID -eq 0 ]] || die "needs root (debootstrap and chroot)"
for t in debootstrap mkfs.ext4 chroot; do
    command -v "$t" >/dev/null || die "$t missing (scripts/vm-test.sh installs debootstrap and e2fsprogs)"
done

MIRROR=$(mirror_uri)
DATE=$(suite_date "$MIRROR")
if [[ -z $DATE ]]; then
    # No way to tell whether the suite moved: use the newest cached image rather than fail.
    newest=$(ls -1td "$CACHE"/*/guest.img 2>/dev/null | head -n1 || true)
    [[ -n $newest ]] || die "cannot read the $SUITE suite date (mirror unreachable, no apt lists) and no image is cached"
    say "suite date unknown; using the newest cached image $(dirname "$newest")"
    dirname "$newest"
    exit 0
fi
KEY=$( {
    sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1
    printf '%s\n' "${PACKAGES[@]}" "$SUITE" "$DATE" "$(uname -m)" "$SIZE"
} | sha256sum | cut -c1-16)
OUT=$CACHE/$KEY
if [[ -z ${SLUICE_VM_REBUILD:-} && -s $OUT/guest.img && -s $OUT/vmlinuz && -s $OUT/initrd.img ]]; then
    say "cached image $OUT ($SUITE of $DATE)"
    printf '%s\n' "$OUT"
    exit 0
fi

say "building image $KEY: $SUITE of $DATE"
start=$SECONDS
mkdir -p "$CACHE"
WORK=$(mktemp -d "$CACHE/build.XXXXXX")
ROOT=$WORK/root
cleanup() {
    # A failed chroot step may leave these mounted; never rm -rf through a mount.
    for m in proc sys dev/pts dev; do
        mountpoint -q "$ROOT/$m" 2>/dev/null && umount -l "$ROOT/$m"
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

include=$(IFS=,; echo "${PACKAGES[*]}")
debootstrap --variant=minbase --include="$include" "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
say "debootstrap done after $((SECONDS - start)) s"

cat >"$ROOT/etc/fstab" <<'EOF'
/dev/vda / ext4 rw,noatime 0 1
EOF
echo sluice-vm >"$ROOT/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 sluice-vm\n' >"$ROOT/etc/hosts"

# The unit's script: mount the payload drive, run its runner, unmount. Kept tiny so the runner
# can change without an image rebuild.
install -d "$ROOT/usr/local/sbin"
cat >"$ROOT/usr/local/sbin/sluice-vm-run" <<'EOF'
#!/bin/bash
# Mounts the payload drive, runs its runner.sh, unmounts (the host reads results from it).
set -u
mkdir -p /payload
if ! mount -o rw,noatime /dev/vdb /payload; then
    echo "SLUICE-VM|fatal|cannot mount /dev/vdb (payload drive)"
    exit 1
fi
rc=0
if [[ -x /payload/runner.sh ]]; then
    /payload/runner.sh || rc=$?
else
    echo "SLUICE-VM|fatal|/payload/runner.sh missing"
    rc=1
fi
sync
umount /payload || umount -l /payload
exit "$rc"
EOF
chmod 755 "$ROOT/usr/local/sbin/sluice-vm-run"

# Not After=multi-user.target: that makes an ordering cycle (the recipe found it).
cat >"$ROOT/etc/systemd/system/sluice-vm.service" <<'EOF'
[Unit]
Description=sluice VM lane runner
After=local-fs.target dbus.service dev-vdb.device
Wants=dbus.service dev-vdb.device

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/sluice-vm-run
ExecStopPost=/bin/systemctl --no-block poweroff
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
EOF

chroot "$ROOT" /bin/bash -euc '
    passwd -d root >/dev/null
    systemctl enable sluice-vm.service >/dev/null 2>&1
    # The tests start their own private containerds.
    systemctl disable containerd.service >/dev/null 2>&1 || true
    for u in systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
             fstrim.timer man-db.timer serial-getty@ttyS0.service getty@tty1.service \
             systemd-networkd-wait-online.service; do
        systemctl mask "$u" >/dev/null 2>&1 || true
    done
    dpkg-query -W -f="\${Package} \${Version}\n" >/var/lib/sluice-vm-packages.txt
'
cp "$ROOT/var/lib/sluice-vm-packages.txt" "$WORK/packages.txt"
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/apt/archives/*.deb \
    "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/locale/* "$ROOT"/usr/share/info/*

kernel=$(ls -1 "$ROOT"/boot/vmlinuz-* 2>/dev/null | sort -V | tail -n1)
initrd=$(ls -1 "$ROOT"/boot/initrd.img-* 2>/dev/null | sort -V | tail -n1)
[[ -n $kernel && -n $initrd ]] || die "no kernel or initrd in the guest's /boot (linux-image-cloud-amd64 postinst failed?)"
cp "$kernel" "$WORK/vmlinuz"
cp "$initrd" "$WORK/initrd.img"
mkfs.ext4 -q -F -L sluiceroot -d "$ROOT" "$WORK/guest.img" "$SIZE" >&2 || die "mkfs.ext4 -d failed"
printf 'suite=%s\ndate=%s\nkernel=%s\nbuilt=%s\nseconds=%s\n' "$SUITE" "$DATE" "$(basename "$kernel")" \
    "$(date -u +%FT%TZ)" "$((SECONDS - start))" >"$WORK/image.txt"

rm -rf "$OUT.tmp"
mkdir -p "$OUT.tmp"
mv "$WORK/guest.img" "$WORK/vmlinuz" "$WORK/initrd.img" "$WORK/packages.txt" "$WORK/image.txt" "$OUT.tmp/"
rm -rf "$OUT"
mv "$OUT.tmp" "$OUT"
say "image $OUT built in $((SECONDS - start)) s"
printf '%s\n' "$OUT"
