"""Shared by the zone-transfer tests (tests/e2e/test_transfer.py, test_notify.py, test_secondaries.py):
the TSIG keys, writing SkyDNS records to etcd by name, and a secondary's NOTIFY socket."""
from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time

import dns.message
import dns.opcode
import dns.tsig

from tests.support.netns import free_port

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


class FakeSecondary:
    """A UDP socket that records every NOTIFY (checking its TSIG) and answers it after `delay`
    seconds, except the first `ignore` ones."""

    def __init__(self, delay: float = 0.2, ignore: int = 0):
        self.port = free_port()
        self.delay = delay
        self.ignore = ignore
        self.received: list[tuple[float, int]] = []       # (time, serial)
        self.bad: list[str] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                msg = dns.message.from_wire(data, keyring={KEY1.name: KEY1})
            except Exception as exc:   # an unsigned or badly signed NOTIFY is a failure
                self.bad.append(repr(exc))
                continue
            if msg.opcode() != dns.opcode.NOTIFY or not msg.had_tsig:
                self.bad.append(f"opcode {msg.opcode()}, signed {msg.had_tsig}")
                continue
            serial = msg.answer[0][0].serial if msg.answer else -1
            self.received.append((time.monotonic(), serial))
            if len(self.received) <= self.ignore:
                continue
            time.sleep(self.delay)
            reply = dns.message.make_response(msg)
            self.sock.sendto(reply.to_wire(), addr)

    def close(self) -> None:
        self._stop.set()
        self.thread.join(2)
        self.sock.close()
