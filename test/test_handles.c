/* Handles and requests: uvctx_close_on_done() and uvctx_cancel_on_done().
 *
 * close_on_done is shown on a real TCP client on loopback whose read never
 * gets data (the server listens and never accepts), and on plain timers for
 * the edges: handles the user closes first, unwatching, bad input.
 *
 * cancel_on_done is shown on real thread-pool requests kept queued: every
 * thread of libuv's pool is first occupied by "blocker" work items that wait
 * on a semaphore until the test lets them go, so the request under test
 * cannot start before it is cancelled. The pool's size is read the way libuv
 * reads it (UV_THREADPOOL_SIZE, default 4); a wrong guess makes the test fail
 * (the request runs), never hang. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "test.h"

/* ---------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------- */

static int key_a;
static char val_a[] = "a";

/* A close callback that records its calls. handle->data points to it. */
typedef struct {
  int calls;
  int closing_inside; /* uv_is_closing() inside the callback */
  uint64_t now;
} closed_t;

static void on_closed(uv_handle_t *h) {
  closed_t *c = h->data;
  c->calls++;
  c->closing_inside = uv_is_closing(h);
  c->now = uvctx_now();
}

/* A timer handle with a close record, for the edge cases. */
typedef struct {
  uv_timer_t timer;
  closed_t closed;
  uvctx_watch_t w;
} th_t;

static void th_init(th_t *t, uv_loop_t *loop) {
  memset(t, 0, sizeof(*t));
  ck_assert_int_eq(uv_timer_init(loop, &t->timer), 0);
  t->timer.data = &t->closed;
}

static uv_handle_t *th_handle(th_t *t) { return (uv_handle_t *)&t->timer; }

static void never_cb(uv_timer_t *t) {
  (void)t;
  ck_abort_msg("this timer must never fire");
}

/* ---------------------------------------------------------------------------
 * close_on_done on a TCP connection that never gets data
 * ------------------------------------------------------------------------- */

/* A server that listens on 127.0.0.1 and never accepts, and a client that
 * connects to it and reads. libuv takes the connection off the listen queue
 * and waits for us to accept it, so the client connects and its read never
 * gets data. A guard timer (unref'd) closes everything if the test's own
 * closing never comes. */
typedef struct {
  uv_loop_t *loop;
  uv_tcp_t server;
  int connections;
  uv_tcp_t client;
  closed_t client_closed; /* the close_cb given to uvctx */
  uv_connect_t connect;
  int connect_calls;
  int connect_status;
  int read_calls;
  uvctx_watch_t w;
  uvctx_t *read_ctx; /* made once connected, if arm_on_connect */
  uint64_t read_deadline;
  int arm_on_connect;
  uv_timer_t guard;
  int guard_fired;
} tcp_t;

static void on_connection(uv_stream_t *server, int status) {
  tcp_t *t = server->data;
  ck_assert_int_eq(status, 0);
  t->connections++; /* and never accepted */
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  static char slab[256];
  (void)h;
  (void)suggested;
  *buf = uv_buf_init(slab, sizeof slab);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  tcp_t *t = s->data;
  (void)buf;
  if (nread != 0)
    t->read_calls++;
}

/* The client's close_cb (given to uvctx): the server goes with it, so that
 * the loop ends. */
static void on_client_closed(uv_handle_t *h) {
  tcp_t *t = h->data;
  t->client_closed.calls++;
  t->client_closed.closing_inside = uv_is_closing(h);
  t->client_closed.now = uvctx_now();
  if (!uv_is_closing((uv_handle_t *)&t->server))
    uv_close((uv_handle_t *)&t->server, NULL);
  if (!uv_is_closing((uv_handle_t *)&t->guard))
    uv_close((uv_handle_t *)&t->guard, NULL);
}

static void on_connect(uv_connect_t *req, int status) {
  tcp_t *t = req->data;
  t->connect_calls++;
  t->connect_status = status;
  if (status != 0)
    return;
  ck_assert_int_eq(
      uv_read_start((uv_stream_t *)&t->client, on_alloc, on_read), 0);
  if (t->arm_on_connect) {
    /* the read gets 30 ms, then the connection is closed */
    ck_assert_int_eq(
        uvctx_with_timeout(t->loop, uvctx_background(), 30, &t->read_ctx), 0);
    ck_assert_int_eq(uvctx_deadline(t->read_ctx, &t->read_deadline), 1);
    ck_assert_int_eq(uvctx_close_on_done(t->read_ctx,
                                         (uv_handle_t *)&t->client, &t->w,
                                         on_client_closed),
                     0);
  }
}

static void tcp_guard_cb(uv_timer_t *g) {
  tcp_t *t = g->data;
  t->guard_fired = 1;
  if (!uv_is_closing((uv_handle_t *)&t->client))
    uv_close((uv_handle_t *)&t->client, NULL);
  uv_close((uv_handle_t *)&t->server, NULL);
  uv_close((uv_handle_t *)g, NULL);
}

/* Listens, connects (the connection is pending when this returns). */
static void tcp_start(tcp_t *t, uv_loop_t *loop) {
  struct sockaddr_in addr;
  struct sockaddr_storage bound;
  int len = sizeof bound;
  memset(t, 0, sizeof(*t));
  t->loop = loop;
  ck_assert_int_eq(uv_ip4_addr("127.0.0.1", 0, &addr), 0);
  ck_assert_int_eq(uv_tcp_init(loop, &t->server), 0);
  t->server.data = t;
  ck_assert_int_eq(
      uv_tcp_bind(&t->server, (const struct sockaddr *)&addr, 0), 0);
  ck_assert_int_eq(uv_listen((uv_stream_t *)&t->server, 1, on_connection), 0);
  ck_assert_int_eq(uv_tcp_getsockname(&t->server, (struct sockaddr *)&bound,
                                      &len),
                   0);

  ck_assert_int_eq(uv_tcp_init(loop, &t->client), 0);
  t->client.data = t;
  t->connect.data = t;
  ck_assert_int_eq(uv_tcp_connect(&t->connect, &t->client,
                                  (const struct sockaddr *)&bound, on_connect),
                   0);

  ck_assert_int_eq(uv_timer_init(loop, &t->guard), 0);
  t->guard.data = t;
  ck_assert_int_eq(uv_timer_start(&t->guard, tcp_guard_cb, EVENTUALLY_MS, 0),
                   0);
  uv_unref((uv_handle_t *)&t->guard);
}

START_TEST(close_on_done_closes_a_silent_tcp_read_at_the_deadline) {
  uv_loop_t loop;
  tcp_t t;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  tcp_start(&t, &loop);
  t.arm_on_connect = 1;

  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_msg(!t.guard_fired, "the client was not closed at the deadline");
  ck_assert_int_eq(t.connect_calls, 1);
  ck_assert_int_eq(t.connect_status, 0);
  ck_assert_ptr_nonnull(t.read_ctx);
  ck_assert_int_eq(t.client_closed.calls, 1);
  ck_assert_int_eq(t.client_closed.closing_inside, 1);
  ck_assert_uint_ge(t.client_closed.now, t.read_deadline);
  ck_assert_int_eq(uvctx_err(t.read_ctx), UV_ETIMEDOUT);
  /* the server never sent anything, and the read ended with the close */
  ck_assert_int_eq(t.read_calls, 0);
  ck_assert_int_eq(t.connections, 1);
  ck_assert_int_eq(uvctx_unwatch(&t.w), UV_EALREADY);

  uvctx_release(t.read_ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(close_on_done_of_a_cancelled_context_fails_a_pending_connect) {
  uv_loop_t loop;
  tcp_t t;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *ctx = mk_cancel(&loop, uvctx_background());
  tcp_start(&t, &loop);
  ck_assert_int_eq(uvctx_cancel(ctx), 0);
  ck_assert_int_eq(uvctx_close_on_done(ctx, (uv_handle_t *)&t.client, &t.w,
                                       on_client_closed),
                   0);
  /* never synchronously */
  ck_assert_int_eq(uv_is_closing((uv_handle_t *)&t.client), 0);

  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert(!t.guard_fired);
  ck_assert_int_eq(t.client_closed.calls, 1);
  /* closed on the next loop callback, before the connect could complete */
  ck_assert_int_eq(t.connect_calls, 1);
  ck_assert_int_eq(t.connect_status, UV_ECANCELED);

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * close_on_done: the edges, on timers
 * ------------------------------------------------------------------------- */

START_TEST(close_on_done_closes_a_handle_that_keeps_the_loop_alive) {
  uv_loop_t loop;
  th_t t;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  th_init(&t, &loop);
  ck_assert_int_eq(uv_timer_start(&t.timer, never_cb, 60000, 0), 0);
  uvctx_t *ctx = mk_timeout(&loop, uvctx_background(), 10);
  uint64_t deadline = deadline_of(ctx);
  ck_assert_int_eq(uvctx_close_on_done(ctx, th_handle(&t), &t.w, on_closed), 0);

  /* Only the timer keeps the loop alive; the context ends it. */
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(t.closed.calls, 1);
  ck_assert_uint_ge(t.closed.now, deadline);

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(close_on_done_accepts_a_null_close_cb) {
  uv_loop_t loop;
  th_t t;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  th_init(&t, &loop);
  uvctx_t *ctx = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(uvctx_close_on_done(ctx, th_handle(&t), &t.w, NULL), 0);
  ck_assert_int_eq(uvctx_cancel(ctx), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(uv_is_closing(th_handle(&t)), 1);

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(close_on_done_of_a_value_context_closes_with_its_ancestor) {
  uv_loop_t loop;
  th_t t;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  th_init(&t, &loop);
  uvctx_t *p = mk_cancel(&loop, uvctx_background());
  uvctx_t *v = mk_value(p, &key_a, val_a);
  ck_assert_int_eq(uvctx_close_on_done(v, th_handle(&t), &t.w, on_closed), 0);
  uvctx_release(v); /* the pending watch keeps it alive */

  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(t.closed.calls, 0);
  ck_assert_int_eq(uvctx_cancel(p), 0);
  ck_assert_int_eq(uv_is_closing(th_handle(&t)), 0); /* not inside cancel */
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(t.closed.calls, 1);

  uvctx_release(p);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(close_on_done_rejects_a_handle_that_is_already_closing) {
  uv_loop_t loop;
  th_t t;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  th_init(&t, &loop);
  uvctx_t *ctx = mk_cancel(&loop, uvctx_background());
  uv_close(th_handle(&t), on_closed);

  ck_assert_int_eq(uvctx_close_on_done(ctx, th_handle(&t), &t.w, on_closed),
                   UV_EINVAL);
  ck_assert_int_eq(uvctx_cancel(ctx), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(t.closed.calls, 1); /* ours, once */
  ck_assert_int_eq(uvctx_unwatch(&t.w), UV_EALREADY); /* never registered */

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(close_on_done_rejects_a_handle_of_another_loop) {
  uv_loop_t loop, other;
  th_t t;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  ck_assert_int_eq(uv_loop_init(&other), 0);
  th_init(&t, &other);
  uvctx_t *ctx = mk_cancel(&loop, uvctx_background());
  uvctx_t *v = mk_value(ctx, &key_a, val_a);

  ck_assert_int_eq(uvctx_close_on_done(ctx, th_handle(&t), &t.w, on_closed),
                   UV_EINVAL);
  ck_assert_int_eq(uvctx_close_on_done(v, th_handle(&t), &t.w, on_closed),
                   UV_EINVAL);
  ck_assert_int_eq(uvctx_cancel(ctx), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(uv_run(&other, UV_RUN_NOWAIT), 0);
  ck_assert_int_eq(uv_is_closing(th_handle(&t)), 0);

  uv_close(th_handle(&t), NULL);
  release_all(v, ctx);
  ASSERT_LOOP_CLOSES(&loop);
  ASSERT_LOOP_CLOSES(&other);
}
END_TEST

START_TEST(close_on_done_rejects_null_arguments) {
  uv_loop_t loop;
  th_t t;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  th_init(&t, &loop);
  uvctx_t *ctx = mk_cancel(&loop, uvctx_background());

  ck_assert_int_eq(uvctx_close_on_done(NULL, th_handle(&t), &t.w, on_closed),
                   UV_EINVAL);
  ck_assert_int_eq(uvctx_close_on_done(ctx, NULL, &t.w, on_closed), UV_EINVAL);
  ck_assert_int_eq(uvctx_close_on_done(ctx, th_handle(&t), NULL, on_closed),
                   UV_EINVAL);
  ck_assert_int_eq(uvctx_cancel(ctx), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(uv_is_closing(th_handle(&t)), 0);

  uv_close(th_handle(&t), NULL);
  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

static void plain_watch_cb(uvctx_watch_t *w, int err) {
  (void)w;
  (void)err;
}

START_TEST(close_on_done_with_a_pending_watch_is_ebusy) {
  uv_loop_t loop;
  th_t t1, t2;
  uvctx_watch_t plain = {0};
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  th_init(&t1, &loop);
  th_init(&t2, &loop);
  uvctx_t *ctx = mk_cancel(&loop, uvctx_background());

  ck_assert_int_eq(uvctx_close_on_done(ctx, th_handle(&t1), &t1.w, on_closed),
                   0);
  ck_assert_int_eq(uvctx_close_on_done(ctx, th_handle(&t2), &t1.w, on_closed),
                   UV_EBUSY);
  ck_assert_int_eq(uvctx_watch(ctx, &plain, plain_watch_cb), 0);
  ck_assert_int_eq(uvctx_close_on_done(ctx, th_handle(&t2), &plain, on_closed),
                   UV_EBUSY);
  ck_assert_int_eq(uvctx_cancel(ctx), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(t1.closed.calls, 1);
  ck_assert_int_eq(uv_is_closing(th_handle(&t2)), 0); /* the rejected one */

  uv_close(th_handle(&t2), NULL);
  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(unwatched_close_on_done_leaves_the_handle_open) {
  uv_loop_t loop;
  th_t t;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  th_init(&t, &loop);
  uvctx_t *ctx = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(uvctx_close_on_done(ctx, th_handle(&t), &t.w, on_closed), 0);

  ck_assert_int_eq(uvctx_unwatch(&t.w), 0);
  ck_assert_int_eq(uvctx_cancel(ctx), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_NOWAIT), 0);
  ck_assert_int_eq(uv_is_closing(th_handle(&t)), 0);
  ck_assert_int_eq(t.closed.calls, 0);
  /* still a working handle */
  ck_assert_int_eq(uv_timer_start(&t.timer, never_cb, 60000, 0), 0);

  uv_close(th_handle(&t), on_closed); /* ours to close */
  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
  ck_assert_int_eq(t.closed.calls, 1);
}
END_TEST

/* The user closes the handle first, and unwatches in its own close callback:
 * the documented way. */
typedef struct {
  uv_timer_t timer;
  uvctx_watch_t w;
  int user_closes;
  int uvctx_closes;
  int unwatch_rc;
} own_t;

static void on_user_closed_unwatch(uv_handle_t *h) {
  own_t *o = h->data;
  o->user_closes++;
  o->unwatch_rc = uvctx_unwatch(&o->w);
}

static void on_user_closed(uv_handle_t *h) {
  own_t *o = h->data;
  o->user_closes++;
}

static void on_uvctx_closed(uv_handle_t *h) {
  own_t *o = h->data;
  o->uvctx_closes++;
}

/* A handle the user closed is never closed again by uvctx, however the close
 * and the context's end meet: closed and unwatched in its close callback (the
 * documented way) before the context is done; still closing when it is done
 * (uvctx's watch runs then); closed completely before it is done (its memory
 * stays valid: the watch is pending). */
enum { UNWATCHED_IN_CLOSE_CB, STILL_CLOSING, ALREADY_CLOSED };

START_TEST(handle_closed_by_the_user_is_not_closed_again) {
  uv_loop_t loop;
  own_t o;
  memset(&o, 0, sizeof o);
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  ck_assert_int_eq(uv_timer_init(&loop, &o.timer), 0);
  o.timer.data = &o;
  uvctx_t *ctx = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(uvctx_close_on_done(ctx, (uv_handle_t *)&o.timer, &o.w,
                                       on_uvctx_closed),
                   0);

  uv_close((uv_handle_t *)&o.timer, _i == UNWATCHED_IN_CLOSE_CB
                                        ? on_user_closed_unwatch
                                        : on_user_closed);
  if (_i != STILL_CLOSING) {
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(o.user_closes, 1);
  }
  ck_assert_int_eq(uvctx_cancel(ctx), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(o.user_closes, 1);
  ck_assert_int_eq(o.uvctx_closes, 0);
  if (_i == UNWATCHED_IN_CLOSE_CB)
    ck_assert_int_eq(o.unwatch_rc, 0);
  else
    ck_assert_int_eq(uvctx_unwatch(&o.w), UV_EALREADY); /* it ran */

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(close_on_done_of_a_context_never_done_succeeds_and_does_nothing) {
  uv_loop_t loop;
  th_t t1, t2;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  th_init(&t1, &loop);
  th_init(&t2, &loop);
  uvctx_t *p = mk_cancel(&loop, uvctx_background());
  uvctx_t *wo = mk_without(p);

  ck_assert_int_eq(
      uvctx_close_on_done(uvctx_background(), th_handle(&t1), &t1.w, on_closed),
      0);
  ck_assert_int_eq(uvctx_close_on_done(wo, th_handle(&t2), &t2.w, on_closed),
                   0);
  ck_assert_int_eq(uvctx_cancel(p), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(uv_is_closing(th_handle(&t1)), 0);
  ck_assert_int_eq(uv_is_closing(th_handle(&t2)), 0);
  ck_assert_int_eq(uvctx_unwatch(&t1.w), 0);
  ck_assert_int_eq(uvctx_unwatch(&t2.w), 0);

  uv_close(th_handle(&t1), NULL);
  uv_close(th_handle(&t2), NULL);
  release_all(wo, p);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * cancel_on_done on requests queued behind a busy thread pool
 * ------------------------------------------------------------------------- */

/* libuv's own reading of UV_THREADPOOL_SIZE (src/threadpool.c). */
static unsigned int pool_size(void) {
  const char *val = getenv("UV_THREADPOOL_SIZE");
  unsigned int n = val != NULL ? (unsigned int)atoi(val) : 4;
  if (n == 0)
    n = 1;
  if (n > 1024)
    n = 1024;
  return n;
}

typedef struct {
  uv_work_t *reqs;
  unsigned int n;
  tally_t started;
  uv_sem_t go;
  int released;
  unsigned int finished;
  int finish_status;
} pool_t;

static void blocker_work(uv_work_t *req) {
  pool_t *p = req->data;
  tally_add(&p->started, 1);
  uv_sem_wait(&p->go);
}

static void blocker_after(uv_work_t *req, int status) {
  pool_t *p = req->data;
  p->finished++;
  if (status != 0)
    p->finish_status = status;
}

static void pool_release(pool_t *p) {
  if (p->released)
    return;
  p->released = 1;
  for (unsigned int i = 0; i < p->n; i++)
    uv_sem_post(&p->go);
}

/* Occupies every thread of the pool; returns once each one is blocked. */
static void pool_occupy(pool_t *p, uv_loop_t *loop) {
  memset(p, 0, sizeof(*p));
  p->n = pool_size();
  tally_init(&p->started);
  ck_assert_int_eq(uv_sem_init(&p->go, 0), 0);
  p->reqs = calloc(p->n, sizeof(*p->reqs));
  ck_assert_ptr_nonnull(p->reqs);
  for (unsigned int i = 0; i < p->n; i++) {
    p->reqs[i].data = p;
    ck_assert_int_eq(uv_queue_work(loop, &p->reqs[i], blocker_work,
                                   blocker_after),
                     0);
  }
  if (!tally_wait(&p->started, (int)p->n, HANDOFF_LIMIT_MS)) {
    pool_release(p);
    ck_abort_msg("only %d of %u pool threads started", tally_get(&p->started),
                 p->n);
  }
}

/* After the loop has run: every blocker finished normally. */
static void pool_done(pool_t *p) {
  ck_assert_int_eq(p->released, 1);
  ck_assert_uint_eq(p->finished, p->n);
  ck_assert_int_eq(p->finish_status, 0);
  tally_destroy(&p->started);
  uv_sem_destroy(&p->go);
  free(p->reqs);
}

/* One request of each cancellable kind, queued while the pool is busy. */
enum victim_kind { V_WORK, V_FS, V_GETADDRINFO, V_GETNAMEINFO, V_RANDOM };

typedef struct {
  pool_t pool;
  union {
    uv_req_t req;
    uv_work_t work;
    uv_fs_t fs;
    uv_getaddrinfo_t gai;
    uv_getnameinfo_t gni;
    uv_random_t rnd;
  } u;
  char random_buf[16];
  uvctx_watch_t w;
  atomic_int work_ran;
  int calls;
  int status;
  uv_timer_t guard;
  int guard_fired;
} victim_t;

static void victim_done(victim_t *v, int status) {
  v->calls++;
  v->status = status;
  pool_release(&v->pool);
  if (!uv_is_closing((uv_handle_t *)&v->guard))
    uv_close((uv_handle_t *)&v->guard, NULL);
}

static void victim_work(uv_work_t *req) {
  victim_t *v = req->data;
  atomic_store(&v->work_ran, 1);
}

static void victim_after_work(uv_work_t *req, int status) {
  victim_done(req->data, status);
}

static void victim_fs_cb(uv_fs_t *req) {
  victim_t *v = req->data;
  int result = (int)req->result;
  uv_fs_req_cleanup(req);
  victim_done(v, result);
}

static void victim_gai_cb(uv_getaddrinfo_t *req, int status,
                          struct addrinfo *res) {
  if (res != NULL)
    uv_freeaddrinfo(res);
  victim_done(req->data, status);
}

static void victim_gni_cb(uv_getnameinfo_t *req, int status,
                          const char *host, const char *service) {
  (void)host;
  (void)service;
  victim_done(req->data, status);
}

static void victim_random_cb(uv_random_t *req, int status, void *buf,
                             size_t len) {
  (void)buf;
  (void)len;
  victim_done(req->data, status);
}

/* If the request is never cancelled, let the pool go: the request then runs
 * and the test fails on its status instead of hanging. */
static void victim_guard_cb(uv_timer_t *t) {
  victim_t *v = t->data;
  v->guard_fired = 1;
  pool_release(&v->pool);
  uv_close((uv_handle_t *)t, NULL);
}

static void victim_submit(victim_t *v, uv_loop_t *loop, int kind) {
  struct sockaddr_in addr;
  v->u.req.data = v;
  switch (kind) {
  case V_WORK:
    ck_assert_int_eq(
        uv_queue_work(loop, &v->u.work, victim_work, victim_after_work), 0);
    break;
  case V_FS:
    ck_assert_int_eq(uv_fs_stat(loop, &v->u.fs, "/", victim_fs_cb), 0);
    break;
  case V_GETADDRINFO:
    ck_assert_int_eq(uv_getaddrinfo(loop, &v->u.gai, victim_gai_cb,
                                    "localhost", NULL, NULL),
                     0);
    break;
  case V_GETNAMEINFO:
    ck_assert_int_eq(uv_ip4_addr("127.0.0.1", 80, &addr), 0);
    ck_assert_int_eq(uv_getnameinfo(loop, &v->u.gni, victim_gni_cb,
                                    (const struct sockaddr *)&addr, 0),
                     0);
    break;
  default:
    ck_assert_int_eq(uv_random(loop, &v->u.rnd, v->random_buf,
                               sizeof v->random_buf, 0, victim_random_cb),
                     0);
  }
}

/* Queues a request of the given kind behind a busy pool, under a context
 * that times out after 10 ms, with cancel_on_done; returns the status its
 * callback saw. */
static int cancel_queued_request(int kind) {
  uv_loop_t loop;
  victim_t *v = calloc(1, sizeof(*v));
  ck_assert_ptr_nonnull(v);
  atomic_init(&v->work_ran, 0);
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  pool_occupy(&v->pool, &loop);
  uvctx_t *ctx = mk_timeout(&loop, uvctx_background(), 10);
  victim_submit(v, &loop, kind);
  ck_assert_int_eq(uvctx_cancel_on_done(ctx, &v->u.req, &v->w), 0);
  ck_assert_int_eq(uv_timer_init(&loop, &v->guard), 0);
  v->guard.data = v;
  ck_assert_int_eq(
      uv_timer_start(&v->guard, victim_guard_cb, EVENTUALLY_MS, 0), 0);
  uv_unref((uv_handle_t *)&v->guard);

  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_msg(!v->guard_fired, "the request was not cancelled");
  ck_assert_int_eq(v->calls, 1);
  ck_assert_int_eq(atomic_load(&v->work_ran), 0);
  ck_assert_int_eq(uvctx_err(ctx), UV_ETIMEDOUT);
  ck_assert_int_eq(uvctx_unwatch(&v->w), UV_EALREADY);
  pool_done(&v->pool);
  int status = v->status;

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
  free(v);
  return status;
}

START_TEST(cancel_on_done_cancels_queued_work_and_its_work_never_runs) {
  ck_assert_int_eq(cancel_queued_request(V_WORK), UV_ECANCELED);
}
END_TEST

START_TEST(cancel_on_done_cancels_a_queued_fs_request) {
  ck_assert_int_eq(cancel_queued_request(V_FS), UV_ECANCELED);
}
END_TEST

/* libuv reports a cancelled getaddrinfo/getnameinfo as UV_EAI_CANCELED. */
START_TEST(cancel_on_done_cancels_a_queued_getaddrinfo_request) {
  ck_assert_int_eq(cancel_queued_request(V_GETADDRINFO), UV_EAI_CANCELED);
}
END_TEST

START_TEST(cancel_on_done_cancels_a_queued_getnameinfo_request) {
  ck_assert_int_eq(cancel_queued_request(V_GETNAMEINFO), UV_EAI_CANCELED);
}
END_TEST

START_TEST(cancel_on_done_cancels_a_queued_random_request) {
  ck_assert_int_eq(cancel_queued_request(V_RANDOM), UV_ECANCELED);
}
END_TEST

/* A request already running when the context is done finishes as usual. */
typedef struct {
  pool_t *pool;
  uvctx_watch_t after;
} running_t;

static void let_the_pool_go(uvctx_watch_t *w, int err) {
  running_t *r = w->data;
  (void)err;
  pool_release(r->pool);
}

START_TEST(cancel_on_done_lets_a_running_request_finish) {
  uv_loop_t loop;
  pool_t pool;
  running_t r;
  uvctx_watch_t w = {0};
  memset(&r, 0, sizeof r);
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  pool_occupy(&pool, &loop);
  r.pool = &pool;
  r.after.data = &r;
  uvctx_t *ctx = mk_cancel(&loop, uvctx_background());
  /* the blockers are running: cancelling one of them does nothing */
  ck_assert_int_eq(
      uvctx_cancel_on_done(ctx, (uv_req_t *)&pool.reqs[0], &w), 0);
  ck_assert_int_eq(uvctx_watch(ctx, &r.after, let_the_pool_go), 0);
  ck_assert_int_eq(uvctx_cancel(ctx), 0);

  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  pool_done(&pool); /* all finished with status 0 */

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* A request that completes first: unwatched in its callback, and freed. */
typedef struct {
  uv_fs_t fs;
  uvctx_watch_t *w;
} done_first_t;

static int done_first_calls;
static int done_first_result;
static int done_first_unwatch_rc;

static void done_first_cb(uv_fs_t *req) {
  done_first_t *d = req->data;
  done_first_calls++;
  done_first_result = (int)req->result;
  done_first_unwatch_rc = uvctx_unwatch(d->w);
  uv_fs_req_cleanup(req);
  free(d); /* valgrind would see uvctx touching it later */
}

START_TEST(cancel_on_done_of_a_request_completed_and_unwatched_does_nothing) {
  uv_loop_t loop;
  uvctx_watch_t w = {0};
  done_first_t *d = calloc(1, sizeof(*d));
  ck_assert_ptr_nonnull(d);
  done_first_calls = 0;
  done_first_unwatch_rc = 12345;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *ctx = mk_cancel(&loop, uvctx_background());
  d->w = &w;
  ck_assert_int_eq(uv_fs_stat(&loop, &d->fs, "/", done_first_cb), 0);
  d->fs.data = d;
  ck_assert_int_eq(uvctx_cancel_on_done(ctx, (uv_req_t *)&d->fs, &w), 0);

  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(done_first_calls, 1);
  ck_assert_int_eq(done_first_result, 0);
  ck_assert_int_eq(done_first_unwatch_rc, 0);
  ck_assert_int_eq(uvctx_cancel(ctx), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(done_first_calls, 1);

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Kept registered (and alive) after completing: uv_cancel of a finished
 * request is harmless and its callback does not run again. */
static void count_fs_cb(uv_fs_t *req) {
  int *calls = req->data;
  (*calls)++;
  uv_fs_req_cleanup(req);
}

START_TEST(cancel_on_done_of_a_completed_but_watched_request_is_harmless) {
  uv_loop_t loop;
  uvctx_watch_t w = {0};
  uv_fs_t fs;
  int calls = 0;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *ctx = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(uv_fs_stat(&loop, &fs, "/", count_fs_cb), 0);
  fs.data = &calls;
  ck_assert_int_eq(uvctx_cancel_on_done(ctx, (uv_req_t *)&fs, &w), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(calls, 1);

  ck_assert_int_eq(uvctx_cancel(ctx), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(calls, 1);
  ck_assert_int_eq(uvctx_unwatch(&w), UV_EALREADY);

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Requests that are never submitted: only their type matters here. */
START_TEST(cancel_on_done_rejects_requests_libuv_cannot_cancel) {
  static const uv_req_type kinds[] = {UV_WRITE, UV_CONNECT, UV_SHUTDOWN,
                                      UV_UDP_SEND, UV_UNKNOWN_REQ};
  uv_loop_t loop;
  union {
    uv_req_t req;
    uv_write_t write;
    uv_connect_t connect;
    uv_shutdown_t shutdown;
    uv_udp_send_t send;
  } u;
  uvctx_watch_t w = {0};
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *ctx = mk_cancel(&loop, uvctx_background());

  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
    memset(&u, 0, sizeof u);
    u.req.type = kinds[i];
    ck_assert_int_eq(uvctx_cancel_on_done(ctx, &u.req, &w), UV_EINVAL);
    ck_assert_int_eq(uvctx_cancel_on_done(uvctx_background(), &u.req, &w),
                     UV_EINVAL);
  }
  ck_assert_int_eq(uvctx_unwatch(&w), UV_EALREADY); /* never registered */

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(cancel_on_done_rejects_null_arguments) {
  uv_loop_t loop;
  uv_fs_t fs;
  uvctx_watch_t w = {0};
  memset(&fs, 0, sizeof fs);
  fs.type = UV_FS;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *ctx = mk_cancel(&loop, uvctx_background());

  ck_assert_int_eq(uvctx_cancel_on_done(NULL, (uv_req_t *)&fs, &w), UV_EINVAL);
  ck_assert_int_eq(uvctx_cancel_on_done(ctx, NULL, &w), UV_EINVAL);
  ck_assert_int_eq(uvctx_cancel_on_done(ctx, (uv_req_t *)&fs, NULL), UV_EINVAL);
  ck_assert_int_eq(uvctx_cancel(ctx), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(cancel_on_done_with_a_pending_watch_is_ebusy_and_unwatch_detaches) {
  uv_loop_t loop;
  uv_fs_t fs1, fs2;
  uvctx_watch_t w = {0};
  memset(&fs1, 0, sizeof fs1);
  memset(&fs2, 0, sizeof fs2);
  fs1.type = UV_FS;
  fs2.type = UV_FS;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *ctx = mk_cancel(&loop, uvctx_background());

  ck_assert_int_eq(uvctx_cancel_on_done(ctx, (uv_req_t *)&fs1, &w), 0);
  ck_assert_int_eq(uvctx_cancel_on_done(ctx, (uv_req_t *)&fs2, &w), UV_EBUSY);
  ck_assert_int_eq(uvctx_unwatch(&w), 0);
  /* unwatched before done: the (never submitted) request is not touched */
  ck_assert_int_eq(uvctx_cancel(ctx), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(cancel_on_done_of_a_context_never_done_succeeds_and_does_nothing) {
  uv_loop_t loop;
  uvctx_watch_t w1 = {0}, w2 = {0};
  uv_fs_t fs;
  int calls = 0;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *p = mk_cancel(&loop, uvctx_background());
  uvctx_t *wo = mk_without(p);
  ck_assert_int_eq(uv_fs_stat(&loop, &fs, "/", count_fs_cb), 0);
  fs.data = &calls;

  ck_assert_int_eq(uvctx_cancel_on_done(uvctx_todo(), (uv_req_t *)&fs, &w1), 0);
  ck_assert_int_eq(uvctx_cancel_on_done(wo, (uv_req_t *)&fs, &w2), 0);
  ck_assert_int_eq(uvctx_cancel(p), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(calls, 1);
  ck_assert_int_eq(uvctx_unwatch(&w1), 0);
  ck_assert_int_eq(uvctx_unwatch(&w2), 0);

  release_all(wo, p);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ------------------------------------------------------------------------- */

Suite *handles_suite(void) {
  return SUITE(
      "handles",
      {"close_on_done", TIMEOUT_LOOP_S, NULL, NULL,
       .tests = TESTS(
           close_on_done_closes_a_silent_tcp_read_at_the_deadline,
           close_on_done_of_a_cancelled_context_fails_a_pending_connect,
           close_on_done_closes_a_handle_that_keeps_the_loop_alive,
           close_on_done_accepts_a_null_close_cb,
           close_on_done_of_a_value_context_closes_with_its_ancestor,
           close_on_done_rejects_a_handle_that_is_already_closing,
           close_on_done_rejects_a_handle_of_another_loop,
           close_on_done_rejects_null_arguments,
           close_on_done_with_a_pending_watch_is_ebusy,
           unwatched_close_on_done_leaves_the_handle_open,
           close_on_done_of_a_context_never_done_succeeds_and_does_nothing),
       .loops = LOOPS(
           {handle_closed_by_the_user_is_not_closed_again, UNWATCHED_IN_CLOSE_CB, ALREADY_CLOSED + 1})},
      {"cancel_on_done", TIMEOUT_THREADS_S, NULL, NULL,
       .tests = TESTS(
           cancel_on_done_cancels_queued_work_and_its_work_never_runs,
           cancel_on_done_cancels_a_queued_fs_request,
           cancel_on_done_cancels_a_queued_getaddrinfo_request,
           cancel_on_done_cancels_a_queued_getnameinfo_request,
           cancel_on_done_cancels_a_queued_random_request,
           cancel_on_done_lets_a_running_request_finish,
           cancel_on_done_of_a_request_completed_and_unwatched_does_nothing,
           cancel_on_done_of_a_completed_but_watched_request_is_harmless,
           cancel_on_done_rejects_requests_libuv_cannot_cancel,
           cancel_on_done_rejects_null_arguments,
           cancel_on_done_with_a_pending_watch_is_ebusy_and_unwatch_detaches,
           cancel_on_done_of_a_context_never_done_succeeds_and_does_nothing)});
}
