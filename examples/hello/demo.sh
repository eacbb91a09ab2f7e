#!/usr/bin/env bash
# The hello demo: service discovery through DNS.
#   etcd  <- three hello instances register themselves (lease + keepalive)
#   dnsdisco serve answers SRV hello.svc.local from etcd
#   the gateway finds the instances by SRV and spreads calls across them
# Then one instance is killed with SIGKILL (no chance to deregister): the gateway drops it
# at its first failed call, and DNS stops listing it once its lease TTL runs out.
#
# Knobs (environment): DEMO_TTL (lease TTL, 3), DEMO_BEFORE (seconds before the kill, 5),
# DEMO_AFTER (seconds after it, TTL+4), DEMO_INSTANCES (3), PYTHON (python3),
# DEMO_ETCD (use this etcd instead of starting one; the demo writes under /skydns/local/svc/hello).
# Everything runs on 127.0.0.1 high ports and is stopped on exit.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PY=${PYTHON:-python3}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
TTL=${DEMO_TTL:-3}
BEFORE=${DEMO_BEFORE:-5}
AFTER=${DEMO_AFTER:-$((TTL + 4))}
INSTANCES=${DEMO_INSTANCES:-3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dnsdisco-demo.XXXXXX")
PIDS=()

say() { echo "$(date +%s.%N | cut -c1-14) DEMO $*"; }

cleanup() {
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$WORK"
  say "cleaned up"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_until SECONDS WHAT COMMAND...: poll COMMAND every 0.1 s, give up after SECONDS
wait_until() {
  local limit=$1 what=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then say "gave up waiting for $what"; return 1; fi
    sleep 0.1
  done
}

# 1. etcd
if [ -n "${DEMO_ETCD:-}" ]; then
  ETCD=$DEMO_ETCD
else
  ETCD_BIN=${ETCD_BIN:-$("$PY" -c 'from dnsdisco.etcd.embedded import binary; print(binary("etcd"))' 2>/dev/null || echo etcd)}
  CLIENT=$(free_port); PEER=$(free_port)
  ETCD=http://127.0.0.1:$CLIENT
  "$ETCD_BIN" --name demo --data-dir "$WORK/etcd" --listen-client-urls "$ETCD" --advertise-client-urls "$ETCD" \
    --listen-peer-urls "http://127.0.0.1:$PEER" --initial-advertise-peer-urls "http://127.0.0.1:$PEER" \
    --initial-cluster "demo=http://127.0.0.1:$PEER" --log-level error --log-outputs "$WORK/etcd.log" \
    2>>"$WORK/etcd.log" &
  PIDS+=($!)
  wait_until 20 "etcd at $ETCD" "$PY" -c "import urllib.request as u; u.urlopen('$ETCD/health', timeout=1)" \
    || { tail -5 "$WORK/etcd.log"; exit 1; }
  say "etcd at $ETCD (pid ${PIDS[-1]})"
fi

# 2. dnsdisco serve
DNS_PORT=${DEMO_DNS_PORT:-$(free_port)}
"$PY" -m dnsdisco serve --listen "127.0.0.1:$DNS_PORT" --etcd "$ETCD" --zone svc.local \
  >"$WORK/serve.log" 2>&1 &
PIDS+=($!)
SERVE_PID=$!
soa_answered() {
  "$PY" - "$DNS_PORT" <<'PYEOF'
import socket, sys
from dnslib import DNSRecord
q = DNSRecord.question("svc.local", "SOA")
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.5)
s.sendto(q.pack(), ("127.0.0.1", int(sys.argv[1])))
sys.exit(0 if DNSRecord.parse(s.recv(4096)).header.rcode == 0 else 1)
PYEOF
}
wait_until 30 "dnsdisco serve" soa_answered || { cat "$WORK/serve.log"; exit 1; }
say "dnsdisco serve answering on 127.0.0.1:$DNS_PORT (pid $SERVE_PID)"

# 3. hello instances a, b, c, ...
declare -A HELLO_PID
IDS=(a b c d e f g h i)
for i in $(seq 0 $((INSTANCES - 1))); do
  id=${IDS[$i]}; port=$(free_port)
  "$PY" "$HERE/hello.py" --port "$port" --id "$id" --ttl "$TTL" --etcd "$ETCD" >"$WORK/hello-$id.log" 2>&1 &
  PIDS+=($!)
  HELLO_PID[$id]=$!
  say "started hello $id 127.0.0.1:$port pid $!"
done

# 4. the gateway
"$PY" "$HERE/gateway.py" --dns "127.0.0.1:$DNS_PORT" --rate 10 --duration $((BEFORE + AFTER + 5)) &
GATEWAY_PID=$!
PIDS+=($GATEWAY_PID)

sleep "$BEFORE"
victim=${IDS[1]}
say "kill -9 hello $victim pid ${HELLO_PID[$victim]} (ttl $TTL)"
{ kill -9 "${HELLO_PID[$victim]}"; wait "${HELLO_PID[$victim]}"; } 2>/dev/null || true
say "hello $victim is gone"     # a call may still have been answered between the line above and the kill
sleep "$AFTER"
kill "$GATEWAY_PID" 2>/dev/null || true
say "done"
