"""dnsdisco: DNS for services registered in etcd (CoreDNS/SkyDNS record format)."""
__version__ = "0.1.0"

# The Python API, imported on first use so `import dnsdisco` stays cheap (no gRPC, no gevent).
_API = {"Registration", "resolve_srv", "lookup_srv", "ResolveError"}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        from dnsdisco import api
        return getattr(api, name)
    raise AttributeError(f"module 'dnsdisco' has no attribute {name!r}")
