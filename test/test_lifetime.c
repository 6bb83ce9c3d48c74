/* Lifetime: reference counting (uvctx_retain / uvctx_release), teardown of
 * contexts and of whole trees, loop liveness and uv_loop_close().
 *
 * Most of these tests assert through the last line, ASSERT_LOOP_CLOSES: a
 * handle that uvctx forgot to close makes uv_loop_close() return UV_EBUSY, and
 * memory it forgot to free shows up under valgrind. */
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "test.h"

/* ---------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------- */

static int key_a, key_b;

/* Small deterministic PRNG (xorshift32) for shuffles and tree shapes. */
static uint32_t rng_next(uint32_t *s) {
  uint32_t x = *s;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return *s = x;
}

static void shuffle(uvctx_t **a, size_t n, uint32_t *seed) {
  for (size_t i = n - 1; i > 0; i--) {
    size_t k = rng_next(seed) % (i + 1);
    uvctx_t *tmp = a[i];
    a[i] = a[k];
    a[k] = tmp;
  }
}

/* ---------------------------------------------------------------------------
 * Retain and release
 * ------------------------------------------------------------------------- */

START_TEST(retain_returns_its_argument) {
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  uvctx_t *v = mk_value(c, &key_a, NULL);
  ck_assert_ptr_eq(uvctx_retain(c), c);
  ck_assert_ptr_eq(uvctx_retain(v), v);
  ck_assert_ptr_eq(uvctx_retain(uvctx_background()), uvctx_background());
  ck_assert_ptr_eq(uvctx_retain(uvctx_todo()), uvctx_todo());
  ck_assert_ptr_null(uvctx_retain(NULL));
  release_all(v, c, v, c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(balanced_retain_release_keeps_the_context_usable) {
  rec_t w;
  int val;
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  uvctx_t *v = mk_value(c, &key_a, &val);
  for (int i = 0; i < 3; i++) {
    uvctx_retain(c);
    uvctx_retain(v);
  }
  for (int i = 0; i < 3; i++) {
    release_all(v, c);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  /* still one reference each: fully usable */
  ck_assert_ptr_eq(uvctx_value(v, &key_a), &val);
  rec_watch(&w, NULL, v);
  ck_assert_int_eq(uvctx_err(c), 0);
  ck_assert_int_eq(uvctx_cancel(c), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(w.calls, 1);
  ck_assert_int_eq(uvctx_err(v), UV_ECANCELED);
  release_all(v, c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(retain_and_release_of_roots_and_null_do_nothing) {
  for (int i = 0; i < 5; i++) {
    release_all(uvctx_background(), uvctx_todo(), NULL);
  }
  /* the roots are still there and usable */
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  uvctx_t *d = mk_cancel(&loop, uvctx_todo());
  ck_assert_int_eq(uvctx_err(uvctx_background()), 0);
  release_all(c, d);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(children_work_after_the_parents_last_reference_is_released) {
  rec_t w;
  int val;
  uvctx_t *p = mk_timeout(&loop, uvctx_background(), 60000);
  uvctx_t *v = mk_value(p, &key_a, &val);
  uvctx_t *c = mk_cancel(&loop, v);
  uvctx_t *g = mk_value(c, &key_b, &w);
  release_all(p, v);
  uv_run(&loop, UV_RUN_DEFAULT);

  /* values, deadline, err and cancel all still work through the chain */
  ck_assert_ptr_eq(uvctx_value(g, &key_a), &val);
  ck_assert_ptr_eq(uvctx_value(g, &key_b), &w);
  uint64_t dl = 0;
  ck_assert_int_eq(uvctx_deadline(g, &dl), 1);
  ck_assert_int_eq(uvctx_err(c), 0);
  rec_watch(&w, NULL, g);
  ck_assert_int_eq(uvctx_cancel(c), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(w.calls, 1);
  ck_assert_int_eq(uvctx_err(g), UV_ECANCELED);

  uvctx_release(c);
  uvctx_release(g); /* the last one: the whole chain goes */
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(a_released_parents_deadline_still_reaches_its_children) {
  rec_t w;
  uvctx_t *p = mk_timeout(&loop, uvctx_background(), 5);
  uvctx_t *c = mk_cancel(&loop, p);
  uvctx_release(p); /* c keeps it */
  rec_watch(&w, NULL, c);
  ck_assert(run_until(&loop, &w.calls, 1));
  ck_assert_int_eq(w.calls, 1);
  ck_assert_int_eq(w.err, UV_ETIMEDOUT);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(releasing_never_cancels_the_parent_or_siblings) {
  rec_t wp, ws, wg;
  uvctx_t *p = mk_cancel(&loop, uvctx_background());
  uvctx_t *gone = mk_timeout(&loop, p, 60000);
  uvctx_t *sib = mk_cancel(&loop, p);
  uvctx_t *gone_child = mk_cancel(&loop, gone);
  rec_watch(&wp, NULL, p);
  rec_watch(&ws, NULL, sib);
  rec_watch(&wg, NULL, gone_child);

  uvctx_release(gone); /* gone_child still holds it */
  uvctx_release(gone_child);
  uvctx_release(sib);  /* its watch holds it */
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(uvctx_err(p), 0);
  ck_assert_int_eq(wp.calls, 0);
  ck_assert_int_eq(ws.calls, 0);
  ck_assert_int_eq(wg.calls, 0);

  /* they are still cancellable the normal way */
  ck_assert_int_eq(uvctx_cancel(p), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(wp.calls, 1);
  ck_assert_int_eq(ws.calls, 1);
  ck_assert_int_eq(wg.calls, 1);
  uvctx_release(p);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(releasing_a_child_with_a_pending_watch_keeps_its_value_chain) {
  rec_t w;
  int val;
  uvctx_t *p = mk_cancel(&loop, uvctx_background());
  uvctx_t *v = mk_value(p, &key_a, &val);
  rec_watch(&w, NULL, v);
  uvctx_release(v); /* held by the watch only */
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(uvctx_cancel(p), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(w.calls, 1);
  ck_assert_int_eq(w.err, UV_ECANCELED);
  uvctx_release(p);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(release_after_cancel_before_delivery_still_delivers) {
  rec_t w;
  uvctx_t *c = mk_timeout(&loop, uvctx_background(), 60000);
  rec_watch(&w, NULL, c);
  ck_assert_int_eq(uvctx_cancel(c), 0);
  uvctx_release(c); /* due; the watch holds it */
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(w.calls, 1);
  ck_assert_int_eq(w.err, UV_ECANCELED);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Deadlines and release
 * ------------------------------------------------------------------------- */

START_TEST(a_deadline_context_released_before_firing_stops_its_timer) {
  rec_t w;
  uvctx_t *p = mk_cancel(&loop, uvctx_background());
  uvctx_t *t = mk_timeout(&loop, p, 5);
  uvctx_t *t2 = mk_timeout(&loop, uvctx_background(), 60000);
  rec_watch(&w, NULL, p);
  release_all(t, t2);
  run_for(&loop, 30); /* well past t's deadline */
  ck_assert_int_eq(uvctx_err(p), 0); /* nothing leaked up */
  ck_assert_int_eq(w.calls, 0);
  ck_assert_int_eq(uvctx_unwatch(&w.w), 0);
  uvctx_release(p);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * The loop closes after every kind of context is released
 * ------------------------------------------------------------------------- */

START_TEST(loop_closes_after_release_of_a_cancel_context) {
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(loop_closes_after_release_of_a_cancelled_context) {
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  uvctx_t *k = mk_cancel(&loop, c);
  ck_assert_int_eq(uvctx_cancel(c), 0);
  release_all(k, c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(loop_closes_after_release_of_a_deadline_context) {
  uvctx_t *c = mk_timeout(&loop, uvctx_background(), 60000);
  uvctx_t *d = NULL;
  ck_assert_int_eq(uvctx_with_deadline(&loop, c, uvctx_now() + 30000, &d), 0);
  release_all(d, c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(loop_closes_after_release_of_a_timed_out_context) {
  rec_t w;
  uvctx_t *c = mk_timeout(&loop, uvctx_background(), 2);
  uvctx_t *born = mk_timeout(&loop, uvctx_background(), 0);
  rec_watch(&w, NULL, c);
  ck_assert(run_until(&loop, &w.calls, 1));
  ck_assert_int_eq(w.err, UV_ETIMEDOUT);
  ck_assert_int_eq(uvctx_err(born), UV_ETIMEDOUT);
  release_all(born, c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(loop_closes_after_release_of_a_value_context) {
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  uvctx_t *v = mk_value(c, &key_a, NULL);
  uvctx_t *rv = mk_value(uvctx_background(), &key_a, NULL);
  uvctx_release(c); /* v outlives it */
  release_all(rv, v);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(loop_closes_after_release_of_a_without_cancel_context) {
  uvctx_t *c = mk_timeout(&loop, uvctx_background(), 60000);
  uvctx_t *wc = mk_without(c);
  uvctx_t *under = mk_cancel(&loop, wc);
  release_all(c, under, wc);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(loop_closes_after_release_of_a_context_with_done_async) {
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  uvctx_t *t = mk_timeout(&loop, c, 60000);
  ck_assert_ptr_nonnull(uvctx_done_async(c));
  ck_assert_ptr_nonnull(uvctx_done_async(t));
  ck_assert_int_eq(uvctx_cancel(t), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  release_all(t, c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(loop_closes_after_release_of_contexts_with_unwatched_watches) {
  rec_t a, b, d;
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  uvctx_t *t = mk_timeout(&loop, c, 60000);
  uvctx_t *v = mk_value(t, &key_a, NULL);
  rec_watch(&a, NULL, c);
  rec_watch(&b, NULL, t);
  rec_watch(&d, NULL, v);
  ck_assert_int_eq(uvctx_unwatch(&a.w), 0);
  ck_assert_int_eq(uvctx_unwatch(&b.w), 0);
  release_all(v, t, c);
  ck_assert_int_eq(uvctx_unwatch(&d.w), 0); /* the last holder of the chain */
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Liveness
 * ------------------------------------------------------------------------- */

START_TEST(contexts_never_keep_the_loop_alive) {
  rec_t w1, w2;
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  uvctx_t *t = mk_timeout(&loop, c, 2000);
  uvctx_t *long_t = mk_timeout(&loop, uvctx_background(), 2500);
  ck_assert_ptr_nonnull(uvctx_done_async(c));
  ck_assert_ptr_nonnull(uvctx_done_async(t));
  rec_watch(&w1, NULL, t);     /* pending, not due */
  rec_watch(&w2, NULL, long_t);

  /* Returns at once: had it waited for t's timer, t would be timed out. */
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(uvctx_err(t), 0);
  ck_assert_int_eq(uvctx_err(long_t), 0);
  ck_assert_int_eq(w1.calls, 0);

  ck_assert_int_eq(uvctx_unwatch(&w1.w), 0);
  ck_assert_int_eq(uvctx_unwatch(&w2.w), 0);
  release_all(long_t, t, c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Big trees
 * ------------------------------------------------------------------------- */

enum { BIG = 10000, CHAIN = 1500 };

typedef struct {
  int n; /* BIG, scaled by UVCTX_TEST_SCALE, never below CHAIN + 1 */
  uvctx_t **nodes;
  rec_t *watches; /* one per node, used on every 7th */
} big_tree_t;

/* Node 0 is a cancel context under background; nodes 1..CHAIN-1 form a deep
 * chain; the rest hang under random earlier nodes (fan-out). Kinds rotate:
 * cancel, deadline (far away), value. */
static void big_tree_build(big_tree_t *bt, uv_loop_t *loop, uint32_t *seed) {
  bt->n = test_scaled(BIG);
  if (bt->n < CHAIN + 1)
    bt->n = CHAIN + 1;
  bt->nodes = calloc((size_t)bt->n, sizeof *bt->nodes);
  bt->watches = calloc((size_t)bt->n, sizeof *bt->watches);
  ck_assert_ptr_nonnull(bt->nodes);
  ck_assert_ptr_nonnull(bt->watches);
  bt->nodes[0] = mk_cancel(loop, uvctx_background());
  for (int i = 1; i < bt->n; i++) {
    uvctx_t *parent =
        i < CHAIN ? bt->nodes[i - 1] : bt->nodes[rng_next(seed) % i];
    switch (i % 3) {
    case 0: bt->nodes[i] = mk_cancel(loop, parent); break;
    case 1: bt->nodes[i] = mk_timeout(loop, parent, 60000); break;
    default: bt->nodes[i] = mk_value(parent, &key_a, NULL); break;
    }
    if (i % 7 == 0)
      rec_watch(&bt->watches[i], NULL, bt->nodes[i]);
  }
}

static void big_tree_assert_delivered(big_tree_t *bt) {
  for (int i = 0; i < bt->n; i++) {
    if (i % 7 == 0 && i > 0) {
      ck_assert_int_eq(bt->watches[i].calls, 1);
      ck_assert_int_eq(bt->watches[i].err, UV_ECANCELED);
    }
  }
}

START_TEST(a_large_tree_cancelled_then_released_in_random_order_closes) {
  uv_loop_t loop;
  big_tree_t bt;
  uint32_t seed = 0x9e3779b9u;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  big_tree_build(&bt, &loop, &seed);

  ck_assert_int_eq(uvctx_cancel(bt.nodes[0]), 0);
  for (int i = 0; i < bt.n; i++) /* loop thread: all done on return */
    ck_assert_int_eq(uvctx_err(bt.nodes[i]), UV_ECANCELED);
  uv_run(&loop, UV_RUN_DEFAULT);
  big_tree_assert_delivered(&bt);

  shuffle(bt.nodes, bt.n, &seed);
  for (int i = 0; i < bt.n; i++)
    uvctx_release(bt.nodes[i]);
  ASSERT_LOOP_CLOSES(&loop);
  free(bt.nodes);
  free(bt.watches);
}
END_TEST

START_TEST(a_large_tree_released_in_random_order_before_delivery_still_delivers) {
  uv_loop_t loop;
  big_tree_t bt;
  uint32_t seed = 12345;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  big_tree_build(&bt, &loop, &seed);

  ck_assert_int_eq(uvctx_cancel(bt.nodes[0]), 0);
  shuffle(bt.nodes, bt.n, &seed);
  for (int i = 0; i < bt.n; i++)
    uvctx_release(bt.nodes[i]);
  uv_run(&loop, UV_RUN_DEFAULT);
  big_tree_assert_delivered(&bt);
  ASSERT_LOOP_CLOSES(&loop);
  free(bt.nodes);
  free(bt.watches);
}
END_TEST

START_TEST(a_large_tree_released_uncancelled_in_random_order_closes) {
  uv_loop_t loop;
  big_tree_t bt;
  uint32_t seed = 777;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  big_tree_build(&bt, &loop, &seed);
  for (int i = 7; i < bt.n; i += 7)
    ck_assert_int_eq(uvctx_unwatch(&bt.watches[i].w), 0);
  shuffle(bt.nodes, bt.n, &seed);
  for (int i = 0; i < bt.n; i++)
    uvctx_release(bt.nodes[i]);
  ASSERT_LOOP_CLOSES(&loop);
  for (int i = 7; i < bt.n; i += 7)
    ck_assert_int_eq(bt.watches[i].calls, 0);
  free(bt.nodes);
  free(bt.watches);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Several loops
 * ------------------------------------------------------------------------- */

START_TEST(two_loops_in_one_thread_do_not_interfere) {
  uv_loop_t la, lb;
  rec_t wa, wb;
  ck_assert_int_eq(uv_loop_init(&la), 0);
  ck_assert_int_eq(uv_loop_init(&lb), 0);
  uvctx_t *a = mk_cancel(&la, uvctx_background());
  uvctx_t *ac = mk_timeout(&la, a, 60000);
  uvctx_t *b = mk_cancel(&lb, uvctx_background());
  uvctx_t *bc = mk_timeout(&lb, b, 60000);
  ck_assert_ptr_eq(uvctx_loop(ac), &la);
  ck_assert_ptr_eq(uvctx_loop(bc), &lb);
  rec_watch(&wa, NULL, ac);
  rec_watch(&wb, NULL, bc);

  ck_assert_int_eq(uvctx_cancel(a), 0);
  uv_run(&lb, UV_RUN_DEFAULT); /* a's callbacks belong to loop a */
  ck_assert_int_eq(wa.calls, 0);
  ck_assert_int_eq(wb.calls, 0);
  uv_run(&la, UV_RUN_DEFAULT);
  ck_assert_int_eq(wa.calls, 1);
  ck_assert_int_eq(wb.calls, 0);
  ck_assert_int_eq(uvctx_err(b), 0);
  ck_assert_int_eq(uvctx_err(bc), 0);

  release_all(ac, a);
  ASSERT_LOOP_CLOSES(&la); /* b's contexts still live on loop b */

  ck_assert_int_eq(uvctx_cancel(b), 0);
  uv_run(&lb, UV_RUN_DEFAULT);
  ck_assert_int_eq(wb.calls, 1);
  release_all(bc, b);
  ASSERT_LOOP_CLOSES(&lb);
}
END_TEST

/* ------------------------------------------------------------------------- */

Suite *lifetime_suite(void) {
  return SUITE(
      "lifetime",
      {"refcount", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           retain_returns_its_argument,
           balanced_retain_release_keeps_the_context_usable,
           retain_and_release_of_roots_and_null_do_nothing,
           children_work_after_the_parents_last_reference_is_released,
           a_released_parents_deadline_still_reaches_its_children,
           releasing_never_cancels_the_parent_or_siblings,
           releasing_a_child_with_a_pending_watch_keeps_its_value_chain,
           release_after_cancel_before_delivery_still_delivers,
           a_deadline_context_released_before_firing_stops_its_timer)},
      {"loop_close", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           loop_closes_after_release_of_a_cancel_context,
           loop_closes_after_release_of_a_cancelled_context,
           loop_closes_after_release_of_a_deadline_context,
           loop_closes_after_release_of_a_timed_out_context,
           loop_closes_after_release_of_a_value_context,
           loop_closes_after_release_of_a_without_cancel_context,
           loop_closes_after_release_of_a_context_with_done_async,
           loop_closes_after_release_of_contexts_with_unwatched_watches,
           contexts_never_keep_the_loop_alive)},
      {"big", TIMEOUT_BIG_S, NULL, NULL,
       .tests = TESTS(
           a_large_tree_cancelled_then_released_in_random_order_closes,
           a_large_tree_released_in_random_order_before_delivery_still_delivers,
           a_large_tree_released_uncancelled_in_random_order_closes)},
      {"loops", TIMEOUT_LOOP_S, NULL, NULL,
       .tests = TESTS(
           two_loops_in_one_thread_do_not_interfere)});
}
