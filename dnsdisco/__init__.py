"""dnsdisco: DNS for services registered in etcd (CoreDNS/SkyDNS record format)."""
__version__ = "0.1.0"
