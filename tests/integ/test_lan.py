# SPDX-License-Identifier: MIT
"""LAN discovery: nodes on one bridge, given no bootstrap address, find each
other by multicast within seconds."""
import json
import shutil
import tempfile
import time

import pytest
from netns import Lan
from p2pfs_harness import P2PFS


@pytest.fixture
def lan():
    lan = Lan(3)
    yield lan
    lan.close()


def test_three_nodes_find_each_other_without_bootstrap(lan):
    tmp = tempfile.mkdtemp(prefix="p2pfs-lan-")
    try:
        for i in range(3):
            lan.run(i, P2PFS, "node", "--state", f"{tmp}/n{i}")
        t0 = time.monotonic()
        found = {}
        while time.monotonic() - t0 < 5 and len(found) < 3:
            for i in range(3):
                st = json.loads(lan.run(i, P2PFS, "status", "--state", f"{tmp}/n{i}",
                                        "--json").stdout)
                if st["dht"]["contacts"] >= 2:
                    found.setdefault(i, time.monotonic() - t0)
            time.sleep(0.1)
        assert len(found) == 3, f"after 5 s only nodes {sorted(found)} know both others"
        # And they can use each other: a key provided on one is found from another.
        assert lan.run(0, P2PFS, "dht", "--state", f"{tmp}/n0", "provide", "lan-key").returncode == 0
        out = lan.run(2, P2PFS, "dht", "--state", f"{tmp}/n2", "providers", "lan-key").stdout
        assert "provider" in out and lan.addrs[0] in out
    finally:
        for i in range(3):
            lan.run(i, P2PFS, "stop", "--state", f"{tmp}/n{i}", check=False)
        shutil.rmtree(tmp, ignore_errors=True)
