# SPDX-License-Identifier: MIT
"""pytest fixtures for p2pfs integration tests (see p2pfs_harness.py)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from p2pfs_harness import Node, can_fuse  # noqa: E402


def pytest_collection_modifyitems(config, items):
    if not can_fuse():
        skip = pytest.mark.skip(reason="needs root and /dev/fuse")
        for item in items:
            item.add_marker(skip)


def pytest_sessionfinish(session, exitstatus):
    # meson's convention: 77 means the whole test was skipped.
    if session.testscollected and session.testsfailed == 0 and not can_fuse():
        session.exitstatus = 77


@pytest.fixture
def node(tmp_path):
    n = Node(base=str(tmp_path))
    n.mount()
    yield n
    n.cleanup()


@pytest.fixture
def make_node(tmp_path):
    made = []

    def make(name="n", mount=True, extra=()):
        n = Node(base=str(tmp_path), name=name, extra=extra)
        made.append(n)
        if mount:
            n.mount()
        return n

    yield make
    for n in made:
        n.cleanup()
