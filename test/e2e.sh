#!/usr/bin/env bash
# End-to-end tests of the HTTP samples with real clients: curl, socat, wrk and
# samples/client. Run by `make check` (automake TESTS) from the build
# directory, or by hand: test/e2e.sh [BUILDDIR]. Every server listens on
# 127.0.0.1 on a port the kernel picks (-p 0), read back from its log, with
# its default number of loops (one per core) unless a test says -t: the load
# test runs with -t 1 and -t 2 (every loop's listener on that one port).
# Prints one line per check and closes with "N passed, M failed"; exits 1 if
# any check failed. Bounded: well under 60 s. E2E_KEEP=1 keeps the servers'
# logs (the directory is printed at the end).
set -uo pipefail

builddir=${1:-${abs_top_builddir:-$PWD}}
SERVER=$builddir/samples/http-server/server
CLIENT=$builddir/samples/client/client
work=$(mktemp -d "${TMPDIR:-/tmp}/uvctx-e2e.XXXXXX")
# shellcheck source=test/e2e-lib.sh
. "$(dirname "$0")/e2e-lib.sh"
cleanup_at_exit e2e


# ---- what the tests need ----------------------------------------------------
need e2e curl:curl socat:socat wrk:wrk
if [[ ! -x $SERVER || ! -x $CLIENT ]]; then
  echo "e2e: $SERVER or $CLIENT not built"
  echo "0 passed, 1 failed"
  exit 1
fi

# ---- starting and stopping servers --------------------------------------------
# start_server NAME ARGS...: sets $pid, $port and $log
start_server() {
  local name=$1 i
  shift
  log=$work/$name.log
  : >"$log"
  "$SERVER" -a 127.0.0.1 -p 0 "$@" 2>"$log" &
  pid=$!
  pids+=("$pid")
  port=
  for ((i = 0; i < 100; i++)); do
    port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$log")
    [[ -n $port ]] && return 0
    sleep 0.05
  done
  echo "e2e: server $name did not start:"
  cat "$log"
  return 1
}

# stop_server NAME: SIGTERM, then the server must exit 0 with its loop closed
stop_server() {
  local name=$1
  kill -TERM "$pid"
  wait_exit "$pid" 5000
  check "$name: server exits 0 after SIGTERM (rc=$rc)" [ "$rc" = 0 ]
  check "$name: uv_loop_close() = 0" grep -q 'uv_loop_close() = 0' "$log"
}

# wait_log PATTERN: waits (up to 5 s) for a line of the server's log
wait_log() {
  local i
  for ((i = 0; i < 250; i++)); do
    grep -q -e "$1" "$log" && return 0
    sleep 0.02
  done
  echo "e2e: '$1' not seen in the server's log"
  return 1
}

# wait_count PATTERN N: waits (up to 10 s) for N lines of the server's log
wait_count() {
  local i
  for ((i = 0; i < 500; i++)); do
    (($(grep -c -e "$1" "$log") >= $2)) && return 0
    sleep 0.02
  done
  echo "e2e: fewer than $2 lines '$1' in the server's log"
  return 1
}

url() { echo "http://127.0.0.1:$port$1"; }
code() { curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$(url "$1")"; }

# ---- 1. requests: 200, slow but in time, deadline passed (504), 404 ----------
start_server basic -i 300 -r 500 -g 3000 || exit 1
body=$(curl -s --max-time 5 "$(url /)")
check "GET / answers 200 with its body" [ "$(code /)" = 200 -a "$body" = "hello from uvctx" ]
check "GET /slow?ms=200 (deadline 500 ms) answers 200" [ "$(code '/slow?ms=200')" = 200 ]
t0=$(now_ms)
c=$(code '/slow?ms=3000')
dt=$(($(now_ms) - t0))
check "GET /slow?ms=3000 (deadline 500 ms) answers 504 after ${dt} ms" \
  [ "$c" = 504 -a "$dt" -ge 450 -a "$dt" -lt 2500 ]
check "GET /nope answers 404" [ "$(code /nope)" = 404 ]
check "server logged the deadline and the cancelled work" \
  grep -q 'deadline of 500 ms passed (ETIMEDOUT), work cancelled' "$log"
out=$(curl -s -o /dev/null -o /dev/null -w '%{http_code} %{num_connects}\n' \
  --max-time 5 "$(url /)" "$(url '/slow?ms=10')" | tr '\n' ' ')
check "keep-alive: two requests on one connection ($out)" [ "$out" = "200 1 200 0 " ]
# Pipelined: four requests in one write. The first is answered at once, in
# the parse that read it, which then goes on; the second after its work
# timer, and the parse resumes from what was kept; the last asks to close
# (socat does not half-close: the server takes a read EOF for the end).
out=$(printf 'GET / HTTP/1.1\r\nHost: e2e\r\n\r\nGET /slow?ms=20 HTTP/1.1\r\nHost: e2e\r\n\r\nGET /nope HTTP/1.1\r\nHost: e2e\r\n\r\nGET / HTTP/1.1\r\nHost: e2e\r\nConnection: close\r\n\r\n' |
  timeout 5 socat -t 5 - "TCP:127.0.0.1:$port,shut-none" | tr -d '\r' |
  sed -n 's/^HTTP\/1.1 \([0-9]*\).*/\1/p; s/^\(hello from uvctx\|slept 20 ms\|not found\)$/\1/p' | tr '\n' ' ')
check "pipelined: four requests in one write, answered in order, then closed ($out)" \
  [ "$out" = "200 hello from uvctx 200 slept 20 ms 404 not found 200 hello from uvctx " ]

# ---- 2. an idle connection is closed by the server ---------------------------
t0=$(now_ms)
timeout 5 socat -u "TCP:127.0.0.1:$port" STDOUT >/dev/null 2>&1
src=$?
dt=$(($(now_ms) - t0))
check "idle connection (socat, sends nothing) closed by the server after ${dt} ms (idle timeout 300 ms)" \
  [ "$src" = 0 -a "$dt" -ge 250 -a "$dt" -lt 5000 ]
check "server logged the idle timeout" grep -q 'idle timeout (300 ms without a request)' "$log"

# ---- 3. the client sample: one deadline over resolve, connect, send, read ----
out=$("$CLIENT" 127.0.0.1 "$port" '/slow?ms=100' 2000)
crc=$?
check "client: /slow?ms=100 within 2000 ms prints HTTP 200 (rc=$crc)" \
  [ "$crc" = 0 -a "$(head -n1 <<<"$out" | cut -d' ' -f1-2)" = "HTTP 200" ]
out=$("$CLIENT" localhost "$port" / 2000)
check "client: resolves localhost and gets the body" \
  [ "$(tail -n1 <<<"$out")" = "hello from uvctx" ]
t0=$(now_ms)
out=$("$CLIENT" 127.0.0.1 "$port" '/slow?ms=3000' 300)
crc=$?
dt=$(($(now_ms) - t0))
check "client: /slow?ms=3000 within 300 ms prints '$out' after ${dt} ms (rc=$crc)" \
  [ "$crc" = 2 -a "$out" = "timed out after 300 ms" -a "$dt" -lt 2000 ]
check "server saw the client go away and cancelled the request" \
  wait_log 'client went away during request'
out=$("$CLIENT" 127.0.0.1 "$port" '/slow?ms=3000' 3000)
check "client: server deadline first: HTTP 504" \
  [ "$(head -n1 <<<"$out" | cut -d' ' -f1-2)" = "HTTP 504" ]
stop_server basic

# ---- 4. shutdown: an in-flight request finishes during the grace period -------
start_server graceful -g 3000 || exit 1
curl -s -o "$work/slow.body" -w '%{http_code}' --max-time 10 \
  "$(url '/slow?ms=800')" >"$work/slow.code" &
cpid=$!
wait_log 'start GET /slow?ms=800'
t0=$(now_ms)
kill -TERM "$pid"
wait_log 'listener closed'
c=$(code /)
check "after SIGTERM the listener is closed (new request: '$c')" [ "$c" = 000 ]
wait "$cpid"
wait_exit "$pid" 5000
dt=$(($(now_ms) - t0))
check "in-flight /slow?ms=800 completes with 200 after SIGTERM" \
  [ "$(cat "$work/slow.code")" = 200 -a "$(cat "$work/slow.body")" = "slept 800 ms" ]
check "server exits 0 once it has answered, ${dt} ms after SIGTERM (rc=$rc)" \
  [ "$rc" = 0 -a "$dt" -lt 3000 ]
check "log: phase 1, 1 answered during shutdown, loop closed" \
  grep -q '1 during shutdown' "$log"

# ---- 5. shutdown: the grace period ends, the rest is cancelled --------------
start_server grace -g 300 -r 10000 || exit 1
curl -s -o /dev/null --max-time 10 "$(url '/slow?ms=5000')" &
cpid=$!
wait_log 'start GET /slow?ms=5000'
t0=$(now_ms)
kill -TERM "$pid"
wait_exit "$pid" 5000
dt=$(($(now_ms) - t0))
wait "$cpid"
crc=$?
check "grace 300 ms over: server cancels /slow?ms=5000 and exits 0 after ${dt} ms (rc=$rc)" \
  [ "$rc" = 0 -a "$dt" -ge 250 -a "$dt" -lt 3000 ]
check "grace over: the client sees the connection closed, no response (curl rc=$crc)" [ "$crc" = 52 ]
check "log: phase 2 (grace period over), request cancelled, drained" \
  grep -q 'shutdown phase 2 (grace period over)' "$log"

# ---- 6. shutdown: a second signal cancels at once -------------------------------
start_server second -g 20000 -r 20000 || exit 1
curl -s -o /dev/null --max-time 10 "$(url '/slow?ms=10000')" &
cpid=$!
wait_log 'start GET /slow?ms=10000'
t0=$(now_ms)
kill -TERM "$pid"
wait_log 'shutdown phase 1'
kill -INT "$pid"
wait_exit "$pid" 5000
dt=$(($(now_ms) - t0))
wait "$cpid"
check "second signal: exits 0 after ${dt} ms of a 20 s grace period (rc=$rc)" \
  [ "$rc" = 0 -a "$dt" -lt 3000 ]
check "log: phase 2 (second signal)" grep -q 'shutdown phase 2 (second signal)' "$log"

# ---- 7. load (wrk) while SIGTERM arrives: nothing accepted is lost --------------
# What "lost" means: a request the server accepted (its connection accepted
# and the request read: "start" in the log) that got no response, or a
# request that wrk sent on an established connection and that died without a
# response (a reset or a close under it: a read error or a timeout in wrk).
# Neither may happen. What may: once every listener is closed, the
# connections close after their next response (Connection: close) and wrk
# connects again, to be refused; wrk 4.1 reports a refused (non-blocking)
# connect as a *write* error, when it first writes. Those requests never
# reached the server, and a client may retry them anywhere. A connection
# still in a listener's queue when that listener closes would be reset by
# the kernel (a read error); the server avoids it by closing no connection
# until every loop's listener is closed, so no reconnect can land in a queue.
#
# load_test NAME THREADS: wrk -c16 on /slow?ms=50 (about 320 requests/s)
# against -t THREADS for 3 s; SIGTERM once the loops have answered 300
# requests between them: about 1 s into wrk's run. (Not 300/THREADS each: the
# kernel spreads wrk's 16 connections over the listeners by a hash, and a loop
# that got 2 of them answers about 120 in the whole run, so the wait timed
# out after wrk had ended and nothing was in flight at SIGTERM.) Each loop
# must still have answered some, checked at the end.
load_test() {
  local name=$1 threads=$2 grace=5000 i t0 dt wpid wrc loops=()
  start_server "$name" -t "$threads" -g $grace || return 1
  wrk -t2 -c16 -d3s "$(url '/slow?ms=50')" >"$work/$name.wrk" 2>&1 &
  wpid=$!
  for ((i = 1; i <= threads; i++)); do loops+=("w$i"); done
  wait_count "server\[w[0-9]*\]: .*: end 200" 300
  t0=$(now_ms)
  kill -TERM "$pid"
  wait_exit "$pid" $((grace + 2000))
  dt=$(($(now_ms) - t0))
  wait "$wpid"
  wrc=$?
  sed 's/^/  wrk: /' "$work/$name.wrk"
  local totals s_req s_resp s_shut s_to s_cancel w_req errors read_errors connect_errors
  totals=$(grep 'server\[main\]: loop closed' "$log" | sed -n 's/.* \([0-9]*\) requests, \([0-9]*\) responses (\([0-9]*\) during shutdown, \([0-9]*\) timed out), \([0-9]*\) cancelled/\1 \2 \3 \4 \5/p')
  read -r s_req s_resp s_shut s_to s_cancel <<<"${totals:-x x x x x}"
  w_req=$(sed -n 's/^ *\([0-9]*\) requests in .*/\1/p' "$work/$name.wrk")
  errors=$(sed -n 's/.*Socket errors: \(.*\)/\1/p' "$work/$name.wrk")
  read_errors=$(sed -n 's/.*Socket errors: .*read \([0-9]*\), .*timeout \([0-9]*\)/\1 \2/p' "$work/$name.wrk")
  connect_errors=$(sed -n 's/.*Socket errors: connect \([0-9]*\),.*/\1/p' "$work/$name.wrk")
  echo "  server: $s_req requests, $s_resp answered ($s_shut during shutdown), $s_cancel cancelled; wrk: ${w_req:-?} responses"
  check "$name: server exits 0 ${dt} ms after SIGTERM, within the grace period + 2 s (rc=$rc)" \
    [ "$rc" = 0 -a "$dt" -lt $((grace + 2000)) ]
  check "$name: every loop closed: uv_loop_close() = 0 on $threads workers and main" \
    [ "$(grep -c 'server\[w[0-9]*\]: loop closed: uv_loop_close() = 0;' "$log")" = "$threads" -a \
      "$(grep -c "server\[main\]: loop closed: uv_loop_close() = 0, every worker's too" "$log")" = 1 ]
  check "$name: wrk ran (rc=$wrc)" [ "$wrc" = 0 -a -n "$w_req" ]
  check "$name: no connect or read errors, no timeouts in wrk (${errors:-no socket errors}; write errors are refused reconnects once the listeners are closed)" \
    [ -z "$errors" -o \( "$read_errors" = "0 0" -a "$connect_errors" = 0 \) ]
  # (wrk first opens and closes one connection to try the address: 0 requests.)
  local n_after_response n_other n200
  n_after_response=$(grep -c 'closed: response sent, server stopping' "$log")
  n_other=$(grep ': closed: ' "$log" | grep -v -c -e 'closed: response sent, server stopping' \
    -e 'closed: client closed the connection (0 requests)')
  check "$name: every connection closed right after a response with Connection: close ($n_after_response, others $n_other)" \
    [ "$n_after_response" -gt 0 -a "$n_other" = 0 ]
  check "$name: no non-2xx response" bash -c "! grep -q 'Non-2xx' '$work/$name.wrk'"
  n200=$(grep -c ': end 200' "$log")
  check "$name: every request accepted was answered 200, none cancelled ($n200 of $s_req)" \
    [ "$s_req" = "$s_resp" -a "$n200" = "$s_resp" -a "$s_cancel" = 0 -a "$s_to" = 0 ]
  check "$name: requests in flight at SIGTERM completed during the grace period ($s_shut)" [ "$s_shut" -gt 0 ]
  check "$name: wrk received every response the server sent ($w_req = $s_resp)" [ "$w_req" = "$s_resp" ]
  for i in "${loops[@]}"; do
    check "$name: loop $i answered requests ($(grep -c "server\[$i\]: .*: end 200" "$log"))" \
      grep -q "server\[$i\]: .*: end 200" "$log"
  done
}
load_test load-t1 1
load_test load-t2 2

echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
