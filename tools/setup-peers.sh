#!/usr/bin/env bash
# Vendored from shared/peers/setup-peers.sh so that `make install` prepares the peers the tests
# and benchmarks compare against, without needing shared/ beside the checkout.
# Installs and configures the peer systems that dockyard is measured against
# (podman, crun, runc, skopeo, a local registry, etcd) on a fresh Debian bookworm
# machine, as root. Idempotent. Offline: the busybox image is made from busybox-static.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
pkgs=(podman crun runc conmon skopeo docker-registry etcd-server hyperfine
      busybox-static containernetworking-plugins nftables iptables uidmap)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# podman: this sandbox has no CAP_SYS_RESOURCE, and the hard nofile limit is 20000;
# cgroupfs manager and file events because there is no systemd.
mkdir -p /etc/containers
cat > /etc/containers/containers.conf <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF

# crun refuses a hybrid cgroup v1 layout where the hugetlb controller is not mounted.
if [ ! -d /sys/fs/cgroup/unified ] || [ -d /sys/fs/cgroup/cpu ]; then
  if ! mountpoint -q /sys/fs/cgroup/hugetlb 2>/dev/null && grep -qw hugetlb /proc/cgroups; then
    mkdir -p /sys/fs/cgroup/hugetlb
    mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb || true
  fi
fi

# An offline busybox image, tagged under the names clients use.
if ! podman image exists docker.io/library/busybox:latest; then
  root=$(mktemp -d)
  mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/proc" "$root/sys" "$root/dev"
  cp /bin/busybox "$root/bin/busybox"
  for a in $("$root/bin/busybox" --list); do [ "$a" = busybox ] || ln -s busybox "$root/bin/$a"; done
  echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
  echo 'root:x:0:' > "$root/etc/group"
  tar -C "$root" -cf "$root.tar" .
  podman import --change 'CMD ["sh"]' "$root.tar" docker.io/library/busybox:latest >/dev/null
  podman tag docker.io/library/busybox:latest localhost/busybox:latest
  rm -rf "$root" "$root.tar"
fi

# An OCI bundle for crun/runc direct runs: /var/lib/peers/bundle.
bundle=/var/lib/peers/bundle
if [ ! -f "$bundle/config.json" ]; then
  mkdir -p "$bundle/rootfs"
  podman export "$(podman create docker.io/library/busybox:latest true)" | tar -C "$bundle/rootfs" -xf -
  (cd "$bundle" && runc spec && sed -i 's/"terminal": true/"terminal": false/; s/"sh"/"true"/' config.json)
  podman rm -a >/dev/null
fi
echo "peers ready: podman $(podman --version | awk '{print $3}'), crun $(crun --version | head -1 | awk '{print $3}'), runc $(runc --version | head -1 | awk '{print $3}')"
