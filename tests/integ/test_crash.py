# SPDX-License-Identifier: MIT
"""Crash safety and corruption detection on a real mount."""
import errno
import glob
import hashlib
import os
import subprocess
import sys
import time

from p2pfs_harness import p2pfs, sha256_file, wait_until

WRITER = r"""
import os, sys, hashlib
mnt, log = sys.argv[1], sys.argv[2]
i = 0
with open(log, "a") as lg:
    while True:
        data = os.urandom(1000 + (i * 7919) % 300000)
        p = os.path.join(mnt, f"f{i:06d}")
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        # Only now is the file promised to survive: log it outside the mount.
        lg.write(f"{p} {hashlib.sha256(data).hexdigest()}\n")
        lg.flush()
        os.fsync(lg.fileno())
        i += 1
"""


def test_kill9_during_fsync_loop_loses_nothing(node, tmp_path):
    log = str(tmp_path / "synced.log")
    w = subprocess.Popen([sys.executable, "-c", WRITER, node.mnt, log],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: os.path.exists(log) and sum(1 for _ in open(log)) >= 200, 60,
                   "200 fsync'ed files")
        node.kill9()
    finally:
        w.kill()
        w.wait(timeout=30)
    entries = [ln.split() for ln in open(log) if ln.strip()]
    assert len(entries) >= 200
    node.mount()  # finds and removes the dead mount, then mounts again
    missing = [p for p, h in entries if not os.path.exists(p)]
    assert not missing, f"{len(missing)} fsync'ed files lost, e.g. {missing[:3]}"
    bad = [p for p, h in entries if sha256_file(p) != h]
    assert not bad, f"{len(bad)} fsync'ed files differ, e.g. {bad[:3]}"
    r = p2pfs("scrub", node.mnt, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 damaged" in r.stdout


def flip_byte_of(state, needle):
    """Flip one byte of @needle where it is stored in the pack files."""
    for pack in sorted(glob.glob(os.path.join(state, "store", "**", "*"), recursive=True)):
        if not os.path.isfile(pack) or os.path.getsize(pack) < len(needle):
            continue
        with open(pack, "r+b") as f:
            data = f.read()
            at = data.find(needle)
            if at >= 0:
                f.seek(at + len(needle) // 2)
                f.write(bytes([data[at + len(needle) // 2] ^ 0x40]))
                return pack
    raise AssertionError("content not found in any pack file")


def test_flipped_byte_is_detected_on_read_and_by_scrub(node):
    data = os.urandom(2 << 20)
    with open(node.path("victim"), "wb") as f:
        f.write(data)
    with open(node.path("bystander"), "wb") as f:
        f.write(b"fine" * 10000)
    node.umount()
    flip_byte_of(node.state, data[1 << 20:(1 << 20) + 64])
    node.mount()
    try:
        with open(node.path("victim"), "rb") as f:
            f.read()
        raise AssertionError("reading a corrupted chunk succeeded")
    except OSError as e:
        assert e.errno == errno.EIO
    assert open(node.path("bystander"), "rb").read() == b"fine" * 10000
    wait_until(lambda: "failed verification" in node.log() or "damaged" in node.log(), 10,
               "a log line about the corrupt chunk")
    r = p2pfs("scrub", node.mnt, check=False)
    # The read already dropped the bad record, so scrub may find nothing more;
    # scrub of a fresh corruption is checked below.
    assert r.returncode in (0, 5)
    with open(node.path("second"), "wb") as f:
        f.write(data[::-1])
    node.umount()
    flip_byte_of(node.state, data[::-1][100_000:100_064])
    node.mount()
    r = p2pfs("scrub", node.mnt, check=False)
    assert r.returncode == 5, r.stdout + r.stderr
    assert "damaged" in r.stdout


def test_offline_scrub(node):
    with open(node.path("f"), "wb") as f:
        f.write(os.urandom(1 << 20))
    node.umount()
    r = p2pfs("scrub", "--state", node.state, check=False)
    assert r.returncode == 0, r.stderr
    node.mount()
