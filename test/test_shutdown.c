/* Two-phase shutdown: uvctx_with_shutdown and uvctx_shutdown.
 *
 *   phase 1: *stopping is done (stop accepting), the grace period starts;
 *   phase 2: *out is done (grace period over: UV_ETIMEDOUT, or shutdown asked
 *            for again: UV_ECANCELED, or its parent is done, or nothing but
 *            *stopping is left below it: UV_ECANCELED, over early).
 *
 * Because an idle tree is over as soon as phase 1 begins, a test about the
 * grace period gives *out an in-flight "request" (mk_request) and releases it
 * at the end, or when its story says the request finishes.
 *
 * The grace timer is unref'd like every uvctx handle, so a test that waits
 * for it keeps the loop alive with run_until() (a ref'd polling timer of its
 * own that gives up after about 3 s). Signals are sent to this process; a
 * "catcher" of the test's own is started for each signal it sends, so that a
 * signal that uvctx no longer listens for never kills the test. */
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "test.h"

/* Not POSIX; glibc's value (signals 1..64). */
#ifndef NSIG
#define NSIG 65
#endif

/* ---------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------- */

static int key_a; /* keys compare by address */

/* An in-flight request: a cancel child of out, keeps the grace period going
 * until it is released. */
static uvctx_t *mk_request(uv_loop_t *loop, uvctx_t *out) {
  return mk_cancel(loop, out);
}

/* Returns *out and stores *stopping. */
static uvctx_t *mk_shutdown(uv_loop_t *loop, uvctx_t *parent,
                            const int *signums, size_t count, uint64_t grace_ms,
                            uvctx_t **stopping) {
  uvctx_t *out = NULL;
  *stopping = NULL;
  ck_assert_int_eq(uvctx_with_shutdown(loop, parent, signums, count, grace_ms,
                                       stopping, &out),
                   0);
  ck_assert_ptr_nonnull(out);
  ck_assert_ptr_nonnull(*stopping);
  ck_assert_ptr_ne(out, *stopping);
  return out;
}

/* The fixture of most tests: a loop with a shutdown context out and its
 * stopping context, a journal for the test's recs and, with IN_FLIGHT, a
 * request under out that keeps the grace period going until the test drops it
 * (an IDLE tree has none: its shutdown is over at once). Out is a child of the
 * background, or, with UNDER_PARENT, of a cancel context `parent`. sd_end()
 * releases what the test did not drop, request first, and checks that the
 * loop closes. */
typedef struct {
  uv_loop_t loop;
  journal_t j;
  uvctx_t *out;
  uvctx_t *stopping;
  uvctx_t *req;
  uvctx_t *parent;
} sd_t;

enum { IDLE = 0, IN_FLIGHT = 1, UNDER_PARENT = 2 };

/* As sd_begin(), listening for count signals. */
static void sd_begin_on(sd_t *s, const int *signums, size_t count,
                        uint64_t grace_ms, int flags) {
  memset(s, 0, sizeof *s);
  ck_assert_int_eq(uv_loop_init(&s->loop), 0);
  if (flags & UNDER_PARENT)
    s->parent = mk_cancel(&s->loop, uvctx_background());
  s->out = mk_shutdown(&s->loop, s->parent ? s->parent : uvctx_background(),
                       signums, count, grace_ms, &s->stopping);
  if (flags & IN_FLIGHT)
    s->req = mk_request(&s->loop, s->out);
}

static void sd_begin(sd_t *s, uint64_t grace_ms, int flags) {
  sd_begin_on(s, NULL, 0, grace_ms, flags);
}

/* Releases *c and forgets it, so that sd_end() does not release it again. */
static void drop(uvctx_t **c) {
  uvctx_release(*c);
  *c = NULL;
}

static void sd_end(sd_t *s) {
  release_all(s->req, s->stopping, s->out, s->parent);
  ASSERT_LOOP_CLOSES(&s->loop);
}

/* ---------------------------------------------------------------------------
 * Phase 1 by uvctx_shutdown
 * ------------------------------------------------------------------------- */

START_TEST(neither_is_done_before_shutdown_begins) {
  sd_t s;
  sd_begin(&s, 5, IDLE);
  /* The grace period only starts with the shutdown: 5 ms after creation
   * nothing has happened. */
  run_for(&s.loop, 20);
  ck_assert_int_eq(uvctx_err(s.stopping), 0);
  ck_assert_int_eq(uvctx_err(s.out), 0);
  sd_end(&s);
}
END_TEST

START_TEST(first_shutdown_finishes_stopping_with_its_cause_not_out) {
  sd_t s;
  sd_begin(&s, 60000, IN_FLIGHT);

  ck_assert_int_eq(uvctx_shutdown(s.out, UV_ESHUTDOWN), 0);
  ck_assert_int_eq(uvctx_err(s.stopping), UV_ECANCELED);
  ck_assert_int_eq(uvctx_cause(s.stopping), UV_ESHUTDOWN);
  ck_assert_int_eq(uvctx_err(s.out), 0);
  ck_assert_int_eq(uvctx_cause(s.out), 0);
  uv_run(&s.loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(uvctx_err(s.out), 0);

  sd_end(&s);
}
END_TEST

START_TEST(first_shutdown_without_cause_gives_stopping_ecanceled_as_cause) {
  sd_t s;
  sd_begin(&s, 60000, IDLE);
  ck_assert_int_eq(uvctx_shutdown(s.out, 0), 0);
  ck_assert_int_eq(uvctx_err(s.stopping), UV_ECANCELED);
  ck_assert_int_eq(uvctx_cause(s.stopping), UV_ECANCELED);
  sd_end(&s);
}
END_TEST

START_TEST(stopping_watches_run_in_phase_1_and_out_watches_do_not) {
  rec_t ps, po;
  sd_t s;
  sd_begin(&s, 60000, IN_FLIGHT);
  rec_watch(&po, &s.j, s.out);
  rec_watch(&ps, &s.j, s.stopping);

  ck_assert_int_eq(uvctx_shutdown(s.out, UV_ESHUTDOWN), 0);
  ck_assert_int_eq(s.j.ran, 0); /* never inside the call */
  uv_run(&s.loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(ps.calls, 1);
  ck_assert_int_eq(ps.err, UV_ECANCELED);
  ck_assert_int_eq(ps.cause, UV_ESHUTDOWN);
  ck_assert_int_eq(po.calls, 0);

  ck_assert_int_eq(uvctx_shutdown(s.out, 0), 0);
  uv_run(&s.loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(po.calls, 1);
  ck_assert_int_eq(ps.calls, 1);

  sd_end(&s);
}
END_TEST

START_TEST(grace_timer_does_not_keep_the_loop_alive) {
  stop_guard_t g;
  sd_t s;
  sd_begin(&s, 60000, IN_FLIGHT);
  ck_assert_int_eq(uvctx_shutdown(s.out, 0), 0);
  stop_guard_start(&s.loop, &g, 200);
  ck_assert_int_eq(uv_run(&s.loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(g.fired, 0);
  ck_assert_int_eq(uvctx_err(s.out), 0);
  stop_guard_close(&g);
  sd_end(&s);
}
END_TEST

START_TEST(keepalive_makes_the_grace_timer_keep_the_loop_alive) {
  stop_guard_t g;
  sd_t s;
  sd_begin(&s, 10, IN_FLIGHT);
  ck_assert_int_eq(uvctx_keepalive(s.out, 1), 0);
  ck_assert_int_eq(uvctx_shutdown(s.out, 0), 0);
  stop_guard_start(&s.loop, &g, 2000);
  uv_run(&s.loop, UV_RUN_DEFAULT); /* returns once the grace period is over */
  ck_assert_int_eq(g.fired, 0);
  ck_assert_int_eq(uvctx_err(s.out), UV_ETIMEDOUT);
  stop_guard_close(&g);
  sd_end(&s);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Phase 2: grace period over, or asked for again
 * ------------------------------------------------------------------------- */

START_TEST(grace_period_finishes_out_with_etimedout) {
  rec_t po;
  sd_t s;
  sd_begin(&s, 10, IN_FLIGHT);
  rec_watch(&po, &s.j, s.out);
  ck_assert_int_eq(uvctx_shutdown(s.out, UV_ESHUTDOWN), 0);
  ck_assert(run_until(&s.loop, &po.calls, 1));
  ck_assert_int_eq(po.err, UV_ETIMEDOUT);
  ck_assert_int_eq(uvctx_err(s.out), UV_ETIMEDOUT);
  ck_assert_int_ne(uvctx_cause(s.out), 0);
  ck_assert_int_eq(uvctx_err(s.req), UV_ETIMEDOUT);
  ck_assert_int_eq(uvctx_err(s.stopping), UV_ECANCELED); /* unchanged */
  ck_assert_int_eq(uvctx_cause(s.stopping), UV_ESHUTDOWN);
  sd_end(&s);
}
END_TEST

START_TEST(grace_period_never_ends_before_grace_ms) {
  uv_loop_t loop;
  rec_t po;
  uvctx_t *stopping;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  for (int round = 0; round < 5; round++) {
    uint64_t grace = 3 + (uint64_t)round * 4;
    uvctx_t *out =
        mk_shutdown(&loop, uvctx_background(), NULL, 0, grace, &stopping);
    uvctx_t *req = mk_request(&loop, out);
    rec_watch(&po, NULL, out);
    /* Let libuv's cached time go stale before the shutdown begins. */
    run_for(&loop, 2);
    uint64_t t0 = uvctx_now();
    ck_assert_int_eq(uvctx_shutdown(out, 0), 0);
    ck_assert(run_until(&loop, &po.calls, 1));
    ck_assert_int_eq(po.err, UV_ETIMEDOUT);
    ck_assert_uint_ge(po.now, t0 + grace);
    release_all(req, stopping, out);
  }
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(second_shutdown_finishes_out_at_once_with_ecanceled) {
  rec_t po;
  sd_t s;
  sd_begin(&s, 60000, IN_FLIGHT);
  rec_watch(&po, &s.j, s.out);
  ck_assert_int_eq(uvctx_shutdown(s.out, UV_ESHUTDOWN), 0);
  ck_assert_int_eq(uvctx_err(s.out), 0);
  ck_assert_int_eq(uvctx_shutdown(s.out, UV_EPIPE), 0);
  ck_assert_int_eq(uvctx_err(s.out), UV_ECANCELED);
  ck_assert_int_eq(uvctx_cause(s.out), UV_EPIPE);
  ck_assert_int_eq(uvctx_cause(s.req), UV_EPIPE);
  ck_assert_int_eq(uvctx_cause(s.stopping), UV_ESHUTDOWN); /* unchanged */
  uv_run(&s.loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(po.calls, 1);
  ck_assert_int_eq(po.err, UV_ECANCELED);
  sd_end(&s);
}
END_TEST

START_TEST(shutdown_after_out_is_done_is_ealready) {
  sd_t s;
  sd_begin(&s, 60000, IN_FLIGHT);
  ck_assert_int_eq(uvctx_shutdown(s.out, 0), 0);
  ck_assert_int_eq(uvctx_shutdown(s.out, 0), 0);
  ck_assert_int_eq(uvctx_shutdown(s.out, 0), UV_EALREADY);
  ck_assert_int_eq(uvctx_shutdown(s.out, UV_EIO), UV_EALREADY);
  ck_assert_int_eq(uvctx_cause(s.out), UV_ECANCELED); /* unchanged */
  sd_end(&s);
}
END_TEST

START_TEST(shutdown_after_the_grace_period_is_ealready) {
  rec_t po;
  sd_t s;
  sd_begin(&s, 5, IN_FLIGHT);
  rec_watch(&po, &s.j, s.out);
  ck_assert_int_eq(uvctx_shutdown(s.out, 0), 0);
  ck_assert(run_until(&s.loop, &po.calls, 1));
  ck_assert_int_eq(uvctx_shutdown(s.out, 0), UV_EALREADY);
  ck_assert_int_eq(uvctx_err(s.out), UV_ETIMEDOUT);
  drop(&s.req);
  ck_assert_int_eq(uvctx_err(s.out), UV_ETIMEDOUT); /* not moved by the drain */
  sd_end(&s);
}
END_TEST

START_TEST(children_of_out_are_cancelled_in_phase_2_not_phase_1) {
  rec_t pc, pv;
  sd_t s;
  sd_begin(&s, 60000, IDLE);
  uvctx_t *conn = mk_cancel(&s.loop, s.out);
  uvctx_t *req = mk_value(conn, &key_a, NULL);
  rec_watch(&pc, &s.j, conn);
  rec_watch(&pv, &s.j, req);

  ck_assert_int_eq(uvctx_shutdown(s.out, 0), 0);
  uv_run(&s.loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(uvctx_err(conn), 0);
  ck_assert_int_eq(uvctx_err(req), 0);
  ck_assert_int_eq(s.j.ran, 0);

  ck_assert_int_eq(uvctx_shutdown(s.out, UV_EPIPE), 0);
  ck_assert_int_eq(uvctx_err(conn), UV_ECANCELED);
  ck_assert_int_eq(uvctx_cause(req), UV_EPIPE);
  uv_run(&s.loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(pc.calls, 1);
  ck_assert_int_eq(pv.calls, 1);

  release_all(req, conn);
  sd_end(&s);
}
END_TEST

START_TEST(children_of_out_get_etimedout_when_the_grace_period_ends) {
  rec_t pc;
  sd_t s;
  sd_begin(&s, 5, IDLE);
  uvctx_t *conn = mk_cancel(&s.loop, s.out);
  rec_watch(&pc, &s.j, conn);
  ck_assert_int_eq(uvctx_shutdown(s.out, 0), 0);
  ck_assert(run_until(&s.loop, &pc.calls, 1));
  ck_assert_int_eq(pc.err, UV_ETIMEDOUT);
  uvctx_release(conn);
  sd_end(&s);
}
END_TEST

START_TEST(children_of_stopping_are_cancelled_in_phase_1) {
  rec_t pa;
  sd_t s;
  sd_begin(&s, 60000, IDLE);
  uvctx_t *accepting = mk_cancel(&s.loop, s.stopping);
  rec_watch(&pa, &s.j, accepting);
  ck_assert_int_eq(uvctx_shutdown(s.out, UV_ESHUTDOWN), 0);
  ck_assert_int_eq(uvctx_err(accepting), UV_ECANCELED);
  ck_assert_int_eq(uvctx_cause(accepting), UV_ESHUTDOWN);
  uv_run(&s.loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(pa.calls, 1);
  uvctx_release(accepting);
  sd_end(&s);
}
END_TEST

/* ---------------------------------------------------------------------------
 * The parent
 * ------------------------------------------------------------------------- */

START_TEST(parent_done_finishes_both) {
  rec_t ps, po;
  sd_t s;
  sd_begin(&s, 60000, UNDER_PARENT);
  rec_watch(&ps, &s.j, s.stopping);
  rec_watch(&po, &s.j, s.out);

  ck_assert_int_eq(uvctx_cancel_cause(s.parent, UV_EPIPE), 0);
  assert_done(s.out, UV_ECANCELED, UV_EPIPE);
  assert_done(s.stopping, UV_ECANCELED, UV_EPIPE);
  uv_run(&s.loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(po.calls, 1);
  ck_assert_int_eq(ps.calls, 1);
  ck_assert_int_lt(po.seq, ps.seq); /* stopping is a child of out */
  ck_assert_int_eq(uvctx_shutdown(s.out, 0), UV_EALREADY);
  sd_end(&s);
}
END_TEST

START_TEST(parent_done_during_the_grace_period_finishes_out) {
  sd_t s;
  sd_begin(&s, 60000, UNDER_PARENT | IN_FLIGHT);
  ck_assert_int_eq(uvctx_shutdown(s.out, UV_ESHUTDOWN), 0);
  ck_assert_int_eq(uvctx_err(s.out), 0);
  ck_assert_int_eq(uvctx_cancel_cause(s.parent, UV_EPIPE), 0);
  assert_done(s.out, UV_ECANCELED, UV_EPIPE);
  ck_assert_int_eq(uvctx_cause(s.req), UV_EPIPE);
  ck_assert_int_eq(uvctx_cause(s.stopping), UV_ESHUTDOWN); /* unchanged */
  ck_assert_int_eq(uvctx_shutdown(s.out, 0), UV_EALREADY);
  sd_end(&s);
}
END_TEST

START_TEST(parent_already_done_gives_both_born_done) {
  uv_loop_t loop;
  uvctx_t *stopping;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(uvctx_cancel_cause(parent, UV_EIO), 0);
  uvctx_t *out = mk_shutdown(&loop, parent, NULL, 0, 60000, &stopping);
  ck_assert_int_eq(uvctx_err(out), UV_ECANCELED);
  ck_assert_int_eq(uvctx_err(stopping), UV_ECANCELED);
  ck_assert_int_eq(uvctx_cause(out), UV_EIO);
  ck_assert_int_eq(uvctx_cause(stopping), UV_EIO);
  ck_assert_int_eq(uvctx_shutdown(out, 0), UV_EALREADY);
  release_all(stopping, out, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Signals
 * ------------------------------------------------------------------------- */

/* Shutdowns moved by signals, one row each. Phase 1 begins with a signal, or
 * (0) with uvctx_shutdown(out, UV_ESHUTDOWN). Phase 2 comes from a signal sent
 * from stopping's callback (so that the two are never pending at once, which
 * the kernel would merge), from a signal or a call once phase 1 is seen, or
 * from the grace period running out; an idle tree's shutdown is over at
 * once. uvctx_signal_received(out) is the first signal, whatever it did. */
typedef struct {
  int signums[2];
  size_t count;
  uint64_t grace_ms;
  int in_flight;    /* IN_FLIGHT or IDLE */
  int begin_signal; /* 0: a call begins it */
  int relay_signal; /* sent from stopping's callback; 0: none */
  int end_signal;   /* sent once phase 1 is seen; 0: none */
  int end_by_call;  /* uvctx_shutdown(out, 0) once phase 1 is seen */
  int out_err;
  int received; /* uvctx_signal_received(out) at the end */
} sigseq_t;

static const sigseq_t sigseqs[] = {
    /* The first signal begins the shutdown; a call then ends it. */
    {{SIGUSR2}, 1, 60000, IN_FLIGHT, SIGUSR2, 0, 0, 1, UV_ECANCELED, SIGUSR2},
    /* A second signal ends the grace period at once. */
    {{SIGUSR2}, 1, 60000, IN_FLIGHT, SIGUSR2, SIGUSR2, 0, 0, UV_ECANCELED,
     SIGUSR2},
    /* Either of two signals begins it and the other ends it. */
    {{SIGUSR1, SIGUSR2}, 2, 60000, IN_FLIGHT, SIGUSR2, SIGUSR1, 0, 0,
     UV_ECANCELED, SIGUSR2},
    /* A call begins it and a signal ends the grace period. */
    {{SIGHUP}, 1, 60000, IN_FLIGHT, 0, 0, SIGHUP, 0, UV_ECANCELED, SIGHUP},
    /* A signal begins it and the grace period runs out. */
    {{SIGUSR1}, 1, 10, IN_FLIGHT, SIGUSR1, 0, 0, 0, UV_ETIMEDOUT, SIGUSR1},
    /* A signal to an idle tree finishes out at once. */
    {{SIGUSR1}, 1, 60000, IDLE, SIGUSR1, 0, 0, 0, UV_ECANCELED, SIGUSR1},
};

/* A rec's action: sends the signal its arg points to. */
static void send_arg_signal(rec_t *r) { send_signal(*(const int *)r->arg); }

START_TEST(signals_move_the_shutdown_through_its_phases) {
  const sigseq_t *q = &sigseqs[_i];
  rec_t ps, po;
  catcher_t own[2];
  sd_t s;
  sd_begin_on(&s, q->signums, q->count, q->grace_ms, q->in_flight);
  for (size_t k = 0; k < q->count; k++)
    catcher_start(&own[k], &s.loop, q->signums[k]);
  rec_watch(&ps, &s.j, s.stopping);
  rec_watch(&po, &s.j, s.out);
  if (q->relay_signal != 0) {
    ps.action = send_arg_signal;
    ps.arg = (void *)&q->relay_signal;
  }
  ck_assert_int_eq(uvctx_signal_received(s.stopping), 0);
  ck_assert_int_eq(uvctx_signal_received(s.out), 0);

  uint64_t t0 = uvctx_now();
  if (q->begin_signal != 0)
    send_signal(q->begin_signal);
  else
    ck_assert_int_eq(uvctx_shutdown(s.out, UV_ESHUTDOWN), 0);
  ck_assert(run_until(&s.loop, &ps.calls, 1));
  ck_assert_int_eq(ps.err, UV_ECANCELED);
  if (q->end_signal != 0 || q->end_by_call) { /* phase 1 alone, for now */
    ck_assert_int_eq(uvctx_err(s.out), 0);
    ck_assert_int_eq(uvctx_signal_received(s.out), q->begin_signal);
    if (q->end_signal != 0)
      send_signal(q->end_signal);
    if (q->end_by_call) {
      ck_assert_int_eq(uvctx_shutdown(s.out, 0), 0);
      ck_assert_int_eq(uvctx_err(s.out), UV_ECANCELED);
    }
  }
  ck_assert(run_until(&s.loop, &po.calls, 1));
  ck_assert_int_eq(ps.calls, 1);
  ck_assert_int_lt(ps.seq, po.seq);
  ck_assert_int_eq(po.err, q->out_err);
  if (q->out_err == UV_ETIMEDOUT)
    ck_assert_uint_ge(po.now, t0 + q->grace_ms);
  if (!q->in_flight)
    ck_assert_int_eq(po.cause, UV_ECANCELED);
  else
    ck_assert_int_eq(uvctx_err(s.req), q->out_err);
  ck_assert_int_eq(uvctx_signal_received(s.out), q->received);
  ck_assert_int_eq(uvctx_shutdown(s.out, 0), UV_EALREADY);

  for (size_t k = 0; k < q->count; k++)
    catcher_close(&own[k]);
  sd_end(&s);
}
END_TEST

START_TEST(released_shutdown_context_stops_listening) {
  static const int sigs[] = {SIGUSR1};
  catcher_t own;
  sd_t s;
  sd_begin_on(&s, sigs, 1, 60000, IDLE);
  drop(&s.stopping);
  drop(&s.out);
  uv_run(&s.loop, UV_RUN_DEFAULT);
  catcher_start(&own, &s.loop, SIGUSR1);
  send_signal(SIGUSR1);
  ck_assert(run_until(&s.loop, &own.got, 1));
  catcher_close(&own);
  sd_end(&s);
}
END_TEST

START_TEST(shutdown_with_signals_does_not_keep_the_loop_alive) {
  static const int sigs[] = {SIGUSR1, SIGUSR2};
  stop_guard_t g;
  sd_t s;
  sd_begin_on(&s, sigs, 2, 60000, IDLE);
  stop_guard_start(&s.loop, &g, 200);
  ck_assert_int_eq(uv_run(&s.loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(g.fired, 0);
  stop_guard_close(&g);
  sd_end(&s);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Another thread
 * ------------------------------------------------------------------------- */

typedef struct {
  uv_async_t async; /* ref'd: keeps the loop polling until the worker ends */
  uv_thread_t tid;
  uvctx_t *out;
  int rc1;
  int rc2;
  int err_between; /* uvctx_err(out) after the first call, on the worker */
  int stopping_err;
  uvctx_t *stopping;
} worker_t;

static void worker_async_cb(uv_async_t *a) {
  worker_t *wk = a->data;
  ck_assert_int_eq(uv_thread_join(&wk->tid), 0);
  uv_close((uv_handle_t *)a, NULL);
}

static void worker_main(void *arg) {
  worker_t *wk = arg;
  wk->rc1 = uvctx_shutdown(wk->out, UV_ESHUTDOWN);
  wk->stopping_err = uvctx_err(wk->stopping);
  wk->err_between = uvctx_err(wk->out);
  wk->rc2 = uvctx_shutdown(wk->out, UV_EPIPE);
  uv_async_send(&wk->async);
}

/* Starts main on a thread of its own, with out and stopping of s; the loop
 * joins it when its async arrives. */
static void worker_start(worker_t *wk, sd_t *s, uv_thread_cb main) {
  memset(wk, 0, sizeof *wk);
  wk->out = s->out;
  wk->stopping = s->stopping;
  ck_assert_int_eq(uv_async_init(&s->loop, &wk->async, worker_async_cb), 0);
  wk->async.data = wk;
  ck_assert_int_eq(uv_thread_create(&wk->tid, main, wk), 0);
}

START_TEST(shutdown_from_another_thread_moves_both_phases) {
  rec_t ps, po;
  worker_t wk;
  sd_t s;
  sd_begin(&s, 60000, IN_FLIGHT); /* only the second call ends it */
  rec_watch(&ps, &s.j, s.stopping);
  rec_watch(&po, &s.j, s.out);

  worker_start(&wk, &s, worker_main);
  ck_assert(run_until(&s.loop, &s.j.ran, 2));
  uv_run(&s.loop, UV_RUN_DEFAULT); /* the worker's async */

  ck_assert_int_eq(wk.rc1, 0);
  ck_assert_int_eq(wk.stopping_err, UV_ECANCELED);
  ck_assert_int_eq(wk.err_between, 0);
  ck_assert_int_eq(wk.rc2, 0);
  ck_assert_int_eq(ps.calls, 1);
  ck_assert_int_eq(po.calls, 1);
  ck_assert_int_eq(ps.cause, UV_ESHUTDOWN);
  ck_assert_int_eq(po.cause, UV_EPIPE);

  sd_end(&s);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Release at every stage
 * ------------------------------------------------------------------------- */

START_TEST(release_before_shutdown_closes_the_loop_in_either_order) {
  uv_loop_t loop;
  uvctx_t *stopping;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *out =
      mk_shutdown(&loop, uvctx_background(), NULL, 0, 60000, &stopping);
  release_all(out, stopping);
  out = mk_shutdown(&loop, uvctx_background(), NULL, 0, 60000, &stopping);
  release_all(stopping, out);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(release_during_the_grace_period_closes_the_loop) {
  sd_t s;
  sd_begin(&s, 50, IN_FLIGHT);
  ck_assert_int_eq(uvctx_shutdown(s.out, 0), 0);
  uv_run(&s.loop, UV_RUN_NOWAIT);
  ck_assert_int_eq(uvctx_err(s.out), 0); /* the grace period runs */
  drop(&s.stopping);
  drop(&s.out);
  sd_end(&s);
}
END_TEST

START_TEST(stopping_released_early_does_not_stop_the_shutdown) {
  rec_t po;
  sd_t s;
  sd_begin(&s, 5, IN_FLIGHT);
  rec_watch(&po, &s.j, s.out);
  drop(&s.stopping); /* nobody listens for phase 1 */
  uv_run(&s.loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(uvctx_shutdown(s.out, 0), 0);
  ck_assert_int_eq(uvctx_err(s.out), 0);
  ck_assert(run_until(&s.loop, &po.calls, 1));
  ck_assert_int_eq(po.err, UV_ETIMEDOUT);
  sd_end(&s);
}
END_TEST

/* ---------------------------------------------------------------------------
 * With uvctx_drain: the whole graceful shutdown of a server
 *
 * A listener (a ref'd 1 ms timer) accepts a request on every tick; each
 * request is a child of *out (a connection context with a value context
 * under it) served by a ref'd timer of its own. Phase 1 closes the listener
 * and releases *stopping; the requests in flight finish and are released,
 * and *out is over as soon as the last one is (or when the grace period is).
 * ------------------------------------------------------------------------- */

enum { MAX_REQS = 8 };

typedef struct server_s server_t;

typedef struct {
  server_t *srv;
  uv_timer_t t;
  uvctx_t *conn;
  uvctx_t *req;
  uvctx_watch_t w; /* cancels the work if the request is cancelled */
  int live;
} request_t;

struct server_s {
  uv_loop_t *loop;
  uvctx_t *out;
  uvctx_t *stopping;
  uint64_t request_ms;
  uv_timer_t listener;
  uv_timer_t trigger;
  uvctx_watch_t stop_w;
  uvctx_watch_t drain_w;
  request_t reqs[MAX_REQS];
  int accepted;
  int inflight;
  int completed;
  int cancelled;
  int cancel_err;
  int released;
  uint64_t t0; /* uvctx_now() before the shutdown began */
  int drained;
  int drain_err;
  int drain_cause;
  int inflight_at_drain;
  int released_at_drain;
  uint64_t drain_at;
};

static void request_closed(uv_handle_t *h) { (void)h; }

static void request_end(request_t *r) {
  server_t *s = r->srv;
  r->live = 0;
  uv_close((uv_handle_t *)&r->t, request_closed);
  release_all(r->req, r->conn);
  s->released++;
  s->inflight--;
}

static void request_done(uv_timer_t *t) {
  request_t *r = t->data;
  if (uvctx_err(r->req) == 0)
    r->srv->completed++;
  ck_assert_int_eq(uvctx_unwatch(&r->w), 0);
  request_end(r);
}

static void request_cancelled(uvctx_watch_t *w, int err) {
  request_t *r = w->data;
  r->srv->cancelled++;
  r->srv->cancel_err = err;
  request_end(r);
}

static void listener_tick(uv_timer_t *t) {
  server_t *s = t->data;
  /* A server checks before it accepts: the tick may come after phase 1
   * began but before the watch on stopping has run. */
  if (s->stopping == NULL || uvctx_err(s->stopping) != 0 ||
      s->accepted == MAX_REQS)
    return;
  request_t *r = &s->reqs[s->accepted++];
  r->srv = s;
  r->conn = NULL;
  ck_assert_int_eq(uvctx_with_cancel(s->loop, s->out, &r->conn), 0);
  r->req = mk_value(r->conn, &key_a, r);
  r->live = 1;
  memset(&r->w, 0, sizeof r->w);
  r->w.data = r;
  ck_assert_int_eq(uvctx_watch(r->req, &r->w, request_cancelled), 0);
  ck_assert_int_eq(uv_timer_init(s->loop, &r->t), 0);
  r->t.data = r;
  ck_assert_int_eq(uv_timer_start(&r->t, request_done,
                                  s->request_ms + 2 * (uint64_t)s->inflight, 0),
                   0);
  s->inflight++;
}

static void server_drained(uvctx_watch_t *w, int err) {
  server_t *s = w->data;
  s->drained++;
  s->drain_err = err;
  s->drain_cause = uvctx_cause(s->out);
  s->inflight_at_drain = s->inflight;
  s->released_at_drain = s->released;
  s->drain_at = uvctx_now();
}

static void server_stopping(uvctx_watch_t *w, int err) {
  server_t *s = w->data;
  (void)err;
  uv_close((uv_handle_t *)&s->listener, NULL); /* stop accepting */
  uvctx_release(s->stopping);
  s->stopping = NULL;
  s->drain_w.data = s;
  ck_assert_int_eq(uvctx_drain(s->out, &s->drain_w, server_drained), 0);
}

static void server_trigger(uv_timer_t *t) {
  server_t *s = t->data;
  s->t0 = uvctx_now();
  ck_assert_int_eq(uvctx_shutdown(s->out, UV_ESHUTDOWN), 0);
  uv_close((uv_handle_t *)t, NULL);
}

static void server_start(server_t *s, uv_loop_t *loop, uint64_t grace_ms,
                         uint64_t request_ms, uint64_t shutdown_after_ms) {
  memset(s, 0, sizeof *s);
  s->loop = loop;
  s->request_ms = request_ms;
  s->out = mk_shutdown(loop, uvctx_background(), NULL, 0, grace_ms,
                       &s->stopping);
  s->stop_w.data = s;
  ck_assert_int_eq(uvctx_watch(s->stopping, &s->stop_w, server_stopping), 0);
  ck_assert_int_eq(uv_timer_init(loop, &s->listener), 0);
  s->listener.data = s;
  ck_assert_int_eq(uv_timer_start(&s->listener, listener_tick, 1, 1), 0);
  ck_assert_int_eq(uv_timer_init(loop, &s->trigger), 0);
  s->trigger.data = s;
  ck_assert_int_eq(
      uv_timer_start(&s->trigger, server_trigger, shutdown_after_ms, 0), 0);
}

START_TEST(graceful_shutdown_in_flight_requests_finish_then_the_tree_drains) {
  uv_loop_t loop;
  server_t *s = malloc(sizeof *s);
  ck_assert_ptr_nonnull(s);
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  /* Requests take 15 ms and more; the grace period is far longer. Nobody
   * asks for phase 2: out is over once the last request is released. */
  server_start(s, &loop, 2000, 15, 5);
  ck_assert(run_until(&loop, &s->drained, 1));

  ck_assert_int_ge(s->accepted, 1);
  ck_assert_int_eq(s->completed, s->accepted); /* none was cut short */
  ck_assert_int_eq(s->cancelled, 0);
  ck_assert_int_eq(s->inflight_at_drain, 0);
  ck_assert_int_eq(s->released_at_drain, s->accepted);
  ck_assert_int_eq(s->drain_err, UV_ECANCELED); /* not the grace timeout */
  ck_assert_int_eq(s->drain_cause, UV_ESHUTDOWN);
  ck_assert_int_eq(s->drained, 1);
  ck_assert_int_eq(uvctx_shutdown(s->out, 0), UV_EALREADY); /* over */

  uvctx_release(s->out);
  ASSERT_LOOP_CLOSES(&loop);
  free(s);
}
END_TEST

START_TEST(graceful_shutdown_grace_period_over_cancels_requests_then_drains) {
  uv_loop_t loop;
  server_t *s = malloc(sizeof *s);
  ck_assert_ptr_nonnull(s);
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  /* Requests would take a minute: the 20 ms grace period cuts them short. */
  server_start(s, &loop, 20, 60000, 5);
  ck_assert(run_until(&loop, &s->drained, 1));

  ck_assert_int_ge(s->accepted, 1);
  ck_assert_int_eq(s->completed, 0);
  ck_assert_int_eq(s->cancelled, s->accepted);
  ck_assert_int_eq(s->cancel_err, UV_ETIMEDOUT);
  ck_assert_int_eq(s->inflight_at_drain, 0);
  ck_assert_int_eq(s->released_at_drain, s->accepted);
  ck_assert_int_eq(s->drain_err, UV_ETIMEDOUT);
  ck_assert_uint_ge(s->drain_at, s->t0 + 20);

  uvctx_release(s->out);
  ASSERT_LOOP_CLOSES(&loop);
  free(s);
}
END_TEST

/* An idle tree is over at phase 1, and a drain on out needs the stopping
 * child gone too: it runs once the user releases it. */
START_TEST(drain_on_out_of_an_idle_tree_runs_once_stopping_is_released) {
  rec_t pd;
  sd_t s;
  sd_begin(&s, 60000, IDLE);
  memset(&pd, 0, sizeof pd);
  pd.j = &s.j;
  pd.ctx = s.out;
  pd.w.data = &pd;
  ck_assert_int_eq(uvctx_drain(s.out, &pd.w, rec_cb), 0);
  ck_assert_int_eq(uvctx_shutdown(s.out, UV_ESHUTDOWN), 0);
  ck_assert_int_eq(uvctx_err(s.out), UV_ECANCELED);
  uv_run(&s.loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(pd.calls, 0); /* s.stopping is still below s.out */

  drop(&s.stopping);
  ck_assert_int_eq(s.j.ran, 0); /* never inside the release */
  uv_run(&s.loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(pd.calls, 1);
  ck_assert_int_eq(pd.err, UV_ECANCELED);
  ck_assert_int_eq(pd.cause, UV_ESHUTDOWN);
  sd_end(&s);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Over early: during the grace period, nothing below out but *stopping
 * ------------------------------------------------------------------------- */

/* A ref'd one-shot timer that releases a request: "the request finishes".
 * It notes out's err just before and just after the release. */
typedef struct {
  uv_timer_t t;
  uvctx_t *out;
  uvctx_t *req;
  int fired;
  int out_err_before;
  int out_err_after;
  int out_cause_after;
  uint64_t at; /* uvctx_now() at the release */
} finisher_t;

static void finisher_fire(uv_timer_t *t) {
  finisher_t *f = t->data;
  f->fired++;
  f->out_err_before = uvctx_err(f->out);
  f->at = uvctx_now();
  uvctx_release(f->req);
  f->req = NULL;
  f->out_err_after = uvctx_err(f->out);
  f->out_cause_after = uvctx_cause(f->out);
  uv_close((uv_handle_t *)t, NULL);
}

static void finisher_start(finisher_t *f, uv_loop_t *loop, uvctx_t *out,
                           uvctx_t *req, uint64_t ms) {
  memset(f, 0, sizeof *f);
  f->out = out;
  f->req = req;
  ck_assert_int_eq(uv_timer_init(loop, &f->t), 0);
  f->t.data = f;
  ck_assert_int_eq(uv_timer_start(&f->t, finisher_fire, ms, 0), 0);
}

START_TEST(idle_tree_shutdown_finishes_out_at_once_with_its_cause) {
  rec_t ps, po;
  sd_t s;
  sd_begin(&s, 60000, IDLE);
  rec_watch(&ps, &s.j, s.stopping);
  rec_watch(&po, &s.j, s.out);

  /* s.stopping, still held here, counts as nothing left. */
  ck_assert_int_eq(uvctx_shutdown(s.out, UV_ESHUTDOWN), 0);
  ck_assert_int_eq(uvctx_err(s.stopping), UV_ECANCELED);
  ck_assert_int_eq(uvctx_cause(s.stopping), UV_ESHUTDOWN);
  ck_assert_int_eq(uvctx_err(s.out), UV_ECANCELED);
  ck_assert_int_eq(uvctx_cause(s.out), UV_ESHUTDOWN);
  ck_assert_int_eq(s.j.ran, 0); /* never inside the call */
  uv_run(&s.loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(ps.calls, 1);
  ck_assert_int_eq(po.calls, 1);
  ck_assert_int_eq(po.err, UV_ECANCELED);
  ck_assert_int_eq(po.cause, UV_ESHUTDOWN);
  ck_assert_int_lt(ps.seq, po.seq); /* phase 1, then over */
  ck_assert_int_eq(uvctx_shutdown(s.out, UV_EPIPE), UV_EALREADY);
  ck_assert_int_eq(uvctx_cause(s.out), UV_ESHUTDOWN); /* unchanged */

  sd_end(&s);
}
END_TEST

START_TEST(idle_tree_shutdown_without_cause_gives_out_ecanceled_as_cause) {
  sd_t s;
  sd_begin(&s, 60000, IDLE);
  ck_assert_int_eq(uvctx_shutdown(s.out, 0), 0);
  ck_assert_int_eq(uvctx_err(s.out), UV_ECANCELED);
  ck_assert_int_eq(uvctx_cause(s.out), UV_ECANCELED);
  sd_end(&s);
}
END_TEST

static void worker_once_main(void *arg) {
  worker_t *wk = arg;
  wk->rc1 = uvctx_shutdown(wk->out, UV_ESHUTDOWN);
  uv_async_send(&wk->async);
}

START_TEST(idle_tree_shutdown_from_another_thread_finishes_out) {
  rec_t po;
  worker_t wk;
  sd_t s;
  sd_begin(&s, 60000, IDLE);
  rec_watch(&po, &s.j, s.out);

  worker_start(&wk, &s, worker_once_main);
  ck_assert(run_until(&s.loop, &po.calls, 1));
  uv_run(&s.loop, UV_RUN_DEFAULT); /* the worker's async */

  ck_assert_int_eq(wk.rc1, 0);
  ck_assert_int_eq(po.err, UV_ECANCELED);
  ck_assert_int_eq(po.cause, UV_ESHUTDOWN);
  sd_end(&s);
}
END_TEST

/* (b) Three requests finish one by one in a long grace period: out is over
 * right after the last is released, never while one is alive. */
START_TEST(requests_finishing_in_the_grace_period_end_it_after_the_last) {
  rec_t po;
  finisher_t f[3];
  sd_t s;
  sd_begin(&s, 60000, IDLE);
  uvctx_t *req[3];
  for (int i = 0; i < 3; i++)
    req[i] = mk_request(&s.loop, s.out);
  rec_watch(&po, &s.j, s.out);

  ck_assert_int_eq(uvctx_shutdown(s.out, UV_ESHUTDOWN), 0);
  ck_assert_int_eq(uvctx_err(s.out), 0);
  /* Not in the order they were made; the last one goes at 30 ms. */
  finisher_start(&f[0], &s.loop, s.out, req[1], 10);
  finisher_start(&f[1], &s.loop, s.out, req[2], 20);
  finisher_start(&f[2], &s.loop, s.out, req[0], 30);
  ck_assert(run_until(&s.loop, &po.calls, 1));

  for (int i = 0; i < 3; i++) {
    ck_assert_int_eq(f[i].fired, 1);
    ck_assert_int_eq(f[i].out_err_before, 0); /* never with one alive */
  }
  ck_assert_int_eq(f[0].out_err_after, 0);
  ck_assert_int_eq(f[1].out_err_after, 0);
  ck_assert_int_eq(f[2].out_err_after, UV_ECANCELED); /* right after */
  ck_assert_int_eq(f[2].out_cause_after, UV_ESHUTDOWN);
  ck_assert_int_eq(po.err, UV_ECANCELED); /* not the grace timeout */
  ck_assert_int_eq(po.cause, UV_ESHUTDOWN);
  ck_assert_uint_ge(po.now, f[2].at);
  sd_end(&s);
}
END_TEST

/* (c) One request finishes in time, the other does not. */
START_TEST(request_alive_at_the_end_of_the_grace_period_gets_etimedout) {
  rec_t po;
  finisher_t f;
  sd_t s;
  sd_begin(&s, 30, IN_FLIGHT); /* s.req is the slow one */
  uvctx_t *quick = mk_request(&s.loop, s.out);
  rec_watch(&po, &s.j, s.out);

  uint64_t t0 = uvctx_now();
  ck_assert_int_eq(uvctx_shutdown(s.out, UV_ESHUTDOWN), 0);
  finisher_start(&f, &s.loop, s.out, quick, 5);
  ck_assert(run_until(&s.loop, &po.calls, 1));

  ck_assert_int_eq(f.fired, 1);
  ck_assert_int_eq(f.out_err_after, 0); /* slow is still alive */
  ck_assert_int_eq(po.err, UV_ETIMEDOUT);
  ck_assert_int_eq(po.cause, UV_ESHUTDOWN);
  ck_assert_uint_ge(po.now, t0 + 30);
  ck_assert_int_eq(uvctx_err(s.req), UV_ETIMEDOUT);

  drop(&s.req);
  ck_assert_int_eq(uvctx_err(s.out), UV_ETIMEDOUT); /* unchanged */
  sd_end(&s);
}
END_TEST

/* (d) Every kind of child of out is in flight, not only cancellable ones.
 * kind: 0 value, 1 without-cancel, 2 any (out as its second parent). */
static void check_child_kind_counts(int kind) {
  uv_loop_t loop;
  uvctx_t *stopping;
  uvctx_t *other = NULL;
  uvctx_t *child = NULL;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *out =
      mk_shutdown(&loop, uvctx_background(), NULL, 0, 60000, &stopping);
  if (kind == 0) {
    child = mk_value(out, &key_a, NULL);
  } else if (kind == 1) {
    ck_assert_int_eq(uvctx_without_cancel(out, &child), 0);
  } else {
    other = mk_cancel(&loop, uvctx_background());
    uvctx_t *parents[2] = {other, out};
    ck_assert_int_eq(uvctx_with_any(&loop, parents, 2, &child), 0);
  }
  ck_assert_ptr_nonnull(child);

  ck_assert_int_eq(uvctx_shutdown(out, UV_ESHUTDOWN), 0);
  run_for(&loop, 20);
  ck_assert_int_eq(uvctx_err(out), 0);
  uvctx_release(child);
  ck_assert_int_eq(uvctx_err(out), UV_ECANCELED);
  ck_assert_int_eq(uvctx_cause(out), UV_ESHUTDOWN);

  release_all(other, stopping, out);
  ASSERT_LOOP_CLOSES(&loop);
}

START_TEST(value_child_of_out_is_in_flight) { check_child_kind_counts(0); }
END_TEST

START_TEST(without_cancel_child_of_out_is_in_flight) {
  check_child_kind_counts(1);
}
END_TEST

START_TEST(any_child_of_out_is_in_flight) { check_child_kind_counts(2); }
END_TEST

/* A connection released by its owner while a request under it lives is
 * still below out. */
START_TEST(released_connection_with_a_live_request_is_in_flight) {
  sd_t s;
  sd_begin(&s, 60000, IDLE);
  uvctx_t *conn = mk_cancel(&s.loop, s.out);
  s.req = mk_value(conn, &key_a, NULL);
  ck_assert_int_eq(uvctx_shutdown(s.out, UV_ESHUTDOWN), 0);
  uvctx_release(conn);
  run_for(&s.loop, 20);
  ck_assert_int_eq(uvctx_err(s.out), 0);
  drop(&s.req);
  assert_done(s.out, UV_ECANCELED, UV_ESHUTDOWN);
  sd_end(&s);
}
END_TEST

START_TEST(request_begun_in_the_grace_period_is_in_flight) {
  sd_t s;
  sd_begin(&s, 60000, IDLE);
  uvctx_t *first = mk_request(&s.loop, s.out);
  ck_assert_int_eq(uvctx_shutdown(s.out, UV_ESHUTDOWN), 0);
  uv_run(&s.loop, UV_RUN_DEFAULT);
  uvctx_t *late = mk_request(&s.loop, s.out);
  uvctx_release(first);
  run_for(&s.loop, 20);
  ck_assert_int_eq(uvctx_err(s.out), 0);
  uvctx_release(late);
  ck_assert_int_eq(uvctx_err(s.out), UV_ECANCELED);
  ck_assert_int_eq(uvctx_cause(s.out), UV_ESHUTDOWN);
  sd_end(&s);
}
END_TEST

/* The last request released on another thread: the loop ends the shutdown
 * when it next polls. Round 0: a cancel request (its teardown is handed to
 * the loop); round 1: a value request (freed on the thread). */
typedef struct {
  uv_async_t async; /* ref'd: keeps the loop polling until the worker ends */
  uv_thread_t tid;
  uvctx_t *req;
} releaser_t;

static void releaser_async_cb(uv_async_t *a) {
  releaser_t *r = a->data;
  ck_assert_int_eq(uv_thread_join(&r->tid), 0);
  uv_close((uv_handle_t *)a, NULL);
}

static void releaser_main(void *arg) {
  releaser_t *r = arg;
  uvctx_release(r->req);
  uv_async_send(&r->async);
}

START_TEST(last_request_released_on_another_thread_ends_it_early) {
  uv_loop_t loop;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  for (int round = 0; round < 2; round++) {
      rec_t po;
    releaser_t r;
    uvctx_t *stopping;
    uvctx_t *out =
        mk_shutdown(&loop, uvctx_background(), NULL, 0, 60000, &stopping);
    memset(&r, 0, sizeof r);
    r.req = round == 0 ? mk_request(&loop, out) : mk_value(out, &key_a, NULL);
    rec_watch(&po, NULL, out);
    ck_assert_int_eq(uvctx_shutdown(out, UV_ESHUTDOWN), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uvctx_err(out), 0);

    ck_assert_int_eq(uv_async_init(&loop, &r.async, releaser_async_cb), 0);
    r.async.data = &r;
    ck_assert_int_eq(uv_thread_create(&r.tid, releaser_main, &r), 0);
    ck_assert(run_until(&loop, &po.calls, 1));
    uv_run(&loop, UV_RUN_DEFAULT); /* the worker's async */
    ck_assert_int_eq(po.err, UV_ECANCELED); /* not the grace timeout */
    ck_assert_int_eq(po.cause, UV_ESHUTDOWN);
    release_all(stopping, out);
  }
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* (e) stopping released with requests alive: not over by itself. */
START_TEST(stopping_released_in_the_grace_period_with_requests_alive_does_not_end_it) {
  rec_t po;
  sd_t s;
  sd_begin(&s, 60000, IN_FLIGHT);
  rec_watch(&po, &s.j, s.out);
  ck_assert_int_eq(uvctx_shutdown(s.out, UV_ESHUTDOWN), 0);
  uv_run(&s.loop, UV_RUN_DEFAULT);

  drop(&s.stopping);
  ck_assert_int_eq(uvctx_err(s.out), 0);
  run_for(&s.loop, 20);
  ck_assert_int_eq(uvctx_err(s.out), 0);
  ck_assert_int_eq(po.calls, 0);

  drop(&s.req); /* now nothing at all is left */
  ck_assert_int_eq(uvctx_err(s.out), UV_ECANCELED);
  ck_assert_int_eq(uvctx_cause(s.out), UV_ESHUTDOWN);
  uv_run(&s.loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(po.calls, 1);
  sd_end(&s);
}
END_TEST

START_TEST(stopping_released_in_the_grace_period_then_the_grace_period_runs_out) {
  rec_t po;
  sd_t s;
  sd_begin(&s, 10, IN_FLIGHT);
  rec_watch(&po, &s.j, s.out);
  uint64_t t0 = uvctx_now();
  ck_assert_int_eq(uvctx_shutdown(s.out, UV_ESHUTDOWN), 0);
  drop(&s.stopping);
  ck_assert(run_until(&s.loop, &po.calls, 1));
  ck_assert_int_eq(po.err, UV_ETIMEDOUT);
  ck_assert_uint_ge(po.now, t0 + 10);
  sd_end(&s);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Bad input
 * ------------------------------------------------------------------------- */

static void expect_einval(uv_loop_t *loop, uvctx_t *parent, const int *signums,
                          size_t count, int with_stopping, int with_out) {
  uvctx_t *sentinel = (uvctx_t *)&key_a;
  uvctx_t *stopping = sentinel;
  uvctx_t *out = sentinel;
  ck_assert_int_eq(uvctx_with_shutdown(loop, parent, signums, count, 100,
                                       with_stopping ? &stopping : NULL,
                                       with_out ? &out : NULL),
                   UV_EINVAL);
  ck_assert_ptr_eq(stopping, sentinel);
  ck_assert_ptr_eq(out, sentinel);
}

START_TEST(with_shutdown_null_arguments_are_einval) {
  uv_loop_t loop;
  int sig = SIGUSR1;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  expect_einval(NULL, uvctx_background(), NULL, 0, 1, 1);
  expect_einval(&loop, NULL, NULL, 0, 1, 1);
  expect_einval(&loop, uvctx_background(), NULL, 0, 0, 1);
  expect_einval(&loop, uvctx_background(), NULL, 0, 1, 0);
  expect_einval(&loop, uvctx_background(), NULL, 1, 1, 1);
  expect_einval(NULL, uvctx_background(), &sig, 1, 1, 1);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(with_shutdown_bad_signal_numbers_are_einval) {
  static const int bad[] = {0, -1, NSIG, NSIG + 1, SIGKILL, SIGSTOP};
  uv_loop_t loop;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int list[2] = {SIGUSR1, bad[i]};
    expect_einval(&loop, parent, &bad[i], 1, 1, 1);
    expect_einval(&loop, parent, list, 2, 1, 1);
  }
  uvctx_release(parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(with_shutdown_count_0_accepts_null_signums) {
  uv_loop_t loop;
  uvctx_t *stopping;
  int sig = SIGUSR1;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *out = mk_shutdown(&loop, uvctx_background(), NULL, 0, 10, &stopping);
  release_all(stopping, out);
  out = mk_shutdown(&loop, uvctx_background(), &sig, 0, 10, &stopping);
  release_all(stopping, out);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(shutdown_of_null_or_a_context_of_another_kind_is_einval) {
  static const int sigs[] = {SIGUSR1};
  sd_t s;
  sd_begin(&s, 60000, IDLE);
  uvctx_t *c = mk_cancel(&s.loop, uvctx_background());
  uvctx_t *v = mk_value(s.out, &key_a, NULL);
  uvctx_t *sig = NULL;
  ck_assert_int_eq(
      uvctx_with_signal(&s.loop, uvctx_background(), sigs, 1, &sig), 0);

  ck_assert_int_eq(uvctx_shutdown(NULL, 0), UV_EINVAL);
  ck_assert_int_eq(uvctx_shutdown(uvctx_background(), 0), UV_EINVAL);
  ck_assert_int_eq(uvctx_shutdown(c, 0), UV_EINVAL);
  ck_assert_int_eq(uvctx_shutdown(sig, 0), UV_EINVAL);
  ck_assert_int_eq(uvctx_shutdown(v, 0), UV_EINVAL);
  ck_assert_int_eq(uvctx_shutdown(s.stopping, 0), UV_EINVAL);
  ck_assert_int_eq(uvctx_err(c), 0);
  ck_assert_int_eq(uvctx_err(sig), 0);
  ck_assert_int_eq(uvctx_err(s.stopping), 0);
  ck_assert_int_eq(uvctx_err(s.out), 0);

  release_all(sig, v, c);
  sd_end(&s);
}
END_TEST

START_TEST(shutdown_with_a_positive_cause_is_einval_and_changes_nothing) {
  sd_t s;
  sd_begin(&s, 60000, IN_FLIGHT);
  ck_assert_int_eq(uvctx_shutdown(s.out, 1), UV_EINVAL);
  ck_assert_int_eq(uvctx_err(s.stopping), 0);
  ck_assert_int_eq(uvctx_shutdown(s.out, 0), 0);
  ck_assert_int_eq(uvctx_shutdown(s.out, 5), UV_EINVAL);
  ck_assert_int_eq(uvctx_err(s.out), 0);
  sd_end(&s);
}
END_TEST

Suite *shutdown_suite(void) {
  return SUITE(
      "shutdown",
      {"phase_1", TIMEOUT_LOOP_S, NULL, NULL,
       .tests = TESTS(
           neither_is_done_before_shutdown_begins,
           first_shutdown_finishes_stopping_with_its_cause_not_out,
           first_shutdown_without_cause_gives_stopping_ecanceled_as_cause,
           stopping_watches_run_in_phase_1_and_out_watches_do_not,
           grace_timer_does_not_keep_the_loop_alive,
           keepalive_makes_the_grace_timer_keep_the_loop_alive,
           children_of_stopping_are_cancelled_in_phase_1)},
      {"phase_2", TIMEOUT_LOOP_S, NULL, NULL,
       .tests = TESTS(
           grace_period_finishes_out_with_etimedout,
           grace_period_never_ends_before_grace_ms,
           second_shutdown_finishes_out_at_once_with_ecanceled,
           shutdown_after_out_is_done_is_ealready,
           shutdown_after_the_grace_period_is_ealready,
           children_of_out_are_cancelled_in_phase_2_not_phase_1,
           children_of_out_get_etimedout_when_the_grace_period_ends)},
      {"parent", TIMEOUT_LOOP_S, NULL, NULL,
       .tests = TESTS(
           parent_done_finishes_both,
           parent_done_during_the_grace_period_finishes_out,
           parent_already_done_gives_both_born_done)},
      {"signals", TIMEOUT_LOOP_S, NULL, NULL,
       .tests = TESTS(
           released_shutdown_context_stops_listening,
           shutdown_with_signals_does_not_keep_the_loop_alive),
       .loops = LOOPS(
           {signals_move_the_shutdown_through_its_phases, 0, sizeof sigseqs / sizeof sigseqs[0]})},
      {"threads_release", TIMEOUT_THREADS_S, NULL, NULL,
       .tests = TESTS(
           shutdown_from_another_thread_moves_both_phases,
           release_before_shutdown_closes_the_loop_in_either_order,
           release_during_the_grace_period_closes_the_loop,
           stopping_released_early_does_not_stop_the_shutdown)},
      {"with_drain", TIMEOUT_LOOP_S, NULL, NULL,
       .tests = TESTS(
           graceful_shutdown_in_flight_requests_finish_then_the_tree_drains,
           graceful_shutdown_grace_period_over_cancels_requests_then_drains,
           drain_on_out_of_an_idle_tree_runs_once_stopping_is_released)},
      {"over_early", TIMEOUT_LOOP_S, NULL, NULL,
       .tests = TESTS(
           idle_tree_shutdown_finishes_out_at_once_with_its_cause,
           idle_tree_shutdown_without_cause_gives_out_ecanceled_as_cause,
           idle_tree_shutdown_from_another_thread_finishes_out,
           requests_finishing_in_the_grace_period_end_it_after_the_last,
           request_alive_at_the_end_of_the_grace_period_gets_etimedout,
           value_child_of_out_is_in_flight,
           without_cancel_child_of_out_is_in_flight,
           any_child_of_out_is_in_flight,
           released_connection_with_a_live_request_is_in_flight,
           request_begun_in_the_grace_period_is_in_flight,
           last_request_released_on_another_thread_ends_it_early,
           stopping_released_in_the_grace_period_with_requests_alive_does_not_end_it,
           stopping_released_in_the_grace_period_then_the_grace_period_runs_out)},
      {"bad_input", TIMEOUT_LOOP_S, NULL, NULL,
       .tests = TESTS(
           with_shutdown_null_arguments_are_einval,
           with_shutdown_bad_signal_numbers_are_einval,
           with_shutdown_count_0_accepts_null_signums,
           shutdown_of_null_or_a_context_of_another_kind_is_einval,
           shutdown_with_a_positive_cause_is_einval_and_changes_nothing)});
}
