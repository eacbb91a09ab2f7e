#!/usr/bin/env python3
"""Hello service: an HTTP server that answers "hello from <id>" and registers itself in DNS.

    python3 hello.py --port 8081 --id a            # etcd at 127.0.0.1:2379 (or DNSDISCO_ETCD)
    dig @127.0.0.1 -p 5300 SRV hello.svc.local     # → a.hello.svc.local port 8081

The whole discovery side is the `with dnsdisco.Registration(...)` block: the record exists
while the server runs, disappears at once on SIGTERM/Ctrl-C, and within --ttl seconds if the
process is killed.
"""
from __future__ import annotations

import argparse
import http.server
import signal
import sys
from pathlib import Path

try:
    import dnsdisco
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import dnsdisco


def make_handler(instance: str):
    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"ok\n" if self.path == "/health" else f"hello from {instance}\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # quiet: the gateway prints who answered
            pass
    return Hello


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True, help="HTTP port to listen on")
    ap.add_argument("--id", default=None, help="instance id (default hello-<port>)")
    ap.add_argument("--name", default="hello.svc.local", help="service name to register")
    ap.add_argument("--address", default="127.0.0.1", help="address to listen on and to register")
    ap.add_argument("--ttl", type=int, default=5, help="lease TTL: how long a killed instance stays in DNS")
    ap.add_argument("--etcd", default=None, help="etcd URL (default DNSDISCO_ETCD or http://127.0.0.1:2379)")
    args = ap.parse_args()
    instance = args.id or f"hello-{args.port}"

    server = http.server.ThreadingHTTPServer((args.address, args.port), make_handler(instance))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # leave the with-block: deregister
    try:
        with dnsdisco.Registration(args.name, port=args.port, address=args.address, id=instance,
                                   ttl=args.ttl, etcd=args.etcd) as reg:
            print(f"hello {instance}: serving on {args.address}:{args.port}, registered as {reg.name}",
                  flush=True)
            server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
