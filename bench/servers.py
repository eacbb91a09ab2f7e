"""Start and stop the processes under test: etcd, dnsdisco, Knot DNS, dnsmasq, the dnslib floor.

Every process is started in its own session and registered with a `Supervisor`, which
stops them all (TERM, then KILL after a bounded wait) on exit, on Ctrl-C and on SIGTERM.
Everything listens on 127.0.0.1 on free ports.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from dnsdisco.etcd.embedded import binary as etcd_binary

from . import dataset, probe

REPO_ROOT = Path(__file__).resolve().parent.parent


class StartError(RuntimeError):
    """A server could not be started; the message says which and why."""


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (DNS servers bind both)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                    u.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise StartError("no free port on 127.0.0.1")


def cpu_seconds(pid: int) -> tuple[float, float] | None:
    """(user, system) CPU seconds a process has used, from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def rss_kib(pid: int) -> int | None:
    """VmRSS of a process in KiB, from /proc/<pid>/status."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def children_of(pid: int) -> list[int]:
    """The direct children of a process, from /proc/<pid>/task/*/children."""
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                out += [int(x) for x in (task / "children").read_text().split()]
            except OSError:
                continue
    except OSError:
        return []
    return out


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen
    log: Path
    workdir: Path
    extra: dict = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_mib(self) -> float | None:
        """VmRSS of the server and its child processes (dnsdisco's etcd helper) together."""
        kib = rss_kib(self.pid)
        if kib is None:
            return None
        return (kib + sum(rss_kib(child) or 0 for child in children_of(self.pid))) / 1024

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Supervisor:
    """Owns every child process and temp dir; `close()` is idempotent and always bounded."""

    def __init__(self, keep: bool = False):
        self.root = Path(tempfile.mkdtemp(prefix="dnsdisco-bench-"))
        self.keep = keep
        self.servers: list[Server] = []
        self._closed = False

    def __enter__(self):
        self._old_term = signal.signal(signal.SIGTERM, self._on_term)
        return self

    def __exit__(self, *exc):
        self.close()
        signal.signal(signal.SIGTERM, self._old_term)

    def _on_term(self, signum, frame):
        raise KeyboardInterrupt("SIGTERM")

    def workdir(self, name: str) -> Path:
        d = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.root))
        return d

    def spawn(self, name: str, cmd: list[str], port: int, workdir: Path, env=None) -> Server:
        log = workdir / "output.log"
        fh = open(log, "wb")
        try:
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=workdir, env=env, start_new_session=True)
        except OSError as exc:
            raise StartError(f"{name}: cannot run {cmd[0]}: {exc}") from None
        finally:
            fh.close()
        srv = Server(name, port, proc, log, workdir)
        self.servers.append(srv)
        return srv

    def stop(self, srv: Server, timeout: float = 5.0) -> None:
        if srv.proc.poll() is None:
            try:
                os.killpg(srv.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                srv.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(srv.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                srv.proc.wait(timeout)
        if srv in self.servers:
            self.servers.remove(srv)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for srv in list(reversed(self.servers)):
            try:
                self.stop(srv)
            except Exception as exc:  # keep stopping the others
                print(f"bench: could not stop {srv.name} (pid {srv.pid}): {exc}", file=sys.stderr)
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)


def wait_idle(pid: int, share: float = 0.05, window: float = 1.0, timeout: float = 60.0) -> float:
    """Wait until the process `pid` used under `share` of one CPU over `window` seconds (etcd
    persisting a load it has just taken), at most `timeout` seconds; return the seconds
    waited. A server started before that would have its start measured against that work."""
    start = time.monotonic()
    deadline = start + timeout
    before = cpu_seconds(pid)
    while before is not None and time.monotonic() < deadline:
        time.sleep(window)
        after = cpu_seconds(pid)
        if after is None or sum(after) - sum(before) < share * window:
            break
        before = after
    return time.monotonic() - start


def wait_until(check, timeout: float, interval: float = 0.02, what: str = "") -> float:
    """Poll `check()` until it is true; return the seconds it took. Raises StartError on timeout."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        if check():
            return time.monotonic() - start
        if time.monotonic() > deadline:
            raise StartError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# --- etcd ----------------------------------------------------------------------------------

def start_etcd(sup: Supervisor, name: str = "etcd") -> Server:
    try:
        etcd_bin = etcd_binary("etcd")
    except Exception as exc:  # EmbeddedError names what to install
        raise StartError(f"etcd: {exc}") from None
    port, peer = free_port(), free_port()
    wd = sup.workdir(name)
    url, purl = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{peer}"
    cmd = [etcd_bin, "--name", "bench", "--data-dir", str(wd / "data"),
           "--listen-client-urls", url, "--advertise-client-urls", url,
           "--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl,
           "--initial-cluster", f"bench={purl}", "--log-level", "error",
           "--max-txn-ops", "1024", "--quota-backend-bytes", str(8 * 1024 ** 3),
           # a throwaway etcd: skip fsync so loading 200,000 keys is quick. Freshness is
           # measured from the put returning, so this does not flatter the server under test.
           "--unsafe-no-fsync"]
    srv = sup.spawn(name, cmd, port, wd)
    srv.extra["endpoint"] = url

    def ready():
        if not srv.alive():
            raise StartError(f"etcd exited:\n{srv.log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False
    wait_until(ready, 20, what="etcd to listen")
    return srv


# --- DNS servers ---------------------------------------------------------------------------

def wait_dns(srv: Server, qname: str, timeout: float) -> float:
    """Seconds from now until `srv` answers A `qname` with NOERROR and an answer."""
    q = probe.Prober(srv.port)
    try:
        def ok():
            if not srv.alive():
                raise StartError(f"{srv.name} exited (code {srv.proc.returncode}):\n{srv.log_tail()}")
            rcode, ancount = q.ask_header(qname, "A", timeout=0.2)
            return rcode == 0 and ancount > 0
        return wait_until(ok, timeout, interval=0.01, what=f"{srv.name} to answer {qname}")
    finally:
        q.close()


def pinned(cmd: list[str], cpus: str | None) -> list[str]:
    """`cmd` run on the CPUs `cpus` (a taskset list such as "0" or "1,3"), or as it is for None.
    taskset sets the affinity and execs the command, so the process keeps taskset's pid and
    what it starts inherits the same CPUs."""
    return ["taskset", "-c", cpus, *cmd] if cpus else list(cmd)


def split_cpus() -> tuple[str | None, str | None]:
    """(the servers' CPU, the load's CPUs) as taskset lists: the first CPU this process may run
    on for the servers, the others for dnsperf; (None, None) with a single CPU (nothing pinned)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return str(cpus[0]), ",".join(map(str, cpus[1:]))


def pin_running(srv: Server, cpus: str) -> None:
    """Move a running server, every thread of it and of its child processes (dnsdisco's etcd
    helper), onto `cpus`: what `pinned` does at start, for a process that started unpinned."""
    pids = [srv.pid]
    seen = set()
    while pids:
        pid = pids.pop()
        if pid in seen:
            continue
        seen.add(pid)
        subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], check=True, timeout=10,
                       stdout=subprocess.DEVNULL)
        pids += children_of(pid)


def start_dnsdisco(sup: Supervisor, etcd_endpoint: str, *, extra_args=(), name="dnsdisco",
                   cpus: str | None = None, tree: str | None = None) -> Server:
    """`python -m dnsdisco serve` from this checkout, or from `tree` (another checkout, for a
    side-by-side run), on `cpus` if given; the start time is kept in extra['t0']."""
    port = free_port()
    wd = sup.workdir(name)
    env = dict(os.environ, PYTHONPATH=str(tree or REPO_ROOT))
    cmd = pinned([sys.executable, "-m", "dnsdisco", "serve", "--etcd", etcd_endpoint,
                  "--listen", f"127.0.0.1:{port}", "--zone", dataset.ZONE, *extra_args], cpus)
    t0 = time.monotonic()
    srv = sup.spawn(name, cmd, port, wd, env=env)
    srv.extra["t0"] = t0
    srv.extra["cmd"] = cmd
    return srv


def warm_etcd(sup: Supervisor, etcd_endpoint: str, last_name: str, timeout: float = 180) -> float:
    """One throwaway start of this checkout's serve on a freshly loaded etcd, until
    `last_name` answers, then stopped; the seconds it took. The first listing after a load
    is slower than every later one, whichever checkout makes it (docs/benchmarks.md, the
    start → ready pairs): a restart meets an etcd that has served before, and without this
    the first server measured would pay for the difference."""
    srv = start_dnsdisco(sup, etcd_endpoint, name="warm-etcd")
    try:
        return wait_dns(srv, last_name, timeout)
    finally:
        sup.stop(srv)


def start_floor(sup: Supervisor, etcd_endpoint: str, name="floor", cpus: str | None = None) -> Server:
    """bench/dnslib_floor.py: dnslib's threaded DNSServer fed by list + watch of the same keys."""
    port = free_port()
    wd = sup.workdir(name)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    cmd = pinned([sys.executable, "-m", "bench.dnslib_floor", "--etcd", etcd_endpoint, "--port", str(port)], cpus)
    t0 = time.monotonic()
    srv = sup.spawn(name, cmd, port, wd, env=env)
    srv.extra["t0"] = t0
    return srv


KNOT_CONF = """\
server:
    rundir: "{wd}"
    listen: 127.0.0.1@{port}
    tcp-max-clients: 2000
database:
    storage: "{wd}/db"
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: "{wd}"
    semantic-checks: off
    journal-content: none
    zonefile-sync: -1
zone:
  - domain: {zone}
    file: "{zone}.zone"
"""


def start_knot(sup: Supervisor, ds: dataset.Dataset) -> Server:
    if not shutil.which("knotd"):
        raise StartError("knot: no `knotd` on PATH (apt-get install knot)")
    port = free_port()
    wd = sup.workdir("knot")
    (wd / f"{dataset.ZONE}.zone").write_text(dataset.zone_file(ds))
    (wd / "knot.conf").write_text(KNOT_CONF.format(wd=wd, port=port, zone=dataset.ZONE))
    srv = sup.spawn("knot", ["knotd", "-c", str(wd / "knot.conf")], port, wd)
    wait_dns(srv, ds.last_name(), 120)
    return srv


def start_dnsmasq(sup: Supervisor, ds: dataset.Dataset, auth: bool = False) -> Server:
    if not shutil.which("dnsmasq"):
        raise StartError("dnsmasq: no `dnsmasq` on PATH (apt-get install dnsmasq)")
    port = free_port()
    wd = sup.workdir("dnsmasq")
    conf = wd / "dnsmasq.conf"
    conf.write_text(dataset.dnsmasq_conf(ds, port, auth=auth))
    srv = sup.spawn("dnsmasq", ["dnsmasq", f"--conf-file={conf}", "--pid-file="], port, wd)
    wait_dns(srv, ds.last_name(), 120)
    return srv


def versions() -> dict[str, str]:
    from . import dnsperf

    def first_line(cmd):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "not installed"
    try:
        etcd_v = first_line([etcd_binary("etcd"), "--version"])
    except Exception:
        etcd_v = "not found"
    return {
        "knotd": first_line(["knotd", "-V"]),
        "dnsmasq": re.sub(r"\s+Copyright.*", "", first_line(["dnsmasq", "-v"])),
        "dnsperf": dnsperf.version(),
        "etcd": etcd_v,
        "python": sys.version.split()[0],
    }
