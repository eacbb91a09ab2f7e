"""dnsviz judges dnsdisco as it judges Knot DNS serving the same zone (issue 18).

Inside one network namespace (DESIGN.md section 7; dnsviz wants port 53): etcd, and
- the default setup: `dnsdisco serve --zone svc.local` with etcd data only (no zone file) on
  127.0.0.1:53, beside Knot serving the equivalent zone, written by hand, on 127.0.0.2:53;
- a setup with aliases and reverse names: `--zone svc.local --zone in-addr.arpa` on
  127.0.0.3:53, beside Knot on 127.0.0.4:53.
`dnsviz probe -A` is told each zone's server (`-N zone:ns.dns.zone=ADDRESS`) and its ancestor
(`-a zone`), so it never goes to the root; `dnsviz grok` then lists errors and warnings. dnsdisco
may have none that Knot does not have for the same zone.
"""
from __future__ import annotations

import json
import shutil

import pytest

from tests.support.netns import netns_available
from tests.support.nsworld import NsWorld
from tests.support.refservers import zone_text

available, why = netns_available()
pytestmark = [pytest.mark.skipif(not available, reason=f"network namespaces cannot be created here: {why}")]
for _tool, _pkg in (("dnsviz", "dnsviz"), ("knotd", "knot")):
    if shutil.which(_tool) is None:
        pytestmark.append(pytest.mark.skip(reason=f"'{_tool}' is not installed (Debian package {_pkg})"))

DEFAULT = {   # /viz1: etcd data only
    "/viz1/local/svc/hello/i0": {"host": "10.0.0.7", "port": 8080},
    "/viz1/local/svc/hello/i1": {"host": "fd00::7", "port": 8080},
    "/viz1/local/svc/notes/t": {"text": "version=1"},
}


def default_zone(ns_address: str) -> str:
    return zone_text("svc.local", f"""
ns.dns A {ns_address}
hello A 10.0.0.7
hello AAAA fd00::7
i0.hello A 10.0.0.7
i1.hello AAAA fd00::7
hello SRV 10 100 8080 i0.hello
hello SRV 10 100 8080 i1.hello
i0.hello SRV 10 100 8080 i0.hello
i1.hello SRV 10 100 8080 i1.hello
notes TXT "version=1"
t.notes TXT "version=1"
""")


# Targets stay inside svc.local: with no way out of the namespace, dnsviz would spend its time
# trying the root for an outside target.
ALIASES = {   # /viz2: aliases (a chain, a name host beside a port) and reverse names
    "/viz2/local/svc/hello/i0": {"host": "10.0.0.7", "port": 8080},
    "/viz2/local/svc/web/a": {"host": "hello.svc.local"},
    "/viz2/local/svc/api/a": {"host": "web.svc.local"},
    "/viz2/local/svc/db/i0": {"host": "hello.svc.local", "port": 5432},
    "/viz2/local/svc/top": {"host": "hello.svc.local"},      # one label below the apex
    "/viz2/local/svc/both/i0": {"host": "hello.svc.local", "text": "t=1"},
    "/viz2/arpa/in-addr/10/0/0/9": {"host": "hello.svc.local"},
}


def alias_zones(ns_address: str) -> dict[str, str]:
    return {
        "svc.local": zone_text("svc.local", f"""
ns.dns A {ns_address}
hello A 10.0.0.7
i0.hello A 10.0.0.7
hello SRV 10 100 8080 i0.hello
i0.hello SRV 10 100 8080 i0.hello
web CNAME hello
a.web CNAME hello
api CNAME web
a.api CNAME web
db SRV 10 100 5432 hello
i0.db SRV 10 100 5432 hello
top CNAME hello
both TXT "t=1"
i0.both TXT "t=1"
"""),
        "in-addr.arpa": zone_text("in-addr.arpa", f"""
ns.dns A {ns_address}
7.0.0.10 PTR i0.hello.svc.local.
9.0.0.10 PTR hello.svc.local.
"""),
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    work = tmp_path_factory.mktemp("dnsviz")
    with NsWorld("ddviz", work) as w:
        w.put({**DEFAULT, **ALIASES})
        w.serve("127.0.0.1", "--prefix", "/viz1", "--zone", "svc.local", ready=("hello.svc.local", "A"))
        w.serve("127.0.0.3", "--prefix", "/viz2", "--zone", "svc.local", "--zone", "in-addr.arpa",
                ready=("a.api.svc.local", "CNAME"))
        w.knot("127.0.0.2", {"svc.local": default_zone("127.0.0.2")})
        w.knot("127.0.0.4", alias_zones("127.0.0.4"))
        yield w


def findings(node, path="", out=None) -> set[tuple[str, str, str]]:
    """Every (errors|warnings, code, where) in grok's JSON; `where` is the path of keys above it."""
    out = set() if out is None else out
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("errors", "warnings") and isinstance(value, list):
                for item in value:
                    out.add((key, item.get("code", "?"), path))
            else:
                findings(value, f"{path}/{key}", out)
    elif isinstance(node, list):
        for value in node:
            findings(value, path, out)
    return out


def grok(world, address: str, zone: str, names: list[str], tag: str) -> tuple[set, dict]:
    out = world.workdir / f"probe-{tag}-{address}.json"
    res = world.run(["dnsviz", "probe", "-A", "-a", zone, "-N", f"{zone}:ns.dns.{zone}={address}",
                     "-o", str(out), *names], timeout=60)
    assert res.returncode == 0, f"dnsviz probe against {address}: {res.stderr}"
    res = world.run(["dnsviz", "grok", "-P", "-r", str(out)], timeout=60)  # -P: 127/8 is fine here
    assert res.returncode == 0, f"dnsviz grok: {res.stderr}"
    report = json.loads(res.stdout)
    # the address appears in paths (per-server results): the same place for both servers
    return {(kind, code, where.replace(address, "SERVER")) for kind, code, where in findings(report)}, report


CASES = {
    "default": ("127.0.0.1", "127.0.0.2", "svc.local",
                ["svc.local", "hello.svc.local", "i0.hello.svc.local", "notes.svc.local", "nothing.svc.local"]),
    "aliases": ("127.0.0.3", "127.0.0.4", "svc.local",
                ["svc.local", "web.svc.local", "api.svc.local", "db.svc.local", "i0.db.svc.local",
                 "top.svc.local", "both.svc.local"]),
    "reverse": ("127.0.0.3", "127.0.0.4", "in-addr.arpa",
                ["in-addr.arpa", "7.0.0.10.in-addr.arpa", "9.0.0.10.in-addr.arpa", "8.0.0.10.in-addr.arpa"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_no_dnsviz_finding_beyond_knots(world, case):
    ours_addr, knot_addr, zone, names = CASES[case]
    ours, ours_report = grok(world, ours_addr, zone, names, case)
    knot, _ = grok(world, knot_addr, zone, names, case)
    extra = sorted(ours - knot)
    assert not extra, (f"dnsviz finds in dnsdisco's {zone} what it does not find in Knot's:\n  "
                       + "\n  ".join(f"{k} {c} at {w}" for k, c, w in extra)
                       + f"\n(Knot's own: {sorted(knot)})\n--- dnsdisco report ---\n{json.dumps(ours_report)[:4000]}")


def test_dnsviz_sees_a_lame_zone(world, tmp_path):
    """The check can fail: a Knot zone whose NS name has no address is reported by dnsviz."""
    lame = zone_text("svc.local", "hello A 10.0.0.7\n")          # NS ns.dns, and no ns.dns A
    world.knot("127.0.0.5", {"svc.local": lame})
    found, _ = grok(world, "127.0.0.5", "svc.local", ["svc.local"], "lame")
    assert any(kind == "errors" or code.startswith("NO_ADDRESS") for kind, code, _ in found), found
