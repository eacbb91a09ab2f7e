"""Benchmark harness for dnsdisco (issue 6): `python -m bench.run`. Not part of the dnsdisco package."""
