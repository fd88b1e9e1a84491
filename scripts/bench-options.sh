#!/usr/bin/env bash
# OPTIONS throughput on loopback: stateless Kamailio and, optionally, dialback.
#
# For each target, SIPp (tests/sipp/options_uac.xml) sends OPTIONS at rising rates, each for
# BENCH_SECONDS; a step is clean when every request got its 200 within 2 s (0 failed, 0 timed
# out). Per step we report the rate SIPp achieved and the server's CPU time (utime+stime of
# every process in its process group, from /proc/PID/stat) per 100k requests. The first unclean
# step ends that target's ladder.
#
# Usage:
#   scripts/bench-options.sh
#   DIALBACK_CMD='target/release/dialback run --config /tmp/bench.json --listen 127.0.0.1:{port}' \
#     scripts/bench-options.sh
# DIALBACK_CMD is run with `bash -c` in its own session after replacing {port} with a free UDP
# port of 127.0.0.1 (also exported as BENCH_PORT); it must answer OPTIONS sent to
# sip:127.0.0.1:{port} with 200 and run in the foreground. Without it only Kamailio is measured.
#
# Environment: BENCH_RATES (default "2000 5000 10000 20000 40000"), BENCH_SECONDS (default 3),
# KAMAILIO_CHILDREN (UDP workers, default 2). Loopback only; bounded to about 2-3 minutes.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RATES=${BENCH_RATES:-"2000 5000 10000 20000 40000"}
SECONDS_PER_STEP=${BENCH_SECONDS:-3}
CHILDREN=${KAMAILIO_CHILDREN:-2}
SCENARIO="$ROOT/tests/sipp/options_uac.xml"
TICKS=$(getconf CLK_TCK)
WORK=$(mktemp -d -t bench-options.XXXXXX)
SERVER_PGID=""
declare -A CLEAN_CPU=()   # "target:rate" -> CPU-s per 100k requests, clean steps only
DEADLINE=$(( $(date +%s) + 170 ))

for tool in kamailio sipp ss; do
  command -v "$tool" >/dev/null || { echo "bench-options: $tool not installed" >&2; exit 2; }
done

stop_server() {
  if [[ -n "$SERVER_PGID" ]]; then
    kill -TERM -- "-$SERVER_PGID" 2>/dev/null || true
    for _ in $(seq 1 30); do
      kill -0 -- "-$SERVER_PGID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$SERVER_PGID" 2>/dev/null || true
    SERVER_PGID=""
  fi
}
cleanup() { stop_server; rm -rf "$WORK"; }
trap cleanup EXIT INT TERM

# A UDP port on 127.0.0.1 nobody listens on (random pick, checked with ss).
free_port() {
  local port
  for _ in $(seq 1 100); do
    port=$(( 20000 + RANDOM % 40000 ))
    if [[ -z $(ss -Hlun "sport = :$port") && -z $(ss -Hltn "sport = :$port") ]]; then
      echo "$port"
      return 0
    fi
  done
  echo "bench-options: no free port" >&2
  return 1
}

# CPU ticks (utime + stime) of every live process in process group $1.
group_ticks() {
  local pgid=$1 total=0 stat rest fields
  for stat in /proc/[0-9]*/stat; do
    { read -r stat_line < "$stat"; } 2>/dev/null || continue
    rest=${stat_line##*) }          # fields after "pid (comm) "
    read -r -a fields <<< "$rest"   # fields[0] = state (field 3)
    # field 5 = pgrp -> fields[2]; field 14/15 = utime/stime -> fields[11]/fields[12]
    if [[ "${fields[2]}" == "$pgid" ]]; then
      total=$(( total + fields[11] + fields[12] ))
    fi
  done
  echo "$total"
}

# Starts "$@" in a new session (its pid is the process group id); logs to $WORK/$name.log.
start_server() {
  local name=$1; shift
  setsid "$@" >"$WORK/$name.log" 2>&1 < /dev/null &
  SERVER_PGID=$!
}

# Waits until port $1 answers one OPTIONS, up to 15 s.
wait_ready() {
  local port=$1 name=$2
  for _ in $(seq 1 30); do
    if sipp "127.0.0.1:$port" -sf "$SCENARIO" -i 127.0.0.1 -bind_local -ci 127.0.0.1 \
        -cp "$(free_port)" -p "$(free_port)" -m 1 -timeout 3s -timeout_error -nostdin \
        >/dev/null 2>&1; then
      return 0
    fi
    if ! kill -0 "$SERVER_PGID" 2>/dev/null; then
      echo "bench-options: $name exited; log:" >&2; tail -20 "$WORK/$name.log" >&2; return 1
    fi
    sleep 0.5
  done
  echo "bench-options: $name not answering OPTIONS on 127.0.0.1:$port; log:" >&2
  tail -20 "$WORK/$name.log" >&2
  return 1
}

# Runs the rate ladder against 127.0.0.1:$2; prints one row per step and stores the summary
# in BEST_RATE / BEST_ACHIEVED / BEST_CPU100K.
ladder() {
  local name=$1 port=$2 rate count t0 t1 c0 c1 out rc ok failed elapsed achieved cpu cpu100k
  BEST_RATE=0; BEST_ACHIEVED=0; BEST_CPU100K="n/a"
  for rate in $RATES; do
    if (( $(date +%s) + SECONDS_PER_STEP + 15 > DEADLINE )); then
      echo "  (time budget reached, stopping $name ladder)"; break
    fi
    count=$(( rate * SECONDS_PER_STEP ))
    c0=$(group_ticks "$SERVER_PGID"); t0=$(date +%s.%N)
    set +e
    out=$(sipp "127.0.0.1:$port" -sf "$SCENARIO" -i 127.0.0.1 -bind_local -ci 127.0.0.1 \
      -cp "$(free_port)" -p "$(free_port)" -r "$rate" -rp 1000 -m "$count" -l $(( rate * 3 )) \
      -timeout "$(( SECONDS_PER_STEP + 15 ))s" -timeout_error -nostdin -buff_size 4194304 \
      -max_recv_loops 10000 -max_sched_loops 10000 2>&1)
    rc=$?
    set -e
    t1=$(date +%s.%N); c1=$(group_ticks "$SERVER_PGID")
    ok=$(awk -F'|' '/Successful call/ {gsub(/ /, "", $3); v=$3} END {print v+0}' <<<"$out")
    failed=$(awk -F'|' '/Failed call/ {gsub(/ /, "", $3); v=$3} END {print v+0}' <<<"$out")
    elapsed=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')
    achieved=$(awk -v n="$ok" -v e="$elapsed" 'BEGIN {printf "%d", (e > 0 ? n / e : 0)}')
    cpu=$(awk -v t=$(( c1 - c0 )) -v hz="$TICKS" 'BEGIN {printf "%.2f", t / hz}')
    cpu100k=$(awk -v c="$cpu" -v n="$ok" 'BEGIN {if (n > 0) printf "%.2f", c * 100000 / n; else print "n/a"}')
    printf '  %-9s %7s %8s %8s %7s %10s %7s %11s\n' \
      "$name" "$rate" "$count" "$ok" "$failed" "$achieved" "$cpu" "$cpu100k"
    if (( rc != 0 || failed != 0 || ok != count )); then
      echo "  $name: step $rate/s not clean (sipp exit $rc); ladder stops"
      break
    fi
    BEST_RATE=$rate; BEST_ACHIEVED=$achieved; BEST_CPU100K=$cpu100k
    CLEAN_CPU["$name:$rate"]=$cpu100k
  done
}

header() {
  printf '  %-9s %7s %8s %8s %7s %10s %7s %11s\n' \
    target "rate/s" sent ok failed "achieved/s" "cpu_s" "cpu_s/100k"
}

echo "bench-options: $(nproc) CPUs, ${SECONDS_PER_STEP}s per step, rates: $RATES"
header

# --- Kamailio (stateless sl_send_reply) ---
KPORT=$(free_port)
start_server kamailio kamailio -DD -E -f "$ROOT/tests/kamailio/stateless.cfg" \
  -A "LISTEN=udp:127.0.0.1:$KPORT" -A "CHILDREN=$CHILDREN" \
  -w "$WORK" -Y "$WORK" -P "$WORK/kamailio.pid" -m 64 -M 8
wait_ready "$KPORT" kamailio
ladder kamailio "$KPORT"
K_RATE=$BEST_RATE; K_ACH=$BEST_ACHIEVED; K_CPU=$BEST_CPU100K
stop_server

# --- dialback (optional) ---
D_RATE=""
if [[ -n "${DIALBACK_CMD:-}" ]]; then
  DPORT=$(free_port)
  export BENCH_PORT=$DPORT
  start_server dialback bash -c "${DIALBACK_CMD//\{port\}/$DPORT}"
  wait_ready "$DPORT" dialback
  ladder dialback "$DPORT"
  D_RATE=$BEST_RATE; D_ACH=$BEST_ACHIEVED; D_CPU=$BEST_CPU100K
  stop_server
fi

echo
echo "kamailio: highest clean rate ${K_RATE}/s (achieved ${K_ACH}/s), ${K_CPU} CPU-s per 100k requests at that rate"
if [[ -n "$D_RATE" ]]; then
  echo "dialback: highest clean rate ${D_RATE}/s (achieved ${D_ACH}/s), ${D_CPU} CPU-s per 100k requests at that rate"
  # CPU is compared at the highest rate both ran cleanly (cost per request varies with rate).
  COMMON=""
  for rate in $RATES; do
    if [[ -n "${CLEAN_CPU[kamailio:$rate]:-}" && -n "${CLEAN_CPU[dialback:$rate]:-}" ]]; then
      COMMON=$rate
    fi
  done
  awk -v kr="$K_ACH" -v dr="$D_ACH" -v common="$COMMON" \
      -v kc="${CLEAN_CPU[kamailio:$COMMON]:-}" -v dc="${CLEAN_CPU[dialback:$COMMON]:-}" 'BEGIN {
    if (kr > 0) printf "ratio dialback/kamailio: highest clean throughput %.2fx", dr / kr;
    else printf "ratio dialback/kamailio: throughput n/a";
    if (common != "" && kc + 0 > 0) printf ", CPU per request at %s/s %.2fx\n", common, dc / kc;
    else printf ", no common clean rate for CPU\n";
  }'
fi
