"""The etcd fixtures (tests/support/etcd_fixtures.py) for the tests of this tier."""
from tests.support.etcd_fixtures import cluster, etcd, kv  # noqa: F401  (pytest finds fixtures by name)
