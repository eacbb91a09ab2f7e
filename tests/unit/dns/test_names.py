"""names: the CoreDNS/SkyDNS key <-> name mapping and RFC 1035 label rules."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsdisco.dns.names import (BadName, ancestors, expand_wire_name, format_hostport, is_subdomain, key_for, label_count, name_for,
                                normalize, parent, parse_address_port, parse_hostport, read_wire_name, reverse_name,
                                to_text, zone_of)


@pytest.mark.parametrize("raw,expect", [
    ("hello.svc.local", "hello.svc.local"),
    ("Hello.SVC.Local.", "hello.svc.local"),
    (" hello.svc.local ", "hello.svc.local"),
    (".", ""), ("", ""),
    ("a" * 63 + ".local", "a" * 63 + ".local"),
    (".".join(["a" * 61] * 4), ".".join(["a" * 61] * 4)),     # 247 characters
])
def test_normalize(raw, expect):
    assert normalize(raw) == expect


@pytest.mark.parametrize("raw,fragment", [
    ("a..b", "empty label"), (".a", "empty label"), ("a" * 64 + ".local", "longer than 63"),
    (".".join(["a" * 63] * 4), "longer than 253"),
])
def test_normalize_rejects_naming_the_name(raw, fragment):
    with pytest.raises(BadName) as err:
        normalize(raw)
    assert fragment in str(err.value) and repr(raw)[:20] in str(err.value)


@pytest.mark.parametrize("prefix,name,key", [
    ("/skydns", "hello.svc.local", "/skydns/local/svc/hello"),
    ("/skydns/", "hello.svc.local", "/skydns/local/svc/hello"),
    ("/skydns", "a.hello.svc.local", "/skydns/local/svc/hello/a"),
    ("/skydns", "ns1.ns.dns.svc.local", "/skydns/local/svc/dns/ns/ns1"),
    ("/skydns", "7.0.0.10.in-addr.arpa", "/skydns/arpa/in-addr/10/0/0/7"),
    ("/other/prefix", "x.local", "/other/prefix/local/x"),
    ("/skydns", "", "/skydns"),
])
def test_key_for_and_back(prefix, name, key):
    assert key_for(prefix, name) == key
    if name:
        assert name_for(prefix, key) == name


@pytest.mark.parametrize("prefix,key,expect", [
    ("/skydns", "/skydns/local/svc/Hello", "hello.svc.local"),
    ("/skydns", "/skydns/local/svc/hello/web:1:80", "web:1:80.hello.svc.local"),
    ("/skydns", "/skydns", None),
    ("/skydns", "/skydns/", None),
    ("/skydns", "/skydnsx/local", None),
    ("/skydns", "/other/local", None),
    ("/skydns", "/skydns/local//svc", None),
    ("/skydns", "/skydns/local/svc/", None),
    ("/skydns", "/skydns/local/a.b", None),
    ("/skydns", "/skydns/local/" + "x" * 64, None),
])
def test_name_for(prefix, key, expect):
    assert name_for(prefix, key) == expect


@pytest.mark.parametrize("name,zone,inside", [
    ("svc.local", "svc.local", True), ("a.svc.local", "svc.local", True), ("a.b.svc.local", "svc.local", True),
    ("xsvc.local", "svc.local", False), ("local", "svc.local", False), ("svc.local.evil", "svc.local", False),
    ("anything", "", True),
])
def test_is_subdomain_label_wise(name, zone, inside):
    assert is_subdomain(name, zone) is inside


def test_zone_of_longest_match():
    zones = ["local", "svc.local", "in-addr.arpa"]
    assert zone_of("a.svc.local", zones) == "svc.local"
    assert zone_of("a.local", zones) == "local"
    assert zone_of("1.0.0.10.in-addr.arpa", zones) == "in-addr.arpa"
    assert zone_of("example.com", zones) is None


def test_parent_ancestors_label_count():
    assert parent("a.b.c") == "b.c" and parent("c") == "" and parent("") == ""
    assert ancestors("a.b.c") == ["b.c", "c", ""]
    assert ancestors("") == []
    assert [label_count(n) for n in ("", "c", "a.b.c")] == [0, 1, 3]


@pytest.mark.parametrize("ip,rname", [
    ("10.0.0.7", "7.0.0.10.in-addr.arpa"),
    ("fd00::1", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa"),
])
def test_reverse_name(ip, rname):
    assert reverse_name(ip) == rname


_label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=63)


@settings(max_examples=200, deadline=None)
@given(st.lists(_label, min_size=1, max_size=4))
def test_key_name_round_trip(parts):
    name = ".".join(parts)
    if len(name) > 253:
        return
    assert name_for("/skydns", key_for("/skydns", name)) == name
    assert normalize(name.upper() + ".") == name


# ---------------------------------------------------------------- the wire-name reader

HELLO = b"\x05hello\x03svc\x05local\x00"


@pytest.mark.parametrize("data,pos,labels,end", [
    (HELLO, 0, [b"hello", b"svc", b"local"], len(HELLO)),
    (b"\x00", 0, [], 1),                                               # the root
    (b"\x02Ab\x00", 0, [b"Ab"], 4),                                    # letter case kept
    (HELLO + b"\x01a\xc0\x06", len(HELLO), [b"a", b"svc", b"local"], len(HELLO) + 4),  # a pointer
    (HELLO + b"\xc0\x00", len(HELLO), [b"hello", b"svc", b"local"], len(HELLO) + 2),
    (b"\x03a.b\x00", 0, [b"a.b"], 5),                                  # a dot inside a label is data
])
def test_read_wire_name(data, pos, labels, end):
    assert read_wire_name(data, pos) == (labels, end)


@pytest.mark.parametrize("data,message", [
    (b"\x05hel", "runs past the end"),
    (b"\x05hello", "runs past the end"),
    (b"\xc0", "pointer cut short"),
    (b"\xc0\x00", "pointer loop"),
    (b"\x41" + b"a" * 65 + b"\x00", "unsupported label type 0x41"),
    (b"\x3f" + b"a" * 63 + b"\x3f" + b"b" * 63 + b"\x3f" + b"c" * 63 + b"\x3f" + b"d" * 63 + b"\x00", "longer than 255"),
])
def test_read_wire_name_refuses(data, message):
    with pytest.raises(ValueError, match=message):
        read_wire_name(data, 0)


@pytest.mark.parametrize("labels,text", [
    ([b"hello", b"svc", b"local"], "hello.svc.local"),
    ([], "."),
    ([b"a.b", b"c"], "a\\.b.c"),                   # never printed like the name a.b.c
    ([b"a\\b"], "a\\\\b"),
    ([b"sp ace", b"\x00\xff"], "sp\\032ace.\\000\\255"),
])
def test_to_text(labels, text):
    assert to_text(labels) == text


def test_expand_wire_name():
    assert expand_wire_name(HELLO, 0) == (HELLO, len(HELLO))
    assert expand_wire_name(HELLO + b"\x02Ab\xc0\x06", len(HELLO)) == (b"\x02Ab\x03svc\x05local\x00", len(HELLO) + 5)
    with pytest.raises(ValueError, match="pointer loop"):
        expand_wire_name(b"\xc0\x00", 0)


# ---------------------------------------------------------------- endpoints

@pytest.mark.parametrize("text,default,expected", [
    ("10.0.0.1:53", None, ("10.0.0.1", 53)),
    ("[::1]:5300", None, ("::1", 5300)),
    ("[::1]", 53, ("::1", 53)),
    ("localhost:9153", None, ("localhost", 9153)),
    ("example.com", 80, ("example.com", 80)),
])
def test_parse_hostport(text, default, expected):
    assert parse_hostport(text, default) == expected


@pytest.mark.parametrize("text,message", [
    ("10.0.0.1", "expected HOST:PORT"),
    ("::1:53", r"write an IPv6 address as \[ADDRESS\]:PORT"),
    ("[::1", "missing ']'"),
    ("[::1]53", r"expected \[ADDRESS\]:PORT"),
    (":53", "missing host"),
    ("10.0.0.1:x", "'10.0.0.1:x': 'x' is not a port number"),
    ("10.0.0.1:70000", "'10.0.0.1:70000': port 70000 is outside 0..65535"),
])
def test_parse_hostport_names_the_problem(text, message):
    with pytest.raises(ValueError, match=message):
        parse_hostport(text)


@pytest.mark.parametrize("text,names,expected", [
    ("192.0.2.1", (), ("192.0.2.1", 53)),
    ("[2001:db8::1]:5353", (), ("2001:db8::1", 5353)),
    ("localhost:53", ("localhost",), ("localhost", 53)),
])
def test_parse_address_port(text, names, expected):
    assert parse_address_port(text, 53, names=names) == expected


def test_parse_address_port_refuses_names_with_the_callers_hint():
    with pytest.raises(ValueError, match="'dns.example:53': listen on an IP address"):
        parse_address_port("dns.example:53", 53, hint="listen on an IP address")
    with pytest.raises(ValueError, match="'localhost': give an IP address"):
        parse_address_port("localhost", 53)


@pytest.mark.parametrize("host,port,text", [
    ("10.0.0.1", 53, "10.0.0.1:53"), ("::1", 5300, "[::1]:5300"), ("localhost", 0, "localhost:0"),
])
def test_format_hostport_reads_back(host, port, text):
    assert format_hostport(host, port) == text
    assert parse_hostport(text) == (host, port)
