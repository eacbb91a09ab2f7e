"""Stub resolvers of other ecosystems, pointed at dnsdisco through resolv.conf (issue 18).

Inside a network namespace (DESIGN.md section 7) whose /etc/resolv.conf says
`nameserver 127.0.0.1`, `search svc.local`: etcd, `dnsdisco serve --listen 127.0.0.1:53 --zone
svc.local --forward 127.0.0.2:53` (no reverse zone: PTRs of registered addresses are answered
anyway), and Knot on 127.0.0.2:53 as the upstream holding example.test. Then, unmodified:
- Go's pure resolver (net.Resolver{PreferGo: true}, GODEBUG=netdns=go), a program built here
  from the standard library only;
- Node's dns.promises.Resolver (c-ares) and dns.lookup (getaddrinfo), where `node` exists.
Each asks for A, AAAA, SRV, an answer too big for UDP (60 instances: every record must arrive,
over TCP), a CNAME inside the zone and one leaving it (finished through the forwarder: stub
resolvers never chase a CNAME), a reverse name, an absent name and a short name through the
search list.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.support.netns import netns_available
from tests.support.nsworld import NsWorld
from tests.support.refservers import zone_text

available, why = netns_available()
pytestmark = [pytest.mark.skipif(not available, reason=f"network namespaces cannot be created here: {why}")]
if shutil.which("knotd") is None:
    pytestmark.append(pytest.mark.skip(reason="'knotd' is not installed (Debian package knot): it is the upstream"))

RESOLV_CONF = "nameserver 127.0.0.1\nsearch svc.local\noptions timeout:2 attempts:2\n"
N_BIG = 60
HELLO = {"10.0.0.7", "fd00::7"}
BIG4 = {f"10.9.0.{i}" for i in range(1, N_BIG + 1)}
BIG6 = {f"fd00:9::{i:x}" for i in range(1, N_BIG + 1)}
OUTSIDE = {"192.0.2.10", "2001:db8::10"}

RECORDS = {
    "/skydns/local/svc/hello/i0": {"host": "10.0.0.7", "port": 8080},
    "/skydns/local/svc/hello/i1": {"host": "fd00::7", "port": 8080},
    "/skydns/local/svc/web/a": {"host": "hello.svc.local"},          # an alias inside the zone
    "/skydns/local/svc/ext/a": {"host": "db.example.test"},          # an alias leaving our zones
    **{f"/skydns/local/svc/big/i{i:02d}": {"host": f"10.9.0.{i}", "port": 9000 + i} for i in range(1, N_BIG + 1)},
    **{f"/skydns/local/svc/big/j{i:02d}": {"host": f"fd00:9::{i:x}", "port": 9000 + i} for i in range(1, N_BIG + 1)},
}
UPSTREAM = {"example.test": zone_text("example.test", "ns.dns A 127.0.0.2\ndb A 192.0.2.10\ndb AAAA 2001:db8::10\n")}

GO_PROGRAM = r"""
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"time"
)

type reply struct {
	OK       bool     `json:"ok"`
	Result   []string `json:"result"`
	Error    string   `json:"error,omitempty"`
	NotFound bool     `json:"notfound"`
}

func main() {
	r := &net.Resolver{PreferGo: true}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	op, arg := os.Args[1], os.Args[2]
	var res []string
	var err error
	switch op {
	case "host":
		res, err = r.LookupHost(ctx, arg)
	case "ip4", "ip6":
		var ips []net.IP
		ips, err = r.LookupIP(ctx, op, arg)
		for _, ip := range ips {
			res = append(res, ip.String())
		}
	case "srv":
		var srvs []*net.SRV
		_, srvs, err = r.LookupSRV(ctx, "", "", arg)
		for _, s := range srvs {
			res = append(res, fmt.Sprintf("%d %d %d %s", s.Priority, s.Weight, s.Port, s.Target))
		}
	case "addr":
		res, err = r.LookupAddr(ctx, arg)
	case "cname":
		var c string
		c, err = r.LookupCNAME(ctx, arg)
		res = []string{c}
	default:
		err = fmt.Errorf("unknown operation %q", op)
	}
	out := reply{OK: err == nil, Result: res}
	if err != nil {
		out.Error = err.Error()
		var de *net.DNSError
		if errors.As(err, &de) {
			out.NotFound = de.IsNotFound
		}
	}
	sort.Strings(out.Result)
	json.NewEncoder(os.Stdout).Encode(out)
}
"""

NODE_PROGRAM = r"""
const dns = require('dns');
const [op, arg] = process.argv.slice(2);
const r = new dns.promises.Resolver({timeout: 3000, tries: 2});
async function ask() {
  switch (op) {
    case 'resolve4': return r.resolve4(arg);
    case 'resolve6': return r.resolve6(arg);
    case 'resolveSrv': return (await r.resolveSrv(arg)).map(s => `${s.priority} ${s.weight} ${s.port} ${s.name}`);
    case 'reverse': return r.reverse(arg);
    case 'resolveCname': return r.resolveCname(arg);
    case 'lookup': return (await dns.promises.lookup(arg, {all: true})).map(a => a.address);
  }
  throw new Error('unknown operation ' + op);
}
ask().then(res => console.log(JSON.stringify({ok: true, result: res.sort()})),
           err => console.log(JSON.stringify({ok: false, error: String(err), code: err.code})));
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    work = tmp_path_factory.mktemp("stubs")
    with NsWorld("ddstub", work, resolv_conf=RESOLV_CONF) as w:
        w.put(RECORDS)
        w.knot("127.0.0.2", UPSTREAM)
        w.serve("127.0.0.1", "--zone", "svc.local", "--forward", "127.0.0.2:53", "--allow", "127.0.0.0/8",
                ready=("hello.svc.local", "A"))
        yield w


@pytest.fixture(scope="module")
def go_prog(tmp_path_factory):
    if shutil.which("go") is None:
        pytest.skip("'go' is not installed (Debian package golang-go)")
    work = tmp_path_factory.mktemp("gostub")
    (work / "main.go").write_text(GO_PROGRAM)
    env = {**os.environ, "GOCACHE": str(work / "cache"), "GOPATH": str(work / "gopath"), "GOPROXY": "off",
           "GO111MODULE": "off", "GOFLAGS": "", "CGO_ENABLED": "0", "HOME": str(work)}
    res = subprocess.run(["go", "build", "-o", str(work / "stub"), "main.go"], cwd=work, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, f"go build: {res.stderr}"
    return work / "stub"


@pytest.fixture(scope="module")
def node_prog(tmp_path_factory):
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.skip("'node' is not installed (Debian package nodejs)")
    work = tmp_path_factory.mktemp("nodestub")
    (work / "stub.js").write_text(NODE_PROGRAM)
    return node, work / "stub.js"


def go(world, go_prog, op, arg) -> dict:
    res = world.run([str(go_prog), op, arg], timeout=30, env={"PATH": os.environ["PATH"], "GODEBUG": "netdns=go"})
    assert res.returncode == 0 and res.stdout.strip(), f"go {op} {arg}: {res.stderr}"
    return json.loads(res.stdout)


def node(world, node_prog, op, arg) -> dict:
    exe, script = node_prog
    res = world.run([exe, str(script), op, arg], timeout=30, env={"PATH": os.environ["PATH"]})
    assert res.returncode == 0 and res.stdout.strip(), f"node {op} {arg}: {res.stderr}"
    return json.loads(res.stdout)


def srv_lines(targets) -> set[str]:
    return {f"10 100 {port} {t}" for port, t in targets}


BIG_SRV = srv_lines([(9000 + i, f"i{i:02d}.big.svc.local") for i in range(1, N_BIG + 1)]
                    + [(9000 + i, f"j{i:02d}.big.svc.local") for i in range(1, N_BIG + 1)])

# (operation, argument, expected set of results, or "notfound")
GO_CASES = [
    ("host", "hello.svc.local", HELLO),
    ("ip4", "hello.svc.local", {"10.0.0.7"}),
    ("ip6", "hello.svc.local", {"fd00::7"}),
    ("srv", "hello.svc.local", {"10 100 8080 i0.hello.svc.local.", "10 100 8080 i1.hello.svc.local."}),
    ("ip4", "big.svc.local", BIG4),                      # more than 512 octets
    ("ip6", "big.svc.local", BIG6),                      # more than 1232 octets
    ("srv", "big.svc.local", {line + "." for line in BIG_SRV}),
    ("host", "web.svc.local", HELLO),                    # CNAME inside the zone
    ("cname", "web.svc.local", {"hello.svc.local."}),
    ("host", "ext.svc.local", OUTSIDE),                  # CNAME leaving our zones
    ("addr", "10.0.0.7", {"i0.hello.svc.local."}),
    ("addr", "fd00::7", {"i1.hello.svc.local."}),
    ("host", "nothing.svc.local", "notfound"),
    ("host", "hello", HELLO),                            # through `search svc.local`
]

NODE_CASES = [
    ("resolve4", "hello.svc.local", {"10.0.0.7"}),
    ("resolve6", "hello.svc.local", {"fd00::7"}),
    ("resolveSrv", "hello.svc.local", {"10 100 8080 i0.hello.svc.local", "10 100 8080 i1.hello.svc.local"}),
    ("resolve4", "big.svc.local", BIG4),
    ("resolve6", "big.svc.local", BIG6),
    ("resolveSrv", "big.svc.local", BIG_SRV),
    ("resolve4", "web.svc.local", {"10.0.0.7"}),
    ("resolveCname", "web.svc.local", {"hello.svc.local"}),
    ("resolve4", "ext.svc.local", {"192.0.2.10"}),
    ("reverse", "10.0.0.7", {"i0.hello.svc.local"}),
    ("reverse", "fd00::7", {"i1.hello.svc.local"}),
    ("resolve4", "nothing.svc.local", "notfound"),
    ("lookup", "hello.svc.local", HELLO),                # getaddrinfo: A and AAAA together
    ("lookup", "big.svc.local", BIG4 | BIG6),
    ("lookup", "web.svc.local", HELLO),
    ("lookup", "ext.svc.local", OUTSIDE),
    ("lookup", "nothing.svc.local", "notfound"),
    ("lookup", "hello", HELLO),                          # through `search svc.local`
]


def check(got: dict, expected, what: str) -> None:
    if expected == "notfound":
        assert not got["ok"] and (got.get("notfound") or got.get("code") == "ENOTFOUND"), f"{what}: {got}"
        return
    assert got["ok"], f"{what}: {got}"
    assert set(got["result"]) == expected, (f"{what}: missing {sorted(expected - set(got['result']))[:5]}, "
                                            f"extra {sorted(set(got['result']) - expected)[:5]}")


@pytest.mark.parametrize("op,arg,expected", GO_CASES, ids=[f"{o}-{a}" for o, a, _ in GO_CASES])
def test_go_pure_resolver(world, go_prog, op, arg, expected):
    check(go(world, go_prog, op, arg), expected, f"Go {op}({arg})")


@pytest.mark.parametrize("op,arg,expected", NODE_CASES, ids=[f"{o}-{a}" for o, a, _ in NODE_CASES])
def test_node(world, node_prog, op, arg, expected):
    check(node(world, node_prog, op, arg), expected, f"Node {op}({arg})")


def test_big_answers_really_are_truncated_on_udp(world):
    """The big cases test TCP fallback only if UDP cannot carry them: ask without and with EDNS."""
    code = ("import sys, dns.message, dns.query, dns.flags\n"
            "for t, edns in (('A', False), ('AAAA', 0), ('SRV', 0)):\n"
            "    q = dns.message.make_query('big.svc.local', t, use_edns=edns, payload=1232)\n"
            "    r = dns.query.udp(q, '127.0.0.1', timeout=2)\n"
            "    print(t, bool(r.flags & dns.flags.TC))\n")
    res = world.run([sys.executable, "-c", code])
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["A", "True", "AAAA", "True", "SRV", "True"], res.stdout


def test_chain_leaving_our_zones_is_finished_only_when_asked_to_recurse(world):
    """Issue 18 defect 3 as a client sees it: with RD the forwarder finishes the chain (AA as for
    the first owner, RA set); without RD the bare CNAME stays, as an authoritative answer."""
    code = ("import sys, json, dns.message, dns.query, dns.flags\n"
            "out = {}\n"
            "for rd in (True, False):\n"
            "    q = dns.message.make_query('ext.svc.local', 'A')\n"
            "    if not rd: q.flags &= ~dns.flags.RD\n"
            "    r = dns.query.udp(q, '127.0.0.1', timeout=3)\n"
            "    out[str(rd)] = {'rcode': r.rcode(), 'aa': bool(r.flags & dns.flags.AA), 'ra': bool(r.flags & dns.flags.RA),\n"
            "                    'answer': sorted(f'{s.name} {dns.rdatatype.to_text(s.rdtype)} {rd}' for s in r.answer for rd in s)}\n"
            "print(json.dumps(out))\n")
    res = world.run([sys.executable, "-c", code])
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert got["True"] == {"rcode": 0, "aa": True, "ra": True,
                           "answer": ["db.example.test. A 192.0.2.10", "ext.svc.local. CNAME db.example.test."]}, got
    assert got["False"]["rcode"] == 0 and got["False"]["aa"], got
    assert got["False"]["answer"] == ["ext.svc.local. CNAME db.example.test."], got
