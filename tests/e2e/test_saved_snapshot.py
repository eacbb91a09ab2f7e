"""--snapshot-file through real serve processes and a real etcd: the records a stop saved are
answered at the next start before its listing is built (here: while etcd is down), with every
negative answer SERVFAIL, never a false NXDOMAIN; the listing then replaces them. And when a
saved snapshot is not used, serve says why and starts as without one."""
from __future__ import annotations

import json
import os
import socket
import time

import dns.rcode
import pytest

from tests.support.harness import ServeProcess, addresses, wait_for

PREFIX = "/saved"


def put(etcd, rel: str, host: str) -> None:
    etcd.etcdctl("put", f"{PREFIX}/local/svc/{rel}", json.dumps({"host": host, "port": 80}))


def test_a_restart_answers_the_saved_records_until_the_listing_replaces_them(etcd, tmp_path):
    if not etcd.running:
        etcd.start()
    saved = tmp_path / "serve.snapshot"
    put(etcd, "kept/i0", "10.7.0.1")
    put(etcd, "gone/i0", "10.7.0.2")
    args = ("--prefix", PREFIX, "--snapshot-file", str(saved))
    with ServeProcess(etcd.endpoint, *args) as srv:
        wait_for(lambda: addresses(srv.query("gone.svc.local")) == ["10.7.0.2"], 10, what="the first listing")
        assert srv.stop() == 0
        log = srv.log()
    assert "saved 2 record(s) at revision" in log, log
    assert saved.stat().st_mode & 0o777 == 0o600
    # while serve is down: one service goes, one comes; then etcd goes too
    etcd.etcdctl("del", f"{PREFIX}/local/svc/gone/i0")
    put(etcd, "new/i0", "10.7.0.3")
    etcd.stop()
    try:
        with ServeProcess(etcd.endpoint, *args, wait=False) as srv:
            # answered from the saved records although etcd cannot be listed
            wait_for(lambda: addresses(srv.query("kept.svc.local")) == ["10.7.0.1"], 15, what="the saved records")
            assert addresses(srv.query("gone.svc.local")) == ["10.7.0.2"]      # as it was at the stop
            for name, rdtype in (("new.svc.local", "A"), ("nothing.svc.local", "A"), ("kept.svc.local", "AAAA"),
                                 ("3.0.7.10.in-addr.arpa", "PTR")):
                assert srv.query(name, rdtype).rcode() == dns.rcode.SERVFAIL, (name, rdtype)   # never NXDOMAIN
            assert srv.query("svc.local", "AXFR", tcp=True).rcode() == dns.rcode.SERVFAIL     # not sent on
            etcd.start()
            # the listing replaces the saved records: the names as etcd holds them now
            wait_for(lambda: addresses(srv.query("new.svc.local")) == ["10.7.0.3"], 20, what="the listing")
            assert srv.query("gone.svc.local").rcode() == dns.rcode.NXDOMAIN
            assert srv.query("nothing.svc.local").rcode() == dns.rcode.NXDOMAIN
            assert addresses(srv.query("kept.svc.local")) == ["10.7.0.1"]
            assert srv.stop() == 0
            log = srv.log()
    finally:
        if not etcd.running:
            etcd.start()
    assert "answering from the snapshot saved in" in log, log
    assert "saved 2 record(s) at revision" in log, log       # the listing's records, for the next start
    assert "Traceback" not in log


def saved_by_a_first_serve(etcd, tmp_path):
    """The snapshot file a serve of one record saved when it stopped."""
    if not etcd.running:
        etcd.start()
    saved = tmp_path / "serve.snapshot"
    put(etcd, "kept/i0", "10.7.0.1")
    with ServeProcess(etcd.endpoint, "--prefix", PREFIX, "--snapshot-file", str(saved)) as srv:
        wait_for(lambda: addresses(srv.query("kept.svc.local")) == ["10.7.0.1"], 10, what="the first listing")
    assert saved.exists()
    return saved


def test_a_start_that_never_listed_does_not_save_over_the_snapshot(etcd, tmp_path):
    saved = saved_by_a_first_serve(etcd, tmp_path)
    args = ("--prefix", PREFIX, "--snapshot-file", str(saved))
    written = saved.stat().st_mtime_ns
    etcd.stop()
    try:
        with ServeProcess(etcd.endpoint, *args, wait=False) as srv:
            wait_for(lambda: addresses(srv.query("kept.svc.local")) == ["10.7.0.1"], 15, what="the saved records")
            assert srv.stop() == 0
            log = srv.log()
    finally:
        etcd.start()
    assert "not saving a snapshot" in log, log
    assert saved.stat().st_mtime_ns == written     # its age still counts from the last listing


@pytest.mark.parametrize("change, reason", [
    (("--prefix", "/other"), "it holds the prefix '/saved', not '/other'"),
    (("--zone", "other.local"), "it was saved with other zones or zone settings"),
    (("--ttl", "7"), "it was saved with other zones or zone settings"),
])
def test_a_snapshot_saved_for_other_data_is_not_used_and_serve_says_why(etcd, tmp_path, change, reason):
    saved = saved_by_a_first_serve(etcd, tmp_path)
    args = ["--prefix", PREFIX, "--snapshot-file", str(saved)]
    if change[0] == "--prefix":
        args[1] = change[1]
    else:
        args += list(change)
    with ServeProcess(etcd.endpoint, *args, zone=change[1] if change[0] == "--zone" else "svc.local") as srv:
        srv.stop()
        log = srv.log()
    assert f"not answering from the saved snapshot {saved}: {reason}" in log, log


def test_a_snapshot_others_may_write_is_not_read(etcd, tmp_path):
    saved = saved_by_a_first_serve(etcd, tmp_path)
    os.chmod(saved, 0o666)
    time.sleep(0.01)
    with ServeProcess(etcd.endpoint, "--prefix", PREFIX, "--snapshot-file", str(saved)) as srv:
        srv.stop()
        log = srv.log()
    assert "others may write it" in log, log


@pytest.mark.parametrize("where, says", [
    ("missing-dir/serve.snapshot", "the directory {tmp}/missing-dir does not exist"),
    (".", "is a directory; name a file in it"),
])
def test_a_snapshot_file_that_cannot_be_written_stops_the_start_with_a_clear_line(tmp_path, where, says):
    import subprocess

    from tests.support.harness import child_env, dnsdisco_cmd
    path = str(tmp_path / where) if where != "." else str(tmp_path)
    out = subprocess.run(dnsdisco_cmd("serve", "--etcd", "http://127.0.0.1:9", "--listen", "127.0.0.1:0",
                                      "--snapshot-file", path), capture_output=True, text=True, env=child_env(),
                         timeout=60)
    assert out.returncode == 2, out.stderr
    assert says.format(tmp=tmp_path) in out.stderr and "Traceback" not in out.stderr, out.stderr
    checked = subprocess.run(dnsdisco_cmd("serve", "--check-config", "--snapshot-file", path), capture_output=True,
                             text=True, env=child_env(), timeout=60)
    assert checked.returncode == 2 and says.format(tmp=tmp_path) in checked.stderr, checked.stderr


def test_answers_are_packed_ahead_from_the_listing_never_from_the_saved_snapshot(etcd, tmp_path):
    """--precompute-budget with a saved snapshot: packing starts after the listing (a packed
    answer is a cached one, and nothing is cached from a saved snapshot), not before it."""
    saved = saved_by_a_first_serve(etcd, tmp_path)
    args = ("--prefix", PREFIX, "--snapshot-file", str(saved), "--precompute-budget", "8")
    etcd.stop()
    try:
        with ServeProcess(etcd.endpoint, *args, wait=False) as srv:
            wait_for(lambda: addresses(srv.query("kept.svc.local")) == ["10.7.0.1"], 15, what="the saved records")
            time.sleep(1.0)                       # time to pack, had it started
            assert "answers ahead" not in srv.log(), srv.log()
            etcd.start()
            wait_for(lambda: "answers ahead" in srv.log(), 20, what="packing ahead after the listing")
            assert srv.query("nothing.svc.local").rcode() == dns.rcode.NXDOMAIN
            log = srv.log()
    finally:
        if not etcd.running:
            etcd.start()
    packed = [line for line in log.splitlines() if "answers ahead" in line]
    assert len(packed) == 1 and "packed 0 answers" not in packed[0], packed


def test_glibc_gets_the_saved_addresses_and_try_again_never_no_such_name(etcd, tmp_path):
    """A real client's view: inside a network namespace (DESIGN.md section 7) etcd cannot be
    reached, and serve answers from the saved snapshot. glibc's getaddrinfo (through Python's
    socket module and resolv.conf) finds the saved address, and for a name the snapshot lacks
    it says EAI_AGAIN (try again), not EAI_NONAME, which callers take as final."""
    from tests.support.netns import Netns, netns_available
    available, why = netns_available()
    if not available:
        pytest.skip(f"network namespaces cannot be created here: {why}")
    import sys

    from tests.support.harness import ROOT, child_env, dnsdisco_cmd
    saved = saved_by_a_first_serve(etcd, tmp_path)
    ask = ("import socket, sys\n"
           "try:\n"
           "    print(sorted({a[4][0] for a in socket.getaddrinfo(sys.argv[1], None, socket.AF_INET)}))\n"
           "except socket.gaierror as exc:\n"
           "    print('gaierror', exc.errno)\n")
    with Netns("ds", resolv_conf="nameserver 127.0.0.1\noptions timeout:1 attempts:1\n") as ns:
        ns.popen(dnsdisco_cmd("serve", "--etcd", etcd.endpoint, "--listen", "127.0.0.1:53", "--prefix", PREFIX,
                              "--snapshot-file", str(saved)), env=child_env(), cwd=str(ROOT))
        ns.wait_until(["dig", "+short", "+time=1", "+tries=1", "@127.0.0.1", "kept.svc.local"], timeout=20)

        def getaddrinfo(name: str) -> str:
            return ns.run([sys.executable, "-c", ask, name], env=child_env(), timeout=20).stdout.strip()

        assert getaddrinfo("kept.svc.local") == "['10.7.0.1']"
        assert getaddrinfo("nothing.svc.local") == f"gaierror {socket.EAI_AGAIN}"
        dug = ns.run(["dig", "+time=1", "+tries=1", "@127.0.0.1", "nothing.svc.local"]).stdout
        assert "status: SERVFAIL" in dug, dug


def test_secondaries_are_told_of_the_listing_not_of_the_saved_snapshot(etcd, tmp_path):
    """NOTIFY (RFC 1996) says "transfer me now". A saved snapshot is not sent on (AXFR gets
    SERVFAIL until the listing), so serve does not announce it: the secondary's socket hears
    nothing while etcd is down, then one NOTIFY with the listing's serial, and the transfer it
    asks for is answered."""
    import dns.query
    import dns.zone

    from tests.support.transfer import FakeSecondary, write_keys
    saved = saved_by_a_first_serve(etcd, tmp_path)
    put(etcd, "told/i0", "10.7.0.4")    # a name no other test puts: only the listing has it
    etcd.stop()
    secondary = FakeSecondary(delay=0.0)
    try:
        with ServeProcess(etcd.endpoint, "--prefix", PREFIX, "--snapshot-file", str(saved),
                          "--notify", f"127.0.0.1:{secondary.port}", "--tsig-key-file", write_keys(str(tmp_path)),
                          "--transfer-allow", "127.0.0.1/32", wait=False) as srv:
            wait_for(lambda: addresses(srv.query("kept.svc.local")) == ["10.7.0.1"], 15, what="the saved records")
            saved_serial = srv.query("svc.local", "SOA").answer[0][0].serial
            time.sleep(1.5)         # a NOTIFY of the saved snapshot would have come at once, and again after 1 s
            assert secondary.received == [] and not secondary.bad, (secondary.received, secondary.bad)
            etcd.start()
            wait_for(lambda: addresses(srv.query("told.svc.local")) == ["10.7.0.4"], 20, what="the listing")
            listed_serial = srv.query("svc.local", "SOA").answer[0][0].serial
            assert listed_serial > saved_serial
            wait_for(lambda: secondary.received, 10, what="a NOTIFY once the listing is served")
            assert {serial for _, serial in secondary.received} == {listed_serial}, secondary.received
            assert not secondary.bad, secondary.bad
            zone = dns.zone.from_xfr(dns.query.xfr("127.0.0.1", "svc.local", port=srv.port, timeout=5))
            assert "told" in {str(name) for name in zone.nodes}
    finally:
        secondary.close()
        if not etcd.running:
            etcd.start()
