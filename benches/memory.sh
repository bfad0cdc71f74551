#!/usr/bin/env bash
# Memory benchmarks for PERF.md (issue 5's targets), against the built-in
# simulator on loopback, delivering over TCP to a receiver that reads and
# counts lines (a Python thread per connection).
#
# 1. Full load: one tenant, simulator rate limits off, a backfill of
#    HISTORY_MIN minutes at RATE activities a minute (`run --once`); peak
#    RSS (VmHWM) of the agent, records/s and CPU.
# 2. Idle tenants: TENANTS tenants in one process (one config file), each
#    with its own syslog connection, all caught up and polling; RSS after
#    IDLE_SECONDS, and the peak.
#
# Usage: benches/memory.sh   (environment: HISTORY_MIN, RATE, TENANTS,
#        IDLE_SECONDS, SKIP_FULL=1, SKIP_IDLE=1)
set -euo pipefail
cd "$(dirname "$0")/.."

HISTORY_MIN="${HISTORY_MIN:-120}"
RATE="${RATE:-10000}"
TENANTS="${TENANTS:-100}"
IDLE_SECONDS="${IDLE_SECONDS:-60}"
# shellcheck source=benches/common.sh
source benches/common.sh

# A line-counting TCP receiver: prints the total when it gets SIGTERM.
receiver_port="$(free_port)"
cat >"$work/receiver.py" <<PY
import signal, socketserver, sys, threading
lines = 0
lock = threading.Lock()
class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        global lines
        while True:
            data = self.request.recv(1 << 20)
            if not data:
                return
            with lock:
                lines += data.count(b"\n")
class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
def report(*_):
    print(lines, flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, report)
Server(("127.0.0.1", $receiver_port), Handler).serve_forever()
PY
python3 "$work/receiver.py" >"$work/received" &
pids+=($!)
wait_for_port "$receiver_port"

kib() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$2/status"; }

if [[ "${SKIP_FULL:-}" != 1 ]]; then
  port="$(free_port)"
  "$bin" simulate --listen "127.0.0.1:$port" --requests-per-minute 0 \
    --history "${HISTORY_MIN}m" --activities-per-minute "$RATE" --max-index-delay 1s 2>/dev/null &
  sim=$!
  pids+=($sim)
  wait_for_port "$port"
  /usr/bin/time -f "%e %U %S %M" -o "$work/full.time" "$bin" run \
    --api-url "http://127.0.0.1:$port" --token "$TOKEN" --state-dir "$work/full-state" \
    --requests-per-minute 0 --backfill "$((HISTORY_MIN + 10))m" --data-types activities --once \
    --syslog-host 127.0.0.1 --syslog-port "$receiver_port" 2>"$work/full.log"
  kill "$sim"
  read -r elapsed user system peak_kib <"$work/full.time"
  records="$(grep -o 'done: [0-9]* records' "$work/full.log" | grep -o '[0-9]*')"
  echo "full load: $records records in ${elapsed}s ($(python3 -c "print(round($records / $elapsed))") records/s)," \
    "CPU ${user}s user + ${system}s system, peak RSS $((peak_kib / 1024)) MiB ($peak_kib KiB)"
fi

if [[ "${SKIP_IDLE:-}" != 1 ]]; then
  port="$(free_port)"
  "$bin" simulate --listen "127.0.0.1:$port" --requests-per-minute 0 \
    --history 10m --activities-per-minute 60 --alerts-per-minute 1 2>/dev/null &
  pids+=($!)
  wait_for_port "$port"
  config="$work/tenants.toml"
  {
    echo "state_dir = \"$work/idle-state\""
    echo "[defaults]"
    echo "api_url = \"http://127.0.0.1:$port\""
    echo "token = \"$TOKEN\""
    echo "requests_per_minute = 0"
    echo "backfill = \"20m\""
    echo "syslog = { host = \"127.0.0.1\", port = $receiver_port }"
    for n in $(seq "$TENANTS"); do
      printf '[[tenant]]\nname = "tenant-%03d"\n' "$n"
    done
  } >"$config"
  "$bin" --config "$config" 2>"$work/idle.log" &
  agent=$!
  pids+=($agent)
  sleep "$IDLE_SECONDS"
  caught_up="$(grep -c 'activities: backfill complete' "$work/idle.log" || true)"
  echo "idle tenants: $TENANTS tenants ($caught_up caught up) after ${IDLE_SECONDS}s:" \
    "RSS $(( $(kib VmRSS "$agent") / 1024 )) MiB, peak $(( $(kib VmHWM "$agent") / 1024 )) MiB," \
    "$(ls /proc/$agent/task | wc -l) threads"
  kill "$agent"
fi
