"""Run dnsperf against one server and parse its summary."""
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field

from .servers import pinned


@dataclass
class PerfResult:
    sent: int = 0
    completed: int = 0
    lost: int = 0
    qps: float = 0.0
    avg_latency_ms: float = 0.0
    min_latency_ms: float = 0.0
    max_latency_ms: float = 0.0
    stddev_latency_ms: float = 0.0
    run_time_s: float = 0.0
    rcodes: dict[str, int] = field(default_factory=dict)

    @property
    def lost_pct(self) -> float:
        return 100.0 * self.lost / self.sent if self.sent else 0.0


class DnsperfError(RuntimeError):
    pass


_INT = {
    "sent": r"Queries sent:\s+(\d+)",
    "completed": r"Queries completed:\s+(\d+)",
    "lost": r"Queries lost:\s+(\d+)",
}


def parse(output: str) -> PerfResult:
    """Parse dnsperf's "Statistics:" block. Raises DnsperfError if it is missing."""
    if "Statistics:" not in output:
        raise DnsperfError("dnsperf printed no statistics:\n" + output[-2000:])
    r = PerfResult()
    for attr, pattern in _INT.items():
        m = re.search(pattern, output)
        if m:
            setattr(r, attr, int(m.group(1)))
    m = re.search(r"Queries per second:\s+([\d.]+)", output)
    if m:
        r.qps = float(m.group(1))
    m = re.search(r"Run time \(s\):\s+([\d.]+)", output)
    if m:
        r.run_time_s = float(m.group(1))
    m = re.search(r"Average Latency \(s\):\s+([\d.]+) \(min ([\d.]+), max ([\d.]+)\)", output)
    if m:
        r.avg_latency_ms, r.min_latency_ms, r.max_latency_ms = (float(x) * 1000 for x in m.groups())
    m = re.search(r"Latency StdDev \(s\):\s+([\d.]+)", output)
    if m:
        r.stddev_latency_ms = float(m.group(1)) * 1000
    m = re.search(r"Response codes:\s+(.*)", output)
    if m:
        for code, n in re.findall(r"([A-Z]+) (\d+) \(", m.group(1)):
            r.rcodes[code] = int(n)
    return r


def command(port: int, query_file: str, seconds: float, clients: int, *,
            max_qps: int | None = None, server: str = "127.0.0.1", threads: int | None = None,
            outstanding: int | None = None, passes: int | None = None, cpus: str | None = None) -> list[str]:
    """The dnsperf command line; `cpus` (a taskset list) keeps it on those CPUs."""
    cmd = pinned(["dnsperf", "-s", server, "-p", str(port), "-d", query_file,
                  "-c", str(clients), "-l", str(seconds)], cpus)
    if passes:
        cmd += ["-n", str(passes)]            # stop after this many runs through the file
    if threads:
        cmd += ["-T", str(threads)]
    if outstanding:
        cmd += ["-q", str(outstanding)]
    if max_qps:
        cmd += ["-Q", str(max_qps)]
    return cmd


def run(port: int, query_file: str, seconds: float, clients: int, **kw) -> PerfResult:
    """Run dnsperf to completion (bounded by -l plus its 5 s query timeout) and parse it."""
    cmd = command(port, query_file, seconds, clients, **kw)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)
    return parse(proc.stdout + proc.stderr)


def start(port: int, query_file: str, seconds: float, clients: int, **kw) -> subprocess.Popen:
    """Start dnsperf in the background (a bounded load for the freshness measurements)."""
    cmd = command(port, query_file, seconds, clients, **kw)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop(load: subprocess.Popen) -> None:
    """End a background load started with `start` (bounded: SIGTERM, then SIGKILL)."""
    load.terminate()
    try:
        load.wait(10)
    except subprocess.TimeoutExpired:
        load.kill()
        load.wait(5)


def version() -> str:
    out = subprocess.run(["dnsperf", "-h"], capture_output=True, text=True).stdout
    m = re.search(r"Version ([\w.]+)", out + "")
    if not m:
        out = subprocess.run(["dnsperf", "-h"], capture_output=True, text=True).stderr
        m = re.search(r"Version ([\w.]+)", out)
    return f"dnsperf {m.group(1)}" if m else "dnsperf (version unknown)"
