"""What every tier shares: a key prefix no other test uses.

The etcd fixtures (`etcd`, `kv`, `cluster`) are in tests/support/etcd_fixtures.py, made
available by tests/etcd/conftest.py and tests/e2e/conftest.py only: `pytest tests/unit`
then needs no etcd binary and never imports grpc.
"""
from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def prefix(request) -> str:
    """A key prefix no other test uses, ending in '/'."""
    return f"/t/{request.node.name[:40]}-{uuid.uuid4().hex[:6]}/"
