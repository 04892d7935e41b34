# Shared by the benchmark scripts (sourced, not run): builds the release binary, makes a
# temporary directory, and starts / stops a `benchflow sim` whose address lands in $url.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --quiet
bf=${BF:-$PWD/target/release/benchflow}
tmp=$(mktemp -d)
sim_pid=
cleanup() { [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT

start_sim() {
  "$bf" sim --port 0 "$@" > "$tmp/sim.out" 2>/dev/null &
  sim_pid=$!
  for _ in $(seq 100); do [ -s "$tmp/sim.out" ] && break; sleep 0.05; done
  url=$(head -1 "$tmp/sim.out")
}
stop_sim() { kill "$sim_pid"; wait "$sim_pid" 2>/dev/null || true; sim_pid=; }
