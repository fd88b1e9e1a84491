#!/usr/bin/env bash
# Follow README.md as a newcomer would: run every command of its ```sh blocks, in order, from
# the repository root, as written. Each block runs in its own `bash -euo pipefail` (so an
# `export` carries to the lines after it in the same block, as when pasting a block into a
# terminal) under a time bound, and must exit 0.
#
# A block may be preceded by one HTML comment (invisible on GitHub) that says how to run it:
#   <!-- readme-check: until-stopped N [expect TEXT] -->
#                                           a server: must still be running after N s (and have
#                                           printed TEXT), then is stopped with SIGINT like Ctrl-C
#   <!-- readme-check: skip REASON -->      not run here; REASON is printed (e.g. needs Docker)
# The line `bash .ci/run` is not run: it is the CI run this check is part of.
#
# Usage: scripts/readme-check.sh [README]   (exit 0 when every block worked)
set -uo pipefail
cd "$(dirname "$0")/.."
readme=${1:-README.md}
[ -f "$readme" ] || { echo "readme-check: $readme not found" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
limit=${README_CHECK_TIMEOUT:-600}

# Split the README into blocks: $work/N.sh (the commands) and $work/N.mode (the marker).
awk -v dir="$work" '
  /^<!-- readme-check:/ { mode = $0; sub(/^<!-- readme-check: */, "", mode); sub(/ *-->.*$/, "", mode); next }
  /^```sh[[:space:]]*$/ && !inblock { inblock = 1; n++; file = dir "/" n ".sh"; printf "" > file;
                                      print (mode == "" ? "run" : mode) > (dir "/" n ".mode"); mode = ""; next }
  /^```/ && inblock { inblock = 0; close(file); next }
  inblock { print >> file; next }
  /[^[:space:]]/ { mode = "" }
' "$readme"

blocks=$(find "$work" -name '*.sh' | wc -l)
[ "$blocks" -gt 0 ] || { echo "readme-check: no \`\`\`sh blocks in $readme" >&2; exit 1; }
failed=0
for i in $(seq 1 "$blocks"); do
  script="$work/$i.sh"
  mode=$(cat "$work/$i.mode")
  # The CI run itself is not re-entered.
  sed -i 's|^bash \.ci/run\b.*$|echo "(bash .ci/run: this is the run in progress)"|' "$script"
  echo "=== README block $i ($mode):"
  sed 's/^/    /' "$script"
  case "$mode" in
    skip*)
      echo "--- skipped: ${mode#skip }"
      continue
      ;;
    until-stopped*)
      rest=${mode#until-stopped }
      secs=${rest%% *}
      expect=""
      case "$rest" in *" expect "*) expect=${rest#* expect } ;; esac
      timeout --signal=INT --kill-after=10 "$secs" bash -euo pipefail "$script" >"$work/$i.out" 2>&1
      rc=$?
      if [ -n "$expect" ] && ! grep -qF -- "$expect" "$work/$i.out"; then
        echo "--- FAILED: '$expect' never printed"; tail -n 40 "$work/$i.out"; failed=1
      elif [ "$rc" -eq 124 ] || [ "$rc" -eq 0 ]; then
        echo "--- ok: still running after ${secs}s, stopped (rc $rc)${expect:+, printed '$expect'}"
      else
        echo "--- FAILED: exited $rc before ${secs}s"; tail -n 40 "$work/$i.out"; failed=1
      fi
      ;;
    run)
      timeout --kill-after=10 "$limit" bash -euo pipefail "$script" >"$work/$i.out" 2>&1
      rc=$?
      if [ "$rc" -eq 0 ]; then
        echo "--- ok"
      else
        echo "--- FAILED (rc $rc)"; tail -n 40 "$work/$i.out"; failed=1
      fi
      ;;
    *)
      echo "--- FAILED: unknown readme-check marker '$mode'"; failed=1
      ;;
  esac
done
if [ "$failed" -ne 0 ]; then
  echo "readme-check: some README commands did not work as written" >&2
  exit 1
fi
echo "readme-check: all $blocks README blocks worked as written"
