# SPDX-License-Identifier: MIT
"""Ordinary tools on the mount: cp -a, tar, rsync -a, git clone, sqlite3."""
import os
import sqlite3
import subprocess

from p2pfs_harness import run, tree_digest


def make_tree(root, nfiles=300):
    os.makedirs(root)
    for i in range(nfiles):
        d = os.path.join(root, f"d{i % 7}", f"e{i % 3}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"file{i}.bin"), "wb") as f:
            f.write(os.urandom(i * 997 % 200_000))
        os.utime(os.path.join(d, f"file{i}.bin"), (1_600_000_000 + i, 1_600_000_000 + i))
    os.symlink("d0/e0/file0.bin", os.path.join(root, "link"))
    os.chmod(os.path.join(root, "d1"), 0o700)
    with open(os.path.join(root, "big"), "wb") as f:
        f.write(os.urandom(9 << 20))
    os.setxattr(os.path.join(root, "big"), "user.origin", b"test")


def test_cp_a(node, tmp_path):
    src = str(tmp_path / "tree")
    make_tree(src)
    run(["cp", "-a", src, node.path("tree")])
    assert tree_digest(node.path("tree")) == tree_digest(src)


def test_tar_extract(node, tmp_path):
    src = str(tmp_path / "tree")
    make_tree(src)
    tar = str(tmp_path / "t.tar")
    run(["tar", "-C", str(tmp_path), "--xattrs", "-cf", tar, "tree"])
    os.mkdir(node.path("x"))
    run(["tar", "-C", node.path("x"), "--xattrs", "-xf", tar])
    assert tree_digest(node.path("x", "tree")) == tree_digest(src)


def test_rsync_a(node, tmp_path):
    src = str(tmp_path / "tree")
    make_tree(src)
    run(["rsync", "-aX", src + "/", node.path("r") + "/"])
    assert tree_digest(node.path("r")) == tree_digest(src)
    # A second run finds nothing to do and changes nothing.
    p = run(["rsync", "-aXi", src + "/", node.path("r") + "/"])
    assert p.stdout.strip() == ""


def test_git_clone(node, tmp_path):
    repo = str(tmp_path / "repo")
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.org",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.org")
    run(["git", "init", "-q", repo])
    for i in range(30):
        with open(os.path.join(repo, f"f{i % 10}.txt"), "a") as f:
            f.write(f"line {i}\n" * 100)
        run(["git", "-C", repo, "add", "-A"], env=env)
        run(["git", "-C", repo, "commit", "-qm", f"commit {i}"], env=env)
    run(["git", "clone", "-q", repo, node.path("clone")], env=env)
    run(["git", "-C", node.path("clone"), "fsck", "--full"], env=env)
    log = run(["git", "-C", node.path("clone"), "log", "--oneline"], env=env).stdout
    assert len(log.strip().splitlines()) == 30
    # Work in the clone: commit, gc (rewrites packs with renames and fsyncs).
    with open(node.path("clone", "new.txt"), "w") as f:
        f.write("new\n")
    run(["git", "-C", node.path("clone"), "add", "new.txt"], env=env)
    run(["git", "-C", node.path("clone"), "commit", "-qm", "on p2pfs"], env=env)
    run(["git", "-C", node.path("clone"), "gc", "-q"], env=env)
    run(["git", "-C", node.path("clone"), "fsck", "--full"], env=env)
    st = run(["git", "-C", node.path("clone"), "status", "--porcelain"], env=env).stdout
    assert st == ""


def test_sqlite_transactions(node):
    db = node.path("test.db")
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
    for i in range(300):
        with con:
            con.execute("INSERT INTO t (v) VALUES (?)", (os.urandom(2000),))
    with con:
        con.execute("DELETE FROM t WHERE id % 3 = 0")
    con.close()
    # The classic rollback journal too, through the sqlite3 command-line tool.
    db2 = node.path("journal.db")
    script = "CREATE TABLE k(a,b);" + "".join(
        f"BEGIN; INSERT INTO k VALUES({i}, randomblob(3000)); COMMIT;" for i in range(200))
    run(["sqlite3", db2], input=script)
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 200
    con.close()
    out = run(["sqlite3", db2, "PRAGMA integrity_check; SELECT count(*) FROM k;"]).stdout.split()
    assert out == ["ok", "200"]
    node.remount()
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 200
    con.close()
