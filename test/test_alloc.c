/* Allocation failure: every public function that allocates, failed at each
 * of its allocations in turn, returns UV_ENOMEM (NULL for uvctx_done_async),
 * leaves its out-pointers and the tree unchanged, and leaks nothing; and a
 * server's worth of calls survives a failure at any point: every call
 * returns UV_ENOMEM or succeeds, what was built works, and the loop closes
 * with every byte given back.
 *
 * The functions that allocate: uvctx_with_cancel, uvctx_with_deadline(_cause),
 * uvctx_with_timeout(_cause), uvctx_with_grpc_timeout, uvctx_with_value,
 * uvctx_without_cancel, uvctx_with_signal, uvctx_with_any,
 * uvctx_with_shutdown (two contexts), and uvctx_done_async and uvctx_drain
 * the first time either is called on a context (their block); the first
 * cancellable context of a loop also allocates the loop's state. No other
 * function allocates: the scenario below runs the others (watch,
 * unwatch, cancel, reset_timeout, shutdown, keepalive, close_on_done,
 * release) with the allocator failing every call, and they all work
 * (test_grpc.c shows that uvctx_grpc_timeout allocates nothing). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "test.h"

/* The parents a constructor is swept under. */
enum {
  UNDER_ROOT,
  UNDER_CANCEL,
  UNDER_VALUE,
  UNDER_DONE,
  UNDER_OTHER_LOOP,
  UNDER_COUNT
};

/* One constructor (mk_kind() _i), first with every allocation failing, then
 * with its n-th allocation failing for every n, under each kind of parent:
 * the background root (for the loop's first context this also allocates the
 * loop's state), a live cancel context, a value context, a done context, a
 * cancel context on another loop (its child's extra block is made at birth). */
START_TEST(test_constructor_enomem_leaves_nothing) {
  static int key;
  long points = 0;
  uv_loop_t loop, other;
  uvctx_t *out = SENTINEL, *out2 = SENTINEL;

  ck_assert_int_eq(uv_loop_init(&loop), 0);
  counting_fail_all = 1;
  ck_assert_int_eq(mk_kind(_i, &loop, uvctx_background(), 0, &out, &out2),
                   UV_ENOMEM);
  counting_fail_all = 0;
  ck_assert_ptr_eq(out, SENTINEL);
  ck_assert_ptr_eq(out2, SENTINEL);
  ASSERT_LOOP_CLOSES(&loop);
  ck_assert_int_eq(counting_outstanding, 0);

  for (int under = 0; under < UNDER_COUNT; under++) {
    int failures = 0, err;
    for (long n = 0;; n++) {
      uvctx_t *parent = uvctx_background(), *owner = NULL, *value = NULL;
      int before, parent_err;

      out = out2 = SENTINEL;
      ck_assert_int_eq(uv_loop_init(&loop), 0);
      ck_assert_int_eq(uv_loop_init(&other), 0);
      if (under != UNDER_ROOT)
        parent = owner =
            mk_cancel(under == UNDER_OTHER_LOOP ? &other : &loop, parent);
      if (under == UNDER_VALUE)
        parent = value = mk_value(owner, &key, &key);
      if (under == UNDER_DONE)
        ck_assert_int_eq(uvctx_cancel_cause(owner, UV_EPIPE), 0);
      before = live_contexts(&loop);
      parent_err = uvctx_err(parent);

      counting_allowed = n;
      err = mk_kind(_i, &loop, parent, 0, &out, &out2);
      counting_allowed = -1;
      if (err == UV_ENOMEM) {
        failures++;
        ck_assert_ptr_eq(out, SENTINEL);
        ck_assert_ptr_eq(out2, SENTINEL);
        ck_assert_int_eq(uvctx_err(parent), parent_err);
        ck_assert_int_eq(live_contexts(&loop), before);
      } else {
        ck_assert_int_eq(err, 0);
        ck_assert_ptr_ne(out, SENTINEL);
        if (under == UNDER_DONE && uvctx_loop(out) != NULL)
          ck_assert_int_eq(uvctx_cause(out), UV_EPIPE);
        if (out2 != SENTINEL)
          uvctx_release(out2);
        uvctx_release(out);
      }
      release_all(value, owner);
      ASSERT_LOOP_CLOSES(&loop);
      ASSERT_LOOP_CLOSES(&other);
      ck_assert_int_eq(counting_outstanding, 0);
      if (err == 0)
        break;
    }
    /* Each constructor allocates at least once; a shutdown makes two
     * contexts, and a failure of the second gives back the first. */
    ck_assert_int_ge(failures, _i == MK_SHUTDOWN ? 2 : 1);
    points += failures;
  }
  if (getenv("UVCTX_ALLOC_VERBOSE") != NULL)
    fprintf(stderr, "alloc: %ld failure points under %d parents\n", points,
            UNDER_COUNT);
}
END_TEST

START_TEST(test_done_async_enomem_returns_null_then_recovers) {
  static int key;
  uv_loop_t loop;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *ctx = mk_cancel(&loop, uvctx_background());
  uvctx_t *value = mk_value(ctx, &key, &key);

  long before = counting_outstanding;
  counting_allowed = 0;
  ck_assert_ptr_null(uvctx_done_async(ctx));
  counting_allowed = 0; /* through a value context too */
  ck_assert_ptr_null(uvctx_done_async(value));
  counting_allowed = 1; /* the extra block made, the handle's not */
  ck_assert_ptr_null(uvctx_done_async(ctx));
  counting_allowed = -1;
  ck_assert_int_eq(counting_outstanding, before); /* nothing kept */
  uv_async_t *a = uvctx_done_async(value);
  ck_assert_ptr_nonnull(a);
  ck_assert_ptr_eq(uvctx_done_async(ctx), a);
  /* Made: no allocation any more, so no failure. */
  counting_fail_all = 1;
  ck_assert_ptr_eq(uvctx_done_async(ctx), a);
  counting_fail_all = 0;
  /* The signal still comes when the context is done. */
  uv_ref((uv_handle_t *)a);
  ck_assert_int_eq(uvctx_cancel(ctx), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  release_all(value, ctx);
  ASSERT_LOOP_CLOSES(&loop);
  ck_assert_int_eq(counting_outstanding, 0);
}
END_TEST

/* uvctx_drain's first call on a context makes the block it shares with the
 * done signal: failing, it says UV_ENOMEM with w untouched and unregistered
 * and nothing kept; the next call works. A done signal made later needs only
 * its handle's own block: that failing gives NULL and keeps the drain. */
START_TEST(test_drain_enomem_leaves_w_unregistered_then_recovers) {
  uv_loop_t loop;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *ctx = mk_cancel(&loop, uvctx_background());
  rec_t r = {0};

  rec_init(&r, NULL, ctx);
  long before = counting_outstanding;
  counting_allowed = 0;
  ck_assert_int_eq(uvctx_drain(ctx, &r.w, rec_cb), UV_ENOMEM);
  counting_allowed = -1;
  ck_assert_int_eq(counting_outstanding, before);
  ck_assert_int_eq(uvctx_unwatch(&r.w), UV_EALREADY); /* not registered */

  rec_drain(&r, NULL, ctx);
  before = counting_outstanding;
  counting_fail_all = 1;
  ck_assert_ptr_null(uvctx_done_async(ctx));
  counting_fail_all = 0;
  ck_assert_int_eq(counting_outstanding, before);
  counting_allowed = 1;
  uv_async_t *a = uvctx_done_async(ctx);
  counting_allowed = -1;
  ck_assert_ptr_nonnull(a);
  ck_assert_int_eq(uvctx_cancel(ctx), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_called_once(&r, UV_ECANCELED);
  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
  ck_assert_int_eq(counting_outstanding, 0);
}
END_TEST

/* --- A server under failing allocations --- */

enum { CONNS = 3, REQS = 2 };

/* A constructor's result in the scenario: UV_ENOMEM with *out untouched
 * (counted), or success. GOT(call) resets *out, makes the call, then reads
 * *out (argument order is unspecified, hence the commas). */
static long scenario_failures;
static int scenario_err;
#define GOT(call)                                                              \
  (out = SENTINEL, scenario_err = (call), got(scenario_err, out))

static uvctx_t *got(int err, uvctx_t *out) {
  if (err == UV_ENOMEM) {
    ck_assert_ptr_eq(out, SENTINEL);
    scenario_failures++;
    return NULL;
  }
  ck_assert_int_eq(err, 0);
  ck_assert_ptr_ne(out, SENTINEL);
  return out;
}

static uv_timer_t close_me;
static uvctx_watch_t close_watch;
static int closed;

static void on_closed(uv_handle_t *h) {
  (void)h;
  closed++;
}

/* One run of the scenario with the n-th allocation failing (n < 0: none);
 * returns 1 once it ran with nothing failing. A server with a two-phase
 * shutdown and a signal, a listener handle closed on shutdown, connections
 * with an idle timeout (reset on "reads") and a per-connection value,
 * requests with deadlines and an "any" of request and server, watches,
 * drains, done signals; then shutdown, the grace period cut short, and
 * everything released. */
static int server_scenario(long n) {
  static const int signums[] = {SIGUSR2};
  static int conn_id_key;
  uv_loop_t loop;
  uvctx_t *root = NULL, *server = NULL, *stopping = NULL;
  uvctx_t *conn[CONNS] = {0}, *tagged[CONNS] = {0};
  uvctx_t *req[CONNS][REQS] = {{0}}, *either[CONNS][REQS] = {{0}};
  rec_t on_stop = {0}, on_drain = {0}, on_req[CONNS][REQS], on_conn[CONNS];
  int drained = 0;
  uvctx_t *out;

  memset(on_req, 0, sizeof on_req);
  memset(on_conn, 0, sizeof on_conn);
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  ck_assert_int_eq(uv_timer_init(&loop, &close_me), 0);
  memset(&close_watch, 0, sizeof close_watch);
  closed = 0;
  counting_refused = 0;
  scenario_failures = 0;
  counting_allowed = n;

  root = GOT(uvctx_with_cancel(&loop, uvctx_background(), &out));
  if (root != NULL) {
    uvctx_t *st = SENTINEL;
    out = SENTINEL;
    int err = uvctx_with_shutdown(&loop, root, signums, 1, 60000, &st, &out);
    server = got(err, out);
    if (server != NULL)
      stopping = st;
    else
      ck_assert_ptr_eq(st, SENTINEL);
  }
  if (stopping != NULL) {
    rec_watch(&on_stop, NULL, stopping);
    ck_assert_int_eq(
        uvctx_close_on_done(stopping, (uv_handle_t *)&close_me, &close_watch,
                            on_closed),
        0);
  }
  if (server != NULL) {
    rec_init(&on_drain, NULL, server);
    int err = uvctx_drain(server, &on_drain.w, rec_cb);
    if (err == UV_ENOMEM) {
      scenario_failures++;
    } else {
      ck_assert_int_eq(err, 0);
      drained = 1;
    }
    ck_assert_int_eq(uvctx_keepalive(server, 1), 0);
    ck_assert_int_eq(uvctx_keepalive(server, 0), 0);
  }
  for (int c = 0; c < CONNS && server != NULL; c++) {
    conn[c] = GOT(uvctx_with_timeout(&loop, server, 30000, &out));
    if (conn[c] == NULL)
      continue;
    rec_watch(&on_conn[c], NULL, conn[c]);
    tagged[c] = GOT(uvctx_with_value(conn[c], &conn_id_key, &on_conn[c], &out));
    for (int r = 0; r < REQS && tagged[c] != NULL; r++) {
      req[c][r] = GOT(uvctx_with_deadline_cause(
          &loop, tagged[c], uvctx_now() + 5000, UV_ETIMEDOUT, &out));
      if (req[c][r] == NULL)
        continue;
      uvctx_t *parents[2] = {req[c][r], stopping != NULL ? stopping : root};
      either[c][r] = GOT(uvctx_with_any(&loop, parents, 2, &out));
      rec_watch(&on_req[c][r], NULL,
                either[c][r] != NULL ? either[c][r] : req[c][r]);
      /* The done signal may fail to be made; it is then NULL. */
      if (uvctx_done_async(req[c][r]) == NULL)
        scenario_failures++;
      ck_assert_ptr_eq(uvctx_value(req[c][r], &conn_id_key), &on_conn[c]);
    }
    /* A read: the idle timeout starts again. No allocation. */
    ck_assert_int_eq(uvctx_reset_timeout(conn[c], 30000), 0);
  }
  /* Nothing below allocates: make every allocation fail to prove it. */
  int complete = counting_refused == 0;
  counting_allowed = -1;
  counting_fail_all = 1;

  /* A client goes away; then the shutdown, and the grace period cut short. */
  if (conn[0] != NULL)
    ck_assert_int_eq(uvctx_cancel_cause(conn[0], UV_ECONNRESET), 0);
  if (server != NULL) {
    ck_assert_int_eq(uvctx_shutdown(server, UV_ESHUTDOWN), 0);
    ck_assert_int_eq(uvctx_err(stopping), UV_ECANCELED);
    ck_assert_int_eq(uvctx_cause(stopping), UV_ESHUTDOWN);
    uv_run(&loop, UV_RUN_NOWAIT);
    ck_assert_int_eq(on_stop.calls, 1);
    ck_assert_int_eq(closed, 1);
    if (uvctx_err(server) == 0) /* something is still running */
      ck_assert_int_eq(uvctx_shutdown(server, UV_ESHUTDOWN), 0);
    ck_assert_int_eq(uvctx_err(server), UV_ECANCELED);
  } else if (root != NULL) {
    ck_assert_int_eq(uvctx_cancel(root), 0);
  }
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);

  /* Every context that was made is done, with the right cause, and its
   * watch ran once. */
  for (int c = 0; c < CONNS; c++) {
    if (conn[c] == NULL)
      continue;
    ck_assert_int_eq(on_conn[c].calls, 1);
    ck_assert_int_eq(uvctx_cause(conn[c]),
                     c == 0 ? UV_ECONNRESET : UV_ESHUTDOWN);
    for (int r = 0; r < REQS; r++) {
      if (req[c][r] == NULL)
        continue;
      assert_called_once(&on_req[c][r], UV_ECANCELED);
      ck_assert_int_ne(uvctx_err(req[c][r]), 0);
    }
  }
  /* The server is done, but its children are still held: no drain yet. */
  if (drained)
    ck_assert_int_eq(on_drain.calls, 0);

  /* Release everything; the drain of the server runs once all is gone. */
  for (int c = 0; c < CONNS; c++) {
    for (int r = 0; r < REQS; r++) {
      release_all(either[c][r], req[c][r]);
    }
    release_all(tagged[c], conn[c]);
  }
  uvctx_release(stopping);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  if (drained)
    ck_assert_int_eq(on_drain.calls, 1);
  release_all(server, root);
  counting_fail_all = 0;
  if (!uv_is_closing((uv_handle_t *)&close_me))
    uv_close((uv_handle_t *)&close_me, NULL);
  ASSERT_LOOP_CLOSES(&loop);
  ck_assert_int_eq(counting_outstanding, 0);
  return complete;
}

/* Every allocation of the scenario fails in turn: memory runs out there for
 * good (_i == 0), or just that one allocation fails (_i == 1). */
START_TEST(test_server_scenario_survives_each_failed_allocation) {
  long n, total_failures = 0;

  counting_one_shot = _i;
  for (n = 0;; n++) {
    int complete = server_scenario(n);
    total_failures += scenario_failures;
    if (complete)
      break;
  }
  /* root, shutdown (2), the server's drain, per connection: timeout,
   * value, per request: deadline, any, done signal -- and the loop's
   * state. */
  ck_assert_int_ge(n, 1 + 2 + 1 + CONNS * (2 + REQS * 3) + 1);
  if (getenv("UVCTX_ALLOC_VERBOSE") != NULL)
    fprintf(stderr,
            "alloc: server scenario swept %ld allocation points (%ld calls "
            "said UV_ENOMEM)\n",
            n, total_failures);
}
END_TEST

Suite *alloc_suite(void) {
  return SUITE(
      "alloc",
      {"enomem", TIMEOUT_LOOP_S, counting_install, counting_uninstall,
       .tests = TESTS(test_done_async_enomem_returns_null_then_recovers,
                      test_drain_enomem_leaves_w_unregistered_then_recovers),
       .loops = LOOPS({test_constructor_enomem_leaves_nothing, 0, NMK_KINDS})},
      {"scenario", TIMEOUT_BIG_S, counting_install, counting_uninstall,
       .loops = LOOPS(
           {test_server_scenario_survives_each_failed_allocation, 0, 2})});
}
