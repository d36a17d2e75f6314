# SPDX-License-Identifier: MIT
"""Helpers for integration tests: start real p2pfs daemons on real FUSE
mounts, wait for them against deadlines, and always clean up.

Every wait here is bounded; every node is unmounted (or killed and
detached) in a finalizer, even when a test fails.
"""
import errno
import hashlib
import json
import socket
import os
import shutil
import signal
import subprocess
import tempfile
import time

P2PFS = os.environ.get("P2PFS", os.path.join(os.path.dirname(__file__), "../../build/daemon/p2pfs"))


def run(args, check=True, timeout=120, **kw):
    """Run a command, return CompletedProcess with text output."""
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{args} exited {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}")
    return p


def p2pfs(*args, check=True, timeout=120, env=None):
    return run([P2PFS, *args], check=check, timeout=timeout, env=env)


def wait_until(pred, timeout, what, interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def is_mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            mp = parts[4].encode().decode("unicode_escape")
            if mp == path:
                return True
    return False


def sha256_file(path, bufsize=4 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(bufsize)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def tree_digest(root):
    """Map relative path -> (kind, mode, size, sha256 or link target, xattrs)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            try:
                xa = {k: os.getxattr(p, k, follow_symlinks=False) for k in os.listxattr(p, follow_symlinks=False)}
            except OSError:
                xa = {}
            if os.path.islink(p):
                out[rel] = ("l", os.readlink(p), xa)
            elif os.path.isdir(p):
                out[rel] = ("d", st.st_mode & 0o7777, xa)
            else:
                out[rel] = ("f", st.st_mode & 0o7777, st.st_size, sha256_file(p), int(st.st_mtime), xa)
    return out


def random_file(path, size, block=8 << 20):
    """Write @size random bytes to @path; returns their sha256."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            b = os.urandom(min(left, block))
            h.update(b)
            f.write(b)
            left -= len(b)
    return h.hexdigest()


class Node:
    """One p2pfs daemon with its state dir and mount point, in a temp dir."""

    def __init__(self, base=None, name="n", extra=(), prefix=(), env=None):
        self.tmp = tempfile.mkdtemp(prefix=f"p2pfs-{name}-", dir=base)
        self.state = os.path.join(self.tmp, "state")
        self.mnt = os.path.join(self.tmp, "mnt")
        os.mkdir(self.mnt)
        self.extra = list(extra)
        self.prefix = list(prefix)  # e.g. nsenter into a network namespace
        self.env = env
        self.mounted = False

    def mount(self, *args, check=True):
        p = run([*self.prefix, P2PFS, "mount", self.mnt, "--state", self.state, *self.extra, *args],
                check=check, timeout=120, env=self.env)
        if p.returncode == 0:
            self.mounted = True
            assert is_mounted(self.mnt), "p2pfs mount returned 0 but nothing is mounted"
        return p

    def umount(self, check=True):
        p = p2pfs("umount", self.mnt, check=check, timeout=120)
        if p.returncode == 0:
            self.mounted = False
        return p

    def remount(self):
        self.umount()
        self.mount()

    def pid(self):
        try:
            with open(os.path.join(self.state, "lock")) as f:
                s = f.read().split()
            return int(s[1].rstrip(",")) if len(s) > 1 and s[0] == "pid" else None
        except (OSError, ValueError):
            return None

    def kill9(self):
        pid = self.pid()
        assert pid, "no daemon pid in the lock file"
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not os.path.exists(f"/proc/{pid}") or _zombie(pid), 10, "the daemon to die")
        self.mounted = False

    def status(self):
        return json.loads(p2pfs("status", "--state", self.state, "--json").stdout)

    def status_nofork(self):
        """status --json over the control socket from this process: running
        the CLI forks, and a forked child closing a copy of an open file
        makes the kernel send FLUSH, which a test may not want."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(30)
            s.connect(os.path.join(self.state, "ctl.sock"))
            s.sendall(b"status\tjson\n")
            data = b""
            while not data.endswith(b"\n") or b"\n= " not in b"\n" + data:
                b = s.recv(65536)
                if not b:
                    break
                data += b
        lines = data.decode().splitlines()
        assert lines and lines[-1].startswith("= 0"), f"status failed: {lines[-1:]}"
        return json.loads("".join(l[2:] for l in lines if l.startswith(". ")))

    def log(self):
        try:
            with open(os.path.join(self.state, "p2pfs.log")) as f:
                return f.read()
        except OSError:
            return ""

    def path(self, *parts):
        return os.path.join(self.mnt, *parts)

    def cleanup(self):
        if is_mounted(self.mnt):
            p = p2pfs("umount", self.mnt, check=False, timeout=60)
            if p.returncode != 0:
                pid = self.pid()
                if pid:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                subprocess.run(["umount", "-l", self.mnt], capture_output=True)
        pid = self.pid()
        if pid and os.path.exists(f"/proc/{pid}") and not _zombie(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)


def _zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] == "Z"
    except OSError:
        return True


def can_fuse():
    return os.geteuid() == 0 and os.path.exists("/dev/fuse")


def errno_of(fn, *a, **kw):
    try:
        fn(*a, **kw)
    except OSError as e:
        return e.errno
    return 0


__all__ = ["Node", "run", "p2pfs", "wait_until", "sha256_file", "tree_digest", "random_file",
           "can_fuse", "errno_of", "is_mounted", "errno", "P2PFS"]


def process_gone(pid):
    """True once @pid has exited (a zombie waiting for its reaper counts as exited)."""
    return not os.path.exists(f"/proc/{pid}") or _zombie(pid)
