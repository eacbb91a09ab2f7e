"""records.parse: the CoreDNS/SkyDNS value format, defaults, and rejections that name the key."""
from __future__ import annotations

import json

import pytest

from dnsdisco.dns.records import BadValue, Record, parse

KEY = "/skydns/local/svc/hello/a"
NAME = "a.hello.svc.local"


def p(value) -> Record:
    raw = value if isinstance(value, (bytes, str)) else json.dumps(value)
    return parse(KEY, NAME, raw)


@pytest.mark.parametrize("value,fields", [
    ({"host": "10.0.0.7", "port": 8080},
     dict(host="10.0.0.7", host_kind="ipv4", port=8080, priority=10, weight=100, ttl=None, mail=False, targetstrip=0)),
    ({"host": "FD00:0:0::7"}, dict(host="fd00::7", host_kind="ipv6", port=0)),
    ({"host": "::ffff:10.0.0.7"}, dict(host="10.0.0.7", host_kind="ipv4")),
    ({"host": "DB.Example.COM."}, dict(host="db.example.com", host_kind="name")),
    ({"host": " 10.0.0.7 "}, dict(host="10.0.0.7", host_kind="ipv4")),
    ({"text": "hi"}, dict(host="", host_kind="", text="hi")),
    ({"host": "10.0.0.7", "text": "hi"}, dict(host_kind="ipv4", text="hi")),
    # priority 0 is served as 10, as CoreDNS does; weight 0 is kept (RFC 2782 relative weights)
    ({"host": "10.0.0.7", "priority": 0, "weight": 0, "port": 0}, dict(priority=10, weight=0, port=0)),
    ({"host": "10.0.0.7", "priority": 65535, "weight": 65535, "port": 65535},
     dict(priority=65535, weight=65535, port=65535)),
    ({"host": "10.0.0.7", "ttl": 0}, dict(ttl=0)),
    ({"host": "10.0.0.7", "ttl": 3600}, dict(ttl=3600)),
    ({"host": "10.0.0.7", "ttl": 60.0}, dict(ttl=60)),
    ({"host": "10.0.0.7", "ttl": None, "port": None}, dict(ttl=None, port=0)),
    ({"host": "mail.example.com", "mail": True, "priority": 5}, dict(mail=True, priority=5)),
    ({"host": "10.0.0.7", "mail": None}, dict(mail=False)),
    ({"host": "10.0.0.7", "targetstrip": 2, "group": "g1"}, dict(targetstrip=2, group="g1")),
    ({"host": "10.0.0.7", "unknown": [1, 2], "Key": "x"}, dict(host="10.0.0.7")),   # unknown fields ignored
    ({"host": "_svc._tcp.example.com"}, dict(host_kind="name")),
])
def test_parse_valid(value, fields):
    rec = p(value)
    assert rec.key == KEY and rec.name == NAME
    for field, expect in fields.items():
        assert getattr(rec, field) == expect, field


def test_parse_accepts_bytes_and_str():
    assert p(b'{"host": "10.0.0.7"}') == p('{"host": "10.0.0.7"}')


@pytest.mark.parametrize("raw,fragment", [
    (b"{not json", "not JSON"),
    (b"", "not JSON"),
    (b"\xff\xfe", "not UTF-8"),
    (b"[1, 2]", "JSON object"),
    (b'"10.0.0.7"', "JSON object"),
    (b"null", "JSON object"),
    ({"host": 5}, "'host' must be a string"),
    ({"host": ["10.0.0.7"]}, "'host' must be a string"),
    ({"text": 5, "host": "10.0.0.7"}, "'text' must be a string"),
    ({"host": "10.0.0.7", "port": "80"}, "'port' must be a whole number"),
    ({"host": "10.0.0.7", "port": True}, "'port' must be a whole number"),
    ({"host": "10.0.0.7", "port": 80.5}, "'port' must be a whole number"),
    ({"host": "10.0.0.7", "port": 65536}, "'port' 65536 is outside 0..65535"),
    ({"host": "10.0.0.7", "port": -1}, "'port' -1 is outside"),
    ({"host": "10.0.0.7", "priority": 70000}, "'priority'"),
    ({"host": "10.0.0.7", "weight": -5}, "'weight'"),
    ({"host": "10.0.0.7", "ttl": -1}, "'ttl'"),
    ({"host": "10.0.0.7", "ttl": 2**31}, "'ttl'"),
    ({"host": "10.0.0.7", "mail": "yes"}, "'mail' must be true or false"),
    ({"host": "10.0.0.300"}, "not a valid IPv4 address"),
    ({"host": "10.0.0"}, "not a valid IPv4 address"),
    ({"host": "fd00:::1"}, "not a valid IPv6 address"),
    ({"host": "10.0.0.7:80"}, "not a valid IPv6 address"),
    ({"host": "bad host.example.com"}, "neither an address nor a host name"),
    ({"host": "a..b"}, "not a valid name"),
    ({"host": "x" * 64 + ".com"}, "not a valid name"),
    ({"host": "."}, "host"),
    ({}, "neither 'host' nor 'text'"),
    ({"port": 80}, "neither 'host' nor 'text'"),
    ({"host": "", "text": ""}, "neither 'host' nor 'text'"),
    ({"text": "x" * 70000}, "too long"),
])
def test_parse_rejects_naming_the_key(raw, fragment):
    with pytest.raises(BadValue) as err:
        p(raw)
    assert str(err.value).startswith(KEY + ":")
    assert fragment in str(err.value)


def test_record_is_frozen_and_comparable():
    rec = p({"host": "10.0.0.7"})
    with pytest.raises(AttributeError):
        rec.host = "x"          # type: ignore[misc]
    assert rec == p({"host": "10.0.0.7"}) and rec != p({"host": "10.0.0.8"})
    assert rec.is_address and not p({"host": "x.example.com"}).is_address
