"""Everything that talks to etcd: the client adapter, the list+watch helper process, TLS/auth
settings, the embedded etcd, and the sync loop that swaps snapshots.
"""
