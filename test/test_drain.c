/* Draining: uvctx_drain. Its callback runs once the context is done AND every
 * context below it (cancellable, value, without-cancel; children and
 * grandchildren) has been released, with the delivery rules of uvctx_watch:
 * on the loop thread, as a loop callback, exactly once, never inside a uvctx
 * call; uvctx_unwatch cancels it.
 *
 * Releasing on the loop thread frees a context once the loop has run its
 * close callbacks, so after a release the tests run the loop before they
 * look at a drain. */
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "test.h"

/* ---------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------- */

static int key_a; /* keys compare by address */

/* ---------------------------------------------------------------------------
 * When it runs
 * ------------------------------------------------------------------------- */

START_TEST(drain_runs_once_done_and_every_descendant_is_released) {
  rec_t d;
  uvctx_t *root = mk_cancel(&loop, uvctx_background());
  uvctx_t *conn = mk_cancel(&loop, root);
  uvctx_t *val = mk_value(root, &key_a, NULL);
  uvctx_t *req = mk_timeout(&loop, conn, 60000);
  uvctx_t *reqval = mk_value(req, &key_a, NULL);
  uvctx_t *valval = mk_value(val, &key_a, NULL);
  uvctx_t *valcancel = mk_cancel(&loop, val);
  uvctx_t *detached = mk_without(root);
  uvctx_t *order[] = {reqval, valcancel, req, detached, valval, conn, val};
  size_t n = sizeof order / sizeof order[0];

  rec_drain(&d, NULL, root);
  ck_assert_int_eq(uvctx_cancel(root), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(d.calls, 0);
  for (size_t i = 0; i < n; i++) {
    ck_assert_msg(d.calls == 0, "drained with %zu descendants left", n - i);
    uvctx_release(order[i]);
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  ck_assert_int_eq(d.calls, 1);
  ck_assert_int_eq(d.err, UV_ECANCELED);

  uvctx_release(root);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(drain_does_not_run_while_a_descendant_is_alive) {
  rec_t d;
  uvctx_t *root = mk_cancel(&loop, uvctx_background());
  uvctx_t *c = mk_cancel(&loop, root);
  rec_drain(&d, NULL, root);
  ck_assert_int_eq(uvctx_cancel(root), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_run(&loop, UV_RUN_NOWAIT);
  ck_assert_int_eq(d.calls, 0);

  uvctx_release(c);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(d.calls, 1);
  uvctx_release(root);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(drain_does_not_run_while_the_context_is_not_done) {
  rec_t d;
  uvctx_t *root = mk_cancel(&loop, uvctx_background());
  uvctx_t *c = mk_cancel(&loop, root);
  uvctx_t *v = mk_value(root, &key_a, NULL);
  rec_drain(&d, NULL, root);
  release_all(v, c);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_run(&loop, UV_RUN_NOWAIT);
  ck_assert_int_eq(d.calls, 0);

  ck_assert_int_eq(uvctx_cancel(root), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(d.calls, 1);
  uvctx_release(root);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(drain_never_runs_inside_cancel_or_release) {
  rec_t d;
  uvctx_t *root = mk_cancel(&loop, uvctx_background());
  uvctx_t *c = mk_cancel(&loop, root);
  rec_drain(&d, NULL, root);
  ck_assert_int_eq(uvctx_cancel(root), 0);
  ck_assert_int_eq(d.calls, 0);
  uvctx_release(c);
  ck_assert_int_eq(d.calls, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(d.calls, 1);
  uvctx_release(root);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(drain_of_an_already_drained_context_runs_on_a_later_callback) {
  rec_t d;
  uvctx_t *root = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(uvctx_cancel(root), 0);
  uv_run(&loop, UV_RUN_DEFAULT);

  rec_drain(&d, NULL, root);
  ck_assert_int_eq(d.calls, 0); /* never synchronously */
  uv_run(&loop, UV_RUN_DEFAULT); /* a due callback keeps the loop alive */
  ck_assert_int_eq(d.calls, 1);
  ck_assert_int_eq(d.err, UV_ECANCELED);
  uvctx_release(root);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(drain_err_is_etimedout_when_a_deadline_finished_the_context) {
  rec_t d;
  uvctx_t *root = mk_timeout(&loop, uvctx_background(), 5);
  uvctx_t *c = mk_cancel(&loop, root);
  rec_drain(&d, NULL, root);
  uvctx_release(c);
  ck_assert(run_until(&loop, &d.calls, 1));
  ck_assert_int_eq(d.err, UV_ETIMEDOUT);
  uvctx_release(root);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(drain_err_is_ecanceled_when_the_parent_finished_the_context) {
  rec_t d;
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *root = mk_cancel(&loop, parent);
  rec_drain(&d, NULL, root);
  ck_assert_int_eq(uvctx_cancel_cause(parent, UV_EPIPE), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(d.calls, 1);
  ck_assert_int_eq(d.err, UV_ECANCELED); /* the err, not the cause */
  release_all(root, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(drain_runs_exactly_once) {
  rec_t d;
  uvctx_t *root = mk_cancel(&loop, uvctx_background());
  rec_drain(&d, NULL, root);
  ck_assert_int_eq(uvctx_cancel(root), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(d.calls, 1);

  /* The tree fills and drains again: nothing more. */
  uvctx_t *late = mk_cancel(&loop, root); /* born done */
  uvctx_t *lv = mk_value(root, &key_a, NULL);
  ck_assert_int_eq(uvctx_cancel(root), UV_EALREADY);
  release_all(lv, late);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_run(&loop, UV_RUN_NOWAIT);
  ck_assert_int_eq(d.calls, 1);
  uvctx_release(root);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(a_child_born_done_after_the_cancel_also_delays_the_drain) {
  rec_t d;
  uvctx_t *root = mk_cancel(&loop, uvctx_background());
  uvctx_t *c = mk_cancel(&loop, root);
  rec_drain(&d, NULL, root);
  ck_assert_int_eq(uvctx_cancel(root), 0);
  uvctx_t *late = mk_value(c, &key_a, NULL); /* born done */
  uvctx_release(c);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(d.calls, 0); /* late still holds c, which holds root */
  uvctx_release(late);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(d.calls, 1);
  uvctx_release(root);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Order and references
 * ------------------------------------------------------------------------- */

START_TEST(drains_of_one_context_run_in_registration_order) {
  journal_t j = {0};
  rec_t d[3];
  uvctx_t *root = mk_cancel(&loop, uvctx_background());
  uvctx_t *c = mk_value(root, &key_a, NULL);
  for (int i = 0; i < 3; i++)
    rec_drain(&d[i], &j, root);
  ck_assert_int_eq(uvctx_cancel(root), 0);
  uvctx_release(c);
  uv_run(&loop, UV_RUN_DEFAULT);
  for (int i = 0; i < 3; i++)
    ck_assert_int_eq(d[i].calls, 1);
  ck_assert_int_lt(d[0].seq, d[1].seq);
  ck_assert_int_lt(d[1].seq, d[2].seq);
  uvctx_release(root);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(pending_watch_on_a_descendant_delays_the_drain_until_it_has_run) {
  journal_t j = {0};
  rec_t d, wc;
  uvctx_t *root = mk_cancel(&loop, uvctx_background());
  uvctx_t *c = mk_cancel(&loop, root);
  rec_drain(&d, &j, root);
  rec_watch(&wc, &j, c);
  uvctx_release(c); /* the pending watch still holds it */
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(wc.calls, 0);

  ck_assert_int_eq(uvctx_cancel(root), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(wc.calls, 1);
  ck_assert_int_eq(d.calls, 1);
  ck_assert_int_lt(wc.seq, d.seq);
  uvctx_release(root);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(pending_drain_keeps_its_context_alive) {
  rec_t d;
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *root = mk_cancel(&loop, parent);
  rec_drain(&d, NULL, root);
  uvctx_release(root); /* only the drain holds it now */
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(uvctx_cancel(parent), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(d.calls, 1);
  ck_assert_int_eq(d.err, UV_ECANCELED);
  uvctx_release(parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

static void release_ctx(rec_t *r) { uvctx_release(r->ctx); }

START_TEST(drain_callback_may_release_the_context) {
  rec_t d;
  uvctx_t *root = mk_cancel(&loop, uvctx_background());
  uvctx_t *c = mk_cancel(&loop, root);
  rec_drain(&d, NULL, root);
  d.action = release_ctx;
  ck_assert_int_eq(uvctx_cancel(root), 0);
  uvctx_release(c);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(d.calls, 1);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Unwatch
 * ------------------------------------------------------------------------- */

START_TEST(unwatched_drain_releases_its_hold_on_the_context) {
  rec_t d;
  uvctx_t *root = mk_cancel(&loop, uvctx_background());
  rec_drain(&d, NULL, root);
  uvctx_release(root);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(uvctx_unwatch(&d.w), 0); /* drops the last reference */
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(unwatched_drain_struct_can_be_used_again) {
  rec_t d;
  uvctx_t *a = mk_cancel(&loop, uvctx_background());
  uvctx_t *b = mk_cancel(&loop, uvctx_background());
  rec_drain(&d, NULL, a);
  ck_assert_int_eq(uvctx_unwatch(&d.w), 0);
  d.ctx = b;
  ck_assert_int_eq(uvctx_drain(b, &d.w, rec_cb), 0);
  ck_assert_int_eq(uvctx_cancel(a), 0);
  ck_assert_int_eq(uvctx_cancel(b), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(d.calls, 1);
  release_all(a, b);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Bad input
 * ------------------------------------------------------------------------- */

START_TEST(drain_null_arguments_are_einval) {
  rec_t d;
  uvctx_t *root = mk_cancel(&loop, uvctx_background());
  rec_init(&d, NULL, root);
  ck_assert_int_eq(uvctx_drain(NULL, &d.w, rec_cb), UV_EINVAL);
  ck_assert_int_eq(uvctx_drain(root, NULL, rec_cb), UV_EINVAL);
  ck_assert_int_eq(uvctx_drain(root, &d.w, NULL), UV_EINVAL);
  ck_assert_int_eq(uvctx_cancel(root), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(d.calls, 0);
  uvctx_release(root);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Each context that cannot be cancelled (helpers.h): UV_EINVAL, and the
 * drain struct is left free. */
START_TEST(drain_of_a_context_that_is_not_cancellable_is_einval) {
  journal_t j = {0};
  rec_t d;
  uvctx_t *made[2];
  uvctx_t *root = mk_cancel(&loop, uvctx_background());
  uvctx_t *c = mk_uncancellable(_i, root, made);
  rec_init(&d, &j, c);
  ck_assert_int_eq(uvctx_drain(c, &d.w, rec_cb), UV_EINVAL);
  rec_drain(&d, &j, root);
  ck_assert_int_eq(uvctx_cancel(root), 0);
  release_all(made[1], made[0]);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(j.ran, 1); /* the good drain only */
  uvctx_release(root);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Other threads
 *
 * A worker releases (or cancels) and then sends a ref'd uv_async_t of the
 * test, which keeps the loop polling until then; its callback joins the
 * worker and closes it.
 * ------------------------------------------------------------------------- */

typedef struct {
  uv_async_t async;
  uv_thread_t tid;
  uvctx_t *release;
  uvctx_t *cancel;
  int cancel_rc;
  int joined;
} worker_t;

static void worker_async_cb(uv_async_t *a) {
  worker_t *wk = a->data;
  ck_assert_int_eq(uv_thread_join(&wk->tid), 0);
  wk->joined = 1;
  uv_close((uv_handle_t *)a, NULL);
}

static void worker_main(void *arg) {
  worker_t *wk = arg;
  if (wk->cancel != NULL)
    wk->cancel_rc = uvctx_cancel(wk->cancel);
  if (wk->release != NULL)
    uvctx_release(wk->release);
  uv_async_send(&wk->async);
}

static void worker_start(worker_t *wk, uv_loop_t *loop, uvctx_t *release,
                         uvctx_t *cancel) {
  memset(wk, 0, sizeof *wk);
  wk->release = release;
  wk->cancel = cancel;
  ck_assert_int_eq(uv_async_init(loop, &wk->async, worker_async_cb), 0);
  wk->async.data = wk;
  ck_assert_int_eq(uv_thread_create(&wk->tid, worker_main, wk), 0);
}

START_TEST(value_child_released_on_another_thread_lets_the_drain_run) {
  rec_t d;
  worker_t wk;
  uvctx_t *root = mk_cancel(&loop, uvctx_background());
  uvctx_t *v = mk_value(root, &key_a, NULL);
  uvctx_t *vv = mk_value(v, &key_a, NULL);
  uvctx_release(v); /* vv holds it */
  rec_drain(&d, NULL, root);
  ck_assert_int_eq(uvctx_cancel(root), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(d.calls, 0);

  worker_start(&wk, &loop, vv, NULL);
  ck_assert(run_until(&loop, &d.calls, 1));
  ck_assert_int_eq(wk.joined, 1);
  ck_assert_int_eq(d.calls, 1);
  ck_assert_int_eq(d.err, UV_ECANCELED);
  uvctx_release(root);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(cancellable_child_released_on_another_thread_lets_the_drain_run) {
  rec_t d;
  worker_t wk;
  uvctx_t *root = mk_cancel(&loop, uvctx_background());
  uvctx_t *c = mk_timeout(&loop, root, 60000);
  rec_drain(&d, NULL, root);
  ck_assert_int_eq(uvctx_cancel(root), 0);
  uv_run(&loop, UV_RUN_DEFAULT);

  worker_start(&wk, &loop, c, NULL);
  ck_assert(run_until(&loop, &d.calls, 1));
  ck_assert_int_eq(wk.joined, 1);
  ck_assert_int_eq(d.calls, 1);
  uvctx_release(root);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(cancel_from_another_thread_lets_a_drained_tree_run_its_drain) {
  rec_t d;
  worker_t wk;
  uvctx_t *root = mk_cancel(&loop, uvctx_background());
  uvctx_t *v = mk_value(root, &key_a, NULL);
  rec_drain(&d, NULL, root);

  worker_start(&wk, &loop, v, root); /* cancels root, then releases v */
  ck_assert(run_until(&loop, &d.calls, 1));
  ck_assert_int_eq(wk.joined, 1);
  ck_assert_int_eq(wk.cancel_rc, 0);
  ck_assert_int_eq(d.calls, 1);
  ck_assert_int_eq(d.err, UV_ECANCELED);
  uvctx_release(root);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * A server: a root, three connections with a request each; the root is
 * cancelled, then the requests finish one by one (from timers) and release
 * their contexts and their connection's. The drain runs after the last.
 * ------------------------------------------------------------------------- */

enum { CONNS = 3 };

typedef struct server_s server_t;

typedef struct {
  server_t *srv;
  uv_timer_t t;
  uvctx_t *conn;
  uvctx_t *req;
  uvctx_t *reqval;
} conn_t;

struct server_s {
  uvctx_t *root;
  conn_t conns[CONNS];
  int released;
  int drain_seen_before_last; /* the drain ran before a release */
  int drained;
  int drain_err;
  int released_at_drain;
  uvctx_watch_t dw;
};

static void conn_finish(uv_timer_t *t) {
  conn_t *c = t->data;
  server_t *s = c->srv;
  if (s->drained)
    s->drain_seen_before_last++;
  ck_assert_int_eq(uvctx_err(c->req), UV_ECANCELED);
  release_all(c->reqval, c->req, c->conn);
  s->released++;
  uv_close((uv_handle_t *)t, NULL);
}

static void server_drained(uvctx_watch_t *w, int err) {
  server_t *s = w->data;
  s->drained++;
  s->drain_err = err;
  s->released_at_drain = s->released;
}

START_TEST(server_drain_runs_after_the_last_request_is_released) {
  server_t s;
  memset(&s, 0, sizeof s);
  s.root = mk_cancel(&loop, uvctx_background());
  for (int i = 0; i < CONNS; i++) {
    conn_t *c = &s.conns[i];
    c->srv = &s;
    c->conn = mk_cancel(&loop, s.root);
    c->req = mk_timeout(&loop, c->conn, 60000);
    c->reqval = mk_value(c->req, &key_a, c);
    ck_assert_int_eq(uv_timer_init(&loop, &c->t), 0);
    c->t.data = c;
    /* Released at 5, 10 and 15 ms, the last first. */
    ck_assert_int_eq(
        uv_timer_start(&c->t, conn_finish, 5 * (uint64_t)(CONNS - i), 0), 0);
  }
  s.dw.data = &s;
  ck_assert_int_eq(uvctx_drain(s.root, &s.dw, server_drained), 0);
  ck_assert_int_eq(uvctx_cancel(s.root), 0);

  ck_assert(run_until(&loop, &s.drained, 1));
  ck_assert_int_eq(s.released, CONNS);
  ck_assert_int_eq(s.released_at_drain, CONNS);
  ck_assert_int_eq(s.drain_seen_before_last, 0);
  ck_assert_int_eq(s.drained, 1);
  ck_assert_int_eq(s.drain_err, UV_ECANCELED);
  uvctx_release(s.root);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

Suite *drain_suite(void) {
  return SUITE(
      "drain",
      {"when", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           drain_runs_once_done_and_every_descendant_is_released,
           drain_does_not_run_while_a_descendant_is_alive,
           drain_does_not_run_while_the_context_is_not_done,
           drain_never_runs_inside_cancel_or_release,
           drain_of_an_already_drained_context_runs_on_a_later_callback,
           drain_err_is_etimedout_when_a_deadline_finished_the_context,
           drain_err_is_ecanceled_when_the_parent_finished_the_context,
           drain_runs_exactly_once,
           a_child_born_done_after_the_cancel_also_delays_the_drain)},
      {"order_refs", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           drains_of_one_context_run_in_registration_order,
           pending_watch_on_a_descendant_delays_the_drain_until_it_has_run,
           pending_drain_keeps_its_context_alive,
           drain_callback_may_release_the_context)},
      {"unwatch", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           unwatched_drain_releases_its_hold_on_the_context,
           unwatched_drain_struct_can_be_used_again)},
      {"bad_input", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           drain_null_arguments_are_einval),
       .loops = LOOPS(
           {drain_of_a_context_that_is_not_cancellable_is_einval, U_NULL, NUNCANCELLABLE})},
      {"threads", TIMEOUT_THREADS_S, loop_setup, NULL,
       .tests = TESTS(
           value_child_released_on_another_thread_lets_the_drain_run,
           cancellable_child_released_on_another_thread_lets_the_drain_run,
           cancel_from_another_thread_lets_a_drained_tree_run_its_drain)},
      {"server", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           server_drain_runs_after_the_last_request_is_released)});
}
