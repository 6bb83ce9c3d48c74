/* Deadlines: uvctx_with_deadline(), uvctx_with_timeout() and their _cause
 * variants, uvctx_deadline(), uvctx_now(), and how deadlines interact with
 * the tree, with cancel and with the loop's liveness.
 *
 * Contexts never keep the loop alive, so waiting for a deadline is done with a
 * ref'd timer of the test's own (run_until) or by uv_ref()ing the done
 * signal. Times are short; nothing asserts how late a deadline fires. */
#include <stdint.h>
#include <string.h>

#include "helpers.h"
#include "test.h"

/* ---------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------- */

static int never(void *arg) {
  (void)arg;
  return 0;
}

/* Runs the loop until the uvctx clock has reached now + ms. */
static void wait_ms(uv_loop_t *loop, uint64_t ms) {
  poll_until(loop, never, NULL, uvctx_now() + ms);
}

static const char key_user;
static char value_alice[] = "alice";

/* ---------------------------------------------------------------------------
 * The clock
 * ------------------------------------------------------------------------- */

START_TEST(test_now_is_uv_hrtime_in_milliseconds) {
  uint64_t before = uv_hrtime() / 1000000;
  uint64_t now = uvctx_now();
  uint64_t after = uv_hrtime() / 1000000;
  ck_assert_uint_ge(now, before);
  ck_assert_uint_le(now, after);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Deadlines fire by themselves, never early
 * ------------------------------------------------------------------------- */

START_TEST(test_deadline_context_times_out_by_itself_with_etimedout) {
  uvctx_t *ctx = mk_timeout(&loop, uvctx_background(), 5);
  rec_t rec;
  rec_watch(&rec, NULL, ctx);
  assert_not_done(ctx);

  ck_assert(poll_until(&loop, rec_called, &rec, uvctx_now() + EVENTUALLY_MS));
  ck_assert_int_eq(rec.calls, 1);
  ck_assert_int_eq(rec.err, UV_ETIMEDOUT);
  ck_assert_int_eq(rec.cause, UV_ETIMEDOUT);
  assert_done(ctx, UV_ETIMEDOUT, UV_ETIMEDOUT);

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_timeout_cause_is_the_cause_when_the_deadline_fires) {
  uvctx_t *ctx =
      mk_timeout_cause(&loop, uvctx_background(), 5, UV_EHOSTUNREACH);
  uvctx_t *abs = NULL;
  ck_assert_int_eq(uvctx_with_deadline_cause(&loop, uvctx_background(),
                                             uvctx_now() + 5, UV_ENETDOWN,
                                             &abs),
                   0);
  rec_t rec, abs_rec;
  rec_watch(&rec, NULL, ctx);
  rec_watch(&abs_rec, NULL, abs);

  wait_ms(&loop, 15);
  ck_assert_int_eq(rec.calls, 1);
  ck_assert_int_eq(rec.err, UV_ETIMEDOUT);
  ck_assert_int_eq(rec.cause, UV_EHOSTUNREACH);
  assert_done(ctx, UV_ETIMEDOUT, UV_EHOSTUNREACH);
  ck_assert_int_eq(abs_rec.calls, 1);
  assert_done(abs, UV_ETIMEDOUT, UV_ENETDOWN);

  release_all(abs, ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_timeout_cause_zero_reports_etimedout_as_cause) {
  uvctx_t *ctx = mk_timeout_cause(&loop, uvctx_background(), 3, 0);

  wait_ms(&loop, 10);
  assert_done(ctx, UV_ETIMEDOUT, UV_ETIMEDOUT);

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

enum { EARLY_N = 50 };

typedef struct {
  rec_t recs[EARLY_N];
  uint64_t deadlines[EARLY_N];
} early_t;

static int all_fired(void *arg) {
  early_t *e = arg;
  for (int i = 0; i < EARLY_N; i++)
    if (e->recs[i].calls == 0)
      return 0;
  return 1;
}

START_TEST(test_deadline_never_fires_before_uvctx_now_reaches_it) {
  static early_t e;
  uvctx_t *ctxs[EARLY_N];

  /* Let libuv's cached loop time fall behind the real clock, as it does
   * after a long callback: a timer armed now from uv_now() would fire early.
   * (A sleep, not a spin: the stall is the point, not burning the CPU.) */
  ck_assert_int_eq(uv_run(&loop, UV_RUN_NOWAIT), 0);
  uv_sleep(5);

  for (int i = 0; i < EARLY_N; i++) {
    uint64_t ms = 1 + (uint64_t)(i % 20);
    if (i % 2 == 0) {
      e.deadlines[i] = uvctx_now() + ms;
      ctxs[i] = mk_deadline(&loop, uvctx_background(), e.deadlines[i]);
    } else {
      ctxs[i] = mk_timeout(&loop, uvctx_background(), ms);
      e.deadlines[i] = deadline_of(ctxs[i]);
    }
    rec_watch(&e.recs[i], NULL, ctxs[i]);
  }

  ck_assert(poll_until(&loop, all_fired, &e, uvctx_now() + EVENTUALLY_MS));
  for (int i = 0; i < EARLY_N; i++) {
    ck_assert_int_eq(e.recs[i].calls, 1);
    ck_assert_int_eq(e.recs[i].err, UV_ETIMEDOUT);
    ck_assert_msg(e.recs[i].now >= e.deadlines[i],
                  "context %d fired at %llu, before its deadline %llu", i,
                  (unsigned long long)e.recs[i].now,
                  (unsigned long long)e.deadlines[i]);
  }

  for (int i = 0; i < EARLY_N; i++)
    uvctx_release(ctxs[i]);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Born done, and never
 * ------------------------------------------------------------------------- */

/* A context whose deadline has already passed is born done: err
 * UV_ETIMEDOUT, cause the one given (UV_ETIMEDOUT without), cancel is
 * UV_EALREADY, and a watch runs on a later loop callback. Rows: a timeout of
 * 0, a deadline 1 ms ago, a deadline of 0, and the _cause variants. */
enum { BORN_TIMEOUT, BORN_RECENT, BORN_ANCIENT, BORN_TIMEOUT_CAUSE,
       BORN_DEADLINE_CAUSE, NBORN };

START_TEST(test_context_whose_deadline_has_passed_is_born_done) {
  uint64_t past = _i == BORN_ANCIENT ? 0 : uvctx_now() - 1;
  int cause = _i == BORN_TIMEOUT_CAUSE    ? UV_ENETDOWN
              : _i == BORN_DEADLINE_CAUSE ? UV_EHOSTDOWN
                                          : UV_ETIMEDOUT;
  uvctx_t *ctx;
  if (_i == BORN_TIMEOUT)
    ctx = mk_timeout(&loop, uvctx_background(), 0);
  else if (_i == BORN_TIMEOUT_CAUSE)
    ctx = mk_timeout_cause(&loop, uvctx_background(), 0, cause);
  else if (_i == BORN_DEADLINE_CAUSE)
    ck_assert_int_eq(uvctx_with_deadline_cause(&loop, uvctx_background(),
                                               past, cause, &ctx),
                     0);
  else
    ctx = mk_deadline(&loop, uvctx_background(), past);

  assert_done(ctx, UV_ETIMEDOUT, cause);
  ck_assert_int_eq(uvctx_cancel(ctx), UV_EALREADY);
  rec_t rec;
  rec_watch(&rec, NULL, ctx);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(rec.calls, 1);
  ck_assert_int_eq(rec.err, UV_ETIMEDOUT);
  ck_assert_int_eq(rec.cause, cause);

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_child_of_timed_out_parent_is_born_done_with_its_cause) {
  uvctx_t *parent =
      mk_timeout_cause(&loop, uvctx_background(), 0, UV_ENETUNREACH);
  uvctx_t *child = mk_cancel(&loop, parent);
  uvctx_t *later = mk_timeout_cause(&loop, parent, 60000, UV_EHOSTDOWN);
  uvctx_t *value = mk_value(parent, &key_user, value_alice);

  assert_done(child, UV_ETIMEDOUT, UV_ENETUNREACH);
  assert_done(later, UV_ETIMEDOUT, UV_ENETUNREACH);
  assert_done(value, UV_ETIMEDOUT, UV_ENETUNREACH);

  release_all(value, later, child, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_timeout_near_uint64_max_saturates_and_never_comes) {
  uvctx_t *max = mk_timeout(&loop, uvctx_background(), UINT64_MAX);
  uvctx_t *almost = mk_timeout(&loop, uvctx_background(), UINT64_MAX - 1);
  uvctx_t *far = mk_deadline(&loop, uvctx_background(), UINT64_MAX);

  ck_assert_uint_eq(deadline_of(max), UINT64_MAX);
  ck_assert_uint_eq(deadline_of(almost), UINT64_MAX);
  ck_assert_uint_eq(deadline_of(far), UINT64_MAX);
  assert_not_done(max);
  assert_not_done(almost);
  assert_not_done(far);

  wait_ms(&loop, 5);
  assert_not_done(max);
  assert_not_done(almost);
  assert_not_done(far);

  release_all(far, almost, max);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * uvctx_deadline()
 * ------------------------------------------------------------------------- */

START_TEST(test_with_deadline_reports_its_deadline) {
  uint64_t dl = uvctx_now() + 60000;
  uvctx_t *ctx = mk_deadline(&loop, uvctx_background(), dl);

  ck_assert_uint_eq(deadline_of(ctx), dl);

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_with_timeout_reports_now_plus_timeout) {
  uint64_t before = uvctx_now();
  uvctx_t *ctx = mk_timeout(&loop, uvctx_background(), 60000);
  uint64_t after = uvctx_now();

  uint64_t dl = deadline_of(ctx);
  ck_assert_uint_ge(dl, before + 60000);
  ck_assert_uint_le(dl, after + 60000);

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_deadline_is_none_without_a_deadline_in_the_ancestry) {
  uvctx_t *cancel = mk_cancel(&loop, uvctx_background());
  uvctx_t *value = mk_value(cancel, &key_user, value_alice);
  const uint64_t sentinel = 0xdeadbeefULL;
  uint64_t dl = sentinel;

  ck_assert_int_eq(uvctx_deadline(uvctx_background(), &dl), 0);
  ck_assert_int_eq(uvctx_deadline(uvctx_todo(), &dl), 0);
  ck_assert_int_eq(uvctx_deadline(cancel, &dl), 0);
  ck_assert_int_eq(uvctx_deadline(value, &dl), 0);
  ck_assert_uint_eq(dl, sentinel);

  release_all(value, cancel);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_deadline_later_than_parents_reports_the_parents) {
  uint64_t early = uvctx_now() + 60000;
  uvctx_t *parent = mk_deadline(&loop, uvctx_background(), early);
  uvctx_t *child = mk_deadline(&loop, parent, early + 30000);

  ck_assert_uint_eq(deadline_of(child), early);
  ck_assert_uint_eq(deadline_of(parent), early);

  release_all(child, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_deadline_earlier_than_parents_reports_its_own) {
  uint64_t late = uvctx_now() + 60000;
  uvctx_t *parent = mk_deadline(&loop, uvctx_background(), late);
  uvctx_t *child = mk_deadline(&loop, parent, late - 30000);

  ck_assert_uint_eq(deadline_of(child), late - 30000);
  ck_assert_uint_eq(deadline_of(parent), late);

  release_all(child, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_deadline_is_inherited_through_value_and_cancel_contexts) {
  uint64_t dl = uvctx_now() + 60000;
  uvctx_t *timed = mk_deadline(&loop, uvctx_background(), dl);
  uvctx_t *value = mk_value(timed, &key_user, value_alice);
  uvctx_t *cancel = mk_cancel(&loop, value);
  uvctx_t *value2 = mk_value(cancel, &key_user, value_alice);
  uvctx_t *later = mk_deadline(&loop, value2, dl + 1000);

  ck_assert_uint_eq(deadline_of(value), dl);
  ck_assert_uint_eq(deadline_of(cancel), dl);
  ck_assert_uint_eq(deadline_of(value2), dl);
  ck_assert_uint_eq(deadline_of(later), dl);

  release_all(later, value2, cancel, value, timed);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_without_cancel_hides_the_deadlines_above_it) {
  uint64_t early = uvctx_now() + 60000;
  uvctx_t *timed = mk_deadline(&loop, uvctx_background(), early);
  uvctx_t *detached = NULL;
  ck_assert_int_eq(uvctx_without_cancel(timed, &detached), 0);
  uvctx_t *value = mk_value(detached, &key_user, value_alice);
  uvctx_t *later = mk_deadline(&loop, value, early + 30000);
  uint64_t dl = 7;

  ck_assert_int_eq(uvctx_deadline(detached, &dl), 0);
  ck_assert_int_eq(uvctx_deadline(value, &dl), 0);
  ck_assert_uint_eq(dl, 7);
  /* Only its own deadline counts below a without-cancel context. */
  ck_assert_uint_eq(deadline_of(later), early + 30000);

  release_all(later, value, detached, timed);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Deadlines in the tree
 * ------------------------------------------------------------------------- */

START_TEST(test_parent_deadline_finishes_child_with_etimedout_and_its_cause) {
  uvctx_t *parent =
      mk_timeout_cause(&loop, uvctx_background(), 5, UV_EHOSTDOWN);
  uvctx_t *child = mk_cancel(&loop, parent);
  uvctx_t *value = mk_value(child, &key_user, value_alice);
  uvctx_t *grandchild = mk_cancel(&loop, value);
  rec_t rec;
  rec_watch(&rec, NULL, grandchild);

  ck_assert(poll_until(&loop, rec_called, &rec, uvctx_now() + EVENTUALLY_MS));
  ck_assert_int_eq(rec.err, UV_ETIMEDOUT);
  ck_assert_int_eq(rec.cause, UV_EHOSTDOWN);
  assert_done(parent, UV_ETIMEDOUT, UV_EHOSTDOWN);
  assert_done(child, UV_ETIMEDOUT, UV_EHOSTDOWN);
  assert_done(value, UV_ETIMEDOUT, UV_EHOSTDOWN);
  assert_done(grandchild, UV_ETIMEDOUT, UV_EHOSTDOWN);

  release_all(grandchild, value, child, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* When the parent's deadline fires, a child with a later deadline of its own
 * (and its own cause) must look exactly like a plain child: both done, with
 * the parent's err and cause, already when the parent's watch runs. */
typedef struct {
  uvctx_watch_t w;
  uvctx_t *plain;
  uvctx_t *later;
  int calls;
  int plain_err, plain_cause;
  int later_err, later_cause;
} peek_t;

static void peek_cb(uvctx_watch_t *w, int err) {
  peek_t *p = w->data;
  (void)err;
  p->calls++;
  p->plain_err = uvctx_err(p->plain);
  p->plain_cause = uvctx_cause(p->plain);
  p->later_err = uvctx_err(p->later);
  p->later_cause = uvctx_cause(p->later);
}

static int peek_called(void *arg) { return ((peek_t *)arg)->calls > 0; }

START_TEST(test_child_deadline_later_than_parents_changes_nothing_else) {
  uvctx_t *parent =
      mk_timeout_cause(&loop, uvctx_background(), 5, UV_EHOSTDOWN);
  uvctx_t *plain = mk_cancel(&loop, parent);
  uvctx_t *later = NULL;
  ck_assert_int_eq(uvctx_with_deadline_cause(&loop, parent,
                                             deadline_of(parent) + 1000,
                                             UV_ENETDOWN, &later),
                   0);
  peek_t peek;
  memset(&peek, 0, sizeof(peek));
  peek.plain = plain;
  peek.later = later;
  peek.w.data = &peek;
  ck_assert_int_eq(uvctx_watch(parent, &peek.w, peek_cb), 0);

  ck_assert(poll_until(&loop, peek_called, &peek, uvctx_now() + EVENTUALLY_MS));
  ck_assert_int_eq(peek.plain_err, UV_ETIMEDOUT);
  ck_assert_int_eq(peek.plain_cause, UV_EHOSTDOWN);
  ck_assert_int_eq(peek.later_err, peek.plain_err);
  ck_assert_int_eq(peek.later_cause, peek.plain_cause);
  assert_done(later, UV_ETIMEDOUT, UV_EHOSTDOWN);

  release_all(later, plain, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_child_deadline_earlier_than_parents_leaves_parent_alone) {
  uvctx_t *parent = mk_timeout(&loop, uvctx_background(), 60000);
  uvctx_t *child = mk_timeout_cause(&loop, parent, 5, UV_ENETDOWN);
  rec_t rec;
  rec_watch(&rec, NULL, child);

  ck_assert(poll_until(&loop, rec_called, &rec, uvctx_now() + EVENTUALLY_MS));
  assert_done(child, UV_ETIMEDOUT, UV_ENETDOWN);
  assert_not_done(parent);

  release_all(child, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Deadlines and cancel
 * ------------------------------------------------------------------------- */

START_TEST(test_cancel_before_deadline_gives_ecanceled_and_timer_never_fires) {
  uvctx_t *ctx = mk_timeout_cause(&loop, uvctx_background(), 5, UV_EHOSTDOWN);
  uint64_t dl = deadline_of(ctx);
  rec_t rec;
  rec_watch(&rec, NULL, ctx);

  ck_assert_int_eq(uvctx_cancel(ctx), 0);
  assert_done(ctx, UV_ECANCELED, UV_ECANCELED);

  /* Wait well past the deadline. */
  poll_until(&loop, never, NULL, dl + 15);
  ck_assert_uint_gt(uvctx_now(), dl);
  ck_assert_int_eq(rec.calls, 1);
  ck_assert_int_eq(rec.err, UV_ECANCELED);
  assert_done(ctx, UV_ECANCELED, UV_ECANCELED);

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_parent_cancel_before_child_deadline_is_final) {
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *child = mk_timeout(&loop, parent, 5);
  uint64_t dl = deadline_of(child);

  ck_assert_int_eq(uvctx_cancel_cause(parent, UV_EPIPE), 0);
  assert_done(child, UV_ECANCELED, UV_EPIPE);

  poll_until(&loop, never, NULL, dl + 15);
  assert_done(child, UV_ECANCELED, UV_EPIPE);

  release_all(child, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_cancel_after_timeout_is_ealready_and_keeps_etimedout) {
  uvctx_t *ctx = mk_timeout(&loop, uvctx_background(), 3);
  rec_t rec;
  rec_watch(&rec, NULL, ctx);
  ck_assert(poll_until(&loop, rec_called, &rec, uvctx_now() + EVENTUALLY_MS));

  ck_assert_int_eq(uvctx_cancel_cause(ctx, UV_EPIPE), UV_EALREADY);
  assert_done(ctx, UV_ETIMEDOUT, UV_ETIMEDOUT);

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_timed_out_child_keeps_etimedout_after_parent_cancel) {
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *child = mk_timeout_cause(&loop, parent, 3, UV_ENETDOWN);
  rec_t rec;
  rec_watch(&rec, NULL, child);
  ck_assert(poll_until(&loop, rec_called, &rec, uvctx_now() + EVENTUALLY_MS));

  ck_assert_int_eq(uvctx_cancel_cause(parent, UV_EPIPE), 0);
  assert_done(child, UV_ETIMEDOUT, UV_ENETDOWN);
  assert_done(parent, UV_ECANCELED, UV_EPIPE);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(rec.calls, 1);

  release_all(child, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Liveness
 * ------------------------------------------------------------------------- */

START_TEST(test_deadline_context_does_not_keep_the_loop_alive) {
  uvctx_t *ctx = mk_timeout(&loop, uvctx_background(), 10000);
  stop_guard_t guard;
  stop_guard_start(&loop, &guard, EVENTUALLY_MS);

  /* Nothing of ours is alive: uv_run returns without waiting for the
   * deadline, so the context is still not done afterwards. */
  int r = uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_msg(!guard.fired, "uv_run waited for the deadline timer");
  ck_assert_int_eq(r, 0);
  assert_not_done(ctx);

  stop_guard_close(&guard);
  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_refd_done_signal_keeps_the_loop_running_until_the_deadline) {
  uvctx_t *ctx = mk_timeout(&loop, uvctx_background(), 5);
  uint64_t dl = deadline_of(ctx);
  uv_async_t *done = uvctx_done_async(ctx);
  ck_assert_ptr_nonnull(done);

  stop_guard_t guard;
  stop_guard_start(&loop, &guard, EVENTUALLY_MS);

  uv_ref((uv_handle_t *)done);
  int r = uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_msg(!guard.fired, "uv_run did not return once the signal was sent");
  ck_assert_int_eq(r, 0);

  assert_done(ctx, UV_ETIMEDOUT, UV_ETIMEDOUT);
  ck_assert_uint_ge(uvctx_now(), dl);
  /* uvctx unref'd the signal once delivered: the loop is free to stop. */
  ck_assert_int_eq(uv_has_ref((uv_handle_t *)done), 0);

  stop_guard_close(&guard);
  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

Suite *timer_suite(void) {
  return SUITE(
      "timer",
      {"clock", TIMEOUT_LOOP_S, NULL, NULL,
       .tests = TESTS(
           test_now_is_uv_hrtime_in_milliseconds)},
      {"firing", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           test_deadline_context_times_out_by_itself_with_etimedout,
           test_timeout_cause_is_the_cause_when_the_deadline_fires,
           test_timeout_cause_zero_reports_etimedout_as_cause,
           test_deadline_never_fires_before_uvctx_now_reaches_it)},
      {"born_done_or_never", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           test_child_of_timed_out_parent_is_born_done_with_its_cause,
           test_timeout_near_uint64_max_saturates_and_never_comes),
       .loops = LOOPS(
           {test_context_whose_deadline_has_passed_is_born_done, 0, NBORN})},
      {"deadline_query", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           test_with_deadline_reports_its_deadline,
           test_with_timeout_reports_now_plus_timeout,
           test_deadline_is_none_without_a_deadline_in_the_ancestry,
           test_deadline_later_than_parents_reports_the_parents,
           test_deadline_earlier_than_parents_reports_its_own,
           test_deadline_is_inherited_through_value_and_cancel_contexts,
           test_without_cancel_hides_the_deadlines_above_it)},
      {"tree", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           test_parent_deadline_finishes_child_with_etimedout_and_its_cause,
           test_child_deadline_later_than_parents_changes_nothing_else,
           test_child_deadline_earlier_than_parents_leaves_parent_alone)},
      {"cancel", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           test_cancel_before_deadline_gives_ecanceled_and_timer_never_fires,
           test_parent_cancel_before_child_deadline_is_final,
           test_cancel_after_timeout_is_ealready_and_keeps_etimedout,
           test_timed_out_child_keeps_etimedout_after_parent_cancel)},
      {"liveness", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           test_deadline_context_does_not_keep_the_loop_alive,
           test_refd_done_signal_keeps_the_loop_running_until_the_deadline)});
}
