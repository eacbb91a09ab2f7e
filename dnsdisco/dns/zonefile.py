"""Static zones: RFC 1035 zone files (`<zone>.zone`) served beside the etcd records.

Parsing is pure (text in, ZoneConfig out); `load_zones` is the thin part that reads the
directory, so a bad file is reported with its path and line instead of a traceback.
"""
from __future__ import annotations

import os
from dataclasses import replace

from dnslib import QTYPE, RR

from dnsdisco.dns.names import BadName, is_subdomain, normalize
from dnsdisco.dns.snapshot import ZoneConfig


class ZoneFileError(ValueError):
    """A zone file that cannot be served; the message names the file and the problem."""


def parse_zone_text(zone: ZoneConfig, text: str, source: str = "<zone>") -> ZoneConfig:
    """The zone with the file's records as static data; its SOA sets the zone's SOA fields."""
    origin_text = text if "$ORIGIN" in text.upper() else f"$ORIGIN {zone.name}.\n$TTL {zone.ttl}\n{text}"
    try:
        rrs = RR.fromZone(origin_text)
    except Exception as exc:  # dnslib raises several types for bad syntax
        raise ZoneFileError(f"{source}: cannot parse: {exc}") from None
    static: dict[str, list] = {}
    soa = None
    for rr in rrs:
        try:
            owner = normalize(str(rr.rname))
        except BadName as exc:
            raise ZoneFileError(f"{source}: {exc}") from None
        if not is_subdomain(owner, zone.name):
            raise ZoneFileError(f"{source}: record {owner} is outside the zone {zone.name}")
        if rr.rtype == QTYPE.SOA:
            if owner != zone.name:
                raise ZoneFileError(f"{source}: SOA at {owner}, expected the apex {zone.name}")
            soa = rr
            continue
        static.setdefault(owner, []).append(rr)
    changes = {"static": {name: tuple(rrs) for name, rrs in static.items()}}
    if soa is not None:
        rd = soa.rdata
        refresh, retry, expire, minimum = rd.times[1:5]
        changes.update(mname=normalize(str(rd.mname)), rname=normalize(str(rd.rname)),
                       refresh=refresh, retry=retry, expire=expire, neg_ttl=min(minimum, soa.ttl),
                       soa_ttl=soa.ttl)
    return replace(zone, **changes)


def load_zones(names: list[str], zones_dir: str, ttl: int, neg_ttl: int) -> list[ZoneConfig]:
    """One ZoneConfig per served zone; `<zones_dir>/<zone>.zone` adds static records and SOA,
    and a zone file for a zone not named with --zone adds that zone."""
    zones = {name: ZoneConfig(name=name, ttl=ttl, neg_ttl=neg_ttl) for name in names}
    if not zones_dir:
        return list(zones.values())
    if not os.path.isdir(zones_dir):
        raise ZoneFileError(f"--zones-dir {zones_dir}: not a directory")
    for entry in sorted(os.listdir(zones_dir)):
        if not entry.endswith(".zone"):
            continue
        path = os.path.join(zones_dir, entry)
        try:
            name = normalize(entry[: -len(".zone")])
        except BadName as exc:
            raise ZoneFileError(f"{path}: file name is not a zone name: {exc}") from None
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise ZoneFileError(f"{path}: cannot read: {exc}") from None
        base = zones.get(name) or ZoneConfig(name=name, ttl=ttl, neg_ttl=neg_ttl)
        zones[name] = parse_zone_text(base, text, path)
    return list(zones.values())


def served_zones(cfg, names=None) -> list:
    """The zones exactly as serve builds them from its settings: the zone files, TTLs, the
    hostile-data caps (--max-value-bytes, --max-records-per-name) and the default
    nameserver's addresses (--ns-address, else the specific --listen addresses). `status`
    uses it too, so both see the same zones. `names`: the zones to serve, default cfg.zone
    (a reload keeps the ones serve started with)."""
    from dataclasses import replace

    from dnsdisco.dns.names import ns_addresses
    addresses = ns_addresses(cfg.ns_address, cfg.listen)
    return [replace(z, max_value_bytes=cfg.max_value_bytes, max_records_per_name=cfg.max_records_per_name,
                    ns_addresses=addresses) for z in load_zones(cfg.zone if names is None else names, cfg.zones_dir, cfg.ttl, cfg.neg_ttl)]
