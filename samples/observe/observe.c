/* An observer that prints the life of every context of a loop, in order:
 * made, done (with uvctx_format's line: which event, where and from which
 * context), watches run, released. Then the loop's counters.
 *
 * The program makes a server root and one "request" per reason a context can
 * be done: a cancel call, its own deadline, its parent's deadline, another
 * thread's cancel, an any-context's parent, a signal, the three ways a
 * shutdown ends (asked again, grace period over, nothing left), and a parent
 * on another loop. Each request has a watch, standing in for the work it
 * would stop. Lines of the second loop start with "B". */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uvctx.h"

static uint64_t start_ms;

static const char *event_name(uvctx_event_t event) {
  switch (event) {
  case UVCTX_EVENT_MADE:
    return "made    ";
  case UVCTX_EVENT_DONE:
    return "done    ";
  case UVCTX_EVENT_RELEASED:
    return "released";
  default:
    return "watch   ";
  }
}

/* The observer: one line per event. uvctx_format() is one of the calls an
 * observer may make (it only reads). */
static void print_event(uvctx_event_t event, const uvctx_t *ctx, void *data) {
  char line[512];
  uvctx_format(ctx, line, sizeof line);
  printf("[%4llu ms] %s%s %s\n", (unsigned long long)(uvctx_now() - start_ms),
         data != NULL ? (const char *)data : "", event_name(event), line);
}

/* A request's context and the watch that stands for its work. */
typedef struct {
  uvctx_t *ctx;
  uvctx_watch_t w;
  int done;
} request_t;

static void on_done(uvctx_watch_t *w, int err) {
  request_t *r = w->data;
  (void)err;
  r->done = 1;
}

static void watch_request(request_t *r) {
  memset(&r->w, 0, sizeof r->w);
  r->w.data = r;
  r->done = 0;
  uvctx_watch(r->ctx, &r->w, on_done);
}

static void cancel_from_thread(void *arg) { uvctx_cancel(arg); }

/* Loop B, on a thread of its own: a request under a parent of loop A. It is
 * made while A waits, and A cancels the parent while B waits. */
typedef struct {
  uvctx_t *parent;
  uv_sem_t made, cancelled;
} cross_t;

static void run_until_done(uv_loop_t *loop, request_t *r);

static void loop_b(void *arg) {
  cross_t *x = arg;
  uv_loop_t b;
  request_t r;
  uv_loop_init(&b);
  uvctx_observe(&b, print_event, "B ");
  if (uvctx_with_cancel(&b, x->parent, &r.ctx) != 0)
    abort();
  uv_sem_post(&x->made);
  uv_sem_wait(&x->cancelled);
  watch_request(&r);
  run_until_done(&b, &r);
  uvctx_release(r.ctx);
  uv_run(&b, UV_RUN_DEFAULT);
  uvctx_observe(&b, NULL, NULL);
  uv_run(&b, UV_RUN_DEFAULT);
  if (uv_loop_close(&b) != 0)
    abort();
}

static void check(int err, const char *what) {
  if (err != 0) {
    fprintf(stderr, "observe: %s: %s\n", what, uv_strerror(err));
    exit(1);
  }
}

static void on_tick(uv_timer_t *tick) { (void)tick; }

/* Runs the loop until r's watch has run. A context's timers never keep the
 * loop alive: a ticking timer of our own does, meanwhile. */
static void run_until_done(uv_loop_t *loop, request_t *r) {
  uv_timer_t tick;
  uv_timer_init(loop, &tick);
  uv_timer_start(&tick, on_tick, 1, 1);
  while (!r->done)
    uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&tick, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
}

static void on_signal(uv_signal_t *handle, int signum) {
  (void)signum;
  uv_signal_stop(handle);
}

int main(void) {
  static const int usr1[] = {SIGUSR1};
  uv_loop_t loop;
  uvctx_t *server, *parent, *stopping, *sd, *sig;
  request_t r[9];
  uv_thread_t tid;
  uv_signal_t keep; /* the default action of SIGUSR1 is death */
  uvctx_stats_t st = {.size = sizeof st};

  start_ms = uvctx_now();
  uv_loop_init(&loop);
  check(uvctx_observe(&loop, print_event, NULL), "uvctx_observe");
  check(uvctx_with_cancel(&loop, uvctx_background(), &server), "server");

  puts("-- a cancel call");
  check(uvctx_with_cancel(&loop, server, &r[0].ctx), "request");
  watch_request(&r[0]);
  uvctx_cancel(r[0].ctx);
  run_until_done(&loop, &r[0]);

  puts("-- its own deadline, and its parent's");
  check(uvctx_with_timeout(&loop, server, 20, &parent), "parent");
  check(uvctx_with_timeout(&loop, server, 10, &r[1].ctx), "request");
  check(uvctx_with_cancel(&loop, parent, &r[2].ctx), "request");
  watch_request(&r[1]);
  watch_request(&r[2]);
  run_until_done(&loop, &r[1]);
  run_until_done(&loop, &r[2]);

  puts("-- a cancel from another thread");
  check(uvctx_with_cancel(&loop, server, &r[3].ctx), "request");
  watch_request(&r[3]);
  uv_thread_create(&tid, cancel_from_thread, r[3].ctx);
  uv_thread_join(&tid);
  run_until_done(&loop, &r[3]);

  puts("-- an any-context: the request, or the server's shutdown");
  {
    uvctx_t *parents[2];
    check(uvctx_with_cancel(&loop, server, &parents[0]), "request");
    check(uvctx_with_cancel(&loop, server, &parents[1]), "shutdown");
    check(uvctx_with_any(&loop, parents, 2, &r[4].ctx), "any");
    watch_request(&r[4]);
    uvctx_cancel(parents[1]);
    run_until_done(&loop, &r[4]);
    uvctx_release(parents[1]);
    uvctx_release(parents[0]);
  }

  puts("-- a signal");
  uv_signal_init(&loop, &keep);
  uv_signal_start(&keep, on_signal, SIGUSR1);
  check(uvctx_with_signal(&loop, server, usr1, 1, &sig), "signal");
  check(uvctx_with_cancel(&loop, sig, &r[5].ctx), "request");
  watch_request(&r[5]);
  uv_kill(uv_os_getpid(), SIGUSR1);
  run_until_done(&loop, &r[5]);
  uv_close((uv_handle_t *)&keep, NULL);

  puts("-- shutdown: begun, then asked again");
  check(uvctx_with_shutdown(&loop, server, NULL, 0, 60000, &stopping, &sd),
        "shutdown");
  check(uvctx_with_cancel(&loop, sd, &r[6].ctx), "request");
  watch_request(&r[6]);
  uvctx_shutdown(sd, 0);
  uvctx_shutdown(sd, 0);
  run_until_done(&loop, &r[6]);
  uvctx_release(r[6].ctx);
  uvctx_release(stopping);
  uvctx_release(sd);

  puts("-- shutdown: the grace period is over");
  check(uvctx_with_shutdown(&loop, server, NULL, 0, 10, &stopping, &sd),
        "shutdown");
  check(uvctx_with_cancel(&loop, sd, &r[7].ctx), "request");
  watch_request(&r[7]);
  uvctx_shutdown(sd, 0);
  run_until_done(&loop, &r[7]);
  uvctx_release(r[7].ctx);
  uvctx_release(stopping);
  uvctx_release(sd);

  puts("-- shutdown: nothing left, over early");
  check(uvctx_with_shutdown(&loop, server, NULL, 0, 60000, &stopping, &sd),
        "shutdown");
  r[8].ctx = uvctx_retain(sd);
  watch_request(&r[8]);
  uvctx_shutdown(sd, 0);
  run_until_done(&loop, &r[8]);
  uvctx_release(stopping);
  uvctx_release(sd);

  puts("-- a parent on another loop");
  {
    cross_t x;
    check(uvctx_with_cancel(&loop, server, &x.parent), "parent");
    uv_sem_init(&x.made, 0);
    uv_sem_init(&x.cancelled, 0);
    uv_thread_create(&tid, loop_b, &x);
    uv_sem_wait(&x.made);
    uvctx_cancel(x.parent);
    uv_sem_post(&x.cancelled);
    uv_thread_join(&tid);
    uv_sem_destroy(&x.made);
    uv_sem_destroy(&x.cancelled);
    uvctx_release(x.parent);
  }

  puts("-- the rest released");
  for (int i = 0; i < 9; i++)
    if (i < 6 || i == 8)
      uvctx_release(r[i].ctx);
  uvctx_release(sig);
  uvctx_release(parent);
  uvctx_release(server);
  uv_run(&loop, UV_RUN_DEFAULT);

  check(uvctx_loop_stats(&loop, &st), "uvctx_loop_stats");
  printf("stats: created %llu, released %llu, finished %llu (own event "
         "%llu, from a parent %llu, any %llu), watches run %llu, "
         "hand-offs %llu, deadlines %llu\n",
         (unsigned long long)st.created, (unsigned long long)st.released,
         (unsigned long long)st.finished,
         (unsigned long long)st.finished_via[UVCTX_VIA_SELF],
         (unsigned long long)st.finished_via[UVCTX_VIA_PARENT],
         (unsigned long long)st.finished_via[UVCTX_VIA_ANY],
         (unsigned long long)st.watches_run, (unsigned long long)st.handoffs,
         (unsigned long long)st.finished_by_reason[UVCTX_DONE_DEADLINE]);
  uvctx_observe(&loop, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  printf("uv_loop_close() = %d\n", uv_loop_close(&loop));
  return 0;
}
