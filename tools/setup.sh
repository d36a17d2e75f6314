#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Install every Debian package p2pfs needs to build, run, test and benchmark.
# Idempotent: packages already present are left alone.
set -euo pipefail

build_pkgs=(build-essential pkg-config meson ninja-build
	libfuse3-dev fuse3 liburing-dev libsodium-dev libxxhash-dev libssl-dev)
test_pkgs=(python3 python3-pytest iproute2 nftables rsync git sqlite3 xxd
	clang llvm libclang-rt-14-dev procps psmisc e2fsprogs kmod util-linux)
bench_pkgs=(iperf3 python3-opendht python3-libtorrent nginx-light curl gnuplot-nox hyperfine)

want=("${build_pkgs[@]}")
case "${1:-run}" in
run) ;;
test) want+=("${test_pkgs[@]}") ;;
bench | all) want+=("${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
*)
	echo "usage: tools/setup.sh [run|test|all]" >&2
	exit 2
	;;
esac

missing=()
for p in "${want[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
	if [ "$(id -u)" -ne 0 ]; then
		echo "p2pfs setup: installing ${missing[*]} needs root; run as root or with sudo" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# FUSE needs its module and device node; both are present on stock kernels.
[ -e /dev/fuse ] || modprobe fuse 2>/dev/null || true
echo "p2pfs setup: dependencies present (${1:-run})"
