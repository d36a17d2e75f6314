# SPDX-License-Identifier: MIT
"""Several machines, one share: real daemons with real FUSE mounts, each in
its own network namespace on one bridge, finding each other with no
configuration (LAN discovery, then the share's provider records in the
DHT). Files written on one node are listed and read on the others; reads
survive a holder dying, damaged chunks from a peer, and fail with EIO (not a
hang) when nobody holds the data; concurrent writes in a partition keep both
versions; a node that was away catches up; read links cannot write and
nodes without the key see nothing."""
import errno
import hashlib
import os
import re
import shutil
import tempfile
import threading
import time

import pytest
from netns import Lan
from p2pfs_harness import (Node, p2pfs, random_file, sha256_file, tree_digest, wait_until)

FETCH_TIMEOUT = 5


def links(state):
    out = p2pfs("init", "--state", state).stdout
    w = re.search(r"write link:\s+(\S+)", out).group(1)
    r = re.search(r"read link:\s+(\S+)", out).group(1)
    return w, r


class Cluster:
    def __init__(self, n):
        self.lan = Lan(n)
        self.tmp = tempfile.mkdtemp(prefix="p2pfs-swarm-")
        self.write_link, self.read_link = links(os.path.join(self.tmp, "keys"))
        self.nodes = []
        for i in range(n):
            self.nodes.append(self.node(i))

    def node(self, i, link=None, env=None, name=None):
        nd = Node(base=self.tmp, name=name or f"n{i}",
                  extra=["--share", link or self.write_link, "--fetch-timeout", str(FETCH_TIMEOUT),
                         "--listen", f"{self.lan.addrs[i]}:7575"],
                  prefix=self.lan.prefix(i), env=env)
        return nd

    def members(self, nd):
        return nd.status()["swarm"]["members"]

    def wait_members(self, nodes, want, timeout=20):
        wait_until(lambda: all(self.members(nd) >= want for nd in nodes), timeout,
                   f"every node to have {want} members connected")

    def close(self):
        for nd in self.nodes:
            nd.cleanup()
        self.lan.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture
def cluster3():
    c = Cluster(3)
    try:
        for nd in c.nodes:
            nd.mount()
        c.wait_members(c.nodes, 2)
        yield c
    finally:
        c.close()


def has(nd, rel, size):
    """@rel is listed on @nd with its final size (a file being written shows
    its earlier versions to members until its last flush)."""
    try:
        return os.stat(nd.path(rel)).st_size == size
    except OSError:
        return False


def listing(root):
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, name), root))
    return out


def test_files_written_on_one_node_are_listed_and_read_on_the_others(cluster3):
    a, b, c = cluster3.nodes
    big = random_file(a.path("weights.bin"), 300 << 20)
    tree = {}
    os.makedirs(a.path("small"))
    for d in range(20):
        os.makedirs(a.path("small", f"d{d:02}"))
        for f in range(100):
            data = os.urandom(64 + (d * 100 + f) % 4000)
            rel = os.path.join("small", f"d{d:02}", f"f{f:03}")
            with open(a.path(rel), "wb") as fh:
                fh.write(data)
            tree[rel] = hashlib.sha256(data).hexdigest()
    t0 = time.monotonic()
    want = listing(a.mnt)
    for nd in (b, c):
        wait_until(lambda: listing(nd.mnt) == want and has(nd, "weights.bin", 300 << 20), 20,
                   "the tree to be listed on the other nodes", interval=0.2)
    listed_after = time.monotonic() - t0
    assert listed_after < 15, f"listing took {listed_after:.1f}s"
    for nd in (b, c):
        assert sha256_file(nd.path("weights.bin")) == big
        for rel, h in tree.items():
            with open(nd.path(rel), "rb") as fh:
                assert hashlib.sha256(fh.read()).hexdigest() == h, rel
    st = c.status()["swarm"]
    assert st["fetched_bytes"] >= 300 << 20
    assert st["bad_chunks"] == 0


def test_read_completes_from_another_holder_when_one_is_killed(cluster3):
    a, b, c = cluster3.nodes
    h = random_file(a.path("f"), 200 << 20)
    wait_until(lambda: has(b, "f", 200 << 20), 20, "the file on B", interval=0.1)
    assert sha256_file(b.path("f")) == h  # B now holds every chunk too
    wait_until(lambda: has(c, "f", 200 << 20), 20, "the file on C", interval=0.1)
    got = hashlib.sha256()
    killed = False
    with open(c.path("f"), "rb") as fh:
        n = 0
        while True:
            buf = fh.read(1 << 20)
            if not buf:
                break
            got.update(buf)
            n += len(buf)
            if not killed and n >= 20 << 20:
                a.kill9()
                killed = True
    assert killed
    assert got.hexdigest() == h


def test_damaged_chunks_from_a_peer_are_refused_and_the_peer_dropped():
    c3 = Cluster(3)
    try:
        a, b, c = c3.nodes
        b.env = dict(os.environ, P2PFS_TEST_CORRUPT_SERVE="1")
        for nd in c3.nodes:
            nd.mount()
        c3.wait_members(c3.nodes, 2)
        h = random_file(a.path("f"), 64 << 20)
        wait_until(lambda: has(b, "f", 64 << 20), 20, "the file on B", interval=0.1)
        # B reads it from A (A serves honest bytes), so B holds every chunk.
        assert sha256_file(b.path("f")) == h
        wait_until(lambda: has(c, "f", 64 << 20), 20, "the file on C", interval=0.1)
        assert sha256_file(c.path("f")) == h
        st = c.status()["swarm"]
        b_id = b.status()["node_id"]
        assert st["bad_chunks"] >= 1, "C never asked B (which damages what it serves)"
        assert b_id not in [p["id"] for p in st["peers"]], "B is still connected to C"
        assert "do not hash to its id" in c.log()
    finally:
        c3.close()


def test_read_fails_with_eio_when_the_only_holder_is_gone_and_umount_works(cluster3):
    a, b, c = cluster3.nodes
    random_file(a.path("only-on-a"), 32 << 20)
    wait_until(lambda: has(c, "only-on-a", 32 << 20), 20, "the file on C", interval=0.1)
    a.kill9()
    wait_until(lambda: cluster3.members(c) == 1, 20, "C to notice A left")
    t0 = time.monotonic()
    with pytest.raises(OSError) as e:
        with open(c.path("only-on-a"), "rb") as fh:
            fh.read(1 << 20)
    took = time.monotonic() - t0
    assert e.value.errno == errno.EIO
    assert took < FETCH_TIMEOUT + 3, f"the read took {took:.1f}s"
    assert "no member supplied it" in c.log()
    c.umount()
    assert not c.mounted


def test_concurrent_writes_in_a_partition_keep_both_versions(cluster3):
    a, b, c = cluster3.nodes
    with open(a.path("doc.txt"), "w") as fh:
        fh.write("original\n")
    wait_until(lambda: all(os.path.exists(nd.path("doc.txt")) for nd in (b, c)), 20, "doc.txt everywhere")
    cluster3.lan.cut(0)  # A alone; B and C together
    time.sleep(0.5)
    with open(a.path("doc.txt"), "w") as fh:
        fh.write("written on A during the partition\n")
    with open(b.path("doc.txt"), "w") as fh:
        fh.write("written on B during the partition\n")
    time.sleep(2)
    cluster3.lan.heal(0)

    def converged():
        views = [tree_digest(nd.mnt) for nd in (a, b, c)]
        return views[0] == views[1] == views[2] and len(views[0]) == 2 and views[0]
    view = wait_until(converged, 40, "the three nodes to show the same tree with both versions",
                      interval=0.5)
    names = sorted(view)
    assert "doc.txt" in names
    copy = [n for n in names if n != "doc.txt"][0]
    assert "conflict" in copy, names
    contents = set()
    for n in names:
        with open(a.path(n)) as fh:
            contents.add(fh.read())
    assert contents == {"written on A during the partition\n", "written on B during the partition\n"}


def test_a_node_that_was_offline_catches_up(cluster3):
    a, b, c = cluster3.nodes
    c.umount()
    os.makedirs(a.path("log"))
    for i in range(500):
        p = a.path("log", f"e{i % 200:03}")
        if i >= 400 and i % 2:
            os.unlink(p) if os.path.exists(p) else None
            continue
        with open(p, "w") as fh:
            fh.write(f"update {i}\n")
    os.rename(a.path("log"), a.path("journal"))
    want = tree_digest(a.mnt)
    c.mount()
    wait_until(lambda: tree_digest(c.mnt) == want, 30, "C to catch up with A's 500 updates",
               interval=0.5)


def test_read_links_cannot_write_and_outsiders_see_nothing():
    c3 = Cluster(3)
    try:
        a = c3.nodes[0]
        reader = c3.node(1, link=c3.read_link, name="reader")
        # A node of another share, told A's address: it must learn nothing.
        outsider = Node(base=c3.tmp, name="outsider",
                        extra=["--peer", f"{c3.lan.addrs[0]}:7575", "--listen", f"{c3.lan.addrs[2]}:7575"],
                        prefix=c3.lan.prefix(2))
        c3.nodes += [reader, outsider]
        a.mount()
        reader.mount()
        outsider.mount()
        with open(a.path("secret"), "w") as fh:
            fh.write("members only\n")
        wait_until(lambda: os.path.exists(reader.path("secret")), 20, "the file on the reader",
                   interval=0.1)
        with open(reader.path("secret")) as fh:
            assert fh.read() == "members only\n"
        with pytest.raises(OSError) as e:
            open(reader.path("new"), "w")
        assert e.value.errno == errno.EROFS
        with pytest.raises(OSError) as e:
            os.unlink(reader.path("secret"))
        assert e.value.errno == errno.EROFS
        time.sleep(3)
        assert os.listdir(outsider.mnt) == []
        assert outsider.status()["swarm"]["members"] == 0
        assert "members only" not in outsider.log()
        assert re.search(r"another share|does not hold this share's key", a.log() + outsider.log())
    finally:
        c3.close()


def test_pin_fetches_a_tree_and_it_stays_readable_without_the_writer(cluster3):
    a, b, c = cluster3.nodes
    os.makedirs(a.path("ds", "part"))
    want = {}
    for i, size in enumerate([40 << 20, 3 << 20, 0, 12345]):
        rel = os.path.join("ds", "part" if i % 2 else "", f"f{i}")
        want[rel] = random_file(a.path(rel), size)
    wait_until(lambda: all(has(c, r, os.path.getsize(a.path(r))) for r in want), 20,
               "the tree on C", interval=0.1)
    assert os.getxattr(c.path("ds", "f0"), "user.p2pfs.local") == f"0 {40 << 20}".encode()
    assert int(os.getxattr(c.path("ds", "f0"), "user.p2pfs.peers")) >= 1
    cid = os.getxattr(c.path("ds", "f0"), "user.p2pfs.cid").decode()
    assert cid == os.getxattr(a.path("ds", "f0"), "user.p2pfs.cid").decode()
    p = p2pfs("pin", c.path("ds"))
    assert "pinned 4 files" in p.stdout, p.stdout
    assert os.getxattr(c.path("ds", "f0"), "user.p2pfs.local") == f"{40 << 20} {40 << 20}".encode()
    assert c.status()["pinned_bytes"] >= (40 << 20) + (3 << 20)
    peers = p2pfs("peers", c.mnt).stdout
    assert "writer" in peers and cluster3.lan.addrs[0] in peers + p2pfs("peers", "--json", c.mnt).stdout
    a.kill9()
    b.umount()
    wait_until(lambda: cluster3.members(c) == 0, 20, "C to be alone")
    for rel, h in want.items():
        assert sha256_file(c.path(rel)) == h
    # Unpinning keeps what nobody else holds.
    out = p2pfs("unpin", c.path("ds")).stdout
    assert "kept pinned" in out
    assert c.status()["pinned_bytes"] >= (40 << 20) + (3 << 20)


def test_when_upload_is_short_peers_that_upload_to_us_are_served_first():
    c3 = Cluster(3)
    try:
        a, b, c = c3.nodes
        a.extra += ["--max-upload", "6M"]
        b.extra += ["--max-upload", "4M"]
        for nd in c3.nodes:
            nd.mount()
        c3.wait_members(c3.nodes, 2)
        random_file(a.path("y1"), 64 << 20)
        random_file(a.path("y2"), 64 << 20)
        random_file(b.path("x"), 64 << 20)
        for nd in c3.nodes:
            wait_until(lambda: all(has(nd, f, 64 << 20) for f in ("x", "y1", "y2")), 20,
                       "the three files everywhere", interval=0.1)
        procs = []
        import subprocess
        from p2pfs_harness import P2PFS
        procs.append(subprocess.Popen([P2PFS, "pin", a.path("x")], stdout=subprocess.DEVNULL))
        time.sleep(2.5)  # B is uploading to A: a contributor by the next rechoke
        procs.append(subprocess.Popen([P2PFS, "pin", b.path("y1")], stdout=subprocess.DEVNULL))
        procs.append(subprocess.Popen([P2PFS, "pin", c.path("y2")], stdout=subprocess.DEVNULL))

        def sent_to(nd):
            nid = nd.status()["node_id"]
            return next(p["bytes_out"] for p in a.status()["swarm"]["peers"] if p["id"] == nid)
        b0, c0 = sent_to(b), sent_to(c)
        time.sleep(6)
        to_b, to_c = sent_to(b) - b0, sent_to(c) - c0
        for p in procs:
            p.kill()
            p.wait()
        print(f"A sent {to_b >> 20} MiB to B (uploads to A), {to_c >> 20} MiB to C in 6 s")
        assert to_b > 2.5 * to_c, f"A sent {to_b} bytes to the contributor B and {to_c} to C"
        assert to_c > 1 << 20, "C (not contributing) got nothing: no optimistic share"
    finally:
        c3.close()


def test_holders_of_a_file_are_found_in_the_dht_when_no_member_has_it():
    c3 = Cluster(3)
    try:
        a, b, c = c3.nodes
        # A and C each keep one connection, to B: they are not connected.
        for nd in (a, c):
            nd.extra += ["--max-peers", "1", "--peer", f"{c3.lan.addrs[1]}:7575"]
        b.mount()
        a.mount()
        c.mount()
        c3.wait_members([a, c], 1)
        c3.wait_members([b], 2)
        a_id = a.status()["node_id"]
        assert a_id not in [p["id"] for p in c.status()["swarm"]["peers"]]
        h = random_file(a.path("only-on-a"), 8 << 20)
        wait_until(lambda: has(c, "only-on-a", 8 << 20), 20, "the file listed on C", interval=0.1)
        time.sleep(1)  # A's provider record for the file reaches the DHT
        assert sha256_file(c.path("only-on-a")) == h
        assert a_id in [p["id"] for p in c.status()["swarm"]["peers"]]
        assert c.status()["swarm"]["fetched_bytes"] >= 8 << 20
    finally:
        c3.close()


def test_scrub_replaces_damaged_chunks_with_copies_from_members(cluster3):
    import glob
    a, b, c = cluster3.nodes
    data = os.urandom(6 << 20)
    with open(a.path("f"), "wb") as fh:
        fh.write(data)
    wait_until(lambda: has(c, "f", len(data)), 20, "the file on C", interval=0.1)
    p2pfs("pin", c.path("f"))
    needle = data[(3 << 20):(3 << 20) + 64]
    for pack in sorted(glob.glob(os.path.join(c.state, "store", "**", "*"), recursive=True)):
        if os.path.isfile(pack):
            with open(pack, "r+b") as fh:
                buf = fh.read()
                at = buf.find(needle)
                if at >= 0:
                    fh.seek(at + 10)
                    fh.write(bytes([buf[at + 10] ^ 0x40]))
                    break
    else:
        raise AssertionError("the chunk is not in C's packs")
    r = p2pfs("scrub", c.mnt, check=False)
    assert r.returncode == 5, r.stdout + r.stderr
    assert "replaced by verified copies from members" in r.stdout + r.stderr, r.stdout + r.stderr
    with open(c.path("f"), "rb") as fh:
        assert fh.read() == data
    r = p2pfs("scrub", c.mnt, check=False)
    assert r.returncode == 0 and "0 damaged" in r.stdout, r.stdout + r.stderr


def test_editing_part_of_a_remote_file_fetches_what_it_needs(cluster3):
    a, b, c = cluster3.nodes
    data = bytearray(os.urandom(24 << 20))
    with open(a.path("big"), "wb") as fh:
        fh.write(data)
    wait_until(lambda: has(c, "big", len(data)), 20, "the file on C", interval=0.1)
    fd = os.open(c.path("big"), os.O_WRONLY)
    os.pwrite(fd, b"edited on C", 10 << 20)
    os.fsync(fd)
    os.close(fd)
    data[10 << 20:(10 << 20) + 11] = b"edited on C"
    want = hashlib.sha256(data).hexdigest()
    fetched = c.status()["swarm"]["fetched_bytes"]
    assert fetched < 12 << 20, f"C fetched {fetched} bytes to change 11"
    wait_until(lambda: sha256_file(a.path("big")) == want, 20, "the edit on A", interval=0.5)


def test_download_and_upload_limits_hold():
    c2 = Cluster(2)
    try:
        a, b = c2.nodes
        a.extra += ["--max-upload", "16M"]
        b.extra += ["--max-download", "8M"]
        for nd in c2.nodes:
            nd.mount()
        c2.wait_members(c2.nodes, 1)
        random_file(a.path("f"), 32 << 20)
        random_file(a.path("g"), 32 << 20)
        wait_until(lambda: has(b, "f", 32 << 20) and has(b, "g", 32 << 20), 20, "the files on B",
                   interval=0.1)
        t0 = time.monotonic()
        p2pfs("pin", b.path("f"))
        took = time.monotonic() - t0
        # 32 MiB at 8 MiB/s is 4 s, less what may come at once: the bucket's
        # burst (2 MiB) and one window of requests (8 chunks, ~8 MiB).
        assert 2.4 < took < 8, f"pinning 32 MiB under an 8 MiB/s download limit took {took:.1f}s"
        # B without its limit: A's upload limit (16 MiB/s) is the one that holds.
        b.umount()
        b.extra = [x for x in b.extra if x not in ("--max-download", "8M")]
        b.mount()
        c2.wait_members(c2.nodes, 1)
        t0 = time.monotonic()
        p2pfs("pin", b.path("g"))
        took = time.monotonic() - t0
        assert 1.7 < took < 5, f"pinning 32 MiB under a 16 MiB/s upload limit took {took:.1f}s"
    finally:
        c2.close()
