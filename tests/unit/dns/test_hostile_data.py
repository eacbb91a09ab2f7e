"""Hostile data in etcd (issue 9): oversize values, names past the RFC 1035 limits and
names with too many instances are skipped or capped with one warning naming them; the rest
is served. Pure Snapshot tables; the run through a real etcd and a real `dnsdisco serve` is
tests/e2e/test_hostile_data.py."""
from __future__ import annotations

import json

import dns.message
import dns.rcode
import pytest

from dnsdisco.dns.records import BadValue, parse
from dnsdisco.dns.snapshot import Snapshot, ZoneConfig
from dnsdisco.dns.responder import Responder
from tests.support.values import value_of_size

P = "/skydns/local/svc/"
GOOD = (P + "good/a", b'{"host":"10.0.0.1","port":80}')


def build(items, **caps):
    zones = [ZoneConfig("svc.local", **caps), ZoneConfig("in-addr.arpa", **caps)]
    return Snapshot.build("/skydns", zones, 1, items)


# ---------------------------------------------------------------- value size

@pytest.mark.parametrize("size, limit, served", [
    (100, 100, True),            # exactly at the limit
    (101, 100, False),
    (65536, 65536, True),        # the default
    (65537, 65536, False),
    (300_000, 65536, False),
])
def test_value_size_limit(size, limit, served):
    value = value_of_size(size)
    assert len(value) == size
    snap = build([GOOD, (P + "big/x", value)], max_value_bytes=limit)
    assert snap.records_for("good.svc.local")
    assert (snap.record_at("x.big.svc.local") is not None) == served
    if not served:
        [(key, message)] = snap.rejected
        assert key == P + "big/x" and key in message and str(limit) in message


def test_value_size_limit_applies_to_watch_events_too():
    snap = build([GOOD], max_value_bytes=200)
    new, touched, rejected = snap.apply(2, [(P + "big/x", value_of_size(201)), (P + "ok/x", value_of_size(200))])
    assert [k for k, _ in rejected] == [P + "big/x"]
    assert new.record_at("x.big.svc.local") is None and new.record_at("x.ok.svc.local") is not None


# ---------------------------------------------------------------- names

@pytest.mark.parametrize("key, why", [
    (P + "a" * 64 + "/x", "label of 64 octets"),
    (P + "/".join(["abcdefghi"] * 30), "name over 253 characters"),
    (P + "\u00e9" * 63 + "/x", "non-ASCII label whose IDNA form passes 63 octets"),
    (P + "a\\046b/x", "a DNS escape that would split the label"),
    (P + "a\uff0eb/x", "a full-width dot that IDNA turns into a separator"),
    (P + "hello//x", "an empty label"),
    (P + "hello/a.b", "a dot inside a key label"),
])
def test_keys_that_do_not_map_to_a_valid_name_are_skipped(key, why):
    snap = build([GOOD, (key, b'{"host":"10.0.0.9"}')])
    assert [k for k, _ in snap.rejected] == [key], why
    assert snap.record_count == 1


@pytest.mark.parametrize("key", [
    P + "a" * 63 + "/x",
    P + "/".join(["abcdefg"] * 29),                                  # 245 characters in all
    P + "caf\u00e9/x",                                             # IDNA fits: xn--caf-dma
])
def test_keys_at_the_limits_are_served(key):
    snap = build([(key, b'{"host":"10.0.0.9"}')])
    assert snap.rejected == () and snap.record_count == 1


@pytest.mark.parametrize("host", [
    "\u00e9" * 63 + ".svc.local",
    "a" * 64 + ".svc.local",
    ".".join(["abcdefghi"] * 26),
])
def test_hosts_past_the_limits_are_rejected(host):
    with pytest.raises(BadValue, match="/k"):
        parse("/k", "k", json.dumps({"host": host}).encode())


def test_hostile_names_never_break_answers_for_others():
    """A PTR for an address shared with a hostile name, and a CNAME to one, used to SERVFAIL."""
    snap = build([
        (P + "web/a", b'{"host":"10.0.0.2"}'),
        (P + "\u00e9" * 63 + "/a", b'{"host":"10.0.0.2"}'),
        (P + "alias/a", json.dumps({"host": "\u00e9" * 63 + ".svc.local"}).encode()),
    ])
    responder = Responder(snap)
    reply = dns.message.from_wire(responder.handle(
        dns.message.make_query("2.0.0.10.in-addr.arpa", "PTR").to_wire(), "udp", ("127.0.0.1", 1)))
    assert reply.rcode() == dns.rcode.NOERROR
    assert [rd.to_text() for rr in reply.answer for rd in rr] == ["a.web.svc.local."]
    reply = dns.message.from_wire(responder.handle(
        dns.message.make_query("alias.svc.local", "A").to_wire(), "udp", ("127.0.0.1", 1)))
    assert reply.rcode() == dns.rcode.NXDOMAIN


# ---------------------------------------------------------------- records per name

def instances(n: int, name: str = "many", first_octet: int = 10):
    return [(f"{P}{name}/i{i:04d}", json.dumps({"host": f"{first_octet}.{i // 250}.{i % 250}.1"}).encode())
            for i in range(n)]


def test_instances_over_the_cap_are_capped_to_the_first_by_key():
    snap = build(instances(1005) + [GOOD])
    recs = snap.records_for("many.svc.local")
    assert len(recs) == 1000
    assert [snap.key_of(r) for r in recs] == sorted(k for k, _ in instances(1005))[:1000]
    assert snap.capped == ("many.svc.local",)
    assert snap.records_for("good.svc.local")
    assert snap.record_count == 1006       # kept, just not served


def test_cap_order_is_by_key_not_by_name():
    # by name "a-b.many" sorts before "a.many"; by key ".../many/a" comes before ".../many/a-b"
    items = [(P + "many/a-b", b'{"host":"10.0.0.1"}'), (P + "many/a", b'{"host":"10.0.0.2"}'),
             (P + "many/b", b'{"host":"10.0.0.3"}')]
    snap = build(items, max_records_per_name=2)
    assert [snap.key_of(r) for r in snap.records_for("many.svc.local")] == [P + "many/a", P + "many/a-b"]


def test_capped_follows_changes():
    snap = build(instances(5), max_records_per_name=5)
    assert snap.capped == ()
    over, touched, _ = snap.apply(2, [(P + "many/z", b'{"host":"10.0.0.9"}')])
    assert over.capped == ("many.svc.local",) and "many.svc.local" in touched
    assert len(over.records_for("many.svc.local")) == 5
    # a change under a name that stays over the cap reports it again (still capped) ...
    still, touched, _ = over.apply(3, [(P + "many/i0001", b'{"host":"10.0.0.8"}')])
    assert still.capped == ("many.svc.local",)
    # ... and a delete that brings it back under the cap clears it
    back, touched, _ = still.apply(4, [(P + "many/z", None)])
    assert back.capped == () and "many.svc.local" in touched


def test_ptr_names_are_capped_too():
    items = [(f"{P}s{i}/a", b'{"host":"10.0.0.2"}') for i in range(30)]
    snap = build(items, max_records_per_name=10)
    assert len(snap.ptr_names("2.0.0.10.in-addr.arpa")) == 10
