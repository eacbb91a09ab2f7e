"""One validator (issue 22): `dnsdisco register` and `dnsdisco.Registration` judge names and
values with the code serve runs on etcd's contents, so what they accept is served and what
serve would skip is refused with one line naming the input and exit status 2.

BAD is the one table both sides read: the registrar test runs `register` with each row, the
serve test writes each row's record into a real etcd, as a registrar without the check would
have, and asks a real `dnsdisco serve` for it.
"""
from __future__ import annotations

import json
import subprocess

import dns.rcode
import pytest

import dnsdisco
from dnsdisco.dns.names import key_for
from tests.support.harness import ServeProcess, addresses, child_env, dnsdisco_cmd, wait_for

PREFIX = "/skydns"
ZONE = "svc.local"

# (service NAME, --address, what the refusal says): serve skips every one of these records
BAD = [
    ("badaddr.svc.local", "999.1.1.1", "'999.1.1.1' is not a valid IPv4 address"),
    ("badaddr2.svc.local", "1.2.3", "'1.2.3' is not a valid IPv4 address"),
    ("badaddr3.svc.local", "1.2.3.4.5", "'1.2.3.4.5' is not a valid IPv4 address"),
    ("badaddr4.svc.local", "2001:db8::1::2", "'2001:db8::1::2' is not a valid IPv6 address"),
    ("badaddr5.svc.local", "fd00::g", "'fd00::g' is not a valid IPv6 address"),
    ("badaddr6.svc.local", "10.0.0.1/24", "'10.0.0.1/24' is neither an address nor a host name"),
    ("badaddr7.svc.local", "a b.example", "'a b.example' is neither an address nor a host name"),
    ("badaddr8.svc.local", "a!b.example", "'a!b.example' is neither an address nor a host name"),
    ("badaddr9.svc.local", "back\\slash.example", "has a backslash"),
    ("x" * 64 + ".svc.local", "10.0.0.1", "label longer than 63"),
    (".".join(["y" * 60] * 5) + ".svc.local", "10.0.0.1", "longer than 253"),
    ("empty..svc.local", "10.0.0.1", "empty label"),
    ("back\\slash.svc.local", "10.0.0.1", "'\\\\' in the label"),
]

# served by serve (a label is any octets, RFC 2181), but no name a registrar should write:
# typed by people, looked up by stub resolvers
STRICTER = [
    ("hel lo.svc.local", "10.0.0.1", "has ' ' in the label 'hel lo'"),
    ("he!lo.svc.local", "10.0.0.1", "has '!' in the label 'he!lo'"),
    ("hel/lo.svc.local", "10.0.0.1", "has '/' in the label 'hel/lo'"),   # its key would say lo.hel.svc.local
    ("héllo.svc.local", "10.0.0.1", "has 'é' in the label"),
]

# accepted by register and answered by serve as given
GOOD = [
    ("good-v4.svc.local", "10.0.0.7", "A", "10.0.0.7"),
    ("good_v6.svc.local", "FD00::0007", "AAAA", "fd00::7"),
    ("good-mapped.svc.local", "::ffff:10.0.0.8", "A", "10.0.0.8"),
]


@pytest.mark.parametrize("name, address, says", BAD + STRICTER, ids=lambda v: v if len(v) < 20 else v[:17] + "...")
def test_register_refuses_in_one_line_with_status_2(name, address, says):
    out = subprocess.run(dnsdisco_cmd("register", name, "--port", "80", "--address", address, "--id", "x",
                                      "--etcd", "http://127.0.0.1:9"),
                         env=child_env(), capture_output=True, text=True, timeout=30)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert says in lines[0], lines[0]
    named = {address, name[:20], repr(address)[1:-1], repr(name[:20])[1:-1]}   # repr doubles a backslash
    assert any(n in lines[0] for n in named), f"the bad input is not named: {lines[0]}"


@pytest.mark.parametrize("name, address, says", BAD + STRICTER, ids=lambda v: v if len(v) < 20 else v[:17] + "...")
def test_registration_api_refuses_the_same(name, address, says):
    with pytest.raises(ValueError) as info:
        dnsdisco.Registration(name, port=80, address=address, id="x", etcd="http://127.0.0.1:9")
    assert says in str(info.value)


def test_serve_skips_every_bad_row_and_answers_the_good_ones(etcd):
    """What a registrar without the shared check would have written, read by a real serve."""
    for name, address, _ in BAD:
        etcd.etcdctl("put", key_for(PREFIX, name) + "/x", json.dumps({"host": address, "port": 80}))
    for name, address, _, _ in GOOD:
        etcd.etcdctl("put", key_for(PREFIX, name) + "/x", json.dumps({"host": address, "port": 80}))
    with ServeProcess(etcd.endpoint, "--zone", ZONE, "--neg-ttl", "0") as serve:
        for name, _, rdtype, want in GOOD:
            wait_for(lambda: addresses(serve.query(name, rdtype), rdtype) == [want], 10,
                     what=f"{rdtype} {name}\n{serve.log()}")
        log = serve.log()
        for name, address, _ in BAD:
            key = key_for(PREFIX, name) + "/x"
            if len(name) <= 253:
                try:
                    reply = serve.query("x." + name, "A")
                except Exception:  # a name dnspython cannot even send is not served either
                    reply = None
                assert reply is None or reply.rcode() != dns.rcode.NOERROR or not addresses(reply), name
            assert key in log or key.encode("unicode_escape").decode() in log, f"serve did not name {key}:\n{log}"


def test_what_register_accepts_is_served(etcd):
    """The good rows through the Python API (the same plan as `register`), answered by serve."""
    with ServeProcess(etcd.endpoint, "--zone", ZONE, "--neg-ttl", "0") as serve:
        regs = [dnsdisco.Registration(name, port=80, address=address, ttl=3, id="api", etcd=etcd.endpoint)
                for name, address, _, _ in GOOD]
        try:
            for reg in regs:
                reg.start()
            for name, _, rdtype, want in GOOD:
                wait_for(lambda: addresses(serve.query("api." + name, rdtype), rdtype) == [want], 10,
                         what=f"{rdtype} api.{name}\n{serve.log()}")
        finally:
            for reg in regs:
                reg.stop()
