"""zonefile: RFC 1035 zone files parsed into ZoneConfig, and their records served."""
from __future__ import annotations

import json
import pathlib

import dns.message
import dns.rcode
import pytest

from dnsdisco.dns.snapshot import Snapshot, ZoneConfig
from dnsdisco.dns.responder import Responder
from dnsdisco.dns.zonefile import ZoneFileError, load_zones, parse_zone_text

ROOT = pathlib.Path(__file__).resolve().parents[3]
SHIPPED = (ROOT / "zones" / "svc.local.zone").read_text()


def ask(snap, name, qtype):
    q = dns.message.make_query(name, qtype, use_edns=False)
    return dns.message.from_wire(bytes(Responder(snap).handle(q.to_wire(), "tcp", ("127.0.0.1", 1))))


def lines(section):
    return sorted(line for rrset in section for line in rrset.to_text().splitlines())


def test_shipped_zone_file():
    zone = parse_zone_text(ZoneConfig("svc.local"), SHIPPED, "svc.local.zone")
    assert zone.soa_mname == "ns.dns.svc.local" and zone.soa_rname == "hostmaster.svc.local"
    assert (zone.refresh, zone.retry, zone.expire, zone.neg_ttl, zone.soa_ttl) == (7200, 1800, 86400, 5, 30)
    assert set(zone.static) == {"svc.local", "ns.dns.svc.local", "gateway.svc.local"}


@pytest.fixture
def served():
    zone = parse_zone_text(ZoneConfig("svc.local"), SHIPPED)
    items = [("/skydns/local/svc/hello/a", json.dumps({"host": "10.0.0.1"}).encode()),
             ("/skydns/local/svc/dns/ns/ns2", json.dumps({"host": "10.0.0.53"}).encode())]
    return Snapshot.build("/skydns", [zone], 42, items)


@pytest.mark.parametrize("name,qtype,rcode,answer,additional", [
    ("gateway.svc.local", "A", "NOERROR", ["gateway.svc.local. 30 IN A 127.0.0.1"], []),
    ("GATEWAY.svc.local", "A", "NOERROR", ["GATEWAY.svc.local. 30 IN A 127.0.0.1"], []),
    ("gateway.svc.local", "AAAA", "NOERROR", [], []),
    ("dns.svc.local", "A", "NOERROR", [], []),                      # empty non-terminal of ns.dns
    # the name answers with its own (static) data and its instances one level below, as any name does
    ("ns.dns.svc.local", "A", "NOERROR", ["ns.dns.svc.local. 30 IN A 127.0.0.1", "ns.dns.svc.local. 30 IN A 10.0.0.53"], []),
    ("svc.local", "NS", "NOERROR", ["svc.local. 30 IN NS ns.dns.svc.local.", "svc.local. 30 IN NS ns2.ns.dns.svc.local."],
     ["ns.dns.svc.local. 30 IN A 10.0.0.53", "ns.dns.svc.local. 30 IN A 127.0.0.1",
      "ns2.ns.dns.svc.local. 30 IN A 10.0.0.53"]),
    ("svc.local", "SOA", "NOERROR",
     ["svc.local. 30 IN SOA ns.dns.svc.local. hostmaster.svc.local. 42 7200 1800 86400 5"], []),
    ("hello.svc.local", "A", "NOERROR", ["hello.svc.local. 30 IN A 10.0.0.1"], []),
    ("nope.svc.local", "A", "NXDOMAIN", [], []),
])
def test_static_records_served_beside_etcd(served, name, qtype, rcode, answer, additional):
    msg = ask(served, name, qtype)
    assert dns.rcode.to_text(msg.rcode()) == rcode
    assert lines(msg.answer) == sorted(answer)
    assert lines(msg.additional) == sorted(additional)
    if not answer:
        assert lines(msg.authority) == ["svc.local. 5 IN SOA ns.dns.svc.local. hostmaster.svc.local. 42 7200 1800 86400 5"]


def test_static_cname():
    zone = parse_zone_text(ZoneConfig("svc.local"), "www IN CNAME gateway\ngateway IN A 10.1.1.1\n")
    snap = Snapshot.build("/skydns", [zone], 1, [])
    msg = ask(snap, "www.svc.local", "A")
    assert lines(msg.answer) == ["gateway.svc.local. 30 IN A 10.1.1.1", "www.svc.local. 30 IN CNAME gateway.svc.local."]


@pytest.mark.parametrize("text,fragment", [
    ("$ORIGIN example.com.\nwww IN A 10.0.0.1\n", "outside the zone"),
    ("www IN SOA a. b. 1 2 3 4 5\n", "expected the apex"),
    ("www IN A not-an-address\n", "cannot parse"),
])
def test_bad_zone_text_names_the_file(text, fragment):
    with pytest.raises(ZoneFileError) as err:
        parse_zone_text(ZoneConfig("svc.local"), text, "zones/svc.local.zone")
    assert "zones/svc.local.zone" in str(err.value) and fragment in str(err.value)


def test_soa_minimum_capped_by_soa_ttl():
    zone = parse_zone_text(ZoneConfig("svc.local"), "@ 3 IN SOA a. b. 1 2 3 4 600\n")
    assert zone.neg_ttl == 3


def test_load_zones(tmp_path):
    (tmp_path / "svc.local.zone").write_text(SHIPPED)
    (tmp_path / "extra.local.zone").write_text("x IN A 10.0.0.9\n")
    (tmp_path / "README.txt").write_text("ignored")
    zones = {z.name: z for z in load_zones(["svc.local", "other.local"], str(tmp_path), 30, 5)}
    assert set(zones) == {"svc.local", "other.local", "extra.local"}
    assert "gateway.svc.local" in zones["svc.local"].static
    assert zones["other.local"].static == {}
    assert "x.extra.local" in zones["extra.local"].static
    assert load_zones(["svc.local"], "", 30, 5) == [ZoneConfig("svc.local")]


def test_load_zones_errors(tmp_path):
    with pytest.raises(ZoneFileError, match="not a directory"):
        load_zones(["svc.local"], str(tmp_path / "missing"), 30, 5)
    (tmp_path / "svc.local.zone").write_text("www IN A 999.0.0.1\n")
    with pytest.raises(ZoneFileError) as err:
        load_zones(["svc.local"], str(tmp_path), 30, 5)
    assert str(tmp_path / "svc.local.zone") in str(err.value)
