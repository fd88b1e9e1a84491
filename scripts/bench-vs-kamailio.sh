#!/usr/bin/env bash
# OPTIONS throughput, dialback vs a stateless Kamailio, same machine, same run (issue 2's
# benchmark). Builds dialback in release mode, then runs scripts/bench-options.sh with a
# DIALBACK_CMD that starts dialback on the port the bench picks. The per-source rate limit is
# lifted for the run (a benchmark from one source would otherwise measure the limiter).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
export DIALBACK_CMD="scripts/bench-dialback-run.sh {port}"
exec scripts/bench-options.sh
