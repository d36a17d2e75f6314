# SPDX-License-Identifier: MIT
"""File contents from 0 bytes to 2 GiB survive writing, reading, unmounting
and mounting again, byte for byte (sha256)."""
import hashlib
import os

import pytest
from p2pfs_harness import random_file, sha256_file, tree_digest

SIZES = [0, 1, 4095, 4096, 4097, 65536, (256 << 10) - 1, 1 << 20, (1 << 20) + 1,
         (4 << 20) + 12345, 33 << 20]


def test_sizes_roundtrip_and_remount(node, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    want = {}
    for s in SIZES:
        want[s] = random_file(str(src / f"{s}"), s)
        with open(src / f"{s}", "rb") as i, open(node.path(f"f{s}"), "wb") as o:
            while True:
                b = i.read(1 << 20)
                if not b:
                    break
                o.write(b)
    for s in SIZES:
        assert os.path.getsize(node.path(f"f{s}")) == s
        assert sha256_file(node.path(f"f{s}")) == want[s], f"size {s} differs"
    before = tree_digest(node.mnt)
    node.remount()
    assert tree_digest(node.mnt) == before
    for s in SIZES:
        assert sha256_file(node.path(f"f{s}")) == want[s], f"size {s} differs after remount"


def test_two_gib_file(node, tmp_path):
    size = 2 << 30
    h = hashlib.sha256()
    with open(node.path("big"), "wb") as f:
        left = size
        block = os.urandom(8 << 20)
        n = 0
        while left:
            # Distinct bytes in every block (no accidental dedup), cheaply.
            b = n.to_bytes(8, "little") + block[8:]
            n += 1
            f.write(b)
            h.update(b)
            left -= len(b)
    want = h.hexdigest()
    assert os.path.getsize(node.path("big")) == size
    node.remount()  # cold: nothing in the page cache
    assert sha256_file(node.path("big")) == want
    st = node.status()
    assert st["files"] == 1 and st["bytes"] == size
    # Every 8 MiB block starts with a distinct chunk; the rest of each block
    # repeats, which content-defined chunking stores once.
    assert size // (8 << 20) <= st["chunks"] < size // (1 << 20)
    assert st["dedup_ratio"] > 1.5


def test_status_reports(node):
    with open(node.path("s"), "wb") as f:
        f.write(os.urandom(3 << 20))
    os.mkdir(node.path("d"))
    st = node.status()
    for k in ("mountpoint", "node_id", "share_id", "files", "bytes", "chunks", "dedup_ratio",
              "cache_bytes", "cache_quota", "uptime_s"):
        assert k in st, k
    assert st["mountpoint"] == os.path.realpath(node.mnt)
    assert st["files"] == 1 and st["dirs"] >= 1 and st["bytes"] == 3 << 20
    assert len(st["node_id"]) == 64 and len(st["share_id"]) == 64
