"""Differential: dnsdisco and Knot DNS serving the same names must answer alike (issue 18).

dnsdisco reads records from a real etcd; Knot (`knotd`) serves zone files written here by hand
as the equivalent of that etcd data under DESIGN.md section 3 (a name's records are its own
value and the values one label below it; an address host gives A/AAAA, a port SRV, text TXT,
mail MX; a bare name host makes a CNAME only when the name owns nothing else and is not an
apex). Both are asked the same questions with dnspython and must agree on rcode, AA, TC, the
OPT echo, the answer RRs as a set of (owner, type, rdata) and the authority section's types.

Every case of the rules table in tests/unit/dns/test_rules.py runs in a zone of its own,
`svc.<case id>.local` (its etcd keys and names are moved there), so one dnsdisco and one Knot
serve them all. Then come the cases of each defect of issue 18. BIND 9 (`named`) loads the same
zone files (its checks are stricter than Knot's) and must answer every question as Knot does;
where the two part, REFERENCE_SPLITS names the RFC section that leaves it open.
"""
from __future__ import annotations

import json

import dns.name
import pytest

from dnsdisco.etcd.client import KV
from tests.support.harness import ServeProcess, wait_for
from tests.support.refservers import BindServer, KnotServer, ask, diff, rrs, signature, zone_text
from tests.support.rule_cases import CASES as RULE_CASES

PREFIX = "/knotdiff"

_ok, _why = KnotServer.available()
if not _ok:
    pytestmark = pytest.mark.skip(reason=_why)

# ---------------------------------------------------------------- zone files written by hand
# hello(n) of tests/unit/dns/test_rules.py: instances i1..in at 10.0.0.1.. port 8080
HELLO1 = """
hello A 10.0.0.1
i1.hello A 10.0.0.1
hello SRV 10 100 8080 i1.hello
i1.hello SRV 10 100 8080 i1.hello
"""
HELLO2 = HELLO1 + """
hello A 10.0.0.2
i2.hello A 10.0.0.2
hello SRV 10 100 8080 i2.hello
i2.hello SRV 10 100 8080 i2.hello
"""
TCP_HTTP = """
_http._tcp.hello A 10.0.0.1
i1._http._tcp.hello A 10.0.0.1
_http._tcp.hello SRV 10 100 80 i1._http._tcp.hello
i1._http._tcp.hello SRV 10 100 80 i1._http._tcp.hello
"""
RFC2782_HTTP = """
_http._tcp.hello SRV 10 100 8080 i1.hello
_http._tcp.hello SRV 10 100 8080 i2.hello
"""
T_NAME_HOST_TEXT = """
; t = {host: other.example.com, text: v=2}: t owns TXT, so the name host is no CNAME (RFC 1034 3.6.2);
; t is one label below the apex, so the apex holds its record too
t TXT "v=2"
@ TXT "v=2"
"""

# case id -> the zone body ($ORIGIN svc.<id>.local.; SOA and NS come from zone_text)
RULE_ZONES = {
    "a-instances": HELLO2,
    "a-one-instance": HELLO2,
    "a-own-value-and-instances": HELLO1 + "hello A 10.0.0.9\n@ A 10.0.0.9\n",
    "a-never-deeper": HELLO1 + "deep.hello A 10.9.9.9\nx.deep.hello A 10.9.9.9\n",
    "a-duplicate-address-once": "hello A 10.0.0.1\na.hello A 10.0.0.1\nb.hello A 10.0.0.1\n",
    "aaaa": "v6 AAAA fd00::1\na.v6 AAAA fd00::1\n",
    "a-mixed-families": "v6 AAAA fd00::1\nv6 A 10.1.1.1\na.v6 AAAA fd00::1\nb.v6 A 10.1.1.1\n",
    "a-v4-mapped-v6-is-a": "m A 10.2.2.2\na.m A 10.2.2.2\n",
    "nodata-aaaa-when-only-a": HELLO1,
    "nodata-instance-aaaa": HELLO1,
    "nodata-mx": HELLO1,
    "nodata-txt": HELLO1,
    "nodata-srv-port-0": "p0 A 10.0.0.1\na.p0 A 10.0.0.1\n",
    "nxdomain": HELLO1,
    "nxdomain-below-instance": HELLO1,
    "nxdomain-aaaa": HELLO1,
    "ent": TCP_HTTP,
    "ent-grandparent": TCP_HTTP,
    "ent-service-srv": TCP_HTTP,
    "apex-a-nodata": HELLO1,
    "empty-zone-apex-nodata": "",
    "neg-ttl-from-zone": HELLO1,
    "srv-defaults-and-glue": HELLO2,
    "srv-priority-weight-as-stored": """
s A 10.0.0.1
s AAAA fd00::2
a.s A 10.0.0.1
b.s AAAA fd00::2
s SRV 5 3 1 a.s
s SRV 7 0 65535 b.s
a.s SRV 5 3 1 a.s
b.s SRV 7 0 65535 b.s
""",
    "srv-port-0-skipped": HELLO1 + "hello A 10.0.0.9\ni9.hello A 10.0.0.9\n",
    "srv-name-host-is-target": "ext SRV 10 100 5432 db.example.com.\na.ext SRV 10 100 5432 db.example.com.\n",
    "srv-name-host-in-zone-glue": "alias SRV 10 100 5432 db\na.alias SRV 10 100 5432 db\ndb A 10.5.5.5\n@ A 10.5.5.5\n",
    "srv-targetstrip": "ts A 10.0.0.1\nx1.ts A 10.0.0.1\nts SRV 10 100 80 ts\nx1.ts SRV 10 100 80 ts\n",
    "srv-targetstrip-2": "ts A 10.0.0.1\nx1.ts A 10.0.0.1\nts SRV 10 100 80 @\n",
    "srv-one-instance": HELLO2,
    "txt": 't TXT "hello world"\na.t TXT "hello world"\n',
    "txt-with-address-host": 't A 10.0.0.1\nt TXT "v=1"\na.t A 10.0.0.1\na.t TXT "v=1"\n',
    "txt-with-name-host": T_NAME_HOST_TEXT,
    "txt-with-name-host-no-cname": T_NAME_HOST_TEXT,
    "txt-with-name-host-cname-qtype-nodata": T_NAME_HOST_TEXT,
    "name-host-with-port-a-nodata": "ext SRV 10 100 5432 db.example.com.\na.ext SRV 10 100 5432 db.example.com.\n",
    "name-host-with-mail-a-nodata": "m MX 10 mail.example.com.\na.m MX 10 mail.example.com.\n",
    # w/a a bare name host, w/b text: w owns TXT, so only its instance a is an alias
    "bare-name-host-beside-text-instance": 'w TXT "v=1"\na.w CNAME x.example.com.\nb.w TXT "v=1"\n',
    "apex-never-cname": "x CNAME other.example.com.\n",
    "apex-never-cname-soa": "x CNAME other.example.com.\n",
    "apex-never-cname-cname": "x CNAME other.example.com.\n",
    "below-apex-child-is-cname": "x CNAME other.example.com.\n",
    "txt-duplicate-once": 't TXT "same"\na.t TXT "same"\nb.t TXT "same"\n',
    "srv-duplicate-once": ("s SRV 10 100 5432 db.example.com.\na.s SRV 10 100 5432 db.example.com.\n"
                           "b.s SRV 10 100 5432 db.example.com.\n"),
    "mx-duplicate-once": "m MX 10 mail.example.com.\na.m MX 10 mail.example.com.\nb.m MX 10 mail.example.com.\n",
    "aaaa-duplicate-once": "v6 AAAA fd00::1\na.v6 AAAA fd00::1\nb.v6 AAAA fd00::1\n",
    # RFC 2782 names of hello's instances (only the one asked about is written out)
    "rfc2782-srv": HELLO2 + RFC2782_HTTP,
    "rfc2782-a-nodata": HELLO2 + RFC2782_HTTP,
    "rfc2782-proto-ent": HELLO2 + RFC2782_HTTP,
    "rfc2782-no-service": HELLO2 + RFC2782_HTTP,
    "rfc2782-no-ports": "p0 A 10.0.0.1\na.p0 A 10.0.0.1\n",
    "escaped-dot-outside-zones": HELLO1,
    "escaped-dot-instance": HELLO1,
    "escaped-dot-instance-srv": HELLO1,
    "escaped-dot-zone-label": HELLO1,
    # the table gives these zones --ns-address 127.0.0.53; here the address is serve's --listen one
    "ns-default-own-addresses": "",
    "ns-default-name-answers-a": "",
    "ns-default-name-aaaa-nodata": "",
    "ns-default-parent-ent": "",
    "txt-only-a-nodata": 't TXT "v=2"\n@ TXT "v=2"\n',
    "txt-long-split": 't TXT "' + "x" * 255 + '" "' + "x" * 45 + '"\n@ TXT "' + "x" * 255 + '" "' + "x" * 45 + '"\n',
    "cname-followed": HELLO2 + "web CNAME hello\n",
    "cname-chain": "a CNAME b\nb CNAME c\nc A 10.3.3.3\n@ A 10.3.3.3\n",
    "cname-target-nodata": HELLO1 + "web CNAME hello\n",
    "cname-target-nxdomain": "web CNAME gone\n",
    "cname-loop": "a CNAME b\nb CNAME a\n",
    "cname-self-loop": "a CNAME a\n",
    "cname-out-of-zone": "ext CNAME www.example.com.\n",
    "cname-qtype-cname": HELLO1 + "web CNAME hello\n",
    "cname-ttl": HELLO1 + "web CNAME hello\n",
    "mx-name-host": "m MX 5 mail.example.com.\na.m MX 5 mail.example.com.\n",
    "mx-address-host-glue": "m MX 10 mx1.m\nm A 10.0.0.25\nmx1.m A 10.0.0.25\nmx1.m MX 10 mx1.m\n",
    "mx-not-mail": "m A 10.0.0.25\na.m A 10.0.0.25\n",
    "ttl-record": HELLO1,
    "ttl-zero-when-set": HELLO1,
    "ttl-zone-default": HELLO1,
    "ttl-rrset-uniform": "hello A 10.0.0.1\nhello A 10.0.0.2\na.hello A 10.0.0.1\nb.hello A 10.0.0.2\n",
    "soa-apex": HELLO1,
    "soa-not-apex-nodata": HELLO1,
    "ns-default": "",
    "ns-from-etcd-with-glue": ("ns1.ns.dns A 10.0.0.53\nns2.ns.dns AAAA fd00::53\n"
                               "ns.dns A 10.0.0.53\nns.dns AAAA fd00::53\n"),
    "ns-name-host": "ns1.ns.dns CNAME ns.example.net.\nns.dns CNAME ns.example.net.\n",
    "ns-host-address-answers-a": "ns1.ns.dns A 10.0.0.53\nns.dns A 10.0.0.53\n",
    "ns-not-apex-nodata": HELLO1,
    "any-prefers-addresses": """
t A 10.0.0.1
t TXT "v=1"
t SRV 10 100 80 a.t
a.t A 10.0.0.1
a.t TXT "v=1"
a.t SRV 10 100 80 a.t
""",
    "any-txt-only": 't TXT "v=1"\n@ TXT "v=1"\n',
    "any-nxdomain": "",
    "refused-outside": HELLO1,
    "refused-parent-of-zone": HELLO1,
    "refused-suffix-not-label": HELLO1,
}
# the apex NS of each case zone: from dns/ns records when the case has them, else the default
RULE_NS = {
    "ns-from-etcd-with-glue": ("ns1.ns.dns", "ns2.ns.dns"),
    "ns-name-host": ("ns.example.net.",),
    "ns-host-address-answers-a": ("ns1.ns.dns",),
}
# the default NS name has the address serve listens on (issue 18, defect 5)
DEFAULT_NS_GLUE = "ns.dns A 127.0.0.1\n"


def _reverse_case(case) -> bool:
    zones = case[7] if len(case) > 7 else ("svc.local",)
    return case[2][0].endswith("arpa") or any(getattr(z, "name", z).endswith("arpa") for z in zones)


# Reverse cases share one address space, so they cannot move to a zone of their own: the PTR
# shapes of the table (automatic, v6, two names, stored, unknown, empty non-terminal, no reverse
# zone) are asked in test_ptr below with addresses no other case uses.
TABLE = [c for c in RULE_CASES if not _reverse_case(c)]


def case_zone(cid: str) -> str:
    return f"svc.{cid}.local"


def moved(cid: str, text: str) -> str:
    return text.replace("svc.local", case_zone(cid))


def case_keys(case) -> list[tuple[str, bytes]]:
    cid, records = case[0], case[1]
    out = []
    for key, value in records.items():
        assert key.startswith("/skydns/local/svc"), f"{cid}: key {key} outside /skydns/local/svc"
        rel = key[len("/skydns/local/svc"):]
        text = value.decode() if isinstance(value, bytes) else json.dumps(value)
        out.append((f"{PREFIX}/local/{cid}/svc{rel}", moved(cid, text).encode()))
    return out


# ---------------------------------------------------------------- issue 18: the defect zone svc.local
D18 = {
    # defect 1: names with escaped dots and high octets are asked around these
    "hello/i0": {"host": "10.0.0.7", "port": 8080},
    # defect 2: a CNAME owns its name alone
    "top": {"host": "hello.svc.local"},               # one label below the apex: the apex stays no alias
    "addr1": {"host": "10.0.0.99"},                   # one label below the apex: the apex answers A
    "al/i0": {"host": "hello.svc.local"},             # a bare name host: an alias
    "np/i0": {"host": "hello.svc.local", "port": 8080},
    "nm/m1": {"host": "mail.example.com", "mail": True, "priority": 5},
    "nt/i0": {"host": "hello.svc.local", "text": "t=1"},
    "mix/a": {"host": "hello.svc.local"},
    "mix/b": {"host": "10.0.0.5"},
    # defect 4: one record per distinct data
    "dup/a": {"host": "10.0.0.11", "text": "same", "port": 80},
    "dup/b": {"host": "10.0.0.11", "text": "same", "port": 80},
    "dup6/a": {"host": "fd00::11"},
    "dup6/b": {"host": "FD00:0:0::11"},
    "dups/a": {"host": "t.example.com", "port": 81},
    "dups/b": {"host": "t.example.com", "port": 81},
    # defect 6: PTRs (10.77/16 and fd77::/16 appear nowhere else)
    "pt/a": {"host": "10.77.0.5"},
    "pt/b": {"host": "10.77.0.6"},
    "pq/b": {"host": "10.77.0.6"},
    "pt6/a": {"host": "fd77::6"},
}
# truncation: 60 and 30 instances (10.8.x.x: no other case uses it)
BIG = {f"big/i{i:02d}": {"host": f"10.8.0.{i}", "port": 9000 + i} for i in range(1, 61)}
MID = {f"mid/i{i:02d}": {"host": f"10.8.1.{i}", "port": 9000 + i} for i in range(1, 31)}
D18.update(BIG)
D18.update(MID)
D18_STORED_PTR = {"arpa/in-addr/10/77/0/5": {"host": "stored.svc.local"}}

D18_ZONE = DEFAULT_NS_GLUE + r"""
hello A 10.0.0.7
i0.hello A 10.0.0.7
hello SRV 10 100 8080 i0.hello
i0.hello SRV 10 100 8080 i0.hello
top CNAME hello
@ A 10.0.0.99
addr1 A 10.0.0.99
al CNAME hello
i0.al CNAME hello
np SRV 10 100 8080 hello
i0.np SRV 10 100 8080 hello
nm MX 5 mail.example.com.
m1.nm MX 5 mail.example.com.
nt TXT "t=1"
i0.nt TXT "t=1"
mix A 10.0.0.5
a.mix CNAME hello
b.mix A 10.0.0.5
dup A 10.0.0.11
dup TXT "same"
dup SRV 10 100 80 a.dup
dup SRV 10 100 80 b.dup
a.dup A 10.0.0.11
a.dup TXT "same"
a.dup SRV 10 100 80 a.dup
b.dup A 10.0.0.11
b.dup TXT "same"
b.dup SRV 10 100 80 b.dup
dup6 AAAA fd00::11
a.dup6 AAAA fd00::11
b.dup6 AAAA fd00::11
dups SRV 10 100 81 t.example.com.
a.dups SRV 10 100 81 t.example.com.
b.dups SRV 10 100 81 t.example.com.
pt A 10.77.0.5
pt A 10.77.0.6
a.pt A 10.77.0.5
b.pt A 10.77.0.6
pq A 10.77.0.6
b.pq A 10.77.0.6
pt6 AAAA fd77::6
a.pt6 AAAA fd77::6
"""
# small zones of their own: (etcd keys below /knotdiff/local/<id>/svc, zone body, questions)
EXTRA = {
    # the apex's only record one label below is a bare name host: the apex is still no alias
    "apexalias": ({"web": {"host": "hello.svc.apexalias.local"}, "hello/i1": {"host": "10.0.0.1", "port": 8080}},
                  HELLO1 + "web CNAME hello\n",
                  [("svc.apexalias.local", t) for t in ("A", "AAAA", "CNAME", "SOA", "NS", "TXT", "MX", "SRV")]
                  + [("web.svc.apexalias.local", "A")]),
}

def _service_lines(service: str, subnet: str, count: int) -> str:
    lines = []
    for i in range(1, count + 1):
        inst = f"i{i:02d}.{service}"
        lines += [f"{service} A 10.8.{subnet}.{i}", f"{inst} A 10.8.{subnet}.{i}",
                  f"{service} SRV 10 100 {9000 + i} {inst}", f"{inst} SRV 10 100 {9000 + i} {inst}"]
    return "\n".join(lines) + "\n"


D18_ZONE += _service_lines("big", "0", 60) + _service_lines("mid", "1", 30)

# only the 10.77/16 names are asked; dnsdisco also holds automatic PTRs of every other address
REVERSE_ZONE = DEFAULT_NS_GLUE + """
5.0.77.10 PTR stored.svc.local.
6.0.77.10 PTR b.pt.svc.local.
6.0.77.10 PTR b.pq.svc.local.
"""
V6_PTR_NAME = "6.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.7.7.d.f.ip6.arpa"


@pytest.fixture(scope="module")
def pair(etcd, tmp_path_factory):
    kv = KV([etcd.endpoint], timeout=5.0)
    try:
        for case in TABLE:
            if case[0] not in RULE_ZONES:
                continue
            for key, value in case_keys(case):
                kv.put(key, value)
        for rel, value in D18.items():
            kv.put(f"{PREFIX}/local/svc/{rel}", json.dumps(value).encode())
        for cid, (records, _, _) in EXTRA.items():
            for rel, value in records.items():
                kv.put(f"{PREFIX}/local/{cid}/svc/{rel}", json.dumps(value).encode())
        for rel, value in D18_STORED_PTR.items():
            kv.put(f"{PREFIX}/{rel}", json.dumps(value).encode())
    finally:
        kv.close()

    zones = {"svc.local": zone_text("svc.local", D18_ZONE),
             "in-addr.arpa": zone_text("in-addr.arpa", REVERSE_ZONE),
             # no ip6.arpa zone on our side: the automatic PTR is answered without one (defect 6);
             # Knot gets a zone of exactly that name to hold it
             V6_PTR_NAME: zone_text(V6_PTR_NAME, "@ PTR a.pt6.svc.local.\n", ns=("ns.dns.svc.local.",))}
    for case in TABLE:
        cid = case[0]
        if cid not in RULE_ZONES:
            continue
        ns = RULE_NS.get(cid, ("ns.dns",))
        body = RULE_ZONES[cid] + (DEFAULT_NS_GLUE if cid not in RULE_NS else "")
        zones[case_zone(cid)] = zone_text(case_zone(cid), body, ns=ns)

    for cid, (_, body, _) in EXTRA.items():
        zones[case_zone(cid)] = zone_text(case_zone(cid), body + DEFAULT_NS_GLUE)
    zone_args = []
    for z in zones:
        if z != V6_PTR_NAME:
            zone_args += ["--zone", z]
    work = tmp_path_factory.mktemp("knotdiff")
    with KnotServer(work / "knot", zones) as knot, \
            ServeProcess(etcd.endpoint, "--prefix", PREFIX, *zone_args) as ours:
        # serve answers SOA once it has listed etcd; wait for the last key to be sure
        wait_for(lambda: ask(ours.port, "a.pt6.svc.local", "AAAA").answer, 20, 0.1, "dnsdisco to hold the data")
        yield ours, knot


def both(pair, name, rdtype="A", **kw):
    ours, knot = pair
    return ask(ours.port, name, rdtype, **kw), ask(knot.port, name, rdtype, **kw)


def assert_same(pair, name, rdtype="A", **kw):
    mine, ref = both(pair, name, rdtype, **kw)
    problems = diff(signature(mine), signature(ref))
    assert not problems, f"{name} {rdtype}:\n  " + "\n  ".join(problems) + f"\n--- dnsdisco ---\n{mine}\n--- knot ---\n{ref}"
    return mine, ref


# ---------------------------------------------------------------- the rules table

@pytest.mark.parametrize("case", TABLE, ids=[c[0] for c in TABLE])
def test_rules_table_agrees_with_knot(pair, case):
    cid, (qname, qtype) = case[0], case[2]
    if cid not in RULE_ZONES:
        pytest.fail(f"case {cid} of tests/unit/dns/test_rules.py has no hand-written Knot zone in RULE_ZONES yet")
    name = moved(cid, qname)
    if qtype == "ANY":
        # RFC 8482 section 4.1 lets a server answer ANY with one RRset or all; Knot answers all
        mine, ref = both(pair, name, qtype)
        a, b = signature(mine), signature(ref)
        assert (a["rcode"], a["AA"], a["authority types"]) == (b["rcode"], b["AA"], b["authority types"])
        assert set(a["answer"]) <= set(b["answer"]) and bool(a["answer"]) == bool(b["answer"]), (mine, ref)
        return
    # first as glibc asks (UDP, RD set, no EDNS): a first answer of dnsdisco's plain lane
    assert_same(pair, name, qtype, edns=None, rd=True)
    assert_same(pair, name, qtype)
    assert_same(pair, name, qtype, tcp=True, edns=None)


# ---------------------------------------------------------------- defect 1: label octets are data

def raw_name(*labels: bytes) -> dns.name.Name:
    return dns.name.Name(list(labels) + [b""])


ESCAPED = [
    raw_name(b"hello.svc", b"local"),             # `hello\.svc.local`: two labels, in no zone of ours
    raw_name(b"i0.hello", b"svc", b"local"),      # `i0\.hello.svc.local`: in svc.local, absent
    raw_name(b"hello", b"svc.local"),             # `hello.svc\.local`: outside
    raw_name(b"x", b"hello.svc", b"local"),
    raw_name(b"hello\\", b"svc", b"local"),       # a backslash octet
    raw_name(b"i0.", b"hello", b"svc", b"local"),  # `i0\..hello...`: a trailing dot inside a label
]
HIGH = [
    raw_name(b"\x80hello", b"svc", b"local"),
    raw_name(b"hel\xfflo", b"svc", b"local"),
    raw_name(b"\xc3\xa9", b"hello", b"svc", b"local"),
    raw_name(b"\xff", b"svc", b"local"),
    raw_name(b"\x80", b"example", b"com"),        # outside: REFUSED
    raw_name(b"hello", b"svc\x80", b"local"),
    raw_name(b"\x00", b"svc", b"local"),
]
EVERY_TYPE = ["A", "AAAA", "SRV", "TXT", "MX", "NS", "SOA", "PTR", "CNAME", "ANY", "CAA", "TYPE65534"]


@pytest.mark.parametrize("name", ESCAPED, ids=lambda n: n.to_text())
@pytest.mark.parametrize("rdtype", ["A", "AAAA", "SRV", "TXT"])
def test_escaped_dot_is_label_data(pair, name, rdtype):
    plain, _ = assert_same(pair, name, rdtype, edns=None, rd=True)      # the plain lane must decline them
    mine, _ = assert_same(pair, name, rdtype)
    assert not mine.answer and not plain.answer


@pytest.mark.parametrize("name", HIGH, ids=lambda n: n.to_text())
@pytest.mark.parametrize("rdtype", EVERY_TYPE)
def test_high_octets_are_absent_names(pair, name, rdtype):
    mine, ref = assert_same(pair, name, rdtype)
    assert mine.edns == 0, "the query had an OPT record; the reply must have one (RFC 6891 section 7)"
    assert mine.question[0].name == name
    mine, ref = assert_same(pair, name, rdtype, edns=None, tcp=True)
    assert mine.edns == -1
    assert_same(pair, name, rdtype, edns=None, rd=True)       # as glibc asks: the plain lane's spelling


def test_letter_case_of_high_octets_is_not_folded(pair):
    """RFC 4343: only A-Z/a-z fold; 0xC9 and 0xE9 are different octets."""
    assert_same(pair, raw_name(b"HELLO", b"SVC", b"LOCAL"), "A")
    assert_same(pair, raw_name(b"hell\xc9", b"svc", b"local"), "A")


# ---------------------------------------------------------------- defect 2: a CNAME owns its name alone

OWNERS = [
    ("svc.local", t) for t in ("A", "AAAA", "CNAME", "SOA", "NS", "TXT", "SRV", "MX")
] + [q for _, _, questions in EXTRA.values() for q in questions] + [
    ("top.svc.local", "A"), ("top.svc.local", "CNAME"),
    ("al.svc.local", "A"), ("al.svc.local", "TXT"), ("i0.al.svc.local", "AAAA"),
    ("np.svc.local", "A"), ("np.svc.local", "SRV"), ("np.svc.local", "CNAME"), ("i0.np.svc.local", "A"),
    ("nm.svc.local", "A"), ("nm.svc.local", "MX"), ("nm.svc.local", "CNAME"), ("m1.nm.svc.local", "A"),
    ("nt.svc.local", "A"), ("nt.svc.local", "TXT"), ("nt.svc.local", "CNAME"), ("i0.nt.svc.local", "AAAA"),
    ("mix.svc.local", "A"), ("mix.svc.local", "CNAME"), ("a.mix.svc.local", "A"), ("b.mix.svc.local", "A"),
]


@pytest.mark.parametrize("name,rdtype", OWNERS, ids=[f"{n}-{t}" for n, t in OWNERS])
def test_cname_owns_its_name_alone(pair, name, rdtype):
    assert_same(pair, name, rdtype)


# ---------------------------------------------------------------- defect 4: no duplicates in an RRset

@pytest.mark.parametrize("name,rdtype", [
    ("dup.svc.local", "A"), ("dup.svc.local", "TXT"), ("dup.svc.local", "SRV"),
    ("dup6.svc.local", "AAAA"), ("dups.svc.local", "SRV"), ("5.0.77.10.in-addr.arpa", "PTR"),
])
def test_no_duplicate_records(pair, name, rdtype):
    mine, _ = assert_same(pair, name, rdtype)
    for rrset in mine.answer:
        assert len(rrset) == len({rd.to_text().lower() for rd in rrset}), rrset


# ---------------------------------------------------------------- defect 5: never lame by default

@pytest.mark.parametrize("name,rdtype", [
    ("svc.local", "NS"), ("ns.dns.svc.local", "A"), ("ns.dns.svc.local", "AAAA"),
    ("dns.svc.local", "A"), ("in-addr.arpa", "NS"), ("ns.dns.in-addr.arpa", "A"),
])
def test_default_ns_has_addresses(pair, name, rdtype):
    assert_same(pair, name, rdtype)


def test_apex_ns_glue_matches_knot(pair):
    mine, ref = both(pair, "svc.local", "NS")
    assert rrs(mine.additional) - {r for r in rrs(mine.additional) if r[1] == "OPT"} == rrs(ref.additional)
    assert rrs(mine.additional), "the NS name has an address: it belongs in the additional section"


NS_ADDRESSES = ("192.0.2.53", "2001:db8::53")


@pytest.fixture(scope="module")
def ns_address_pair(etcd, tmp_path_factory):
    """serve --ns-address twice: the default NS name gets those addresses, not the --listen one."""
    kv = KV([etcd.endpoint], timeout=5.0)
    try:
        kv.put("/knotdiff-ns/local/svc/hello/i0", json.dumps({"host": "10.0.0.7", "port": 8080}).encode())
    finally:
        kv.close()
    zone = zone_text("svc.local", "ns.dns A 192.0.2.53\nns.dns AAAA 2001:db8::53\n"
                                  "hello A 10.0.0.7\ni0.hello A 10.0.0.7\n")
    work = tmp_path_factory.mktemp("knotdiff-ns")
    args = ["--prefix", "/knotdiff-ns", "--zone", "svc.local"]
    for address in NS_ADDRESSES:
        args += ["--ns-address", address]
    with KnotServer(work / "knot", {"svc.local": zone}) as knot, ServeProcess(etcd.endpoint, *args) as ours:
        wait_for(lambda: ask(ours.port, "hello.svc.local", "A").answer, 20, 0.1, "dnsdisco to hold the data")
        yield ours, knot


@pytest.mark.parametrize("name,rdtype", [("svc.local", "NS"), ("ns.dns.svc.local", "A"),
                                         ("ns.dns.svc.local", "AAAA"), ("ns.dns.svc.local", "TXT")])
def test_ns_address_flag(ns_address_pair, name, rdtype):
    mine, ref = assert_same(ns_address_pair, name, rdtype)
    if rdtype == "NS":
        glue = lambda m: {r for r in rrs(m.additional) if r[1] in ("A", "AAAA")}  # noqa: E731
        assert glue(mine) == glue(ref) == {("ns.dns.svc.local.", "A", "192.0.2.53"),
                                           ("ns.dns.svc.local.", "AAAA", "2001:db8::53")}


# ---------------------------------------------------------------- truncation (RFC 2181 section 9, RFC 6891)

@pytest.mark.parametrize("name,rdtype,edns", [
    ("big.svc.local", "A", None),        # 60 A records: more than 512 octets
    ("big.svc.local", "SRV", 0),         # 60 SRV: more than 1232 octets
    ("mid.svc.local", "SRV", 0),         # 30 SRV fit in 1232, their glue does not: no TC
    ("mid.svc.local", "A", None),
    ("mid.svc.local", "A", 0),
])
def test_truncation_agrees_with_knot(pair, name, rdtype, edns):
    mine, ref = both(pair, name, rdtype, edns=edns)
    a, b = signature(mine), signature(ref)
    assert (a["rcode"], a["AA"], a["TC"], a["OPT"]) == (b["rcode"], b["AA"], b["TC"], b["OPT"]), (mine, ref)
    if not a["TC"]:
        assert a["answer"] == b["answer"]
    else:
        assert set(a["answer"]) <= set(b["answer"]) | set(signature(ask(pair[1].port, name, rdtype, tcp=True))["answer"])
    # the same question over TCP gets everything, from both
    assert_same(pair, name, rdtype, edns=edns, tcp=True)


# ---------------------------------------------------------------- defect 6: PTR that just works

@pytest.mark.parametrize("name,rdtype", [
    ("5.0.77.10.in-addr.arpa", "PTR"),     # a stored reverse key wins over the automatic PTR
    ("6.0.77.10.in-addr.arpa", "PTR"),     # two names, one address
    ("9.0.77.10.in-addr.arpa", "PTR"),     # in our reverse zone, nothing held: NXDOMAIN
    ("0.77.10.in-addr.arpa", "PTR"),       # empty non-terminal
    ("6.0.77.10.in-addr.arpa", "A"),
    (V6_PTR_NAME, "PTR"),                  # no ip6.arpa zone configured, answered from the snapshot
    ("7" + V6_PTR_NAME[1:], "PTR"),        # nothing held, no reverse zone, no forwarding: REFUSED
])
def test_ptr(pair, name, rdtype):
    assert_same(pair, name, rdtype)


# ---------------------------------------------------------------- the references agree with each other

# (question) -> why BIND's answer may differ from Knot's there
REFERENCE_SPLITS = {
    # RFC 1034 section 3.6.2 leaves the rcode of a CNAME loop open: Knot NOERROR, BIND SERVFAIL
    (moved("cname-loop", "a.svc.local"), "A"): "RFC 1034 section 3.6.2",
    (moved("cname-self-loop", "a.svc.local"), "A"): "RFC 1034 section 3.6.2",
}


def test_bind_loads_every_hand_written_zone_and_agrees_with_knot(pair, tmp_path):
    """BIND checks zone files harder than Knot (CNAME beside other data, NS without address), so
    loading them all proves the hand-written zones are legal; then BIND must answer the table's
    and the defects' questions as Knot does, or the split must be named in REFERENCE_SPLITS."""
    ok, why = BindServer.available()
    if not ok:
        pytest.skip(why)
    knot = pair[1]
    questions = [(moved(c[0], c[2][0]), c[2][1]) for c in TABLE if c[0] in RULE_ZONES and c[2][1] != "ANY"]
    questions += OWNERS + [(str(n), t) for n in ESCAPED + HIGH for t in ("A", "TXT")]
    with BindServer(tmp_path / "bind", knot.zones) as bind:
        unloaded = [line for line in bind.log().splitlines() if "not loaded due to errors" in line]
        assert not unloaded, "\n".join(unloaded) + "\n" + bind.log()[-3000:]
        parted = []
        for name, rdtype in questions:
            k = signature(ask(knot.port, name, rdtype))
            b = signature(ask(bind.port, name, rdtype))
            if k != b and (name, rdtype) not in REFERENCE_SPLITS:
                parted.append(f"{name} {rdtype}: " + "; ".join(diff(k, b)).replace("dnsdisco", "Knot").replace("reference", "BIND"))
    assert not parted, "Knot and BIND part (name the RFC that decides):\n  " + "\n  ".join(parted)


# ---------------------------------------------------------------- where the references part: BIND is asked too

def test_cname_loop_answer_is_what_both_references_give(pair, tmp_path):
    """RFC 1034 section 3.6.2 calls a CNAME loop a configuration error and says nothing of the
    rcode: Knot answers NOERROR, BIND 9 SERVFAIL, both with the two CNAMEs. DESIGN section 8 takes
    Knot's (an answer with what was found so far), so dnsdisco must give both references' records
    and Knot's rcode."""
    ok, why = BindServer.available()
    if not ok:
        pytest.skip(why)
    zone = zone_text("loop.test", DEFAULT_NS_GLUE + "a CNAME b\nb CNAME a\n")
    with KnotServer(tmp_path / "k", {"loop.test": zone}) as knot, BindServer(tmp_path / "b", {"loop.test": zone}) as bind:
        k = signature(ask(knot.port, "a.loop.test", "A"))
        b = signature(ask(bind.port, "a.loop.test", "A"))
    ours = signature(ask(pair[0].port, moved("cname-loop", "a.svc.local"), "A"))
    swap = lambda answer: sorted((o.replace("loop.test", "svc.cname-loop.local"), t,  # noqa: E731
                                  r.replace("loop.test", "svc.cname-loop.local")) for o, t, r in answer)
    assert ours["answer"] == swap(k["answer"]) == swap(b["answer"])
    assert ours["rcode"] == k["rcode"]
