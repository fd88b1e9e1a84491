#!/usr/bin/env bash
# Start dialback for scripts/bench-options.sh: user trunk on 127.0.0.1:$1, no registration,
# no per-source limit, logs at warn. Runs in the foreground.
set -euo pipefail
port=$1
dir=$(mktemp -d)
cat > "$dir/bench.json" <<JSON
{
  "trunks": {
    "user": { "listen": "127.0.0.1:$port", "register": false, "aor": "sip:gate-user@127.0.0.1" },
    "admin": { "listen": "127.0.0.1:$((port + 1))", "register": false, "aor": "sip:gate-admin@127.0.0.1" },
    "originate": { "listen": "127.0.0.1:$((port + 2))", "proxy": "sip:127.0.0.1:5060",
                   "from": "sip:gate-out@127.0.0.1" }
  },
  "limits": { "per_source_rate": 10000000, "per_source_burst": 10000000 }
}
JSON
export RUST_LOG=warn
exec "$(dirname "$0")/../target/release/dialback" run --config "$dir/bench.json"
