# Shared set-up of the shell benchmarks (sourced, not run): a release
# build, a scratch directory and the background processes, both cleaned up
# on exit, and loopback port helpers. Sets `bin`, `work`, `pids`, `TOKEN`.

TOKEN=simulator-token-0123456789abcdef0123456789abcdef0123456789abcdef0123

cargo build --release --quiet
bin=target/release/siem-agent
work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_for_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2
  exit 1
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), commit $(git rev-parse --short HEAD)"
