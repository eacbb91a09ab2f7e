"""The network side: UDP/TCP listeners, the forwarder, ACL, response rate limiting, and zone
transfers (AXFR/IXFR, NOTIFY, TSIG).
"""
