# SPDX-License-Identifier: MIT
"""Fifty real `p2pfs node` processes on loopback: joining through one
bootstrap node, provider records stored and found, nodes killed without
notice, republish, and a restart that rejoins from the saved routing table."""
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pytest
from p2pfs_harness import P2PFS, process_gone, run

N = 50
KEYS = 100
KILL = 15
TTL = 20  # seconds: republish every TTL/2, so the test sees one


def free_base_port(n):
    """A run of n UDP ports that are free now (probed by binding)."""
    import socket
    for _ in range(50):
        base = random.randint(20000, 60000 - n)
        socks = []
        try:
            for i in range(n):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind(("127.0.0.1", base + i))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range")


class Net:
    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="p2pfs-dht-")
        self.base = free_base_port(N)
        self.alive = set()

    def state(self, i):
        return os.path.join(self.tmp, f"n{i}")

    def start(self, i, bootstrap=True):
        st = self.state(i)
        os.makedirs(st, exist_ok=True)
        with open(os.path.join(st, "config"), "w") as f:
            f.write(f"dht-provider-ttl = {TTL}\nlan-discovery = no\nlog-level = notice\n")
        args = [P2PFS, "node", "--state", st, "--listen", f"127.0.0.1:{self.base + i}"]
        if bootstrap and i != 0:
            args += ["--bootstrap", f"127.0.0.1:{self.base}"]
        run(args, timeout=30)
        self.alive.add(i)

    def pid(self, i):
        with open(os.path.join(self.state(i), "lock")) as f:
            return int(f.read().split()[1].rstrip(","))

    def kill9(self, i):
        pid = self.pid(i)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not process_gone(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.alive.discard(i)

    def stop(self, i):
        run([P2PFS, "stop", "--state", self.state(i)], timeout=30)
        self.alive.discard(i)

    def dht(self, i, *req):
        return subprocess.run([P2PFS, "dht", "--state", self.state(i), *req],
                              capture_output=True, text=True, timeout=30)

    def node_id(self, i):
        import json
        out = run([P2PFS, "status", "--state", self.state(i), "--json"]).stdout
        return json.loads(out)["node_id"]

    def status(self, i):
        import json
        return json.loads(run([P2PFS, "status", "--state", self.state(i), "--json"]).stdout)

    def cleanup(self):
        for i in list(self.alive):
            try:
                os.kill(self.pid(i), signal.SIGKILL)
            except (OSError, ValueError, IndexError):
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture
def net():
    n = Net()
    yield n
    n.cleanup()


def lookup_all(net, providers, ids):
    """Look every key up from a random other live node; return the misses."""
    misses = []
    for k, p in providers.items():
        asker = random.choice(sorted(net.alive - {p}))
        r = net.dht(asker, "providers", k)
        if r.returncode != 0 or ids[p] not in r.stdout:
            misses.append((k, p, asker, r.stdout + r.stderr))
        hops = re.search(r"took (\d+) hops", r.stdout)
        assert hops, r.stdout
    return misses


def test_fifty_nodes_find_providers_through_churn_and_rejoin(net):
    random.seed(os.getpid())
    for i in range(N):
        net.start(i)
    time.sleep(2)  # joins: every node looks itself up through the bootstrap node
    ids = {i: net.node_id(i) for i in range(N)}
    for i in range(N):
        assert net.status(i)["dht"]["contacts"] >= 10, f"node {i} knows too few peers"

    providers = {}
    for j in range(KEYS):
        p = random.randrange(N)
        key = f"key-{j}-{random.getrandbits(32)}"
        r = net.dht(p, "provide", key)
        assert r.returncode == 0, r.stderr
        providers[key] = p
    misses = lookup_all(net, providers, ids)
    assert not misses, f"{len(misses)} of {KEYS} keys not found: {misses[:3]}"

    # A signed mutable record: put on one node, read from another, replaced by a newer put.
    w = random.randrange(1, N)
    out = net.dht(w, "put", "head", "version-1").stdout
    pk = re.search(r"p2pfs dht get ([0-9a-f]{64}) NAME", out).group(1)
    r = net.dht(random.randrange(N), "get", pk, "head")
    assert r.returncode == 0 and "value version-1" in r.stdout, r.stdout + r.stderr
    assert net.dht(w, "put", "head", "version-2").returncode == 0
    r = net.dht(random.randrange(N), "get", pk, "head")
    assert "value version-2" in r.stdout, r.stdout

    # Fifteen nodes die without notice (never the bootstrap node: not needed, but
    # a restart below must be able to rejoin without it anyway).
    victims = random.sample(range(1, N), KILL)
    for v in victims:
        net.kill9(v)
    # Keys of dead providers move to live nodes; the rest are republished by
    # their providers before the short TTL runs out.
    for k, p in list(providers.items()):
        if p not in net.alive:
            q = random.choice(sorted(net.alive))
            assert net.dht(q, "provide", k).returncode == 0
            providers[k] = q
    time.sleep(TTL / 2 + 2)
    misses = lookup_all(net, providers, ids)
    assert not misses, f"after the kill: {len(misses)} of {KEYS} keys not found: {misses[:3]}"

    # A node restarted with no bootstrap address rejoins from its saved table.
    r = random.choice(sorted(net.alive - {0}))
    net.stop(r)
    assert os.path.exists(os.path.join(net.state(r), "dht.table"))
    net.start(r, bootstrap=False)
    time.sleep(1.5)
    assert net.status(r)["dht"]["contacts"] >= 10
    k = random.choice(sorted(k for k, p in providers.items() if p != r))
    out = net.dht(r, "providers", k)
    assert out.returncode == 0 and ids[providers[k]] in out.stdout, out.stdout + out.stderr
