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
  rec_t p;
  catcher_t own;
  catcher_start(&own, &loop, SIGUSR1);
  uvctx_t *c = mk_signal1(&loop, uvctx_background(), SIGUSR1);
  rec_watch(&p, NULL, c);

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

/* Actions for a rec: the signal its context reports inside the callback (in
 * action_rc); the second then drops the context's last reference. */
static void read_signal(rec_t *r) {
  r->action_rc = uvctx_signal_received(r->ctx);
}

static void read_signal_and_release(rec_t *r) {
  read_signal(r);
  uvctx_release(r->ctx);
}

START_TEST(signal_received_reports_the_signal_that_fired) {
  static const int sigs[] = {SIGUSR1, SIGUSR2, SIGHUP};
  rec_t p;
  catcher_t own;
  catcher_start(&own, &loop, SIGUSR2);
  uvctx_t *c = mk_signal(&loop, uvctx_background(), sigs, 3);
  rec_watch(&p, NULL, c);
  p.action = read_signal;

  send_signal(SIGUSR2);
  ck_assert(run_until(&loop, &p.calls, 1));
  ck_assert_int_eq(p.action_rc, SIGUSR2); /* already set in the callback */
  ck_assert_int_eq(uvctx_signal_received(c), SIGUSR2);

  catcher_close(&own);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(signal_received_is_0_before_any_signal) {
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
  rec_t p;
  catcher_t own1, own2;
  catcher_start(&own1, &loop, SIGUSR1);
  catcher_start(&own2, &loop, SIGUSR2);
  uvctx_t *c = mk_signal(&loop, uvctx_background(), sigs, 2);
  rec_watch(&p, NULL, c);

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
  journal_t j = {0};
  rec_t ps, pc, pv, ps2;
  catcher_t own;
  catcher_start(&own, &loop, SIGHUP);
  uvctx_t *s = mk_signal1(&loop, uvctx_background(), SIGHUP);
  uvctx_t *c = mk_cancel(&loop, s);
  uvctx_t *v = mk_value(c, &key_a, NULL);
  rec_watch(&pv, &j, v);
  rec_watch(&pc, &j, c);
  rec_watch(&ps, &j, s);
  rec_watch(&ps2, &j, s);

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
  release_all(v, c, s);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(two_signal_contexts_on_the_same_signal_both_finish) {
  journal_t j = {0};
  rec_t pa, pb;
  catcher_t own;
  catcher_start(&own, &loop, SIGUSR1);
  uvctx_t *a = mk_signal1(&loop, uvctx_background(), SIGUSR1);
  uvctx_t *b = mk_signal1(&loop, uvctx_background(), SIGUSR1);
  rec_watch(&pa, &j, a);
  rec_watch(&pb, &j, b);

  send_signal(SIGUSR1);
  ck_assert(run_until(&loop, &j.ran, 2));
  ck_assert_int_eq(uvctx_signal_received(a), SIGUSR1);
  ck_assert_int_eq(uvctx_signal_received(b), SIGUSR1);

  catcher_close(&own);
  release_all(a, b);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(a_signal_not_in_the_list_does_not_finish_it) {
  catcher_t own;
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
  rec_t p;
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *c = mk_signal1(&loop, parent, SIGUSR1);
  rec_watch(&p, NULL, c);

  ck_assert_int_eq(uvctx_cancel_cause(parent, UV_EPIPE), 0);
  ck_assert_int_eq(uvctx_err(c), UV_ECANCELED); /* at once, loop thread */
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(p.calls, 1);
  ck_assert_int_eq(p.err, UV_ECANCELED);
  ck_assert_int_eq(uvctx_cause(c), UV_EPIPE);
  ck_assert_int_eq(uvctx_signal_received(c), 0);

  release_all(c, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(child_of_a_done_parent_is_born_done_with_signal_received_0) {
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(uvctx_cancel_cause(parent, UV_EIO), 0);
  uvctx_t *c = mk_signal1(&loop, parent, SIGUSR1);
  ck_assert_int_eq(uvctx_err(c), UV_ECANCELED);
  ck_assert_int_eq(uvctx_cause(c), UV_EIO);
  ck_assert_int_eq(uvctx_signal_received(c), 0);
  release_all(c, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(signal_context_can_be_cancelled_and_then_signal_received_is_0) {
  rec_t p;
  catcher_t own;
  catcher_start(&own, &loop, SIGUSR1);
  uvctx_t *c = mk_signal1(&loop, uvctx_background(), SIGUSR1);
  rec_watch(&p, NULL, c);

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

START_TEST(signal_context_does_not_keep_the_loop_alive) {
  stop_guard_t g;
  static const int sigs[] = {SIGUSR1, SIGUSR2};
  uvctx_t *c = mk_signal(&loop, uvctx_background(), sigs, 2);
  stop_guard_start(&loop, &g, 100);

  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(g.fired, 0);
  ck_assert_int_eq(uvctx_err(c), 0);

  stop_guard_close(&g);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(release_stops_listening) {
  catcher_t own;
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
  rec_t p;
  catcher_t own;
  catcher_start(&own, &loop, SIGUSR2);
  uvctx_t *c = mk_signal1(&loop, uvctx_background(), SIGUSR2);
  rec_watch(&p, NULL, c);
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
  rec_t pb;
  catcher_t own;
  catcher_start(&own, &loop, SIGUSR1);
  uvctx_t *a = mk_signal1(&loop, uvctx_background(), SIGUSR1);
  uvctx_t *b = mk_signal1(&loop, uvctx_background(), SIGUSR1);
  rec_watch(&pb, NULL, b);
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

START_TEST(signal_context_released_in_its_own_watch_callback) {
  catcher_t own;
  rec_t r;
  catcher_start(&own, &loop, SIGUSR1);
  rec_watch(&r, NULL, mk_signal1(&loop, uvctx_background(), SIGUSR1));
  r.action = read_signal_and_release;

  send_signal(SIGUSR1);
  ck_assert(run_until(&loop, &r.calls, 1));
  ck_assert_int_eq(r.action_rc, SIGUSR1);
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
  int sig = SIGUSR1;
  expect_einval(NULL, uvctx_background(), &sig, 1, 1);
  expect_einval(&loop, NULL, &sig, 1, 1);
  expect_einval(&loop, uvctx_background(), NULL, 1, 1);
  expect_einval(&loop, uvctx_background(), &sig, 1, 0);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(zero_count_is_einval) {
  int sig = SIGUSR1;
  expect_einval(&loop, uvctx_background(), &sig, 0, 1);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(signal_numbers_that_cannot_be_caught_are_einval) {
  static const int bad[] = {0, -1, -SIGUSR1, NSIG, NSIG + 1, 65, 1000,
                            SIGKILL, SIGSTOP};
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
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++)
    expect_einval(&loop, parent, lists[i], 3, 1);
  uvctx_release(parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(failed_constructor_leaves_the_parent_unchanged) {
  static const int list[] = {SIGUSR1, SIGKILL};
  rec_t p;
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  rec_watch(&p, NULL, parent);
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
  return SUITE(
      "signal",
      {"signal_finishes", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           signal_context_is_not_done_before_a_signal,
           signal_finishes_the_context_with_ecanceled,
           signal_received_reports_the_signal_that_fired,
           signal_received_is_0_before_any_signal,
           only_the_first_signal_counts,
           signal_runs_the_watches_of_the_context_and_its_descendants_in_order,
           two_signal_contexts_on_the_same_signal_both_finish,
           a_signal_not_in_the_list_does_not_finish_it)},
      {"other_finish", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           parent_done_finishes_it_with_signal_received_0,
           child_of_a_done_parent_is_born_done_with_signal_received_0,
           signal_context_can_be_cancelled_and_then_signal_received_is_0,
           signal_received_is_0_for_null_and_other_kinds)},
      {"liveness_release", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           signal_context_does_not_keep_the_loop_alive,
           release_stops_listening,
           release_after_the_signal_closes_the_loop,
           releasing_one_context_leaves_another_on_the_same_signal_listening,
           signal_context_released_in_its_own_watch_callback)},
      {"bad_input", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           null_arguments_are_einval,
           zero_count_is_einval,
           signal_numbers_that_cannot_be_caught_are_einval,
           a_bad_signal_after_good_ones_is_einval_and_leaves_nothing,
           failed_constructor_leaves_the_parent_unchanged)});
}
