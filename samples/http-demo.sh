#!/usr/bin/env bash
# A scripted tour of samples/http-server: start it, send it requests with curl,
# let one outlive its deadline (504), shut it down with SIGTERM while a request
# is in flight, and watch it finish that request and exit cleanly. The
# server's own log (its stderr, "[  ms] server[w1]: ...", each line saying which
# of its loops, copied to stdout) is interleaved with what the script does ("$ curl ...") and what curl gets back ("-> ...").
#
# Usage: samples/http-demo.sh [BUILDDIR]   (scripts/demo builds and runs it)
set -euo pipefail

builddir=${1:-$(cd "$(dirname "$0")/.." && pwd)}
server=$builddir/samples/http-server/server
log=$(mktemp "${TMPDIR:-/tmp}/uvctx-http-demo.XXXXXX")
trap 'rm -f "$log"' EXIT

if [[ -t 1 ]]; then b=$'\e[1m' n=$'\e[0m'; else b= n=; fi
heading() { printf '\n%s== %s ==%s\n' "$b" "$*" "$n"; }
pause() { sleep 0.3; } # lets the server's lines land before the next step
show_curl() { # show_curl PATH: runs curl, prints the status and the body
  local out
  echo "\$ curl http://127.0.0.1:$port$1"
  out=$(curl -s --max-time 10 -w ' [HTTP %{http_code} in %{time_total}s]' \
    "http://127.0.0.1:$port$1" | tr -d '\n')
  pause
  echo "-> $out"
}
wait_for() { # wait_for PATTERN: until the server's log has such a line
  local i
  for ((i = 0; i < 250; i++)); do
    grep -q -e "$1" "$log" && return 0
    sleep 0.02
  done
  echo "demo: the server never said '$1'" >&2
  exit 1
}

heading "1. Start the server: idle timeout 2 s, request deadline 500 ms, grace period 5 s"
echo "\$ samples/http-server/server -p 0 -i 2000 -r 500 -g 5000     (-p 0: any free port)"
"$server" -p 0 -i 2000 -r 500 -g 5000 2> >(tee "$log") &
pid=$!
wait_for 'listening on'
port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$log")

heading "2. A normal request: 200"
show_curl /

heading "3. Work that takes 2000 ms, but the request's deadline is 500 ms: 504"
echo "(the request's context times out, its watch stops the work and answers 504)"
show_curl '/slow?ms=2000'

heading "4. SIGTERM while a 400 ms request is in flight: it completes in the grace period"
echo "\$ curl http://127.0.0.1:$port/slow?ms=400 &      (in the background)"
curl -s --max-time 10 -w ' [HTTP %{http_code} in %{time_total}s]' \
  "http://127.0.0.1:$port/slow?ms=400" >"$log.slow" &
cpid=$!
wait_for 'start GET /slow?ms=400'
sleep 0.1
echo "\$ kill -TERM $pid"
kill -TERM "$pid"
wait_for 'listener closed'
echo "\$ curl http://127.0.0.1:$port/     (a new connection, after SIGTERM)"
curl -s --max-time 2 "http://127.0.0.1:$port/" >/dev/null || echo "-> refused (curl exit $?): the listener is closed"
wait "$cpid"
pause
echo "-> the in-flight request: $(tr -d '\n' <"$log.slow")"
rm -f "$log.slow"

heading "5. The server exits on its own: every context released, loop closed"
rc=0
wait "$pid" || rc=$?
pause
echo "server exit code: $rc"
if [[ $rc -ne 0 ]] || ! grep -q 'uv_loop_close() = 0' "$log"; then
  echo "demo: the server did not exit cleanly" >&2
  exit 1
fi
