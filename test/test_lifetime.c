/* Lifetime: reference counting (uvctx_retain / uvctx_release), teardown of
 * contexts and of whole trees, loop liveness and uv_loop_close().
 *
 * Most tests assert through their last line, ASSERT_LOOP_CLOSES: a handle
 * uvctx forgot to close makes uv_loop_close() return UV_EBUSY, and memory it
 * forgot to free shows up under valgrind. */
#include <stdlib.h>

#include "helpers.h"

static int key_a, key_b;

/* --- Retain and release --- */

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
  for (int i = 0; i < 3; i++)
    release_all(v, c);
  uv_run(&loop, UV_RUN_DEFAULT);
  /* one reference left each: fully usable */
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

START_TEST(children_work_after_the_parents_last_reference_is_released) {
  rec_t w;
  int val;
  uint64_t dl = 0;
  uvctx_t *p = mk_timeout(&loop, uvctx_background(), 60000);
  uvctx_t *v = mk_value(p, &key_a, &val);
  uvctx_t *c = mk_cancel(&loop, v);
  uvctx_t *g = mk_value(c, &key_b, &w);
  release_all(p, v);
  uv_run(&loop, UV_RUN_DEFAULT);

  ck_assert_ptr_eq(uvctx_value(g, &key_a), &val);
  ck_assert_ptr_eq(uvctx_value(g, &key_b), &w);
  ck_assert_int_eq(uvctx_deadline(g, &dl), 1);
  ck_assert_int_eq(uvctx_err(c), 0);
  rec_watch(&w, NULL, g);
  ck_assert_int_eq(uvctx_cancel(c), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(w.calls, 1);
  ck_assert_int_eq(uvctx_err(g), UV_ECANCELED);
  release_all(c, g); /* g's is the last: the whole chain goes */
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
  /* gone is held by gone_child, which (like sib) is held by its watch */
  release_all(gone, gone_child, sib);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(uvctx_err(p), 0);
  ck_assert_int_eq(wp.calls, 0);
  ck_assert_int_eq(ws.calls, 0);
  ck_assert_int_eq(wg.calls, 0);

  ck_assert_int_eq(uvctx_cancel(p), 0); /* still cancellable the normal way */
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(wp.calls, 1);
  ck_assert_int_eq(ws.calls, 1);
  ck_assert_int_eq(wg.calls, 1);
  uvctx_release(p);
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

/* --- The loop closes after every kind of context is released: one row per
 * kind, each making, using and releasing it --- */

static void a_cancel_context(void) {
  uvctx_release(mk_cancel(&loop, uvctx_background()));
}

static void a_cancelled_context(void) {
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  uvctx_t *k = mk_cancel(&loop, c);
  ck_assert_int_eq(uvctx_cancel(c), 0);
  release_all(k, c);
}

static void a_deadline_context(void) {
  uvctx_t *c = mk_timeout(&loop, uvctx_background(), 60000);
  uvctx_t *d = NULL;
  ck_assert_int_eq(uvctx_with_deadline(&loop, c, uvctx_now() + 30000, &d), 0);
  release_all(d, c);
}

static void a_timed_out_context(void) {
  rec_t w;
  uvctx_t *c = mk_timeout(&loop, uvctx_background(), 2);
  uvctx_t *born = mk_timeout(&loop, uvctx_background(), 0);
  rec_watch(&w, NULL, c);
  ck_assert(run_until(&loop, &w.calls, 1));
  ck_assert_int_eq(w.err, UV_ETIMEDOUT);
  ck_assert_int_eq(uvctx_err(born), UV_ETIMEDOUT);
  release_all(born, c);
}

static void a_value_context(void) {
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  uvctx_t *v = mk_value(c, &key_a, NULL);
  uvctx_t *rv = mk_value(uvctx_background(), &key_a, NULL);
  release_all(c, rv, v); /* v outlives its parent */
}

static void a_without_cancel_context(void) {
  uvctx_t *c = mk_timeout(&loop, uvctx_background(), 60000);
  uvctx_t *wc = mk_without(c);
  uvctx_t *under = mk_cancel(&loop, wc);
  release_all(c, under, wc);
}

static void a_context_with_done_async(void) {
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  uvctx_t *t = mk_timeout(&loop, c, 60000);
  ck_assert_ptr_nonnull(uvctx_done_async(c));
  ck_assert_ptr_nonnull(uvctx_done_async(t));
  ck_assert_int_eq(uvctx_cancel(t), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  release_all(t, c);
}

static void contexts_with_unwatched_watches(void) {
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
}

/* A failing row is named by Check's iteration number: its index here. */
static void (*const released[])(void) = {
    a_cancel_context,          a_cancelled_context,
    a_deadline_context,        a_timed_out_context,
    a_value_context,           a_without_cancel_context,
    a_context_with_done_async, contexts_with_unwatched_watches};

START_TEST(loop_closes_after_release_of_each_kind_of_context) {
  released[_i]();
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(contexts_never_keep_the_loop_alive) {
  rec_t w1, w2;
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  uvctx_t *t = mk_timeout(&loop, c, 2000);
  uvctx_t *long_t = mk_timeout(&loop, uvctx_background(), 2500);
  ck_assert_ptr_nonnull(uvctx_done_async(c));
  ck_assert_ptr_nonnull(uvctx_done_async(t));
  rec_watch(&w1, NULL, t); /* pending, not due */
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

/* --- Big trees, released in random order --- */

enum { BIG = 10000, CHAIN = 1500 };

static const struct {
  const char *name;
  uint32_t seed;
  int cancel;        /* the root is cancelled (else watches are unwatched) */
  int deliver_first; /* the loop runs before the release */
} big_rows[] = {
    {"cancelled, delivered, then released", 0x9e3779b9u, 1, 1},
    {"cancelled, released before delivery", 12345, 1, 0},
    {"released uncancelled", 777, 0, 0},
};

/* Each 7th node's watch ran `calls` times, with UV_ECANCELED if it did. */
static void assert_watches(const rec_t *w, int n, int calls, const char *row) {
  for (int i = 7; i < n; i += 7) {
    ck_assert_msg(w[i].calls == calls, "row %s: watch %d ran %d times", row,
                  i, w[i].calls);
    ck_assert_msg(!calls || w[i].err == UV_ECANCELED, "row %s: watch %d err",
                  row, i);
  }
}

/* Node 0 is a cancel context under background; nodes 1..CHAIN-1 form a deep
 * chain; the rest hang under random earlier nodes (fan-out). Kinds rotate:
 * cancel, deadline (far away), value. */
START_TEST(a_large_tree_released_in_random_order_closes) {
  const char *row = big_rows[_i].name;
  uint32_t seed = big_rows[_i].seed;
  int n = test_scaled(BIG) < CHAIN + 1 ? CHAIN + 1 : test_scaled(BIG);
  uvctx_t **nodes = calloc((size_t)n, sizeof *nodes);
  rec_t *w = calloc((size_t)n, sizeof *w);
  ck_assert_ptr_nonnull(nodes);
  ck_assert_ptr_nonnull(w);
  nodes[0] = mk_cancel(&loop, uvctx_background());
  for (int i = 1; i < n; i++) {
    uvctx_t *parent =
        i < CHAIN ? nodes[i - 1] : nodes[xorshift32(&seed) % (uint32_t)i];
    switch (i % 3) {
    case 0: nodes[i] = mk_cancel(&loop, parent); break;
    case 1: nodes[i] = mk_timeout(&loop, parent, 60000); break;
    default: nodes[i] = mk_value(parent, &key_a, NULL); break;
    }
    if (i % 7 == 0)
      rec_watch(&w[i], NULL, nodes[i]);
  }

  if (big_rows[_i].cancel) {
    ck_assert_int_eq(uvctx_cancel(nodes[0]), 0);
    for (int i = 0; i < n; i++) /* loop thread: all done on return */
      ck_assert_msg(uvctx_err(nodes[i]) == UV_ECANCELED, "row %s: node %d",
                    row, i);
  } else {
    for (int i = 7; i < n; i += 7)
      ck_assert_int_eq(uvctx_unwatch(&w[i].w), 0);
  }
  if (big_rows[_i].deliver_first) {
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_watches(w, n, 1, row);
  }
  for (int i = n - 1; i > 0; i--) { /* shuffle */
    int k = (int)(xorshift32(&seed) % (uint32_t)(i + 1));
    uvctx_t *tmp = nodes[i];
    nodes[i] = nodes[k];
    nodes[k] = tmp;
  }
  for (int i = 0; i < n; i++)
    uvctx_release(nodes[i]);
  if (!big_rows[_i].deliver_first) {
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_watches(w, n, big_rows[_i].cancel, row);
  }
  ASSERT_LOOP_CLOSES(&loop);
  free(nodes);
  free(w);
}
END_TEST

/* --- Several loops --- */

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

Suite *lifetime_suite(void) {
  return SUITE(
      "lifetime",
      {"refcount", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           retain_returns_its_argument,
           balanced_retain_release_keeps_the_context_usable,
           children_work_after_the_parents_last_reference_is_released,
           a_released_parents_deadline_still_reaches_its_children,
           releasing_never_cancels_the_parent_or_siblings,
           releasing_a_child_with_a_pending_watch_keeps_its_value_chain,
           release_after_cancel_before_delivery_still_delivers,
           a_deadline_context_released_before_firing_stops_its_timer)},
      {"loop_close", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(contexts_never_keep_the_loop_alive),
       .loops = LOOPS({loop_closes_after_release_of_each_kind_of_context, 0,
                       sizeof released / sizeof *released})},
      {"big", TIMEOUT_BIG_S, loop_setup, NULL,
       .loops = LOOPS({a_large_tree_released_in_random_order_closes, 0,
                       sizeof big_rows / sizeof *big_rows})},
      {"loops", TIMEOUT_LOOP_S, NULL, NULL,
       .tests = TESTS(two_loops_in_one_thread_do_not_interfere)});
}
