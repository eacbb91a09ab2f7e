"""The short ways give what the general ones give (issue 23, cold answers).

`rules.answer` answers names whose records are all plain IPv4 ones (`_plain`) without
walking `_Lookup`, and `encoder.encode` writes the commonest replies (addresses, services
with glue, one RRset, a negative answer's SOA) without its general writer. Both keep a
switch, for these tests only, that sends every question the general way. Random snapshots
(bytes nodes, tuple nodes, dict nodes past nodes.BIG, zone files, CNAMEs, underscored
names, caps, default NS addresses, changes applied over a build) are asked every name and
type both ways: the replies must be the same bytes, in every order, with the same serial
offsets, and the answers the same rcode and dependencies.
"""
from __future__ import annotations

import json
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnsdisco.dns import encoder, rules, zonefile
from dnsdisco.dns import responder as responder_module
from dnsdisco.dns.constants import T_A, T_AAAA, T_ANY, T_CNAME, T_MX, T_NS, T_PTR, T_SOA, T_SRV, T_TXT
from dnsdisco.dns.encoder import encode, reply_flags
from dnsdisco.dns.responder import Responder
from dnsdisco.dns.rules import answer
from dnsdisco.dns.snapshot import Snapshot, ZoneConfig
from dnsdisco.dns.wire import encode_name

PREFIX = "/skydns"
ZONE = "svc.local"
QTYPES = (T_A, T_AAAA, T_SRV, T_TXT, T_CNAME, T_MX, T_PTR, T_ANY, T_SOA, T_NS)
ZONE_TEXT = """
@ 60 IN NS ns1.svc.local.
ns1 60 IN A 192.0.2.53
web 60 IN A 10.0.0.1
web 60 IN TXT "from the file"
alias 60 IN CNAME web.svc.local.
deep.down 60 IN A 10.9.9.9
"""

labels = st.sampled_from(["a", "b", "web", "api", "i0", "i1", "i2", "x-1", "_http", "_tcp", "db", "ns", "dns"])
ipv4 = st.sampled_from(["10.0.0.1", "10.0.0.2", "10.0.0.3", "192.0.2.7", "127.0.0.53"])
plain = st.builds(lambda host, port: {"host": host, "port": port} if port else {"host": host},
                  ipv4, st.sampled_from([0, 80, 443, 8080]))
other = st.one_of(
    st.fixed_dictionaries({"host": ipv4, "port": st.sampled_from([0, 80])},
                          optional={"ttl": st.sampled_from([0, 7, 300]), "weight": st.sampled_from([0, 1, 5, 100]),
                                    "priority": st.sampled_from([0, 10, 20]), "text": st.just("hi"),
                                    "mail": st.booleans(), "targetstrip": st.sampled_from([0, 1])}),
    st.builds(lambda host, port: {"host": host, "port": port}, st.sampled_from(["2001:db8::1", "::1"]),
              st.sampled_from([0, 80])),
    st.builds(lambda host: {"host": host}, st.sampled_from(["web.svc.local", "a.b.svc.local", "example.org",
                                                             "i0.web.svc.local"])),
)
value = st.one_of(plain, plain, plain, other)
# names of 1 to 3 labels under the zone; the last label picked below
paths = st.lists(labels, min_size=1, max_size=3)


def _key(path: list[str]) -> str:
    return PREFIX + "/local/svc/" + "/".join(reversed(path))


@st.composite
def snapshots(draw):
    entries = draw(st.lists(st.tuples(paths, value), max_size=24))
    crowd = draw(st.sampled_from([0, 0, 3, 12]))      # past nodes.BIG instances under one name: a dict node
    hosts = draw(st.sampled_from([1, 2, 4, 12]))       # how many addresses they share
    for i in range(crowd):
        entries.append(([f"i{i}", "big"], {"host": f"10.1.0.{i % hosts + 1}", "port": 80 + i % 2}))
    zone = ZoneConfig(ZONE, max_records_per_name=draw(st.sampled_from([1000, 1000, 2, 5])),
                      ns_addresses=draw(st.sampled_from([(), ("127.0.0.53",), ("127.0.0.53", "::1")])))
    if draw(st.booleans()) and draw(st.booleans()):
        zone = zonefile.parse_zone_text(zone, ZONE_TEXT)
    zones = [zone]
    if draw(st.booleans()):
        zones.append(ZoneConfig("b." + ZONE))             # a zone inside the first
    items = [(_key(path), json.dumps(val).encode()) for path, val in entries]
    split = draw(st.integers(0, len(items)))
    snap = Snapshot.build(PREFIX, zones, 10, items[:split])
    if split < len(items):                              # the rest applied as changes: an overlay
        snap, _touched, _rejected = snap.apply(11, items[split:])
    names = {ZONE, "nx." + ZONE, "_http._tcp.web." + ZONE, "_tcp.web." + ZONE, "ns.dns." + ZONE,
             "dns." + ZONE, "down." + ZONE}
    for path, _val in entries:
        for cut in range(len(path)):
            names.add(".".join(path[cut:]) + "." + ZONE)
        names.add("_http._tcp." + ".".join(path) + "." + ZONE)
        names.add("zz." + ".".join(path) + "." + ZONE)
    return snap, sorted(names)


def _both(snap, name: str, qtype: int, monkeypatch, edns: bool, limit: int):
    out = []
    for short in (True, False):
        monkeypatch.setattr(rules, "PLAIN_WAY", short)
        monkeypatch.setattr(encoder, "SHORT_WAYS", short)
        wire = encode_name(name)
        ans = answer(snap, wire, qtype)
        depends = ans.depends
        depends = {depends} if type(depends) is str else set(depends)
        flags = reply_flags(0x0100, ans.rcode, ans.aa, False)
        out.append(((ans.rcode, ans.aa, depends, ans.cacheable, ans.in_zone, ans.chase),
                    encode(ans, wire, qtype, 1, flags, edns, edns, limit)))
    return out


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                     HealthCheck.function_scoped_fixture])
@given(snapshots(), st.sampled_from([(False, 512), (True, 1232), (True, 65535), (False, 60), (True, 100)]))
def test_short_ways_answer_as_the_general_ones(monkeypatch, made, size):
    snap, names = made
    edns, limit = size
    for name in names:
        for qtype in QTYPES:
            short, general = _both(snap, name, qtype, monkeypatch, edns, limit)
            assert short == general, (name, qtype, snap.records_for(name))


# The switches are real: forced the general way, a question of each common shape takes it
# (a short way that raised or gave other bytes would fail the test above, not be skipped).
@pytest.mark.parametrize("name, qtype", [("i0.web." + ZONE, T_A), ("web." + ZONE, T_A), ("web." + ZONE, T_SRV),
                                         ("i0.web." + ZONE, T_AAAA), ("nx." + ZONE, T_A)])
def test_the_switches_choose_the_way(monkeypatch, name, qtype):
    items = [(_key([f"i{i}", "web"]), json.dumps({"host": f"10.0.0.{i + 1}", "port": 80}).encode())
             for i in range(2)]
    snap = Snapshot.build(PREFIX, [ZoneConfig(ZONE)], 10, items)
    walked = []
    real = rules._Lookup.run

    def run(self, *args):
        walked.append(args)
        return real(self, *args)

    monkeypatch.setattr(rules._Lookup, "run", run)
    general_writes = []
    real_general = encoder._general
    monkeypatch.setattr(encoder, "_general", lambda *a, **k: general_writes.append(1) or real_general(*a, **k))
    wire = encode_name(name)
    encode(answer(snap, wire, qtype), wire, qtype, 1, 0x8400, False, False, 512)
    assert not walked and not general_writes
    monkeypatch.setattr(rules, "PLAIN_WAY", False)
    monkeypatch.setattr(encoder, "SHORT_WAYS", False)
    encode(answer(snap, wire, qtype), wire, qtype, 1, 0x8400, False, False, 512)
    assert walked and general_writes


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshots())
def test_plain_records_are_records_for_packed(made):
    """Snapshot.plain_records gives the records of records_for, in its order, whenever they
    are all plain IPv4 ones; and None only when one is not, or the cap applies."""
    import socket
    snap, names = made
    for name in names:
        zone = snap.zone_of(name)
        recs = snap.records_for(name, zone)
        held = snap.plain_records(name, zone, True)
        plain = all(len(r) == 4 and r.host_kind == "ipv4" for r in recs)
        node_count = len(snap.instance_names(name))
        capped = node_count > 1 and node_count > zone.max_records_per_name
        if held is None:
            assert not plain or capped, name
            continue
        values, labels = held
        assert plain and not capped, name
        got = [(socket.inet_ntoa(values[at:at + 4]), values[at + 4] << 8 | values[at + 5])
               for at in range(0, len(values), 6)]
        assert got == [(r.host, r.port) for r in recs], name
        own = [name] if len(values) > 6 * len(labels) else []
        assert own + [label + "." + name for label in labels] == [r.name for r in recs], name


# -- the responder's packed way (rules.packed, encoder.packed_reply, Responder._packed_first)

def _query(name: str, qtype: int, qid: int, edns: bool, do: bool, size: int, rd: bool = True,
           cd: bool = False) -> bytes:
    """A query as stub resolvers send it (RD set, one question, an OPT when `edns`), or as
    resolvers and dnsperf do (RD clear), CD set, the name as spelled."""
    opt = b"\x00" + struct.pack("!HHIH", 41, size, 0x8000 if do else 0, 0) if edns else b""
    flags = (0x0100 if rd else 0) | (0x0010 if cd else 0)
    return (struct.pack("!HHHHHH", qid, flags, 1, 0, 0, 1 if edns else 0) + encode_name(name)
            + struct.pack("!HH", qtype, 1) + opt)


def _cache_state(responder) -> tuple:
    """What a responder's caches hold: each entry's replies, serial offsets and stamp, what
    drops it, and which octets its exact tables answer."""
    cache = responder.cache
    entries = {key: (entry.variants, entry.extra, entry.stamp) for key, entry in cache.entries.items()}
    shapes = {head: set(tails) for head, tails in cache.shapes.items()}
    exact = {transport: sorted(table) for transport, table in responder._exact.items()}
    return entries, dict(cache.depends), dict(cache.by_name), shapes, exact


class _NoForwarder:
    """Forwarding on (RA set, reverse zones checked) for names that are all ours: never asked."""

    def forward(self, data, tcp):
        raise AssertionError("a name in our zones was forwarded")


FORMS = [(False, False, 512), (True, True, 1232), (True, False, 100)]   # sizes: test_packed_replies_are_...
# (RD, CD, name in mixed case, transport): the first answer may come through any of them
SPELLINGS = [(True, False, False, "udp"), (False, False, False, "udp"), (True, True, False, "udp"),
             (True, False, True, "udp"), (True, False, False, "tcp")]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                    HealthCheck.function_scoped_fixture])
@given(snapshots(), st.booleans())
def test_packed_first_answers_are_the_usual_ones(monkeypatch, made, forwarding):
    """A responder whose first answers may take the packed way gives, query after query (the
    answer orders turning), the bytes of one whose first answers all take _first, whatever
    spelling asks first, and its caches end up holding the same entries, dependencies and
    exact-table keys; after a change to the snapshot too."""
    snap, names = made
    both = [Responder(snap, forwarder=_NoForwarder() if forwarding else None) for _ in range(2)]
    client = ("127.0.0.1", 5353)

    def ask_all(qid: int):
        for at, name in enumerate(names):
            for qtype in (T_A, T_AAAA, T_SRV, T_TXT):
                for turn in range(len(SPELLINGS)):         # a different spelling first for each name
                    rd, cd, mixed, transport = SPELLINGS[(at + turn) % len(SPELLINGS)]
                    edns, do, size = FORMS[(at + turn) % len(FORMS)]
                    spelled = name.upper() if mixed else name
                    packet = _query(spelled, qtype, qid, edns, do, size, rd, cd)
                    replies = []
                    for packed_way, responder in zip((True, False), both):
                        monkeypatch.setattr(responder_module, "PACKED_WAY", packed_way)
                        replies.append([responder.handle(packet, transport, client) for _ in range(3)])
                    assert replies[0] == replies[1], (name, qtype, rd, cd, mixed, transport, edns, size)

    ask_all(7)
    assert _cache_state(both[0]) == _cache_state(both[1])
    changed, _touched, _rejected = snap.apply(snap.revision + 1, [
        (_key(["i0", "web"]), json.dumps({"host": "10.0.0.9", "port": 80}).encode()),
        (_key(["db"]), None)])
    for responder in both:
        responder.on_swap(changed, _touched)
    ask_all(8)
    assert _cache_state(both[0]) == _cache_state(both[1])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshots())
def test_packed_replies_are_encoded_answers(made):
    """encoder.packed_reply writes from rules.packed what encode writes from rules.answer, at
    every size limit; it gives None only for a reply over the limit, which encode then cuts."""
    snap, names = made
    for name in names:
        wire = encode_name(name)
        for qtype in (T_A, T_AAAA, T_SRV):
            for forwarding in (False, True):
                held = rules.packed(snap, name, qtype, forwarding)
                if held is None:
                    continue
                ans = answer(snap, wire, qtype, 1, forwarding)
                assert held[4] == ans.rcode, (name, qtype)
                flags = reply_flags(0x0100, ans.rcode, ans.aa, forwarding)
                forms = [(False, False, 512), (True, True, 1232), (False, False, 60), (True, False, 100)]
                for edns in (False, True):      # and limits around the reply's own size (with the id)
                    size = len(encode(ans, wire, qtype, 1, flags, edns, False, 65535)[0][0]) + 2
                    forms += [(edns, False, size + step) for step in (-2, -1, 0, 1)]
                for edns, do, limit in forms:
                    usual = encode(ans, wire, qtype, 1, flags, edns, do, limit)
                    written = encoder.packed_reply(held, qtype, name, wire, flags, edns, do, limit)
                    if written is None:       # the reply does not fit: the encoder's rules cut it
                        whole = encode(ans, wire, qtype, 1, flags, edns, do, 65535)[0][0]
                        assert len(whole) + 2 > limit and usual[0][0] != whole, (name, qtype, limit)
                    else:
                        assert written == usual, (name, qtype, edns, limit)


@pytest.mark.parametrize("name, qtype, taken", [
    ("web." + ZONE, T_A, True), ("i0.web." + ZONE, T_A, True), ("web." + ZONE, T_SRV, True),
    ("i0.web." + ZONE, T_AAAA, True), ("nx." + ZONE, T_A, True), ("nx." + ZONE, T_SRV, True),
    ("web." + ZONE, T_TXT, False), ("shared." + ZONE, T_A, False), (ZONE, T_A, False),
    ("_http._tcp.web." + ZONE, T_SRV, False)])
def test_the_packed_way_is_taken(monkeypatch, name, qtype, taken):
    """The comparison above is not empty: the commonest first answers take the packed way
    (and, switched off, none does); the rest take _first."""
    items = [(_key([f"i{i}", "web"]), json.dumps({"host": f"10.0.0.{i + 1}", "port": 80}).encode())
             for i in range(2)]
    items += [(_key([f"i{i}", "shared"]), json.dumps({"host": "10.0.0.5", "port": 80}).encode()) for i in range(2)]
    snap = Snapshot.build(PREFIX, [ZoneConfig(ZONE)], 10, items)
    for switched_on in (True, False):
        monkeypatch.setattr(responder_module, "PACKED_WAY", switched_on)
        responder = Responder(snap)
        written = []
        real = responder_module.packed_reply

        def counting(*args, **kwargs):
            written.append(1)
            return real(*args, **kwargs)

        monkeypatch.setattr(responder_module, "packed_reply", counting)
        reply = responder.handle(_query(name, qtype, 1, False, False, 512), "udp", ("127.0.0.1", 5353))
        monkeypatch.setattr(responder_module, "packed_reply", real)
        assert reply[3] & 0xF == (3 if name.startswith("nx.") else 0)
        assert bool(written) == (taken and switched_on), (name, qtype, switched_on)


def _raw(name_wire: bytes, qtype: int = T_A, qclass: int = 1, tail: bytes = b"") -> bytes:
    return struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + name_wire + struct.pack("!HH", qtype, qclass) + tail


_WEB = b"\x03web\x03svc\x05local"


class _EchoForwarder:
    """An upstream that answers whatever it is sent with the query's own octets as a reply."""

    def forward(self, data, tcp):
        return data[:2] + b"\x81\x80" + data[4:]


@pytest.mark.parametrize("data", [
    _raw(b"\x02i0" + _WEB + b"\x00"),                      # the lane's own case
    _raw(_WEB + b"\x00", T_SRV), _raw(b"\x02nx\x03svc\x05local\x00", T_AAAA),
    _raw(b"\x00"),                                         # the root
    _raw(b"\x03svc\x05local\x00"),                         # the apex (its NS and SOA names: the walk's)
    _raw(b"\x02i0\x03web\x00\x03svc\x05local\x00"),        # a root in the middle: the rest is not the question
    _raw(b"\x02i0\x00\x03svc\x05local\x00"),               # an empty label
    _raw(b"\x40" + b"a" * 64 + b"\x03svc\x05local\x00"),   # a label over 63 octets
    _raw(b"\x3f" + b"a" * 63 + b"\x03svc\x05local\x00"),   # one of 63
    _raw(b"\x02i0\xc0\x0c"),                               # a compression pointer
    _raw(b"\x02i0\x03web\x03svc\x06local\x00"),            # a length running past the root
    _raw(b"\x02i0\x03web\x03svc\x04local\x00"),            # one stopping short of it
    _raw((b"\x3f" + b"a" * 63) * 3 + b"\x33" + b"a" * 51 + b"\x03svc\x05local\x00"),     # 255 octets
    _raw((b"\x3f" + b"a" * 63) * 3 + b"\x34" + b"a" * 52 + b"\x03svc\x05local\x00"),     # 256: FORMERR
    _raw(b"\x03a.b" + _WEB + b"\x00"), _raw(b"\x03a\\b" + _WEB + b"\x00"),  # a dot, a backslash in a label
    _raw(b"\x03a\xc3\xa9" + _WEB + b"\x00"),               # not ASCII
    _raw(b"\x02I0" + _WEB + b"\x00"),                      # upper case: the usual path's
    _raw(b"\x2e" + b"x" * 46 + _WEB + b"\x00"),            # a length octet that reads as a dot
    _raw(b"\x02i0" + _WEB + b"\x00", T_A, 3),              # class CH
    _raw(b"\x02i0" + _WEB + b"\x00", T_TXT),
    _raw(b"\x02i0" + _WEB + b"\x00", tail=b"\x00"),        # an octet after the question
    _raw(b"\x02i0" + _WEB + b"\x00")[:-1],                 # the class cut short
    _raw(b"\x02i0" + _WEB),                                # no root at all
    _raw(b"\x02i0" + _WEB + b"\x04"),                      # a last label that reads as type and class
    _raw(b"")[:12], _raw(b"")[:13], _raw(b"\x00")[:16], _raw(b"\x01a\x00", T_A)[:17],   # cut short
    _raw(b"\x02i0\x03web\x07example\x00"), _raw(b"\x05local\x00"),   # outside our zones, above them
])
@pytest.mark.parametrize("forwarding", [False, True])
def test_the_plain_lane_answers_as_the_usual_path(monkeypatch, data, forwarding):
    """Responder._plain_first reads a plain query's name itself, before parse_fast: on names
    it must decline (malformed, too long, labels written with escapes, outside our zones when
    forwarding) and on those it takes, the reply and what the caches keep are those of the
    usual path."""
    items = [(_key([f"i{i}", "web"]), json.dumps({"host": f"10.0.0.{i + 1}", "port": 80}).encode()) for i in range(2)]
    items.append((_key(["a" * 63]), json.dumps({"host": "10.0.1.1"}).encode()))
    snap = Snapshot.build(PREFIX, [ZoneConfig(ZONE)], 10, items)
    replies, states = [], []
    for lane in (True, False):
        monkeypatch.setattr(responder_module, "PACKED_WAY", lane)
        responder = Responder(snap, forwarder=_EchoForwarder() if forwarding else None)
        replies.append([responder.handle(data, "udp", ("127.0.0.1", 5353)) for _ in range(2)])
        states.append(_cache_state(responder))
    assert replies[0] == replies[1]
    assert states[0] == states[1]


@pytest.mark.parametrize("data, taken", [
    (_raw(b"\x02i0" + _WEB + b"\x00"), True), (_raw(_WEB + b"\x00", T_SRV), True),
    (_raw(b"\x02nx\x03svc\x05local\x00", T_AAAA), True), (_raw(b"\x02I0" + _WEB + b"\x00"), False),
    (_raw(b"\x02i0" + _WEB + b"\x00", T_TXT), False), (_raw(b"\x02i0\x00\x03svc\x05local\x00"), False)])
def test_the_plain_lane_is_taken(monkeypatch, data, taken):
    """The comparison above is not empty: a plain lower-case query for A, AAAA or SRV is
    answered without parse_fast; the rest go on to it."""
    items = [(_key([f"i{i}", "web"]), json.dumps({"host": f"10.0.0.{i + 1}", "port": 80}).encode()) for i in range(2)]
    responder = Responder(Snapshot.build(PREFIX, [ZoneConfig(ZONE)], 10, items))
    parsed = []
    real = responder_module.parse_fast
    monkeypatch.setattr(responder_module, "parse_fast", lambda data: parsed.append(1) or real(data))
    assert responder.handle(data, "udp", ("127.0.0.1", 5353)) is not None
    assert bool(parsed) == (not taken)


_LABELS = st.lists(st.binary(min_size=0, max_size=70) | st.sampled_from([b"i0", b"web", b"svc", b"local", b"a" * 63]),
                   min_size=0, max_size=6)


@settings(max_examples=1500, deadline=None)
@given(_LABELS, st.lists(st.tuples(st.integers(0, 80), st.integers(0, 255)), max_size=3),
       st.binary(max_size=3), st.sampled_from([1, 3, 255]), st.booleans())
def test_plain_query_name_reads_what_parse_fast_reads(labels, lies, junk, qclass, rooted):
    """wire.plain_query_name gives the name parse_fast and wire_to_name give for a plain
    query in class IN (None when either declines it), on names with any octets, lengths
    that lie (`lies` writes octets over the name), and octets after the question."""
    from dnsdisco.dns.wire import SLOW, parse_fast, plain_query_name, wire_to_name
    name = bytearray(b"".join(bytes((len(label) % 256,)) + label for label in labels) + (b"\x00" if rooted else b""))
    for at, octet in lies:
        if at < len(name):
            name[at] = octet
    data = _raw(bytes(name), T_A, qclass) + junk
    text = plain_query_name(data)
    parsed = parse_fast(data)
    usual = None if parsed is SLOW or parsed[3] != 1 else wire_to_name(parsed[1])
    if text is not None:                # as spelled: wire_to_name writes lower case
        assert text.lower() == usual
    elif usual is not None and usual != "":
        # declined although the usual reader takes it: only labels with octets wire_to_name
        # escapes or reads through names.from_labels (a dot, a backslash, not ASCII)
        assert any(46 in label or 92 in label or not label.isascii() for label in labels), labels


def test_plain_query_name_reads_the_usual_names():
    from dnsdisco.dns.wire import plain_query_name
    assert plain_query_name(_raw(b"\x02i0" + _WEB + b"\x00")) == "i0.web.svc.local"
    assert plain_query_name(_raw(b"\x02I0" + _WEB + b"\x00")) == "I0.web.svc.local"    # as spelled
    assert plain_query_name(_raw(b"\x01a\x00")) == "a"
    assert plain_query_name(_raw(b"\x00")) is None                                      # the root: the usual path's
    assert plain_query_name(_raw(b"\x02i0" + _WEB + b"\x04")) is None     # type and class read as a label
    assert plain_query_name(_raw(b"\x03a\\b" + _WEB + b"\x00")) is None   # wire_to_name escapes a backslash
    assert plain_query_name(_raw(b"\x03a.b" + _WEB + b"\x00")) is None    # and a dot
