"""The hello demo end to end (examples/hello/demo.sh, shortened): its own etcd, dnsdisco
serve, three self-registering hello instances and the SRV gateway; one instance is killed.

The gateway's calls must reach every live instance, and none may even be attempted on the
killed one once its lease TTL (plus the DNS TTL, after which the gateway asks again) has passed.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.harness import ROOT, child_env

DEMO = ROOT / "examples" / "hello" / "demo.sh"
TTL = 2
REFRESH = max(1.0, TTL / 2)   # the gateway asks again when the answer's TTL (half the lease) runs out


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_demo_gateway_follows_the_instances():
    env = child_env({"PYTHON": sys.executable, "DEMO_TTL": str(TTL), "DEMO_BEFORE": "4",
                     "DEMO_AFTER": str(TTL + 4)})
    out = subprocess.run(["bash", str(DEMO)], env=env, capture_output=True, text=True, timeout=120)
    log = out.stdout
    assert out.returncode == 0, f"demo failed ({out.returncode}):\n{log}\n{out.stderr}"

    started = {m["id"]: (m["addr"], int(m["pid"])) for m in re.finditer(
        r"DEMO started hello (?P<id>\w+) (?P<addr>\S+) pid (?P<pid>\d+)", log)}
    assert sorted(started) == ["a", "b", "c"], log
    kill = re.search(r"^(?P<t>[\d.]+) DEMO kill -9 hello (?P<id>\w+)", log, re.M)
    assert kill, log
    killed_at, victim = float(kill["t"]), kill["id"]
    gone = re.search(rf"^(?P<t>[\d.]+) DEMO hello {victim} is gone", log, re.M)
    assert gone, log
    gone_at = float(gone["t"])       # a call answered between the kill line and the kill itself is fair
    victim_addr = started[victim][0]

    calls = [(float(m["t"]), m["kind"], m["addr"], m["rest"]) for m in re.finditer(
        r"^(?P<t>[\d.]+) (?P<kind>OK|FAIL) (?P<addr>\S+) ?(?P<rest>.*)$", log, re.M)]
    before = [c for c in calls if c[0] < killed_at]
    after = [c for c in calls if c[0] > killed_at]
    settled = killed_at + TTL + REFRESH + 1.0   # lease expiry + one DNS TTL + slack

    # before the kill every instance answered, and each answer names the instance it came from
    answered = {rest.split()[-1] for t, kind, addr, rest in before if kind == "OK"}
    assert answered == {"a", "b", "c"}, log
    for t, kind, addr, rest in calls:
        if kind == "OK":
            assert started[rest.split()[-1]][0] == addr

    # after the kill the live ones keep answering, the killed one never again
    live = {"a", "b", "c"} - {victim}
    late = [c for c in after if c[0] > settled]
    assert late, f"no calls after the TTL:\n{log}"
    assert {rest.split()[-1] for t, kind, addr, rest in late if kind == "OK"} == live, log
    assert not [c for c in after if c[0] > gone_at and c[1] == "OK" and c[2] == victim_addr], log
    assert not [c for c in late if c[2] == victim_addr], f"calls to the killed instance after its TTL:\n{log}"
    # the gateway dropped it, and saw it leave DNS once its lease expired
    assert re.search(rf"DROP {re.escape(victim_addr)} not answering", log), log
    assert re.search(rf"(GONE {re.escape(victim_addr)} left DNS|DROP {re.escape(victim_addr)} gone from DNS)", log), log

    # the demo cleaned up after itself
    for _id, (_addr, pid) in started.items():
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid), f"hello pid {pid} still running"
    assert "cleaned up" in log


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True
