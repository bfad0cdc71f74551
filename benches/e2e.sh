#!/usr/bin/env bash
# The end-to-end benchmark (issue 6): the agent pulling from the simulator
# and delivering CEF over TCP, syslog-ng doing the same job on the same
# records, and a plain writev loop writing the agent's lines, all into
# line-counting blackholes on loopback, in one run. Prints records/s, MB/s
# in and out, CPU seconds per million records and peak RSS for each, the
# ratios, and draws benches/e2e.svg. See benches/e2e.rs.
#
# Usage: benches/e2e.sh   (environment: E2E_MINUTES, E2E_PER_MINUTE,
#        E2E_SVG, E2E_SKIP_PEER=1, E2E_AGENT_TIMEOUT_S; E2E_PERF=1 runs the
#        agent under `perf record` (at E2E_PERF_HZ samples/s, default 999)
#        and prints where its time went; its figures are then lower than
#        without perf; E2E_CALLGRIND=1 runs it under valgrind's callgrind
#        instead and prints its instruction counts, which do not depend on
#        the machine's load: use a short history, E2E_MINUTES=20)
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=benches/peer-setup.sh
source benches/peer-setup.sh
machine_line ':!benches/e2e.svg'
agent="$PWD/target/release/siem-agent"
if [ "${E2E_PERF:-0}" = 1 ]; then
  cat >target/e2e-perf-agent <<PERF
#!/usr/bin/env bash
exec perf record -F ${E2E_PERF_HZ:-999} -g -o "$PWD/target/e2e-perf.data" -- "$agent" "\$@"
PERF
  chmod +x target/e2e-perf-agent
  agent="$PWD/target/e2e-perf-agent"
elif [ "${E2E_CALLGRIND:-0}" = 1 ]; then
  cat >target/e2e-callgrind-agent <<CALLGRIND
#!/usr/bin/env bash
exec valgrind --tool=callgrind --callgrind-out-file="$PWD/target/e2e-callgrind.out" "$agent" "\$@"
CALLGRIND
  chmod +x target/e2e-callgrind-agent
  agent="$PWD/target/e2e-callgrind-agent"
fi
SIEM_AGENT_BIN="$agent" \
SYSLOG_NG="$PWD/target/syslog-ng/run-syslog-ng" \
E2E_LABEL="commit $(git rev-parse --short HEAD), $(date -u +%Y-%m-%d)" \
  cargo bench --quiet --bench e2e
if [ "${E2E_PERF:-0}" = 1 ]; then
  echo "--- agent threads"
  perf report -i target/e2e-perf.data --no-children --sort comm -g none 2>/dev/null | grep '%' | head -n 6
  echo "--- top functions"
  perf report -i target/e2e-perf.data --no-children --sort comm,symbol -g none 2>/dev/null | grep '%' | head -n 30
fi
if [ "${E2E_CALLGRIND:-0}" = 1 ]; then
  echo "--- agent instructions (user space), inclusive"
  callgrind_annotate --inclusive=yes target/e2e-callgrind.out 2>/dev/null | grep -E '^ *[0-9,]+ +\(' |
    grep -E 'PROGRAM TOTALS|fill_tape_padded \[|build_tape \[|find_structural_bits_avx2 \[|Encoder::encode \[|split_records \[|recvbody.*read \[|__memset' | head -n 12
fi
