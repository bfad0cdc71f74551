#!/usr/bin/env bash
# Pulling benchmarks for PERF.md, against the built-in simulator on loopback.
#
# 1. Backfill: how long the agent takes to backfill HISTORY_MIN minutes of
#    history at RATE activities a minute under the API's limit of 30
#    requests a minute, compared with the ceiling that limit allows
#    (requests needed at 5,000 records each, 30 per minute). Time is
#    compressed SPEEDUP times: the simulator's limit counts over 60/SPEEDUP
#    seconds and the agent's budget is 30*SPEEDUP a minute; the ratio to the
#    ceiling is what is compared.
# 2. Tail: CPU and peak RSS of an agent with default settings tailing a
#    tenant that produces 50 activities a second (indexed at once, so the
#    delivered rate can be compared with the produced one), for TAIL_SECONDS.
#
# Usage: benches/pull.sh   (environment: HISTORY_MIN, RATE, SPEEDUP,
#        TAIL_SECONDS, SKIP_BACKFILL=1, SKIP_TAIL=1)
set -euo pipefail
cd "$(dirname "$0")/.."

HISTORY_MIN="${HISTORY_MIN:-240}"
RATE="${RATE:-10000}"
SPEEDUP="${SPEEDUP:-10}"
TAIL_SECONDS="${TAIL_SECONDS:-180}"
# shellcheck source=benches/common.sh
source benches/common.sh

# --- 1. backfill -----------------------------------------------------------
if [ "${SKIP_BACKFILL:-0}" != 1 ]; then
port="$(free_port)"
window=$((60 / SPEEDUP))
"$bin" simulate --listen "127.0.0.1:$port" --history "${HISTORY_MIN}m" \
  --activities-per-minute "$RATE" --alerts-per-minute 1 --max-index-delay 0s \
  --requests-per-minute 30 --rate-window "${window}s" 2>/dev/null &
pids+=($!)
wait_for_port "$port"
start="$(date +%s.%N)"
"$bin" run --api-url "http://127.0.0.1:$port" --token "$TOKEN" \
  --state-dir "$work/backfill" --data-types activities \
  --backfill "$((HISTORY_MIN + 10))m" --requests-per-minute "$((30 * SPEEDUP))" \
  --once --header none 2>"$work/backfill.log" | wc -l >"$work/backfill.count"
end="$(date +%s.%N)"
records="$(cat "$work/backfill.count")"
python3 - "$start" "$end" "$records" "$SPEEDUP" "$HISTORY_MIN" "$RATE" <<'PY'
import math, sys
start, end, records, speedup, history, rate = map(float, sys.argv[1:])
elapsed = end - start
requests = math.ceil(records / 5000)
ceiling = requests / 30 * 60 / speedup   # seconds at the compressed limit
print(f"backfill: {int(records)} records ({int(history)} min at {int(rate)}/min), "
      f"{requests} scan requests needed")
print(f"backfill: {elapsed:.1f} s measured, ceiling {ceiling:.1f} s "
      f"(time compressed {int(speedup)}x): {elapsed / ceiling * 100:.1f}% of the ceiling time, "
      f"{(elapsed / ceiling - 1) * 100:+.1f}%")
print(f"backfill: real-time equivalent {elapsed * speedup / 60:.1f} min "
      f"vs ceiling {ceiling * speedup / 60:.1f} min")
PY
kill "${pids[0]}" 2>/dev/null || true
fi

# --- 2. tail ---------------------------------------------------------------
[ "${SKIP_TAIL:-0}" = 1 ] && exit 0
port="$(free_port)"
"$bin" simulate --listen "127.0.0.1:$port" --history 2m --activities-per-minute 3000 --max-index-delay 0s \
  --alerts-per-minute 1 --requests-per-minute 30 2>/dev/null &
pids+=($!)
wait_for_port "$port"
"$bin" run --api-url "http://127.0.0.1:$port" --token "$TOKEN" \
  --state-dir "$work/tail" --backfill 1m --header none \
  >"$work/tail.cef" 2>"$work/tail.log" &
agent=$!
pids+=("$agent")
sleep 35   # backfill of the last minute and the first poll
ticks() { awk '{print $14 + $15}' "/proc/$agent/stat"; }
lines_before="$(wc -l <"$work/tail.cef")"
ticks_before="$(ticks)"
sleep "$TAIL_SECONDS"
ticks_after="$(ticks)"
lines_after="$(wc -l <"$work/tail.cef")"
hwm_kb="$(awk '/VmHWM/ {print $2}' "/proc/$agent/status")"
# How far behind the agent is: its activities checkpoint marks the end of the
# last ingestion window it delivered. Keeping up means less than one poll
# interval (30 s) plus a request or two.
lag_s="$(python3 -c 'import json, sys, time; p = json.load(open(sys.argv[1]))["position"]; print(f"{time.time() - p / 1000:.1f}")' "$work"/tail/*activities.checkpoint.json)"
rss_kb="$(awk '/VmRSS/ {print $2}' "/proc/$agent/status")"
python3 - "$ticks_before" "$ticks_after" "$TAIL_SECONDS" "$hwm_kb" "$rss_kb" "$lines_before" "$lines_after" "$(getconf CLK_TCK)" <<'PY'
import sys
t0, t1, seconds, hwm, rss, l0, l1, hz = map(float, sys.argv[1:])
cpu = (t1 - t0) / hz
print(f"tail: {int(l1 - l0)} records in {int(seconds)} s ({(l1 - l0) / seconds:.1f}/s delivered, 50/s produced; "
      f"whole 30 s polls fall into the interval, so this count is quantized)")
print(f"tail: CPU {cpu:.2f} s = {cpu / seconds * 100:.2f}% of one core; "
      f"peak RSS {hwm / 1024:.1f} MiB, RSS now {rss / 1024:.1f} MiB")
PY
echo "tail: checkpoint lag ${lag_s} s behind now (poll interval 30 s)"
