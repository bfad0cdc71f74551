#!/usr/bin/env bash
# Graph benchmarks for PERF.md (issue 16's targets), against the built-in
# simulator on loopback, delivering over TCP to a line-counting receiver.
#
# 1. Backfill: BACKFILL_DAYS days of CloudAppEvents at EVENTS_PER_MINUTE,
#    every row visible at once, the simulator and the agent both held to
#    45 requests a minute, 10,000 rows a query (`run --once`). The ceiling
#    that rate and page size set is 45 * 10,000 rows a minute; the run's
#    rows/s against it, and its peak RSS.
# 2. Tailing: all four data types on one tenant with default settings
#    (30 s polls, 10 min settle, 1 h late window), started with a one-hour
#    backfill; after WARMUP_SECONDS, CPU time and RSS over TAIL_SECONDS.
#
# Usage: benches/graph.sh   (environment: BACKFILL_DAYS, EVENTS_PER_MINUTE,
#        WARMUP_SECONDS, TAIL_SECONDS, SKIP_BACKFILL=1, SKIP_TAIL=1)
set -euo pipefail
cd "$(dirname "$0")/.."

BACKFILL_DAYS="${BACKFILL_DAYS:-2}"
EVENTS_PER_MINUTE="${EVENTS_PER_MINUTE:-300}"
WARMUP_SECONDS="${WARMUP_SECONDS:-90}"
TAIL_SECONDS="${TAIL_SECONDS:-300}"
# shellcheck source=benches/common.sh
source benches/common.sh

CLIENT_ID=00000000-0000-0000-0000-00000000c1d0
SECRET=simulator-secret
RATE=45
ROWS=10000

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

graph_args() { # simulator port
  echo --graph-url "http://127.0.0.1:$1" --login-url "http://127.0.0.1:$1" \
    --tenant-id bench --client-id "$CLIENT_ID" --client-secret "$SECRET" \
    --syslog-host 127.0.0.1 --syslog-port "$receiver_port"
}

if [[ "${SKIP_BACKFILL:-}" != 1 ]]; then
  port="$(free_port)"
  "$bin" simulate --listen "127.0.0.1:$port" --requests-per-minute "$RATE" \
    --history "${BACKFILL_DAYS}d" --activities-per-minute "$EVENTS_PER_MINUTE" \
    --max-index-delay 0s 2>/dev/null &
  sim=$!
  pids+=($sim)
  wait_for_port "$port"
  # shellcheck disable=SC2046
  /usr/bin/time -f "%e %U %S %M" -o "$work/backfill.time" "$bin" run $(graph_args "$port") \
    --state-dir "$work/backfill-state" --data-types cloud-app-events \
    --requests-per-minute "$RATE" --backfill "${BACKFILL_DAYS}d" --graph-settle 0s \
    --cloud-app-events-page-size "$ROWS" --once 2>"$work/backfill.log"
  kill "$sim"
  read -r elapsed user system peak_kib <"$work/backfill.time"
  summary="$(grep -o 'done: [0-9]* records in [0-9]* pages' "$work/backfill.log")"
  records="$(echo "$summary" | awk '{print $2}')"
  pages="$(echo "$summary" | awk '{print $5}')"
  python3 - "$records" "$pages" "$elapsed" <<PY
import sys
records, pages, elapsed = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
ceiling = $RATE * $ROWS / 60.0
print(f"backfill: {records} rows in {pages} answers, {elapsed:.1f} s: {records / elapsed:.0f} rows/s "
      f"= {100 * records / elapsed / ceiling:.1f}% of the {ceiling:.0f} rows/s ceiling "
      f"({records / pages:.0f} rows an answer)")
PY
  echo "backfill: CPU ${user}s user + ${system}s system, peak RSS $((peak_kib / 1024)) MiB ($peak_kib KiB)"
fi

if [[ "${SKIP_TAIL:-}" != 1 ]]; then
  port="$(free_port)"
  "$bin" simulate --listen "127.0.0.1:$port" --requests-per-minute 0 --history 2h \
    2>/dev/null &
  pids+=($!)
  wait_for_port "$port"
  # shellcheck disable=SC2046
  "$bin" run $(graph_args "$port") --api-url "http://127.0.0.1:$port" --token "$TOKEN" \
    --state-dir "$work/tail-state" --backfill 1h \
    --data-types alerts,activities,graph-alerts,cloud-app-events 2>"$work/tail.log" &
  agent=$!
  pids+=($agent)
  sleep "$WARMUP_SECONDS"
  ticks() { awk '{print $14 + $15}' "/proc/$agent/stat"; }
  before="$(ticks)"
  sleep "$TAIL_SECONDS"
  after="$(ticks)"
  rss="$(awk '$1 == "VmRSS:" {print $2}' "/proc/$agent/status")"
  hwm="$(awk '$1 == "VmHWM:" {print $2}' "/proc/$agent/status")"
  hz="$(getconf CLK_TCK)"
  python3 -c "print(f'tailing, four data types: {100 * ($after - $before) / $hz / $TAIL_SECONDS:.2f}% of a core over ${TAIL_SECONDS} s, RSS $((rss / 1024)) MiB (peak since start $((hwm / 1024)) MiB)')"
fi
