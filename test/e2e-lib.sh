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
# wait_exit PID TIMEOUT_MS: waits for a child process of this shell; sets
# $rc to its exit status, or to "timeout" (and returns 1) if it is still
# running after TIMEOUT_MS.
wait_exit() {
  local p=$1 deadline=$(($(now_ms) + $2))
  while kill -0 "$p" 2>/dev/null; do
    if (($(now_ms) > deadline)); then
      rc=timeout
      return 1
    fi
    sleep 0.02
  done
  wait "$p"
  rc=$?
}
