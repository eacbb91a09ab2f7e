"""The forwarder's pure parts: hop-by-hop EDNS options, reply matching, the cache key, and the
upstream lists (addresses, ports, resolv.conf, self-loops). Forwarding against a real upstream
(dnsmasq) is tests/e2e/test_forward.py."""
from __future__ import annotations

import struct

import pytest
from dnslib import EDNSOption, DNSRecord

from dnsdisco.net.forwarder import Forwarder
from dnsdisco.net.upstream_wire import parse_message, strip_hop_by_hop, upstream_key
from dnsdisco.net.upstreams import parse_upstreams, self_loops
from tests.support.queries import query


# ---------------------------------------------------------------- wire helpers (pure)

def test_hop_by_hop_options_are_not_relayed():
    cookie = EDNSOption(10, b"\x01" * 8)
    kept = EDNSOption(65001, b"keep")
    raw = query("example.test", edns=1232, options=[cookie, kept])
    msg = parse_message(raw)
    stripped = strip_hop_by_hop(raw, msg)
    opt = DNSRecord.parse(stripped).ar[0]
    assert [(o.code, o.data) for o in opt.rdata] == [(65001, b"keep")]
    assert strip_hop_by_hop(query("example.test", edns=1232), parse_message(query("example.test", edns=1232))) \
        == query("example.test", edns=1232)


def test_reply_matching_rejects_wrong_id_or_question():
    q = parse_message(query("example.test"))
    good = DNSRecord.parse(query("EXAMPLE.test")).reply().pack()
    good = struct.pack(">H", 1000) + good[2:]
    assert Forwarder._matches(good, 1000, q)
    assert not Forwarder._matches(good, 1001, q)
    other = DNSRecord.parse(query("other.test")).reply().pack()
    assert not Forwarder._matches(struct.pack(">H", 1000) + other[2:], 1000, q)
    not_a_response = struct.pack(">H", 1000) + query("example.test")[2:]
    assert not Forwarder._matches(not_a_response, 1000, q)


def test_upstream_key_lowercases_the_name():
    assert upstream_key(parse_message(query("ExAmPle.TEST"))) == upstream_key(parse_message(query("example.test")))


# ---------------------------------------------------------------- upstream lists

@pytest.mark.parametrize("items, expected", [
    (["1.2.3.4"], [("1.2.3.4", 53)]),
    (["1.2.3.4:5353"], [("1.2.3.4", 5353)]),
    (["[::1]:53"], [("::1", 53)]),
    (["[2001:db8::1]"], [("2001:db8::1", 53)]),
    (["::1"], [("::1", 53)]),
    (["1.2.3.4, 5.6.7.8:54", "1.2.3.4"], [("1.2.3.4", 53), ("5.6.7.8", 54)]),
])
def test_parse_upstreams(items, expected):
    assert parse_upstreams(items) == expected


@pytest.mark.parametrize("item, message", [
    ("dns.google", "'dns.google': an upstream is an IP address"),
    ("1.2.3.4:99999", "outside 0..65535"),
    ("1.2.3.4:x", "'x' is not a port number"),
    ("[::1", "missing ']'"),
    ("resolv.conf:", "give a path"),
    ("resolv.conf:/nonexistent/resolv.conf", "resolv.conf:/nonexistent/resolv.conf: no such file"),
])
def test_parse_upstreams_errors_name_the_input(item, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace(".", r"\.")):
        parse_upstreams([item])


def test_resolv_conf_nameservers(tmp_path):
    path = tmp_path / "resolv.conf"
    path.write_text("# generated\nsearch svc.local\nnameserver 10.0.0.2\nnameserver fd00::53 # v6\n"
                    "options ndots:2\nnameserver 10.0.0.2\nnameserver bogus\n")
    assert parse_upstreams([f"resolv.conf:{path}", "9.9.9.9"]) == [
        ("10.0.0.2", 53), ("fd00::53", 53), ("9.9.9.9", 53)]
    empty = tmp_path / "empty.conf"
    empty.write_text("search svc.local\nnameserver example.com\n")
    with pytest.raises(ValueError, match=f"resolv.conf:{empty}: no 'nameserver ADDRESS' lines"):
        parse_upstreams([f"resolv.conf:{empty}"])
    with pytest.raises(ValueError, match="is a directory"):
        parse_upstreams([f"resolv.conf:{tmp_path}"])


def test_self_loops():
    listens = [("127.0.0.1", 53), ("0.0.0.0", 5353)]
    assert self_loops([("127.0.0.1", 53), ("127.0.0.53", 53)], listens) == [("127.0.0.1", 53)]
    assert self_loops([("127.0.0.2", 5353), ("10.0.0.1", 5353)], listens) == [("127.0.0.2", 5353)]
    assert self_loops([("::1", 53)], listens) == []
