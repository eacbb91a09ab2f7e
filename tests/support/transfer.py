"""Shared by the zone-transfer tests (tests/e2e/test_transfer.py, test_notify.py, test_secondaries.py):
the TSIG keys, and writing SkyDNS records to etcd by name."""
from __future__ import annotations

import base64
import json
import os

import dns.tsig

ZONE = "svc.local"
SECRET1 = base64.b64encode(b"dnsdisco-test-key-one-32-octets!").decode()
SECRET2 = base64.b64encode(b"dnsdisco-test-key-two-is-sixty-four-octets-long-for-sha512!!!!!").decode()
WRONG = base64.b64encode(b"not-the-secret-of-key-one-at-all").decode()
KEY1 = dns.tsig.Key("k1.", SECRET1, "hmac-sha256")
KEY2 = dns.tsig.Key("k2.", SECRET2, "hmac-sha512")


def put(kv, prefix, name, value) -> int:
    key = prefix.rstrip("/") + "/" + "/".join(reversed(name.split(".")))
    return kv.put(key, json.dumps(value).encode())


def delete(kv, prefix, name) -> None:
    kv.delete(prefix.rstrip("/") + "/" + "/".join(reversed(name.split("."))))


def txn_put(kv, prefix, items) -> None:
    """Many names in one etcd transaction (one revision)."""
    from pyetcd import etcdrpc
    ops = [etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(
        key=(prefix.rstrip("/") + "/" + "/".join(reversed(name.split(".")))).encode(),
        value=json.dumps(value).encode())) for name, value in items]
    req = etcdrpc.TxnRequest(success=ops)
    kv._call("txn", lambda ep, t, md: ep.kv.Txn(req, timeout=t, metadata=md))


def write_keys(directory: str) -> str:
    path = os.path.join(directory, "keys")
    with open(path, "w") as fh:
        fh.write(f"# test keys\nk1 hmac-sha256 {SECRET1}\n")
    return path
