# SPDX-License-Identifier: MIT
"""Shares and their links: init prints a write and a read link; a write link
mounts read-write, a read link read-only (EROFS on every write); link prints
a mount's links; a mistyped link is refused, never taken for another share."""
import errno
import os

import pytest
from p2pfs_harness import p2pfs


def links_of(out):
    found = {}
    for line in out.splitlines():
        kind, _, link = line.partition(":")
        found[kind.strip()] = link.strip()
    return found


def test_init_link_and_read_only_mount(make_node):
    a = make_node("a", mount=False)
    links = links_of(p2pfs("init", "--state", a.state).stdout)
    w, r = links["write link"], links["read link"]
    assert w.startswith("p2pfs://w/") and r.startswith("p2pfs://r/")
    a.mount("--share", w)
    with open(a.path("f"), "w") as f:
        f.write("written")
    assert links_of(p2pfs("link", a.mnt).stdout) == {"write link": w, "read link": r}
    assert links_of(p2pfs("link", "--read-only", a.mnt).stdout) == {"read link": r}

    b = make_node("b", mount=False)
    b.mount("--share", r)
    assert b.status()["writable"] is False
    for attempt in (lambda: open(b.path("x"), "w"), lambda: os.mkdir(b.path("d")),
                    lambda: os.symlink("t", b.path("l"))):
        with pytest.raises(OSError) as e:
            attempt()
        assert e.value.errno == errno.EROFS
    assert links_of(p2pfs("link", b.mnt).stdout) == {"read link": r}


def test_mistyped_and_foreign_links_refused(make_node):
    a = make_node("a", mount=False)
    r = links_of(p2pfs("init", "--state", a.state).stdout)["read link"]
    bad = r[:20] + ("a" if r[20] != "a" else "b") + r[21:]
    out = p2pfs("mount", a.mnt, "--state", a.state, "--share", bad, check=False)
    assert out.returncode == 1 and "typo" in out.stderr
    out = p2pfs("mount", a.mnt, "--state", a.state, "--share", "https://example.org/x",
                check=False)
    assert out.returncode == 1 and "not a p2pfs share link" in out.stderr
