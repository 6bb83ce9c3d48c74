/* Two-phase shutdown: uvctx_with_shutdown and uvctx_shutdown.
 *
 *   phase 1: *stopping is done (stop accepting), the grace period starts;
 *   phase 2: *out is done (grace period over: UV_ETIMEDOUT, or shutdown asked
 *            for again: UV_ECANCELED, or its parent is done, or nothing but
 *            *stopping is left below it: UV_ECANCELED, over early).
 *
 * The grace timer is unref'd, so a test that waits for it keeps the loop
 * alive with run_until(). A test that sends a signal starts a catcher of its
 * own for it, so that a signal uvctx no longer listens for never kills it. */
#include <signal.h>
#include <string.h>

#include "helpers.h"
#include "test.h"

static int key_a; /* keys compare by address */

/* The fixture: a loop with a shutdown context out and its stopping child, a
 * journal for the test's recs, and with flags:
 *   IN_FLIGHT     a request (a cancel child of out) that keeps the grace
 *                 period going until the test drops it (an idle tree's
 *                 shutdown ends with phase 1);
 *   UNDER_PARENT  out is a child of a cancel context `parent`, not of the
 *                 background; PARENT_DONE: one already cancelled (UV_EIO);
 *   WATCHED       ps watches stopping and po watches out.
 * sd_end() releases what the test did not drop, request first, and checks
 * that the loop closes. */
typedef struct {
  uv_loop_t loop;
  journal_t j;
  uvctx_t *out;
  uvctx_t *stopping;
  uvctx_t *req;
  uvctx_t *parent;
  rec_t ps;
  rec_t po;
} sd_t;

enum {
  IDLE = 0,
  IN_FLIGHT = 1,
  UNDER_PARENT = 2,
  PARENT_DONE = 4 | UNDER_PARENT,
  WATCHED = 8
};

static void sd_begin_on(sd_t *s, const int *signums, size_t count,
                        uint64_t grace_ms, int flags) {
  memset(s, 0, sizeof *s);
  ck_assert_int_eq(uv_loop_init(&s->loop), 0);
  if (flags & UNDER_PARENT)
    s->parent = mk_cancel(&s->loop, uvctx_background());
  if ((flags & PARENT_DONE) == PARENT_DONE)
    ck_assert_int_eq(uvctx_cancel_cause(s->parent, UV_EIO), 0);
  ck_assert_int_eq(uvctx_with_shutdown(&s->loop,
                                       s->parent ? s->parent
                                                 : uvctx_background(),
                                       signums, count, grace_ms, &s->stopping,
                                       &s->out),
                   0);
  ck_assert_ptr_nonnull(s->out);
  ck_assert_ptr_nonnull(s->stopping);
  ck_assert_ptr_ne(s->out, s->stopping);
  if (flags & IN_FLIGHT)
    s->req = mk_cancel(&s->loop, s->out);
  if (flags & WATCHED) {
    rec_watch(&s->ps, &s->j, s->stopping);
    rec_watch(&s->po, &s->j, s->out);
  }
}

static void sd_begin(sd_t *s, uint64_t grace_ms, int flags) {
  sd_begin_on(s, NULL, 0, grace_ms, flags);
}

/* Releases *c and forgets it, so that sd_end() does not. */
static void drop(uvctx_t **c) {
  uvctx_release(*c);
  *c = NULL;
}

static void sd_end(sd_t *s) {
  release_all(s->req, s->stopping, s->out, s->parent);
  ASSERT_LOOP_CLOSES(&s->loop);
}

/* ---------------------------------------------------------------------------
 * The phases: calls, the grace period, the parent
 * ------------------------------------------------------------------------- */

/* The first call finishes stopping (and its children, such as a listener's
 * context "accepting") with its cause, or UV_ECANCELED for 0; out is done at
 * once only when nothing is in flight, else at the second call, which
 * finishes the contexts in flight too. A positive cause is refused in each
 * phase and changes nothing. */
typedef struct {
  const char *name;
  int flags;                /* IN_FLIGHT or IDLE */
  int cause1;               /* of the first call */
  int cause2;               /* of the second call, when in flight */
  int stopping_cause;       /* of stopping and accepting */
  int out_err1, out_cause1; /* of out after the first call */
  int out_cause;            /* of out at the end */
} calls_row_t;

static const calls_row_t calls_rows[] = {
    {"in flight, with causes", IN_FLIGHT, UV_ESHUTDOWN, UV_EPIPE, UV_ESHUTDOWN,
     0, 0, UV_EPIPE},
    {"in flight, without causes", IN_FLIGHT, 0, 0, UV_ECANCELED, 0, 0,
     UV_ECANCELED},
    {"idle, with a cause", IDLE, UV_ESHUTDOWN, 0, UV_ESHUTDOWN, UV_ECANCELED,
     UV_ESHUTDOWN, UV_ESHUTDOWN},
    {"idle, without a cause", IDLE, 0, 0, UV_ECANCELED, UV_ECANCELED,
     UV_ECANCELED, UV_ECANCELED},
};

START_TEST(calls_move_the_shutdown_through_its_phases) {
  const calls_row_t *q = &calls_rows[_i];
  const char *row = q->name;
  rec_t pa, pr, pv;
  uvctx_t *reqv = NULL;
  sd_t s;
  sd_begin(&s, 60000, q->flags | WATCHED);
  uvctx_t *accepting = mk_cancel(&s.loop, s.stopping); /* not in flight */
  rec_watch(&pa, &s.j, accepting);
  if (q->flags & IN_FLIGHT) { /* s.req stands for a connection */
    reqv = mk_value(s.req, &key_a, NULL);
    rec_watch(&pr, NULL, s.req);
    rec_watch(&pv, NULL, reqv);
  }
  ck_row(row, uvctx_shutdown(s.out, 1), ==, UV_EINVAL);
  ck_row(row, uvctx_err(s.stopping), ==, 0);

  ck_row(row, uvctx_shutdown(s.out, q->cause1), ==, 0);
  ck_row(row, s.j.ran, ==, 0); /* never inside the call */
  ck_row_done(row, s.stopping, UV_ECANCELED, q->stopping_cause);
  ck_row_done(row, accepting, UV_ECANCELED, q->stopping_cause);
  ck_row_done(row, s.out, q->out_err1, q->out_cause1);
  uv_run(&s.loop, UV_RUN_DEFAULT);
  ck_row(row, s.ps.calls, ==, 1);
  ck_row(row, s.ps.err, ==, UV_ECANCELED);
  ck_row(row, s.ps.cause, ==, q->stopping_cause);
  ck_row(row, pa.calls, ==, 1);
  ck_row(row, uvctx_err(s.out), ==, q->out_err1);

  if (q->flags & IN_FLIGHT) { /* the grace period runs; out's tree stays */
    ck_row(row, s.po.calls, ==, 0);
    ck_row(row, uvctx_err(s.req), ==, 0);
    ck_row(row, uvctx_err(reqv), ==, 0);
    ck_row(row, pr.calls + pv.calls, ==, 0);
    ck_row(row, uvctx_shutdown(s.out, 5), ==, UV_EINVAL);
    ck_row(row, uvctx_err(s.out), ==, 0);
    ck_row(row, uvctx_shutdown(s.out, q->cause2), ==, 0);
    ck_row_done(row, s.out, UV_ECANCELED, q->out_cause); /* at once */
    ck_row_done(row, s.req, UV_ECANCELED, q->out_cause);
    ck_row(row, uvctx_cause(reqv), ==, q->out_cause);
    uv_run(&s.loop, UV_RUN_DEFAULT);
    ck_row(row, pr.calls, ==, 1);
    ck_row(row, pv.calls, ==, 1);
  }
  ck_row(row, s.po.calls, ==, 1);
  ck_row(row, s.po.err, ==, UV_ECANCELED);
  ck_row(row, s.po.cause, ==, q->out_cause);
  ck_row(row, s.ps.calls, ==, 1);
  ck_row(row, s.ps.seq, <, s.po.seq);
  ck_row(row, uvctx_cause(s.stopping), ==, q->stopping_cause);
  ck_row(row, uvctx_shutdown(s.out, 0), ==, UV_EALREADY);
  ck_row(row, uvctx_shutdown(s.out, UV_EIO), ==, UV_EALREADY);
  ck_row(row, uvctx_cause(s.out), ==, q->out_cause); /* unchanged */
  release_all(reqv, accepting);
  sd_end(&s);
}
END_TEST

/* The grace timer and the signal handles do not keep the loop alive, unless
 * uvctx_keepalive() asks for it (the stop guard turns a hang into a fail). */
typedef struct {
  const char *name;
  size_t signals; /* listens for SIGUSR1 and SIGUSR2, or for none */
  int keepalive;
  int begin; /* uvctx_shutdown() before the run */
  uint64_t grace_ms;
  int out_err; /* after the run */
} alive_row_t;

static const alive_row_t alive_rows[] = {
    {"the grace timer does not", 0, 0, 1, 60000, 0},
    {"the signal handles do not", 2, 0, 0, 60000, 0},
    {"keepalive makes the grace timer keep it", 0, 1, 1, 10, UV_ETIMEDOUT},
};

START_TEST(shutdown_keeps_the_loop_alive_only_with_keepalive) {
  static const int sigs[] = {SIGUSR1, SIGUSR2};
  const alive_row_t *q = &alive_rows[_i];
  const char *row = q->name;
  stop_guard_t g;
  sd_t s;
  sd_begin_on(&s, sigs, q->signals, q->grace_ms, IN_FLIGHT);
  if (q->keepalive)
    ck_row(row, uvctx_keepalive(s.out, 1), ==, 0);
  if (q->begin)
    ck_row(row, uvctx_shutdown(s.out, 0), ==, 0);
  stop_guard_start(&s.loop, &g, 2000);
  ck_row(row, uv_run(&s.loop, UV_RUN_DEFAULT), ==, 0);
  ck_row(row, g.fired, ==, 0);
  ck_row(row, uvctx_err(s.out), ==, q->out_err);
  stop_guard_close(&g);
  sd_end(&s);
}
END_TEST

/* A rec action: releases the request, then reads the err of out (arg). */
static void release_noting_out(rec_t *r) {
  uvctx_release(r->ctx);
  r->action_rc = uvctx_err(r->arg);
}

/* The grace period runs out: out and the request still in flight get
 * UV_ETIMEDOUT, never before grace_ms, whether stopping is kept or not. */
enum { STOPPING_KEPT, STOPPING_RELEASED_BEFORE, STOPPING_RELEASED_DURING };

typedef struct {
  const char *name;
  uint64_t grace_ms;
  int stopping;      /* kept, or released before or during the shutdown */
  int quick_request; /* one more, begun with the shutdown, done in 5 ms */
} grace_row_t;

static const grace_row_t grace_rows[] = {
    {"3 ms", 3, STOPPING_KEPT, 0},
    {"7 ms", 7, STOPPING_KEPT, 0},
    {"11 ms", 11, STOPPING_KEPT, 0},
    {"15 ms", 15, STOPPING_KEPT, 0},
    {"19 ms", 19, STOPPING_KEPT, 0},
    {"stopping released before the shutdown", 5, STOPPING_RELEASED_BEFORE, 0},
    {"stopping released in the grace period", 10, STOPPING_RELEASED_DURING, 0},
    {"a quick request finishes in time", 30, STOPPING_KEPT, 1},
};

START_TEST(grace_period_over_finishes_out_with_etimedout_never_early) {
  const grace_row_t *q = &grace_rows[_i];
  const char *row = q->name;
  rec_t pr, pq;
  sd_t s;
  sd_begin(&s, q->grace_ms, IN_FLIGHT);
  rec_watch(&s.po, &s.j, s.out);
  rec_watch(&pr, &s.j, s.req); /* s.req is the slow request */
  if (q->stopping == STOPPING_RELEASED_BEFORE) { /* nobody sees phase 1 */
    drop(&s.stopping);
    uv_run(&s.loop, UV_RUN_DEFAULT);
  }
  /* The grace period only starts with the shutdown; and libuv's cached time
   * goes stale meanwhile. */
  run_for(&s.loop, 20);
  ck_row(row, uvctx_err(s.out), ==, 0);
  if (s.stopping != NULL)
    ck_row(row, uvctx_err(s.stopping), ==, 0);

  uint64_t t0 = uvctx_now();
  ck_row(row, uvctx_shutdown(s.out, UV_ESHUTDOWN), ==, 0);
  ck_row(row, uvctx_err(s.out), ==, 0);
  if (q->stopping == STOPPING_RELEASED_DURING)
    drop(&s.stopping);
  if (q->quick_request) {
    rec_watch(&pq, NULL, mk_timeout(&s.loop, s.out, 5));
    pq.action = release_noting_out;
    pq.arg = s.out;
  }
  ck_row(row, run_until(&s.loop, &s.po.calls, 1), ==, 1);
  ck_row(row, s.po.err, ==, UV_ETIMEDOUT);
  ck_row(row, s.po.cause, ==, UV_ESHUTDOWN);
  ck_row(row, s.po.now, >=, t0 + q->grace_ms);
  ck_row_done(row, s.out, UV_ETIMEDOUT, UV_ESHUTDOWN);
  ck_row(row, run_until(&s.loop, &pr.calls, 1), ==, 1);
  ck_row(row, pr.err, ==, UV_ETIMEDOUT);
  ck_row(row, uvctx_err(s.req), ==, UV_ETIMEDOUT);
  if (s.stopping != NULL) /* unchanged */
    ck_row_done(row, s.stopping, UV_ECANCELED, UV_ESHUTDOWN);
  if (q->quick_request) {
    ck_row(row, pq.calls, ==, 1);
    ck_row(row, pq.err, ==, UV_ETIMEDOUT); /* its own 5 ms */
    /* The slow one was alive when the quick one ended, unless the loop ran
     * the quick one's callback so late that the grace period was over by
     * then (a stalled machine: both timers due in one turn). Only the loop
     * thread finishes out, so out's state cannot change within the
     * callback, between pq.now and the action. */
    ck_row(row, pq.action_rc == 0 || pq.now >= t0 + q->grace_ms, ==, 1);
  }
  ck_row(row, uvctx_shutdown(s.out, 0), ==, UV_EALREADY);
  drop(&s.req);
  ck_row(row, uvctx_err(s.out), ==, UV_ETIMEDOUT); /* unmoved */
  sd_end(&s);
}
END_TEST

/* The parent done before out is made, before the shutdown begins, or in the
 * grace period finishes out at once with the parent's cause, and stopping
 * too unless phase 1 already has. */
typedef struct {
  const char *name;
  int flags;
  int begin;  /* uvctx_shutdown(out, UV_ESHUTDOWN) first */
  int cancel; /* the parent is cancelled with cause then */
  int cause;
  int stopping_cause;
} parent_row_t;

static const parent_row_t parent_rows[] = {
    {"done before out is made", PARENT_DONE, 0, 0, UV_EIO, UV_EIO},
    {"done before the shutdown", UNDER_PARENT, 0, 1, UV_EPIPE, UV_EPIPE},
    {"done in the grace period", UNDER_PARENT | IN_FLIGHT, 1, 1, UV_EPIPE,
     UV_ESHUTDOWN},
};

START_TEST(parent_done_finishes_out) {
  const parent_row_t *q = &parent_rows[_i];
  const char *row = q->name;
  sd_t s;
  sd_begin(&s, 60000, q->flags | WATCHED);
  if (q->begin) {
    ck_row(row, uvctx_shutdown(s.out, UV_ESHUTDOWN), ==, 0);
    ck_row(row, uvctx_err(s.out), ==, 0);
  }
  if (q->cancel)
    ck_row(row, uvctx_cancel_cause(s.parent, q->cause), ==, 0);
  ck_row_done(row, s.out, UV_ECANCELED, q->cause);
  ck_row_done(row, s.stopping, UV_ECANCELED, q->stopping_cause);
  if (s.req != NULL)
    ck_row(row, uvctx_cause(s.req), ==, q->cause);
  ck_row(row, uvctx_shutdown(s.out, 0), ==, UV_EALREADY);
  uv_run(&s.loop, UV_RUN_DEFAULT);
  ck_row(row, s.po.calls, ==, 1);
  ck_row(row, s.ps.calls, ==, 1);
  if (q->cancel && !q->begin) /* stopping is a child of out */
    ck_row(row, s.po.seq, <, s.ps.seq);
  sd_end(&s);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Signals
 * ------------------------------------------------------------------------- */

/* Shutdowns moved by signals. Phase 1 begins with a signal, or
 * (0) with uvctx_shutdown(out, UV_ESHUTDOWN). Phase 2 comes from a signal sent
 * from stopping's callback (so that the two are never pending at once, which
 * the kernel would merge), from a signal or a call once phase 1 is seen, or
 * from the grace period running out; an idle tree's shutdown is over at
 * once. uvctx_signal_received(out) is the first signal, whatever it did. */
typedef struct {
  const char *name;
  int signums[2];
  size_t count;
  uint64_t grace_ms;
  int flags;        /* IN_FLIGHT or IDLE */
  int begin_signal; /* 0: a call begins it */
  int relay_signal; /* sent from stopping's callback; 0: none */
  int end_signal;   /* sent once phase 1 is seen; 0: none */
  int end_by_call;  /* uvctx_shutdown(out, 0) once phase 1 is seen */
  int out_err;
  int received; /* uvctx_signal_received(out) at the end */
} sigseq_t;

static const sigseq_t sigseqs[] = {
    {"a signal begins it, a call ends it", {SIGUSR2}, 1, 60000, IN_FLIGHT,
     SIGUSR2, 0, 0, 1, UV_ECANCELED, SIGUSR2},
    {"a second signal ends it at once", {SIGUSR2}, 1, 60000, IN_FLIGHT,
     SIGUSR2, SIGUSR2, 0, 0, UV_ECANCELED, SIGUSR2},
    {"either of two signals begins it, the other ends it", {SIGUSR1, SIGUSR2},
     2, 60000, IN_FLIGHT, SIGUSR2, SIGUSR1, 0, 0, UV_ECANCELED, SIGUSR2},
    {"a call begins it, a signal ends it", {SIGHUP}, 1, 60000, IN_FLIGHT, 0, 0,
     SIGHUP, 0, UV_ECANCELED, SIGHUP},
    {"a signal begins it, the grace period runs out", {SIGUSR1}, 1, 10,
     IN_FLIGHT, SIGUSR1, 0, 0, 0, UV_ETIMEDOUT, SIGUSR1},
    {"a signal to an idle tree ends it at once", {SIGUSR1}, 1, 60000, IDLE,
     SIGUSR1, 0, 0, 0, UV_ECANCELED, SIGUSR1},
};

static void send_arg_signal(rec_t *r) { send_signal(*(const int *)r->arg); }

START_TEST(signals_move_the_shutdown_through_its_phases) {
  const sigseq_t *q = &sigseqs[_i];
  const char *row = q->name;
  catcher_t own[2];
  sd_t s;
  sd_begin_on(&s, q->signums, q->count, q->grace_ms, q->flags | WATCHED);
  for (size_t k = 0; k < q->count; k++)
    catcher_start(&own[k], &s.loop, q->signums[k]);
  if (q->relay_signal != 0) {
    s.ps.action = send_arg_signal;
    s.ps.arg = (void *)&q->relay_signal;
  }
  ck_row(row, uvctx_signal_received(s.stopping), ==, 0);
  ck_row(row, uvctx_signal_received(s.out), ==, 0);

  uint64_t t0 = uvctx_now();
  if (q->begin_signal != 0)
    send_signal(q->begin_signal);
  else
    ck_row(row, uvctx_shutdown(s.out, UV_ESHUTDOWN), ==, 0);
  ck_row(row, run_until(&s.loop, &s.ps.calls, 1), ==, 1);
  ck_row(row, s.ps.err, ==, UV_ECANCELED);
  if (q->end_signal != 0 || q->end_by_call) { /* phase 1 alone, for now */
    ck_row(row, uvctx_err(s.out), ==, 0);
    ck_row(row, uvctx_signal_received(s.out), ==, q->begin_signal);
    if (q->end_signal != 0)
      send_signal(q->end_signal);
    if (q->end_by_call) {
      ck_row(row, uvctx_shutdown(s.out, 0), ==, 0);
      ck_row(row, uvctx_err(s.out), ==, UV_ECANCELED);
    }
  }
  ck_row(row, run_until(&s.loop, &s.po.calls, 1), ==, 1);
  ck_row(row, s.ps.calls, ==, 1);
  ck_row(row, s.ps.seq, <, s.po.seq);
  ck_row(row, s.po.err, ==, q->out_err);
  if (q->out_err == UV_ETIMEDOUT)
    ck_row(row, s.po.now, >=, t0 + q->grace_ms);
  if (q->flags & IN_FLIGHT)
    ck_row(row, uvctx_err(s.req), ==, q->out_err);
  else
    ck_row(row, s.po.cause, ==, UV_ECANCELED);
  ck_row(row, uvctx_signal_received(s.out), ==, q->received);
  ck_row(row, uvctx_shutdown(s.out, 0), ==, UV_EALREADY);

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

/* ---------------------------------------------------------------------------
 * Other threads, and release at every stage
 * ------------------------------------------------------------------------- */

/* Another thread calls uvctx_shutdown(), or releases the last request in
 * the grace period (a cancel one's teardown is the loop's, a value one is
 * freed on the thread). Only phase 1 is reached inside the first call (the
 * grace period and the early end are the loop's), so a second call is only
 * made where a request is in flight. */
enum { CALL_TWICE, CALL_ONCE, RELEASE_CANCEL_REQ, RELEASE_VALUE_REQ };

typedef struct {
  const char *name;
  int action;
  int out_cause;
} thread_row_t;

static const thread_row_t thread_rows[] = {
    {"in flight: a second call ends it", CALL_TWICE, UV_EPIPE},
    {"idle: over after the first call", CALL_ONCE, UV_ESHUTDOWN},
    {"the last request released, a cancel one", RELEASE_CANCEL_REQ,
     UV_ESHUTDOWN},
    {"the last request released, a value one", RELEASE_VALUE_REQ,
     UV_ESHUTDOWN},
};

typedef struct {
  int action;
  sd_t *s;
  int rc1;
  int stopping_err; /* uvctx_err(stopping) after the first call */
  int err_between;  /* uvctx_err(out) after the first call */
  int rc2;
} on_thread_t;

static void on_thread(void *arg) {
  on_thread_t *t = arg;
  if (t->action >= RELEASE_CANCEL_REQ) {
    drop(&t->s->req);
    return;
  }
  t->rc1 = uvctx_shutdown(t->s->out, UV_ESHUTDOWN);
  t->stopping_err = uvctx_err(t->s->stopping);
  if (t->action == CALL_TWICE) {
    t->err_between = uvctx_err(t->s->out);
    t->rc2 = uvctx_shutdown(t->s->out, UV_EPIPE);
  }
}

START_TEST(another_thread_moves_the_shutdown) {
  const thread_row_t *q = &thread_rows[_i];
  const char *row = q->name;
  loop_thread_t th;
  sd_t s;
  on_thread_t t = {.action = q->action, .s = &s};
  sd_begin(&s, 60000, (q->action == CALL_TWICE ? IN_FLIGHT : IDLE) | WATCHED);
  if (q->action >= RELEASE_CANCEL_REQ) {
    s.req = q->action == RELEASE_CANCEL_REQ ? mk_cancel(&s.loop, s.out)
                                            : mk_value(s.out, &key_a, NULL);
    ck_row(row, uvctx_shutdown(s.out, UV_ESHUTDOWN), ==, 0);
    uv_run(&s.loop, UV_RUN_DEFAULT);
    ck_row(row, uvctx_err(s.out), ==, 0);
  }

  loop_thread_start(&th, &s.loop, on_thread, &t);
  ck_row(row, run_until(&s.loop, &s.j.ran, 2), ==, 1);
  uv_run(&s.loop, UV_RUN_DEFAULT); /* the thread's async */
  ck_row(row, th.joined, ==, 1);
  ck_row(row, s.ps.calls, ==, 1);
  ck_row(row, s.ps.cause, ==, UV_ESHUTDOWN);
  ck_row(row, s.po.calls, ==, 1);
  ck_row(row, s.po.err, ==, UV_ECANCELED); /* not the grace timeout */
  ck_row(row, s.po.cause, ==, q->out_cause);
  if (q->action <= CALL_ONCE) {
    ck_row(row, t.rc1, ==, 0);
    ck_row(row, t.stopping_err, ==, UV_ECANCELED);
  }
  if (q->action == CALL_TWICE) {
    ck_row(row, t.err_between, ==, 0);
    ck_row(row, t.rc2, ==, 0);
  }
  sd_end(&s);
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

/* ---------------------------------------------------------------------------
 * With uvctx_drain: the whole graceful shutdown of a server
 *
 * Three requests, each a connection context under *out with a value context
 * under it, are served by ref'd timers. In phase 1 the server releases
 * *stopping and drains *out; the requests finish (or are cut short) and are
 * released, and *out is over once the last one is (or the grace period).
 * ------------------------------------------------------------------------- */

enum { NREQS = 3 };

typedef struct server_s server_t;

typedef struct {
  server_t *srv;
  uv_timer_t t;
  uvctx_t *conn;
  uvctx_t *req;
  uvctx_watch_t w; /* cancels the work if the request is cancelled */
} request_t;

struct server_s {
  sd_t sd;
  rec_t drain; /* its action_rc: the requests released when it ran */
  uvctx_watch_t stop_w;
  request_t reqs[NREQS];
  int completed;
  int cancelled;
  int cancel_err;
  int released;
  int err_before[NREQS]; /* uvctx_err(out) before each release */
  int err_after[NREQS];  /* and after it */
  int cause_after;       /* uvctx_cause(out) after the last */
  uint64_t last_at;      /* uvctx_now() at the last */
};

static void request_end(request_t *r) {
  server_t *s = r->srv;
  int n = s->released++;
  uv_close((uv_handle_t *)&r->t, NULL);
  s->err_before[n] = uvctx_err(s->sd.out);
  s->last_at = uvctx_now();
  release_all(r->req, r->conn);
  s->err_after[n] = uvctx_err(s->sd.out);
  s->cause_after = uvctx_cause(s->sd.out);
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

static void note_released(rec_t *r) {
  r->action_rc = ((server_t *)r->arg)->released;
}

static void server_stopping(uvctx_watch_t *w, int err) {
  server_t *s = w->data;
  (void)err;
  drop(&s->sd.stopping);
  rec_drain(&s->drain, &s->sd.j, s->sd.out);
  s->drain.action = note_released;
  s->drain.arg = s;
}

/* Row 0: requests take 15 ms and more (the last made ends first), the grace
 * period far longer, and nobody asks for phase 2: out is over right after
 * the last request is released, never while one is alive. Row 1: requests
 * would take a minute; the 20 ms grace period cuts them short. */
typedef struct {
  const char *name;
  uint64_t grace_ms;
  uint64_t request_ms;
  int drain_err;
} server_row_t;

static const server_row_t server_rows[] = {
    {"the requests finish, then the tree drains", 2000, 15, UV_ECANCELED},
    {"the grace period cuts the requests short, then the tree drains", 20,
     60000, UV_ETIMEDOUT},
};

START_TEST(graceful_shutdown_of_a_server) {
  const server_row_t *q = &server_rows[_i];
  const char *row = q->name;
  server_t s;
  memset(&s, 0, sizeof s);
  sd_begin(&s.sd, q->grace_ms, IDLE);
  s.stop_w.data = &s;
  ck_assert_int_eq(uvctx_watch(s.sd.stopping, &s.stop_w, server_stopping), 0);
  for (int i = 0; i < NREQS; i++) {
    request_t *r = &s.reqs[i];
    r->srv = &s;
    r->conn = mk_cancel(&s.sd.loop, s.sd.out);
    r->req = mk_value(r->conn, &key_a, r);
    r->w.data = r;
    ck_assert_int_eq(uvctx_watch(r->req, &r->w, request_cancelled), 0);
    ck_assert_int_eq(uv_timer_init(&s.sd.loop, &r->t), 0);
    r->t.data = r;
    ck_assert_int_eq(uv_timer_start(&r->t, request_done,
                                    q->request_ms + 2 * (NREQS - 1 - i), 0),
                     0);
  }

  uint64_t t0 = uvctx_now();
  ck_row(row, uvctx_shutdown(s.sd.out, UV_ESHUTDOWN), ==, 0);
  ck_row(row, run_until(&s.sd.loop, &s.drain.calls, 1), ==, 1);
  ck_row(row, s.drain.action_rc, ==, NREQS); /* none left in flight */
  ck_row(row, s.drain.err, ==, q->drain_err);
  ck_row(row, s.drain.cause, ==, UV_ESHUTDOWN);
  ck_row(row, s.drain.calls, ==, 1);
  ck_row(row, uvctx_shutdown(s.sd.out, 0), ==, UV_EALREADY); /* over */
  if (q->drain_err == UV_ECANCELED) { /* none was cut short */
    ck_row(row, s.completed, ==, NREQS);
    ck_row(row, s.cancelled, ==, 0);
    for (int i = 0; i < NREQS; i++) {
      ck_row(row, s.err_before[i], ==, 0);
      ck_row(row, s.err_after[i], ==, i < NREQS - 1 ? 0 : UV_ECANCELED);
    }
    ck_row(row, s.cause_after, ==, UV_ESHUTDOWN);
    ck_row(row, s.drain.now, >=, s.last_at);
  } else {
    ck_row(row, s.completed, ==, 0);
    ck_row(row, s.cancelled, ==, NREQS);
    ck_row(row, s.cancel_err, ==, UV_ETIMEDOUT);
    ck_row(row, s.drain.now, >=, t0 + q->grace_ms);
  }
  sd_end(&s.sd);
}
END_TEST

/* An idle tree is over at phase 1, and a drain on out needs the stopping
 * child gone too: it runs once the user releases it. */
START_TEST(drain_on_out_of_an_idle_tree_runs_once_stopping_is_released) {
  rec_t pd;
  sd_t s;
  sd_begin(&s, 60000, IDLE);
  rec_drain(&pd, &s.j, s.out);
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

/* Over early: out is done once nothing but stopping is left below it in
 * the grace period. Every kind of child of out is in flight, not only
 * cancellable ones, and so is one that outlives its parent or begins in the
 * grace period; nor does stopping released in the grace period end it while
 * one is alive. */
enum {
  CHILD_VALUE,
  CHILD_WITHOUT_CANCEL,
  CHILD_ANY,
  CHILD_OF_RELEASED_CONN,
  CHILD_BEGUN_LATE,
  STOPPING_RELEASED,
  NCHILD_KINDS
};

static const char *const child_kinds[NCHILD_KINDS] = {
    "a value child",
    "a without-cancel child",
    "an any child (out its second parent)",
    "a value child of a connection released in the grace period",
    "a request begun in the grace period, after the first one finished",
    "a request, and stopping released in the grace period",
};

START_TEST(every_kind_of_child_of_out_is_in_flight) {
  const char *row = child_kinds[_i];
  uvctx_t *other = NULL; /* the any's other parent, the conn, the first req */
  uvctx_t *child = NULL;
  sd_t s;
  sd_begin(&s, 60000, IDLE);
  rec_watch(&s.po, &s.j, s.out);
  if (_i == CHILD_VALUE) {
    child = mk_value(s.out, &key_a, NULL);
  } else if (_i == CHILD_WITHOUT_CANCEL) {
    child = mk_without(s.out);
  } else if (_i == CHILD_ANY) {
    other = mk_cancel(&s.loop, uvctx_background());
    uvctx_t *parents[2] = {other, s.out};
    ck_row(row, uvctx_with_any(&s.loop, parents, 2, &child), ==, 0);
    ck_assert_ptr_nonnull(child);
  } else if (_i == STOPPING_RELEASED) {
    child = mk_cancel(&s.loop, s.out);
  } else {
    other = mk_cancel(&s.loop, s.out);
    if (_i == CHILD_OF_RELEASED_CONN)
      child = mk_value(other, &key_a, NULL);
  }

  ck_row(row, uvctx_shutdown(s.out, UV_ESHUTDOWN), ==, 0);
  if (_i == CHILD_BEGUN_LATE || _i == STOPPING_RELEASED)
    uv_run(&s.loop, UV_RUN_DEFAULT);
  if (_i == CHILD_BEGUN_LATE)
    child = mk_cancel(&s.loop, s.out);
  if (_i == CHILD_OF_RELEASED_CONN || _i == CHILD_BEGUN_LATE)
    drop(&other);
  if (_i == STOPPING_RELEASED)
    drop(&s.stopping);
  ck_row(row, uvctx_err(s.out), ==, 0);
  run_for(&s.loop, 20);
  ck_row(row, uvctx_err(s.out), ==, 0);
  ck_row(row, s.po.calls, ==, 0);
  uvctx_release(child); /* now nothing but stopping is left */
  ck_row_done(row, s.out, UV_ECANCELED, UV_ESHUTDOWN);
  uv_run(&s.loop, UV_RUN_DEFAULT);
  ck_row(row, s.po.calls, ==, 1);
  uvctx_release(other);
  sd_end(&s);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Bad input
 * ------------------------------------------------------------------------- */

static void expect_einval(uv_loop_t *loop, uvctx_t *parent, const int *signums,
                          size_t count, int with_stopping, int with_out) {
  uvctx_t *stopping = SENTINEL;
  uvctx_t *out = SENTINEL;
  ck_assert_int_eq(uvctx_with_shutdown(loop, parent, signums, count, 100,
                                       with_stopping ? &stopping : NULL,
                                       with_out ? &out : NULL),
                   UV_EINVAL);
  ck_assert_ptr_eq(stopping, SENTINEL);
  ck_assert_ptr_eq(out, SENTINEL);
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

/* Each bad number in each list of helpers.h (ASan and valgrind see what
 * is not undone). */
START_TEST(with_shutdown_bad_signal_numbers_are_einval) {
  int lists[NBAD_LISTS][3];
  sd_t s;
  bad_signum_lists(bad_signums[_i], lists);
  sd_begin(&s, 60000, UNDER_PARENT);
  for (size_t i = 0; i < NBAD_LISTS; i++)
    expect_einval(&s.loop, s.parent, lists[i], bad_list_counts[i], 1, 1);
  sd_end(&s);
}
END_TEST

/* signums may be NULL when count is 0; released before any shutdown, in
 * either order, the pair leaves nothing on the loop. */
START_TEST(with_shutdown_count_0_accepts_null_signums_and_either_release_order) {
  static const int sig = SIGUSR1;
  sd_t s;
  sd_begin_on(&s, NULL, 0, 10, IDLE);
  drop(&s.out);
  sd_end(&s); /* stopping after out */
  sd_begin_on(&s, &sig, 0, 10, IDLE);
  sd_end(&s); /* stopping before out */
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
  uvctx_t *const others[] = {NULL, uvctx_background(), c, sig, v, s.stopping};
  for (size_t i = 0; i < sizeof others / sizeof others[0]; i++)
    ck_assert_msg(uvctx_shutdown(others[i], 0) == UV_EINVAL, "others[%zu]", i);
  ck_assert_int_eq(uvctx_err(c), 0);
  ck_assert_int_eq(uvctx_err(sig), 0);
  ck_assert_int_eq(uvctx_err(s.stopping), 0);
  ck_assert_int_eq(uvctx_err(s.out), 0);
  release_all(sig, v, c);
  sd_end(&s);
}
END_TEST

Suite *shutdown_suite(void) {
  return SUITE(
      "shutdown",
      {"phases", TIMEOUT_LOOP_S, NULL, NULL,
       .loops = LOOPS(
           {parent_done_finishes_out, 0, NROWS(parent_rows)},
           {calls_move_the_shutdown_through_its_phases, 0, NROWS(calls_rows)},
           {shutdown_keeps_the_loop_alive_only_with_keepalive, 0,
            NROWS(alive_rows)},
           {grace_period_over_finishes_out_with_etimedout_never_early, 0,
            NROWS(grace_rows)})},
      {"signals", TIMEOUT_LOOP_S, NULL, NULL,
       .tests = TESTS(released_shutdown_context_stops_listening),
       .loops = LOOPS({signals_move_the_shutdown_through_its_phases, 0,
                       NROWS(sigseqs)})},
      {"threads_release", TIMEOUT_THREADS_S, NULL, NULL,
       .tests = TESTS(release_during_the_grace_period_closes_the_loop),
       .loops = LOOPS({another_thread_moves_the_shutdown, 0,
                       NROWS(thread_rows)})},
      {"over_early_drain", TIMEOUT_LOOP_S, NULL, NULL,
       .tests = TESTS(
           drain_on_out_of_an_idle_tree_runs_once_stopping_is_released),
       .loops = LOOPS(
           {every_kind_of_child_of_out_is_in_flight, 0, NCHILD_KINDS},
           {graceful_shutdown_of_a_server, 0, NROWS(server_rows)})},
      {"bad_input", TIMEOUT_LOOP_S, NULL, NULL,
       .tests = TESTS(with_shutdown_null_arguments_are_einval,
                      with_shutdown_count_0_accepts_null_signums_and_either_release_order,
                      shutdown_of_null_or_a_context_of_another_kind_is_einval),
       .loops = LOOPS(
           {with_shutdown_bad_signal_numbers_are_einval, 0, NBAD_SIGNUMS})});
}
