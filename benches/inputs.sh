#!/usr/bin/env bash
# Every (schema field, hostile value) case of tests/integration/inputs.rs, not the suite's
# sample of 300: each must be planned or refused with exit 2, never a crash. Prints the count
# and the time. Usage: benches/inputs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BENCHFLOW_INPUT_CASES=1000000 cargo test --locked --test integration -- inputs:: --nocapture 2>&1 |
  grep -E "cases of|test result|FAILED|exit|panic"
