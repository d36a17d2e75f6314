# SPDX-License-Identifier: MIT
"""Network namespaces on one bridge, for multi-node tests: each node gets its
own namespace and address (10.77.0.X/24), all joined by a bridge in another
namespace. Everything is removed by close(), whatever happened."""
import os
import subprocess


def sh(*args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=30)


class Lan:
    def __init__(self, n, tag=None):
        tag = tag or f"p{os.getpid() % 100000}"
        self.tag = tag
        self.hub = f"{tag}hub"
        self.ns = [f"{tag}n{i}" for i in range(n)]
        self.addrs = [f"10.77.0.{i + 1}" for i in range(n)]
        try:
            sh("ip", "netns", "add", self.hub)
            sh("ip", "-n", self.hub, "link", "add", "br0", "type", "bridge")
            sh("ip", "-n", self.hub, "link", "set", "br0", "up")
            for i, ns in enumerate(self.ns):
                sh("ip", "netns", "add", ns)
                a, b = f"{tag}a{i}", f"{tag}b{i}"
                sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
                sh("ip", "link", "set", a, "netns", ns)
                sh("ip", "link", "set", b, "netns", self.hub)
                sh("ip", "-n", self.hub, "link", "set", b, "master", "br0")
                sh("ip", "-n", self.hub, "link", "set", b, "up")
                sh("ip", "-n", ns, "link", "set", a, "name", "eth0")
                sh("ip", "-n", ns, "addr", "add", f"{self.addrs[i]}/24", "dev", "eth0")
                sh("ip", "-n", ns, "link", "set", "eth0", "up")
                sh("ip", "-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def run(self, i, *args, check=True, timeout=60):
        return subprocess.run(["ip", "netns", "exec", self.ns[i], *args], check=check,
                              capture_output=True, text=True, timeout=timeout)

    def prefix(self, i):
        """A command prefix that runs in node @i's network namespace only, so
        a FUSE mount made there is visible to the whole machine (ip netns
        exec would also give it a mount namespace of its own)."""
        return ["nsenter", f"--net=/run/netns/{self.ns[i]}"]

    def cut(self, i):
        """Unplug node @i from the bridge (its own interface stays up)."""
        sh("ip", "-n", self.hub, "link", "set", f"{self.tag}b{i}", "down")

    def heal(self, i):
        sh("ip", "-n", self.hub, "link", "set", f"{self.tag}b{i}", "up")

    def close(self):
        for ns in self.ns + [self.hub]:
            sh("ip", "netns", "pids", ns, check=False)
            pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
            for p in pids:
                try:
                    os.kill(int(p), 9)
                except OSError:
                    pass
            sh("ip", "netns", "del", ns, check=False)
