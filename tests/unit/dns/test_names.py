"""names: the CoreDNS/SkyDNS key <-> name mapping and RFC 1035 label rules."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsdisco.dns.names import (BadName, ancestors, is_subdomain, key_for, label_count, name_for, normalize, parent,
                            reverse_name, zone_of)


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
