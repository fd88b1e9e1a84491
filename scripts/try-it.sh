#!/usr/bin/env bash
# Run dialback against a real PBX on this machine, with nothing to set up: starts Kamailio
# (docker/kamailio/kamailio.cfg) on 127.0.0.1:5060 with demo subscribers in a temp dir, runs
# `dialback run --config dialplans/example.json` with the matching trunk passwords, shows
# Kamailio's view of the registrations, and stops both on Ctrl-C (or after $TRY_SECONDS).
# Needs the kamailio package (apt-get install kamailio).
set -euo pipefail
cd "$(dirname "$0")/.."
run_for=${TRY_SECONDS:-0}
dir=$(mktemp -d)
mkdir -p "$dir/db"
cp docker/kamailio/db/subscribers "$dir/db/subscribers"
# Demo trunk passwords (never use these outside a demo).
export DIALBACK_USER_PASSWORD=demo-user-pw DIALBACK_ADMIN_PASSWORD=demo-admin-pw \
       DIALBACK_ORIGINATE_PASSWORD=demo-out-pw
sed -i "s/change-me-user/$DIALBACK_USER_PASSWORD/; s/change-me-admin/$DIALBACK_ADMIN_PASSWORD/; s/change-me-out/$DIALBACK_ORIGINATE_PASSWORD/" \
  "$dir/db/subscribers"
cargo build --release --quiet
kamailio -DD -E -f docker/kamailio/kamailio.cfg -w "$dir" -Y "$dir" -P "$dir/kamailio.pid" -m 64 -M 8 \
  -A 'LISTEN=udp:127.0.0.1:5060' -A "SUBS_DB=\"text://$dir/db\"" -A "CTL_SOCK=\"unix:$dir/ctl.sock\"" \
  -A 'REALM="127.0.0.1"' >"$dir/kamailio.log" 2>&1 &
kpid=$!
cleanup() {
  [ -n "${dpid:-}" ] && kill -TERM "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null || true
  kill -TERM "$kpid" 2>/dev/null || true
  wait "$kpid" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM
sleep 1
target/release/dialback run --config dialplans/example.json &
dpid=$!
sleep 2
echo "--- Kamailio location table:"
kamcmd -s "unix:$dir/ctl.sock" ul.dump brief 2>/dev/null | grep -E "AoR|Contact|Address" || true
if [ "$run_for" -gt 0 ]; then
  sleep "$run_for"
else
  echo "--- dialback is running (Ctrl-C stops it and removes the registrations)"
  wait "$dpid"
fi
