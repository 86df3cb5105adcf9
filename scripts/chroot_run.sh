#!/usr/bin/env bash
# Run a command inside a Debian chroot made by `make chroot-VERSION`, with /proc, /sys, /dev, the
# repository and ../shared mounted at their host paths (so tests find ../shared/data as on the
# host). Everything mounted here is unmounted in a trap, whatever the command does; the
# environment is rebuilt from scratch, so the caller's PATH, venv or conda never leaks in, and
# Python writes no bytecode into the shared repository (it would belong to root).
#
#   scripts/chroot_run.sh [--bind HOST_DIR:INSIDE_DIR]... ROOT COMMAND [ARG...]
set -euo pipefail

extra_binds=()
while [ "${1:-}" = --bind ]; do
  extra_binds+=("$2")
  shift 2
done
root=$(realpath "$1")
shift
repo=$(cd "$(dirname "$0")/.." && pwd -P)
shared=$(dirname "$repo")/shared

[ "$(id -u)" = 0 ] || { echo "chroot_run.sh: entering a chroot needs root (try sudo)." >&2; exit 2; }
[ -x "$root/usr/bin/env" ] || { echo "chroot_run.sh: no Debian system in $root (run make chroot-VERSION)." >&2; exit 2; }

mounted=()
cleanup() {
  local index
  for ((index = ${#mounted[@]} - 1; index >= 0; index--)); do
    umount "${mounted[index]}" 2>/dev/null || umount -l "${mounted[index]}" || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bind() { # bind SOURCE TARGET-INSIDE [mount options...]
  local source=$1 target=$root$2
  shift 2
  mkdir -p "$target"
  mount "$@" "$source" "$target"
  mounted+=("$target")
}

bind proc /proc -t proc
bind /sys /sys --bind
bind /dev /dev --bind
bind /dev/pts /dev/pts --bind
bind /dev/shm /dev/shm --bind
bind "$repo" "$repo" --bind
[ -d "$shared" ] && bind "$(realpath "$shared")" "$shared" --bind
for pair in "${extra_binds[@]}"; do
  mkdir -p "${pair%%:*}"
  bind "${pair%%:*}" "${pair#*:}" --bind
done

# Name resolution and the host's CA bundle (package registries may sit behind the host's CA).
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
host_ca=/etc/ssl/certs/ca-certificates.crt
ca_inside=/etc/rsdl-host-ca.crt
[ -f "$host_ca" ] && cp -L "$host_ca" "$root$ca_inside"

chroot "$root" /usr/bin/env -i \
  HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  CI="${CI:-}" DEBIAN_FRONTEND=noninteractive QT_QPA_PLATFORM=offscreen \
  PYTHONDONTWRITEBYTECODE=1 \
  PIP_CERT=$ca_inside SSL_CERT_FILE=$ca_inside REQUESTS_CA_BUNDLE=$ca_inside \
  PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT="${PIP_DEFAULT_TIMEOUT:-180}" \
  /bin/bash -c 'cd "$0" && exec "$@"' "$repo" "$@"
