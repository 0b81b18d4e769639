#!/usr/bin/env bash
# Prepares a fresh Debian machine (as root) for building and running the
# crates: installs the missing system packages, mounts bpffs. Idempotent and
# quiet when everything is already there. Sourced by demo.sh and test.sh.
set -euo pipefail

# package -> a file that shows it is installed
declare -A PKGS=(
  [clang]=/usr/bin/clang
  [llvm]=/usr/bin/llvm-strip
  [libelf-dev]=/usr/include/libelf.h
  [zlib1g-dev]=/usr/include/zlib.h
  [pkg-config]=/usr/bin/pkg-config
  [make]=/usr/bin/make
  [iproute2]=/usr/sbin/ip
  [bpftool]=/usr/sbin/bpftool
  [iputils-ping]=/usr/bin/ping
  [iperf3]=/usr/bin/iperf3
  # The masquerade benchmark's baseline (iptables -t nat MASQUERADE in a
  # netns; Debian's is the nf_tables variant, iptables-nft) and the
  # services-scale benchmark's kube-proxy baseline (iptables-restore, in
  # the same package).
  [iptables]=/usr/sbin/iptables-restore
  [linux-libc-dev]=/usr/include/linux/bpf.h
  [procps]=/usr/sbin/sysctl
  [util-linux]=/usr/bin/setpriv
  # The CNI plugin's end-to-end test (tests/cni_podman.rs): podman with the
  # CNI backend, host-local IPAM, runc, and a busybox rootfs for the image.
  [podman]=/usr/bin/podman
  [containernetworking-plugins]=/usr/lib/cni/host-local
  [runc]=/usr/sbin/runc
  [conmon]=/usr/bin/conmon
  [busybox-static]=/bin/busybox
  # Routing daemons of route/tests/daemons.rs, started by the tests in their
  # own namespaces (the install below keeps the packages' services off).
  [bird2]=/usr/sbin/bird
  [frr]=/usr/lib/frr/zebra
)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root (it installs packages, mounts bpffs and creates network namespaces)" >&2
  exit 1
fi

missing=()
for p in "${!PKGS[@]}"; do
  [ -e "${PKGS[$p]}" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # bird2 and frr ship services; the tests start their own daemons in their
  # own namespaces, so none may start on this host while installing (a
  # policy-rc.d that refuses every start, removed again if we made it).
  made_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  apt-get update -qq
  rc=0
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
  [ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
  [ "$rc" -eq 0 ] || { echo "setup: apt-get install failed ($rc)" >&2; exit "$rc"; }
fi

if ! mount -t bpf | grep -q ' /sys/fs/bpf '; then
  echo "setup: mounting bpffs at /sys/fs/bpf"
  mount -t bpf bpf /sys/fs/bpf
fi
mkdir -p /run/netns

if ! command -v cargo >/dev/null; then
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null || { echo "setup: cargo not found (install Rust with rustup)" >&2; exit 1; }
