#!/usr/bin/env bash
# Alternating end-to-end runs of two or more builds, for comparing changes
# on this shared machine: its speed moves by a fifth from hour to hour, so
# builds are run in turns (round 1: A, B; round 2: A, B; ...) and compared
# round by round. The agent case of benches/e2e.rs only (no peer, no chart).
#
# Usage: benches/compare.sh ROUNDS LABEL=AGENT[,BENCH] ...
#   AGENT  a siem-agent binary (copy target/release/siem-agent aside per build)
#   BENCH  the e2e bench binary to run it with (default: the current one;
#          give a copy of another build's to compare simulator changes)
# Prints, per run: records/s, the agent's CPU s per M records, the bench's
# (simulator and blackhole) CPU s per M records, the machine's use and the
# agent's peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=$1
shift
bash scripts/install-syslog-ng target/syslog-ng >/dev/null
current_bench=$(cargo bench --no-run --bench e2e --message-format=json 2>/dev/null |
  grep -o '"executable":"[^"]*e2e-[^"]*"' | tail -n 1 | cut -d'"' -f4)
for round in $(seq 1 "$rounds"); do
  for spec in "$@"; do
    label=${spec%%=*}
    bins=${spec#*=}
    agent=${bins%%,*}
    bench=$current_bench
    [ "$bins" != "$agent" ] && bench=${bins#*,}
    out=$(SIEM_AGENT_BIN=$agent SYSLOG_NG=$PWD/target/syslog-ng/run-syslog-ng \
      E2E_SKIP_PEER=1 E2E_SVG=target/compare.svg E2E_LABEL=compare \
      "$bench" --bench 2>&1 | grep -E '^siem-agent|simulator serving' | tr '\n' ' ')
    rate=$(grep -oE '[0-9]+ records/s' <<<"$out" | head -n 1)
    agent_cpu=$(grep -oE '[0-9.]+ CPU s per M records, peak' <<<"$out" | cut -d' ' -f1)
    bench_cpu=$(grep -oE 'used [0-9.]+ CPU' <<<"$out" | cut -d' ' -f2)
    use=$(grep -oE '[0-9]+% of the machine' <<<"$out" | cut -d% -f1)
    rss=$(grep -oE 'peak RSS [0-9.]+ MiB' <<<"$out" | head -n 1 | cut -d' ' -f3)
    echo "round $round $label: $rate agent_cpu=$agent_cpu harness=$bench_cpu util=$use% rss=${rss}MiB"
  done
done
