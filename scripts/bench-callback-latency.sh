#!/usr/bin/env bash
# Start-to-INVITE latency of the callback (issue 4): how long after the administrator's
# credentialed MESSAGE `MAINTAIN-1` arrives on the admin trunk does the callback INVITE leave
# the originate trunk, not counting `callback.delay_ms` (0 here).
#
# Setup on loopback: Kamailio (docker/kamailio/kamailio.cfg, digest auth) as the PBX; dialback
# (release build) with the example dialplan's admins, trunks registered at Kamailio; sipsak as
# the administrator's client (MESSAGE through Kamailio → 401 from the gate → MESSAGE with MD5
# digest credentials → 202). The admins' numbers are not registered at Kamailio, so each
# callback ends at once with 404 (callback.failed) and the next run can start: one callback
# per admin at a time (DESIGN.md step 5). Runs alternate between admin 1001 (MAINTAIN-1) and
# 1002 (MAINTAIN-2), `max_per_admin_per_hour` at its maximum 60: at most 120 runs.
#
# Measured from dialback's own log (RUST_LOG=dialback=debug: one `sip in` / `sip out` line per
# message, RFC 3339 timestamps in µs): t0 = the `sip in` of the MESSAGE answered by the 202
# (the one carrying credentials), t1 = the first `sip out ... INVITE` on the originate trunk
# after it. The interval covers digest check, gate decision, audit write with fsync
# (signal.ok, then callback.placed before the INVITE leaves), timer wake-up, INVITE build.
# With BENCH_TSHARK=1, tshark also captures loopback and the same interval is taken from the
# wire (MESSAGE with Authorization arriving at the admin trunk port → INVITE leaving the
# originate trunk port) as a cross-check.
#
# Usage: scripts/bench-callback-latency.sh [N]   (N runs, default 30; BENCH_RUNS also works)
# Prints p50 / p99 / max in ms. Bounded: each run waits at most 5 s, the whole bench 180 s.
# Needs: kamailio, sipsak, python3 (stats), tshark only with BENCH_TSHARK=1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${1:-${BENCH_RUNS:-30}}
if (( RUNS < 1 || RUNS > 120 )); then
  echo "bench-callback-latency: N must be 1..120 (60 callbacks per admin per hour, 2 admins)" >&2
  exit 2
fi
DEADLINE=$(( $(date +%s) + 180 ))
WORK=$(mktemp -d -t bench-cb.XXXXXX)
KPID="" DPID="" TPID=""

for tool in kamailio sipsak python3 ss; do
  command -v "$tool" >/dev/null || { echo "bench-callback-latency: $tool not installed" >&2; exit 2; }
done
if [[ "${BENCH_TSHARK:-0}" == 1 ]] && ! command -v tshark >/dev/null; then
  echo "bench-callback-latency: tshark not installed" >&2; exit 2
fi

cleanup() {
  for pid in $DPID $TPID $KPID; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in $DPID $TPID $KPID; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

free_port() {
  local port
  for _ in $(seq 1 100); do
    port=$(( 20000 + RANDOM % 40000 ))
    if [[ -z $(ss -Hlun "sport = :$port") && -z $(ss -Hltn "sport = :$port") ]]; then
      echo "$port"
      return 0
    fi
  done
  echo "no free port" >&2
  return 1
}

KPORT=$(free_port); UPORT=$(free_port); APORT=$(free_port); OPORT=$(free_port)

# Bench-only trunk passwords.
export B_USER_PW=bench-user-pw B_ADMIN_PW=bench-admin-pw B_OUT_PW=bench-out-pw
mkdir -p "$WORK/db"
cat >"$WORK/db/subscribers" <<EOF
key_name(str) key_type(int) value_type(int) key_value(str) expires(int)
gate-user:0:0:$B_USER_PW:0
gate-admin:0:0:$B_ADMIN_PW:0
gate-out:0:0:$B_OUT_PW:0
EOF

(cd "$ROOT" && cargo build --release --quiet --bin dialback)

kamailio -DD -E -f "$ROOT/docker/kamailio/kamailio.cfg" -w "$WORK" -Y "$WORK" -P "$WORK/kamailio.pid" \
  -m 64 -M 8 -A "LISTEN=udp:127.0.0.1:$KPORT" -A "SUBS_DB=\"text://$WORK/db\"" \
  -A "CTL_SOCK=\"unix:$WORK/ctl.sock\"" -A 'REALM="dialback.test"' -A 'AUTH_ALGORITHM="MD5"' \
  -A 'DBG=1' >"$WORK/kamailio.log" 2>&1 &
KPID=$!

# The example dialplan's admins; admin 1 is called back at sip:1001@PBX (not registered: 404).
python3 - "$ROOT/dialplans/example.json" "$WORK/dialplan.json" "$KPORT" "$UPORT" "$APORT" "$OPORT" <<'EOF'
import json, sys
src, dst, k, u, a, o = sys.argv[1:]
ex = json.load(open(src))
pbx = f"sip:127.0.0.1:{k}"
admins = ex["admins"]
admins[0]["numbers"] = [f"sip:1001@127.0.0.1:{k}"]
admins[1]["numbers"] = [f"sip:1002@127.0.0.1:{k}"]
dp = {
    "trunks": {
        "user": {"listen": f"127.0.0.1:{u}", "registrar": pbx, "aor": "sip:gate-user@127.0.0.1",
                 "auth_username": "gate-user", "password_env": "B_USER_PW", "expires_s": 300},
        "admin": {"listen": f"127.0.0.1:{a}", "registrar": pbx, "aor": "sip:gate-admin@127.0.0.1",
                  "auth_username": "gate-admin", "password_env": "B_ADMIN_PW", "expires_s": 300},
        "originate": {"listen": f"127.0.0.1:{o}", "proxy": pbx, "from": "sip:gate-out@127.0.0.1",
                      "auth_username": "gate-out", "password_env": "B_OUT_PW"},
    },
    "admins": admins,
    "security": {"digest_algorithms": ["MD5"]},
    "callback": {"delay_ms": 0, "ring_timeout_s": 5, "answered_hold_s": 1,
                 "max_per_admin_per_hour": 60},
}
json.dump(dp, open(dst, "w"), indent=1)
EOF

for _ in $(seq 1 50); do
  [[ -n $(ss -Hlun "sport = :$KPORT") ]] && break
  sleep 0.1
done

if [[ "${BENCH_TSHARK:-0}" == 1 ]]; then
  tshark -i lo -n -q -w "$WORK/cap.pcapng" -f "udp port $APORT or udp port $OPORT" \
    >"$WORK/tshark.log" 2>&1 &
  TPID=$!
  sleep 2
fi

(cd "$WORK" && RUST_LOG=dialback=debug exec "$ROOT/target/release/dialback" run --config "$WORK/dialplan.json") \
  >"$WORK/dialback.log" 2>&1 &
DPID=$!

registered() { grep -q 'registered aor="sip:gate-admin@' "$WORK/dialback.log"; }
for _ in $(seq 1 100); do
  registered && break
  kill -0 "$DPID" 2>/dev/null || { cat "$WORK/dialback.log" >&2; exit 1; }
  sleep 0.1
done
registered || { echo "gate-admin did not register" >&2; tail -20 "$WORK/dialback.log" >&2; exit 1; }

finished() { grep -c 'callback finished' "$WORK/dialback.log" || true; }
done_runs=0
for i in $(seq 1 "$RUNS"); do
  if (( i % 2 )); then who=(1001 demo-secret-1 MAINTAIN-1); else who=(1002 demo-secret-2 MAINTAIN-2); fi
  (( $(date +%s) < DEADLINE )) || { echo "time bound reached after $done_runs runs" >&2; break; }
  cat >"$WORK/msg.txt" <<EOF
MESSAGE sip:gate-admin@127.0.0.1:$KPORT SIP/2.0
From: <sip:roaming-admin@127.0.0.1>;tag=b$$x$i
To: <sip:gate-admin@127.0.0.1:$KPORT>
Call-ID: bench-$$-$i@127.0.0.1
CSeq: 1 MESSAGE
Max-Forwards: 70
Content-Type: text/plain
Content-Length: 10

${who[2]}
EOF
  sed -i 's/$/\r/' "$WORK/msg.txt"
  truncate -s -2 "$WORK/msg.txt"   # the body has no line end: Content-Length 10
  sipsak -f "$WORK/msg.txt" -s "sip:gate-admin@127.0.0.1:$KPORT" -u "${who[0]}" -a "${who[1]}" \
    >/dev/null 2>&1 || { echo "run $i: no 2xx to MESSAGE" >&2; continue; }
  for _ in $(seq 1 100); do
    (( $(finished) >= i )) && break
    sleep 0.05
  done
  (( $(finished) >= i )) || { echo "run $i: callback did not finish within 5 s" >&2; break; }
  done_runs=$i
done
sleep 0.3
kill -TERM "$DPID" 2>/dev/null || true
wait "$DPID" 2>/dev/null || true
DPID=""
if [[ -n "$TPID" ]]; then
  sleep 1
  kill -TERM "$TPID" 2>/dev/null || true
  wait "$TPID" 2>/dev/null || true
  TPID=""
fi

python3 - "$WORK/dialback.log" "$RUNS" <<'EOF'
import math, re, sys
from datetime import datetime
path, runs = sys.argv[1], int(sys.argv[2])
stamp = re.compile(r"^(\S+Z)\s")
def t(line):
    m = stamp.match(line)
    s = m.group(1).rstrip("Z")
    head, frac = (s.split(".") + ["0"])[:2]
    return datetime.fromisoformat(head).timestamp() + float("0." + frac)
lines = [re.sub(r"\x1b\[[0-9;]*m", "", l) for l in open(path, errors="replace")]
lat, to202, after202, last_msg, t0, t202 = [], [], [], None, None, None
for l in lines:
    if "sip in" in l and "first_line=MESSAGE" in l:
        last_msg = t(l)
    elif "sip out" in l and "first_line=SIP/2.0 202" in l:
        t0, t202 = last_msg, t(l)
    elif t0 is not None and "sip out" in l and "first_line=INVITE" in l and 'name="originate"' in l:
        lat.append((t(l) - t0) * 1000.0)
        to202.append((t202 - t0) * 1000.0)
        after202.append((t(l) - t202) * 1000.0)
        t0 = None
if not lat:
    sys.exit("no MESSAGE→INVITE pair found in the log")
lat.sort()
def pct(p):
    # nearest rank
    return lat[min(len(lat), max(1, math.ceil(p / 100.0 * len(lat)))) - 1]
print(f"callback start→INVITE (dialback log, delay_ms=0): n={len(lat)}/{runs} "
      f"p50={pct(50):.2f} ms p99={pct(99):.2f} ms max={lat[-1]:.2f} ms min={lat[0]:.2f} ms")
to202.sort(); after202.sort()
print(f"  of which MESSAGE→202 (digest, decision, audited signal.ok): p50={to202[len(to202) // 2]:.2f} ms "
      f"max={to202[-1]:.2f} ms; 202→INVITE (audited callback.placed, INVITE): "
      f"p50={after202[len(after202) // 2]:.2f} ms max={after202[-1]:.2f} ms")
EOF

if [[ "${BENCH_TSHARK:-0}" == 1 ]]; then
  tshark -r "$WORK/cap.pcapng" -n -T fields -E separator='|' \
    -e frame.time_epoch -e udp.srcport -e udp.dstport -e sip.Method -e sip.Status-Code \
    -e sip.Authorization -Y sip 2>/dev/null >"$WORK/wire.txt" || true
  python3 - "$WORK/wire.txt" "$APORT" "$OPORT" <<'EOF'
import math, sys
path, aport, oport = sys.argv[1], sys.argv[2], sys.argv[3]
lat, t0 = [], None
for row in open(path):
    f = row.rstrip("\n").split("|")
    if len(f) < 6:
        continue
    ts, sport, dport, method, status, auth = float(f[0]), f[1], f[2], f[3], f[4], f[5]
    if method == "MESSAGE" and dport == aport and auth and not status:
        t0 = ts
    elif t0 is not None and method == "INVITE" and sport == oport and not status:
        lat.append((ts - t0) * 1000.0)
        t0 = None
if not lat:
    sys.exit("tshark: no MESSAGE→INVITE pair on the wire")
lat.sort()
def pct(p):
    # nearest rank
    return lat[min(len(lat), max(1, math.ceil(p / 100.0 * len(lat)))) - 1]
print(f"callback start→INVITE (tshark on lo): n={len(lat)} "
      f"p50={pct(50):.2f} ms p99={pct(99):.2f} ms max={lat[-1]:.2f} ms min={lat[0]:.2f} ms")
EOF
fi
