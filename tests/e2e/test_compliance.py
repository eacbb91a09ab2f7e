"""ISC's DNS compliance tests (genreport) against dnsdisco, judged beside Knot DNS and BIND 9.

tests/support/genreport.py builds each of genreport's queries byte for byte and applies its checks to
the reply; every test must give dnsdisco the tags Knot gets for the same zone (and BIND where it
agrees with Knot: see REFERENCE_SPLITS), and those must be genreport's "ok" (dnswkk: NOTAUTH
with TSIG error BADKEY, RFC 8945 section 5.2.2, since nobody holds the well-known key).

Then the message rules of issue 18 (defect 7) that genreport does not send: malformed EDNS
options and an OPT record outside the additional section (FORMERR with an OPT, RFC 6891
sections 6.1.1 and 7), and no CD in replies to opcodes other than QUERY (RFC 6840 section 5.9).
"""
from __future__ import annotations

import json
import struct

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.tsig
import pytest

from tests.support import genreport
from dnsdisco.etcd.client import KV
from tests.support.harness import ServeProcess, wait_for
from tests.support.refservers import BindServer, KnotServer, ask, raw_exchange, zone_text

ZONE = "svc.local"
PREFIX = "/compliance"
RECORDS = {"hello/i0": {"host": "10.0.0.7", "port": 8080}}
ZONE_BODY = """
ns.dns A 127.0.0.1
hello A 10.0.0.7
i0.hello A 10.0.0.7
hello SRV 10 100 8080 i0.hello
i0.hello SRV 10 100 8080 i0.hello
"""

_ok, _why = KnotServer.available()
if not _ok:
    pytestmark = pytest.mark.skip(reason=_why)


class Servers:
    def __init__(self, ours, knot, bind):
        self.ours, self.knot, self.bind = ours, knot, bind

    def ports(self):
        # the references first, so a test that trips on a reference says so before judging dnsdisco
        out = {"knot": self.knot.port}
        if self.bind is not None:
            out["bind"] = self.bind.port
        out["dnsdisco"] = self.ours.port
        return out


@pytest.fixture(scope="module")
def servers(etcd, tmp_path_factory):
    kv = KV([etcd.endpoint], timeout=5.0)
    try:
        for rel, value in RECORDS.items():
            kv.put(f"{PREFIX}/local/svc/{rel}", json.dumps(value).encode())
    finally:
        kv.close()
    work = tmp_path_factory.mktemp("compliance")
    zones = {ZONE: zone_text(ZONE, ZONE_BODY)}
    bind = BindServer(work / "bind", zones) if BindServer.available()[0] else None
    with KnotServer(work / "knot", zones) as knot, ServeProcess(etcd.endpoint, "--prefix", PREFIX, "--zone", ZONE) as ours:
        wait_for(lambda: ask(ours.port, "hello.svc.local", "A").answer, 20, 0.1, "dnsdisco to hold the data")
        if bind is not None:
            bind.start()
        try:
            yield Servers(ours, knot, bind)
        finally:
            if bind is not None:
                bind.stop()


def exchange(test: genreport.Test, port: int) -> bytes:
    """Send like genreport: UDP unless the test says TCP; a TC reply is asked again over TCP
    unless the test ignores TC."""
    wire = genreport.build(test, ZONE)
    reply = raw_exchange(wire, port, tcp=test.tcp, timeout=3)   # resent when lost, as genreport does
    assert reply is not None, f"{test.name}: no reply from port {port}"
    if not test.tcp and not test.ignore and len(reply) >= 4 and reply[2] & 0x02:
        reply = raw_exchange(wire, port, tcp=True, timeout=3)
        assert reply is not None, f"{test.name}: no TCP reply from port {port}"
    return reply


def substantive(tags):
    return [t for t in tags if t not in genreport.INFORMATIONAL]


# Where Knot and BIND give different genreport tags: the RFC text that lets either stand. dnsdisco
# must then give the tags of one of them.
REFERENCE_SPLITS = {
    # Knot copies RD into its NOTIMP reply to opcode 15, BIND does not. RFC 1035 section 4.1.1 says RD
    # "is copied into the response"; genreport counts RD as defined for QUERY only.
    "opcodeflg": "RFC 1035 section 4.1.1",
}


@pytest.mark.parametrize("test", genreport.TESTS + genreport.TYPE_TESTS,
                         ids=[t.name for t in genreport.TESTS] + [f"type-{t.name}" for t in genreport.TYPE_TESTS])
def test_genreport(servers, test):
    tags = {who: genreport.judge(test, ZONE, exchange(test, port)) for who, port in servers.ports().items()}
    ours = substantive(tags["dnsdisco"])
    refs = {who: substantive(t) for who, t in tags.items() if who != "dnsdisco"}
    expected = ["notauth", "badkey"] if test.name == "dnswkk" else ["ok"]
    shown = f"genreport {test.name}: " + ", ".join(f"{who} {t}" for who, t in tags.items())
    if len({tuple(t) for t in refs.values()}) > 1:
        assert test.name in REFERENCE_SPLITS, f"the references differ; name the RFC that decides. {shown}"
        assert ours in refs.values(), shown
        return
    assert refs["knot"] == expected, f"Knot itself fails: {shown}"
    assert ours == expected, shown


# ---------------------------------------------------------------- defect 7: messages genreport does not send

def _query_head(flags=0, qd=1, an=0, au=0, ad=0, qid=0x5151) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, au, ad)


def _question(name=ZONE, qtype=dns.rdatatype.SOA) -> bytes:
    return dns.name.from_text(name).to_wire() + struct.pack("!HH", qtype, 1)


def _opt(rdata: bytes, size=1232, ttl=0) -> bytes:
    return b"\x00" + struct.pack("!HHIH", dns.rdatatype.OPT, size, ttl, len(rdata)) + rdata


MALFORMED = {
    # option length 8 but only 4 octets of option data follow (RFC 6891 section 6.1.2 / 7)
    "option-past-end": _query_head(ad=1) + _question() + _opt(b"\x00\x64\x00\x08abcd"),
    # three octets: not even an option header
    "short-option-header": _query_head(ad=1) + _question() + _opt(b"\x00\x64\x00"),
    # an OPT record in the answer section (RFC 6891 section 6.1.1: only in the additional section)
    "opt-in-answer": _query_head(an=1) + _question() + _opt(b""),
    "opt-in-authority": _query_head(au=1) + _question() + _opt(b""),
    "opt-in-answer-and-additional": _query_head(an=1, ad=1) + _question() + _opt(b"") + _opt(b""),
    "two-opt-records": _query_head(ad=2) + _question() + _opt(b"") + _opt(b""),
    "opt-owner-not-root": _query_head(ad=1) + _question() + b"\x01x\x00" + _opt(b"")[1:],
}


@pytest.mark.parametrize("name", list(MALFORMED))
@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_malformed_opt_gets_formerr_with_opt(servers, name, tcp):
    wire = MALFORMED[name]
    replies = {}
    for who, port in servers.ports().items():
        data = raw_exchange(wire, port, tcp=tcp, timeout=3)
        assert data is not None, f"{who} did not answer {name}"
        replies[who] = genreport.parse(data)
    ours, knot = replies["dnsdisco"], replies["knot"]
    assert ours["id"] == 0x5151 and ours["qr"]
    assert ours["rcode"] == dns.rcode.FORMERR, f"{name}: dnsdisco rcode {ours['rcode']}, Knot {knot['rcode']}"
    # RFC 6891 section 7: a request had an OPT, so the response has one (Knot and BIND leave it out here)
    assert ours["opt"] is not None, f"{name}: dnsdisco's FORMERR has no OPT"
    assert not ours["answer"] and not ours["authority"]


def test_references_formerr_the_same_messages(servers):
    """Knot and BIND both answer each malformed message FORMERR, except that Knot takes an OPT with a
    non-root owner (RFC 6891 section 6.1.2 says the owner MUST be 0): there BIND decides.
    Both leave the OPT out of these FORMERRs; dnsdisco keeps it, as RFC 6891 section 7 asks of a
    responder to a request that had an OPT (issue 18, defect 7)."""
    for name, wire in MALFORMED.items():
        for who, port in servers.ports().items():
            if who == "dnsdisco" or (who == "knot" and name == "opt-owner-not-root"):
                continue
            data = raw_exchange(wire, port, timeout=3)
            assert data is not None and genreport.parse(data)["rcode"] == dns.rcode.FORMERR, (who, name)


@pytest.mark.parametrize("opcode", [1, 2, 3, 6, 15])
@pytest.mark.parametrize("with_question", [True, False], ids=["question", "header-only"])
def test_cd_not_copied_for_other_opcodes(servers, opcode, with_question):
    """RFC 6840 section 5.9 defines CD for QUERY only; genreport flags a CD echoed to another opcode."""
    flags = (opcode << 11) | 0x0010 | 0x0100
    wire = _query_head(flags, qd=1 if with_question else 0) + (_question() if with_question else b"")
    seen = {}
    for who, port in servers.ports().items():
        data = raw_exchange(wire, port, timeout=3)
        assert data is not None, f"{who} did not answer opcode {opcode}"
        seen[who] = genreport.parse(data)
    ours = seen["dnsdisco"]
    assert ours["rcode"] == dns.rcode.NOTIMP == seen["knot"]["rcode"]
    assert not ours["cd"], f"opcode {opcode}: dnsdisco copied CD (Knot cd={seen['knot']['cd']})"
    assert not ours["aa"] and not ours["ra"] and not ours["ad"] and not ours["z"]


def test_tsig_unknown_key_is_badkey_on_every_name(servers):
    """RFC 8945 section 5.2.2: a signed query with an unknown key gets NOTAUTH/BADKEY, never a
    normal answer, whatever the name (inside our zone, absent, outside it). Knot answers a name
    outside its zones REFUSED without looking at the TSIG: there it departs from section 5.2.2 and
    BIND, which gives BADKEY everywhere, decides."""
    wrong = {}
    for qname in ("hello.svc.local", "nothing.svc.local", "www.example.com"):
        msg = dns.message.make_query(qname, "A", use_edns=False)
        msg.use_tsig(genreport.WKK_KEYRING, keyname=dns.name.root, algorithm=dns.tsig.HMAC_SHA256)
        for who, port in servers.ports().items():
            for tcp in (False, True):
                data = raw_exchange(msg.to_wire(), port, tcp=tcp, timeout=3)
                r = genreport.parse(data) if data else None
                got = (r["rcode"], r["tsig"] and r["tsig"]["error"], len(r["answer"])) if r else None
                if got != (dns.rcode.NOTAUTH, genreport.BADKEY, 0):
                    wrong.setdefault(who, []).append(f"{qname} {'tcp' if tcp else 'udp'}: {got}")
    knot_departs = {f"www.example.com {t}: (5, None, 0)" for t in ("udp", "tcp")}
    if set(wrong.get("knot", [])) <= knot_departs:      # the departure named above, and nothing else
        wrong.pop("knot", None)
    assert not {who: w for who, w in wrong.items() if who != "dnsdisco"}, f"a reference differs: {wrong}"
    assert not wrong, f"(rcode, TSIG error, answers) should be (NOTAUTH, BADKEY, 0): {wrong}"


# Header oddities on which Knot and BIND agree (others, such as a meta-type in the question or
# trailing octets, split them and are left out): dnsdisco must give their rcode.
_Q = dns.name.from_text(ZONE).to_wire()
ODDITIES = {
    "no-question": (_query_head(qd=0), dns.rcode.FORMERR),
    "ancount-without-record": (_query_head(an=1) + _Q + struct.pack("!HH", 6, 1), dns.rcode.FORMERR),
    "class-chaos": (_query_head() + _Q + struct.pack("!HH", 6, 3), dns.rcode.REFUSED),
    "class-hesiod": (_query_head() + _Q + struct.pack("!HH", 6, 4), dns.rcode.REFUSED),
    "opcode-iquery": (_query_head(1 << 11) + _Q + struct.pack("!HH", 6, 1), dns.rcode.NOTIMP),
    "opcode-status": (_query_head(2 << 11) + _Q + struct.pack("!HH", 6, 1), dns.rcode.NOTIMP),
}


@pytest.mark.parametrize("name", list(ODDITIES))
def test_header_oddities_as_both_references(servers, name):
    wire, rcode = ODDITIES[name]
    got = {}
    for who, port in servers.ports().items():
        data = raw_exchange(wire, port, timeout=3)
        got[who] = genreport.parse(data)["rcode"] if data else None
    assert set(got.values()) == {rcode}, f"{name}: rcodes {got} (expected {dns.rcode.to_text(rcode)})"
