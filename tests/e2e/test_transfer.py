"""Zone transfers and TSIG against a real `dnsdisco serve` and a real etcd, asked with dig and
dnspython: AXFR over many signed messages, IXFR from the journal, who may transfer, the
TSIG errors of RFC 8945 5.2, and named-checkzone on what AXFR and `status --format zone` give.
"""
from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import pytest

from tests.support.harness import ServeProcess, child_env, dnsdisco_cmd, wait_for
from tests.support.transfer import KEY1, KEY2, SECRET1, SECRET2, WRONG, ZONE, delete, put, txn_put, write_keys

NOTAUTH = 9

needs_checkzone = pytest.mark.skipif(shutil.which("named-checkzone") is None,
                                     reason="named-checkzone not installed (Debian bind9-utils; .ci/run installs it)")
needs_dig = pytest.mark.skipif(shutil.which("dig") is None, reason="dig not installed (Debian dnsutils)")


# ---------------------------------------------------------------- data and helpers

# Every record shape whose zone must load in a secondary today: address services with
# instances, SRV, TXT, MX, ns.dns records, a bare alias, a host name under the apex,
# many instances (several AXFR messages).
PLAIN = [
    ("a.hello.svc.local", {"host": "10.0.0.7", "port": 8080}),
    ("b.hello.svc.local", {"host": "fd00::8", "port": 8080, "ttl": 60, "text": "v2 \"quoted\" \\ ok"}),
    ("web.svc.local", {"host": "10.0.0.9"}),
    ("m.mail.svc.local", {"host": "10.0.0.25", "mail": True, "priority": 5}),
    ("alias.svc.local", {"host": "www.example.org"}),
    ("inner.svc.local", {"host": "web.svc.local"}),
    ("ns1.ns.dns.svc.local", {"host": "10.0.0.53"}),
    ("7.0.0.10.in-addr.arpa", {"host": "custom.svc.local"}),
] + [(f"i{i}.big.svc.local", {"host": f"10.1.{i // 250}.{i % 250}", "port": 1000 + i}) for i in range(300)]

# Shapes the rules of DESIGN 3 turn into NODATA-not-CNAME (issue 18 defect 2): a name host
# beside SRV, MX or TXT data. Until the answer rules do so, the zone has CNAME and other data.
MIXED = [
    ("x.mixed.svc.local", {"host": "db.example.org", "port": 5432}),
    ("y.mixed.svc.local", {"host": "mx.example.org", "mail": True}),
    ("t.mixed.svc.local", {"host": "db.example.org", "text": "hi"}),
    ("x.svc.local", {"host": "example.net"}),
]

STATIC = "@ 300 IN SOA ns1.ns.dns hostmaster 1 60 10 1209600 5\nstatic 60 IN A 192.0.2.1\nstatic 60 IN TXT \"static text\"\n"


def soa_serial(port: int) -> int:
    msg = dns.message.make_query(ZONE, "SOA")
    reply = dns.query.udp(msg, "127.0.0.1", port=port, timeout=2)
    return reply.answer[0][0].serial


def transfer(port: int, rdtype: str = "AXFR", serial: int = 0, key=None, source: str = "127.0.0.1"):
    """The messages of a transfer, each TSIG-checked by dnspython when `key` is given."""
    kw = {"keyring": {key.name: key}, "keyname": key.name, "keyalgorithm": key.algorithm} if key else {}
    return list(dns.query.xfr("127.0.0.1", ZONE, rdtype=rdtype, port=port, serial=serial, timeout=10,
                              lifetime=30, relativize=False, source=source, **kw))


def raw_tcp(port: int, wire: bytes, source: str = "127.0.0.1") -> list[bytes]:
    """Send one message over TCP; every message until the server closes or 2 s of silence."""
    out = []
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)) as sock:
        sock.sendall(struct.pack("!H", len(wire)) + wire)
        sock.settimeout(2)
        buf = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
                while len(buf) >= 2 and len(buf) >= 2 + struct.unpack("!H", buf[:2])[0]:
                    size = struct.unpack("!H", buf[:2])[0]
                    out.append(buf[2:2 + size])
                    buf = buf[2 + size:]
                if out and dns.message.from_wire(out[0], keyring=False).rcode() != 0:
                    break
        except socket.timeout:
            pass
    return out


def axfr_query(key=None, when=None) -> bytes:
    msg = dns.message.make_query(ZONE, "AXFR")
    wire = msg.to_wire()
    if key is not None:
        from dnsdisco.net.tsig import sign
        wire, _ = sign(wire, key, b"", time_signed=when)
    return wire


def records_of(messages) -> list:
    return [(rrset.name.to_text(), rrset.rdtype, rd.to_text()) for m in messages for rrset in m.answer for rd in rrset]


def tsig_error(wire: bytes) -> tuple[int, int]:
    msg = dns.message.from_wire(wire, keyring=False)
    return msg.rcode(), msg.tsig[0].error if msg.tsig else -1


@pytest.fixture
def zones_dir():
    with tempfile.TemporaryDirectory(prefix="dnsdisco-zones-") as directory:
        with open(os.path.join(directory, "svc.local.zone"), "w") as fh:
            fh.write(STATIC)
        yield directory


# ---------------------------------------------------------------- no transfer settings

def test_defaults_refuse_transfers_and_answer_any_signature_badkey(etcd, kv, prefix):
    """No keys configured: a signed query gets NOTAUTH/BADKEY, never an unsigned answer
    (RFC 8945 5.2.2; issue 18 defect 7); AXFR is refused."""
    put(kv, prefix, "a.hello.svc.local", {"host": "10.0.0.7"})
    with ServeProcess(etcd.endpoint, "--prefix", prefix.rstrip("/")) as serve:
        out = raw_tcp(serve.port, axfr_query())
        assert dns.message.from_wire(out[0]).rcode() == dns.rcode.REFUSED
        signed = dns.message.make_query("a.hello.svc.local", "A", use_edns=0)
        signed.use_tsig({KEY1.name: KEY1}, KEY1.name)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(3)
        sock.sendto(signed.to_wire(), ("127.0.0.1", serve.port))
        reply = sock.recv(65535)
        sock.close()
        rcode, error = tsig_error(reply)
        assert (rcode, error) == (NOTAUTH, dns.rcode.BADKEY)
        parsed = dns.message.from_wire(reply, keyring=False)
        assert not parsed.answer and parsed.tsig[0].mac == b""      # unsigned error: empty MAC
        # a signed AXFR gets the same
        assert tsig_error(raw_tcp(serve.port, axfr_query(KEY1))[0]) == (NOTAUTH, dns.rcode.BADKEY)


# ---------------------------------------------------------------- AXFR, TSIG, access

def test_axfr_signed_many_messages_and_tsig_errors(etcd, kv, prefix, zones_dir, tmp_path):
    for name, value in PLAIN:
        put(kv, prefix, name, value)
    keys = write_keys(str(tmp_path))
    with ServeProcess(etcd.endpoint, "--prefix", prefix.rstrip("/"), "--zone", ZONE, "--zone", "in-addr.arpa",
                      "--zones-dir", zones_dir, "--transfer-allow", "127.0.0.1/32", "--transfer-require-tsig",
                      "--tsig-key-file", keys,
                      env={"DNSDISCO_TSIG_KEYS": f"k2 hmac-sha512 {SECRET2}"}) as serve:
        # unsigned: REFUSED (--transfer-require-tsig); signed from an address not allowed: REFUSED
        assert dns.message.from_wire(raw_tcp(serve.port, axfr_query())[0]).rcode() == dns.rcode.REFUSED
        refused = raw_tcp(serve.port, axfr_query(KEY1), source="127.0.0.2")
        assert tsig_error(refused[0]) == (dns.rcode.REFUSED, 0)          # signed, since the key was valid

        # both keys: every message signed and checked by dnspython (RFC 8945 5.3.1)
        for key in (KEY1, KEY2):
            messages = transfer(serve.port, key=key)
            assert len(messages) >= 2, "300 instances take more than one message"
            assert all(m.had_tsig for m in messages)
            records = records_of(messages)
            assert records[0][1] == dns.rdatatype.SOA and records[-1][1] == dns.rdatatype.SOA
            assert records[0] == records[-1]
            assert sum(1 for r in records if r[1] == dns.rdatatype.SOA) == 2
        names = {r[0] for r in records}
        assert {"svc.local.", "hello.svc.local.", "a.hello.svc.local.", "big.svc.local.", "i299.big.svc.local.",
                "static.svc.local.", "ns1.ns.dns.svc.local."} <= names
        # the zone file's SOA timers are served, the serial is the etcd revision
        soa = messages[0].answer[0][0]
        assert (soa.refresh, soa.retry, soa.expire, soa.minimum) == (60, 10, 1209600, 5)
        assert soa.serial == soa_serial(serve.port)

        # answers identical to queries (data and TTL) for each RRset of a few names
        by_key: dict = {}
        for m in messages:
            for rrset in m.answer:
                by_key.setdefault((rrset.name.to_text(), rrset.rdtype), set()).update(
                    (rrset.ttl, rd.to_text()) for rd in rrset)
        for name, rdtype in [("hello.svc.local.", "A"), ("hello.svc.local.", "SRV"), ("b.hello.svc.local.", "TXT"),
                             ("big.svc.local.", "SRV"), ("svc.local.", "NS"), ("m.mail.svc.local.", "MX"),
                             ("alias.svc.local.", "CNAME")]:
            reply = dns.query.tcp(dns.message.make_query(name, rdtype), "127.0.0.1", port=serve.port, timeout=3)
            asked = {(rrset.ttl, rd.to_text()) for rrset in reply.answer
                     if rrset.name.to_text() == name and rrset.rdtype == dns.rdatatype.from_text(rdtype) for rd in rrset}
            assert asked and asked == by_key[(name, dns.rdatatype.from_text(rdtype))], (name, rdtype)

        # a wrong secret: NOTAUTH/BADSIG; an unknown key: NOTAUTH/BADKEY; a stale time: BADTIME
        wrong = dns.tsig.Key("k1.", WRONG, "hmac-sha256")
        assert tsig_error(raw_tcp(serve.port, axfr_query(wrong))[0]) == (NOTAUTH, dns.rcode.BADSIG)
        other = dns.tsig.Key("nobody.", SECRET1, "hmac-sha256")
        assert tsig_error(raw_tcp(serve.port, axfr_query(other))[0]) == (NOTAUTH, dns.rcode.BADKEY)
        stale = raw_tcp(serve.port, axfr_query(KEY1, when=int(time.time()) - 3600))[0]
        assert tsig_error(stale) == (NOTAUTH, dns.rcode.BADTIME)
        other_data = dns.message.from_wire(stale, keyring=False).tsig[0].other
        assert abs(int.from_bytes(other_data, "big") - time.time()) < 60      # our clock (RFC 8945 5.2.3)

        # a valid signed normal query gets a signed answer (dnspython checks the MAC)
        for key in (KEY1, KEY2):
            msg = dns.message.make_query("a.hello.svc.local", "A")
            msg.use_tsig({key.name: key}, key.name, algorithm=key.algorithm)
            reply = dns.query.udp(msg, "127.0.0.1", port=serve.port, timeout=3)
            assert reply.had_tsig and [rd.to_text() for rrset in reply.answer for rd in rrset] == ["10.0.0.7"]

        # AXFR over UDP is not defined (RFC 5936 4.2); a name that is not an apex: NOTAUTH
        msg = dns.message.make_query(ZONE, "AXFR")
        msg.use_tsig({KEY1.name: KEY1}, KEY1.name)
        assert dns.query.udp(msg, "127.0.0.1", port=serve.port, timeout=3).rcode() == dns.rcode.NOTIMP
        msg = dns.message.make_query("hello.svc.local", "AXFR")
        msg.use_tsig({KEY1.name: KEY1}, KEY1.name)
        assert dns.query.tcp(msg, "127.0.0.1", port=serve.port, timeout=3).rcode() == dns.rcode.NOTAUTH

        log = serve.log()
        assert SECRET1 not in log and SECRET2 not in log
        assert "AXFR of svc.local to 127.0.0.1 over TCP key k1" in log


@needs_dig
@needs_checkzone
def test_dig_axfr_output_passes_named_checkzone(etcd, kv, prefix, zones_dir, tmp_path):
    """`dig AXFR -y` as an operator would type it; named-checkzone accepts the zone."""
    for name, value in PLAIN:
        put(kv, prefix, name, value)
    with ServeProcess(etcd.endpoint, "--prefix", prefix.rstrip("/"), "--zone", ZONE, "--zones-dir", zones_dir,
                      "--transfer-allow", "127.0.0.0/8", "--tsig-key-file", write_keys(str(tmp_path))) as serve:
        out = subprocess.run(["dig", "@127.0.0.1", "-p", str(serve.port), "AXFR", ZONE, "+nocomments", "+nostats",
                              "+nocmd", "-y", f"hmac-sha256:k1:{SECRET1}"],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        lines = [line for line in out.stdout.splitlines() if line and "\tTSIG\t" not in line and " TSIG " not in line]
        assert "Transfer failed" not in out.stdout
        zone_file = tmp_path / "axfr.zone"
        zone_file.write_text("\n".join(lines[:-1]) + "\n")          # the closing SOA repeats the first
        check = checkzone(ZONE, zone_file)
        assert check.returncode == 0, check.stdout + check.stderr
        # without the key, from an allowed address: the whole zone too (no --transfer-require-tsig)
        plain = subprocess.run(["dig", "@127.0.0.1", "-p", str(serve.port), "AXFR", ZONE, "+nocomments", "+nostats",
                                "+nocmd"], capture_output=True, text=True, timeout=30)
        assert [line for line in plain.stdout.splitlines() if line] == lines
        # dig IXFR=N after a put: the difference only, SOA new/old/new/new around it
        serial = soa_serial(serve.port)
        rev = put(kv, prefix, "c.hello.svc.local", {"host": "10.0.0.99"})
        wait_for(lambda: soa_serial(serve.port) == rev, 10, what="the put")
        ixfr = subprocess.run(["dig", "@127.0.0.1", "-p", str(serve.port), f"IXFR={serial}", ZONE, "+nocomments",
                               "+nostats", "+nocmd", "-y", f"hmac-sha256:k1:{SECRET1}"],
                              capture_output=True, text=True, timeout=30)
        got = [line.split() for line in ixfr.stdout.splitlines() if line and "TSIG" not in line]
        assert [fields[3] for fields in got if fields[3] == "SOA"] == ["SOA"] * 4
        assert [int(fields[6]) for fields in got if fields[3] == "SOA"] == [rev, serial, rev, rev]
        assert ["c.hello.svc.local.", "A", "10.0.0.99"] in [[f[0], f[3], f[4]] for f in got]
        assert len(got) < 12, "a difference, not the zone"
        # a wrong key: dig says the transfer failed and dnsdisco answered BADSIG
        bad = subprocess.run(["dig", "@127.0.0.1", "-p", str(serve.port), "AXFR", ZONE, "-y",
                              f"hmac-sha256:k1:{WRONG}"], capture_output=True, text=True, timeout=30)
        assert "BADSIG" in bad.stdout and "10.0.0.7" not in bad.stdout


def checkzone(zone: str, path) -> subprocess.CompletedProcess:
    return subprocess.run(["named-checkzone", "-k", "fail", "-n", "fail", "-M", "fail", "-S", "fail", "-i", "full",
                           zone, str(path)], capture_output=True, text=True, timeout=30)


def status_zone(etcd, prefix, *args) -> subprocess.CompletedProcess:
    return subprocess.run(dnsdisco_cmd("status", "--etcd", etcd.endpoint, "--prefix", prefix.rstrip("/"),
                                       "--format", "zone", *args),
                          env=child_env(), capture_output=True, text=True, timeout=60)


@needs_checkzone
def test_status_format_zone_passes_named_checkzone(etcd, kv, prefix, zones_dir, tmp_path):
    for name, value in PLAIN:
        put(kv, prefix, name, value)
    out = status_zone(etcd, prefix, "--zone", ZONE, "--zone", "in-addr.arpa", "--zones-dir", zones_dir, ZONE)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("\tSOA\t") == 1 and "static.svc.local.\t60\tIN\tA\t192.0.2.1" in out.stdout
    assert '"v2 \\"quoted\\" \\\\ ok"' in out.stdout
    path = tmp_path / "svc.local.zone"
    path.write_text(out.stdout)
    check = checkzone(ZONE, path)
    assert check.returncode == 0, check.stdout + check.stderr
    reverse = status_zone(etcd, prefix, "--zone", ZONE, "--zone", "in-addr.arpa", "in-addr.arpa")
    assert reverse.returncode == 0, reverse.stderr
    assert "9.0.0.10.in-addr.arpa.\t30\tIN\tPTR\tweb.svc.local." in reverse.stdout
    # a record stored at a reverse key wins over the automatic PTR of that address
    assert "7.0.0.10.in-addr.arpa.\t30\tIN\tPTR\tcustom.svc.local." in reverse.stdout
    assert "a.hello.svc.local" not in reverse.stdout
    # a zone that is not served is named in the error
    bad = status_zone(etcd, prefix, "--zone", ZONE, "example.com")
    assert bad.returncode == 2 and "example.com" in bad.stderr and "Traceback" not in bad.stderr


@needs_checkzone
def test_every_shape_passes_named_checkzone(etcd, kv, prefix, zones_dir, tmp_path):
    """Aliases, name hosts beside SRV/MX/TXT (SRV/MX targets, not CNAMEs), a name host under the
    apex, ns.dns records, a zone file: named-checkzone accepts the zone (issue 18)."""
    for name, value in PLAIN + MIXED:
        put(kv, prefix, name, value)
    out = status_zone(etcd, prefix, "--zone", ZONE, "--zone", "in-addr.arpa", "--zones-dir", zones_dir, ZONE)
    assert out.returncode == 0, out.stderr
    assert "x.mixed.svc.local.\t30\tIN\tSRV\t10 100 5432 db.example.org." in out.stdout
    path = tmp_path / "svc.local.zone"
    path.write_text(out.stdout)
    check = checkzone(ZONE, path)
    assert check.returncode == 0, check.stdout + check.stderr


@needs_checkzone
def test_reverse_zone_with_stored_keys_passes_named_checkzone(etcd, kv, prefix, tmp_path):
    """A name host stored at a reverse key is its PTR, not a CNAME beside it (issue 18)."""
    for name, value in PLAIN:
        put(kv, prefix, name, value)
    out = status_zone(etcd, prefix, "--zone", ZONE, "--zone", "in-addr.arpa", "in-addr.arpa")
    assert out.returncode == 0, out.stderr
    path = tmp_path / "in-addr.arpa.zone"
    path.write_text(out.stdout)
    check = checkzone("in-addr.arpa", path)
    assert check.returncode == 0, check.stdout + check.stderr


# ---------------------------------------------------------------- IXFR

def test_ixfr_from_the_journal(etcd, kv, prefix):
    put(kv, prefix, "a.hello.svc.local", {"host": "10.0.0.7", "port": 8080})
    for i in range(40):
        put(kv, prefix, f"i{i}.big.svc.local", {"host": f"10.1.0.{i}", "port": 80})
    with ServeProcess(etcd.endpoint, "--prefix", prefix.rstrip("/"), "--transfer-allow", "127.0.0.1/32") as serve:
        s0 = soa_serial(serve.port)
        rev = put(kv, prefix, "b.hello.svc.local", {"host": "10.0.0.8", "port": 8080})
        wait_for(lambda: soa_serial(serve.port) == rev, 10, what="the put to be served")
        records = records_of(transfer(serve.port, "IXFR", s0))
        soas = [i for i, r in enumerate(records) if r[1] == dns.rdatatype.SOA]
        assert len(soas) == 4 and soas[0] == 0 and soas[-1] == len(records) - 1
        serials = [int(records[i][2].split()[2]) for i in soas]
        assert serials == [rev, s0, rev, rev]
        removed = records[soas[1] + 1:soas[2]]
        added = records[soas[2] + 1:soas[3]]
        assert removed == []
        assert set(added) >= {("hello.svc.local.", dns.rdatatype.A, "10.0.0.8"),
                              ("b.hello.svc.local.", dns.rdatatype.A, "10.0.0.8"),
                              ("hello.svc.local.", dns.rdatatype.SRV, "10 100 8080 b.hello.svc.local."),
                              ("b.hello.svc.local.", dns.rdatatype.SRV, "10 100 8080 b.hello.svc.local.")}
        assert not any(name.endswith("big.svc.local.") for name, _t, _d in added)

        # a delete; then several names in one etcd transaction; IXFR condenses both from s1
        s1 = rev
        delete(kv, prefix, "a.hello.svc.local")
        txn_put(kv, prefix, [(f"n{i}.many.svc.local", {"host": f"10.2.0.{i}"}) for i in range(20)])
        wait_for(lambda: dns.query.udp(dns.message.make_query("n19.many.svc.local", "A"), "127.0.0.1",
                                       port=serve.port, timeout=2).answer, 10, what="the transaction")
        s2 = soa_serial(serve.port)
        records = records_of(transfer(serve.port, "IXFR", s1))
        soas = [i for i, r in enumerate(records) if r[1] == dns.rdatatype.SOA]
        removed, added = records[soas[1] + 1:soas[2]], records[soas[2] + 1:soas[3]]
        assert ("a.hello.svc.local.", dns.rdatatype.A, "10.0.0.7") in removed
        assert ("hello.svc.local.", dns.rdatatype.A, "10.0.0.7") in removed
        assert ("n19.many.svc.local.", dns.rdatatype.A, "10.2.0.19") in added
        assert len([r for r in added if r[0] == "many.svc.local." and r[1] == dns.rdatatype.A]) == 20

        # an etcd compaction does not break the journal (it is dnsdisco's own)
        etcd.etcdctl("compact", str(s2))
        rev3 = put(kv, prefix, "c.hello.svc.local", {"host": "10.0.0.9"})
        wait_for(lambda: soa_serial(serve.port) == rev3, 10, what="the put after the compaction")
        records = records_of(transfer(serve.port, "IXFR", s0))
        soas = [i for i, r in enumerate(records) if r[1] == dns.rdatatype.SOA]
        assert len(soas) == 4, "still incremental from s0 after the compaction"

        # up to date: our SOA alone (over UDP as over TCP); an unknown serial: the whole zone
        assert [r[1] for r in records_of(transfer(serve.port, "IXFR", rev3))] == [dns.rdatatype.SOA]
        query = dns.message.make_query(ZONE, "IXFR")
        query.authority.append(_soa_rrset(rev3))
        udp = dns.query.udp(query, "127.0.0.1", port=serve.port, timeout=3)
        assert [rrset.rdtype for rrset in udp.answer] == [dns.rdatatype.SOA] and not udp.flags & dns.flags.TC
        query = dns.message.make_query(ZONE, "IXFR")
        query.authority.append(_soa_rrset(s0))
        udp = dns.query.udp(query, "127.0.0.1", port=serve.port, timeout=3)
        assert udp.flags & dns.flags.TC and [rrset.rdtype for rrset in udp.answer] == [dns.rdatatype.SOA]
        full = records_of(transfer(serve.port, "IXFR", s0 - 5))
        assert full[0][1] == dns.rdatatype.SOA and full[1][1] != dns.rdatatype.SOA
        assert ("i39.big.svc.local.", dns.rdatatype.A, "10.1.0.39") in full
        assert "IXFR of svc.local to 127.0.0.1 over TCP" in serve.log()


def _soa_rrset(serial: int):
    import dns.rrset
    return dns.rrset.from_text(ZONE + ".", 30, "IN", "SOA",
                               f"ns.dns.{ZONE}. hostmaster.{ZONE}. {serial} 60 10 1209600 5")



@pytest.mark.parametrize("args,message", [
    (["--tsig-key-file", "/nonexistent/keys"], "--tsig-key-file /nonexistent/keys: cannot read"),
    (["--transfer-require-tsig", "--transfer-allow", "127.0.0.1/32"], "--transfer-require-tsig needs a key"),
    (["--notify", "secondary.example"], "--notify: 'secondary.example': NOTIFY goes to an IP address"),
    (["--ixfr-journal-size", "lots"], "--ixfr-journal-size: 'lots': expected ENTRIES or ENTRIES:BYTES"),
])
def test_bad_transfer_settings_stop_serve_with_a_clear_line(etcd, args, message):
    out = subprocess.run(dnsdisco_cmd("serve", "--etcd", etcd.endpoint, "--listen", "127.0.0.1:0", *args),
                         env=child_env(), capture_output=True, text=True, timeout=30)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr


def test_secret_in_the_environment_is_never_logged(etcd, kv, prefix):
    bad = f"k9 hmac-sha256 {SECRET1}; k9 hmac-sha256 {SECRET2}"
    out = subprocess.run(dnsdisco_cmd("serve", "--etcd", etcd.endpoint, "--listen", "127.0.0.1:0"),
                         env=child_env({"DNSDISCO_TSIG_KEYS": bad}), capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "defined twice" in out.stderr
    assert SECRET1 not in out.stderr and SECRET2 not in out.stderr
