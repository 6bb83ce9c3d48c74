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
# need NAME TOOL:PACKAGE...: installs (as root, with apt) the packages of the
# tools that are missing, then gives up with one failed check, naming the
# first tool still missing. A TOOL starting with / is a path that must exist.
# Its output goes to $work/apt.log, shown if the install fails.
need() {
  local name=$1 spec tool pkgs=()
  shift
  for spec; do
    tool=${spec%%:*}
    if [[ $tool == /* ]]; then [[ -e $tool ]]; else command -v "$tool" >/dev/null; fi ||
      pkgs+=("${spec#*:}")
  done
  if ((${#pkgs[@]})) && [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "$name: installing ${pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends \
      "${pkgs[@]}"; } >"$work/apt.log" 2>&1 || cat "$work/apt.log"
  fi
  for spec; do
    tool=${spec%%:*}
    if [[ $tool == /* ]]; then [[ -e $tool ]]; else command -v "$tool" >/dev/null; fi && continue
    echo "$name: $tool is missing (run scripts/install-deps as root)"
    echo "0 passed, 1 failed"
    exit 1
  done
}
# cleanup_at_exit NAME: when the script exits, however it exits, kills every
# process whose pid it added to the array pids and removes $work, or with
# E2E_KEEP=1 keeps it and says where.
pids=()
cleanup_at_exit() {
  e2e_name=$1
  trap e2e_cleanup EXIT
}
e2e_cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill -KILL "$pid" 2>/dev/null
  done
  if [[ -n ${E2E_KEEP:-} ]]; then echo "$e2e_name: logs kept in $work"; else rm -rf "$work"; fi
}
