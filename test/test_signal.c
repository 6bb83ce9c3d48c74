/* Signals: uvctx_with_signal and uvctx_signal_received (Go's
 * signal.NotifyContext).
 *
 * Signals are sent to this process with uv_kill(uv_os_getpid(), ...). Only
 * SIGUSR1, SIGUSR2 and SIGHUP are used, and since their default action ends
 * the process, every test that sends one keeps a "catcher" of its own (an
 * unref'd uv_signal_t for that signal) started while it sends it: a signal
 * that uvctx no longer listens for then reaches the catcher instead of
 * killing the test. The contexts' uv_signal_t are unref'd, so a test waits
 * for a callback with run_until(), which keeps the loop alive with a ref'd
 * polling timer of its own and gives up after about 3 s. */
#include <signal.h>
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

typedef struct {
  int ran; /* callbacks run so far, all probes of the test */
} journal_t;

typedef struct {
  uvctx_watch_t w;
  journal_t *j;
  uvctx_t *ctx;
  int calls;
  int err;
  int seq;
  int signal_inside; /* uvctx_signal_received(ctx) read in the callback */
} probe_t;

static void probe_cb(uvctx_watch_t *w, int err) {
  probe_t *p = w->data;
  p->calls++;
  p->err = err;
  p->seq = ++p->j->ran;
  p->signal_inside = uvctx_signal_received(p->ctx);
}

static int probe_watch(probe_t *p, journal_t *j, uvctx_t *ctx) {
  memset(p, 0, sizeof *p);
  p->j = j;
  p->ctx = ctx;
  p->w.data = p;
  return uvctx_watch(ctx, &p->w, probe_cb);
}

static uvctx_t *mk_signal(uv_loop_t *loop, uvctx_t *parent, const int *signums,
                          size_t count) {
  uvctx_t *c = NULL;
  ck_assert_int_eq(uvctx_with_signal(loop, parent, signums, count, &c), 0);
  ck_assert_ptr_nonnull(c);
  return c;
}

static uvctx_t *mk_signal1(uv_loop_t *loop, uvctx_t *parent, int signum) {
  return mk_signal(loop, parent, &signum, 1);
}

/* ---------------------------------------------------------------------------
 * A signal finishes the context
 * ------------------------------------------------------------------------- */

START_TEST(signal_context_is_not_done_before_a_signal) {
  uv_loop_t loop;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *c = mk_signal1(&loop, uvctx_background(), SIGUSR1);

  run_for(&loop, 5);
  ck_assert_int_eq(uvctx_err(c), 0);
  ck_assert_int_eq(uvctx_cause(c), 0);
  ck_assert_int_eq(uvctx_signal_received(c), 0);

  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(signal_finishes_the_context_with_ecanceled) {
  uv_loop_t loop;
  journal_t j = {0};
  probe_t p;
  catcher_t own;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  catcher_start(&own, &loop, SIGUSR1);
  uvctx_t *c = mk_signal1(&loop, uvctx_background(), SIGUSR1);
  ck_assert_int_eq(probe_watch(&p, &j, c), 0);

  send_signal(SIGUSR1);
  ck_assert(run_until(&loop, &p.calls, 1));
  ck_assert_int_eq(p.calls, 1);
  ck_assert_int_eq(p.err, UV_ECANCELED);
  ck_assert_int_eq(uvctx_err(c), UV_ECANCELED);
  ck_assert_int_ne(uvctx_cause(c), 0);

  catcher_close(&own);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(signal_received_reports_the_signal_that_fired) {
  static const int sigs[] = {SIGUSR1, SIGUSR2, SIGHUP};
  uv_loop_t loop;
  journal_t j = {0};
  probe_t p;
  catcher_t own;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  catcher_start(&own, &loop, SIGUSR2);
  uvctx_t *c = mk_signal(&loop, uvctx_background(), sigs, 3);
  ck_assert_int_eq(probe_watch(&p, &j, c), 0);

  send_signal(SIGUSR2);
  ck_assert(run_until(&loop, &p.calls, 1));
  ck_assert_int_eq(p.signal_inside, SIGUSR2); /* already set in the callback */
  ck_assert_int_eq(uvctx_signal_received(c), SIGUSR2);

  catcher_close(&own);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(signal_received_is_0_before_any_signal) {
  uv_loop_t loop;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *c = mk_signal1(&loop, uvctx_background(), SIGUSR1);
  ck_assert_int_eq(uvctx_signal_received(c), 0);
  uv_run(&loop, UV_RUN_NOWAIT);
  ck_assert_int_eq(uvctx_signal_received(c), 0);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(only_the_first_signal_counts) {
  static const int sigs[] = {SIGUSR1, SIGUSR2};
  uv_loop_t loop;
  journal_t j = {0};
  probe_t p;
  catcher_t own1, own2;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  catcher_start(&own1, &loop, SIGUSR1);
  catcher_start(&own2, &loop, SIGUSR2);
  uvctx_t *c = mk_signal(&loop, uvctx_background(), sigs, 2);
  ck_assert_int_eq(probe_watch(&p, &j, c), 0);

  send_signal(SIGUSR2);
  ck_assert(run_until(&loop, &p.calls, 1));
  ck_assert_int_eq(uvctx_signal_received(c), SIGUSR2);

  /* A later signal, of the other number or the same one, changes nothing. */
  send_signal(SIGUSR1);
  ck_assert(run_until(&loop, &own1.got, 1));
  send_signal(SIGUSR2);
  ck_assert(run_until(&loop, &own2.got, 2));
  ck_assert_int_eq(uvctx_signal_received(c), SIGUSR2);
  ck_assert_int_eq(uvctx_err(c), UV_ECANCELED);
  ck_assert_int_eq(p.calls, 1);

  catcher_close(&own1);
  catcher_close(&own2);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(signal_runs_the_watches_of_the_context_and_its_descendants_in_order) {
  uv_loop_t loop;
  journal_t j = {0};
  probe_t ps, pc, pv, ps2;
  catcher_t own;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  catcher_start(&own, &loop, SIGHUP);
  uvctx_t *s = mk_signal1(&loop, uvctx_background(), SIGHUP);
  uvctx_t *c = mk_cancel(&loop, s);
  uvctx_t *v = mk_value(c, &key_a, NULL);
  ck_assert_int_eq(probe_watch(&pv, &j, v), 0);
  ck_assert_int_eq(probe_watch(&pc, &j, c), 0);
  ck_assert_int_eq(probe_watch(&ps, &j, s), 0);
  ck_assert_int_eq(probe_watch(&ps2, &j, s), 0);

  send_signal(SIGHUP);
  ck_assert(run_until(&loop, &j.ran, 4));
  ck_assert_int_eq(uvctx_err(c), UV_ECANCELED);
  ck_assert_int_eq(uvctx_err(v), UV_ECANCELED);
  ck_assert_int_eq(ps.calls, 1);
  ck_assert_int_eq(ps2.calls, 1);
  ck_assert_int_eq(pc.calls, 1);
  ck_assert_int_eq(pv.calls, 1);
  ck_assert_int_eq(pc.err, UV_ECANCELED);
  ck_assert_int_lt(ps.seq, ps2.seq);
  ck_assert_int_lt(ps2.seq, pc.seq);
  ck_assert_int_lt(pc.seq, pv.seq);

  catcher_close(&own);
  uvctx_release(v);
  uvctx_release(c);
  uvctx_release(s);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(two_signal_contexts_on_the_same_signal_both_finish) {
  uv_loop_t loop;
  journal_t j = {0};
  probe_t pa, pb;
  catcher_t own;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  catcher_start(&own, &loop, SIGUSR1);
  uvctx_t *a = mk_signal1(&loop, uvctx_background(), SIGUSR1);
  uvctx_t *b = mk_signal1(&loop, uvctx_background(), SIGUSR1);
  ck_assert_int_eq(probe_watch(&pa, &j, a), 0);
  ck_assert_int_eq(probe_watch(&pb, &j, b), 0);

  send_signal(SIGUSR1);
  ck_assert(run_until(&loop, &j.ran, 2));
  ck_assert_int_eq(uvctx_signal_received(a), SIGUSR1);
  ck_assert_int_eq(uvctx_signal_received(b), SIGUSR1);

  catcher_close(&own);
  uvctx_release(a);
  uvctx_release(b);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(a_signal_not_in_the_list_does_not_finish_it) {
  uv_loop_t loop;
  catcher_t own;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  catcher_start(&own, &loop, SIGUSR2);
  uvctx_t *c = mk_signal1(&loop, uvctx_background(), SIGUSR1);

  send_signal(SIGUSR2);
  ck_assert(run_until(&loop, &own.got, 1));
  uv_run(&loop, UV_RUN_NOWAIT);
  ck_assert_int_eq(uvctx_err(c), 0);
  ck_assert_int_eq(uvctx_signal_received(c), 0);

  catcher_close(&own);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Finished by something else than a signal
 * ------------------------------------------------------------------------- */

START_TEST(parent_done_finishes_it_with_signal_received_0) {
  uv_loop_t loop;
  journal_t j = {0};
  probe_t p;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *c = mk_signal1(&loop, parent, SIGUSR1);
  ck_assert_int_eq(probe_watch(&p, &j, c), 0);

  ck_assert_int_eq(uvctx_cancel_cause(parent, UV_EPIPE), 0);
  ck_assert_int_eq(uvctx_err(c), UV_ECANCELED); /* at once, loop thread */
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(p.calls, 1);
  ck_assert_int_eq(p.err, UV_ECANCELED);
  ck_assert_int_eq(uvctx_cause(c), UV_EPIPE);
  ck_assert_int_eq(uvctx_signal_received(c), 0);

  uvctx_release(c);
  uvctx_release(parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(child_of_a_done_parent_is_born_done_with_signal_received_0) {
  uv_loop_t loop;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(uvctx_cancel_cause(parent, UV_EIO), 0);
  uvctx_t *c = mk_signal1(&loop, parent, SIGUSR1);
  ck_assert_int_eq(uvctx_err(c), UV_ECANCELED);
  ck_assert_int_eq(uvctx_cause(c), UV_EIO);
  ck_assert_int_eq(uvctx_signal_received(c), 0);
  uvctx_release(c);
  uvctx_release(parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(signal_context_can_be_cancelled_and_then_signal_received_is_0) {
  uv_loop_t loop;
  journal_t j = {0};
  probe_t p;
  catcher_t own;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  catcher_start(&own, &loop, SIGUSR1);
  uvctx_t *c = mk_signal1(&loop, uvctx_background(), SIGUSR1);
  ck_assert_int_eq(probe_watch(&p, &j, c), 0);

  ck_assert_int_eq(uvctx_cancel(c), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(p.calls, 1);
  ck_assert_int_eq(uvctx_signal_received(c), 0);
  /* A signal after it is done is not recorded either. */
  send_signal(SIGUSR1);
  ck_assert(run_until(&loop, &own.got, 1));
  ck_assert_int_eq(uvctx_signal_received(c), 0);
  ck_assert_int_eq(p.calls, 1);

  catcher_close(&own);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(signal_received_is_0_for_null_and_other_kinds) {
  uv_loop_t loop;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(uvctx_cancel(c), 0);
  ck_assert_int_eq(uvctx_signal_received(NULL), 0);
  ck_assert_int_eq(uvctx_signal_received(uvctx_background()), 0);
  ck_assert_int_eq(uvctx_signal_received(uvctx_todo()), 0);
  ck_assert_int_eq(uvctx_signal_received(c), 0);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Liveness and release
 * ------------------------------------------------------------------------- */

/* An unref'd timer that stops the loop if it is still running: turns "the
 * signal handle keeps the loop alive" into a failure instead of a hang. */
typedef struct {
  uv_timer_t t;
  int fired;
} guard_t;

static void guard_fire(uv_timer_t *t) {
  ((guard_t *)t->data)->fired = 1;
  uv_stop(t->loop);
}

static void guard_start(guard_t *g, uv_loop_t *loop, uint64_t ms) {
  memset(g, 0, sizeof *g);
  ck_assert_int_eq(uv_timer_init(loop, &g->t), 0);
  g->t.data = g;
  ck_assert_int_eq(uv_timer_start(&g->t, guard_fire, ms, 0), 0);
  uv_unref((uv_handle_t *)&g->t);
}

START_TEST(signal_context_does_not_keep_the_loop_alive) {
  uv_loop_t loop;
  guard_t g;
  static const int sigs[] = {SIGUSR1, SIGUSR2};
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *c = mk_signal(&loop, uvctx_background(), sigs, 2);
  guard_start(&g, &loop, 100);

  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(g.fired, 0);
  ck_assert_int_eq(uvctx_err(c), 0);

  uv_close((uv_handle_t *)&g.t, NULL);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(release_stops_listening) {
  uv_loop_t loop;
  catcher_t own;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *c = mk_signal1(&loop, uvctx_background(), SIGUSR1);
  uvctx_release(c);
  uv_run(&loop, UV_RUN_DEFAULT); /* its handles close */

  /* Ours is now the only listener: it gets the signal, and the loop still
   * closes (uvctx has no handle left on it). */
  catcher_start(&own, &loop, SIGUSR1);
  send_signal(SIGUSR1);
  ck_assert(run_until(&loop, &own.got, 1));
  ck_assert_int_eq(own.got, 1);
  catcher_close(&own);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(release_after_the_signal_closes_the_loop) {
  uv_loop_t loop;
  journal_t j = {0};
  probe_t p;
  catcher_t own;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  catcher_start(&own, &loop, SIGUSR2);
  uvctx_t *c = mk_signal1(&loop, uvctx_background(), SIGUSR2);
  ck_assert_int_eq(probe_watch(&p, &j, c), 0);
  send_signal(SIGUSR2);
  ck_assert(run_until(&loop, &p.calls, 1));
  uvctx_release(c);
  uv_run(&loop, UV_RUN_DEFAULT);

  send_signal(SIGUSR2);
  ck_assert(run_until(&loop, &own.got, 2));
  catcher_close(&own);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(releasing_one_context_leaves_another_on_the_same_signal_listening) {
  uv_loop_t loop;
  journal_t j = {0};
  probe_t pb;
  catcher_t own;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  catcher_start(&own, &loop, SIGUSR1);
  uvctx_t *a = mk_signal1(&loop, uvctx_background(), SIGUSR1);
  uvctx_t *b = mk_signal1(&loop, uvctx_background(), SIGUSR1);
  ck_assert_int_eq(probe_watch(&pb, &j, b), 0);
  uvctx_release(a);
  uv_run(&loop, UV_RUN_NOWAIT);

  send_signal(SIGUSR1);
  ck_assert(run_until(&loop, &pb.calls, 1));
  ck_assert_int_eq(uvctx_signal_received(b), SIGUSR1);

  catcher_close(&own);
  uvctx_release(b);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

typedef struct {
  uvctx_watch_t w;
  uvctx_t *ctx;
  int calls;
  int signal_inside;
} releaser_t;

static void releaser_cb(uvctx_watch_t *w, int err) {
  releaser_t *r = w->data;
  (void)err;
  r->calls++;
  r->signal_inside = uvctx_signal_received(r->ctx);
  uvctx_release(r->ctx); /* the last reference */
}

START_TEST(signal_context_released_in_its_own_watch_callback) {
  uv_loop_t loop;
  catcher_t own;
  releaser_t r;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  catcher_start(&own, &loop, SIGUSR1);
  memset(&r, 0, sizeof r);
  r.w.data = &r;
  r.ctx = mk_signal1(&loop, uvctx_background(), SIGUSR1);
  ck_assert_int_eq(uvctx_watch(r.ctx, &r.w, releaser_cb), 0);

  send_signal(SIGUSR1);
  ck_assert(run_until(&loop, &r.calls, 1));
  ck_assert_int_eq(r.signal_inside, SIGUSR1);
  catcher_close(&own);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Bad input: UV_EINVAL, *out untouched, nothing leaked
 * ------------------------------------------------------------------------- */

static void expect_einval(uv_loop_t *loop, uvctx_t *parent, const int *signums,
                          size_t count, int with_out) {
  uvctx_t *sentinel = (uvctx_t *)&key_a;
  uvctx_t *out = sentinel;
  ck_assert_int_eq(uvctx_with_signal(loop, parent, signums, count,
                                     with_out ? &out : NULL),
                   UV_EINVAL);
  ck_assert_ptr_eq(out, sentinel);
}

START_TEST(null_arguments_are_einval) {
  uv_loop_t loop;
  int sig = SIGUSR1;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  expect_einval(NULL, uvctx_background(), &sig, 1, 1);
  expect_einval(&loop, NULL, &sig, 1, 1);
  expect_einval(&loop, uvctx_background(), NULL, 1, 1);
  expect_einval(&loop, uvctx_background(), &sig, 1, 0);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(zero_count_is_einval) {
  uv_loop_t loop;
  int sig = SIGUSR1;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  expect_einval(&loop, uvctx_background(), &sig, 0, 1);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(signal_numbers_that_cannot_be_caught_are_einval) {
  static const int bad[] = {0, -1, -SIGUSR1, NSIG, NSIG + 1, 65, 1000,
                            SIGKILL, SIGSTOP};
  uv_loop_t loop;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    expect_einval(&loop, uvctx_background(), &bad[i], 1, 1);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* The bad number comes after good ones: what was set up for those must be
 * undone (no handle left open, no memory leaked, nothing listening). */
START_TEST(a_bad_signal_after_good_ones_is_einval_and_leaves_nothing) {
  static const int lists[][3] = {{SIGUSR1, SIGUSR2, SIGKILL},
                                 {SIGUSR1, SIGUSR2, 0},
                                 {SIGUSR1, SIGUSR2, NSIG},
                                 {SIGUSR1, SIGSTOP, SIGUSR2}};
  uv_loop_t loop;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++)
    expect_einval(&loop, parent, lists[i], 3, 1);
  uvctx_release(parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(failed_constructor_leaves_the_parent_unchanged) {
  static const int list[] = {SIGUSR1, SIGKILL};
  uv_loop_t loop;
  journal_t j = {0};
  probe_t p;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(probe_watch(&p, &j, parent), 0);
  expect_einval(&loop, parent, list, 2, 1);
  ck_assert_int_eq(uvctx_err(parent), 0);
  ck_assert_int_eq(uvctx_cancel(parent), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(p.calls, 1);
  uvctx_release(parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

Suite *signal_suite(void) {
  Suite *s = suite_create("signal");

  TCase *tc = tcase_create("signal_finishes");
  tcase_set_timeout(tc, TIMEOUT_LOOP_S);
  tcase_add_test(tc, signal_context_is_not_done_before_a_signal);
  tcase_add_test(tc, signal_finishes_the_context_with_ecanceled);
  tcase_add_test(tc, signal_received_reports_the_signal_that_fired);
  tcase_add_test(tc, signal_received_is_0_before_any_signal);
  tcase_add_test(tc, only_the_first_signal_counts);
  tcase_add_test(tc,
                 signal_runs_the_watches_of_the_context_and_its_descendants_in_order);
  tcase_add_test(tc, two_signal_contexts_on_the_same_signal_both_finish);
  tcase_add_test(tc, a_signal_not_in_the_list_does_not_finish_it);
  suite_add_tcase(s, tc);

  tc = tcase_create("other_finish");
  tcase_set_timeout(tc, TIMEOUT_LOOP_S);
  tcase_add_test(tc, parent_done_finishes_it_with_signal_received_0);
  tcase_add_test(tc, child_of_a_done_parent_is_born_done_with_signal_received_0);
  tcase_add_test(tc, signal_context_can_be_cancelled_and_then_signal_received_is_0);
  tcase_add_test(tc, signal_received_is_0_for_null_and_other_kinds);
  suite_add_tcase(s, tc);

  tc = tcase_create("liveness_release");
  tcase_set_timeout(tc, TIMEOUT_LOOP_S);
  tcase_add_test(tc, signal_context_does_not_keep_the_loop_alive);
  tcase_add_test(tc, release_stops_listening);
  tcase_add_test(tc, release_after_the_signal_closes_the_loop);
  tcase_add_test(tc, releasing_one_context_leaves_another_on_the_same_signal_listening);
  tcase_add_test(tc, signal_context_released_in_its_own_watch_callback);
  suite_add_tcase(s, tc);

  tc = tcase_create("bad_input");
  tcase_set_timeout(tc, TIMEOUT_LOOP_S);
  tcase_add_test(tc, null_arguments_are_einval);
  tcase_add_test(tc, zero_count_is_einval);
  tcase_add_test(tc, signal_numbers_that_cannot_be_caught_are_einval);
  tcase_add_test(tc, a_bad_signal_after_good_ones_is_einval_and_leaves_nothing);
  tcase_add_test(tc, failed_constructor_leaves_the_parent_unchanged);
  suite_add_tcase(s, tc);

  return s;
}
