# SPDX-License-Identifier: MIT
"""File contents from 0 bytes to 2 GiB survive writing, reading, unmounting
and mounting again, byte for byte (sha256)."""
import ctypes
import hashlib
import os
import threading
import time

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


def _written_back(fd):
    """Push the file's dirty pages to the daemon (FUSE WRITE requests) without
    a FUSE fsync, then drop them from the page cache: the next reads come
    from the daemon, while the bytes are still staged there."""
    libc = ctypes.CDLL(None, use_errno=True)
    # SYNC_FILE_RANGE_WAIT_BEFORE | WRITE | WAIT_AFTER
    assert libc.sync_file_range(fd, ctypes.c_int64(0), ctypes.c_int64(0), 7) == 0
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def test_staged_writes_read_overwritten_and_truncated(node):
    """Large appended writes stay in memory until they are chunked: reads of
    them, overwrites and punches inside them, and truncation into them must
    all see the newest bytes, before and after the flush and a remount."""
    path = node.path("staged")
    size = 12 << 20
    want = bytearray(os.urandom(size))
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        # Written back in two goes, so the daemon gets 1 MiB requests with a
        # short one (100 KiB) between them, as background writeback of a long
        # write gives: the short one and those after it join the staged bytes.
        split = (6 << 20) + (100 << 10)
        for lo, hi in (0, split), (split, size):
            for off in range(lo, hi, 1 << 20):
                os.pwrite(fd, want[off:min(off + (1 << 20), hi)], off)
            _written_back(fd)
        # Still in memory, waiting to be chunked (the write path under test).
        assert node.status_nofork()["staged_mem_bytes"] >= size
        assert os.pread(fd, size, 0) == want
        # An overwrite in the middle, then one across the end of the staged bytes.
        for off, n in ((5 << 20) + 123, 4096), (size - 1000, 300000):
            b = os.urandom(n)
            os.pwrite(fd, b, off)
            want[off:off + n] = b
            _written_back(fd)
            assert os.pread(fd, len(want), 0) == want
        # Appends again, then a punch inside them.
        tail = os.urandom(3 << 20)
        os.pwrite(fd, tail, len(want))
        want += tail
        _written_back(fd)
        punch = len(want) - (2 << 20) + 5
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.fallocate(fd, 0x02 | 0x01, ctypes.c_int64(punch),  # PUNCH_HOLE | KEEP_SIZE
                              ctypes.c_int64(70000)) == 0
        want[punch:punch + 70000] = bytes(70000)
        assert os.pread(fd, len(want), 0) == want
        # Appends, then a truncation into them and growth past it.
        more = os.urandom(4 << 20)
        os.pwrite(fd, more, len(want))
        want += more
        _written_back(fd)
        cut = len(want) - (3 << 20) - 777
        os.ftruncate(fd, cut)
        del want[cut:]
        os.ftruncate(fd, cut + 5000)
        want += bytes(5000)
        _written_back(fd)
        assert os.pread(fd, len(want) + 10, 0) == want
        os.fsync(fd)
    finally:
        os.close(fd)
    digest = hashlib.sha256(want).hexdigest()
    assert sha256_file(path) == digest
    node.remount()
    assert os.path.getsize(path) == len(want)
    assert sha256_file(path) == digest


def test_a_fast_writer_waits_for_chunking(node):
    """Writes are answered once staged, and chunking is slower than the
    kernel hands data over: the bytes waiting to be chunked must stay
    bounded (512 MiB, plus what is in flight) however much is written."""
    size = 1536 << 20
    peak = [0]
    done = threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], node.status_nofork()["unchunked_bytes"])
            time.sleep(0.02)

    t = threading.Thread(target=watch)
    t.start()
    block = bytearray(os.urandom(4 << 20))
    try:
        fd = os.open(node.path("fast"), os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            for i in range(size // len(block)):
                block[:8] = i.to_bytes(8, "little")  # distinct blocks, no copy
                os.write(fd, block)
        finally:
            os.close(fd)
    finally:
        done.set()
        t.join()
    assert 0 < peak[0] <= (512 + 128) << 20, f"peak backlog {peak[0] >> 20} MiB"
    with open(node.path("fast"), "rb", buffering=0) as f:
        for i in range(size // len(block)):
            block[:8] = i.to_bytes(8, "little")
            assert f.read(len(block)) == block, f"block {i} differs"
        assert f.read(1) == b""
