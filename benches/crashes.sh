#!/usr/bin/env bash
# The crash harness of tests/integration/crashes.rs at every boundary (the suite tests every
# 6th to 18th): e2e, an experiment grid, a search and the local router stack, each killed with
# SIGKILL after its n-th durable write and run again. Prints the crashes tested per case and
# the time. Usage: benches/crashes.sh
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
BENCHFLOW_CRASH_STRIDE=1 cargo test --locked --test integration -- crashes:: --nocapture --test-threads 2 2>&1 |
  grep -E "crashes tested|test result|FAILED|panicked|changed|left"
echo "in $(( $(date +%s) - start )) s"
