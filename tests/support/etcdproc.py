"""Real etcd processes for tests: one member or a loopback cluster, always cleaned up.

Usage:
    proc = EtcdProcess().start()        # free client/peer ports, own temp data dir
    proc.endpoint                       # "http://127.0.0.1:<port>"
    proc.etcdctl("put", "/k", "v")      # runs etcdctl against this member
    proc.stop(); proc.restart()         # SIGTERM / restart with the same data and ports
    proc.kill()                         # SIGKILL
    members = start_cluster(3); leader(members).kill()

Every wait is bounded; every process started here is killed at interpreter exit even
if a test forgets to stop it, and its temporary data directory is removed.
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Sequence

from dnsdisco.etcd.embedded import binary
from tests.support.netns import free_port  # a port free for UDP and TCP is free for etcd's TCP listeners too

# Fast, test-only settings: no fsync (data loss on power cut is irrelevant here), quick
# elections, a short progress-notify interval so idle watches advance, quiet logs.
TEST_FLAGS = (
    "--unsafe-no-fsync",
    "--heartbeat-interval=50",
    "--election-timeout=500",
    "--experimental-watch-progress-notify-interval=1s",
    "--log-level=warn",
)

_live: set["EtcdProcess"] = set()


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on host:port (connections in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@dataclass(frozen=True)
class TLSFiles:
    """PEM files made by make_tls(): one CA and one certificate for 127.0.0.1/localhost that
    serves as both the etcd server and the client certificate."""
    ca: str
    cert: str
    key: str


def make_tls(directory: str) -> TLSFiles:
    """A throwaway CA and a server+client certificate for 127.0.0.1, made with openssl."""
    os.makedirs(directory, exist_ok=True)
    p = lambda name: os.path.join(directory, name)  # noqa: E731
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    with open(p("ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                "extendedKeyUsage=serverAuth,clientAuth\n")
    for cmd in (
        ["req", "-x509", *ec, "-keyout", p("ca.key"), "-out", p("ca.pem"), "-days", "2",
         "-subj", "/CN=dnsdisco test CA"],
        ["req", *ec, "-keyout", p("node.key"), "-out", p("node.csr"), "-subj", "/CN=root"],
        ["x509", "-req", "-in", p("node.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"),
         "-CAcreateserial", "-out", p("node.pem"), "-days", "2", "-extfile", p("ext.cnf")],
    ):
        subprocess.run(["openssl", *cmd], check=True, capture_output=True, timeout=30)
    return TLSFiles(p("ca.pem"), p("node.pem"), p("node.key"))


def health(endpoint: str, timeout: float = 1.0, tls: TLSFiles | None = None) -> bool:
    """True when the member behind `endpoint` reports itself healthy."""
    context = None
    if tls is not None:
        context = ssl.create_default_context(cafile=tls.ca)
        context.load_cert_chain(tls.cert, tls.key)
    try:
        with urllib.request.urlopen(endpoint + "/health", timeout=timeout,
                                    context=context) as resp:
            return json.loads(resp.read().decode()).get("health") == "true"
    except (OSError, ValueError, urllib.error.URLError):
        return False


class EtcdProcess:
    """One etcd member on loopback with its own ports and temporary data directory.

    With `tls` (see make_tls) the client URL is https and clients must present a
    certificate signed by the CA (--client-cert-auth); peers stay plain http.
    """

    def __init__(self, name: str = "default", *, client_port: int | None = None,
                 peer_port: int | None = None, initial_cluster: str | None = None,
                 extra_args: Sequence[str] = (), tls: TLSFiles | None = None):
        self.tls = tls
        self.name = name
        self.client_port = client_port or free_port()
        self.peer_port = peer_port or free_port()
        self.initial_cluster = initial_cluster or f"{name}={self.peer_url}"
        self.extra_args = tuple(extra_args)
        self.data_dir = tempfile.mkdtemp(prefix=f"etcd-{name}-")
        self.log_path = os.path.join(self.data_dir, "etcd.log")
        self.proc: subprocess.Popen | None = None
        self._started_once = False

    @property
    def endpoint(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def command(self) -> list[str]:
        return [
            binary("etcd"),
            "--name", self.name,
            "--data-dir", os.path.join(self.data_dir, "data"),
            "--listen-client-urls", self.endpoint,
            "--advertise-client-urls", self.endpoint,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", self.initial_cluster,
            "--initial-cluster-state", "new",
            "--initial-cluster-token", "dnsdisco-test",
            "--log-outputs", self.log_path,
            *self._tls_flags(),
            *TEST_FLAGS,
            *self.extra_args,
        ]

    def _tls_flags(self) -> list[str]:
        if not self.tls:
            return []
        return ["--cert-file", self.tls.cert, "--key-file", self.tls.key,
                "--trusted-ca-file", self.tls.ca, "--client-cert-auth"]

    def start(self, wait: bool = True, timeout: float = 15.0) -> "EtcdProcess":
        """Start the member (same data and ports on a restart); wait until healthy."""
        if self.running:
            return self
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._started_once = True
        _live.add(self)
        if wait:
            self.wait_ready(timeout)
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Poll /health until it answers true; raise with the log tail if it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"etcd {self.name} exited with {self.proc.returncode}:\n"
                                   + self.log_tail())
            if health(self.endpoint, timeout=0.5, tls=self.tls):
                return
            time.sleep(0.05)
        raise TimeoutError(f"etcd {self.name} not healthy after {timeout}s at "
                           f"{self.endpoint}:\n" + self.log_tail())

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait (SIGKILL after `timeout`); data and ports are kept."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self._signal(signal.SIGKILL, 10.0)

    def _signal(self, sig: int, timeout: float) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def restart(self, timeout: float = 15.0) -> "EtcdProcess":
        self.stop()
        return self.start(timeout=timeout)

    def cleanup(self) -> None:
        """Kill the process and delete its data directory."""
        self.kill()
        _live.discard(self)
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def etcdctl(self, *args: str, check: bool = True, timeout: float = 15.0,
                endpoints: str | None = None) -> str:
        """Run etcdctl against this member (or `endpoints`); return stdout."""
        tls = ([f"--cacert={self.tls.ca}", f"--cert={self.tls.cert}", f"--key={self.tls.key}"]
               if self.tls else [])
        cmd = [binary("etcdctl"), f"--endpoints={endpoints or self.endpoint}",
               "--dial-timeout=2s", "--command-timeout=5s", *tls, *args]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                             env={**os.environ, "ETCDCTL_API": "3"})
        if check and res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()}")
        return res.stdout

    def status(self) -> dict:
        """`etcdctl endpoint status` as a dict (keys: header, leader, ...)."""
        out = self.etcdctl("endpoint", "status", "-w", "json")
        return json.loads(out)[0]["Status"]

    def is_leader(self) -> bool:
        try:
            st = self.status()
        except (RuntimeError, ValueError, subprocess.TimeoutExpired):
            return False
        return st["leader"] == st["header"]["member_id"]

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> "EtcdProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        return f"EtcdProcess({self.name!r}, {self.endpoint})"


def enable_auth_with_reader(proc: "EtcdProcess", prefix: str = "/skydns/") -> None:
    """Turn etcd auth on with users root:rootpw and reader:readerpw; reader may read `prefix` only."""
    proc.etcdctl("user", "add", "root:rootpw")
    proc.etcdctl("user", "add", "reader:readerpw")
    proc.etcdctl("role", "add", "read-skydns")
    proc.etcdctl("role", "grant-permission", "read-skydns", "--prefix=true", "read", prefix)
    proc.etcdctl("user", "grant-role", "reader", "read-skydns")
    proc.etcdctl("auth", "enable")


def start_cluster(n: int = 3, timeout: float = 30.0,
                  extra_args: Sequence[str] = ()) -> list[EtcdProcess]:
    """Start an n-member cluster on loopback and wait until every member is healthy."""
    names = [f"m{i}" for i in range(n)]
    ports = [(free_port(), free_port()) for _ in names]
    initial = ",".join(f"{nm}=http://127.0.0.1:{pp}" for nm, (_, pp) in zip(names, ports))
    members = [EtcdProcess(nm, client_port=cp, peer_port=pp, initial_cluster=initial,
                           extra_args=extra_args) for nm, (cp, pp) in zip(names, ports)]
    try:
        for m in members:          # all must be running before any can elect a leader
            m.start(wait=False)
        for m in members:
            m.wait_ready(timeout)
    except BaseException:
        for m in members:
            m.cleanup()
        raise
    return members


def leader(members: Sequence[EtcdProcess], timeout: float = 10.0) -> EtcdProcess:
    """The running member that is the raft leader (waits for an election, bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in members:
            if m.running and m.is_leader():
                return m
        time.sleep(0.1)
    raise TimeoutError(f"no leader among {members} after {timeout}s")


def endpoints(members: Sequence[EtcdProcess]) -> list[str]:
    return [m.endpoint for m in members]


@atexit.register
def _cleanup_all() -> None:
    for p in list(_live):
        p.cleanup()
