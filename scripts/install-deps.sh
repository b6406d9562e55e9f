#!/usr/bin/env bash
# Installs, from Debian's packages, everything LuminaGuard needs to build its guest image and run
# both sandbox backends. Idempotent; needs root (or sudo).
set -euo pipefail
packages=(
  qemu-system-x86        # the micro-VM backend (QEMU microvm machine)
  busybox-static         # the guest's userland
  bubblewrap             # the namespace backend
  musl-tools             # compiles the static guest agent
  linux-source-6.1       # source of the minimal guest kernel
  build-essential bc bison flex libelf-dev libssl-dev cpio xz-utils  # kernel build
  file util-linux        # file(1) checks busybox is static; setpriv gives QEMU a parent-death signal
  prometheus             # promtool: the daemon's /metrics is checked with Prometheus' own linter
  chromium               # the dashboard's test drives a real headless browser
  nats-server            # the cluster fabric (luminaguard serve --cluster); its tests run a 3-server cluster
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all Debian packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
