"""The DNS itself, pure: names, records, the snapshot, the rules, the wire form, the reply cache
and the responder. Nothing here does I/O or imports another dnsdisco package.
"""
