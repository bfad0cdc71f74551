# Set-up shared by the benchmarks that run beside syslog-ng under GNU time
# (e2e.sh, replay.sh; sourced, not run): syslog-ng unpacked from Debian, GNU
# time, a release build of the agent, and `machine_line`.

bash scripts/install-syslog-ng target/syslog-ng
# GNU time reports each child's CPU and peak RSS.
if [ ! -x /usr/bin/time ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get install -y time >/dev/null
fi
cargo build --release --quiet
# Prints the machine, commit and date; arguments are git pathspecs the
# "uncommitted changes" check leaves out (a chart the bench rewrites).
machine_line() {
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r), commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . "$@" || echo ' (with uncommitted changes)'), $(date -u +%Y-%m-%d)"
}
