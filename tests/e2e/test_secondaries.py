"""Real secondaries of dnsdisco on loopback: Knot DNS (`knotd`) and BIND 9 (`named`), each with
a TSIG key, loading the zone by AXFR and following etcd by NOTIFY + IXFR: a put, a delete, a
lease expiry, many names in one transaction, an etcd compaction, and a restart from an old
serial. Each is asserted from what the secondary answers and from its own log.
"""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import dns.message
import dns.query
import pytest

from tests.support.harness import ServeProcess, wait_for
from tests.support.netns import free_port
from tests.support.transfer import SECRET1, ZONE, delete, put, txn_put, write_keys

BASE = [("a.hello.svc.local", {"host": "10.0.0.7", "port": 8080}),
        ("web.svc.local", {"host": "10.0.0.9"}),
        ("ns1.ns.dns.svc.local", {"host": "127.0.0.1"})] + \
       [(f"i{i}.big.svc.local", {"host": f"10.1.0.{i}", "port": 1000 + i}) for i in range(60)]

KNOT_CONF = """\
server:
    listen: 127.0.0.1@{port}
    rundir: "{wd}"
database:
    storage: "{wd}/db"
log:
  - target: "{wd}/secondary.log"
    any: info
key:
  - id: k1
    algorithm: hmac-sha256
    secret: {secret}
remote:
  - id: primary
    address: 127.0.0.1@{primary}
    key: k1
acl:
  - id: from_primary
    address: 127.0.0.1
    key: k1
    action: notify
template:
  - id: default
    storage: "{wd}"
zone:
  - domain: {zone}
    master: primary
    acl: from_primary
    file: "{wd}/{zone}.zone"
    zonefile-sync: 0
"""

BIND_CONF = """\
options {{
    directory "{wd}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    pid-file "{wd}/named.pid";
    session-keyfile "{wd}/session.key";
    managed-keys-directory "{wd}";
    recursion no;
    dnssec-validation no;
    notify no;
    min-refresh-time 1;
    min-retry-time 1;
}};
key "k1" {{ algorithm hmac-sha256; secret "{secret}"; }};
server 127.0.0.1 {{ keys {{ k1; }}; }};
controls {{ }};
logging {{
    channel secondary {{ file "{wd}/secondary.log"; severity debug 3; print-time yes; print-category yes; }};
    category default {{ secondary; }};
    category xfer-in {{ secondary; }};
    category notify {{ secondary; }};
}};
zone "{zone}" {{
    type secondary;
    primaries port {primary} {{ 127.0.0.1 key k1; }};
    file "{wd}/{zone}.db";
    allow-notify {{ 127.0.0.1; }};
}};
"""


class Secondary:
    """One secondary server process in a directory of its own, restartable with its data."""

    def __init__(self, kind: str, primary_port: int):
        self.kind = kind
        self.port = free_port()
        self.wd = Path(tempfile.mkdtemp(prefix=f"dnsdisco-{kind}-"))
        (self.wd / "db").mkdir()
        template = KNOT_CONF if kind == "knot" else BIND_CONF
        self.conf = self.wd / ("knot.conf" if kind == "knot" else "named.conf")
        self.conf.write_text(template.format(wd=self.wd, port=self.port, primary=primary_port, zone=ZONE,
                                             secret=SECRET1))
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Secondary":
        cmd = (["knotd", "-c", str(self.conf)] if self.kind == "knot"
               else ["named", "-f", "-d", "3", "-c", str(self.conf)])
        # in its own directory: named -d writes named.run into its working directory
        with open(self.wd / "stderr", "ab") as stderr:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr, cwd=self.wd)
        wait_for(lambda: self.proc.poll() is None and self.log(), 15, what=f"{self.kind} to start")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log(self) -> str:
        try:
            return (self.wd / "secondary.log").read_text(errors="replace")
        except OSError:
            return ""

    def addresses(self, name: str) -> list[str]:
        reply = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=self.port, timeout=1)
        return sorted(rd.to_text() for rrset in reply.answer if rrset.rdtype == 1 for rd in rrset)

    def incremental_transfers(self) -> int:
        """Incremental transfers the secondary's log reports as done (BIND says so at debug 3)."""
        log = self.log().splitlines()
        if self.kind == "knot":
            return sum(1 for line in log if "IXFR, incoming" in line and "finished" in line)
        return sum(1 for line in log if "got incremental response" in line)

    def loaded_by_axfr(self) -> bool:
        log = self.log()
        return ("AXFR, incoming" in log and "finished" in log) if self.kind == "knot" else "requesting AXFR" in log

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.wd, ignore_errors=True)


def follows(secondary: Secondary, name: str, expected: list[str], timeout: float = 15.0) -> None:
    wait_for(lambda: secondary.addresses(name) == expected, timeout,
             what=f"{secondary.kind} to answer {name} with {expected}\n--- its log ---\n{secondary.log()[-3000:]}")


@pytest.mark.parametrize("kind", ["knot", "bind"])
def test_secondary_follows_etcd(kind, etcd, kv, prefix, tmp_path):
    binary = "knotd" if kind == "knot" else "named"
    if shutil.which(binary) is None:
        pytest.skip(f"{binary} not installed (Debian {'knot' if kind == 'knot' else 'bind9'}; .ci/run installs it)")
    for name, value in BASE:
        put(kv, prefix, name, value)
    serve_port = free_port()
    secondary = Secondary(kind, serve_port)
    try:
        with ServeProcess(etcd.endpoint, "--prefix", prefix.rstrip("/"), "--transfer-allow", "127.0.0.1/32",
                          "--transfer-require-tsig", "--tsig-key-file", write_keys(str(tmp_path)),
                          "--notify", f"127.0.0.1:{secondary.port}", port=serve_port) as serve:
            # 1. the zone arrives by AXFR
            secondary.start()
            follows(secondary, "a.hello.svc.local", ["10.0.0.7"], 30)
            assert secondary.addresses("i59.big.svc.local") == ["10.1.0.59"]
            assert "AXFR of svc.local to 127.0.0.1 over TCP key k1" in serve.log()
            assert secondary.loaded_by_axfr(), secondary.log()[-3000:]

            # 2. a put reaches it by NOTIFY and IXFR
            before = secondary.incremental_transfers()
            put(kv, prefix, "b.hello.svc.local", {"host": "10.0.0.8", "port": 8080})
            follows(secondary, "hello.svc.local", ["10.0.0.7", "10.0.0.8"])
            wait_for(lambda: secondary.incremental_transfers() > before, 10,
                     what=f"an incremental transfer in the {kind} log\n{secondary.log()[-3000:]}")
            assert "IXFR of svc.local to 127.0.0.1 over TCP key k1" in serve.log()

            # 3. a delete, a lease expiry, many names in one transaction
            delete(kv, prefix, "a.hello.svc.local")
            follows(secondary, "hello.svc.local", ["10.0.0.8"])
            lease = kv.grant(2)
            kv.put(prefix.rstrip("/") + "/local/svc/leased", json.dumps({"host": "10.0.0.77"}).encode(), lease=lease)
            follows(secondary, "leased.svc.local", ["10.0.0.77"])
            follows(secondary, "leased.svc.local", [], 20)        # the lease expired in etcd
            txn_put(kv, prefix, [(f"n{i}.many.svc.local", {"host": f"10.2.0.{i}"}) for i in range(30)])
            follows(secondary, "many.svc.local", sorted(f"10.2.0.{i}" for i in range(30)))

            # 4. an etcd compaction changes nothing for the secondary
            etcd.etcdctl("compact", str(kv.revision()))
            put(kv, prefix, "after.svc.local", {"host": "10.0.0.66"})
            follows(secondary, "after.svc.local", ["10.0.0.66"])

            # 5. stopped with an old serial, it catches up when it starts again
            secondary.stop()
            put(kv, prefix, "late.svc.local", {"host": "10.0.0.55"})
            delete(kv, prefix, "web.svc.local")
            transfers = secondary.incremental_transfers()
            secondary.start()
            follows(secondary, "late.svc.local", ["10.0.0.55"], 30)
            follows(secondary, "web.svc.local", [])
            wait_for(lambda: secondary.incremental_transfers() > transfers, 10,
                     what=f"the catch-up to be incremental\n{secondary.log()[-3000:]}")
            log = serve.log()
            assert SECRET1 not in log and SECRET1 not in secondary.log()
    finally:
        secondary.cleanup()


def _snippet(doc: str, marker: str) -> list[str]:
    block = doc.split(f"<!-- {marker} -->", 1)[1].split("```", 2)[1]
    return [line.strip() for line in block.splitlines()[1:] if line.strip()]


def test_docs_show_the_tested_configurations():
    """Every line of the Knot and BIND snippets in docs/transfers.md is a line of the
    configuration these tests run (with the doc's example secret and primary port)."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "transfers.md").read_text()
    secret = doc.split("secret: ", 1)[1].split()[0]
    for marker, template in (("knot-secondary", KNOT_CONF), ("bind-secondary", BIND_CONF)):
        tested = {line.strip() for line in template.format(wd="/x", port=53, primary=5353, zone=ZONE,
                                                           secret=secret).splitlines()}
        lines = _snippet(doc, marker)
        assert len(lines) > 5
        missing = [line for line in lines if line not in tested]
        assert not missing, f"{marker} lines not in the tested configuration: {missing}"
