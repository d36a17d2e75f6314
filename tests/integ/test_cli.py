# SPDX-License-Identifier: MIT
"""The command line: help, version, and clear errors with their causes."""
import json
import os
import shutil
import subprocess
import tempfile

import pytest
from p2pfs_harness import Node, P2PFS, is_mounted, p2pfs, process_gone, run

COMMANDS = ["mount", "umount", "status", "sync", "scrub", "node", "stop", "dht", "init", "link",
            "pin", "unpin", "peers"]


def test_version_and_help():
    assert p2pfs("--version").stdout.startswith("p2pfs ")
    top = p2pfs("--help").stdout
    for c in COMMANDS:
        assert c in top
        h = p2pfs(c, "--help")
        assert h.returncode == 0 and "usage: p2pfs " + c in h.stdout
    assert p2pfs("bogus", check=False).returncode == 2
    assert p2pfs("mount", check=False).returncode == 2


def test_mountpoint_errors(make_node, tmp_path):
    n = make_node(mount=False)
    r = p2pfs("mount", str(tmp_path / "nope"), "--state", n.state, check=False)
    assert r.returncode == 1 and "does not exist" in r.stderr and "mkdir" in r.stderr
    f = tmp_path / "file"
    f.write_text("x")
    r = p2pfs("mount", str(f), "--state", n.state, check=False)
    assert r.returncode == 1 and "not a directory" in r.stderr


def test_already_mounted_and_locked_state(make_node, tmp_path):
    a = make_node("a")
    r = p2pfs("mount", a.mnt, "--state", str(tmp_path / "other"), check=False)
    assert r.returncode == 4 and "already mounted" in r.stderr
    other = tmp_path / "m2"
    other.mkdir()
    r = p2pfs("mount", str(other), "--state", a.state, check=False)
    assert r.returncode == 4 and "in use by another p2pfs daemon" in r.stderr
    assert "pid" in r.stderr


def test_no_dev_fuse(make_node, tmp_path):
    n = make_node(mount=False)
    r = run(["unshare", "-m", "sh", "-c",
             f"mount -t tmpfs none /dev && exec {P2PFS} mount {n.mnt} --state {n.state}"],
            check=False)
    assert r.returncode == 1 and "/dev/fuse is missing" in r.stderr


def test_no_permission_on_dev_fuse(tmp_path):
    # A private /dev whose fuse node only root may open, and an unprivileged user.
    base = tempfile.mkdtemp(prefix="p2pfs-perm-", dir="/tmp")
    try:
        os.chmod(base, 0o777)
        mnt = os.path.join(base, "mnt")
        os.mkdir(mnt)
        os.chmod(mnt, 0o777)
        r = run(["unshare", "-m", "sh", "-c",
                 "mount -t tmpfs none /dev && mknod -m 600 /dev/fuse c 10 229 && "
                 f"exec setpriv --reuid=65534 --regid=65534 --clear-groups {P2PFS} mount {mnt} "
                 f"--state {base}/state"],
                check=False, env={"PATH": os.environ["PATH"], "HOME": "/nonexistent"})
        assert r.returncode == 1, r.stderr
        assert "no permission to open /dev/fuse" in r.stderr
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_disk_full_state_dir(make_node, tmp_path):
    n = make_node(mount=False)
    full = tmp_path / "full"
    full.mkdir()
    run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full)])
    try:
        run(["dd", "if=/dev/zero", f"of={full / 'filler'}", "bs=4k"], check=False)
        r = p2pfs("mount", n.mnt, "--state", str(full / "state"), check=False)
        assert r.returncode == 1 and "no space left" in r.stderr, r.stderr
        assert not is_mounted(n.mnt)
    finally:
        run(["umount", "-l", str(full)], check=False)


def test_writes_report_enospc_when_disk_is_full(make_node, tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(small)])
    n = Node(base=str(small), name="s")
    try:
        n.mount()
        with pytest.raises(OSError) as e:
            with open(n.path("huge"), "wb") as f:
                for _ in range(100):
                    f.write(os.urandom(1 << 20))
        assert e.value.errno == 28  # ENOSPC
        with open(n.path("ok"), "wb") as f:  # a small write still works after freeing
            pass
    finally:
        n.cleanup()
        run(["umount", "-l", str(small)], check=False)


def test_status_sync_and_umount(node):
    with open(node.path("f"), "w") as f:
        f.write("x")
    assert p2pfs("sync", node.mnt).returncode == 0
    human = p2pfs("status", node.mnt).stdout
    assert "node id:" in human and "share id:" in human and "dedup ratio" in human
    js = json.loads(p2pfs("status", node.mnt, "--json").stdout)
    assert js["files"] == 1
    pid = node.pid()
    node.umount()
    assert not is_mounted(node.mnt)
    assert process_gone(pid), "umount returned before the daemon exited"
    r = p2pfs("status", "--state", node.state, check=False)
    assert r.returncode == 3 and "no p2pfs daemon" in r.stderr


def test_umount_busy_then_lazy(node):
    f = open(node.path("held"), "w")
    try:
        r = p2pfs("umount", node.mnt, check=False)
        assert r.returncode == 4 and "busy" in r.stderr
        assert is_mounted(node.mnt)
    finally:
        f.close()
    node.umount()


def test_sigterm_unmounts_cleanly(node):
    import signal
    import time
    with open(node.path("f"), "w") as f:
        f.write("kept")
    pid = node.pid()
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while not process_gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not is_mounted(node.mnt)
    node.mounted = False
    node.mount()
    assert open(node.path("f")).read() == "kept"


def test_stale_mount_after_kill9_is_cleaned_up(node):
    node.kill9()
    r = p2pfs("status", node.mnt, check=False)
    assert r.returncode == 3 and "gone" in r.stderr
    node.mount()
    assert is_mounted(node.mnt)
