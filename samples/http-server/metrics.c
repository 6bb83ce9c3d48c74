/* GET /metrics of the HTTP server sample: every worker loop's uvctx
 * statistics (uvctx_loop_stats) and its own request counters, summed over
 * the workers, in Prometheus' text exposition format 0.0.4.
 *
 * uvctx_loop_stats() may only be called on the loop's own thread, and a
 * scrape arrives on one worker's loop. So each worker publishes a snapshot
 * into its own slot, under its own lock, every METRICS_PUBLISH_MS (a timer
 * that keeps no loop alive), and a scrape publishes its own loop's first,
 * then copies every slot under its lock and adds them up. Nothing waits on
 * another loop: a scrape blocks a loop for a few copies of a snapshot. The
 * price is staleness: the other workers' numbers are at most
 * METRICS_PUBLISH_MS old (more if their loop is busy for longer), which is
 * far below any scrape interval. A worker whose loop is closed keeps its
 * last snapshot. The /metrics requests themselves are counted like any
 * other (http_requests_total, http_responses_total{code="200"}), and the
 * scrape's own connection and request contexts are live while it renders. */
#define _DEFAULT_SOURCE /* open_memstream */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

static const int http_codes[HTTP_NCODES] = HTTP_CODES;

static const uint64_t lag_bounds_us[UVCTX_LAG_BUCKETS - 1] = UVCTX_LAG_BOUNDS_US;

/* Label values, in snake case, indexed like the library's enums. */
static const char *const kind_names[UVCTX_KIND_COUNT] = {
    [UVCTX_KIND_CANCEL] = "cancel",     [UVCTX_KIND_DEADLINE] = "deadline",
    [UVCTX_KIND_SIGNAL] = "signal",     [UVCTX_KIND_ANY] = "any",
    [UVCTX_KIND_SHUTDOWN] = "shutdown",
};
static const char *const reason_names[UVCTX_DONE_REASON_COUNT] = {
    [UVCTX_DONE_CANCEL] = "cancel",
    [UVCTX_DONE_DEADLINE] = "deadline",
    [UVCTX_DONE_SIGNAL] = "signal",
    [UVCTX_DONE_SHUTDOWN_BEGAN] = "shutdown_began",
    [UVCTX_DONE_SHUTDOWN_GRACE] = "shutdown_grace",
    [UVCTX_DONE_SHUTDOWN_AGAIN] = "shutdown_again",
    [UVCTX_DONE_SHUTDOWN_IDLE] = "shutdown_idle",
};

static worker_t *all;
static unsigned nall;

int http_code_slot(int code) {
  int i;

  for (i = 0; i < HTTP_NCODES; i++)
    if (http_codes[i] == code)
      return i;
  abort(); /* respond() was given a code that is not in HTTP_CODES */
}

void metrics_init(worker_t *workers, unsigned n) {
  unsigned i;

  all = workers;
  nall = n;
  for (i = 0; i < n; i++)
    if (uv_mutex_init(&workers[i].published_lock) != 0)
      abort();
}

void metrics_destroy(void) {
  unsigned i;

  for (i = 0; i < nall; i++)
    uv_mutex_destroy(&all[i].published_lock);
}

/* On w's thread: copies its counters into its slot. */
static void publish(worker_t *w) {
  snapshot_t s;

  memset(&s, 0, sizeof(s));
  s.ctx.size = sizeof(s.ctx);
  /* UV_ENOENT: no context on the loop yet (or none left), nothing counted. */
  if (uvctx_loop_stats(&w->loop, &s.ctx) != 0)
    memset(&s.ctx, 0, sizeof(s.ctx));
  s.http = w->stats;
  s.conns_open = w->conns_open;
  s.in_flight = w->in_flight;
  uv_mutex_lock(&w->published_lock);
  w->published = s;
  uv_mutex_unlock(&w->published_lock);
}

static void on_publish(uv_timer_t *t) { publish(t->data); }

void metrics_start(worker_t *w) {
  uv_timer_init(&w->loop, &w->publish_timer);
  w->publish_timer.data = w;
  uv_timer_start(&w->publish_timer, on_publish, METRICS_PUBLISH_MS,
                 METRICS_PUBLISH_MS);
  uv_unref((uv_handle_t *)&w->publish_timer);
}

void metrics_stop(worker_t *w) {
  uv_close((uv_handle_t *)&w->publish_timer, NULL);
}

static void add_lags(uint64_t *sum, const uint64_t *lags) {
  int i;

  for (i = 0; i < UVCTX_LAG_BUCKETS; i++)
    sum[i] += lags[i];
}

/* Every worker's last snapshot, added up. */
static void sum_snapshots(snapshot_t *t) {
  snapshot_t s;
  unsigned i;
  int k;

  memset(t, 0, sizeof(*t));
  for (i = 0; i < nall; i++) {
    uv_mutex_lock(&all[i].published_lock);
    s = all[i].published;
    uv_mutex_unlock(&all[i].published_lock);
    for (k = 0; k < UVCTX_KIND_COUNT; k++)
      t->ctx.live[k] += s.ctx.live[k];
    t->ctx.created += s.ctx.created;
    for (k = 0; k < UVCTX_DONE_REASON_COUNT; k++)
      t->ctx.finished_by_reason[k] += s.ctx.finished_by_reason[k];
    t->ctx.watches_run += s.ctx.watches_run;
    t->ctx.handoffs += s.ctx.handoffs;
    add_lags(t->ctx.deadline_lag, s.ctx.deadline_lag);
    t->ctx.deadline_lag_sum_ns += s.ctx.deadline_lag_sum_ns;
    add_lags(t->ctx.cancel_lag, s.ctx.cancel_lag);
    t->ctx.cancel_lag_sum_ns += s.ctx.cancel_lag_sum_ns;
    t->http.conns += s.http.conns;
    t->http.requests += s.http.requests;
    for (k = 0; k < HTTP_NCODES; k++)
      t->http.by_code[k] += s.http.by_code[k];
    t->conns_open += s.conns_open;
    t->in_flight += s.in_flight;
  }
}

static void family(FILE *f, const char *name, const char *type,
                   const char *help) {
  fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One histogram series: the buckets made cumulative, +Inf, sum and count. */
static void lag_series(FILE *f, const char *path, const uint64_t *lags,
                       uint64_t sum_ns) {
  uint64_t n = 0;
  int i;

  for (i = 0; i < UVCTX_LAG_BUCKETS - 1; i++) {
    n += lags[i];
    fprintf(f,
            "uvctx_delivery_lag_seconds_bucket{path=\"%s\",le=\"%g\"} %llu\n",
            path, (double)lag_bounds_us[i] / 1e6, (unsigned long long)n);
  }
  n += lags[UVCTX_LAG_BUCKETS - 1];
  fprintf(f, "uvctx_delivery_lag_seconds_bucket{path=\"%s\",le=\"+Inf\"} %llu\n",
          path, (unsigned long long)n);
  fprintf(f, "uvctx_delivery_lag_seconds_sum{path=\"%s\"} %.9f\n", path,
          (double)sum_ns / 1e9);
  fprintf(f, "uvctx_delivery_lag_seconds_count{path=\"%s\"} %llu\n", path,
          (unsigned long long)n);
}

char *metrics_render(worker_t *w) {
  snapshot_t t;
  char *out = NULL;
  size_t len;
  FILE *f;
  int k;

  publish(w); /* this loop's numbers are the scrape's own: fresh */
  sum_snapshots(&t);
  if ((f = open_memstream(&out, &len)) == NULL)
    return NULL;

  family(f, "uvctx_live_contexts", "gauge",
         "Cancellable contexts made and not yet released, by kind.");
  for (k = 0; k < UVCTX_KIND_COUNT; k++)
    fprintf(f, "uvctx_live_contexts{kind=\"%s\"} %llu\n", kind_names[k],
            (unsigned long long)t.ctx.live[k]);
  family(f, "uvctx_created_total", "counter",
         "Cancellable contexts made.");
  fprintf(f, "uvctx_created_total %llu\n", (unsigned long long)t.ctx.created);
  family(f, "uvctx_finished_total", "counter",
         "Contexts that became done, by the event at their origin.");
  for (k = 1; k < UVCTX_DONE_REASON_COUNT; k++)
    fprintf(f, "uvctx_finished_total{reason=\"%s\"} %llu\n", reason_names[k],
            (unsigned long long)t.ctx.finished_by_reason[k]);
  family(f, "uvctx_watch_callbacks_total", "counter",
         "Watch, drain and close/cancel-on-done callbacks run.");
  fprintf(f, "uvctx_watch_callbacks_total %llu\n",
          (unsigned long long)t.ctx.watches_run);
  family(f, "uvctx_handoffs_total", "counter",
         "Hand-offs from other threads taken from the loops' mailboxes.");
  fprintf(f, "uvctx_handoffs_total %llu\n", (unsigned long long)t.ctx.handoffs);
  family(f, "uvctx_delivery_lag_seconds", "histogram",
         "From a deadline, or a cancel on another thread, to the loop acting "
         "on it.");
  lag_series(f, "deadline", t.ctx.deadline_lag, t.ctx.deadline_lag_sum_ns);
  lag_series(f, "cancel", t.ctx.cancel_lag, t.ctx.cancel_lag_sum_ns);

  family(f, "http_connections_total", "counter", "Connections accepted.");
  fprintf(f, "http_connections_total %lu\n", t.http.conns);
  family(f, "http_connections_open", "gauge", "Connections open.");
  fprintf(f, "http_connections_open %u\n", t.conns_open);
  family(f, "http_requests_total", "counter",
         "Requests received, GET /metrics included.");
  fprintf(f, "http_requests_total %lu\n", t.http.requests);
  family(f, "http_requests_in_flight", "gauge",
         "Requests received and not answered yet.");
  fprintf(f, "http_requests_in_flight %u\n", t.in_flight);
  family(f, "http_responses_total", "counter", "Responses sent, by code.");
  for (k = 0; k < HTTP_NCODES; k++)
    fprintf(f, "http_responses_total{code=\"%d\"} %lu\n", http_codes[k],
            t.http.by_code[k]);
  if (fclose(f) != 0) {
    free(out);
    return NULL;
  }
  return out;
}
