"""dnsdisco as the only nameserver of a machine, shown with unmodified programs (issue 5).

One network namespace is made for the module (tests/support/netns.py; DESIGN.md section 7). Inside it:
- /etc/resolv.conf (bound from /etc/netns/<name>/resolv.conf) says `nameserver 127.0.0.1`,
  `search svc.local`, `options ndots:2 timeout:1 attempts:2`;
- etcd on 127.0.0.1:2379 (a fresh namespace has every port free);
- `dnsdisco serve --listen 127.0.0.1:53 --zone svc.local --zone in-addr.arpa --zone ip6.arpa`
  forwarding to: 127.0.0.1:5301 (nothing listens: refused), then the nameservers of a kept
  resolv.conf copy: 127.0.0.2 (a socket that never answers: a host that is down) and
  127.0.0.3 (dnsmasq serving example.test and friends);
  `--allow 127.0.0.0/8 --allow ::1/128`, so a client on 10.99.0.7 is outside the allow list;
- `dnsdisco register hello.svc.local` twice: web4 at 10.99.0.7, wrapping a real HTTP server
  (python -m http.server, dual stack), and web6 at fd00:99::7; both addresses live on lo.

Then getent, python's socket, nslookup, host, curl and dig are run inside, unmodified.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from dnsdisco.etcd.embedded import binary
from tests.support.etcdproc import EtcdProcess
from tests.support.harness import ROOT, child_env, dnsdisco_cmd
from tests.support.netns import Netns, dnsmasq_command, netns_available

available, why = netns_available()
pytestmark = pytest.mark.skipif(not available, reason=f"network namespaces cannot be created here: {why}")

RESOLV_CONF = "nameserver 127.0.0.1\nsearch svc.local\noptions ndots:2 timeout:1 attempts:2\n"
ETCD = "http://127.0.0.1:2379"
HTTP_PORT = 8080
WEB4, WEB6 = "10.99.0.7", "fd00:99::7"          # registered addresses of hello.svc.local
HELLO = {WEB4, WEB6}
EXAMPLE4, EXAMPLE6 = "192.0.2.10", "2001:db8::10"
REFUSING_UPSTREAM = "127.0.0.1:5301"            # nothing listens: ICMP port unreachable
SILENT_UPSTREAM = "127.0.0.2"                   # a socket that reads nothing: no reply at all
LIVE_UPSTREAM = "127.0.0.3"                     # dnsmasq
PAGE = "hello from a service found through dnsdisco\n"
OUTSIDE_NAMES = ("example.test", "failover.test", "acl.test", "search.test")


def _need(tool: str, package: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"'{tool}' is not installed (Debian package {package})")


def _stop(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    """SIGTERM the process group (the registrar passes it on to the HTTP server), then SIGKILL."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(5)


def _poll(what: str, check, timeout: float, procs=()) -> None:
    """Call `check()` until it returns true; fail naming `what` (and any child that died)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        for name, proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode} while waiting for {what}")
        try:
            if check():
                return
        except (subprocess.TimeoutExpired, OSError) as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{what}: not within {timeout}s" + (f" (last error: {last})" if last else ""))


def _addresses(ns: Netns, server: str, name: str) -> set[str]:
    """A and AAAA of `name` asked of `server` from inside the namespace with dnspython (no dig needed)."""
    code = ("import sys, dns.resolver\n"
            "r = dns.resolver.Resolver(configure=False); r.nameservers = [sys.argv[1]]; r.lifetime = 1\n"
            "for t in ('A', 'AAAA'):\n"
            "    try:\n"
            "        print(*[rd.address for rd in r.resolve(sys.argv[2], t)])\n"
            "    except Exception:\n"
            "        pass\n")
    return set(ns.run([sys.executable, "-c", code, server, name], env=child_env()).stdout.split())


class World:
    """The running namespace and what the tests need to know about it."""

    def __init__(self, ns: Netns, serve_log):
        self.ns = ns
        self.serve_log = serve_log

    def run(self, *argv: str, timeout: float = 15) -> subprocess.CompletedProcess:
        return self.ns.run(list(argv), timeout=timeout)

    def dig(self, *args: str) -> subprocess.CompletedProcess:
        return self.run("dig", "+time=2", "+tries=1", *args)

    def log(self) -> str:
        self.serve_log.flush()
        with open(self.serve_log.name, errors="replace") as fh:
            return fh.read()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    _need("dnsmasq", "dnsmasq")
    work = tmp_path_factory.mktemp("resolvconf")
    site = work / "site"
    site.mkdir()
    (site / "index.html").write_text(PAGE)
    # a copy of "the original resolv.conf", kept as the upstream list (README recipe)
    upstream_conf = work / "resolv.conf.upstream"
    upstream_conf.write_text(f"nameserver {SILENT_UPSTREAM}\nnameserver {LIVE_UPSTREAM}\n")
    env = child_env()
    started: list[tuple[str, subprocess.Popen]] = []
    etcd = EtcdProcess("resolver", client_port=2379, peer_port=2380)
    serve_log = open(work / "serve.log", "w+")
    other_log = open(work / "others.log", "w+")
    try:
        with Netns("ddres", resolv_conf=RESOLV_CONF) as ns:
            def start(name, argv, log=other_log):
                proc = ns.popen(argv, env=env, cwd=str(ROOT), stdout=log, stderr=subprocess.STDOUT)
                started.append((name, proc))
                return proc

            for cmd in (["ip", "addr", "add", f"{WEB4}/32", "dev", "lo"],
                        ["ip", "-6", "addr", "add", f"{WEB6}/128", "dev", "lo", "nodad"]):
                res = ns.run(cmd)
                assert res.returncode == 0, f"{' '.join(cmd)}: {res.stderr}"

            start("etcd", etcd.command())
            start("dnsmasq", dnsmasq_command(port=53, listen=LIVE_UPSTREAM, workdir=work, ttl=60, records=[
                f"example.test,{EXAMPLE4},{EXAMPLE6}", "failover.test,192.0.2.11", "acl.test,192.0.2.12",
                "search.test,192.0.2.13"], extra=["--address=/nx.test/"]))   # nx.test: NXDOMAIN
            start("silent upstream", [sys.executable, "-c",
                  "import socket, time\n"
                  "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                  f"s.bind(('{SILENT_UPSTREAM}', 53))\n"
                  "time.sleep(900)\n"])
            _poll("etcd to be healthy", lambda: ns.run(
                [binary("etcdctl"), f"--endpoints={ETCD}", "--dial-timeout=1s", "endpoint", "health"],
                env={**os.environ, "ETCDCTL_API": "3"}).returncode == 0, 30, started)
            _poll("dnsmasq to answer", lambda: _addresses(ns, LIVE_UPSTREAM, "example.test") == {EXAMPLE4, EXAMPLE6},
                  10, started)

            start("dnsdisco serve", dnsdisco_cmd(
                "serve", "--listen", "127.0.0.1:53", "--etcd", ETCD,
                "--zone", "svc.local", "--zone", "in-addr.arpa", "--zone", "ip6.arpa",
                "--forward", REFUSING_UPSTREAM, "--forward", f"resolv.conf:{upstream_conf}",
                "--forward-timeout", "0.5", "--allow", "127.0.0.0/8", "--allow", "::1/128"), log=serve_log)
            start("register web4 + http.server", dnsdisco_cmd(
                "register", "hello.svc.local", "--etcd", ETCD, "--address", WEB4, "--port", str(HTTP_PORT),
                "--id", "web4", "--ttl", "5", "--",
                sys.executable, "-m", "http.server", "--bind", "::", "--directory", str(site), str(HTTP_PORT)))
            start("register web6", dnsdisco_cmd(
                "register", "hello.svc.local", "--etcd", ETCD, "--address", WEB6, "--port", str(HTTP_PORT),
                "--id", "web6", "--ttl", "5"))

            try:
                _poll("both instances of hello.svc.local in DNS",
                      lambda: _addresses(ns, "127.0.0.1", "hello.svc.local") == HELLO, 30, started)
                _poll("the HTTP server to answer", lambda: ns.run(
                    [sys.executable, "-c", f"import urllib.request; urllib.request.urlopen('http://{WEB4}:"
                     f"{HTTP_PORT}/', timeout=1).read()"]).returncode == 0, 15, started)
            except Exception as exc:
                other_log.flush()
                raise AssertionError(f"{exc}\n--- serve log ---\n{World(ns, serve_log).log()}\n"
                                     f"--- etcd, dnsmasq, registrars ---\n"
                                     f"{open(other_log.name, errors='replace').read()}") from None
            yield World(ns, serve_log)
            for _name, proc in reversed(started):     # registrars revoke while etcd still runs
                _stop(proc)
    finally:
        for _name, proc in started:
            _stop(proc, 1)
        etcd.cleanup()
        serve_log.close()
        other_log.close()


def _hosts_lines(stdout: str) -> list[tuple[str, list[str]]]:
    return [(line.split()[0], line.split()[1:]) for line in stdout.splitlines() if line.strip()]


# ---------------------------------------------------------------- our names, unmodified clients

def test_resolv_conf_inside_points_at_dnsdisco(world):
    assert world.run("cat", "/etc/resolv.conf").stdout == RESOLV_CONF


def test_getent_hosts(world):
    res = world.run("getent", "hosts", "hello.svc.local")
    assert res.returncode == 0, res.stderr
    (address, names), = _hosts_lines(res.stdout)
    assert address in HELLO and names == ["hello.svc.local"], res.stdout


def test_getent_ahosts_asks_a_and_aaaa(world):
    res = world.run("getent", "ahosts", "hello.svc.local")
    assert res.returncode == 0, res.stderr
    assert {addr for addr, _ in _hosts_lines(res.stdout)} == HELLO, res.stdout


def test_python_getaddrinfo(world):
    code = ("import socket, json; print(json.dumps(sorted({ai[4][0] for ai in "
            f"socket.getaddrinfo('hello.svc.local', {HTTP_PORT}, proto=socket.IPPROTO_TCP)}})))")
    res = world.run(sys.executable, "-c", code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f'["{WEB4}", "{WEB6}"]'


def test_nslookup(world):
    _need("nslookup", "bind9-dnsutils")
    res = world.run("nslookup", "hello.svc.local")
    assert res.returncode == 0, res.stdout + res.stderr
    assert set(re.findall(r"^Address: (\S+)$", res.stdout, re.M)) == HELLO, res.stdout
    assert "127.0.0.1#53" in res.stdout               # the server it found in resolv.conf


def test_host(world):
    _need("host", "bind9-host")
    res = world.run("host", "hello.svc.local")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"hello.svc.local has address {WEB4}" in res.stdout
    assert f"hello.svc.local has IPv6 address {WEB6}" in res.stdout


def test_curl_reaches_the_registered_http_server(world):
    _need("curl", "curl")
    res = world.run("curl", "-sS", "--max-time", "10", f"http://hello.svc.local:{HTTP_PORT}/")
    assert res.returncode == 0, res.stderr
    assert res.stdout == PAGE
    for flag, address in (("-4", WEB4), ("-6", WEB6)):     # each registered address serves it
        res = world.run("curl", "-sS", flag, "--max-time", "10", "-o", "/dev/null", "-w", "%{remote_ip}",
                        f"http://hello.svc.local:{HTTP_PORT}/")
        assert res.returncode == 0 and res.stdout == address, (flag, res.stdout, res.stderr)


def test_our_answers_are_authoritative_and_offer_recursion(world):
    _need("dig", "bind9-dnsutils")
    res = world.dig("hello.svc.local", "A")
    assert "status: NOERROR" in res.stdout, res.stdout
    flags = re.search(r";; flags: ([a-z ]+);", res.stdout).group(1).split()
    assert {"qr", "aa", "rd", "ra"} <= set(flags), res.stdout


# ---------------------------------------------------------------- search domains

def test_short_name_through_search_domain(world):
    res = world.run("getent", "hosts", "hello")
    assert res.returncode == 0, res.stderr
    (address, names), = _hosts_lines(res.stdout)
    assert address in HELLO and names == ["hello.svc.local"], res.stdout
    res = world.run("getent", "ahosts", "hello")
    assert {addr for addr, _ in _hosts_lines(res.stdout)} == HELLO, res.stdout


def test_instance_name_through_search_domain(world):
    # one dot, below ndots:2: the search domain is tried first
    res = world.run("getent", "hosts", "web4.hello")
    assert res.returncode == 0, res.stderr
    assert _hosts_lines(res.stdout) == [(WEB4, ["web4.hello.svc.local"])]


def test_outside_name_with_one_dot_is_searched_then_forwarded(world):
    # search.test has one dot, below ndots:2: glibc tries search.test.svc.local first (NXDOMAIN from us, no
    # forwarding of our zone), then search.test as given, which is forwarded
    res = world.run("getent", "hosts", "search.test")
    assert res.returncode == 0, res.stderr
    assert _hosts_lines(res.stdout) == [("192.0.2.13", ["search.test"])]


def test_unknown_short_name_fails_cleanly(world):
    res = world.run("getent", "hosts", "nosuchservice")
    assert res.returncode == 2, (res.stdout, res.stderr)


# ---------------------------------------------------------------- forwarding

def test_outside_name_resolves_through_forwarding(world):
    res = world.run("getent", "ahosts", "example.test")
    assert res.returncode == 0, res.stderr
    assert {addr for addr, _ in _hosts_lines(res.stdout)} == {EXAMPLE4, EXAMPLE6}, res.stdout
    res = world.run("getent", "hosts", "example.test")
    assert res.returncode == 0 and _hosts_lines(res.stdout)[0][1] == ["example.test"], res


def test_forwarded_answer_offers_recursion(world):
    _need("dig", "bind9-dnsutils")
    res = world.dig("example.test", "A")
    assert "status: NOERROR" in res.stdout and re.search(rf"example\.test\.\s+\d+\s+IN\s+A\s+{EXAMPLE4}",
                                                         res.stdout), res.stdout
    flags = re.search(r";; flags: ([a-z ]+);", res.stdout).group(1).split()
    assert {"qr", "rd", "ra"} <= set(flags), res.stdout


def test_outside_name_that_does_not_exist_fails_cleanly(world):
    res = world.run("getent", "hosts", "gone.nx.test")
    assert res.returncode == 2, (res.stdout, res.stderr)
    if shutil.which("dig"):
        res = world.dig("gone.nx.test", "A")
        assert "status: NXDOMAIN" in res.stdout, res.stdout     # the upstream's answer, passed on


def test_dead_upstreams_fail_over_to_the_live_one(world):
    _need("dig", "bind9-dnsutils")
    # the first two upstreams really are down ...
    host, port = REFUSING_UPSTREAM.split(":")
    refused = world.run("dig", "+time=1", "+tries=1", f"@{host}", "-p", port, "failover.test")
    assert refused.returncode == 9, refused.stdout      # 9: no reply from the server
    silent = world.run("dig", "+time=1", "+tries=1", f"@{SILENT_UPSTREAM}", "failover.test")
    assert silent.returncode == 9, silent.stdout        # 9: no reply from the server
    # ... yet the name resolves, from the third
    res = world.run("getent", "hosts", "failover.test")
    assert res.returncode == 0, res.stderr
    assert _hosts_lines(res.stdout) == [("192.0.2.11", ["failover.test"])]
    log = world.log()
    assert f"upstream {REFUSING_UPSTREAM} failed" in log, log
    assert f"upstream {SILENT_UPSTREAM}:53 failed" in log, log


def test_client_outside_allow_is_refused_for_outside_names_only(world):
    _need("dig", "bind9-dnsutils")
    outside = world.dig("-b", WEB4, "@127.0.0.1", "acl.test", "A")
    assert "status: REFUSED" in outside.stdout, outside.stdout
    ours = world.dig("-b", WEB4, "@127.0.0.1", "hello.svc.local", "A")
    assert "status: NOERROR" in ours.stdout, ours.stdout
    assert re.search(rf"hello\.svc\.local\.\s+\d+\s+IN\s+A\s+{re.escape(WEB4)}", ours.stdout), ours.stdout
    # the REFUSED given to the outsider is not served to an allowed client afterwards
    inside = world.run("getent", "hosts", "acl.test")
    assert inside.returncode == 0 and _hosts_lines(inside.stdout) == [("192.0.2.12", ["acl.test"])], inside


# ---------------------------------------------------------------- reverse lookups

def test_dig_x_gives_the_registered_name(world):
    _need("dig", "bind9-dnsutils")
    res = world.run("dig", "+short", "+time=2", "+tries=1", "-x", WEB4)
    assert res.stdout.split() == ["web4.hello.svc.local."], res.stdout
    res = world.run("dig", "+short", "+time=2", "+tries=1", "-x", WEB6)
    assert res.stdout.split() == ["web6.hello.svc.local."], res.stdout


def test_getent_reverse_lookup(world):
    res = world.run("getent", "hosts", WEB4)
    assert res.returncode == 0, res.stderr
    assert _hosts_lines(res.stdout) == [(WEB4, ["web4.hello.svc.local"])]


def test_reverse_name_we_do_not_hold_is_forwarded(world):
    _need("dig", "bind9-dnsutils")
    res = world.run("dig", "+short", "+time=2", "+tries=1", "-x", EXAMPLE4)
    assert res.stdout.split() == ["example.test."], res.stdout
    # a client outside --allow: REFUSED for a reverse name we do not hold, the answer for ours
    outside = world.dig("-b", WEB4, "@127.0.0.1", "-x", "192.0.2.12")
    assert "status: REFUSED" in outside.stdout, outside.stdout
    ours = world.dig("-b", WEB4, "@127.0.0.1", "-x", WEB4)
    assert "status: NOERROR" in ours.stdout and "web4.hello.svc.local." in ours.stdout, ours.stdout
    # the outsider's REFUSED is not served from cache to an allowed client afterwards
    res = world.run("dig", "+short", "+time=2", "+tries=1", "-x", "192.0.2.12")
    assert res.stdout.split() == ["acl.test."], res.stdout
