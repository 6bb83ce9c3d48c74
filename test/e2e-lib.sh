# Sourced by the end-to-end tests (test/e2e.sh, test/grpc-e2e.sh): one line
# per check, "ok   - NAME" or "FAIL - NAME", counted in $pass and $fail.
# shellcheck shell=bash
pass=0
fail=0

ok() { pass=$((pass + 1)); echo "ok   - $*"; }
nok() { fail=$((fail + 1)); echo "FAIL - $*"; }
check() { # check NAME COMMAND...: ok if the command succeeds
  local name=$1
  shift
  if "$@"; then ok "$name"; else nok "$name"; fi
}
# Wall-clock milliseconds, without forking date(1).
now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $((t / 1000)); }
