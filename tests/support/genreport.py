"""ISC's DNS compliance tests (genreport, the set behind DNS Flag Day) reproduced in Python.

`TESTS` is genreport's table (name, EDNS rdata, UDP size, EDNS flags, version, TCP, cookie,
ignore TC, header flags, opcode, type) in its order; `build(test, zone)` makes the query
genreport's dotest() sends, byte for byte apart from the id and the TSIG time; `judge(test,
zone, reply)` applies the checks of genreport's process() and returns its tags ("ok", or what
failed, e.g. "noopt", "mbz", "badkey"), plus its informational tags (nsid, expire, cookie,
subnet). Pure: no I/O.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import dns.message
import dns.name
import dns.rdatatype
import dns.tsig

NOERROR, FORMERR, NOTIMP, REFUSED, NOTAUTH, BADVERS, BADCOOKIE = 0, 1, 4, 5, 9, 16, 23
BADSIG, BADKEY, BADTIME = 16, 17, 18
INFORMATIONAL = {"nsid", "expire", "cookie", "subnet"}
RCODES = {0: "noerror", 1: "formerr", 2: "servfail", 3: "nxdomain", 4: "notimp", 5: "refused",
          6: "yxdomain", 7: "yxrrset", 8: "nxrrset", 9: "notauth", 10: "notzone", 16: "badvers",
          23: "badcookie"}
TSIG_ERRORS = {16: "badsig", 17: "badkey", 18: "badtime"}
OPCODES = {0: "query", 1: "iquery", 2: "status", 4: "notify", 5: "update"}

COOKIE = b"\x00\x0a\x00\x08\x01\x02\x03\x04\x05\x06\x07\x08"
NSID = b"\x00\x03\x00\x00"
EXPIRE = b"\x00\x09\x00\x00"
ECS = b"\x00\x08\x00\x04\x00\x01\x00\x00"
OPT100 = b"\x00\x64\x00\x00"


@dataclass(frozen=True)
class Test:
    name: str
    rdata: bytes = b""          # EDNS option bytes
    udpsize: int = 0            # 0: no OPT record
    eflags: int = 0             # EDNS flags (0x8000 = DO)
    version: int = 0
    tcp: bool = False
    cookie: bool = False
    ignore: bool = False        # do not retry over TCP when TC is set
    tc: bool = False
    rd: bool = False
    ra: bool = False
    cd: bool = False
    ad: bool = False
    aa: bool = False
    z: bool = False
    opcode: int = 0
    qtype: int = dns.rdatatype.SOA


SOA, DNSKEY = dns.rdatatype.SOA, dns.rdatatype.DNSKEY
TESTS = [
    Test("dns"),
    Test("aa", aa=True),
    Test("ad", ad=True),
    Test("cd", cd=True),
    Test("ra", ra=True),
    Test("rd", rd=True),
    Test("tc", tc=True),
    Test("zflag", z=True),
    Test("opcode", opcode=15, qtype=0),
    Test("opcodeflg", tc=True, rd=True, ra=True, cd=True, ad=True, aa=True, z=True, opcode=15, qtype=0),
    Test("type666", qtype=666),
    Test("tcp", tcp=True),
    Test("edns", udpsize=4096),
    Test("edns1", udpsize=4096, version=1),
    Test("edns@512", udpsize=512, ignore=True, qtype=DNSKEY),
    Test("ednsopt", OPT100, 4096),
    Test("edns1opt", OPT100, 4096, version=1),
    Test("do", udpsize=4096, eflags=0x8000),
    Test("docd", udpsize=4096, eflags=0x8000, cd=True),
    Test("edns1do", udpsize=4096, eflags=0x8000, version=1),
    Test("ednsflags", udpsize=4096, eflags=0x0080),
    Test("optlist", NSID + ECS + EXPIRE + COOKIE, 4096, cookie=True),
    Test("ednsnsid", NSID, 4096),
    Test("ednscookie", COOKIE, 4096, cookie=True),
    Test("ednsexpire", EXPIRE, 4096),
    Test("ednssubnet", ECS, 4096),
    Test("edns1nsid", NSID, 4096, version=1),
    Test("edns1cookie", COOKIE, 4096, version=1, cookie=True),
    Test("edns1expire", EXPIRE, 4096, version=1),
    Test("edns1subnet", ECS, 4096, version=1),
    Test("ednstcp", udpsize=512, eflags=0x8000, tcp=True, qtype=DNSKEY),
    Test("bind11", COOKIE, 4096, eflags=0x8000, cookie=True),
    Test("dig11", COOKIE, 4096, cookie=True, rd=True, ad=True),
    Test("dnswkk"),
]
# genreport's TYPE group: every type asked at the zone apex, no EDNS (codes from the IANA registry)
TYPE_CODES = {
    "A": 1, "NS": 2, "MD": 3, "MF": 4, "CNAME": 5, "SOA": 6, "MB": 7, "MG": 8, "MR": 9, "NULL": 10, "WKS": 11,
    "PTR": 12, "HINFO": 13, "MINFO": 14, "MX": 15, "TXT": 16, "RP": 17, "AFSDB": 18, "X25": 19, "ISDN": 20,
    "RT": 21, "NSAP": 22, "NSAP-PTR": 23, "SIG": 24, "KEY": 25, "PX": 26, "GPOS": 27, "AAAA": 28, "LOC": 29,
    "NXT": 30, "SRV": 33, "NAPTR": 35, "KX": 36, "CERT": 37, "A6": 38, "DNAME": 39, "APL": 42, "DS": 43,
    "SSHFP": 44, "IPSECKEY": 45, "RRSIG": 46, "NSEC": 47, "DNSKEY": 48, "DHCID": 49, "NSEC3": 50,
    "NSEC3PARAM": 51, "TLSA": 52, "SMIMEA": 53, "HIP": 55, "CDS": 59, "CDNSKEY": 60, "OPENPGPKEY": 61,
    "SPF": 99, "NID": 104, "L32": 105, "L64": 106, "LP": 107, "EUI48": 108, "EUI64": 109, "URI": 256,
    "CAA": 257, "AVC": 258, "DOA": 259, "DLV": 32769, "TYPE1000": 1000,
}
TYPE_TESTS = [Test(name, qtype=code) for name, code in TYPE_CODES.items()]

WKK_KEYRING = {dns.name.root: dns.tsig.Key(dns.name.root, b"\x00" * 32, dns.tsig.HMAC_SHA256)}


def _name_wire(zone: str) -> bytes:
    return dns.name.from_text(zone).to_wire()


def build(test: Test, zone: str, qid: int = 0x4242) -> bytes:
    """The query genreport's dotest() sends for `test`."""
    flags = (test.opcode & 0xF) << 11
    if test.aa:
        flags |= 0x0400
    if test.tc:
        flags |= 0x0200
    if test.rd:
        flags |= 0x0100
    if test.ra:
        flags |= 0x0080
    if test.z:
        flags |= 0x0040
    if test.ad:
        flags |= 0x0020
    if test.cd:
        flags |= 0x0010
    if test.opcode == 15:          # header only: genreport zeroes the question section
        return struct.pack("!HHHHHH", qid, flags, 0, 0, 0, 0)
    body = _name_wire(zone) + struct.pack("!HH", test.qtype, 1)
    arcount = 0
    tail = b""
    if test.udpsize:
        tail += b"\x00" + struct.pack("!HHIH", dns.rdatatype.OPT, test.udpsize,
                                      (test.version << 16) | test.eflags, len(test.rdata)) + test.rdata
        arcount += 1
    wire = struct.pack("!HHHHHH", qid, flags, 1, 0, 0, arcount) + body + tail
    if test.name == "dnswkk":
        msg = dns.message.from_wire(wire)
        msg.use_tsig(WKK_KEYRING, keyname=dns.name.root, fudge=300, algorithm=dns.tsig.HMAC_SHA256)
        wire = msg.to_wire()
    return wire


class Malformed(Exception):
    pass


def _skip_name(buf: bytes, pos: int) -> tuple[dns.name.Name, int]:
    try:
        name, used = dns.name.from_wire(buf, pos)
    except Exception as exc:
        raise Malformed(str(exc)) from None
    return name, pos + used


def _get(fmt: str, buf: bytes, pos: int):
    size = struct.calcsize(fmt)
    if len(buf) - pos < size:
        raise Malformed("short")
    return struct.unpack_from(fmt, buf, pos), pos + size


def parse(buf: bytes) -> dict:
    """The fields process() reads, from raw reply bytes."""
    (qid, flags, qd, an, au, ad), pos = _get("!HHHHHH", buf, 0)
    out = {"id": qid, "qr": flags >> 15 & 1, "opcode": flags >> 11 & 0xF, "aa": flags >> 10 & 1,
           "tc": flags >> 9 & 1, "rd": flags >> 8 & 1, "ra": flags >> 7 & 1, "z": flags >> 6 & 1,
           "ad": flags >> 5 & 1, "cd": flags >> 4 & 1, "rcode": flags & 0xF, "counts": (qd, an, au, ad),
           "question": [], "answer": [], "authority": [], "additional": [], "opt": None, "tsig": None,
           "length": len(buf)}
    for _ in range(qd):
        name, pos = _skip_name(buf, pos)
        (qtype, qclass), pos = _get("!HH", buf, pos)
        out["question"].append((name, qtype, qclass))
    for section, count in (("answer", an), ("authority", au), ("additional", ad)):
        for i in range(count):
            name, pos = _skip_name(buf, pos)
            (rtype, rclass, ttl, rdlen), pos = _get("!HHIH", buf, pos)
            if len(buf) - pos < rdlen:
                raise Malformed("rdata past the end")
            rdata = buf[pos:pos + rdlen]
            pos += rdlen
            out[section].append((name, rtype, rclass, ttl, rdata))
            if section == "additional" and rtype == dns.rdatatype.OPT:
                if out["opt"] is not None:
                    raise Malformed("two OPT records")
                options, p = [], 0
                while len(rdata) - p >= 4:
                    code, olen = struct.unpack_from("!HH", rdata, p)
                    p += 4
                    if len(rdata) - p < olen:
                        raise Malformed("option past the OPT data")
                    options.append((code, rdata[p:p + olen]))
                    p += olen
                if p != len(rdata):
                    raise Malformed("trailing OPT bytes")
                out["opt"] = {"size": rclass, "ttl": ttl, "options": options}
            if section == "additional" and rtype == dns.rdatatype.TSIG:
                if out["tsig"] is not None:
                    raise Malformed("two TSIG records")
                alg, p = _skip_name(rdata, 0)
                (hi, lo, fudge, maclen), p = _get("!HIHH", rdata, p)
                mac = rdata[p:p + maclen]
                p += maclen
                (orig, error, olen), p = _get("!HHH", rdata, p)
                out["tsig"] = {"name": name, "alg": alg, "error": error, "fudge": fudge, "mac": mac,
                               "class": rclass, "ttl": ttl, "last": i == count - 1, "other": rdata[p:p + olen]}
    if pos != len(buf):
        raise Malformed("trailing bytes")
    return out


def judge(test: Test, zone: str, buf: bytes) -> list[str]:
    """genreport's tags for one reply (process(), minus what needs RRSIGs or recursion)."""
    try:
        r = parse(buf)
    except Malformed:
        return ["malformed"]
    tags: list[str] = []
    zname = dns.name.from_text(zone)
    qd, an, au, ad = r["counts"]
    if test.opcode != 0:
        for section, count in (("question", qd), ("answer", an), ("authority", au), ("additional", ad)):
            if count:
                tags.append(f"non-empty-{section}-section")
    else:
        for name, qtype, _ in r["question"]:
            if name != zname or qtype != test.qtype:
                tags.append("mismatch")
    opt = r["opt"]
    ednsttl = opt["ttl"] if opt else 0
    rcode = r["rcode"] + ((ednsttl & 0xFF000000) >> 20)
    seensoa = any(rt == dns.rdatatype.SOA and name == zname for name, rt, *_ in r["answer"])
    addrcode = True
    if r["opcode"] != test.opcode:
        tags.append(OPCODES.get(r["opcode"], f"opcode{r['opcode']}"))
    if test.version == 0:
        if test.opcode == 0 and rcode != 0 and not (test.cookie and rcode == BADCOOKIE):
            tags.append(RCODES.get(rcode, f"rcode{rcode}"))
            addrcode = False
        if test.opcode != 0 and rcode != NOTIMP:
            tags.append(RCODES.get(rcode, f"rcode{rcode}"))
            addrcode = False
    tsig = r["tsig"]
    if tsig and tsig["error"]:
        if addrcode and rcode != NOTAUTH:
            tags.append(RCODES.get(rcode, f"rcode{rcode}"))
        tags.append(TSIG_ERRORS.get(tsig["error"], f"rcode{tsig['error']}"))
    if test.name == "dnswkk" and not tsig:
        tags.append("notsig")
    if tsig:
        if not tsig["last"]:
            tags.append("tsig-not-last")
        if tsig["class"] != 255:
            tags.append("tsig-bad-class")
        if tsig["ttl"] != 0:
            tags.append("tsig-bad-ttl")
        if tsig["name"] != dns.name.root:
            tags.append("tsig-wrong-key")
        if tsig["alg"] != dns.name.from_text("hmac-sha256"):
            tags.append("tsig-wrong-alg")
        if tsig["fudge"] == 0:
            tags.append("tsig-bad-fudge")
        if tsig["error"] == BADTIME and len(tsig["other"]) != 6:
            tags.append("tsig-bad-other-len")
    if test.version != 0 and rcode != BADVERS:
        tags.append(RCODES.get(rcode, f"rcode{rcode}"))
    ednsvers = (ednsttl >> 16) & 0xFF
    if opt and ednsvers != 0:
        tags.append("version-not-zero")
    if opt and ((ednsvers < test.version and rcode != BADVERS) or (ednsvers >= test.version and rcode == BADVERS)):
        tags.append("badversion")
    if not opt and test.udpsize:
        tags.append("noopt")
    if opt and not test.udpsize:
        tags.append("opt")
    if test.qtype == SOA and test.version == 0 and not test.ignore and not seensoa and rcode == NOERROR:
        tags.append("nosoa")
    if test.qtype == SOA and seensoa and (test.version != 0 or rcode != NOERROR):
        tags.append("soa")
    if opt and any(code == 100 for code, _ in opt["options"]):
        tags.append("echoed")
    if not r["aa"] and test.version == 0 and rcode == NOERROR and test.opcode == 0:
        tags.append("noaa")
    if r["aa"] and test.opcode != 0:
        tags.append("aa")
    if r["ra"] and test.opcode:
        tags.append("ra")
    if r["rd"] and (test.opcode or not test.rd):
        tags.append("rd")
    if not r["rd"] and test.rd and test.opcode == 0:
        tags.append("nord")
    if r["ad"] and (test.opcode or (not test.ad and not test.eflags & 0x8000)):
        tags.append("ad")
    if r["cd"] and (test.opcode or not test.cd):
        tags.append("cd")
    if r["z"]:
        tags.append("z")
    if ednsttl & 0x7FFF:
        tags.append("mbz")
    if test.ignore and r["length"] > (test.udpsize or 512):
        tags.append("toobig")
    if not tags:
        tags.append("ok")
    codes = {code for code, _ in opt["options"]} if opt else set()
    if any(code == 3 and data for code, data in opt["options"]) if opt else False:
        tags.append("nsid")
    if any(code == 9 and len(data) == 4 for code, data in opt["options"]) if opt else False:
        tags.append("expire")
    if any(code == 10 and 16 <= len(data) <= 40 for code, data in opt["options"]) if opt else False:
        tags.append("cookie")
    if 8 in codes:
        tags.append("subnet")
    return tags
