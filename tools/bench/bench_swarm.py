#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Moving data between nodes: p2pfs beside nginx (+ curl) and libtorrent, in
one run, every system in the same network namespaces on one bridge
(tests/integ/netns.py), one node per namespace, node 0 holding the data.

  1. one holder -> one reader, unshaped: cold read of a 256 MiB file through
     the reader's mount (it never read the file), MB/s. Baselines: nginx
     serving the file from the holder's namespace, fetched with curl in the
     reader's; libtorrent seeding it from the holder, downloaded by the reader
     given the seeder's address.      targets: p2pfs/libtorrent >= 2,
                                               p2pfs/nginx >= 0.7
     1b. the baselines again with the page cache dropped first, so their
     holder reads the file from disk as p2pfs's holder does (its chunks are
     written with O_DIRECT); libtorrent's seeder then skips its start-up
     check of the file (seed mode: each piece checked when first asked
     for).                            reported
  2. one holder -> N = 1, 3, 5 readers started together, every node's uplink
     (egress of its eth0) shaped to 100 Mbit/s with tbf: time until every
     reader has the whole file, verified, beside the Kumar-Ross lower bound
     max(F/u_s, N*F/(u_s + N*u)), u_s = u = 100 Mbit/s.
                                      targets: p2pfs <= 1.15 x the bound at
                                      each N, and faster than libtorrent
  3. time to first byte of a remote 1 GiB file (open + read of one byte, what
     `head -c 1` does, on nodes that never read it; nginx: curl -r 0-0), and
     time until a file written on the holder is listed on another node (os.stat
     polled every 10 ms).             reported

Timed reads discard the bytes (p2pfs: a read loop on the mount; curl -o
/dev/null); libtorrent writes into its download directory, as it must. Part 2
hashes what every p2pfs reader reads (SHA-256, checked). libtorrent: TCP only
(uTP off), DHT, LSD, UPnP and NAT-PMP off, peers told each other's addresses,
its high_performance_seed() settings.

Run as root:  tools/bench/bench_swarm.py [--quick] [--build DIR] [--out DIR] [--runs 3] [--parts 1,2,3]
The full run needs `tools/setup.sh all` (nginx-light, curl, python3-libtorrent,
gnuplot-nox); a baseline that is not installed is skipped. libtorrent's Python
bindings import only under /usr/bin/python3 (Debian's python3-libtorrent).
"""
import argparse
import atexit
import hashlib
import importlib.util
import math
import os
import queue
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
INTEG = os.path.join(ROOT, "tests", "integ")
MiB = 1 << 20
RATE_MBIT = 100
NGINX_PORT = 8080
LT_PORT = 6881
LT_PYTHON = "/usr/bin/python3"


def load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(INTEG, name + ".py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


netns = load("netns")
harness = load("p2pfs_harness")


# ---- cleanup: everything made is undone once, in reverse order ----

class Cleanup:
    def __init__(self):
        self.stack = []
        atexit.register(self.run)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self.on_signal)

    def push(self, what, fn, *args):
        self.stack.append((what, fn, args))

    def on_signal(self, sig, frame):
        raise SystemExit(128 + sig)

    def run(self):
        while self.stack:
            what, fn, args = self.stack.pop()
            try:
                fn(*args)
            except BaseException as e:  # keep undoing the rest
                print(f"bench_swarm: cleanup of {what} failed: {e}", file=sys.stderr)


def wait_until(pred, timeout, what, interval=0.01):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def random_file(path, size):
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            b = os.urandom(min(left, 8 * MiB))
            h.update(b)
            f.write(b)
            left -= len(b)
    return h.hexdigest()


def cpu_busy(seconds=1.0):
    """Fraction of the machine's CPU time spent on other work over @seconds."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]  # total, idle + iowait
    t0, i0 = sample()
    time.sleep(seconds)
    t1, i1 = sample()
    return 1 - (i1 - i0) / max(t1 - t0, 1)


def median(xs):
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    return statistics.median(xs) if xs else float("nan")


def stop_process(p, timeout=10):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout)


class Lines:
    """The stdout lines of a process, read by a thread, taken with a deadline."""

    def __init__(self, proc, name):
        self.proc, self.name = proc, name
        self.q = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.q.put(line.rstrip("\n"))
        self.q.put(None)

    def get(self, timeout):
        try:
            line = self.q.get(timeout=max(timeout, 0.001))
        except queue.Empty:
            raise TimeoutError(f"{self.name}: no answer within {timeout:.0f} s") from None
        if line is None:
            raise RuntimeError(f"{self.name} exited ({self.proc.poll()})")
        return line


# ---- the network ----

class Net:
    def __init__(self, n, cleanup, shaping):
        self.lan = netns.Lan(n)
        cleanup.push("network namespaces", self.lan.close)
        self.n = n
        self.shaped = False
        self.shaping = shaping

    def addr(self, i):
        return self.lan.addrs[i]

    def prefix(self, i):
        return self.lan.prefix(i)

    def shape(self):
        """Every node's uplink to RATE_MBIT; False if tc cannot (no sch_tbf)."""
        if not self.shaping:
            return False
        try:
            for i in range(self.n):
                self.lan.run(i, "tc", "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate",
                             f"{RATE_MBIT}mbit", "burst", "256kb", "latency", "50ms")
        except subprocess.CalledProcessError as e:
            print(f"bench_swarm: cannot shape with tc ({e.stderr.strip()}): part 2 unshaped")
            self.unshape()
            return False
        self.shaped = True
        return True

    def unshape(self):
        for i in range(self.n):
            self.lan.run(i, "tc", "qdisc", "del", "dev", "eth0", "root", check=False)
        self.shaped = False


# ---- p2pfs ----

class Swarm:
    """One p2pfs daemon per namespace, all mounting one share."""

    def __init__(self, net, base, cleanup):
        self.net = net
        out = harness.p2pfs("init", "--state", os.path.join(base, "keys")).stdout
        link = re.search(r"write link:\s+(\S+)", out).group(1)
        self.nodes = []
        for i in range(net.n):
            nd = harness.Node(base=base, name=f"n{i}",
                              extra=["--share", link, "--listen", f"{net.addr(i)}:7575",
                                     "--fetch-timeout", "30", "--cache-size", "20G"],
                              prefix=net.prefix(i))
            cleanup.push(f"p2pfs node {i}", nd.cleanup)
            self.nodes.append(nd)
        for nd in self.nodes:
            nd.mount()
        wait_until(lambda: all(self.stat(nd)["members"] >= net.n - 1 for nd in self.nodes), 60,
                   "every p2pfs node to connect to every other", interval=0.2)

    def stat(self, nd):
        return nd.status()["swarm"]

    def put(self, src, name):
        """Copy @src to the holder's mount; returns when every other node
        lists it with its final size."""
        size = os.path.getsize(src)
        holder = self.nodes[0]
        with open(src, "rb") as fi, open(holder.path(name), "wb") as fo:
            shutil.copyfileobj(fi, fo, 4 * MiB)
        t0 = time.monotonic()
        for nd in self.nodes[1:]:
            wait_until(lambda: size_of(nd.path(name)) == size, 120,
                       f"{name} to be listed on {nd.tmp}", interval=0.05)
        return time.monotonic() - t0

    def settle(self, timeout=60):
        """Wait until no node fetches anything and the holder has stopped
        sending (what a previous run left in flight would skew the next)."""
        last = [None]

        def quiet():
            st = [self.stat(nd) for nd in self.nodes]
            sent = st[0]["served_bytes"]
            ok = all(x["fetches"] == 0 for x in st) and sent == last[0]
            last[0] = sent
            return ok
        wait_until(quiet, timeout, "the p2pfs nodes to go quiet", interval=0.5)

    def logs(self):
        """Warnings and errors in the daemons' logs: {pattern: [count, example]},
        patterns with chunk ids, addresses and numbers blanked."""
        out = {}
        for i, nd in enumerate(self.nodes):
            for line in nd.log().splitlines():
                m = re.match(r"\S+ (warn|error|crit|alert|emerg) (.*)", line)
                if not m:
                    continue
                pat = re.sub(r"\b[0-9a-f]{8,}\b", "X", m.group(2))
                pat = re.sub(r"\d+(\.\d+)*(:\d+)?", "N", pat)
                e = out.setdefault(f"{m.group(1)} {pat}", [0, f"node {i}: {line}"])
                e[0] += 1
        return out


def size_of(path):
    try:
        return os.stat(path).st_size
    except OSError:
        return -1


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def read_discard(path):
    """Bytes read and seconds: open, read to the end, close."""
    buf = bytearray(4 * MiB)
    n = 0
    t0 = time.monotonic()
    with open(path, "rb", buffering=0) as f:
        while True:
            k = f.readinto(buf)
            if not k:
                break
            n += k
    return n, time.monotonic() - t0


def sha256_path(path):
    h = hashlib.sha256()
    buf = bytearray(4 * MiB)
    mv = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while True:
            k = f.readinto(buf)
            if not k:
                break
            h.update(mv[:k])
    return h.hexdigest()


def parallel_reads(paths, timeout):
    """Start a reader per path at once; each reads the whole file and hashes
    it. Returns (t0, [(finish time, sha256 or error)])."""
    res = [None] * len(paths)

    def one(k):
        try:
            h = sha256_path(paths[k])
        except OSError as e:
            h = f"error: {e}"
        res[k] = (time.monotonic(), h)
    threads = [threading.Thread(target=one, args=(k,), daemon=True) for k in range(len(paths))]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0, t0 + timeout - time.monotonic()))
    if any(r is None for r in res):
        raise TimeoutError(f"a p2pfs reader had not finished after {timeout} s")
    return t0, res


# ---- nginx ----

class Nginx:
    def __init__(self, net, i, root, tmp, cleanup):
        self.net, self.url = net, f"http://{net.addr(i)}:{NGINX_PORT}"
        conf = os.path.join(tmp, "nginx.conf")
        temps = "\n".join(f"  {k}_temp_path {tmp}/{k};" for k in
                          ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        with open(conf, "w") as f:
            f.write(f"""daemon off;
user root;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
{temps}
  server {{
    listen {net.addr(i)}:{NGINX_PORT};
    root {root};
  }}
}}
""")
        self.proc = subprocess.Popen([*net.prefix(i), shutil.which("nginx"), "-c", conf, "-p", tmp,
                                      "-e", f"{tmp}/error.log"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cleanup.push("nginx", stop_process, self.proc)
        wait_until(lambda: self.proc.poll() is not None or
                   net.lan.run(i, "curl", "-s", "-o", "/dev/null", self.url + "/", check=False,
                               timeout=10).returncode == 0,
                   20, "nginx to answer", interval=0.1)
        if self.proc.poll() is not None:
            with open(f"{tmp}/error.log") as f:
                raise RuntimeError(f"nginx exited: {f.read()}")

    def get(self, j, name, extra=(), timeout=600):
        """curl in node @j's namespace: (seconds of transfer, bytes)."""
        r = self.net.lan.run(j, "curl", "-sS", "-f", "-o", "/dev/null", *extra, "-w",
                             "%{time_total} %{size_download}", f"{self.url}/{name}",
                             timeout=timeout)
        t, n = r.stdout.split()
        return float(t), int(n)


# ---- libtorrent: one worker process per node, driven over stdin/stdout ----

LT_WORKER = r'''
import select, sys, time
import libtorrent as lt
torrent, save, ip, port, role = sys.argv[1:6]
sp = lt.high_performance_seed()
sp.update({"listen_interfaces": f"{ip}:{port}", "enable_dht": False, "enable_lsd": False,
           "enable_upnp": False, "enable_natpmp": False, "enable_incoming_utp": False,
           "enable_outgoing_utp": False, "alert_mask": 0})
ses = lt.session(sp)
atp = lt.add_torrent_params()
atp.ti = lt.torrent_info(torrent)
atp.save_path = save
atp.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
if role == "seed-from-disk":
    # No hash check of the whole file first (it would bring the file into
    # the page cache): each piece is checked when first asked for.
    atp.flags |= lt.torrent_flags.seed_mode
h = ses.add_torrent(atp)
def wait(pred, timeout):
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            print("fail timeout", flush=True)
            sys.exit(1)
        time.sleep(0.005)
checking = (lt.torrent_status.checking_files, lt.torrent_status.checking_resume_data)
if role.startswith("seed"):
    wait(lambda: h.status().is_seeding, 300)
else:
    wait(lambda: h.status().state not in checking, 60)
print("ready", flush=True)
peers = sys.stdin.readline().split()[1:]
for a in peers:
    host, p = a.rsplit(":", 1)
    h.connect_peer((host, int(p)))
if not role.startswith("seed"):
    wait(lambda: h.status().is_seeding, float(sys.argv[6]))
    print("done", repr(time.monotonic()), flush=True)
sys.stdin.readline()
s = h.status()
print("stats", s.total_payload_upload, s.total_payload_download, flush=True)
'''


def have_libtorrent():
    if not os.access(LT_PYTHON, os.X_OK):
        return False
    return subprocess.run([LT_PYTHON, "-c", "import libtorrent"], capture_output=True,
                          timeout=60).returncode == 0


MAKE_TORRENT = r'''
import os, sys
import libtorrent as lt
src, out = sys.argv[1:3]
fs = lt.file_storage()
lt.add_files(fs, src)
t = lt.create_torrent(fs)
lt.set_piece_hashes(t, os.path.dirname(src))
with open(out, "wb") as f:
    f.write(lt.bencode(t.generate()))
print(t.piece_length())
'''


def make_torrent(src, out):
    r = subprocess.run([LT_PYTHON, "-c", MAKE_TORRENT, src, out], capture_output=True, text=True,
                       check=True, timeout=300)
    return int(r.stdout)


def lt_swarm(net, src, torrent, readers, tmp, timeout, from_disk=False):
    """Seed @src from node 0, download it on nodes @readers at once, all told
    every address. Returns (seconds until the last finished, seeder's payload
    bytes sent). @from_disk: the page cache is dropped first and the seeder
    does not read the file before it is asked for pieces."""
    procs = []
    try:
        def start(i, role, save):
            p = subprocess.Popen([*net.prefix(i), LT_PYTHON, "-c", LT_WORKER, torrent, save,
                                  net.addr(i), str(LT_PORT), role, str(timeout)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            procs.append((p, Lines(p, f"libtorrent {role} on node {i}")))
        if from_disk:
            drop_caches()
        start(0, "seed-from-disk" if from_disk else "seed", os.path.dirname(src))
        for i in readers:
            d = os.path.join(tmp, f"lt-{i}")
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
            start(i, "get", d)
        for p, lines in procs:
            line = lines.get(300)
            if line != "ready":
                raise RuntimeError(f"{lines.name}: {line}")
        everyone = [f"{net.addr(i)}:{LT_PORT}" for i in [0, *readers]]
        t0 = time.monotonic()
        for k, (p, _) in enumerate(procs):
            others = [] if k == 0 else [a for j, a in enumerate(everyone) if j != k]
            p.stdin.write("go " + " ".join(others) + "\n")
            p.stdin.flush()
        done = []
        for p, lines in procs[1:]:
            line = lines.get(t0 + timeout + 5 - time.monotonic()).split()
            if line[0] != "done":
                raise RuntimeError(f"{lines.name}: {' '.join(line)}")
            done.append(float(line[1]))
        sent = 0
        for k, (p, lines) in enumerate(procs):
            p.stdin.write("quit\n")
            p.stdin.flush()
            line = lines.get(30).split()
            if k == 0 and line[0] == "stats":
                sent = int(line[1])
        for p, _ in procs:
            p.wait(30)
        return max(done) - t0, sent
    finally:
        for p, _ in procs:
            stop_process(p)


# ---- the benchmark ----

class Bench:
    def __init__(self):
        self.rows = []       # one per measure: what goes into the CSV
        self.failures = []

    def record(self, part, system, n, measure, unit, runs, extra=None):
        self.rows.append(dict(part=part, system=system, n=n, measure=measure, unit=unit,
                              runs=runs, median=median(runs), **(extra or {})))

    def get(self, part, system, n=None, measure=None):
        for r in self.rows:
            if r["part"] == part and r["system"] == system and (n is None or r["n"] == n) and \
                    (measure is None or r["measure"] == measure):
                return r["median"]
        return float("nan")

    def attempt(self, what, fn, *args):
        """Run one measurement; a failure is recorded, the run goes on."""
        try:
            return fn(*args)
        except (OSError, RuntimeError, TimeoutError, subprocess.SubprocessError, ValueError) as e:
            msg = f"{what}: {type(e).__name__}: {e}"
            print(f"bench_swarm: FAILED {msg}", file=sys.stderr)
            self.failures.append(msg)
            return None


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="tiny files, N = 1 and 2, one run: a smoke test for CI")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"), help="meson build directory")
    ap.add_argument("--out", default=None, help="directory for the CSV and the PNG plot")
    ap.add_argument("--runs", type=int, default=3, help="runs per measure (median reported)")
    ap.add_argument("--dir", default="/var/tmp", help="where state, mounts and files go")
    ap.add_argument("--no-shaping", action="store_true", help="part 2 on unshaped links")
    ap.add_argument("--skip", default="", help="baselines to leave out, e.g. nginx,libtorrent,gnuplot")
    ap.add_argument("--parts", default="1,2,3", help="which parts to run, e.g. 2 (default: all)")
    a = ap.parse_args()
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        print("bench_swarm: needs root and /dev/fuse (namespaces, FUSE mounts)", file=sys.stderr)
        return 77
    for tool in ("ip", "nsenter"):
        if not shutil.which(tool):
            print(f"bench_swarm: {tool} not installed (iproute2, util-linux)", file=sys.stderr)
            return 77
    exe = os.path.abspath(os.path.join(a.build, "daemon", "p2pfs"))
    if not os.access(exe, os.X_OK):
        print(f"bench_swarm: no {exe}; build first (meson setup, ninja)", file=sys.stderr)
        return 1
    harness.P2PFS = exe
    if a.quick:
        size1, size2, size3, ns, runs = 16 * MiB, 4 * MiB, 32 * MiB, [1, 2], 1
    else:
        size1, size2, size3, ns, runs = 256 * MiB, 64 * MiB, 1024 * MiB, [1, 3, 5], a.runs
    listing_samples = 3 if a.quick else 5
    have = {
        "nginx": bool(shutil.which("nginx") or os.path.exists("/usr/sbin/nginx")),
        "curl": bool(shutil.which("curl")),
        "libtorrent": have_libtorrent(),
        "gnuplot": bool(shutil.which("gnuplot")),
    }
    for k in filter(None, a.skip.split(",")):
        if k not in have:
            ap.error(f"--skip: no baseline {k}")
        have[k] = False
    if not shutil.which("nginx") and os.path.exists("/usr/sbin/nginx"):
        os.environ["PATH"] += ":/usr/sbin"
    skipped = set(filter(None, a.skip.split(",")))
    for k, v in have.items():
        why = "skipped (--skip)" if k in skipped else "not installed, skipped"
        if not v:
            print(f"bench_swarm: {'baseline ' if k != 'gnuplot' else ''}{k} {why}")
    use_nginx = have["nginx"] and have["curl"]
    out = a.out or tempfile.mkdtemp(prefix="p2pfs-bench-swarm-out-")
    os.makedirs(out, exist_ok=True)

    cleanup = Cleanup()
    b = Bench()
    base = tempfile.mkdtemp(prefix="p2pfs-bench-swarm-", dir=a.dir)
    cleanup.push("temp dir", shutil.rmtree, base, True)
    data = os.path.join(base, "data")       # nginx's root, the seeder's files
    os.makedirs(data)
    work = os.path.join(base, "work")       # nginx temp, downloads, torrents
    os.makedirs(work)
    try:
        parts = {int(x) for x in a.parts.split(",") if x}
    except ValueError:
        ap.error(f"--parts: a comma-separated list of 1, 2, 3, not {a.parts!r}")
    if not parts or parts - {1, 2, 3}:
        ap.error(f"--parts: a comma-separated list of 1, 2, 3, not {a.parts!r}")
    nnodes = 1 + max(ns) if 2 in parts else 2
    t_start = time.monotonic()
    busy0 = cpu_busy()
    if busy0 > 0.2:
        print(f"bench_swarm: the CPUs were {busy0:.0%} busy before the run: other work on "
              f"this machine will make the figures noisy")
    try:
        net = Net(nnodes, cleanup, shaping=not a.no_shaping and bool(shutil.which("tc")))
        sw = Swarm(net, base, cleanup)
        ngx = Nginx(net, 0, data, work, cleanup) if use_nginx else None
        lt_ok = have["libtorrent"]
        piece = {}

        if 1 in parts:
            # -- part 1: one holder, one reader, unshaped --
            p, g, t, g2, t2 = [], [], [], [], []
            for r in range(runs):
                src = os.path.join(data, f"cold{r}")
                want = random_file(src, size1)

                def p2pfs_cold():
                    sw.put(src, f"cold{r}")
                    sw.settle()
                    n, s = read_discard(sw.nodes[1].path(f"cold{r}"))
                    if n != size1:
                        raise RuntimeError(f"p2pfs read {n} bytes of {size1}")
                    if sha256_path(sw.nodes[1].path(f"cold{r}")) != want:
                        raise RuntimeError("p2pfs: the file read on the reader differs")
                    return size1 / s / 1e6
                p.append(b.attempt(f"part 1 p2pfs run {r}", p2pfs_cold))
                if ngx:
                    def nginx_cold():
                        s, n = ngx.get(1, f"cold{r}")
                        if n != size1:
                            raise RuntimeError(f"curl got {n} bytes of {size1}")
                        return size1 / s / 1e6
                    g.append(b.attempt(f"part 1 nginx run {r}", nginx_cold))

                    def nginx_disk():
                        drop_caches()
                        return nginx_cold()
                    g2.append(b.attempt(f"part 1 nginx from disk run {r}", nginx_disk))
                if lt_ok:
                    def lt_cold(from_disk):
                        tor = os.path.join(work, f"cold{r}.torrent")
                        if not from_disk:  # made once, by the first of the two
                            piece[1] = make_torrent(src, tor)
                        s, _ = lt_swarm(net, src, tor, [1], work, 600, from_disk=from_disk)
                        return size1 / s / 1e6
                    t.append(b.attempt(f"part 1 libtorrent run {r}", lt_cold, False))
                    t2.append(b.attempt(f"part 1 libtorrent from disk run {r}", lt_cold, True))
                os.unlink(src)
            b.record(1, "p2pfs", 1, "cold read", "MB/s", p)
            if ngx:
                b.record(1, "nginx", 1, "cold read", "MB/s", g)
                b.record(1, "nginx", 1, "cold read, holder from disk", "MB/s", g2)
            if lt_ok:
                b.record(1, "libtorrent", 1, "cold read", "MB/s", t)
                b.record(1, "libtorrent", 1, "cold read, holder from disk", "MB/s", t2)

        shaped = False
        if 2 in parts:
            # -- part 2: one holder, N readers at once, shaped uplinks --
            shaped = net.shape()
            cleanup.push("traffic shaping", net.unshape)
            bound_bps = RATE_MBIT * 1e6 / 8
            for n in ns:
                readers = list(range(1, n + 1))
                bound = max(size2 / bound_bps, n * size2 / (bound_bps + n * bound_bps))
                p, t, g, psent, tsent = [], [], [], [], []
                for r in range(runs):
                    name = f"n{n}r{r}"
                    src = os.path.join(data, name)
                    want = random_file(src, size2)

                    def p2pfs_many():
                        sw.put(src, name)
                        sw.settle()
                        before = sw.stat(sw.nodes[0])["served_bytes"]
                        t0, res = parallel_reads([sw.nodes[i].path(name) for i in readers], 600)
                        for i, (_, h) in zip(readers, res):
                            if h != want:
                                raise RuntimeError(f"p2pfs reader {i}: sha256 {h} != {want}")
                        psent.append((sw.stat(sw.nodes[0])["served_bytes"] - before) / size2)
                        return max(f for f, _ in res) - t0
                    p.append(b.attempt(f"part 2 p2pfs N={n} run {r}", p2pfs_many))
                    if lt_ok:
                        def lt_many():
                            tor = os.path.join(work, f"{name}.torrent")
                            piece[2] = make_torrent(src, tor)
                            s, sent = lt_swarm(net, src, tor, readers, work, 600)
                            tsent.append(sent / size2)
                            return s
                        t.append(b.attempt(f"part 2 libtorrent N={n} run {r}", lt_many))
                    if ngx and r == 0:
                        def nginx_many():
                            t0 = time.monotonic()
                            procs = [subprocess.Popen(
                                [*net.prefix(i), "curl", "-sS", "-f", "-o", "/dev/null", "-w",
                                 "%{size_download}", f"{ngx.url}/{name}"],
                                stdout=subprocess.PIPE, text=True) for i in readers]
                            try:
                                for q in procs:
                                    o, _ = q.communicate(timeout=600)
                                    if q.returncode or int(o) != size2:
                                        raise RuntimeError(f"curl: exit {q.returncode}, {o} bytes")
                            finally:
                                for q in procs:
                                    stop_process(q)
                            return time.monotonic() - t0
                        g.append(b.attempt(f"part 2 nginx N={n}", nginx_many))
                    os.unlink(src)
                extra = dict(bound=bound)
                b.record(2, "p2pfs", n, "all readers done", "s", p,
                         dict(extra, source_sent=median(psent)))
                if lt_ok:
                    b.record(2, "libtorrent", n, "all readers done", "s", t,
                             dict(extra, source_sent=median(tsent)))
                if ngx:
                    b.record(2, "nginx", n, "all readers done", "s", g,
                             dict(extra, source_sent=float(n)))
            net.unshape()

        if 3 in parts:
            # -- part 3: time to first byte of a remote 1 GiB file; listing delay --
            big = os.path.join(data, "big")
            random_file(big, size3)
            first, ngx_first = [], []

            def p2pfs_first_bytes():
                sw.put(big, "big")
                for i in range(1, min(runs, nnodes - 1) + 1):
                    t0 = time.monotonic()
                    with open(sw.nodes[i].path("big"), "rb", buffering=0) as f:
                        f.read(1)
                    first.append(time.monotonic() - t0)
            b.attempt("part 3 p2pfs time to first byte", p2pfs_first_bytes)
            b.record(3, "p2pfs", 1, "time to first byte", "s", first)
            if ngx:
                for r in range(runs):
                    v = b.attempt("part 3 nginx time to first byte", ngx.get, 1, "big", ("-r", "0-0"))
                    ngx_first.append(v[0] if v else None)
                b.record(3, "nginx", 1, "time to first byte", "s", ngx_first)
            os.unlink(big)
            listed = []

            def listing_delay(k):
                name = f"new{k}"
                with open(sw.nodes[0].path(name), "wb") as f:
                    f.write(os.urandom(4096))
                t0 = time.monotonic()
                wait_until(lambda: size_of(sw.nodes[1].path(name)) == 4096, 30,
                           f"{name} to be listed on node 1", interval=0.01)
                return time.monotonic() - t0
            for k in range(listing_samples):
                listed.append(b.attempt("part 3 listing delay", listing_delay, k))
                time.sleep(0.3)
            b.record(3, "p2pfs", 1, "new file listed elsewhere", "s", listed)

        stats = [sw.stat(nd) for nd in sw.nodes]
        logs = sw.logs()
    finally:
        cleanup.run()

    report(b, out, dict(size1=size1, size2=size2, size3=size3, ns=ns, runs=runs, shaped=shaped,
                        piece=piece, quick=a.quick, listing_samples=listing_samples,
                        gnuplot=have["gnuplot"], seconds=time.monotonic() - t_start,
                        busy=busy0, parts=parts,
                        stats=stats, logs=logs))
    if b.failures:
        print("\nbench_swarm: failed measures:\n  " + "\n  ".join(b.failures))
        return 1
    return 0


def fmt(v, spec):
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def report(b, out, c):
    nan = float("nan")
    mode = "quick smoke run, 1 run each" if c["quick"] else \
        f"median of {c['runs']} runs each (nginx in part 2: 1 run)"
    print(f"\np2pfs between nodes, beside nginx + curl and libtorrent ({mode}); every node in "
          f"its own network namespace on one bridge, node 0 holds the data. Timed reads discard "
          f"the bytes (p2pfs read loop on the mount, curl -o /dev/null); libtorrent writes to "
          f"its download directory. Part 2 is {c['size2'] >> 20} MiB per run"
          f"{', every uplink shaped to %d Mbit/s (tbf)' % RATE_MBIT if c['shaped'] else ', NOT shaped'}"
          f"; p2pfs readers hash what they read (SHA-256, checked).\n")
    print("| measure | p2pfs | nginx + curl | libtorrent | ratio | target | met |")
    print("|---|---|---|---|---|---|---|")
    P, G, T = (b.get(1, s, measure="cold read") for s in ("p2pfs", "nginx", "libtorrent"))
    lbl = f"1. cold read, {c['size1'] >> 20} MiB, 1 holder → 1 reader, unshaped (MB/s)"
    print(f"| {lbl} | {fmt(P, '.0f')} | {fmt(G, '.0f')} | {fmt(T, '.0f')} | "
          f"p2pfs/nginx {fmt(P / G if G else nan, '.2f')} | ≥ 0.70 | {met(P / G if G else nan, 0.7)} |")
    print(f"| | | | | p2pfs/libtorrent {fmt(P / T if T else nan, '.2f')} | ≥ 2 | "
          f"{met(P / T if T else nan, 2)} |")
    G2, T2 = (b.get(1, s, measure="cold read, holder from disk") for s in ("nginx", "libtorrent"))
    print(f"| 1b. the same, every holder reading from disk (page cache dropped; p2pfs's holder "
          f"always does) | {fmt(P, '.0f')} | {fmt(G2, '.0f')} | {fmt(T2, '.0f')} | "
          f"p2pfs/nginx {fmt(P / G2 if G2 else nan, '.2f')}, p2pfs/libtorrent "
          f"{fmt(P / T2 if T2 else nan, '.2f')} | reported | |")
    for n in c["ns"]:
        P, G, T = (b.get(2, s, n) for s in ("p2pfs", "nginx", "libtorrent"))
        bound = max(c["size2"] * 8 / (RATE_MBIT * 1e6), n * c["size2"] * 8 / ((n + 1) * RATE_MBIT * 1e6))
        lbl = (f"2. {c['size2'] >> 20} MiB to N = {n} reader{'s' if n > 1 else ''} at once, "
               f"bound {bound:.2f} s (s, ×bound)")
        if not c["shaped"]:
            lbl = f"2. {c['size2'] >> 20} MiB to N = {n} at once, unshaped (s)"
        cell = lambda v: fmt(v, ".2f") + (f" ({fmt(v / bound, '.2f')}×)" if c["shaped"] and
                                          not math.isnan(v) else "")
        ok = (P / bound <= 1.15 if c["shaped"] else True) and (math.isnan(T) or P < T)
        print(f"| {lbl} | {cell(P)} | {cell(G)} | {cell(T)} | p2pfs/bound "
              f"{fmt(P / bound, '.2f') if c['shaped'] else '—'}, p2pfs/libtorrent "
              f"{fmt(P / T if T else nan, '.2f')} | ≤ 1.15×bound, < libtorrent | "
              f"{'—' if math.isnan(P) else ('yes' if ok else 'NO')} |")
    P, G = b.get(3, "p2pfs", measure="time to first byte"), b.get(3, "nginx")
    print(f"| 3. time to first byte of a remote {c['size3'] >> 20} MiB file (ms) | "
          f"{fmt(P * 1e3, '.1f')} | {fmt(G * 1e3, '.1f')} | — | p2pfs/nginx "
          f"{fmt(P / G if G else nan, '.1f')} | reported | |")
    P = b.get(3, "p2pfs", measure="new file listed elsewhere")
    print(f"| 3. new file on the holder listed on another node (ms, median of "
          f"{c['listing_samples']}) | {fmt(P * 1e3, '.0f')} | — | — | — | reported | |")
    print()
    floor = b.get(2, "nginx", min(c["ns"]))
    if c["shaped"] and not math.isnan(floor) and min(c["ns"]) == 1:
        print(f"nginx to one reader takes {floor / (c['size2'] * 8 / (RATE_MBIT * 1e6)):.2f}× the "
              f"bound: TCP/IP headers on the shaped link (tbf counts whole frames), a floor for "
              f"every system here.")
    print("Bytes the holder sent per byte of file in part 2 (median; 1.0 = each byte once): " +
          "; ".join(f"N = {r['n']}: {r['system']} {fmt(r.get('source_sent'), '.2f')}"
                    for r in b.rows if r["part"] == 2 and r["system"] != "nginx"))
    if c["piece"]:
        print("libtorrent piece size: " + ", ".join(f"part {k}: {v >> 10} KiB"
                                                    for k, v in sorted(c["piece"].items())))
    print("All runs (for the spread): " + "; ".join(
        f"{r['part']}/{r['system']}/N={r['n']}/{r['measure']}: " +
        " ".join(fmt(x, '.3f') for x in r["runs"]) for r in b.rows))
    st = c["stats"]
    print("p2pfs swarm counters at the end: " + "; ".join(
        f"node {i}: fetched {s['fetched_bytes'] >> 20} MiB, served {s['served_bytes'] >> 20} MiB, "
        f"stalls {s['stalls']}, failed {s['fetch_failed']}, bad {s['bad_chunks']}"
        for i, s in enumerate(st)))
    if c["logs"]:
        print("p2pfs daemons' log lines at warn level or above (count, pattern, first one):")
        for pat, (k, first) in sorted(c["logs"].items(), key=lambda kv: -kv[1][0]):
            print(f"  {k:>5}  {pat}\n         {first}")
    print(f"bench_swarm took {c['seconds']:.0f} s; the CPUs were {c['busy']:.0%} busy with "
          f"other work in the second before it started")

    csv = os.path.join(out, "bench_swarm.csv")
    with open(csv, "w") as f:
        f.write("part,system,n,measure,unit,median,runs,bound,median_over_bound,source_sent\n")
        for r in b.rows:
            bound = r.get("bound")
            f.write(f"{r['part']},{r['system']},{r['n']},{r['measure']},{r['unit']},"
                    f"{r['median']:.6g},{' '.join(fmt(x, '.6g') for x in r['runs'])},"
                    f"{fmt(bound, '.6g') if bound else ''},"
                    f"{fmt(r['median'] / bound, '.4g') if bound else ''},"
                    f"{fmt(r.get('source_sent'), '.4g') if 'source_sent' in r else ''}\n")
    print(f"\nCSV: {csv}")
    if c["gnuplot"] and c["parts"] >= {1, 2}:
        png = plot(b, out, c)
        if png:
            print(f"plot: {png}")


def met(v, lo):
    return "—" if math.isnan(v) else ("yes" if v >= lo else "NO")


def plot(b, out, c):
    d1 = os.path.join(out, "part1.dat")
    with open(d1, "w") as f:
        for s in ("p2pfs", "nginx", "libtorrent"):
            # p2pfs's holder reads from disk either way: one measure for both.
            v1 = b.get(1, s, measure="cold read")
            v2 = v1 if s == "p2pfs" else b.get(1, s, measure="cold read, holder from disk")
            name = {"p2pfs": "p2pfs (disk)", "nginx": "nginx+curl"}.get(s, s)
            f.write(f'"{name}" ' +
                    " ".join(fmt(v, ".1f").replace("—", "NaN") for v in (v1, v2)) + "\n")
    d2 = os.path.join(out, "part2.dat")
    with open(d2, "w") as f:
        for n in c["ns"]:
            vals = []
            for s in ("p2pfs", "libtorrent", "nginx"):
                r = [x for x in b.rows if x["part"] == 2 and x["system"] == s and x["n"] == n]
                v = r[0]["median"] / r[0]["bound"] if r and c["shaped"] else \
                    (r[0]["median"] if r else float("nan"))
                vals.append("NaN" if math.isnan(v) else f"{v:.3f}")
            f.write(f'"N = {n}" ' + " ".join(vals) + "\n")
    png = os.path.join(out, "bench_swarm.png")
    ylabel = "time / Kumar-Ross bound" if c["shaped"] else "seconds (unshaped)"
    script = f"""
set terminal png size 1200,480 font ",11"
set output "{png}"
set datafile missing "NaN"
set multiplot layout 1,2 title "p2pfs between nodes (network namespaces on one bridge)"
set style fill solid 0.8 border -1
set grid ytics
set yrange [0:*]
set offsets 0, 0, graph 0.15, 0
set style data histogram
set style histogram clustered gap 1
set key inside top right
set title "1. cold read, {c['size1'] >> 20} MiB, 1 holder -> 1 reader, unshaped"
set ylabel "MB/s"
plot "{d1}" using 2:xtic(1) title "file in the holder's page cache" lc rgb "#3070b0", \\
     "" using 3 title "holder reads it from disk" lc rgb "#90b8e0", \\
     "" using ($0-0.17):2:(sprintf("%.0f", $2)) with labels offset 0,0.8 notitle, \\
     "" using ($0+0.17):3:(sprintf("%.0f", $3)) with labels offset 0,0.8 notitle
set title "2. {c['size2'] >> 20} MiB to N readers at once, {RATE_MBIT} Mbit/s uplinks"
set ylabel "{ylabel}"
set autoscale x
set offsets 0, 0, 0, 0
set key outside bottom center horizontal
plot "{d2}" using 2:xtic(1) title "p2pfs" lc rgb "#3070b0", \\
     "" using 3 title "libtorrent" lc rgb "#c05030", \\
     "" using 4 title "nginx (client-server)" lc rgb "#909090", \\
     {"1.15 with lines lw 2 lc rgb '#d02020' title 'target', 1 with lines lw 2 lc rgb 'black' title 'bound'" if c["shaped"] else "NaN notitle"}
unset multiplot
"""
    gp = os.path.join(out, "bench_swarm.gp")
    with open(gp, "w") as f:
        f.write(script)
    r = subprocess.run(["gnuplot", gp], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        print(f"bench_swarm: gnuplot failed: {r.stderr.strip()}")
        return None
    return png


if __name__ == "__main__":
    sys.exit(main())
