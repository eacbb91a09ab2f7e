"""`dnsdisco status [NAME]`: what a dnsdisco with these settings serves, read from etcd now.

It lists the prefix and builds the same Snapshot the server builds (same parsing, same
rules), so an operator sees every record with its types, TTL, value and source key, and
every value the server skips with the reason. With NAME it shows only the records that
answer NAME (the value at NAME and its instances one label below) and says why.

`describe(...)` is pure (snapshot in, dict out); `render_text` formats it; `run_status`
does the I/O.
"""
from __future__ import annotations

import json
import logging
import sys

from dnsdisco.etcd.settings import StartupError, connect, explain, kv_settings, unreachable  # first: quiets gRPC before it loads
from dnsdisco.dns.records import shown_value
from dnsdisco.ops.logs import fail

log = logging.getLogger("dnsdisco.ops.status")


# ---------------------------------------------------------------- pure part

def record_types(rec) -> list[str]:
    """The record types this value gives its owner name (PTR in reverse zones aside)."""
    types = []
    if rec.host_kind == "ipv4":
        types.append("A")
    elif rec.host_kind == "ipv6":
        types.append("AAAA")
    elif rec.host_kind == "name":
        types.append("CNAME")
    if rec.port > 0 and rec.host:
        types.append("SRV")
    if rec.text:
        types.append("TXT")
    if rec.mail and rec.host:
        types.append("MX")
    return types



def _entry(snap, rec) -> dict:
    zone = snap.zone_of(rec.name)
    ttl = rec.ttl if rec.ttl is not None else (zone.ttl if zone else None)
    return {"name": rec.name, "types": record_types(rec), "ttl": ttl, "value": shown_value(rec),
            "key": snap.key_of(rec), "zone": zone.name if zone else None, "host": rec.host, "port": rec.port,
            "priority": rec.priority, "weight": rec.weight, "text": rec.text, "mail": rec.mail,
            "targetstrip": rec.targetstrip, "group": rec.group}


def describe(snap, name: str | None = None) -> dict:
    """What `snap` serves (all of it, or what answers `name`), as plain data."""
    from dnsdisco.dns.names import key_for, parent
    out = {"revision": snap.revision, "prefix": snap.prefix or "/",
           "zones": [z.name for z in snap.zones]}
    bad = [{"key": k, "message": m} for k, m in sorted(set(snap.rejected))]
    if name is None:
        out["records"] = [_entry(snap, rec) for rec in snap.all_records()]
        out["bad"] = bad
        return out
    zone = snap.zone_of(name)
    answering = snap.records_for(name)
    own_key = key_for(snap.prefix, name)
    deeper = sum(1 for rec_name, _rec in snap.named_records()      # a count: no need to sort by key
                 if rec_name.endswith("." + name) and parent(rec_name) != name)
    if zone is None:
        result = "REFUSED"
    elif answering:
        result = "NOERROR"
    elif snap.exists(name):
        result = "NODATA"
    else:
        result = "NXDOMAIN"
    out.update({
        "name": name, "zone": zone.name if zone else None, "result": result, "key": own_key,
        "records": [_entry(snap, rec) for rec in answering],
        "deeper": deeper,
        # bad values that would answer NAME once fixed: at its key or one label below
        "bad": [b for b in bad if b["key"] == own_key or b["key"].rsplit("/", 1)[0] == own_key],
    })
    return out


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows]


def render_text(info: dict) -> str:
    lines = []
    records, bad = info["records"], info["bad"]
    if "name" in info:
        n, key = info["name"], info["key"]
        if info["result"] == "REFUSED":
            lines.append(f"{n}: outside the served zones ({', '.join(info['zones'])}): answered REFUSED")
        elif info["result"] == "NOERROR":
            own = sum(1 for r in records if r["key"] == key)
            lines.append(f"{n}: answered by {len(records)} record(s): {own} at {key} and "
                         f"{len(records) - own} instance(s) one label below ({key}/<id>)")
        else:
            why = ("it has names below it" if info["result"] == "NODATA" else "no record at or below it")
            lines.append(f"{n}: {info['result']}: no record at {key} or one label below; {why}")
        if info["deeper"]:
            lines.append(f"  {info['deeper']} record(s) further below do not answer {n} "
                         "(only one level of instances does)")
    else:
        lines.append(f"# etcd revision {info['revision']}, prefix {info['prefix']}, zones "
                     f"{', '.join(info['zones'])}: {len(records)} record(s), {len(bad)} bad value(s)")
    if records:
        rows = [["NAME", "TYPES", "TTL", "VALUE", "KEY"]]
        for r in records:
            ttl = str(r["ttl"]) if r["zone"] else "-"
            name = r["name"] if r["zone"] else r["name"] + " (outside the zones: not served)"
            rows.append([name, ",".join(r["types"]) or "-", ttl, r["value"], r["key"]])
        lines.extend(_table(rows))
    if bad:
        lines.append("bad values (skipped, not served):")
        lines.extend("  " + (b["message"] if b["message"].startswith(b["key"]) else f"{b['key']}: {b['message']}")
                     for b in bad)
    return "\n".join(lines) + "\n"


def render_zones(snap, zone_name: str | None = None) -> str:
    """`--format zone`: the zone (or every zone) as served, as RFC 1035 master files."""
    from dnsdisco.dns.zonedata import master_file, serial_of, zone_rrsets
    names = [zone_name] if zone_name else [z.name for z in snap.zones]
    return "".join(master_file(name, zone_rrsets(snap, name),
                               f"zone {name} as served at etcd revision {snap.revision} "
                               f"(serial {serial_of(snap)}), prefix {snap.prefix or '/'}")
                   for name in names)


# ---------------------------------------------------------------- I/O

def run_status(cfg, args=None) -> int:
    from dnsdisco.ops import logs
    from dnsdisco.etcd.client import EtcdError
    from dnsdisco.dns.names import BadName, normalize
    from dnsdisco.dns.snapshot import Snapshot
    from dnsdisco.dns.zonefile import ZoneFileError, served_zones

    name = getattr(args, "name", None)
    if name:
        try:
            name = normalize(name)
        except BadName as exc:
            return fail("status", f"NAME: {exc}", 2)
    try:
        # the zones exactly as serve builds them: zone files, TTLs and the hostile-data caps
        zones = served_zones(cfg)
    except ZoneFileError as exc:
        return fail("status", str(exc), 2)
    if cfg.format == "zone" and name and name not in {z.name for z in zones}:
        return fail("status", f"ZONE {name}: not a served zone (served: {', '.join(z.name for z in zones)})", 2)
    prefix = cfg.prefix.rstrip("/")
    try:
        settings = kv_settings(cfg, on_secret=logs.add_secret)
    except StartupError as exc:
        return fail("status", str(exc))
    problem = unreachable(settings["endpoints"], timeout=min(1.5, cfg.etcd_timeout))
    if problem:
        return fail("status", problem)
    try:
        kv = connect(cfg, log=log, on_secret=logs.add_secret)
    except StartupError as exc:
        return fail("status", str(exc))
    try:
        revision, items = kv.list_prefix(prefix + "/")
    except EtcdError as exc:
        return fail("status", explain(exc, kv))
    finally:
        kv.close()
    snap = Snapshot.build(prefix, zones, revision, items)
    if cfg.format == "zone":
        sys.stdout.write(render_zones(snap, name or None))
        return 0
    info = describe(snap, name or None)
    if cfg.format == "json":
        sys.stdout.write(json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(render_text(info))
    # a script can test a name with the exit status: 1 when it does not exist (NXDOMAIN) or
    # is not served at all (REFUSED)
    return 1 if info.get("result") in ("NXDOMAIN", "REFUSED") else 0


def add_arguments(parser) -> None:
    """`dnsdisco status [NAME]`."""
    parser.add_argument("name", metavar="NAME", nargs="?", default=None,
                        help="show only the records that answer this name, and why (with --format zone: "
                             "the zone to print; default every served zone)")
