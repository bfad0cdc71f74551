#!/usr/bin/env bash
# The end-to-end benchmark (issue 6): the agent pulling from the simulator
# and delivering CEF over TCP, syslog-ng doing the same job on the same
# records, and a plain writev loop writing the agent's lines, all into
# line-counting blackholes on loopback, in one run. Prints records/s, MB/s
# in and out, CPU seconds per million records and peak RSS for each, the
# ratios, and draws benches/e2e.svg. See benches/e2e.rs.
#
# Usage: benches/e2e.sh   (environment: E2E_MINUTES, E2E_PER_MINUTE,
#        E2E_SVG, E2E_SKIP_PEER=1)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-syslog-ng target/syslog-ng
# GNU time reports each child's CPU and peak RSS.
if [ ! -x /usr/bin/time ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get install -y time >/dev/null
fi
cargo build --release --quiet
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r), commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' (with uncommitted changes)'), $(date -u +%Y-%m-%d)"
SIEM_AGENT_BIN="$PWD/target/release/siem-agent" \
SYSLOG_NG="$PWD/target/syslog-ng/run-syslog-ng" \
  cargo bench --quiet --bench e2e
