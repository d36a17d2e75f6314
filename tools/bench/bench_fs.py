#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Local filesystem benchmark: p2pfs beside the kernel's FUSE ceiling (a
minimal in-memory FUSE filesystem with the same settings) and tmpfs, all
measured in the same run, medians of several runs.

  cold sequential read of a file (page cache dropped)   target >= 70 % of the ceiling
  sequential write (dd bs=1M + close; page cache dropped
  before each, the two systems in turn first)            target >= 500 MB/s and >= 50 % of the sink
  warm re-read                                           target >= 90 % of the ceiling
  create + write 4 KiB + close of 10,000 files, stat     files/s, beside tmpfs
  daemon RSS after storing N GiB of distinct data, index bytes per chunk and
  per namespace entry                                    targets <= 64 B, <= 256 B

Run as root:  tools/bench/bench_fs.py [--quick] [--build DIR]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def sh(*args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw)


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def dd(src, dst, size, bs=1 << 20, extra=()):
    """Copy with dd, return MB/s (10^6 bytes per second), including close."""
    t0 = time.monotonic()
    sh("dd", f"if={src}", f"of={dst}", f"bs={bs}", f"count={size // bs}", "status=none", *extra)
    return size / (time.monotonic() - t0) / 1e6


def wait_mounted(path, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open("/proc/self/mountinfo") as f:
            if any(line.split()[4] == path for line in f):
                return
        time.sleep(0.02)
    raise SystemExit(f"bench: {path} did not get mounted")


def umount(path):
    subprocess.run(["umount", path], capture_output=True)
    subprocess.run(["umount", "-l", path], capture_output=True)


class P2pfs:
    def __init__(self, exe, base, name):
        self.exe = exe
        self.state = os.path.join(base, name + "-state")
        self.mnt = os.path.join(base, name)
        os.makedirs(self.mnt, exist_ok=True)

    def mount(self):
        sh(self.exe, "mount", self.mnt, "--state", self.state, "--cache-size", "64G")

    def umount(self):
        subprocess.run([self.exe, "umount", self.mnt], capture_output=True, timeout=600)

    def status(self):
        return json.loads(sh(self.exe, "status", "--state", self.state, "--json").stdout)

    def rss_kib(self):
        pid = self.status()["pid"]
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


class Ceiling:
    def __init__(self, exe, base, size):
        self.exe = exe
        self.mnt = os.path.join(base, "ceiling")
        self.size = size
        os.makedirs(self.mnt, exist_ok=True)

    def mount(self):
        sh(self.exe, self.mnt, "--size", str(self.size))
        wait_mounted(self.mnt)

    def umount(self):
        umount(self.mnt)


def distinct(path, size):
    """Change 16 bytes in every MiB of @path: content-defined chunks of the
    result share nothing with those of the file before."""
    with open(path, "r+b") as f:
        for off in range(0, size, 1 << 20):
            f.seek(off)
            f.write(os.urandom(16))


def median(xs):
    return statistics.median(xs)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, one run: a smoke test for CI")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"), help="meson build directory")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where to put state and mounts (same disk as p2pfs would use)")
    ap.add_argument("--json", default=None, help="write the figures here too")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_fs: needs root (FUSE mounts, dropping caches)", file=sys.stderr)
        return 77
    exe = os.path.join(a.build, "daemon", "p2pfs")
    ceiling_exe = os.path.join(a.build, "tools", "bench", "fuse_ceiling")
    smallfiles = os.path.join(a.build, "tools", "bench", "smallfiles")
    size = (128 << 20) if a.quick else (2 << 30)
    nfiles = 500 if a.quick else 10000
    mem_bytes = (256 << 20) if a.quick else (20 << 30)
    runs = 1 if a.quick else a.runs
    base = tempfile.mkdtemp(prefix="p2pfs-bench-", dir=a.dir or "/var/tmp")
    shm = tempfile.mkdtemp(prefix="p2pfs-bench-src-", dir="/dev/shm")
    res = {}
    p = P2pfs(exe, base, "p2pfs")
    c = Ceiling(ceiling_exe, base, size)
    try:
        src = os.path.join(shm, "src")
        with open(src, "wb") as f:  # distinct random bytes: nothing to dedup
            for _ in range(size >> 20):
                f.write(os.urandom(1 << 20))
        c.mount()
        p.mount()
        w_c, w_p, r_c, r_p, rr_c, rr_p = [], [], [], [], [], []
        for i in range(runs):
            if i:
                distinct(src, size)  # new data each run: a second copy would only dedup
            # Each write starts from the same state of memory, and the two
            # take turns going first: on this VM p2pfs writing right after
            # the sink's 2 GiB ran at 60 % of its speed after a cache drop.
            order = [(c, w_c), (p, w_p)]
            for fsys, out in order if i % 2 == 0 else order[::-1]:
                drop_caches()
                out.append(dd(src, os.path.join(fsys.mnt, f"w{i}"), size))
            drop_caches()
            r_c.append(dd(os.path.join(c.mnt, "data"), "/dev/null", size))
            drop_caches()
            r_p.append(dd(os.path.join(p.mnt, f"w{i}"), "/dev/null", size))
            # Warm: each file read once more first (the ceiling's pages went
            # with the caches dropped for p2pfs's cold read).
            for fsys, name, out in ((c, "data", rr_c), (p, f"w{i}", rr_p)):
                dd(os.path.join(fsys.mnt, name), "/dev/null", size)
                out.append(dd(os.path.join(fsys.mnt, name), "/dev/null", size))
            os.unlink(os.path.join(p.mnt, f"w{i}"))
        # The disk under the store bounds a cold read: measure it in the same run.
        disk_file = os.path.join(base, "disk-baseline")
        sh("dd", f"if={src}", f"of={disk_file}", "bs=4M", "conv=fsync", "status=none")
        disk = []
        for i in range(runs):
            drop_caches()
            disk.append(dd(disk_file, "/dev/null", size, bs=4 << 20, extra=("iflag=direct",)))
        os.unlink(disk_file)
        res["disk_read"] = median(disk)
        res["runs"] = {"write": [w_c, w_p], "cold_read": [r_c, r_p], "warm_read": [rr_c, rr_p],
                       "disk_read": disk}
        res["write"] = (median(w_c), median(w_p))
        res["cold_read"] = (median(r_c), median(r_p))
        res["warm_read"] = (median(rr_c), median(rr_p))
        # Small files: p2pfs beside tmpfs.
        tmpfs = os.path.join(shm, "small")
        os.mkdir(tmpfs)
        os.mkdir(os.path.join(p.mnt, "small"))
        t = json.loads(sh(smallfiles, tmpfs, str(nfiles), "4096").stdout)
        q = json.loads(sh(smallfiles, os.path.join(p.mnt, "small"), str(nfiles), "4096").stdout)
        res["create"] = (t["create_per_s"], q["create_per_s"])
        res["stat"] = (t["stat_per_s"], q["stat_per_s"])
        st = p.status()
        entries = st["files"] + st["dirs"] + st["symlinks"]
        res["ns_bytes_per_entry"] = st["namespace_mem"] / max(entries, 1)
        # Memory after storing a lot of distinct data.
        left = mem_bytes
        k = 0
        while left > 0:
            n = min(left, size)
            dd(src, os.path.join(p.mnt, f"m{k}"), n)
            distinct(src, n)  # the next copy shares no chunk with this one
            left -= n
            k += 1
        st = p.status()
        res["rss_mib"] = p.rss_kib() / 1024
        res["stored_gib"] = st["chunk_bytes"] / (1 << 30)
        res["index_bytes_per_chunk"] = st["index_mem"] / max(st["chunks"], 1)
        res["chunks"] = st["chunks"]
    finally:
        c.umount()
        p.umount()
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(shm, ignore_errors=True)

    def row(name, base_name, b, v, unit, target, ok):
        ratio = f"{v / b:.2f}" if b else "-"
        print(f"| {name:<34} | {base_name:<16} {b:>10.0f} | {v:>10.0f} {unit:<7} | {ratio:>5} | {target:<22} | {'yes' if ok else 'NO':<3} |")

    mode = "quick smoke run" if a.quick else f"median of {runs}"
    print(f"\np2pfs local benchmark ({mode}; file {size >> 20} MiB, {nfiles} small files)\n")
    print(f"| {'measure':<34} | {'baseline':<27} | {'p2pfs':<18} | ratio | {'target':<22} | ok  |")
    print("|" + "-" * 36 + "|" + "-" * 29 + "|" + "-" * 20 + "|-------|" + "-" * 24 + "|-----|")
    b, v = res["cold_read"]
    row("cold sequential read", "FUSE ceiling", b, v, "MB/s", ">= 0.70 of ceiling", v >= 0.7 * b)
    row("  (the same, beside the disk)", "disk O_DIRECT", res["disk_read"], v, "MB/s",
        "reported", True)
    b, v = res["write"]
    row("sequential write (dd bs=1M+close)", "FUSE sink", b, v, "MB/s", ">= 500 MB/s, >= 0.50", v >= 500 and v >= 0.5 * b)
    b, v = res["warm_read"]
    row("warm re-read", "FUSE ceiling", b, v, "MB/s", ">= 0.90 of ceiling", v >= 0.9 * b)
    b, v = res["create"]
    row(f"create+write 4 KiB+close", "tmpfs", b, v, "files/s", "reported", True)
    b, v = res["stat"]
    row("stat", "tmpfs", b, v, "files/s", "reported", True)
    if "runs" in res:
        print("\nall runs (baseline / p2pfs, MB/s): " + "; ".join(
            f"{k} " + " ".join(f"{b:.0f}/{v:.0f}" for b, v in zip(*res["runs"][k]))
            for k in ("write", "cold_read", "warm_read")))
    print(f"\nmemory: daemon RSS {res['rss_mib']:.0f} MiB after storing {res['stored_gib']:.1f} GiB "
          f"({res['chunks']} chunks); index {res['index_bytes_per_chunk']:.1f} B/chunk (target <= 64); "
          f"namespace {res['ns_bytes_per_entry']:.0f} B/entry (target <= 256)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
