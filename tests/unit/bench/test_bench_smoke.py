"""The benchmark harness's parts: records, zone file, dnsmasq config, query files, dnsperf
parsing, the report, and the burst poller against sockets on loopback."""
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter

import dns.zone
from dns.rdataclass import IN
from dns.rdatatype import AAAA, SOA, SRV, A
import pytest

from bench import dataset, dnsperf, live, probe, report, run, servers

DNSPERF_OUTPUT = """\
DNS Performance Testing Tool
Version 2.10.0

[Status] Command line: dnsperf -s 127.0.0.1 -p 5353 -d q.txt -c 4 -l 3
[Timeout] Query timed out: msg id 7
[Status] Testing complete (time limit)

Statistics:

  Queries sent:         309929
  Queries completed:    309925 (100.00%)
  Queries lost:         4 (0.00%)

  Response codes:       NOERROR 278932 (90.00%), NXDOMAIN 30993 (10.00%)
  Average packet size:  request 34, response 77
  Run time (s):         3.000296
  Queries per second:   103296.312270

  Average Latency (s):  0.000620 (min 0.000013, max 0.053670)
  Latency StdDev (s):   0.000161
"""


def test_dnsperf_output_is_parsed():
    r = dnsperf.parse(DNSPERF_OUTPUT)
    assert (r.sent, r.completed, r.lost) == (309929, 309925, 4)
    assert r.qps == pytest.approx(103296.31227)
    assert r.avg_latency_ms == pytest.approx(0.62)
    assert r.max_latency_ms == pytest.approx(53.67)
    assert r.rcodes == {"NOERROR": 278932, "NXDOMAIN": 30993}
    with pytest.raises(dnsperf.DnsperfError):
        dnsperf.parse("dnsperf: invalid option -- 'z'\n")


@pytest.mark.skipif(not shutil.which("taskset"), reason="taskset (util-linux) is not installed")
def test_pinned_commands_run_on_the_cpus_given():
    show = [sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"]
    last = max(os.sched_getaffinity(0))
    out = subprocess.run(servers.pinned(show, str(last)), capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == f"[{last}]"
    assert servers.pinned(show, None) == show
    assert dnsperf.command(53, "q.txt", 1, 4, cpus="1")[:4] == ["taskset", "-c", "1", "dnsperf"]
    assert run.parse_args(["--no-pin"]).pinning == "not pinned (--no-pin)"


@pytest.mark.skipif(not shutil.which("taskset") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs taskset (util-linux) and two CPUs to move a process between")
def test_a_running_server_and_its_children_are_pinned_with_every_thread(tmp_path):
    """The scale table pins a server once it is ready: the server, each of its threads, and
    its child process (dnsdisco's etcd helper) must all end up on the CPUs given."""
    last = max(os.sched_getaffinity(0))
    script = ("import subprocess, sys, threading, time\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
              "threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
              "print(child.pid, flush=True)\n"
              "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        child = int(proc.stdout.readline())
        srv = servers.Server("probe", 0, proc, tmp_path / "log", tmp_path)
        servers.pin_running(srv, str(last))
        tasks = [t for pid in (proc.pid, child) for t in os.listdir(f"/proc/{pid}/task")]
        assert len(tasks) >= 3
        for pid in (proc.pid, child):
            for task in os.listdir(f"/proc/{pid}/task"):
                assert os.sched_getaffinity(int(task)) == {last}, (pid, task)
    finally:
        for pid in servers.children_of(proc.pid):
            os.kill(pid, 9)
        proc.kill()
        proc.wait(timeout=10)


def test_the_scale_table_holds_the_baseline_right_after_dnsdisco(tmp_path):
    (tmp_path / "dnsdisco").mkdir()
    (tmp_path / "dnsdisco" / "__init__.py").write_text("")
    assert run.scale_targets(run.parse_args(["--sections", "scale"])) == ["dnsdisco"]
    with_baseline = run.parse_args(["--sections", "scale", "--baseline", str(tmp_path)])
    assert run.scale_targets(with_baseline) == ["dnsdisco", "baseline"]
    assert with_baseline.live == ["dnsdisco"]          # the live sections keep their own list


def test_a_server_starts_once_etcd_has_settled():
    """servers.wait_idle waits out a process that keeps a CPU busy (etcd persisting a load),
    and not one that sleeps; bounded by its timeout either way."""
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 2.5: pass\n"
                             "time.sleep(30)"])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.3)                    # both past their start
        assert servers.wait_idle(idle.pid, window=0.2, timeout=5) < 0.6
        waited = servers.wait_idle(busy.pid, window=0.2, timeout=8)
        assert 0.5 < waited < 7
        assert servers.wait_idle(busy.pid, window=0.2, timeout=5) < 0.6      # settled now
        assert servers.wait_idle(2 ** 22 + 7, timeout=5) < 0.1               # no such process: nothing to wait for
    finally:
        for proc in (busy, idle):
            proc.kill()
            proc.wait()


def test_instructions_child_answers_its_pass_and_the_options_are_checked(capsys):
    """bench.instructions: the child valgrind runs answers the first questions of each pass
    through this checkout (here without valgrind), and bad counts are refused by name."""
    from bench import instructions
    repo = str(instructions.REPO)

    def child(*args):              # in a process of its own, as valgrind runs it: it sets the collector
        return subprocess.run([sys.executable, "-m", "bench.instructions", "--child", repo, *map(str, args)],
                              cwd=repo, capture_output=True, text=True, timeout=120)

    for kind in ("cold", "mixed"):
        done = child(40, 5, 10, kind)
        assert done.returncode == 0, done.stderr
    refused = child(2, 5, 500, "cold")
    assert refused.returncode != 0 and "raise --services" in refused.stderr
    with pytest.raises(SystemExit):
        instructions.main(["--fewer", "5", "--more", "3"])
    assert "--fewer < --more" in capsys.readouterr().err


def test_etcd_items_use_the_skydns_key_format():
    ds = dataset.Dataset(100)
    items = dict(ds.etcd_items())
    assert len(items) == 100 * 2 + 2          # 2 instances each, plus v6 on services 0 and 50
    assert json.loads(items["/skydns/local/svc/s000007/i1"]) == {"host": "10.0.0.16", "port": 8007}
    assert json.loads(items["/skydns/local/svc/s000050/v6"])["host"].startswith("fd00::")
    hosts = [json.loads(v)["host"] for v in items.values()]
    assert len(set(hosts)) == len(hosts)      # every instance has its own address
    assert ds.last_name() == "s000099.svc.local"


def test_every_question_asks_each_name_once_per_type():
    ds = dataset.Dataset(100)
    lines = list(dataset.every_question(ds))
    assert len(lines) == len(set(lines))
    kinds = Counter(line.split()[1] for line in lines)
    assert kinds == {"A": 100 + 200, "SRV": 100, "AAAA": 100 + 200 + 2}
    assert "s000050.svc.local SRV" in lines and "v6.s000050.svc.local AAAA" in lines
    assert "v6.s000050.svc.local A" not in lines


def test_cold_questions_ask_each_name_once_and_nothing_asked_before():
    ds = dataset.Dataset(100)
    asked = ["S000000.svc.local A", "i1.s000001.svc.local A", "s000002.svc.local SRV"]
    lines = dataset.cold_questions(ds, 10_000, asked)
    assert len(lines) == len(set(lines)) == 100 + 200 + 2 - 2
    assert "s000000.svc.local A" not in lines and "i1.s000001.svc.local A" not in lines
    assert "s000002.svc.local A" in lines and "v6.s000050.svc.local AAAA" in lines
    assert lines[:3] == ["i0.s000000.svc.local A", "i1.s000000.svc.local A", "v6.s000000.svc.local AAAA"]
    assert dataset.cold_questions(ds, 5, asked) == lines[:5]


def test_zone_file_parses_and_holds_the_same_records():
    ds = dataset.Dataset(60)
    zone = dns.zone.from_text(dataset.zone_file(ds), origin="svc.local.", relativize=False)
    svc = zone.find_node("s000003.svc.local.")
    assert {r.to_text() for r in svc.find_rdataset(IN, A)} == {"10.0.0.7", "10.0.0.8"}
    assert {r.to_text() for r in svc.find_rdataset(IN, SRV)} == {
        "10 100 8003 i0.s000003.svc.local.", "10 100 8003 i1.s000003.svc.local."}
    assert zone.find_node("i0.s000003.svc.local.").find_rdataset(IN, A)[0].to_text() == "10.0.0.7"
    assert zone.find_node("s000050.svc.local.").get_rdataset(IN, AAAA) is not None
    assert zone.find_node("s000003.svc.local.").get_rdataset(IN, AAAA) is None
    assert zone.find_node("svc.local.").get_rdataset(IN, SOA) is not None


def test_dnsmasq_conf_has_every_instance():
    ds = dataset.Dataset(10)
    conf = dataset.dnsmasq_conf(ds, 5300)
    assert "port=5300" in conf and "no-resolv" in conf and "local=/svc.local/" in conf
    assert conf.count("host-record=") == conf.count("srv-host=") == sum(1 for _ in ds.instances())
    assert "host-record=s000001.svc.local,i0.s000001.svc.local,10.0.0.3" in conf
    assert "auth-zone=svc.local" in dataset.dnsmasq_conf(ds, 5300, auth=True)


def test_mixed_query_file_has_the_intended_mix():
    ds = dataset.Dataset(1000)
    lines = dataset.mixed_queries(ds, 20000)
    assert lines == dataset.mixed_queries(ds, 20000)           # deterministic
    kinds = Counter()
    for line in lines:
        name, qtype = line.split()
        if qtype == "SRV":
            kinds["srv"] += 1
        elif qtype == "AAAA":
            assert name.startswith("i")                        # IPv4 instances: NODATA
            kinds["aaaa"] += 1
        elif name.startswith("nx"):
            kinds["nx"] += 1
        elif name != name.lower():
            kinds["case"] += 1
        else:
            kinds["a"] += 1
    share = {k: v / len(lines) for k, v in kinds.items()}
    assert share["a"] == pytest.approx(0.60, abs=0.02)
    assert share["srv"] == pytest.approx(0.15, abs=0.02)
    assert share["aaaa"] == pytest.approx(0.10, abs=0.02)
    assert share["nx"] == pytest.approx(0.10, abs=0.02)
    assert share["case"] == pytest.approx(0.05, abs=0.01)
    names = {line.split()[0].lower() for line in lines if line.endswith(" A")}
    assert len(names) > 1000                                   # many names, not a few
    assert dataset.single_queries(ds) == ["s000000.svc.local A"]


def test_prepacked_query_and_reply_checks():
    q = probe.pack_query("Hello.svc.local", "AAAA", qid=0x1234)
    assert q[:2] == b"\x12\x34" and q.endswith(b"\x00\x00\x1c\x00\x01")
    assert b"\x05Hello\x03svc\x05local\x00" in q
    reply = bytearray(q)
    reply[3] = 0x03                                            # rcode NXDOMAIN
    assert probe.is_nxdomain(bytes(reply))
    reply = bytearray(q)
    reply[7] = 1                                               # one answer
    reply += b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x1e\x00\x04\x0a\x00\x00\x07"
    assert probe.has_address("10.0.0.7")(bytes(reply))
    assert not probe.has_address("10.0.0.8")(bytes(reply))
    assert probe.lacks_address("10.0.0.8")(bytes(reply))


def test_percentiles_and_report_render():
    assert live.percentile(list(range(1, 101)), 50) == 50
    assert live.percentile(list(range(1, 101)), 99) == 99
    assert live.percentile([], 99) is None
    res = {
        "date": "d", "command": "python -m bench.run --quick", "machine": report.machine(),
        "versions": {"knotd": "k", "dnsmasq": "m", "dnsperf": "p", "etcd": "e", "python": "3"},
        "dnsdisco_version": "0", "services": 10, "records": 20, "clients": 4, "duration": 1,
        "query_lines": 10, "notes": [],
        "throughput": [
            {"server": "dnsdisco", "file": "mixed", "perf": None, "status": "dnsdisco: not available"},
            {"server": "knot", "file": "mixed", "rss_mib": 10.0,
             "perf": dnsperf.parse(DNSPERF_OUTPUT).__dict__},
        ],
        "rounds": [{"dnsdisco": {"qps": 90_000.0, "lost": 0}, "knot": {"qps": 100_000.0, "lost": 0}},
                   {"dnsdisco": {"qps": 70_000.0, "lost": 2}, "knot": {"qps": 100_000.0, "lost": 0}},
                   {"dnsdisco": {"qps": 85_000.0, "lost": 0}, "knot": {"qps": 100_000.0, "lost": 1}}],
    }
    burst = {"p99": 2.5, "n": 1000, "timeouts": 0, "rate": 1001.0}
    res["scale_duration"] = 10
    res["scale_pinning"] = "pinned: servers on CPU 0, dnsperf on CPU 1"
    res["scale"] = [
        {"target": "dnsdisco", "services": 10, "qps": 100_000.0, "qps_repeat": 110_000.0, "lost": 0,
         "lost_repeat": 0, "ready_s": 0.3, "rss_mib": 55.0, "burst": burst, "qps_reference": 105_000.0,
         "repeat_ratios": [1.10, 1.02, 1.05]},
        {"target": "dnsdisco", "services": 100_000, "qps": 50_000.0, "qps_repeat": 99_000.0, "lost": 3,
         "lost_repeat": 0, "ready_s": 2.8, "rss_mib": 257.0, "burst": burst, "qps_reference": 110_000.0,
         "rss_every_mib": 281.0, "every_sent": 704_000, "cold_qps": 30_000.0, "cold_repeat_qps": 120_000.0,
         "cold_sent": 50_000},
        {"target": "floor", "services": 10, "status": "floor: not available (no etcd)"},
    ]
    text = report.markdown(res)
    assert "dnsdisco: not available" in text and "103,296" in text
    assert "## What limits the figure" in text
    scale_row = next(line for line in text.splitlines() if line.startswith("| dnsdisco | 100,000 |"))
    assert scale_row.split(" | ")[2:13] == ["50,000", "99,000", "110,000", "0.51", "0.45", "0.90",
                                            "30,000 / 120,000 = 0.25 (50,000)", "3/0", "2.80", "257",
                                            "281 (704,000)"]
    small_row = next(line for line in text.splitlines() if line.startswith("| dnsdisco | 10 |"))
    assert small_row.split(" | ")[12] == "—"
    assert small_row.split(" | ")[8] == "–"                          # no cold pass measured
    assert small_row.split(" | ")[7] == "1.05 (1.02–1.10)"          # median of the paired runs
    assert "QPS 10 services (reference)" in text
    assert "CPUs: pinned: servers on CPU 0, dnsperf on CPU 1 (`--pin`" in text
    assert "floor: not available (no etcd)" in text
    assert "| 2 | 70,000 | 100,000 | 0.70 | 2 vs 0 |" in text
    assert "Median dnsdisco / Knot over 3 rounds: 0.85** (goal ≥ 0.8; lowest 0.70, highest 0.90)" in text


@contextlib.contextmanager
def _poller(port: int):
    """bench.poller for 127.0.0.1:port (0.3 s per name, 10 s in all), once it says ready."""
    poller = subprocess.Popen(
        [sys.executable, "-m", "bench.poller", str(port), "--timeout", "0.3", "--budget", "10"],
        cwd=servers.REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert poller.stdout.readline().strip() == b"ready"
        yield poller
    finally:
        if poller.poll() is None:
            poller.kill()
            poller.wait(5)


def _report(poller, lines: str) -> dict:
    """Hand the poller its names and the end; what it reports."""
    out, _ = poller.communicate((lines + "end\n").encode(), timeout=20)
    assert poller.returncode == 0
    return json.loads(out)


def test_burst_poller_times_each_name_from_its_put_to_its_first_fresh_answer():
    """bench.poller, in its own process, against a small UDP responder on loopback: a name
    that turns fresh 50 ms after its put is timed from the put (never less than 50 ms, asked
    again after each stale answer); one that never turns fresh is a timeout."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)
    fresh_at = {"fresh.svc.local": float("inf"), "stale.svc.local": float("inf")}
    asked = Counter()
    stop = threading.Event()

    def respond():
        while not stop.is_set():
            try:
                q, peer = sock.recvfrom(512)
            except socket.timeout:
                continue
            labels, i = [], 12
            while q[i]:
                labels.append(q[i + 1:i + 1 + q[i]].decode())
                i += 1 + q[i]
            name = ".".join(labels)
            asked[name] += 1
            if time.monotonic() >= fresh_at[name]:
                sock.sendto(q[:2] + b"\x84\x00\x00\x01\x00\x01\x00\x00\x00\x00" + q[12:]
                            + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x1e\x00\x04\x0a\x00\x00\x07", peer)
            else:
                sock.sendto(q[:2] + b"\x84\x03" + q[4:], peer)       # NXDOMAIN, no answer

    responder = threading.Thread(target=respond, daemon=True)
    responder.start()
    try:
        with _poller(sock.getsockname()[1]) as poller:
            t_put = time.monotonic()
            fresh_at["fresh.svc.local"] = t_put + 0.05
            result = _report(poller, f"0 fresh.svc.local 10.0.0.7 {t_put!r}\n1 stale.svc.local 10.0.0.8 {t_put!r}\n")
    finally:
        stop.set()
        responder.join(5)
        sock.close()
    assert list(result["ms"]) == ["0"] and result["ms"]["0"] >= 50
    assert result["timeouts"] == [1]
    assert asked["fresh.svc.local"] > 1 and asked["stale.svc.local"] > 1


def test_burst_poller_counts_a_server_that_refuses_as_timeouts():
    """Nothing listens on the port: the refused sends and ICMP errors are asked again until
    the name times out, and the poller still reports."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]                       # closed again: nothing listens there
    with _poller(port) as poller:
        assert _report(poller, f"7 gone.svc.local 10.0.0.9 {time.monotonic()!r}\n") == {"ms": {}, "timeouts": [7]}


def test_firstpass_measures_this_checkout_in_a_child_and_says_where_each_column_came_from(capsys):
    """bench.firstpass at a tiny size: every row is a positive figure, the mixed file's
    repeats are cheaper than its first answers, and the column names this checkout's commit."""
    from bench import firstpass
    assert firstpass.main(["--services", "300", "--queries", "2000", "--cold", "200", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 2 and cells[1].replace(".", "").isdigit():
            rows[cells[0]] = float(cells[1])
    assert "this checkout (" in out
    assert {"mixed file, first pass", "mixed file, repeat pass", "rules.answer per distinct question",
            "encoder.encode per distinct question", "octets per cached question (not µs)"} <= set(rows)
    assert all(value > 0 for value in rows.values())
    assert rows["mixed file, repeat pass"] < rows["mixed file, first pass"]


def test_pauses_measures_both_policies_of_collector_and_eviction(capsys):
    """bench.pauses at a tiny size: both collector rows and both eviction rows, and the
    eviction rows drop what cache.eviction_batch says (an eighth of a small cache both ways)."""
    from bench import pauses
    assert pauses.main(["--services", "300", "--queries", "2000", "--rounds", "1", "--cache-size", "400"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| collector")
            and not line.startswith("| eviction")]
    assert len(rows) == 4, out
    assert rows[0].startswith("| serve's: a full pass per") and rows[1].startswith("| CPython's defaults")
    assert rows[2].split("|")[2].strip() == rows[3].split("|")[2].strip() == "50"
