"""The benchmarks' way of starting a server on freshly loaded keys (bench/servers.py), on a real
etcd and a real `dnsdisco serve`: the throwaway start that lists the keys once, then a
measured start, as bench.run's scale table, bench.startpair and bench.repeatpair do it. Not
timed: the figures they give belong to docs/benchmarks.md."""
from __future__ import annotations

import pytest

from bench import dataset, live, servers

pytestmark = pytest.mark.timeout(120)


def test_a_throwaway_start_then_a_measured_one():
    ds = dataset.Dataset(20)
    with servers.Supervisor(keep=False) as sup:
        etcd = servers.start_etcd(sup, name="etcd-bench-start")
        client = live.etcd_client(etcd.extra["endpoint"])
        count, _secs = live.load(client, ds.etcd_items())
        client.close()
        assert count == len(list(ds.etcd_items()))
        assert servers.wait_idle(etcd.pid, window=0.2, timeout=20) < 20
        warm = servers.warm_etcd(sup, etcd.extra["endpoint"], ds.last_name(), timeout=60)
        assert warm > 0
        assert all(srv.name != "warm-etcd" for srv in sup.servers)       # stopped again
        srv = servers.start_dnsdisco(sup, etcd.extra["endpoint"], name="measured")
        assert servers.wait_dns(srv, ds.last_name(), 60) >= 0


def test_the_listing_bench_lists_every_key_with_each_checkout(capsys):
    """bench.listing: every loaded key listed once per round and checkout, figures per checkout."""
    from bench import listing
    assert listing.main(["--services", "30", "--rounds", "1", "--tree", str(servers.REPO_ROOT)]) == 0
    out = capsys.readouterr().out
    assert f"full listing of {len(list(dataset.Dataset(30).etcd_items())):,} keys" in out
    rows = [line for line in out.splitlines() if line.startswith("| /")]
    assert len(rows) == 2 and all(line.count("|") == 6 for line in rows)


def test_a_listing_child_counts_every_key(tmp_path):
    ds = dataset.Dataset(25)
    with servers.Supervisor(keep=False) as sup:
        etcd = servers.start_etcd(sup, name="etcd-bench-listing")
        client = live.etcd_client(etcd.extra["endpoint"])
        live.load(client, ds.etcd_items())
        client.close()
        import json
        import subprocess
        import sys
        out = subprocess.run([sys.executable, "-m", "bench.listing", "--child", str(servers.REPO_ROOT),
                              etcd.extra["endpoint"], str(etcd.pid)], capture_output=True, text=True, timeout=60,
                             cwd=servers.REPO_ROOT)
        assert out.returncode == 0, out.stderr
        figures = json.loads(out.stdout.strip().splitlines()[-1])
        assert figures["keys"] == len(list(ds.etcd_items())) and figures["wall"] > 0 and figures["first"] is not None


def test_the_working_set_bench_runs_its_three_files(capsys):
    """bench.workingset: a big server's mixed file and few questions against a reference, each
    run once per round, with the ratios to the reference."""
    from bench import workingset
    assert workingset.few_questions(["a A", "b A", "a A", "c A", "d A"], 2) == ["a A", "b A", "a A", "b A", "a A"]
    assert workingset.main(["--services", "40", "--rounds", "1", "--seconds", "0.5", "--queries", "200",
                            "--few", "5"]) == 0
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ") and "---" not in line}
    assert set(rows) >= {"big, mixed", "big, few", "reference"}, out
    assert "| 1.00 (1.00-1.00) |" in rows["reference"]
    assert "few: 5" in out
