"""The embedded etcd is looked after (issue 22): never orphaned when serve dies by any signal,
started again (with the same data) when it dies under serve, and a leftover of a dead serve is
restarted rather than adopted. These tests need 127.0.0.1:2379 and :2380, where the embedded
etcd always runs; they wait a while for other runs on this machine to free them.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from dnsdisco.etcd import embedded
from dnsdisco.etcd.client import KV
from tests.support.etcdproc import port_is_free
from tests.support.harness import ServeProcess, addresses, free_port, query, wait_for


@pytest.fixture
def ports_2379():
    deadline = time.monotonic() + 60
    while not (port_is_free(2379) and port_is_free(2380)):
        if time.monotonic() > deadline:
            pytest.skip("127.0.0.1:2379 or :2380 stayed in use; the embedded etcd needs both")
        time.sleep(0.5)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _etcd_pid(serve: ServeProcess) -> int:
    found = re.findall(r"started embedded etcd .*?pid (\d+)", serve.log())
    assert found, serve.log()
    return int(found[-1])


def _serve(tmp_path, *extra) -> ServeProcess:
    return ServeProcess(None, *extra, env={"XDG_STATE_HOME": str(tmp_path / "state")}).start()


def _pid_file(tmp_path) -> dict:
    return json.loads((tmp_path / "state" / "dnsdisco" / "etcd.pid").read_text())


def test_sigkill_of_serve_takes_its_etcd_along(ports_2379, tmp_path):
    serve = _serve(tmp_path)
    pid = _etcd_pid(serve)
    try:
        assert _alive(pid)
        info = _pid_file(tmp_path)
        assert info["etcd_pid"] == pid and info["serve_pid"] == serve.proc.pid
        serve.proc.kill()
        serve.proc.wait(5)
        wait_for(lambda: not _alive(pid), 5, 0.05, f"the embedded etcd {pid} to go with serve")
        wait_for(lambda: port_is_free(2379), 5, 0.05, "2379 to be free")
    finally:
        serve.stop()
        if _alive(pid):          # the orphan this test is about: do not leave it to others
            os.kill(pid, signal.SIGKILL)


def _metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_sigkill_of_the_embedded_etcd_under_load(ports_2379, tmp_path):
    http = free_port()
    serve = _serve(tmp_path, "--http", f"127.0.0.1:{http}")
    kv = KV([embedded.DEFAULT_ENDPOINT], timeout=3.0)
    failures: list[str] = []
    answered = [0]
    done = threading.Event()

    def load():
        while not done.is_set():
            try:
                reply = query(serve.port, "before.svc.local", timeout=1.0)
                if addresses(reply) != ["10.0.0.1"]:
                    failures.append(f"rcode {reply.rcode()} answer {addresses(reply)}")
                answered[0] += 1
            except Exception as exc:  # a timeout is a failed query
                failures.append(repr(exc))

    try:
        kv.put("/skydns/local/svc/before/a", b'{"host":"10.0.0.1"}')
        wait_for(lambda: addresses(serve.query("before.svc.local")) == ["10.0.0.1"], 10, 0.05, "before")
        old = _etcd_pid(serve)
        workers = [threading.Thread(target=load, daemon=True) for _ in range(2)]
        for w in workers:
            w.start()
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: "embedded etcd running again" in serve.log(), 30, 0.1, "the restart")
        new = _pid_file(tmp_path)["etcd_pid"]
        assert new != old and _alive(new)
        assert "killed by SIGKILL" in serve.log()
        kv.close()
        kv = KV([embedded.DEFAULT_ENDPOINT], timeout=3.0)
        kv.put("/skydns/local/svc/after/a", b'{"host":"10.0.0.2"}')
        wait_for(lambda: addresses(serve.query("after.svc.local")) == ["10.0.0.2"], 15, 0.05,
                 "a put made after the restart to be served")
        time.sleep(0.5)
        done.set()
        for w in workers:
            w.join(5)
        assert answered[0] > 50 and not failures, (answered[0], failures[:5])
        assert _metric(http, "dnsdisco_embedded_etcd_restarts_total") == 1
        assert "Traceback" not in serve.log()
    finally:
        done.set()
        kv.close()
        assert serve.stop() == 0
    assert not _alive(new)


def test_a_leftover_etcd_of_a_dead_serve_is_restarted_not_adopted(ports_2379, tmp_path):
    # a serve that died long ago (its pid now gone) left its etcd running on its data
    serve = _serve(tmp_path)
    kv = KV([embedded.DEFAULT_ENDPOINT], timeout=3.0)
    try:
        kv.put("/skydns/local/svc/kept/a", b'{"host":"10.0.0.3"}')
    finally:
        kv.close()
    assert serve.stop() == 0
    data_dir = str(tmp_path / "state" / "dnsdisco" / "etcd")
    cmd = [embedded.binary("etcd"), "--name", "dnsdisco", "--data-dir", data_dir,
           "--listen-client-urls", embedded.DEFAULT_ENDPOINT, "--advertise-client-urls", embedded.DEFAULT_ENDPOINT,
           "--listen-peer-urls", embedded.PEER_URL, "--initial-advertise-peer-urls", embedded.PEER_URL,
           "--initial-cluster", f"dnsdisco={embedded.PEER_URL}", "--log-outputs", str(tmp_path / "left.log")]
    leftover = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    Path(embedded.pid_path(data_dir)).write_text(json.dumps(
        {"etcd_pid": leftover.pid, "serve_pid": dead.pid, "data_dir": data_dir}))
    try:
        wait_for(lambda: embedded.etcd_health() is True, 20, 0.1, "the leftover etcd")
        serve = _serve(tmp_path)
        try:
            assert leftover.wait(10) is not None          # stopped, not adopted
            assert "left running" in serve.log() and str(leftover.pid) in serve.log()
            new = _etcd_pid(serve)
            assert new != leftover.pid and _pid_file(tmp_path)["serve_pid"] == serve.proc.pid
            assert addresses(serve.query("kept.svc.local")) == ["10.0.0.3"]       # same data
        finally:
            assert serve.stop() == 0
        assert not _alive(new)
    finally:
        if leftover.poll() is None:
            leftover.kill()
            leftover.wait(5)


def test_an_etcd_that_a_running_serve_owns_is_used_as_it_is(ports_2379, tmp_path):
    first = _serve(tmp_path)
    try:
        pid = _etcd_pid(first)
        second = _serve(tmp_path)       # same state dir: the pid file names a live serve
        try:
            assert "already answering" in second.log() and "left running" not in second.log()
            assert _alive(pid)
        finally:
            assert second.stop() == 0
        assert _alive(pid)             # the second never owned it
    finally:
        assert first.stop() == 0
    assert not _alive(pid)
