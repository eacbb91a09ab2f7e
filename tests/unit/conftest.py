"""The fast tier: pure tests of each package, with no etcd, no gRPC and no `dnsdisco serve`.

The etcd fixtures are not defined here (tests/etcd and tests/e2e load them), so a test of
this tier that asks for `etcd` or `kv` fails at setup instead of starting an etcd. When a
session ran tests of this tier only, grpc must not have been imported by its end (only
dnsdisco.etcd.client imports it): the session fails if it was. tests/unit/test_tier.py checks
the same at import time, in a fresh interpreter.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent


def grpc_modules() -> list[str]:
    return sorted(name for name in sys.modules if name == "grpc" or name.startswith("grpc."))


def pytest_sessionfinish(session, exitstatus):
    items = getattr(session, "items", None) or []
    if not items or not all(UNIT in Path(str(item.path)).resolve().parents for item in items):
        return                      # other tiers ran too: they may import grpc
    leaked = grpc_modules()
    if leaked:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = (f"tests/unit imported grpc ({', '.join(leaked[:3])}...): the fast tier must not need "
                   "gRPC; the test that imports dnsdisco.etcd.client belongs in tests/etcd or tests/e2e")
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(message, red=True)
        else:
            print(message, file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
