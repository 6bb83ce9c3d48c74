/* Draining: uvctx_drain. Its callback runs once the context is done AND every
 * context below it, of any kind and depth, has been released; it is
 * delivered as a watch is (loop thread, exactly once, never inside a uvctx
 * call), and uvctx_unwatch cancels it. A release frees a context once the
 * loop has run its close callbacks, so tests run the loop after a release
 * before they look at a drain. */

#include "helpers.h"
#include "test.h"

static int key_a; /* keys compare by address */

/* The fixture: the loop, and root, a cancel context, most often drained
 * with d. root_end() releases root (NULL once a test released it) and checks
 * that the loop closes. */
static uvctx_t *root;
static rec_t d;

static void root_setup(void) {
  loop_setup();
  root = mk_cancel(&loop, uvctx_background());
}

static void root_end(void) {
  uvctx_release(root);
  ASSERT_LOOP_CLOSES(&loop);
}

/* Runs the loop until nothing is due, then once more without blocking. */
static void run_dry(void) {
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_run(&loop, UV_RUN_NOWAIT);
}

/* ---------------------------------------------------------------------------
 * When it runs
 * ------------------------------------------------------------------------- */

START_TEST(drain_runs_once_done_and_every_descendant_is_released) {
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
  root_end();
}
END_TEST

/* The drain waits for both the cancel and the last release, whichever comes
 * last, never runs inside either call, and runs once. A child born done
 * after the cancel (late, a value child of c) holds c and so delays it too. */
enum { CANCEL_FIRST, RELEASE_FIRST, BORN_DONE_LATE };

static const char *const waits[] = {
    "the cancel, then the releases",
    "the releases, then the cancel",
    "the cancel, then a child born done, then the releases",
};

START_TEST(drain_waits_for_the_cancel_and_the_last_release) {
  const char *row = waits[_i];
  uvctx_t *c = mk_cancel(&loop, root);
  uvctx_t *v = mk_value(root, &key_a, NULL);
  uvctx_t *late = NULL;
  rec_drain(&d, NULL, root);
  if (_i != RELEASE_FIRST) {
    ck_row(row, uvctx_cancel(root), ==, 0);
    ck_row(row, d.calls, ==, 0); /* never inside the cancel */
    if (_i == BORN_DONE_LATE)
      late = mk_value(c, &key_a, NULL);
    run_dry();
    ck_row(row, d.calls, ==, 0); /* descendants are alive */
  }
  release_all(v, c);
  ck_row(row, d.calls, ==, 0); /* never inside the release */
  if (_i != CANCEL_FIRST) {
    run_dry();
    ck_row(row, d.calls, ==, 0); /* late holds c, or root is not done */
    if (_i == BORN_DONE_LATE) {
      uvctx_release(late);
    } else {
      ck_row(row, uvctx_cancel(root), ==, 0);
      ck_row(row, d.calls, ==, 0);
    }
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_row(row, d.calls, ==, 1);
  ck_row(row, d.err, ==, UV_ECANCELED);

  /* The tree fills and drains again: the drain does not run again. */
  late = mk_cancel(&loop, root); /* born done */
  v = mk_value(root, &key_a, NULL);
  ck_row(row, uvctx_cancel(root), ==, UV_EALREADY);
  release_all(v, late);
  run_dry();
  ck_row(row, d.calls, ==, 1);
  root_end();
}
END_TEST

/* The drain's err is the context's err, not its cause: UV_ETIMEDOUT when a
 * deadline finished it, UV_ECANCELED when its parent or a cancel did. On a
 * context drained before it was asked for, it runs on a later callback,
 * which keeps the loop alive. */
static const char *const finishers[] = {"a deadline", "the parent, with a cause",
                                        "a cancel, drained before"};

START_TEST(drain_runs_later_with_the_err_of_what_finished_the_context) {
  const char *row = finishers[_i];
  uvctx_t *ctx = _i == 0 ? mk_timeout(&loop, root, 5) : mk_cancel(&loop, root);
  uvctx_release(mk_cancel(&loop, ctx));
  if (_i == 2) {
    ck_row(row, uvctx_cancel(ctx), ==, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  rec_drain(&d, NULL, ctx);
  ck_row(row, d.calls, ==, 0); /* never synchronously */
  if (_i == 1)
    ck_row(row, uvctx_cancel_cause(root, UV_EPIPE), ==, 0);
  if (_i == 2) {
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_row(row, d.calls, ==, 1);
  }
  ck_row(row, run_until(&loop, &d.calls, 1), ==, 1);
  ck_row(row, d.calls, ==, 1);
  ck_row(row, d.err, ==, _i == 0 ? UV_ETIMEDOUT : UV_ECANCELED);
  uvctx_release(ctx);
  root_end();
}
END_TEST

/* The drain's err is the context's err, not its cause: UV_ETIMEDOUT when a
 * deadline finished it, UV_ECANCELED when its parent did. */
/* ---------------------------------------------------------------------------
 * Order, references, unwatch, bad input
 * ------------------------------------------------------------------------- */

/* A pending watch on a descendant holds it, so the drains wait until it has
 * run; then they run in the order they were registered. */
START_TEST(drains_run_in_registration_order_after_pending_watches_below) {
  journal_t j = {0};
  rec_t dd[3], wc;
  uvctx_t *c = mk_cancel(&loop, root);
  uvctx_t *v = mk_value(root, &key_a, NULL);
  for (int i = 0; i < 3; i++)
    rec_drain(&dd[i], &j, root);
  rec_watch(&wc, &j, c);
  uvctx_release(c); /* the pending watch still holds it */
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(wc.calls, 0);

  ck_assert_int_eq(uvctx_cancel(root), 0);
  uvctx_release(v);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(wc.calls, 1);
  for (int i = 0; i < 3; i++)
    ck_assert_int_eq(dd[i].calls, 1);
  ck_assert_int_lt(wc.seq, dd[0].seq);
  ck_assert_int_lt(dd[0].seq, dd[1].seq);
  ck_assert_int_lt(dd[1].seq, dd[2].seq);
  root_end();
}
END_TEST

/* A pending drain holds its context: after the user's last release it lives
 * on until the drain has run, or has been unwatched (then the drain struct
 * can be used again). */
START_TEST(pending_drain_holds_its_context_until_it_runs_or_is_unwatched) {
  const char *row = _i == 0 ? "runs" : "is unwatched";
  uvctx_t *ctx = mk_cancel(&loop, root);
  rec_drain(&d, NULL, ctx);
  uvctx_release(ctx); /* only the drain holds it now */
  uv_run(&loop, UV_RUN_DEFAULT);
  if (_i == 0) {
    ck_row(row, uvctx_cancel(root), ==, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_row(row, d.calls, ==, 1);
    ck_row(row, d.err, ==, UV_ECANCELED);
  } else {
    ck_row(row, uvctx_unwatch(&d.w), ==, 0); /* drops the last reference */
    d.ctx = root;
    ck_row(row, uvctx_drain(root, &d.w, rec_cb), ==, 0);
    ck_row(row, uvctx_cancel(root), ==, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_row(row, d.calls, ==, 1);
  }
  root_end();
}
END_TEST

/* NULL arguments, and each context that cannot be cancelled (helpers.h,
 * U_NULL among them): UV_EINVAL, and the drain struct is left free. */
START_TEST(drain_of_null_or_of_a_context_that_is_not_cancellable_is_einval) {
  journal_t j = {0};
  uvctx_t *made[2];
  uvctx_t *c = mk_uncancellable(_i, root, made);
  rec_init(&d, &j, c);
  ck_assert_int_eq(uvctx_drain(c, &d.w, rec_cb), UV_EINVAL);
  ck_assert_int_eq(uvctx_drain(root, NULL, rec_cb), UV_EINVAL);
  ck_assert_int_eq(uvctx_drain(root, &d.w, NULL), UV_EINVAL);
  rec_drain(&d, &j, root);
  ck_assert_int_eq(uvctx_cancel(root), 0);
  release_all(made[1], made[0]);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(j.ran, 1); /* the good drain only */
  root_end();
}
END_TEST

/* ---------------------------------------------------------------------------
 * Other threads: a thread cancels and releases, the loop drains.
 * ------------------------------------------------------------------------- */

/* What the thread releases: a value grandchild (whose parent it holds), a
 * cancel child, or a value child after it cancelled root. */
static const char *const thread_rows[] = {"a value grandchild",
                                          "a cancel child", "root cancelled"};

typedef struct {
  uvctx_t *release;
  int cancel;
  int cancel_rc;
} on_thread_t;

static void cancel_and_release(void *arg) {
  on_thread_t *t = arg;
  if (t->cancel)
    t->cancel_rc = uvctx_cancel(root);
  uvctx_release(t->release);
}

START_TEST(drain_runs_after_another_thread_ends_the_tree) {
  const char *row = thread_rows[_i];
  on_thread_t t = {.cancel = _i == 2};
  loop_thread_t th;
  if (_i == 0) {
    uvctx_t *v = mk_value(root, &key_a, NULL);
    t.release = mk_value(v, &key_a, NULL);
    uvctx_release(v);
  } else {
    t.release =
        _i == 1 ? mk_timeout(&loop, root, 60000) : mk_value(root, &key_a, NULL);
  }
  rec_drain(&d, NULL, root);
  if (!t.cancel) {
    ck_row(row, uvctx_cancel(root), ==, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_row(row, d.calls, ==, 0);
  }

  loop_thread_start(&th, &loop, cancel_and_release, &t);
  ck_row(row, run_until(&loop, &d.calls, 1), ==, 1);
  ck_row(row, th.joined, ==, 1);
  ck_row(row, t.cancel_rc, ==, 0);
  ck_row(row, d.calls, ==, 1);
  ck_row(row, d.err, ==, UV_ECANCELED);
  root_end();
}
END_TEST

/* ---------------------------------------------------------------------------
 * A server: three connections under root with a request each; root is
 * cancelled, then the requests finish one by one (timers) and release their
 * contexts and their connection's. The drain runs after the last, and
 * releases root: a drain callback may release its context.
 * ------------------------------------------------------------------------- */

typedef struct {
  uv_timer_t t;
  uvctx_t *conn;
  uvctx_t *req;
  uvctx_t *reqval;
} conn_t;

static int released;

static void conn_finish(uv_timer_t *t) {
  conn_t *c = t->data;
  ck_assert_int_eq(d.calls, 0); /* the drain waits for the last */
  ck_assert_int_eq(uvctx_err(c->req), UV_ECANCELED);
  release_all(c->reqval, c->req, c->conn);
  released++;
  uv_close((uv_handle_t *)t, NULL);
}

/* The drain's action: notes how many were released, then releases root. */
static void note_released_and_release(rec_t *r) {
  r->action_rc = released;
  uvctx_release(r->ctx);
}

START_TEST(server_drain_runs_after_the_last_request_is_released) {
  enum { CONNS = 3 };
  conn_t conns[CONNS];
  released = 0;
  for (int i = 0; i < CONNS; i++) {
    conn_t *c = &conns[i];
    c->conn = mk_cancel(&loop, root);
    c->req = mk_timeout(&loop, c->conn, 60000);
    c->reqval = mk_value(c->req, &key_a, c);
    ck_assert_int_eq(uv_timer_init(&loop, &c->t), 0);
    c->t.data = c;
    /* Released at 15, 10 and 5 ms: the last made first. */
    ck_assert_int_eq(
        uv_timer_start(&c->t, conn_finish, 5 * (uint64_t)(CONNS - i), 0), 0);
  }
  rec_drain(&d, NULL, root);
  d.action = note_released_and_release;
  ck_assert_int_eq(uvctx_cancel(root), 0);
  root = NULL; /* the drain releases it */

  ck_assert(run_until(&loop, &d.calls, 1));
  ck_assert_int_eq(released, CONNS);
  ck_assert_int_eq(d.action_rc, CONNS);
  ck_assert_int_eq(d.calls, 1);
  ck_assert_int_eq(d.err, UV_ECANCELED);
  root_end();
}
END_TEST

Suite *drain_suite(void) {
  return SUITE(
      "drain",
      {"when", TIMEOUT_LOOP_S, root_setup, NULL,
       .tests = TESTS(
           drain_runs_once_done_and_every_descendant_is_released,
           server_drain_runs_after_the_last_request_is_released),
       .loops = LOOPS({drain_waits_for_the_cancel_and_the_last_release, 0, 3},
                      {drain_runs_later_with_the_err_of_what_finished_the_context,
                       0, NROWS(finishers)})},
      {"order_refs", TIMEOUT_LOOP_S, root_setup, NULL,
       .tests = TESTS(
           drains_run_in_registration_order_after_pending_watches_below),
       .loops = LOOPS(
           {pending_drain_holds_its_context_until_it_runs_or_is_unwatched, 0,
            2},
           {drain_of_null_or_of_a_context_that_is_not_cancellable_is_einval,
            U_NULL, NUNCANCELLABLE})},
      {"threads", TIMEOUT_THREADS_S, root_setup, NULL,
       .loops = LOOPS({drain_runs_after_another_thread_ends_the_tree, 0, 3})});
}
