"""Putting services into etcd: the registrar (lease, keepalive, re-grant), health checks, the
`register` command and the Python API.
"""
