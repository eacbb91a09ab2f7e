"""HAProxy and nginx (Debian's packages) in front of real registered backends, configured by
the recipes of docs/gateways.md: requests spread over the instances, a new instance gets
traffic within seconds, and a killed one stops getting it within lease + DNS TTL.

Each backend is a small HTTP server on its own loopback address (127.0.10.N, one port for
all, as HAProxy's A mode needs); each is registered by a real `dnsdisco register` process.
"""
from __future__ import annotations

import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.harness import ROOT, ServeProcess, child_env, dnsdisco_cmd, free_port

DOC = ROOT / "docs" / "gateways.md"
LEASE = 2
PREFIX = "/gw"


def recipe(kind: str) -> str:
    """The fenced ```kind block of docs/gateways.md (the first one)."""
    match = re.search(rf"```{kind}\n(.*?)```", DOC.read_text(), re.S)
    assert match, f"docs/gateways.md has no ```{kind} block"
    return match.group(1)


class Backend:
    """An HTTP server answering its own name, on 127.0.10.<n>:port."""

    def __init__(self, n: int, port: int):
        self.name = f"b{n}"
        self.address = f"127.0.10.{n}"
        name = self.name

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = name.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((self.address, port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class Registrar:
    """`dnsdisco register web.svc.local` for one backend, lease LEASE seconds."""

    def __init__(self, etcd, backend: Backend, port: int):
        argv = ["register", "web.svc.local", "--etcd", etcd.endpoint, "--prefix", PREFIX,
                "--address", backend.address, "--port", str(port), "--ttl", str(LEASE), "--id", backend.name]
        self.proc = subprocess.Popen(dnsdisco_cmd(*argv), env=child_env(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT, cwd=str(ROOT))

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class Traffic:
    """A client asking the gateway every 20 ms; remembers which backend answered when."""

    def __init__(self, url: str):
        self.url = url
        self.hits: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=2) as reply:
                    self.hits.append((time.monotonic(), reply.read().decode()))
            except Exception:
                self.hits.append((time.monotonic(), "error"))
            self._stop.wait(0.02)

    def seen_since(self, since: float) -> set[str]:
        return {who for at, who in list(self.hits) if at >= since}

    def last(self, who: str) -> float | None:
        times = [at for at, name in list(self.hits) if name == who]
        return times[-1] if times else None

    def stop(self):
        self._stop.set()
        self.thread.join(5)


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(scope="module")
def fleet(etcd):
    port = free_port()
    # --hold-fraction 0: the 40-instance test removes its fleet at once, which the mass-expiry
    # guard (tests/unit/etcd/test_guard.py) would hold for the tests after it
    serve = ServeProcess(etcd.endpoint, "--prefix", PREFIX, "--ttl", "1", "--hold-fraction", "0").start()
    backends = [Backend(n, port) for n in range(1, 6)]
    registrars = {}
    yield serve, backends, registrars, port
    for registrar in registrars.values():
        registrar.stop()
    for backend in backends:
        backend.stop()
    serve.stop()


def _register(etcd, fleet, names):
    serve, backends, registrars, port = fleet
    for backend in backends:
        if backend.name in names and backend.name not in registrars:
            registrars[backend.name] = Registrar(etcd, backend, port)


def _unregister_all(fleet):
    _serve, _backends, registrars, _port = fleet
    for registrar in registrars.values():
        registrar.stop()
    registrars.clear()


def _spread_new_and_killed(etcd, fleet, traffic: Traffic):
    _serve, _backends, registrars, _port = fleet
    wait_until(lambda: {"b1", "b2", "b3"} <= traffic.seen_since(time.monotonic() - 3), 20,
               "traffic to all three instances")
    time.sleep(1)                                      # every slot filled for a while
    start = time.monotonic()
    time.sleep(3)
    window = [who for at, who in list(traffic.hits) if at >= start]
    for name in ("b1", "b2", "b3"):                    # a fair share is a third; ask for a quarter of it
        assert window.count(name) >= len(window) // 12, f"{name} got {window.count(name)} of {len(window)}: {window}"
    assert "error" not in window

    added = time.monotonic()
    _register(etcd, fleet, {"b4"})
    wait_until(lambda: "b4" in traffic.seen_since(added), 10, "the new instance to get traffic")
    new_after = min(at for at, who in traffic.hits if who == "b4" and at >= added) - added

    killed = time.monotonic()
    registrars.pop("b1").kill()                        # its registrar dies; the backend still answers
    wait_until(lambda: (traffic.last("b1") or 0) < time.monotonic() - 2, LEASE + 1 + 10,
               "the killed instance to stop getting traffic")
    gone_after = traffic.last("b1") - killed
    assert gone_after <= LEASE + 1 + 2, f"the killed instance got traffic {gone_after:.1f} s after the kill"
    return new_after, gone_after


def _haproxy_config(tmp_path: Path, dns_port: int, backend_port: int, listen: int, srv: bool) -> Path:
    text = recipe("haproxy").replace("127.0.0.1:5300", f"127.0.0.1:{dns_port}") \
        .replace("127.0.0.1:8000", f"127.0.0.1:{listen}").replace(":8080", f":{backend_port}")
    if srv:
        text = text.replace("default_backend web\n", "default_backend web_srv\n")
    path = tmp_path / "haproxy.cfg"
    path.write_text(text)
    return path


def _gateway(cmd: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT)


def _drive(etcd, fleet, cmd: list[str], log: Path, listen: int, label: str) -> None:
    """Run the gateway `cmd` and check it against the fleet as clients would see it."""
    proc = _gateway(cmd, log)
    traffic = Traffic(f"http://127.0.0.1:{listen}/")
    try:
        new_after, gone_after = _spread_new_and_killed(etcd, fleet, traffic)
        print(f"{label}: new instance served after {new_after:.1f} s, killed one last served {gone_after:.1f} s "
              f"after the kill")
    finally:
        traffic.stop()
        _stop(proc)
        _unregister_all(fleet)


def _stop(proc: subprocess.Popen):
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed (Debian package haproxy)")
@pytest.mark.parametrize("srv", [False, True], ids=["a-mode", "srv-mode"])
def test_haproxy_server_template(etcd, fleet, tmp_path, srv):
    serve, _backends, _registrars, port = fleet
    _unregister_all(fleet)
    _register(etcd, fleet, {"b1", "b2", "b3"})
    listen = free_port()
    config = _haproxy_config(tmp_path, serve.port, port, listen, srv)
    check = subprocess.run(["haproxy", "-c", "-f", str(config)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    _drive(etcd, fleet, ["haproxy", "-db", "-f", str(config)], tmp_path / "haproxy.log", listen,
           f"haproxy {'SRV' if srv else 'A'} mode")


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed (Debian package nginx)")
def test_nginx_resolver_through_a_variable(etcd, fleet, tmp_path):
    serve, _backends, _registrars, port = fleet
    _unregister_all(fleet)
    _register(etcd, fleet, {"b1", "b2", "b3"})
    listen = free_port()
    text = recipe("nginx").replace("127.0.0.1:5300", f"127.0.0.1:{serve.port}") \
        .replace("127.0.0.1:8000", f"127.0.0.1:{listen}").replace(":8080", f":{port}")
    (tmp_path / "logs").mkdir()
    config = tmp_path / "nginx.conf"
    config.write_text(text)
    globals_ = f"daemon off; master_process on; pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log;"
    check = subprocess.run(["nginx", "-t", "-p", str(tmp_path), "-c", str(config), "-g", globals_],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    _drive(etcd, fleet, ["nginx", "-p", str(tmp_path), "-c", str(config), "-g", globals_], tmp_path / "nginx.log",
           listen, "nginx")


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed (Debian package haproxy)")
def test_haproxy_needs_the_payload_size_for_many_instances(etcd, kv, fleet, tmp_path):
    """40 instances do not fit a 512-octet answer: with the recipe's accepted_payload_size HAProxy
    fills its slots; without it (HAProxy's default, 512) it gets a truncated answer, never asks
    over TCP, and fills none."""
    serve, _backends, _registrars, port = fleet
    _unregister_all(fleet)
    many = [Backend(n, port) for n in range(11, 51)]          # 127.0.10.11 .. 127.0.10.50
    lease = kv.grant(60)
    try:
        for backend in many:
            kv.put(f"{PREFIX}/local/svc/web/{backend.name}", f'{{"host":"{backend.address}"}}'.encode(), lease=lease)
        for with_size in (True, False):
            listen = free_port()
            config = _haproxy_config(tmp_path, serve.port, port, listen, srv=False)
            if not with_size:
                config.write_text(config.read_text().replace("    accepted_payload_size 8192\n", ""))
            proc = _gateway(["haproxy", "-db", "-f", str(config)], tmp_path / f"haproxy-{with_size}.log")
            traffic = Traffic(f"http://127.0.0.1:{listen}/")
            try:
                if with_size:
                    wait_until(lambda: len(traffic.seen_since(0) - {"error"}) >= 5, 20,
                               "HAProxy to spread over the instances")
                else:
                    time.sleep(6)                               # several resolutions: still none
                    assert traffic.seen_since(0) <= {"error"}, traffic.seen_since(0)
            finally:
                traffic.stop()
                _stop(proc)
    finally:
        kv.revoke(lease)
        for backend in many:
            backend.stop()
