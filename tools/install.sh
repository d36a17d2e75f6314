#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Install dependencies, build p2pfs, install it and mount /mnt/shared with the
# default configuration. Run as root on Debian 12:  sudo bash tools/install.sh
set -euo pipefail
cd "$(dirname "$0")/.."

mountpoint=${1:-/mnt/shared}
bash tools/setup.sh run
[ -d build-release ] || meson setup build-release --buildtype=release -Dtests=false >/dev/null
ninja -C build-release >/dev/null
install -m 0755 build-release/daemon/p2pfs /usr/local/bin/p2pfs
mkdir -p "$mountpoint"
if p2pfs status "$mountpoint" >/dev/null 2>&1; then
	echo "p2pfs: $mountpoint is already mounted; 'p2pfs status $mountpoint' shows it"
	exit 0
fi
p2pfs mount "$mountpoint"
p2pfs status "$mountpoint"
