/* Cancellation: how uvctx_cancel() and uvctx_cancel_cause() finish a context
 * and its subtree, what they return, and what releasing does not do.
 *
 * Everything here runs on the loop thread, so "when uvctx_cancel returns" means
 * the whole subtree on that loop is already done (API.md, Semantics: Tree,
 * Done, Cancel from any thread). */
#include <stdint.h>
#include <string.h>

#include "helpers.h"
#include "test.h"

/* ---------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------- */

static const char key_user;
static char value_alice[] = "alice";

/* ---------------------------------------------------------------------------
 * What a cancel does to the cancelled context
 * ------------------------------------------------------------------------- */

/* The first cancel, by uvctx_cancel(), uvctx_cancel_cause() without a cause
 * or with one: err UV_ECANCELED, cause the one given (UV_ECANCELED without).
 * Every later cancel, with or without another cause, is UV_EALREADY and
 * changes nothing, also once the loop has delivered everything. */
enum { PLAIN = 1 }; /* uvctx_cancel(): no cause argument at all */
static const int first_causes[] = {PLAIN, 0, UV_EPIPE};

START_TEST(test_cancel_makes_the_context_done_once_with_the_first_cause) {
  int cause = first_causes[_i];
  int want = cause < 0 ? cause : UV_ECANCELED;
  uvctx_t *ctx = mk_cancel(&loop, uvctx_background());
  assert_not_done(ctx);

  ck_assert_int_eq(
      cause == PLAIN ? uvctx_cancel(ctx) : uvctx_cancel_cause(ctx, cause), 0);
  assert_done(ctx, UV_ECANCELED, want);
  ck_assert_int_eq(uvctx_cancel(ctx), UV_EALREADY);
  ck_assert_int_eq(uvctx_cancel_cause(ctx, UV_ECONNRESET), UV_EALREADY);
  assert_done(ctx, UV_ECANCELED, want);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_done(ctx, UV_ECANCELED, want);

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_cancel_of_descendant_already_cancelled_by_parent_is_ealready) {
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *child = mk_cancel(&loop, parent);

  ck_assert_int_eq(uvctx_cancel_cause(parent, UV_EPIPE), 0);
  ck_assert_int_eq(uvctx_cancel_cause(child, UV_ECONNRESET), UV_EALREADY);
  assert_done(child, UV_ECANCELED, UV_EPIPE);

  release_all(child, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * What a cancel does to the subtree
 * ------------------------------------------------------------------------- */

START_TEST(test_cancel_parent_cancels_whole_subtree_before_returning) {
  /* parent
   *  +- child (cancel)
   *  |   +- grandchild (cancel)
   *  +- value
   *  |   +- under_value (cancel)
   *  |       +- value_leaf (value)
   *  +- timed (deadline, far away)
   *      +- under_timed (cancel) */
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *child = mk_cancel(&loop, parent);
  uvctx_t *grandchild = mk_cancel(&loop, child);
  uvctx_t *value = mk_value(parent, &key_user, value_alice);
  uvctx_t *under_value = mk_cancel(&loop, value);
  uvctx_t *value_leaf = mk_value(under_value, &key_user, value_alice);
  uvctx_t *timed = mk_timeout(&loop, parent, 60000);
  uvctx_t *under_timed = mk_cancel(&loop, timed);
  uvctx_t *all[] = {parent,      child,      grandchild, value,
                    under_value, value_leaf, timed,      under_timed};
  size_t n = sizeof(all) / sizeof(all[0]);
  for (size_t i = 0; i < n; i++)
    assert_not_done(all[i]);

  ck_assert_int_eq(uvctx_cancel(parent), 0);

  /* No loop iteration in between: done when uvctx_cancel returns. */
  for (size_t i = 0; i < n; i++)
    assert_done(all[i], UV_ECANCELED, UV_ECANCELED);

  for (size_t i = n; i-- > 0;)
    uvctx_release(all[i]);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_cancel_gives_every_descendant_the_same_cause) {
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *child = mk_cancel(&loop, parent);
  uvctx_t *value = mk_value(child, &key_user, value_alice);
  uvctx_t *grandchild = mk_cancel(&loop, value);
  uvctx_t *timed = mk_timeout(&loop, grandchild, 60000);

  ck_assert_int_eq(uvctx_cancel_cause(parent, UV_ECONNRESET), 0);

  assert_done(parent, UV_ECANCELED, UV_ECONNRESET);
  assert_done(child, UV_ECANCELED, UV_ECONNRESET);
  assert_done(value, UV_ECANCELED, UV_ECONNRESET);
  assert_done(grandchild, UV_ECANCELED, UV_ECONNRESET);
  assert_done(timed, UV_ECANCELED, UV_ECONNRESET);

  release_all(timed, grandchild, value, child, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_cancel_reaches_every_context_of_deep_and_wide_trees) {
  enum { DEPTH = 500, WIDTH = 500 };
  static uvctx_t *chain[DEPTH];
  static uvctx_t *fan[WIDTH];
  uvctx_t *root = mk_cancel(&loop, uvctx_background());
  uvctx_t *prev = root;
  for (int i = 0; i < DEPTH; i++) {
    /* Alternate kinds so that the walk has to go through value contexts. */
    chain[i] = (i % 3 == 1) ? mk_value(prev, &key_user, value_alice)
                            : mk_cancel(&loop, prev);
    prev = chain[i];
  }
  for (int i = 0; i < WIDTH; i++)
    fan[i] = mk_cancel(&loop, root);

  ck_assert_int_eq(uvctx_cancel_cause(root, UV_EPIPE), 0);

  for (int i = 0; i < DEPTH; i++)
    assert_done(chain[i], UV_ECANCELED, UV_EPIPE);
  for (int i = 0; i < WIDTH; i++)
    assert_done(fan[i], UV_ECANCELED, UV_EPIPE);

  for (int i = 0; i < WIDTH; i++)
    uvctx_release(fan[i]);
  for (int i = DEPTH; i-- > 0;)
    uvctx_release(chain[i]);
  uvctx_release(root);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_cancel_child_does_not_touch_parent_or_siblings) {
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *victim = mk_cancel(&loop, parent);
  uvctx_t *victim_child = mk_cancel(&loop, victim);
  uvctx_t *sibling = mk_cancel(&loop, parent);
  uvctx_t *nephew = mk_cancel(&loop, sibling);
  rec_t parent_rec, sibling_rec;
  rec_watch(&parent_rec, NULL, parent);
  rec_watch(&sibling_rec, NULL, sibling);

  ck_assert_int_eq(uvctx_cancel(victim), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);

  assert_done(victim, UV_ECANCELED, UV_ECANCELED);
  assert_done(victim_child, UV_ECANCELED, UV_ECANCELED);
  assert_not_done(parent);
  assert_not_done(sibling);
  assert_not_done(nephew);
  ck_assert_int_eq(parent_rec.calls, 0);
  ck_assert_int_eq(sibling_rec.calls, 0);

  /* The parent can still be cancelled and still reaches the sibling. */
  ck_assert_int_eq(uvctx_cancel(parent), 0);
  assert_done(sibling, UV_ECANCELED, UV_ECANCELED);
  assert_done(nephew, UV_ECANCELED, UV_ECANCELED);

  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(parent_rec.calls, 1);
  ck_assert_int_eq(sibling_rec.calls, 1);
  release_all(nephew, sibling, victim_child, victim, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_cancel_of_parent_does_not_change_already_cancelled_child) {
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *child = mk_cancel(&loop, parent);

  ck_assert_int_eq(uvctx_cancel_cause(child, UV_EPIPE), 0);
  ck_assert_int_eq(uvctx_cancel_cause(parent, UV_ECONNRESET), 0);

  assert_done(child, UV_ECANCELED, UV_EPIPE);
  assert_done(parent, UV_ECANCELED, UV_ECONNRESET);

  release_all(child, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Children of done parents
 * ------------------------------------------------------------------------- */

START_TEST(test_child_of_cancelled_parent_is_born_done_with_its_err_and_cause) {
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(uvctx_cancel_cause(parent, UV_EPIPE), 0);

  uvctx_t *child = mk_cancel(&loop, parent);
  uvctx_t *timed = mk_timeout(&loop, parent, 60000);
  uvctx_t *value = mk_value(parent, &key_user, value_alice);
  uvctx_t *grandchild = mk_cancel(&loop, value);

  assert_done(child, UV_ECANCELED, UV_EPIPE);
  assert_done(timed, UV_ECANCELED, UV_EPIPE);
  assert_done(value, UV_ECANCELED, UV_EPIPE);
  assert_done(grandchild, UV_ECANCELED, UV_EPIPE);
  ck_assert_int_eq(uvctx_cancel(child), UV_EALREADY);
  ck_assert_int_eq(uvctx_cancel(timed), UV_EALREADY);

  release_all(grandchild, value, timed, child, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_child_born_done_runs_its_watch_on_the_loop_with_parents_err) {
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(uvctx_cancel_cause(parent, UV_EPIPE), 0);
  uvctx_t *child = mk_cancel(&loop, parent);
  rec_t rec;
  rec_watch(&rec, NULL, child);
  ck_assert_int_eq(rec.calls, 0);

  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(rec.calls, 1);
  ck_assert_int_eq(rec.err, UV_ECANCELED);
  ck_assert_int_eq(rec.cause, UV_EPIPE);

  release_all(child, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Value contexts follow their parent
 * ------------------------------------------------------------------------- */

START_TEST(test_value_context_err_and_cause_follow_its_parent) {
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *value = mk_value(parent, &key_user, value_alice);
  uvctx_t *value2 = mk_value(value, &key_user, value_alice);
  assert_not_done(value);
  assert_not_done(value2);

  ck_assert_int_eq(uvctx_cancel_cause(parent, UV_ENOTCONN), 0);
  assert_done(value, UV_ECANCELED, UV_ENOTCONN);
  assert_done(value2, UV_ECANCELED, UV_ENOTCONN);

  release_all(value2, value, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Watches and cancel
 * ------------------------------------------------------------------------- */

START_TEST(test_cancel_never_runs_watch_callbacks_inside_the_call) {
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *child = mk_cancel(&loop, parent);
  rec_t parent_rec, child_rec;
  rec_watch(&parent_rec, NULL, parent);
  rec_watch(&child_rec, NULL, child);

  ck_assert_int_eq(uvctx_cancel_cause(parent, UV_EPIPE), 0);
  ck_assert_int_eq(parent_rec.calls, 0);
  ck_assert_int_eq(child_rec.calls, 0);

  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(parent_rec.calls, 1);
  ck_assert_int_eq(parent_rec.err, UV_ECANCELED);
  ck_assert_int_eq(parent_rec.cause, UV_EPIPE);
  ck_assert_int_eq(child_rec.calls, 1);
  ck_assert_int_eq(child_rec.err, UV_ECANCELED);
  ck_assert_int_eq(child_rec.cause, UV_EPIPE);

  release_all(child, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_second_cancel_does_not_run_watch_callbacks_again) {
  uvctx_t *ctx = mk_cancel(&loop, uvctx_background());
  rec_t rec;
  rec_watch(&rec, NULL, ctx);

  ck_assert_int_eq(uvctx_cancel(ctx), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(rec.calls, 1);

  ck_assert_int_eq(uvctx_cancel(ctx), UV_EALREADY);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(rec.calls, 1);

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Releasing never cancels
 * ------------------------------------------------------------------------- */

START_TEST(test_release_of_child_does_not_cancel_parent) {
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *child = mk_cancel(&loop, parent);
  uvctx_t *sibling = mk_cancel(&loop, parent);
  rec_t parent_rec;
  rec_watch(&parent_rec, NULL, parent);

  uvctx_release(child);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);

  assert_not_done(parent);
  assert_not_done(sibling);
  ck_assert_int_eq(parent_rec.calls, 0);

  ck_assert_int_eq(uvctx_cancel(parent), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(parent_rec.calls, 1);
  assert_done(sibling, UV_ECANCELED, UV_ECANCELED);

  release_all(sibling, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_release_of_parent_while_child_alive_keeps_child_working) {
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *value = mk_value(parent, &key_user, value_alice);
  uvctx_t *child = mk_cancel(&loop, value);

  /* Drop every reference but the child's own. */
  release_all(value, parent);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);

  assert_not_done(child);
  ck_assert_ptr_eq(uvctx_value(child, &key_user), value_alice);
  ck_assert_ptr_eq(uvctx_loop(child), &loop);

  rec_t rec;
  rec_watch(&rec, NULL, child);
  ck_assert_int_eq(uvctx_cancel_cause(child, UV_EPIPE), 0);
  assert_done(child, UV_ECANCELED, UV_EPIPE);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(rec.calls, 1);
  ck_assert_int_eq(rec.err, UV_ECANCELED);

  uvctx_release(child);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_parent_kept_by_extra_reference_still_cancels_its_child) {
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  ck_assert_ptr_eq(uvctx_retain(parent), parent);
  uvctx_t *child = mk_cancel(&loop, parent);

  /* The creator's reference goes; the extra one keeps the parent alive. */
  uvctx_release(parent);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_not_done(parent);
  assert_not_done(child);

  ck_assert_int_eq(uvctx_cancel_cause(parent, UV_EPIPE), 0);
  assert_done(child, UV_ECANCELED, UV_EPIPE);

  release_all(child, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

Suite *cancel_suite(void) {
  return SUITE(
      "cancel",
      {"cancelled_context", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           test_cancel_of_descendant_already_cancelled_by_parent_is_ealready),
       .loops = LOOPS(
           {test_cancel_makes_the_context_done_once_with_the_first_cause, 0, sizeof first_causes / sizeof first_causes[0]})},
      {"subtree", TIMEOUT_BIG_S, loop_setup, NULL,
       .tests = TESTS(
           test_cancel_parent_cancels_whole_subtree_before_returning,
           test_cancel_gives_every_descendant_the_same_cause,
           test_cancel_reaches_every_context_of_deep_and_wide_trees,
           test_cancel_child_does_not_touch_parent_or_siblings,
           test_cancel_of_parent_does_not_change_already_cancelled_child)},
      {"born_done", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           test_child_of_cancelled_parent_is_born_done_with_its_err_and_cause,
           test_child_born_done_runs_its_watch_on_the_loop_with_parents_err)},
      {"value_follows_parent", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           test_value_context_err_and_cause_follow_its_parent)},
      {"watches", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           test_cancel_never_runs_watch_callbacks_inside_the_call,
           test_second_cancel_does_not_run_watch_callbacks_again)},
      {"release_never_cancels", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           test_release_of_child_does_not_cancel_parent,
           test_release_of_parent_while_child_alive_keeps_child_working,
           test_parent_kept_by_extra_reference_still_cancels_its_child)});
}
