"""The fast tier stays fast and self-contained: importing every test module of tests/unit (and
its conftest files) in a fresh interpreter imports neither grpc nor the etcd fixtures."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.harness import ROOT, child_env

UNIT = Path(__file__).resolve().parent

# what the unit tier must never load: gRPC (only dnsdisco.etcd.client imports it), the etcd
# client itself, and the fixtures that start etcd processes
FORBIDDEN = ("grpc", "dnsdisco.etcd.client", "tests.support.etcd_fixtures")

SCRIPT = r"""
import importlib, json, sys
for name in sys.argv[2:]:
    importlib.import_module(name)
forbidden = tuple(json.loads(sys.argv[1]))
print(json.dumps(sorted(m for m in sys.modules if m in forbidden or m.startswith(tuple(f + "." for f in forbidden)))))
"""


def unit_modules() -> list[str]:
    names = []
    for path in sorted(UNIT.rglob("*.py")):
        if path.name == "__init__.py":
            continue
        names.append(".".join(path.relative_to(ROOT).with_suffix("").parts))
    return names


def test_the_unit_tier_imports_neither_grpc_nor_the_etcd_fixtures():
    modules = unit_modules()
    assert "tests.unit.dns.test_rules" in modules and "tests.unit.conftest" in modules, modules
    out = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(FORBIDDEN), "tests.conftest", *modules],
                         cwd=str(ROOT), env=child_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
