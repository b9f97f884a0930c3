#!/bin/bash
# Static busybox binaries of foreign architectures, from Debian's busybox-static packages, for the
# offline test images `dockyard image bootstrap busybox --platform linux/arm64|linux/arm/v7`.
# Kept in $DOCKYARD_BUSYBOX_DIR (default /var/cache/dockyard/busybox)/<arm64|arm-v7>/busybox.
# Idempotent: an architecture already cached is not fetched again (a second run takes ~0 s).
# dpkg's foreign architectures are added for the download and removed again afterwards when this
# script added them (nothing of them gets installed).
set -euo pipefail
dir=${DOCKYARD_BUSYBOX_DIR:-/var/cache/dockyard/busybox}
declare -A want=([arm64]=arm64 [armhf]=arm-v7)
missing=()
for deb in "${!want[@]}"; do [ -x "$dir/${want[$deb]}/busybox" ] || missing+=("$deb"); done
(( ${#missing[@]} )) || exit 0
added=()
for deb in "${missing[@]}"; do
  if ! dpkg --print-foreign-architectures | grep -qx "$deb"; then dpkg --add-architecture "$deb"; added+=("$deb"); fi
done
cleanup() { for deb in "${added[@]}"; do dpkg --remove-architecture "$deb" 2>/dev/null || true; done; rm -rf "$tmp"; }
tmp=$(mktemp -d); trap cleanup EXIT
apt-get update -qq
for deb in "${missing[@]}"; do
  (cd "$tmp" && apt-get download -qq "busybox-static:$deb")
  mkdir -p "$tmp/x-$deb" "$dir/${want[$deb]}"
  dpkg-deb -x "$tmp"/busybox-static_*_"$deb".deb "$tmp/x-$deb"
  install -m 0755 "$tmp/x-$deb/bin/busybox" "$dir/${want[$deb]}/busybox.new"
  basename "$tmp"/busybox-static_*_"$deb".deb > "$dir/${want[$deb]}/SOURCE"
  mv "$dir/${want[$deb]}/busybox.new" "$dir/${want[$deb]}/busybox"
  echo "busybox: $dir/${want[$deb]}/busybox from $(cat "$dir/${want[$deb]}/SOURCE")"
done
# the foreign package lists go with the architectures (apt-get update drops them on its next run)
