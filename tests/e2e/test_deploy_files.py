"""The container image builds and runs, where `docker` can reach a working engine (it skips
otherwise). The deployment files themselves are checked without an engine by
tests/unit/top/test_deploy_files.py."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.support.harness import ROOT


def test_image_builds_where_an_engine_is_available():
    docker = shutil.which("docker")
    if not docker:
        pytest.skip("no docker client on this machine; the files are checked by the other tests")
    info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=30)
    if info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or ["docker info failed"])[-1]
        pytest.skip(f"docker has no working engine here ({reason}); the files are checked by the other tests")
    tag = "dnsdisco:test-build"
    build = subprocess.run([docker, "build", "-t", tag, str(ROOT)], capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stderr[-3000:]
    run = subprocess.run([docker, "run", "--rm", tag, "--help"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "--listen" in run.stdout, run.stderr[-2000:]
