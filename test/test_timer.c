/* Deadlines: uvctx_with_deadline(), uvctx_with_timeout() and their _cause
 * variants, uvctx_deadline(), uvctx_now(), and how deadlines interact with
 * the tree and with cancel.
 *
 * Contexts never keep the loop alive, so waiting for a deadline is done with a
 * ref'd timer of the test's own (poll_until). Times are short; nothing
 * asserts how late a deadline fires. A deadline firing by itself, with or
 * without a cause, is a row of the watch error matrix (test_watch.c); that a
 * deadline does not keep the loop alive, and a ref'd done signal does, is
 * tested in test_reset.c and test_watch.c. */
#include <stdint.h>

#include "helpers.h"
#include "test.h"

static const char key_user;
static char value_alice[] = "alice";

/* --- The clock --- */

START_TEST(test_now_is_uv_hrtime_in_milliseconds) {
  uint64_t before = uv_hrtime() / 1000000;
  uint64_t now = uvctx_now();
  uint64_t after = uv_hrtime() / 1000000;
  ck_assert_uint_ge(now, before);
  ck_assert_uint_le(now, after);
}
END_TEST

/* --- Deadlines fire by themselves, never early --- */

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

/* --- Born done, and never --- */

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

  run_until_time(&loop, uvctx_now() + 5);
  assert_not_done(max);
  assert_not_done(almost);
  assert_not_done(far);

  release_all(far, almost, max);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* --- uvctx_deadline() --- */

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

/* No deadline in the ancestry, or none below a without-cancel context, which
 * hides those above it: uvctx_deadline() returns 0 and leaves *dl alone. */
START_TEST(test_deadline_is_none_without_a_deadline_in_the_ancestry) {
  uint64_t early = uvctx_now() + 60000;
  uvctx_t *cancel = mk_cancel(&loop, uvctx_background());
  uvctx_t *value = mk_value(cancel, &key_user, value_alice);
  uvctx_t *timed = mk_deadline(&loop, uvctx_background(), early);
  uvctx_t *detached = mk_without(timed);
  uvctx_t *detached_value = mk_value(detached, &key_user, value_alice);
  uvctx_t *later = mk_deadline(&loop, detached_value, early + 30000);
  uvctx_t *const none[] = {uvctx_background(), uvctx_todo(), cancel, value,
                           detached, detached_value};
  const uint64_t sentinel = 0xdeadbeefULL;
  uint64_t dl = sentinel;

  for (size_t i = 0; i < sizeof none / sizeof none[0]; i++)
    ck_assert_msg(uvctx_deadline(none[i], &dl) == 0, "context %zu", i);
  ck_assert_uint_eq(dl, sentinel);
  /* Only its own deadline counts below a without-cancel context. */
  ck_assert_uint_eq(deadline_of(later), early + 30000);

  release_all(later, detached_value, detached, timed, value, cancel);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* The earliest deadline in the ancestry counts, through value and cancel
 * contexts: a deadline later than an ancestor's reports the ancestor's, an
 * earlier one its own, and the ancestor keeps its own. */
START_TEST(test_deadline_is_inherited_through_value_and_cancel_contexts) {
  uint64_t dl = uvctx_now() + 60000;
  uvctx_t *timed = mk_deadline(&loop, uvctx_background(), dl);
  uvctx_t *value = mk_value(timed, &key_user, value_alice);
  uvctx_t *cancel = mk_cancel(&loop, value);
  uvctx_t *value2 = mk_value(cancel, &key_user, value_alice);
  uvctx_t *later = mk_deadline(&loop, value2, dl + 30000);
  uvctx_t *earlier = mk_deadline(&loop, value2, dl - 30000);

  ck_assert_uint_eq(deadline_of(value), dl);
  ck_assert_uint_eq(deadline_of(cancel), dl);
  ck_assert_uint_eq(deadline_of(value2), dl);
  ck_assert_uint_eq(deadline_of(later), dl);
  ck_assert_uint_eq(deadline_of(earlier), dl - 30000);
  ck_assert_uint_eq(deadline_of(timed), dl);

  release_all(earlier, later, value2, cancel, value, timed);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* --- Deadlines in the tree --- */

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
static void action_read_arg(rec_t *r) {
  r->action_rc = uvctx_err(r->arg);
  r->action_rc2 = uvctx_cause(r->arg);
}

START_TEST(test_child_deadline_later_than_parents_changes_nothing_else) {
  uvctx_t *parent =
      mk_timeout_cause(&loop, uvctx_background(), 5, UV_EHOSTDOWN);
  uvctx_t *plain = mk_cancel(&loop, parent);
  uvctx_t *later = NULL;
  ck_assert_int_eq(uvctx_with_deadline_cause(&loop, parent,
                                             deadline_of(parent) + 1000,
                                             UV_ENETDOWN, &later),
                   0);
  rec_t peek_plain, peek_later;
  rec_watch(&peek_plain, NULL, parent);
  rec_watch(&peek_later, NULL, parent);
  peek_plain.action = peek_later.action = action_read_arg;
  peek_plain.arg = plain;
  peek_later.arg = later;

  ck_assert(poll_until(&loop, rec_called, &peek_later,
                       uvctx_now() + EVENTUALLY_MS));
  ck_assert_int_eq(peek_plain.action_rc, UV_ETIMEDOUT);
  ck_assert_int_eq(peek_plain.action_rc2, UV_EHOSTDOWN);
  ck_assert_int_eq(peek_later.action_rc, peek_plain.action_rc);
  ck_assert_int_eq(peek_later.action_rc2, peek_plain.action_rc2);
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

/* --- Deadlines and cancel --- */

/* Rows: the context cancels itself; its parent is cancelled with a cause.
 * Its own deadline, with its own cause, then never comes. */
START_TEST(test_cancel_before_the_deadline_is_final) {
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *ctx = mk_timeout_cause(&loop, parent, 5, UV_EHOSTDOWN);
  int cause = _i == 0 ? UV_ECANCELED : UV_EPIPE;
  uint64_t dl = deadline_of(ctx);
  rec_t rec;
  rec_watch(&rec, NULL, ctx);

  if (_i == 0)
    ck_assert_int_eq(uvctx_cancel(ctx), 0);
  else
    ck_assert_int_eq(uvctx_cancel_cause(parent, cause), 0);
  assert_done(ctx, UV_ECANCELED, cause);

  run_until_time(&loop, dl + 15); /* well past the deadline */
  ck_assert_int_eq(rec.calls, 1);
  ck_assert_int_eq(rec.err, UV_ECANCELED);
  assert_done(ctx, UV_ECANCELED, cause);

  release_all(ctx, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Rows: a cancel of the context itself (UV_EALREADY); of its parent. */
START_TEST(test_timed_out_context_keeps_etimedout_after_a_cancel) {
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *ctx = mk_timeout_cause(&loop, parent, 3, UV_ENETDOWN);
  rec_t rec;
  rec_watch(&rec, NULL, ctx);
  ck_assert(poll_until(&loop, rec_called, &rec, uvctx_now() + EVENTUALLY_MS));

  if (_i == 0) {
    ck_assert_int_eq(uvctx_cancel_cause(ctx, UV_EPIPE), UV_EALREADY);
  } else {
    ck_assert_int_eq(uvctx_cancel_cause(parent, UV_EPIPE), 0);
    assert_done(parent, UV_ECANCELED, UV_EPIPE);
  }
  assert_done(ctx, UV_ETIMEDOUT, UV_ENETDOWN);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(rec.calls, 1);

  release_all(ctx, parent);
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
           test_deadline_never_fires_before_uvctx_now_reaches_it)},
      {"born_done_or_never", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           test_child_of_timed_out_parent_is_born_done_with_its_cause,
           test_timeout_near_uint64_max_saturates_and_never_comes),
       .loops = LOOPS(
           {test_context_whose_deadline_has_passed_is_born_done, 0, NBORN})},
      {"deadline_query", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           test_with_timeout_reports_now_plus_timeout,
           test_deadline_is_none_without_a_deadline_in_the_ancestry,
           test_deadline_is_inherited_through_value_and_cancel_contexts)},
      {"tree", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           test_parent_deadline_finishes_child_with_etimedout_and_its_cause,
           test_child_deadline_later_than_parents_changes_nothing_else,
           test_child_deadline_earlier_than_parents_leaves_parent_alone)},
      {"cancel", TIMEOUT_LOOP_S, loop_setup, NULL,
       .loops = LOOPS(
           {test_cancel_before_the_deadline_is_final, 0, 2},
           {test_timed_out_context_keeps_etimedout_after_a_cancel, 0, 2})});
}
