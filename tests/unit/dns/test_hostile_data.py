"""Hostile data in etcd (issue 9): oversize values, names past the RFC 1035 limits and
names with too many instances are skipped or capped with one warning naming them; the rest
is served. Pure Snapshot tables first, then a real etcd and a real `dnsdisco serve`."""
from __future__ import annotations

import json
import urllib.request

import dns.message
import dns.rcode
import pytest

from dnsdisco.dns.records import BadValue, parse
from dnsdisco.dns.snapshot import Snapshot, ZoneConfig
from dnsdisco.dns.responder import Responder
from tests.support.harness import ServeProcess, addresses, free_port, wait_for

P = "/skydns/local/svc/"
GOOD = (P + "good/a", b'{"host":"10.0.0.1","port":80}')


def build(items, **caps):
    zones = [ZoneConfig("svc.local", **caps), ZoneConfig("in-addr.arpa", **caps)]
    return Snapshot.build("/skydns", zones, 1, items)


def value_of_size(size: int) -> bytes:
    base = b'{"host":"10.0.0.2"}'
    return base[:-1] + b" " * (size - len(base)) + b"}"      # JSON whitespace: a valid value


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


# ---------------------------------------------------------------- a real etcd and server

CAP = 20


@pytest.fixture(scope="module")
def served(etcd):
    from dnsdisco.etcd.client import KV
    etcd.start()
    kv = KV([etcd.endpoint], timeout=5.0)
    base = "/hostile/local/svc/"
    kv.put(base + "good/a", b'{"host":"10.0.0.1","port":80}')
    kv.put(base + "huge/a", value_of_size(70_000))
    kv.put(base + "a" * 64 + "/x", b'{"host":"10.0.0.3"}')
    for i in range(CAP + 5):
        kv.put(f"{base}many/i{i:03d}", json.dumps({"host": f"10.1.0.{i + 1}"}).encode())
    http_port = free_port()
    with ServeProcess(etcd.endpoint, "--prefix", "/hostile", "--max-records-per-name", str(CAP),
                      "--http", f"127.0.0.1:{http_port}") as serve:
        wait_for(lambda: serve.query("good.svc.local").answer, 10, what="the good record")
        serve.kv = kv
        serve.base = base
        serve.http_port = http_port
        yield serve
    kv.close()


def metric(serve, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{serve.http_port}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_serve_skips_oversize_value_with_one_warning(served):
    assert addresses(served.query("good.svc.local")) == ["10.0.0.1"]
    assert served.query("huge.svc.local").rcode() == dns.rcode.NXDOMAIN
    log = served.log()
    lines = [line for line in log.splitlines() if served.base + "huge/a" in line]
    assert len(lines) == 1 and "65536" in lines[0], log
    assert len([line for line in log.splitlines() if served.base + "a" * 64 in line]) == 1, log


def test_serve_caps_instances_with_one_warning_and_a_metric(served):
    reply = served.query("many.svc.local", tcp=True)
    assert addresses(reply) == sorted(f"10.1.0.{i + 1}" for i in range(CAP))
    # another instance under the capped name: still capped, no second warning
    served.kv.put(served.base + "many/zzz", b'{"host":"10.1.9.9"}')
    served.kv.put(served.base + "good/b", b'{"host":"10.0.0.2"}')
    wait_for(lambda: addresses(served.query("good.svc.local")) == ["10.0.0.1", "10.0.0.2"], 10,
             what="a later change to be served")
    assert len(addresses(served.query("many.svc.local", tcp=True))) == CAP
    warnings = [line for line in served.log().splitlines() if "many.svc.local has" in line]
    assert len(warnings) == 1 and "--max-records-per-name" in warnings[0], served.log()
    assert metric(served, "dnsdisco_capped_total") == 1.0
