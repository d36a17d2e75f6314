# SPDX-License-Identifier: MIT
"""Every filesystem operation on a real p2pfs mount, with POSIX results."""
import ctypes
import errno
import mmap
import os
import stat
import time

import pytest
from p2pfs_harness import errno_of, sha256_file, wait_until

libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2


def renameat2(a, b, flags):
    if libc.renameat2(AT_FDCWD, a.encode(), AT_FDCWD, b.encode(), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def test_create_write_read_small_and_empty(node):
    p = node.path("a.txt")
    with open(p, "w") as f:
        f.write("hello p2pfs\n")
    with open(p) as f:
        assert f.read() == "hello p2pfs\n"
    open(node.path("empty"), "w").close()
    assert os.path.getsize(node.path("empty")) == 0
    with open(node.path("empty"), "rb") as f:
        assert f.read() == b""


def test_getattr_and_setattr(node):
    p = node.path("f")
    with open(p, "wb") as f:
        f.write(b"x" * 1000)
    os.chmod(p, 0o640)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o640
    os.chown(p, 1234, 5678)
    st = os.stat(p)
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    os.utime(p, ns=(1_000_000_000_123, 1_500_000_000_000_000_456))
    assert os.stat(p).st_mtime_ns == 1_500_000_000_000_000_456
    assert stat.S_ISREG(os.stat(p).st_mode)
    assert os.stat(p).st_size == 1000


def test_truncate_shrink_extend(node):
    p = node.path("t")
    data = os.urandom(3 << 20)
    with open(p, "wb") as f:
        f.write(data)
    os.truncate(p, 1_000_001)
    assert os.path.getsize(p) == 1_000_001
    with open(p, "rb") as f:
        assert f.read() == data[:1_000_001]
    os.truncate(p, 2_000_000)
    with open(p, "rb") as f:
        got = f.read()
    assert got == data[:1_000_001] + b"\0" * 999_999
    with open(p, "r+b") as f:
        f.truncate(10)
        f.seek(20)
        f.write(b"end")
    with open(p, "rb") as f:
        assert f.read() == data[:10] + b"\0" * 10 + b"end"


def test_overwrite_middle_and_append(node):
    p = node.path("o")
    data = bytearray(os.urandom(5 << 20))
    with open(p, "wb") as f:
        f.write(data)
    with open(p, "r+b") as f:
        f.seek(2_500_000)
        f.write(b"MIDDLE" * 1000)
    data[2_500_000:2_506_000] = b"MIDDLE" * 1000
    with open(p, "ab") as f:
        f.write(b"tail")
    data += b"tail"
    with open(p, "rb") as f:
        assert f.read() == bytes(data)


def test_mkdir_rmdir_readdir(node):
    d = node.path("dir")
    os.mkdir(d, 0o750)
    assert stat.S_ISDIR(os.stat(d).st_mode)
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o750
    names = {f"f{i:05d}" for i in range(3000)}
    for n in names:
        open(os.path.join(d, n), "w").close()
    os.mkdir(os.path.join(d, "sub"))
    assert set(os.listdir(d)) == names | {"sub"}
    assert os.stat(d).st_nlink == 3  # ".", its entry in the parent, "sub/.."
    assert errno_of(os.rmdir, d) == errno.ENOTEMPTY
    assert errno_of(os.mkdir, d) == errno.EEXIST
    for n in names:
        os.unlink(os.path.join(d, n))
    os.rmdir(os.path.join(d, "sub"))
    os.rmdir(d)
    assert not os.path.exists(d)


def test_readdir_while_deleting(node):
    d = node.path("rd")
    os.mkdir(d)
    for i in range(2000):
        open(os.path.join(d, str(i)), "w").close()
    seen = set()
    with os.scandir(d) as it:
        for k, e in enumerate(it):
            seen.add(e.name)
            if k == 100:  # delete entries not yet listed: the rest are listed once
                for j in range(1500, 2000):
                    os.unlink(os.path.join(d, str(j)))
    assert {str(i) for i in range(1500)} <= seen
    assert len(seen) == len(set(seen))


def test_unlink_open_file_still_readable(node):
    p = node.path("u")
    with open(p, "wb") as f:
        f.write(b"still here" * 1000)
    with open(p, "rb") as f:
        os.unlink(p)
        assert not os.path.exists(p)
        assert f.read() == b"still here" * 1000


def test_rename_variants(node):
    a, b, c = node.path("a"), node.path("b"), node.path("c")
    for p, v in ((a, b"A"), (b, b"B")):
        with open(p, "wb") as f:
            f.write(v)
    os.rename(a, c)
    assert not os.path.exists(a) and open(c, "rb").read() == b"A"
    os.rename(c, b)  # replaces b
    assert open(b, "rb").read() == b"A"
    with open(a, "wb") as f:
        f.write(b"AA")
    assert errno_of(renameat2, a, b, RENAME_NOREPLACE) == errno.EEXIST
    renameat2(a, b, RENAME_EXCHANGE)
    assert open(a, "rb").read() == b"A" and open(b, "rb").read() == b"AA"
    assert errno_of(renameat2, a, node.path("none"), RENAME_EXCHANGE) == errno.ENOENT
    renameat2(a, node.path("new"), RENAME_NOREPLACE)
    assert open(node.path("new"), "rb").read() == b"A"
    # Directories: move a subtree, replace an empty dir, refuse non-empty and into itself.
    os.makedirs(node.path("d1/x/y"))
    with open(node.path("d1/x/y/f"), "w") as f:
        f.write("deep")
    os.mkdir(node.path("d2"))
    os.rename(node.path("d1"), node.path("d2"))
    assert open(node.path("d2/x/y/f")).read() == "deep"
    os.mkdir(node.path("d3"))
    with open(node.path("d3/keep"), "w"):
        pass
    assert errno_of(os.rename, node.path("d2"), node.path("d3")) == errno.ENOTEMPTY
    assert errno_of(os.rename, node.path("d2"), node.path("d2/x/inside")) == errno.EINVAL
    assert errno_of(os.rename, node.path("d2"), node.path("new")) == errno.ENOTDIR
    assert errno_of(os.rename, node.path("new"), node.path("d3")) == errno.EISDIR


def test_symlink_readlink(node):
    os.symlink("target/of/link", node.path("l"))
    assert os.readlink(node.path("l")) == "target/of/link"
    assert stat.S_ISLNK(os.lstat(node.path("l")).st_mode)
    with open(node.path("real"), "w") as f:
        f.write("via link")
    os.symlink("real", node.path("l2"))
    assert open(node.path("l2")).read() == "via link"


def test_hard_links_are_refused(node):
    open(node.path("h"), "w").close()
    assert errno_of(os.link, node.path("h"), node.path("h2")) == errno.EPERM


def test_special_files_are_refused(node):
    assert errno_of(os.mkfifo, node.path("fifo")) == errno.EPERM


def test_xattrs(node):
    p = node.path("x")
    open(p, "w").close()
    os.setxattr(p, "user.color", b"blue")
    os.setxattr(p, "user.empty", b"")
    assert os.getxattr(p, "user.color") == b"blue"
    assert os.getxattr(p, "user.empty") == b""
    assert set(os.listxattr(p)) == {"user.color", "user.empty"}
    assert errno_of(os.setxattr, p, "user.color", b"x", os.XATTR_CREATE) == errno.EEXIST
    assert errno_of(os.setxattr, p, "user.nope", b"x", os.XATTR_REPLACE) == errno.ENODATA
    os.setxattr(p, "user.color", b"red", os.XATTR_REPLACE)
    assert os.getxattr(p, "user.color") == b"red"
    os.removexattr(p, "user.color")
    assert errno_of(os.getxattr, p, "user.color") == errno.ENODATA
    big = os.urandom(60000)
    os.setxattr(p, "user.big", big)
    assert os.getxattr(p, "user.big") == big
    assert errno_of(os.setxattr, p, "user.p2pfs.cid", b"x") == errno.EPERM
    # The content id is readable, never listed.
    with open(p, "wb") as f:
        f.write(b"content")
    cid = os.getxattr(p, "user.p2pfs.cid").decode()
    assert cid.startswith("chunk:") and len(cid) == 6 + 64
    assert "user.p2pfs.cid" not in os.listxattr(p)


def test_statfs(node):
    st = os.statvfs(node.mnt)
    assert st.f_bsize > 0 and st.f_blocks > 0 and st.f_namemax == 255


def test_fallocate(node):
    p = node.path("fa")
    with open(p, "wb") as f:
        f.write(b"a" * 100)
        os.posix_fallocate(f.fileno(), 0, 1 << 20)
    assert os.path.getsize(p) == 1 << 20
    with open(p, "rb") as f:
        assert f.read() == b"a" * 100 + b"\0" * ((1 << 20) - 100)


def test_shared_writable_mmap(node):
    p = node.path("m")
    with open(p, "wb") as f:
        f.write(b"\0" * (1 << 20))
    with open(p, "r+b") as f:
        m = mmap.mmap(f.fileno(), 1 << 20)
        m[4096:4100] = b"MMAP"
        m[-3:] = b"end"
        m.flush()
        m.close()
    with open(p, "rb") as f:
        d = f.read()
    assert d[4096:4100] == b"MMAP" and d[-3:] == b"end"


def test_fsync_and_fsyncdir(node):
    p = node.path("s")
    fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"durable")
    os.fsync(fd)
    os.fdatasync(fd)
    os.close(fd)
    dfd = os.open(node.mnt, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(dfd)
    os.close(dfd)
    assert open(p, "rb").read() == b"durable"


def test_o_trunc_and_o_append(node):
    p = node.path("ot")
    with open(p, "wb") as f:
        f.write(b"long old content")
    with open(p, "wb") as f:
        f.write(b"new")
    assert open(p, "rb").read() == b"new"
    fd = os.open(p, os.O_WRONLY | os.O_APPEND)
    os.write(fd, b"+more")
    os.close(fd)
    assert open(p, "rb").read() == b"new+more"


def test_sparse_write_beyond_end(node):
    p = node.path("sp")
    with open(p, "wb") as f:
        f.seek(5 << 20)
        f.write(b"x")
    assert os.path.getsize(p) == (5 << 20) + 1
    with open(p, "rb") as f:
        d = f.read()
    assert d[:-1] == b"\0" * (5 << 20) and d[-1:] == b"x"


def test_many_small_files_dedup(node):
    blob = os.urandom(300_000)
    for i in range(20):
        with open(node.path(f"dup{i}"), "wb") as f:
            f.write(blob)
    os.sync()
    ids = {os.getxattr(node.path(f"dup{i}"), "user.p2pfs.cid") for i in range(20)}
    assert len(ids) == 1  # identical content, identical id, stored once
