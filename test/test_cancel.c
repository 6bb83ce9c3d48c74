/* Cancellation: how uvctx_cancel() and uvctx_cancel_cause() finish a context
 * and its subtree, what they return, and what releasing does not do.
 *
 * Everything here runs on the loop thread, so "when uvctx_cancel returns" means
 * the whole subtree on that loop is already done (API.md, Semantics: Tree,
 * Done, Cancel from any thread). */

#include "helpers.h"
#include "test.h"

static const char key_user;
static char value_alice[] = "alice";

/* --- What a cancel does to the cancelled context --- */

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

/* Whichever cancel reaches a context first gives it its cause: a later
 * cancel of a descendant is UV_EALREADY, and a later cancel of the parent
 * finishes the parent but leaves the child as it was. */
START_TEST(test_a_done_context_keeps_the_cause_of_the_cancel_that_came_first) {
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *child = mk_cancel(&loop, parent);
  uvctx_t *parent2 = mk_cancel(&loop, uvctx_background());
  uvctx_t *child2 = mk_cancel(&loop, parent2);

  ck_assert_int_eq(uvctx_cancel_cause(parent, UV_EPIPE), 0);
  ck_assert_int_eq(uvctx_cancel_cause(child, UV_ECONNRESET), UV_EALREADY);
  assert_done(child, UV_ECANCELED, UV_EPIPE);

  ck_assert_int_eq(uvctx_cancel_cause(child2, UV_EPIPE), 0);
  ck_assert_int_eq(uvctx_cancel_cause(parent2, UV_ECONNRESET), 0);
  assert_done(child2, UV_ECANCELED, UV_EPIPE);
  assert_done(parent2, UV_ECANCELED, UV_ECONNRESET);

  release_all(child2, parent2, child, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* --- What a cancel does to the subtree and to watches --- */

START_TEST(test_cancel_gives_the_whole_subtree_its_cause_before_returning) {
  /* parent
   *  +- child (cancel)
   *  |   +- grandchild (cancel)
   *  +- value
   *  |   +- value2 (value)
   *  |   +- under_value (cancel)
   *  |       +- value_leaf (value)
   *  |           +- leaf_timed (timeout)
   *  +- timed (timeout, far away)
   *      +- under_timed (cancel) */
  uvctx_t *all[10];
  all[0] = mk_cancel(&loop, uvctx_background());
  all[1] = mk_cancel(&loop, all[0]);
  all[2] = mk_cancel(&loop, all[1]);
  all[3] = mk_value(all[0], &key_user, value_alice);
  all[4] = mk_value(all[3], &key_user, value_alice);
  all[5] = mk_cancel(&loop, all[3]);
  all[6] = mk_value(all[5], &key_user, value_alice);
  all[7] = mk_timeout(&loop, all[6], 60000);
  all[8] = mk_timeout(&loop, all[0], 60000);
  all[9] = mk_cancel(&loop, all[8]);
  for (size_t i = 0; i < 10; i++)
    assert_not_done(all[i]);

  ck_assert_int_eq(uvctx_cancel_cause(all[0], UV_ECONNRESET), 0);

  /* No loop iteration in between: done when uvctx_cancel returns. */
  for (size_t i = 0; i < 10; i++)
    assert_done(all[i], UV_ECANCELED, UV_ECONNRESET);

  release_n(all, 10); /* parents first: each child holds its own */
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

  release_n(fan, WIDTH);
  for (int i = DEPTH; i-- > 0;)
    uvctx_release(chain[i]);
  uvctx_release(root);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_child_of_cancelled_parent_is_born_done_and_told_on_the_loop) {
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(uvctx_cancel_cause(parent, UV_EPIPE), 0);

  uvctx_t *child = mk_cancel(&loop, parent);
  uvctx_t *timed = mk_timeout(&loop, parent, 60000);
  uvctx_t *value = mk_value(parent, &key_user, value_alice);
  uvctx_t *grandchild = mk_cancel(&loop, value);
  rec_t rec;
  rec_watch(&rec, NULL, child);

  assert_done(child, UV_ECANCELED, UV_EPIPE);
  assert_done(timed, UV_ECANCELED, UV_EPIPE);
  assert_done(value, UV_ECANCELED, UV_EPIPE);
  assert_done(grandchild, UV_ECANCELED, UV_EPIPE);
  ck_assert_int_eq(uvctx_cancel(child), UV_EALREADY);
  ck_assert_int_eq(uvctx_cancel(timed), UV_EALREADY);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_called_once(&rec, UV_ECANCELED);
  ck_assert_int_eq(rec.cause, UV_EPIPE);

  release_all(grandchild, value, timed, child, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_cancel_runs_each_watch_once_on_the_loop_never_in_the_call) {
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *child = mk_cancel(&loop, parent);
  rec_t recs[2];
  rec_watch(&recs[0], NULL, parent);
  rec_watch(&recs[1], NULL, child);

  ck_assert_int_eq(uvctx_cancel_cause(parent, UV_EPIPE), 0);
  ck_assert_int_eq(recs[0].calls + recs[1].calls, 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  for (int i = 0; i < 2; i++) {
    assert_called_once(&recs[i], UV_ECANCELED);
    ck_assert_int_eq(recs[i].cause, UV_EPIPE);
  }
  ck_assert_int_eq(uvctx_cancel(parent), UV_EALREADY);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(recs[0].calls + recs[1].calls, 2);

  release_all(child, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* --- What a cancel or a release leaves alone --- */

/* Neither the cancel of a child, nor the release of another, nor that of
 * the creator's reference to a parent kept alive by another one touches the
 * parent or the siblings; the parent can still be cancelled and reaches
 * them. */
START_TEST(test_cancel_or_release_of_a_child_leaves_parent_and_siblings) {
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  ck_assert_ptr_eq(uvctx_retain(parent), parent);
  uvctx_t *victim = mk_cancel(&loop, parent);
  uvctx_t *victim_child = mk_cancel(&loop, victim);
  uvctx_t *released = mk_cancel(&loop, parent);
  uvctx_t *sibling = mk_cancel(&loop, parent);
  uvctx_t *nephew = mk_cancel(&loop, sibling);
  rec_t parent_rec, sibling_rec;
  rec_watch(&parent_rec, NULL, parent);
  rec_watch(&sibling_rec, NULL, sibling);

  ck_assert_int_eq(uvctx_cancel(victim), 0);
  release_all(released, parent);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_done(victim, UV_ECANCELED, UV_ECANCELED);
  assert_done(victim_child, UV_ECANCELED, UV_ECANCELED);
  assert_not_done(parent);
  assert_not_done(sibling);
  assert_not_done(nephew);
  ck_assert_int_eq(parent_rec.calls + sibling_rec.calls, 0);

  ck_assert_int_eq(uvctx_cancel_cause(parent, UV_EPIPE), 0);
  assert_done(sibling, UV_ECANCELED, UV_EPIPE);
  assert_done(nephew, UV_ECANCELED, UV_EPIPE);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(parent_rec.calls, 1);
  ck_assert_int_eq(sibling_rec.calls, 1);

  release_all(nephew, sibling, victim_child, victim, parent);
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
  assert_called_once(&rec, UV_ECANCELED);

  uvctx_release(child);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

Suite *cancel_suite(void) {
  return SUITE(
      "cancel",
      {"cancel", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           test_a_done_context_keeps_the_cause_of_the_cancel_that_came_first,
           test_cancel_gives_the_whole_subtree_its_cause_before_returning,
           test_child_of_cancelled_parent_is_born_done_and_told_on_the_loop,
           test_cancel_runs_each_watch_once_on_the_loop_never_in_the_call,
           test_cancel_or_release_of_a_child_leaves_parent_and_siblings,
           test_release_of_parent_while_child_alive_keeps_child_working),
       .loops = LOOPS(
           {test_cancel_makes_the_context_done_once_with_the_first_cause, 0,
            sizeof first_causes / sizeof first_causes[0]})},
      {"big_trees", TIMEOUT_BIG_S, loop_setup, NULL,
       .tests = TESTS(
           test_cancel_reaches_every_context_of_deep_and_wide_trees)});
}
