#!/usr/bin/env bash
# End-to-end test of the HTTP server sample's GET /metrics with a real
# Prometheus (Debian's prometheus, which also has promtool). Run by `make
# check` (automake TESTS) from the build directory, or by hand:
# test/prom-e2e.sh [BUILDDIR].
#
# The sample runs two loops with a 200 ms request deadline and a 60 s idle
# timeout; Prometheus, on a free loopback port with its own temporary
# storage, scrapes it every second. Then N requests that get 504 (and some
# that get 200), each on its own connection with Connection: close: the
# server closes each connection after its response (a cancel), no idle
# timeout fires, so exactly N contexts finish by a deadline (each 504's
# request). Through Prometheus' HTTP API the test waits for
# sum(uvctx_finished_total{reason="deadline"}), the 504 responses and the
# deadline delivery lags to go up by N, asks that each went up by exactly N,
# and waits for sum(uvctx_live_contexts) to come back to its value before the
# requests (Prometheus' own keep-alive connection and its request are in
# both).
# promtool check metrics validates the exposition.
#
# Prints one line per check and closes with "N passed, M failed"; exits 1 if
# any check failed. Bounded: about 10 s, at most about 40 s. E2E_KEEP=1 keeps
# the logs (the directory is printed at the end).
set -uo pipefail

builddir=${1:-${abs_top_builddir:-$PWD}}
SERVER=$builddir/samples/http-server/server
work=$(mktemp -d "${TMPDIR:-/tmp}/uvctx-prom-e2e.XXXXXX")
# shellcheck source=test/e2e-lib.sh
. "$(dirname "$0")/e2e-lib.sh"
cleanup_at_exit prom-e2e

need prom-e2e curl:curl prometheus:prometheus promtool:prometheus
if [[ ! -x $SERVER ]]; then
  echo "prom-e2e: $SERVER not built"
  echo "0 passed, 1 failed"
  exit 1
fi
give_up() {
  echo "prom-e2e: $*"
  echo "$pass passed, $((fail + 1)) failed"
  exit 1
}

# ---- the sample --------------------------------------------------------------
slog=$work/server.log
"$SERVER" -a 127.0.0.1 -p 0 -t 2 -r 200 -i 60000 -q 2>"$slog" &
spid=$!
pids+=("$spid")
port=
for ((i = 0; i < 100; i++)); do
  port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$slog")
  [[ -n $port ]] && break
  sleep 0.05
done
[[ -n $port ]] || give_up "the server did not start: $(cat "$slog")"

curl -s --max-time 5 -D "$work/headers" -o "$work/metrics.txt" \
  "http://127.0.0.1:$port/metrics"
check "GET /metrics says Content-Type: text/plain; version=0.0.4" \
  grep -qi '^Content-Type: text/plain; version=0.0.4' "$work/headers"
check "promtool check metrics accepts the exposition" \
  promtool check metrics <"$work/metrics.txt"
check "the exposition has a deadline delivery lag histogram" \
  grep -q '^uvctx_delivery_lag_seconds_bucket{path="deadline",le="+Inf"} ' \
  "$work/metrics.txt"

# ---- Prometheus ----------------------------------------------------------------
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: uvctx
    static_configs:
      - targets: ['127.0.0.1:$port']
EOF
promtool check config "$work/prometheus.yml" >/dev/null ||
  give_up "promtool rejects $work/prometheus.yml"

# Prometheus cannot listen on port 0: try a few random ports, skipping one that
# answers; a port taken between the probe and the bind makes it exit, and the
# next one is tried.
pport=
for ((try = 0; try < 5; try++)); do
  cand=$((20000 + RANDOM % 30000))
  (: <"/dev/tcp/127.0.0.1/$cand") 2>/dev/null && continue
  plog=$work/prometheus.$try.log
  prometheus --config.file="$work/prometheus.yml" \
    --storage.tsdb.path="$work/tsdb.$try" \
    --web.listen-address="127.0.0.1:$cand" --log.level=warn 2>"$plog" &
  ppid=$!
  pids+=("$ppid")
  for ((i = 0; i < 250; i++)); do # 5 s
    if curl -sf --max-time 1 -o /dev/null "http://127.0.0.1:$cand/-/ready"; then
      pport=$cand
      break 2
    fi
    kill -0 "$ppid" 2>/dev/null || break
    sleep 0.02
  done
  kill -TERM "$ppid" 2>/dev/null
  wait "$ppid" 2>/dev/null
done
[[ -n $pport ]] || give_up "prometheus did not start: $(cat "$plog")"
ok "prometheus ready on 127.0.0.1:$pport"

# query EXPR: the value of the instant query's single sample, or nothing
query() {
  curl -s --max-time 2 "http://127.0.0.1:$pport/api/v1/query" \
    --data-urlencode "query=$1" |
    sed -n 's/.*"value":\[[^,]*,"\([^"]*\)"\].*/\1/p'
}
# poll_until NAME TIMEOUT_MS CMD...: runs CMD every 100 ms until it succeeds
poll_until() {
  local name=$1 deadline=$(($(now_ms) + $2))
  shift 2
  until "$@"; do
    if (($(now_ms) > deadline)); then
      nok "$name"
      return 1
    fi
    sleep 0.1
  done
  ok "$name"
}
# The first scrapes take about 5 s after the start (service discovery).
scraped() { [[ $(query 'up{job="uvctx"}') == 1 ]]; }
poll_until "prometheus scraped the sample" 15000 scraped || give_up "no scrape"

q_deadline='sum(uvctx_finished_total{reason="deadline"})'
q_504='sum(http_responses_total{code="504"})'
q_lag='sum(uvctx_delivery_lag_seconds_count{path="deadline"})'
deadline0=$(query "$q_deadline")
r504_0=$(query "$q_504")
lag0=$(query "$q_lag")
live0=$(query 'sum(uvctx_live_contexts)')
echo "# before: deadline $deadline0, 504s $r504_0, deadline lags $lag0, live $live0"

# ---- the requests ---------------------------------------------------------------
n504=3
get() {
  curl -s -o /dev/null -w '%{http_code}\n' --max-time 5 -H 'Connection: close' \
    "http://127.0.0.1:$port$1" >>"$work/codes.$2"
}
clients=()
for ((i = 0; i < n504; i++)); do
  get '/slow?ms=1000' 504 &
  clients+=($!)
done
for ((i = 0; i < 5; i++)); do
  get / 200 &
  clients+=($!)
  get '/slow?ms=50' 200 &
  clients+=($!)
done
wait "${clients[@]}"
check "the $n504 /slow?ms=1000 requests got 504 ($(sort "$work/codes.504" | uniq -c | xargs))" \
  [ "$(grep -c '^504$' "$work/codes.504")" = "$n504" ]
check "the 10 others got 200 ($(sort "$work/codes.200" | uniq -c | xargs))" \
  [ "$(grep -c '^200$' "$work/codes.200")" = 10 ]

# ---- what Prometheus saw --------------------------------------------------------
# A scrape sums each worker's last published snapshot, and a worker publishes
# its uvctx statistics and its response counters when its timer says so, so
# one scrape can show a deadline counted and its 504 not yet (the watch that
# answers runs after the deadline is counted; a loaded machine widens that
# gap). Wait until every counter has reached its value, then ask that each is
# exactly that value: an extra deadline or response still fails.
want=$((deadline0 + n504))
want504=$((r504_0 + n504))
wantlag=$((lag0 + n504))
counted() { # leaves what it read in got_deadline, got_504 and got_lag
  got_deadline=$(query "$q_deadline")
  got_504=$(query "$q_504")
  got_lag=$(query "$q_lag")
  ((${got_deadline:-0} >= want && ${got_504:-0} >= want504 &&
    ${got_lag:-0} >= wantlag))
}
poll_until "the deadline, 504 and deadline lag counters went up by $n504 each" 10000 counted
check "$q_deadline is exactly $deadline0 + $n504: one per 504, no other deadline ($got_deadline)" \
  [ "$got_deadline" = "$want" ]
check "$q_504 went up by exactly $n504 ($r504_0 -> $got_504)" \
  [ "$got_504" = "$want504" ]
check "the deadline delivery lag histogram counted exactly $n504 more ($lag0 -> $got_lag)" \
  [ "$got_lag" = "$wantlag" ]
idle() { [[ $(query 'sum(uvctx_live_contexts)') == "$live0" ]]; }
poll_until "sum(uvctx_live_contexts) is back to its idle value $live0" 10000 idle

# ---- the end ----------------------------------------------------------------------
kill -TERM "$spid"
wait_exit "$spid" 10000
check "the server exits 0 after SIGTERM (rc=$rc)" [ "$rc" = 0 ]
kill -TERM "$ppid"
wait_exit "$ppid" 10000
check "prometheus exits 0 after SIGTERM (rc=$rc)" [ "$rc" = 0 ]

echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
