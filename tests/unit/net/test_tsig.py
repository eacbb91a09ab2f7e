"""Pure: TSIG key files (clear errors that never show a secret), checking a signed message and
signing replies, against dnspython as the independent implementation."""
from __future__ import annotations

import base64
import time

import dns.message
import dns.rcode
import dns.tsig
import pytest

from dnsdisco.net import tsig

SECRET = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def test_key_lines_and_their_errors():
    keys = tsig.parse_keys(f"# comment\nk1 hmac-sha256 {SECRET}\n\nk2. HMAC-SHA512 {SECRET}  # trailing\n")
    assert {k.to_text() for k in keys} == {"k1.", "k2."}
    assert keys[dns.name.from_text("k2")].algorithm == dns.tsig.HMAC_SHA512
    assert len(tsig.parse_keys(f"a hmac-sha256 {SECRET}; b hmac-sha256 {SECRET}", "DNSDISCO_TSIG_KEYS")) == 2
    bad = {
        f"k1 hmac-md5 {SECRET}": "algorithm 'hmac-md5' is not one of",
        "k1 hmac-sha256 not*base64": "is not base64",
        f"k1 hmac-sha256 {base64.b64encode(b'short').decode()}": "use at least 16",
        f"k1 hmac-sha256 {SECRET}\nk1 hmac-sha512 {SECRET}": "defined twice",
        "k1 hmac-sha256": "expected 'name algorithm secret'",
    }
    for text, message in bad.items():
        with pytest.raises(tsig.KeyFileError, match=message) as info:
            tsig.parse_keys(text, "keys.txt")
        assert "keys.txt" in str(info.value) and SECRET not in str(info.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(tsig.KeyFileError, match="--tsig-key-file .*nothing-here: cannot read"):
        tsig.load_key_file(str(tmp_path / "nothing-here"))


def signed_query(key, when=None) -> bytes:
    wire = dns.message.make_query("a.svc.local", "A").to_wire()
    return tsig.sign(wire, key, b"", time_signed=when)[0]


def test_check_tells_each_error_apart():
    key = dns.tsig.Key("k1.", SECRET, "hmac-sha256")
    keyring = {key.name: key}
    # dnspython accepts what we sign
    dns.message.from_wire(signed_query(key), keyring=keyring)
    assert tsig.check(dns.message.make_query("a.svc.local", "A").to_wire(), keyring) is None
    assert tsig.check(signed_query(key), keyring).error == 0
    assert tsig.check(signed_query(key), {}).error == tsig.BADKEY
    other_alg = dns.tsig.Key("k1.", SECRET, "hmac-sha512")
    assert tsig.check(signed_query(other_alg), keyring).error == tsig.BADKEY
    wrong = dns.tsig.Key("k1.", base64.b64encode(b"another secret of 32 octets!!!!!").decode(), "hmac-sha256")
    assert tsig.check(signed_query(wrong), keyring).error == tsig.BADSIG
    assert tsig.check(signed_query(key, int(time.time()) - 1000), keyring).error == tsig.BADTIME
    # the request without its TSIG is the query it signed
    data = signed_query(key)
    found = tsig.check(data, keyring)
    assert tsig.unsigned(data, found) == dns.message.from_wire(tsig.unsigned(data, found)).to_wire()


def test_signed_reply_and_multi_message_chain_verify_with_dnspython():
    key = dns.tsig.Key("k1.", SECRET, "hmac-sha256")
    query = dns.message.make_query("svc.local", "AXFR")
    query.use_tsig({key.name: key}, key.name)
    qwire = query.to_wire()
    found = tsig.check(qwire, {key.name: key})
    replies, ctx = [], None
    for n in range(3):
        response = dns.message.make_response(dns.message.from_wire(qwire, keyring=False))
        response.flags |= 0x0400
        wire, ctx = tsig.sign(response.to_wire(), key, found.mac, ctx=ctx, multi=True)
        replies.append(wire)
    ctx = None
    for n, wire in enumerate(replies):
        msg = dns.message.from_wire(wire, keyring={key.name: key}, request_mac=found.mac if n == 0 else b"",
                                    tsig_ctx=ctx, multi=True)
        ctx = msg.tsig_ctx
        assert msg.had_tsig


def test_refused_requests_cannot_flood_the_log(caplog):
    """30 refused AXFRs and 30 bad signatures: at most 10 lines per 10 s window."""
    import logging

    from dnsdisco.dns.snapshot import Snapshot, ZoneConfig
    from dnsdisco.dns.responder import Responder
    from dnsdisco.net.transfer import Transfers
    responder = Responder(Snapshot.build("/skydns", [ZoneConfig("svc.local")], 5, []))
    responder.xfr = Transfers()           # no settings: transfers refused, signed queries BADKEY
    axfr = dns.message.make_query("svc.local", "AXFR").to_wire()
    key = dns.tsig.Key("k1.", SECRET, "hmac-sha256")
    with caplog.at_level(logging.INFO, logger="dnsdisco.net.transfer"):
        for _ in range(30):
            reply = responder.handle(axfr, "tcp", ("192.0.2.9", 5353))
            assert dns.message.from_wire(reply[0] if isinstance(reply, list) else reply).rcode() == dns.rcode.REFUSED
            reply = responder.handle(signed_query(key), "udp", ("192.0.2.9", 5353))
            assert dns.message.from_wire(reply, keyring=False).tsig[0].error == dns.rcode.BADKEY
    lines = [r for r in caplog.records if r.name == "dnsdisco.net.transfer"]
    assert len(lines) == 10
