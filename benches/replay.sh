#!/usr/bin/env bash
# The replay benchmark (issue 18): `replay --threads 1` and `--threads 2`
# in alternating rounds, and syslog-ng on the same records, each sending
# CEF over TCP into a line-counting blackhole on loopback. Prints records/s,
# CPU seconds per million records and peak RSS for each run, the ratio of
# two threads to one per round, and the ratio to syslog-ng. See
# benches/replay.rs.
#
# Usage: benches/replay.sh   (environment: REPLAY_RECORDS, REPLAY_ROUNDS,
#        REPLAY_SKIP_PEER=1)
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=benches/peer-setup.sh
source benches/peer-setup.sh
machine_line
SIEM_AGENT_BIN="$PWD/target/release/siem-agent" \
SYSLOG_NG="$PWD/target/syslog-ng/run-syslog-ng" \
  cargo bench --quiet --bench replay
