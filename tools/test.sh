#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Install dependencies, build, and run the whole test suite: unit tests, fuzz
# corpora, integration tests on real FUSE mounts and network namespaces, the
# same again under AddressSanitizer + UndefinedBehaviorSanitizer, a short
# libFuzzer run of every fuzz target, and a smoke run of every benchmark.
# Run as root on Debian 12:  sudo bash tools/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

fuzz_seconds=${P2PFS_FUZZ_SECONDS:-20}
step() { printf '\n=== %s ===\n' "$*"; }

step "dependencies"
bash tools/setup.sh test

step "build (warnings are errors)"
[ -d build-ci ] || meson setup build-ci -Dwerror=true >/dev/null
ninja -C build-ci

step "tests"
meson test -C build-ci --print-errorlogs --no-rebuild --num-processes 2 --no-suite bench

step "build with AddressSanitizer + UndefinedBehaviorSanitizer"
[ -d build-asan ] || meson setup build-asan -Dwerror=true -Db_sanitize=address,undefined \
	-Db_lundef=false >/dev/null
ninja -C build-asan

step "tests under ASan + UBSan"
# Daemons detach from the terminal: sanitizer reports go to files, checked below.
reports="$PWD/build-asan/sanitizer-report"
rm -f "$reports".*
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1:log_path=$reports
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:log_path=$reports
meson test -C build-asan --print-errorlogs --no-rebuild --num-processes 2 \
	--suite unit --suite fuzz --suite integ
unset ASAN_OPTIONS UBSAN_OPTIONS
if compgen -G "$reports.*" >/dev/null; then
	cat "$reports".*
	echo "sanitizer reports above"
	exit 1
fi

step "libFuzzer: ${fuzz_seconds}s per target"
[ -d build-fuzz ] || CC=clang meson setup build-fuzz -Dfuzz=true -Db_lundef=false >/dev/null
ninja -C build-fuzz $(cd build-fuzz && meson introspect --targets | python3 -c '
import json, sys
print(" ".join(t["filename"][0].split("/build-fuzz/")[-1] for t in json.load(sys.stdin)
               if t["name"].startswith("fuzz_") and not t["name"].endswith("_replay")))')
for f in build-fuzz/tests/fuzz/fuzz_*; do
	case "$f" in *_replay | *.p) continue ;; esac
	[ -x "$f" ] || continue
	name=$(basename "$f" | sed 's/^fuzz_//')
	work=$(mktemp -d)
	cp -r "tests/fuzz/corpus/$name/." "$work/" 2>/dev/null || true
	echo "fuzz $name"
	"$f" -max_total_time="$fuzz_seconds" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=0 "$work" >"$work.log" 2>&1 || {
		tail -50 "$work.log"
		echo "fuzz target $name failed; the crashing input is in $PWD"
		exit 1
	}
	rm -rf "$work" "$work.log"
done

step "benchmark smoke runs"
meson test -C build-ci --print-errorlogs --no-rebuild --suite bench

step "all tests passed"
