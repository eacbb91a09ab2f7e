"""`dnsdisco register` end to end: a real etcd, a real `dnsdisco serve`, real registrar
processes, and DNS clients (dnspython, dig when installed, dnsdisco.resolve_srv).

Timings use short leases (--ttl 2) so the whole module stays fast.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dns.rcode
import dns.rdatatype
import pytest

import dnsdisco
from tests.support.harness import ServeProcess, addresses, child_env, dnsdisco_cmd, free_port, wait_for

ZONE = "svc.local"


@pytest.fixture(scope="module")
def serve(etcd):
    # the registrations of this module come and go in a small zone faster than a fleet would:
    # the mass-expiry guard (tests/unit/etcd/test_guard.py) is off so each deregistration shows at once
    with ServeProcess(etcd.endpoint, "--zone", ZONE, "--neg-ttl", "0", "--hold-fraction", "0") as proc:
        yield proc


class Registrar:
    """A `dnsdisco register` child process; always killed at the end."""

    def __init__(self, etcd, name: str, *args: str, port: int = 8080, ttl: int = 2, wrapped=()):
        self.log = tempfile.NamedTemporaryFile(prefix="dnsdisco-register-", suffix=".log", delete=False)
        argv = ["register", name, "--port", str(port), "--address", "127.0.0.1", "--ttl", str(ttl),
                "--etcd", etcd.endpoint, *args]
        if wrapped:
            argv += ["--", *wrapped]
        self.proc = subprocess.Popen(dnsdisco_cmd(*argv), env=child_env(), stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def wait(self, timeout: float = 10.0) -> int:
        return self.proc.wait(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        os.unlink(self.log.name)


def srv(serve, name):
    reply = serve.query(name, "SRV")
    return [(rd.port, rd.target.to_text()) for rrset in reply.answer
            if rrset.rdtype == dns.rdatatype.SRV for rd in rrset]


def present(serve, name) -> bool:
    reply = serve.query(name, "A")
    return reply.rcode() == dns.rcode.NOERROR and bool(addresses(reply))


def gone(serve, name) -> bool:
    return serve.query(name, "A").rcode() == dns.rcode.NXDOMAIN


def time_until(predicate, timeout: float, what: str) -> float:
    start = time.monotonic()
    wait_for(predicate, timeout, 0.02, what)
    return time.monotonic() - start


# ---------------------------------------------------------------- register, answer, deregister

def test_register_answers_a_and_srv_then_sigterm_removes_at_once(etcd, serve):
    name = f"hello.{ZONE}"
    with Registrar(etcd, name, "--id", "one", "--priority", "5", "--weight", "50", "--text", "v=1",
                   port=8081) as r:
        wait_for(lambda: present(serve, name), 10, what=f"{name} A\n{r.output()}")
        assert addresses(serve.query(name)) == ["127.0.0.1"]
        assert addresses(serve.query(f"one.{name}")) == ["127.0.0.1"]
        reply = serve.query(name, "SRV")
        (rrset,) = [rs for rs in reply.answer if rs.rdtype == dns.rdatatype.SRV]
        (rd,) = list(rrset)
        assert (rd.priority, rd.weight, rd.port, rd.target.to_text()) == (5, 50, 8081, f"one.{name}.")
        assert any(rs.rdtype == dns.rdatatype.A for rs in reply.additional)
        assert dnsdisco.resolve_srv(name, nameserver=("127.0.0.1", serve.port)) == [("127.0.0.1", 8081)]
        assert etcd.etcdctl("get", "--print-value-only", "/skydns/local/svc/hello/one").strip() == \
            '{"host":"127.0.0.1","port":8081,"priority":5,"weight":50,"text":"v=1","ttl":1}'
        # the DNS TTL is bound to the lease (--ttl 2): half of it
        assert {rrset.ttl for rrset in reply.answer} == {1}
        if shutil.which("dig"):
            out = subprocess.run(["dig", "+short", "+time=2", "+tries=1", "@127.0.0.1", "-p", str(serve.port),
                                  "SRV", name], capture_output=True, text=True, timeout=10).stdout
            assert out.split() == ["5", "50", "8081", f"one.{name}."]
        r.proc.send_signal(signal.SIGTERM)
        took = time_until(lambda: gone(serve, name), 1.0, "the record to go after SIGTERM")
        assert r.wait() == 0, r.output()
        print(f"SIGTERM -> NXDOMAIN in {took:.3f}s")


def test_default_id_is_hostname_and_port(etcd, serve):
    name = f"defid.{ZONE}"
    with Registrar(etcd, name, port=9999):
        from dnsdisco.register.record import default_id
        wait_for(lambda: present(serve, f"{default_id(9999)}.{name}"), 10, what="<hostname>-<port> instance")


def test_sigkill_record_expires_within_ttl(etcd, serve):
    name = f"crash.{ZONE}"
    with Registrar(etcd, name, "--id", "c", ttl=2) as r:
        wait_for(lambda: present(serve, name), 10, what=name)
        r.proc.kill()
        r.wait()
        took = time_until(lambda: gone(serve, name), 2 + 1.0, "the record to expire after SIGKILL")
        print(f"SIGKILL -> NXDOMAIN in {took:.3f}s (ttl 2)")


def test_two_instances_both_in_srv(etcd, serve):
    name = f"pair.{ZONE}"
    with Registrar(etcd, name, "--id", "a", port=7001), Registrar(etcd, name, "--id", "b", port=7002):
        wait_for(lambda: len(srv(serve, name)) == 2, 10, what="two SRV records")
        got = dnsdisco.resolve_srv(name, nameserver=("127.0.0.1", serve.port))
        assert sorted(got) == [("127.0.0.1", 7001), ("127.0.0.1", 7002)]


# ---------------------------------------------------------------- losing and regaining the lease

def test_lease_revoked_behind_its_back_comes_back(etcd, serve):
    name = f"revoked.{ZONE}"
    with Registrar(etcd, name, "--id", "r", ttl=3) as r:
        wait_for(lambda: present(serve, name), 10, what=name)
        for lease in etcd.etcdctl("lease", "list").split()[3:]:
            etcd.etcdctl("lease", "revoke", lease)
        wait_for(lambda: gone(serve, name), 3, what="the record to go with its lease")
        took = time_until(lambda: present(serve, name), 5, f"the record back\n{r.output()}")
        assert "granting a new one" in r.output()
        print(f"lease revoked -> record back in {took:.3f}s (ttl 3)")


def test_lease_expired_while_paused_comes_back(etcd, serve):
    name = f"paused.{ZONE}"
    with Registrar(etcd, name, "--id", "p", ttl=2) as r:
        wait_for(lambda: present(serve, name), 10, what=name)
        r.proc.send_signal(signal.SIGSTOP)   # a long GC pause, a frozen VM, a network gap
        try:
            wait_for(lambda: gone(serve, name), 4, what="the lease to expire while paused")
        finally:
            r.proc.send_signal(signal.SIGCONT)
        took = time_until(lambda: present(serve, name), 5, f"the record back\n{r.output()}")
        print(f"resumed after expiry -> record back in {took:.3f}s")


def test_etcd_restart_keeps_the_registration(etcd, serve):
    name = f"restart.{ZONE}"
    with Registrar(etcd, name, "--id", "x", ttl=2) as r:
        wait_for(lambda: present(serve, name), 10, what=name)
        etcd.stop()
        time.sleep(2.5)      # longer than the TTL: refreshes fail meanwhile
        etcd.start()
        took = time_until(lambda: present(serve, name), 10, f"the record after the restart\n{r.output()}")
        # and it is kept alive afterwards (several TTLs), without restarting the registrar
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            assert present(serve, name), r.output()
            time.sleep(0.2)
        assert r.proc.poll() is None
        assert "etcd reachable again" in r.output()
        print(f"etcd restarted -> record answered {took:.3f}s after etcd was back")


# ---------------------------------------------------------------- health gating

def test_check_cmd_gates_the_record(etcd, serve, tmp_path):
    name = f"checked.{ZONE}"
    flag = tmp_path / "healthy"
    with Registrar(etcd, name, "--id", "h", "--check-cmd", f"test -e {flag}", "--check-interval", "0.2",
                   ttl=3) as r:
        time.sleep(1.0)
        assert gone(serve, name), "registered before the check ever passed"
        flag.touch()
        wait_for(lambda: present(serve, name), 5, what=f"registered once healthy\n{r.output()}")
        flag.unlink()
        took = time_until(lambda: gone(serve, name), 2, "removed when the check fails")
        print(f"check fails -> NXDOMAIN in {took:.3f}s (interval 0.2)")
        flag.touch()
        wait_for(lambda: present(serve, name), 3, what="registered again")
        r.proc.send_signal(signal.SIGTERM)
        assert r.wait() == 0


def test_check_http_gates_the_record(etcd, serve):
    import http.server
    import threading
    state = {"code": 503}

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(state["code"])
            self.end_headers()

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    name = f"httpcheck.{ZONE}"
    try:
        with Registrar(etcd, name, "--id", "w", "--check-http", f"http://127.0.0.1:{httpd.server_address[1]}/",
                       "--check-interval", "0.2", port=httpd.server_address[1]):
            time.sleep(0.8)
            assert gone(serve, name)
            state["code"] = 200
            wait_for(lambda: present(serve, name), 5, what="registered once /health answers 200")
            state["code"] = 500
            wait_for(lambda: gone(serve, name), 2, what="removed on 500")
    finally:
        httpd.shutdown()
        httpd.server_close()


# ---------------------------------------------------------------- wrapper mode

CHILD = """
import os, signal, sys, time
flag = sys.argv[1]
signal.signal(signal.SIGHUP, lambda *a: open(flag + '.hup', 'w').close())
open(flag + '.ready', 'w').close()
deadline = time.monotonic() + 30
while not os.path.exists(flag) and time.monotonic() < deadline:
    time.sleep(0.05)
sys.exit(int(sys.argv[2]))
"""


def test_wrapper_registers_while_the_child_runs_and_returns_its_status(etcd, serve, tmp_path):
    name = f"wrapped.{ZONE}"
    flag = str(tmp_path / "stop")
    with Registrar(etcd, name, "--id", "w1", wrapped=[sys.executable, "-c", CHILD, flag, "3"]) as r:
        wait_for(lambda: present(serve, name), 10, what=f"registered while the child runs\n{r.output()}")
        wait_for(lambda: os.path.exists(flag + ".ready"), 10, what="the child's SIGHUP handler")
        r.proc.send_signal(signal.SIGHUP)                       # forwarded, not fatal
        wait_for(lambda: os.path.exists(flag + ".hup"), 5, what="SIGHUP passed on to the child")
        assert present(serve, name)
        Path(flag).touch()                                      # the child exits 3
        assert r.wait() == 3, r.output()
        wait_for(lambda: gone(serve, name), 1, what="deregistered when the child exited")


def test_wrapper_forwards_sigterm_and_reports_the_signal(etcd, serve, tmp_path):
    name = f"wrapkill.{ZONE}"
    with Registrar(etcd, name, "--id", "w2", wrapped=["sleep", "30"]) as r:
        wait_for(lambda: present(serve, name), 10, what=f"registered\n{r.output()}")
        r.proc.send_signal(signal.SIGTERM)
        assert r.wait() == 128 + signal.SIGTERM, r.output()
        wait_for(lambda: gone(serve, name), 1, what="deregistered")


def test_wrapped_command_ends_when_the_registrar_is_killed(etcd, serve, tmp_path):
    """SIGKILL leaves the registrar no chance to deregister or pass a signal on: the wrapped
    command gets SIGTERM from the kernel instead of serving on, unregistered, as an orphan."""
    name = f"wraporphan.{ZONE}"
    marker = tmp_path / "child.pid"
    script = f"import os, time; open({str(marker)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    with Registrar(etcd, name, "--id", "w3", wrapped=[sys.executable, "-c", script]) as r:
        wait_for(lambda: present(serve, name) and marker.exists() and marker.read_text(), 10,
                 what=f"registered\n{r.output()}")
        child = int(marker.read_text())
        r.proc.send_signal(signal.SIGKILL)
        r.wait()
        wait_for(lambda: not Path(f"/proc/{child}").exists() or _zombie(child), 5, what="the wrapped command to end")


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


# ---------------------------------------------------------------- the Python API

def test_registration_context_manager(etcd, serve):
    name = f"api.{ZONE}"
    port = free_port()
    with dnsdisco.Registration(name, port=port, address="127.0.0.1", ttl=2, etcd=etcd.endpoint, id="py") as reg:
        assert reg.registered and reg.name == f"py.{name}" and reg.key == "/skydns/local/svc/api/py"
        wait_for(lambda: present(serve, name), 5, what=name)
        time.sleep(2.5)                                         # kept alive past its TTL
        assert dnsdisco.resolve_srv(name, nameserver=("127.0.0.1", serve.port)) == [("127.0.0.1", port)]
        # the DNS TTL the registration wrote (half its lease), for callers that ask again only then
        assert dnsdisco.lookup_srv(name, nameserver=("127.0.0.1", serve.port)) == ([("127.0.0.1", port)], 1)
    took = time_until(lambda: gone(serve, name), 1.0, "deregistered on leaving the block")
    assert dnsdisco.lookup_srv(name, nameserver=("127.0.0.1", serve.port)) == ([], 0)   # --neg-ttl 0
    print(f"Registration exit -> NXDOMAIN in {took:.3f}s")


def test_registration_works_in_a_plain_process_without_gevent(etcd, serve):
    name = f"plain.{ZONE}"
    code = (
        "import sys, dnsdisco\n"
        f"with dnsdisco.Registration({name!r}, port=1234, address='127.0.0.1', ttl=2, etcd={etcd.endpoint!r}):\n"
        "    print('in', flush=True); sys.stdin.readline()\n"
        "print('gevent' in sys.modules, flush=True)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], env=child_env(), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "in"
        wait_for(lambda: present(serve, name), 5, what=name)
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "False"
        assert proc.wait(10) == 0
        wait_for(lambda: gone(serve, name), 1, what="deregistered")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_registration_rejects_bad_arguments():
    with pytest.raises(ValueError, match="minimum lease TTL"):
        dnsdisco.Registration("hello.svc.local", port=80, address="127.0.0.1", ttl=1)
    with pytest.raises(ValueError, match="--port: port 70000"):
        dnsdisco.Registration("hello.svc.local", port=70000, address="127.0.0.1")


# ---------------------------------------------------------------- DNS TTL bound to the lease

def test_dns_ttl_chosen_and_served(etcd, serve):
    name = f"dnsttl.{ZONE}"
    with Registrar(etcd, name, "--id", "t", "--dns-ttl", "3", ttl=4) as r:
        wait_for(lambda: present(serve, name), 10, what=f"{name}\n{r.output()}")
        assert {rrset.ttl for rrset in serve.query(name).answer} == {3}
        assert '"ttl":3' in etcd.etcdctl("get", "--print-value-only", "/skydns/local/svc/dnsttl/t")


def test_dns_ttl_longer_than_the_lease_is_refused_in_one_line():
    out = subprocess.run(dnsdisco_cmd("register", f"x.{ZONE}", "--port", "80", "--address", "127.0.0.1",
                                      "--ttl", "4", "--dns-ttl", "5", "--etcd", "http://127.0.0.1:9"),
                         env=child_env(), capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "dnsdisco register: --dns-ttl 5 is longer than the lease (--ttl 4): caches would keep a dead "
        "instance longer than etcd does"]
    with pytest.raises(ValueError, match="--dns-ttl 5 is longer than the lease"):
        dnsdisco.Registration(f"x.{ZONE}", port=80, address="127.0.0.1", ttl=4, dns_ttl=5)
    assert dnsdisco.Registration(f"x.{ZONE}", port=80, address="127.0.0.1", ttl=10).dns_ttl == 5
    assert dnsdisco.Registration(f"x.{ZONE}", port=80, address="127.0.0.1", ttl=4, dns_ttl=0).dns_ttl == 0


# ---------------------------------------------------------------- rise and fall

FLAKY = """n=$(cat {c} 2>/dev/null || echo 0); echo $((n+1)) > {c}
case " {fail} " in *" $n "*) exit 1;; esac; exit 0"""


def test_check_fall_and_rise_are_counted(etcd, serve, tmp_path):
    """Probe 2 fails alone (kept: fall 2); probes 5-7 fail (removed after the 2nd); probes 8-9
    pass (back after the 2nd: rise 2). Watched through serve every 20 ms."""
    name = f"flaky.{ZONE}"
    counter = tmp_path / "n"
    cmd = FLAKY.format(c=counter, fail="2 5 6 7")
    probes = lambda: int(counter.read_text() or 0) if counter.exists() else 0  # noqa: E731
    with Registrar(etcd, name, "--id", "f", "--check-cmd", cmd, "--check-interval", "0.4",
                   "--check-rise", "2", "--check-fall", "2", ttl=3) as r:
        wait_for(lambda: present(serve, name), 10, what=f"registered after 2 passes\n{r.output()}")
        assert probes() >= 2       # rise 2: the first pass alone did not register it
        while probes() < 5:        # through the single failure of probe 2: never removed
            assert present(serve, name), f"removed after one failed probe\n{r.output()}"
            time.sleep(0.02)
        wait_for(lambda: gone(serve, name), 15, what=f"removed after two failures\n{r.output()}")
        assert probes() >= 7       # probes 5 and 6 failed (the counter is ahead by the running one)
        wait_for(lambda: present(serve, name), 15, what=f"back after two passes\n{r.output()}")
        assert probes() >= 10
        out = r.output()
        assert out.count("health check failed 2 times in a row") == 1, out
        assert out.count("health check passes 2 times in a row") == 2, out


# ---------------------------------------------------------------- drain

def test_sigusr1_drains_while_the_wrapped_command_keeps_running(etcd, serve, tmp_path):
    name = f"drain.{ZONE}"
    flag = str(tmp_path / "stop")
    with Registrar(etcd, name, "--id", "d", wrapped=[sys.executable, "-c", CHILD, flag, "0"]) as r:
        wait_for(lambda: present(serve, name), 10, what=f"registered\n{r.output()}")
        wait_for(lambda: os.path.exists(flag + ".ready"), 10, what="the child to run")
        r.proc.send_signal(signal.SIGUSR1)
        took = time_until(lambda: gone(serve, name), 5, f"the record to go on SIGUSR1\n{r.output()}")
        time.sleep(1.0)
        assert r.proc.poll() is None, r.output()       # neither the registrar nor its child stopped
        assert gone(serve, name)                        # and the record stays away
        assert "SIGUSR1: draining" in r.output()
        r.proc.send_signal(signal.SIGTERM)              # then SIGTERM ends it as before
        assert r.wait() == 128 + signal.SIGTERM, r.output()
        print(f"SIGUSR1 -> NXDOMAIN in {took:.3f}s; the child ran on")


def test_sigusr1_drains_a_plain_registration(etcd, serve):
    name = f"drain2.{ZONE}"
    with Registrar(etcd, name, "--id", "d2") as r:
        wait_for(lambda: present(serve, name), 10, what=f"registered\n{r.output()}")
        r.proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: gone(serve, name), 5, what=f"the record to go on SIGUSR1\n{r.output()}")
        time.sleep(2.5)                                 # past the lease TTL: still running, still away
        assert r.proc.poll() is None and gone(serve, name)
        r.proc.send_signal(signal.SIGTERM)
        assert r.wait() == 0, r.output()


def test_registration_drain(etcd, serve):
    name = f"apidrain.{ZONE}"
    with dnsdisco.Registration(name, port=8080, address="127.0.0.1", ttl=2, etcd=etcd.endpoint, id="a") as a, \
            dnsdisco.Registration(name, port=8080, address="127.0.0.2", ttl=2, etcd=etcd.endpoint, id="b") as b:
        wait_for(lambda: addresses(serve.query(name)) == ["127.0.0.1", "127.0.0.2"], 5, what="both")
        assert a.drain(timeout=5) is True and not a.registered and b.registered
        wait_for(lambda: addresses(serve.query(name)) == ["127.0.0.2"], 5, what="only b after a drained")
        time.sleep(2.5)      # the shared lease is still refreshed for b; a stays away
        assert addresses(serve.query(name)) == ["127.0.0.2"]
    wait_for(lambda: gone(serve, name), 2, what="both gone on leaving the blocks")


# ---------------------------------------------------------------- the README's rolling restart

def test_rolling_restart_through_drain_fails_no_request(etcd, serve):
    """README's recipe: three wrapped HTTP servers restarted one at a time (SIGUSR1, wait the DNS
    TTL and a margin, SIGTERM, start the new one gated by --check-tcp) while a client that
    honours the SRV answer's TTL sends a request every 20 ms: not one fails."""
    import threading
    import urllib.request
    import dns.message
    import dns.query

    name = f"rolling.{ZONE}"
    ports = [free_port() for _ in range(3)]

    def start(i):
        return Registrar(etcd, name, "--id", f"r{i}", "--dns-ttl", "1", "--check-tcp", f"127.0.0.1:{ports[i]}",
                         "--check-interval", "0.2", port=ports[i], ttl=2,
                         wrapped=[sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(ports[i])])

    def srv_ports():
        reply = dns.query.udp(dns.message.make_query(name, "SRV"), "127.0.0.1", port=serve.port, timeout=2)
        found = [(rd.port, rrset.ttl) for rrset in reply.answer if rrset.rdtype == dns.rdatatype.SRV for rd in rrset]
        return sorted(p for p, _ in found), min((t for _, t in found), default=0)

    stats = {"ok": 0, "failed": [], "lookups": 0}
    stop = threading.Event()

    def client():
        cached, expires, turn = [], 0.0, 0
        while not stop.is_set():
            now = time.monotonic()
            if now >= expires:               # honour the TTL, as a caching resolver would
                cached, ttl = srv_ports()
                expires, stats["lookups"] = now + ttl, stats["lookups"] + 1
            if cached:
                port = cached[turn % len(cached)]
                turn += 1
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
                        resp.read()
                    stats["ok"] += 1
                except OSError as exc:
                    stats["failed"].append((port, str(exc)))
            time.sleep(0.02)

    running = [start(i) for i in range(3)]
    thread = threading.Thread(target=client, daemon=True)
    try:
        try:
            wait_for(lambda: srv_ports()[0] == sorted(ports), 30, what="three instances in SRV")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; SRV has {srv_ports()}\n" + "\n".join(r.output() for r in running)) from None
        thread.start()
        time.sleep(1.0)
        for i in range(3):
            old = running[i]
            old.proc.send_signal(signal.SIGUSR1)                  # out of DNS, still serving
            wait_for(lambda: ports[i] not in srv_ports()[0], 5, what=f"r{i} drained\n{old.output()}")
            time.sleep(1 + 0.5)                                     # the DNS TTL and a margin
            old.proc.send_signal(signal.SIGTERM)
            assert old.wait() == 128 + signal.SIGTERM, old.output()
            old.__exit__()
            running[i] = start(i)                                   # in DNS once it accepts connections
            wait_for(lambda: ports[i] in srv_ports()[0], 10, what=f"new r{i} in SRV\n{running[i].output()}")
        time.sleep(1.0)
    finally:
        stop.set()
        if thread.is_alive():
            thread.join(5)
        for r in running:
            r.__exit__()
    assert stats["ok"] > 100 and stats["lookups"] > 5, stats
    assert stats["failed"] == [], stats["failed"]
    print(f"rolling restart: {stats['ok']} requests, none failed, {stats['lookups']} SRV lookups")
