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
 * (the request runs), never hang.
 *
 * Every test runs on the fixture's loop, with its cancel context ctx and a
 * zeroed watch w to use as it likes; the edge cases on a timer also get th. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

static int key_a;
static uvctx_t *ctx;
static uvctx_watch_t w;

static void ctx_setup(void) {
  loop_setup();
  ctx = mk_cancel(&loop, uvctx_background());
  memset(&w, 0, sizeof w);
}

/* ck_assert_int_eq for table tests: the message names the row. */
#define ROW_EQ(row, x, y)                                                      \
  do {                                                                         \
    long x_ = (x), y_ = (y);                                                   \
    ck_assert_msg(x_ == y_, "row %s: %s is %ld, not %ld", (row), #x, x_, y_);  \
  } while (0)

/* What a close callback saw. */
typedef struct {
  int calls;
  int closing_inside; /* uv_is_closing() inside the callback */
  uint64_t now;
} closed_t;

static void closed_record(closed_t *c, uv_handle_t *h) {
  c->calls++;
  c->closing_inside = uv_is_closing(h);
  c->now = uvctx_now();
}

/* A timer handle with its close record, for the edge cases. handle->data
 * points to the th_t. */
typedef struct {
  uv_timer_t timer;
  closed_t closed;
  uvctx_watch_t w;
  int unwatch_rc; /* of uvctx_unwatch(&w) in on_closed_unwatch */
} th_t;

static uv_handle_t *th_init(th_t *t, uv_loop_t *l) {
  memset(t, 0, sizeof(*t));
  ck_assert_int_eq(uv_timer_init(l, &t->timer), 0);
  t->timer.data = t;
  return (uv_handle_t *)&t->timer;
}

/* The fixture of the edge cases on a timer: ctx_setup, and th, whose handle
 * is handle. */
static th_t th;
static uv_handle_t *handle;

static void timer_setup(void) {
  ctx_setup();
  handle = th_init(&th, &loop);
}

static void on_closed(uv_handle_t *h) {
  closed_record(&((th_t *)h->data)->closed, h);
}

/* The documented way for a user who closes the handle first. */
static void on_closed_unwatch(uv_handle_t *h) {
  th_t *t = h->data;
  on_closed(h);
  t->unwatch_rc = uvctx_unwatch(&t->w);
}

static void never_closed_cb(uv_handle_t *h) {
  (void)h;
  ck_abort_msg("uvctx closed a handle the user had closed");
}

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
 * gets data. */
typedef struct {
  uv_tcp_t server;
  int connections;
  uv_tcp_t client;
  closed_t client_closed; /* by the close_cb given to uvctx */
  uv_connect_t connect;
  int connect_calls;
  int connect_status;
  int read_calls;
  uvctx_watch_t w;
  uvctx_t *read_ctx; /* made once connected, if arm_on_connect */
  uint64_t read_deadline;
  int arm_on_connect;
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
  closed_record(&t->client_closed, h);
  uv_close((uv_handle_t *)&t->server, NULL);
}

static void on_connect(uv_connect_t *req, int status) {
  tcp_t *t = req->data;
  t->connect_calls++;
  t->connect_status = status;
  if (status != 0)
    return;
  ck_assert_int_eq(
      uv_read_start((uv_stream_t *)&t->client, on_alloc, on_read), 0);
  if (t->arm_on_connect) { /* the read gets 30 ms, then the client is closed */
    t->read_ctx = mk_timeout(&loop, uvctx_background(), 30);
    t->read_deadline = deadline_of(t->read_ctx);
    ck_assert_int_eq(uvctx_close_on_done(t->read_ctx, (uv_handle_t *)&t->client,
                                         &t->w, on_client_closed),
                     0);
  }
}

/* Listens, connects (the connection is pending when this returns). A test
 * runs the loop under a stop guard: a close that never comes fails it, and
 * does not hang. */
static void tcp_start(tcp_t *t) {
  struct sockaddr_in addr;
  struct sockaddr_storage bound;
  int len = sizeof bound;
  memset(t, 0, sizeof(*t));
  ck_assert_int_eq(uv_ip4_addr("127.0.0.1", 0, &addr), 0);
  ck_assert_int_eq(uv_tcp_init(&loop, &t->server), 0);
  t->server.data = t;
  ck_assert_int_eq(
      uv_tcp_bind(&t->server, (const struct sockaddr *)&addr, 0), 0);
  ck_assert_int_eq(uv_listen((uv_stream_t *)&t->server, 1, on_connection), 0);
  ck_assert_int_eq(
      uv_tcp_getsockname(&t->server, (struct sockaddr *)&bound, &len), 0);

  ck_assert_int_eq(uv_tcp_init(&loop, &t->client), 0);
  t->client.data = t;
  t->connect.data = t;
  ck_assert_int_eq(uv_tcp_connect(&t->connect, &t->client,
                                  (const struct sockaddr *)&bound, on_connect),
                   0);
}

START_TEST(close_on_done_closes_a_silent_tcp_read_at_the_deadline) {
  tcp_t t;
  stop_guard_t g;
  tcp_start(&t);
  t.arm_on_connect = 1;

  stop_guard_start(&loop, &g, EVENTUALLY_MS);
  ck_assert_msg(uv_run(&loop, UV_RUN_DEFAULT) == 0 && !g.fired,
                "the client was not closed at the deadline");
  stop_guard_close(&g);
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

  release_all(t.read_ctx, ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(close_on_done_of_a_cancelled_context_fails_a_pending_connect) {
  tcp_t t;
  stop_guard_t g;
  tcp_start(&t);
  ck_assert_int_eq(uvctx_cancel(ctx), 0);
  ck_assert_int_eq(uvctx_close_on_done(ctx, (uv_handle_t *)&t.client, &t.w,
                                       on_client_closed),
                   0);
  ck_assert_int_eq(uv_is_closing((uv_handle_t *)&t.client), 0); /* not yet */

  stop_guard_start(&loop, &g, EVENTUALLY_MS);
  ck_assert(uv_run(&loop, UV_RUN_DEFAULT) == 0 && !g.fired);
  stop_guard_close(&g);
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
  ck_assert_int_eq(uv_timer_start(&th.timer, never_cb, 60000, 0), 0);
  uvctx_t *timeout = mk_timeout(&loop, ctx, 10);
  uint64_t deadline = deadline_of(timeout);
  ck_assert_int_eq(uvctx_close_on_done(timeout, handle, &th.w, on_closed), 0);

  /* Only the timer keeps the loop alive; the context ends it. */
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(th.closed.calls, 1);
  ck_assert_uint_ge(th.closed.now, deadline);

  release_all(timeout, ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(close_on_done_accepts_a_null_close_cb) {
  ck_assert_int_eq(uvctx_close_on_done(ctx, handle, &th.w, NULL), 0);
  ck_assert_int_eq(uvctx_cancel(ctx), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(uv_is_closing(handle), 1);

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(close_on_done_of_a_value_context_closes_with_its_ancestor) {
  uvctx_t *v = mk_value(ctx, &key_a, NULL);
  ck_assert_int_eq(uvctx_close_on_done(v, handle, &th.w, on_closed), 0);
  uvctx_release(v); /* the pending watch keeps it alive */

  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(th.closed.calls, 0);
  ck_assert_int_eq(uvctx_cancel(ctx), 0);
  ck_assert_int_eq(uv_is_closing(handle), 0); /* not inside cancel */
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(th.closed.calls, 1);

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

static void plain_watch_cb(uvctx_watch_t *pw, int err) {
  (void)pw;
  (void)err;
}

/* Calls close_on_done must reject, leaving the handle open and its watch
 * unregistered, whatever the context does next. */
enum {
  R_CLOSING,     /* the handle is already closing */
  R_OTHER_LOOP,  /* the handle is of another loop (ctx, and a value child) */
  R_NULL_CTX,
  R_NULL_HANDLE,
  R_NULL_WATCH,
  R_BUSY_CLOSE,  /* the watch is pending, in another close_on_done */
  R_BUSY_WATCH,  /* the watch is pending, in uvctx_watch */
  NREJECTED
};
static const char *const rejected_names[] = {
    "closing", "other loop", "NULL ctx", "NULL handle", "NULL watch",
    "busy in close_on_done", "busy in uvctx_watch"};

START_TEST(close_on_done_rejects_a_call_and_leaves_the_handle_alone) {
  const char *row = rejected_names[_i];
  uv_loop_t other;
  th_t t, busy;
  uvctx_t *v = NULL;
  uvctx_watch_t *tw = &t.w;
  int rc = UV_EINVAL;
  ck_assert_int_eq(uv_loop_init(&other), 0);
  uv_handle_t *h = th_init(&t, _i == R_OTHER_LOOP ? &other : &loop);
  uv_handle_t *b = th_init(&busy, &loop);
  if (_i == R_CLOSING)
    uv_close(h, on_closed);
  if (_i == R_BUSY_CLOSE || _i == R_BUSY_WATCH) {
    tw = &busy.w;
    rc = UV_EBUSY;
    ck_assert_int_eq(_i == R_BUSY_CLOSE
                         ? uvctx_close_on_done(ctx, b, tw, on_closed)
                         : uvctx_watch(ctx, tw, plain_watch_cb),
                     0);
  }
  if (_i == R_OTHER_LOOP) {
    v = mk_value(ctx, &key_a, NULL);
    ROW_EQ(row, uvctx_close_on_done(v, h, tw, on_closed), UV_EINVAL);
  }

  ROW_EQ(row,
         uvctx_close_on_done(_i == R_NULL_CTX ? NULL : ctx,
                             _i == R_NULL_HANDLE ? NULL : h,
                             _i == R_NULL_WATCH ? NULL : tw, on_closed),
         rc);
  ck_assert_int_eq(uvctx_cancel(ctx), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(uv_run(&other, UV_RUN_NOWAIT), 0);
  /* only the user's own close, once */
  ROW_EQ(row, t.closed.calls, _i == R_CLOSING);
  ROW_EQ(row, uv_is_closing(h), _i == R_CLOSING);
  ROW_EQ(row, uvctx_unwatch(&t.w), UV_EALREADY); /* never registered */
  ROW_EQ(row, busy.closed.calls, _i == R_BUSY_CLOSE);

  if (_i != R_CLOSING)
    uv_close(h, NULL);
  if (_i != R_BUSY_CLOSE)
    uv_close(b, NULL);
  release_all(v, ctx);
  ASSERT_LOOP_CLOSES(&loop);
  ASSERT_LOOP_CLOSES(&other);
}
END_TEST

START_TEST(unwatched_close_on_done_leaves_the_handle_open) {
  ck_assert_int_eq(uvctx_close_on_done(ctx, handle, &th.w, on_closed), 0);

  ck_assert_int_eq(uvctx_unwatch(&th.w), 0);
  ck_assert_int_eq(uvctx_cancel(ctx), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_NOWAIT), 0);
  ck_assert_int_eq(uv_is_closing(handle), 0);
  ck_assert_int_eq(th.closed.calls, 0);
  /* still a working handle */
  ck_assert_int_eq(uv_timer_start(&th.timer, never_cb, 60000, 0), 0);

  uv_close(handle, on_closed); /* ours to close */
  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
  ck_assert_int_eq(th.closed.calls, 1);
}
END_TEST

/* A handle the user closed is never closed again by uvctx, however the close
 * and the context's end meet: closed and unwatched in its close callback (the
 * documented way) before the context is done; still closing when it is done
 * (uvctx's watch runs then); closed completely before it is done (its memory
 * stays valid: the watch is pending). */
enum { UNWATCHED_IN_CLOSE_CB, STILL_CLOSING, ALREADY_CLOSED };

START_TEST(handle_closed_by_the_user_is_not_closed_again) {
  ck_assert_int_eq(uvctx_close_on_done(ctx, handle, &th.w, never_closed_cb), 0);

  uv_close(handle, _i == UNWATCHED_IN_CLOSE_CB ? on_closed_unwatch : on_closed);
  if (_i != STILL_CLOSING) {
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(th.closed.calls, 1);
  }
  ck_assert_int_eq(uvctx_cancel(ctx), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(th.closed.calls, 1);
  if (_i == UNWATCHED_IN_CLOSE_CB)
    ck_assert_int_eq(th.unwatch_rc, 0);
  else
    ck_assert_int_eq(uvctx_unwatch(&th.w), UV_EALREADY); /* it ran */

  uvctx_release(ctx);
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
static void pool_occupy(pool_t *p) {
  memset(p, 0, sizeof(*p));
  p->n = pool_size();
  tally_init(&p->started);
  ck_assert_int_eq(uv_sem_init(&p->go, 0), 0);
  p->reqs = calloc(p->n, sizeof(*p->reqs));
  ck_assert_ptr_nonnull(p->reqs);
  for (unsigned int i = 0; i < p->n; i++) {
    p->reqs[i].data = p;
    ck_assert_int_eq(
        uv_queue_work(&loop, &p->reqs[i], blocker_work, blocker_after), 0);
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

/* libuv reports a cancelled getaddrinfo/getnameinfo as UV_EAI_CANCELED. */
static const struct {
  const char *name;
  int kind;
  int status;
} victims[] = {
    {"work, whose work never runs", V_WORK, UV_ECANCELED},
    {"fs", V_FS, UV_ECANCELED},
    {"getaddrinfo", V_GETADDRINFO, UV_EAI_CANCELED},
    {"getnameinfo", V_GETNAMEINFO, UV_EAI_CANCELED},
    {"random", V_RANDOM, UV_ECANCELED},
};
#define NVICTIMS (int)(sizeof victims / sizeof victims[0])

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
  atomic_int work_ran;
  int calls;
  int status;
} victim_t;

static void victim_done(victim_t *v, int status) {
  v->calls++;
  v->status = status;
  pool_release(&v->pool);
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

static void victim_submit(victim_t *v, int kind) {
  struct sockaddr_in addr;
  v->u.req.data = v;
  switch (kind) {
  case V_WORK:
    ck_assert_int_eq(
        uv_queue_work(&loop, &v->u.work, victim_work, victim_after_work), 0);
    break;
  case V_FS:
    ck_assert_int_eq(uv_fs_stat(&loop, &v->u.fs, "/", victim_fs_cb), 0);
    break;
  case V_GETADDRINFO:
    ck_assert_int_eq(uv_getaddrinfo(&loop, &v->u.gai, victim_gai_cb,
                                    "localhost", NULL, NULL),
                     0);
    break;
  case V_GETNAMEINFO:
    ck_assert_int_eq(uv_ip4_addr("127.0.0.1", 80, &addr), 0);
    ck_assert_int_eq(uv_getnameinfo(&loop, &v->u.gni, victim_gni_cb,
                                    (const struct sockaddr *)&addr, 0),
                     0);
    break;
  default:
    ck_assert_int_eq(uv_random(&loop, &v->u.rnd, v->random_buf,
                               sizeof v->random_buf, 0, victim_random_cb),
                     0);
  }
}

/* A request queued behind the busy pool, under a context that times out
 * after 10 ms: cancelled, with the status its kind reports. If it is never
 * cancelled, the stop guard ends the wait and the pool is let go: the test
 * then fails instead of hanging. */
START_TEST(cancel_on_done_cancels_a_queued_request) {
  const char *row = victims[_i].name;
  stop_guard_t g;
  victim_t *v = calloc(1, sizeof(*v));
  ck_assert_ptr_nonnull(v);
  atomic_init(&v->work_ran, 0);
  pool_occupy(&v->pool);
  uvctx_t *timeout = mk_timeout(&loop, ctx, 10);
  victim_submit(v, victims[_i].kind);
  ck_assert_int_eq(uvctx_cancel_on_done(timeout, &v->u.req, &w), 0);

  stop_guard_start(&loop, &g, EVENTUALLY_MS);
  int alive = uv_run(&loop, UV_RUN_DEFAULT);
  if (g.fired)
    pool_release(&v->pool);
  ck_assert_msg(alive == 0 && !g.fired, "row %s: the request was not cancelled",
                row);
  stop_guard_close(&g);
  ROW_EQ(row, v->calls, 1);
  ROW_EQ(row, v->status, victims[_i].status);
  ROW_EQ(row, atomic_load(&v->work_ran), 0);
  ROW_EQ(row, uvctx_err(timeout), UV_ETIMEDOUT);
  ROW_EQ(row, uvctx_unwatch(&w), UV_EALREADY);
  pool_done(&v->pool);

  release_all(timeout, ctx);
  ASSERT_LOOP_CLOSES(&loop);
  free(v);
}
END_TEST

/* A request already running when the context is done finishes as usual. */
static void let_the_pool_go(uvctx_watch_t *after, int err) {
  (void)err;
  pool_release(after->data);
}

START_TEST(cancel_on_done_lets_a_running_request_finish) {
  pool_t pool;
  uvctx_watch_t after = {.data = &pool};
  pool_occupy(&pool);
  /* the blockers are running: cancelling one of them does nothing */
  ck_assert_int_eq(uvctx_cancel_on_done(ctx, (uv_req_t *)&pool.reqs[0], &w),
                   0);
  ck_assert_int_eq(uvctx_watch(ctx, &after, let_the_pool_go), 0);
  ck_assert_int_eq(uvctx_cancel(ctx), 0);

  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  pool_done(&pool); /* all finished with status 0 */

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* A request that completes before ctx is done: unwatched and freed in its
 * callback (row UNWATCHED_AND_FREED), or kept registered and alive (then
 * uv_cancel of a finished request is harmless). Either way its callback does
 * not run again. fs->data says whether to unwatch and free. */
enum { UNWATCHED_AND_FREED, KEPT_WATCHED };
static int fs_calls, fs_result, fs_unwatch_rc;

static void fs_cb(uv_fs_t *req) {
  fs_calls++;
  fs_result = (int)req->result;
  uv_fs_req_cleanup(req);
  if (req->data != NULL) {
    fs_unwatch_rc = uvctx_unwatch(&w);
    free(req); /* valgrind would see uvctx touching it later */
  }
}

START_TEST(cancel_on_done_of_a_completed_request_does_nothing) {
  uv_fs_t *fs = calloc(1, sizeof(*fs));
  ck_assert_ptr_nonnull(fs);
  fs_calls = 0;
  fs_unwatch_rc = 12345;
  ck_assert_int_eq(uv_fs_stat(&loop, fs, "/", fs_cb), 0);
  fs->data = _i == UNWATCHED_AND_FREED ? fs : NULL;
  ck_assert_int_eq(uvctx_cancel_on_done(ctx, (uv_req_t *)fs, &w), 0);

  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(fs_calls, 1);
  ck_assert_int_eq(fs_result, 0);
  if (_i == UNWATCHED_AND_FREED)
    ck_assert_int_eq(fs_unwatch_rc, 0);
  ck_assert_int_eq(uvctx_cancel(ctx), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(fs_calls, 1);
  if (_i == KEPT_WATCHED) {
    ck_assert_int_eq(uvctx_unwatch(&w), UV_EALREADY);
    free(fs);
  }

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Requests that are never submitted: only their type matters here. A
 * rejected or unwatched request is never touched when ctx is done. */
START_TEST(cancel_on_done_rejects_kinds_libuv_cannot_cancel_null_and_busy) {
  static const uv_req_type kinds[] = {UV_WRITE, UV_CONNECT, UV_SHUTDOWN,
                                      UV_UDP_SEND, UV_UNKNOWN_REQ};
  union {
    uv_req_t req;
    uv_write_t write;
    uv_connect_t connect;
    uv_shutdown_t shutdown;
    uv_udp_send_t send;
  } u;
  uv_fs_t fs1 = {.type = UV_FS}, fs2 = {.type = UV_FS};

  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
    memset(&u, 0, sizeof u);
    u.req.type = kinds[i];
    ck_assert_int_eq(uvctx_cancel_on_done(ctx, &u.req, &w), UV_EINVAL);
    ck_assert_int_eq(uvctx_cancel_on_done(uvctx_background(), &u.req, &w),
                     UV_EINVAL);
  }
  ck_assert_int_eq(uvctx_unwatch(&w), UV_EALREADY); /* never registered */
  ck_assert_int_eq(uvctx_cancel_on_done(NULL, (uv_req_t *)&fs1, &w), UV_EINVAL);
  ck_assert_int_eq(uvctx_cancel_on_done(ctx, NULL, &w), UV_EINVAL);
  ck_assert_int_eq(uvctx_cancel_on_done(ctx, (uv_req_t *)&fs1, NULL),
                   UV_EINVAL);
  ck_assert_int_eq(uvctx_cancel_on_done(ctx, (uv_req_t *)&fs1, &w), 0);
  ck_assert_int_eq(uvctx_cancel_on_done(ctx, (uv_req_t *)&fs2, &w), UV_EBUSY);
  ck_assert_int_eq(uvctx_unwatch(&w), 0);
  ck_assert_int_eq(uvctx_cancel(ctx), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Both, on contexts that can never be done (ctx, of which some are made, is
 * cancelled): they succeed and never act.
 * ------------------------------------------------------------------------- */

static const char *const never_names[NUNCANCELLABLE] = {
    [U_BACKGROUND] = "background", [U_TODO] = "todo",
    [U_VALUE_OF_ROOT] = "value of a root", [U_WITHOUT] = "without-cancel",
    [U_VALUE_OF_WITHOUT] = "value of a without-cancel"};

START_TEST(close_and_cancel_on_done_of_a_context_never_done_do_nothing) {
  const char *row = never_names[_i];
  uvctx_t *made[2];
  uvctx_t *never = mk_uncancellable(_i, ctx, made);
  uv_fs_t fs;
  fs_calls = 0;
  ck_assert_int_eq(uv_fs_stat(&loop, &fs, "/", fs_cb), 0);
  fs.data = NULL;

  ROW_EQ(row, uvctx_close_on_done(never, handle, &th.w, on_closed), 0);
  ROW_EQ(row, uvctx_cancel_on_done(never, (uv_req_t *)&fs, &w), 0);
  ck_assert_int_eq(uvctx_cancel(ctx), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ROW_EQ(row, uv_is_closing(handle), 0);
  ROW_EQ(row, fs_calls, 1);
  ROW_EQ(row, uvctx_unwatch(&th.w), 0);
  ROW_EQ(row, uvctx_unwatch(&w), 0);

  uv_close(handle, NULL);
  release_all(made[1], made[0], ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ------------------------------------------------------------------------- */

Suite *handles_suite(void) {
  return SUITE(
      "handles",
      {"close_on_done", TIMEOUT_LOOP_S, ctx_setup, NULL,
       .tests = TESTS(
           close_on_done_closes_a_silent_tcp_read_at_the_deadline,
           close_on_done_of_a_cancelled_context_fails_a_pending_connect),
       .loops = LOOPS({close_on_done_rejects_a_call_and_leaves_the_handle_alone,
                       0, NREJECTED})},
      {"close_on_done_timer", TIMEOUT_LOOP_S, timer_setup, NULL,
       .tests = TESTS(
           close_on_done_closes_a_handle_that_keeps_the_loop_alive,
           close_on_done_accepts_a_null_close_cb,
           close_on_done_of_a_value_context_closes_with_its_ancestor,
           unwatched_close_on_done_leaves_the_handle_open),
       .loops = LOOPS(
           {handle_closed_by_the_user_is_not_closed_again,
            UNWATCHED_IN_CLOSE_CB, ALREADY_CLOSED + 1},
           /* U_VALUE_OF_CANCEL is done with ctx: left out */
           {close_and_cancel_on_done_of_a_context_never_done_do_nothing,
            U_BACKGROUND, U_VALUE_OF_CANCEL},
           {close_and_cancel_on_done_of_a_context_never_done_do_nothing,
            U_VALUE_OF_ROOT, NUNCANCELLABLE})},
      {"cancel_on_done", TIMEOUT_THREADS_S, ctx_setup, NULL,
       .tests = TESTS(
           cancel_on_done_lets_a_running_request_finish,
           cancel_on_done_rejects_kinds_libuv_cannot_cancel_null_and_busy),
       .loops = LOOPS({cancel_on_done_cancels_a_queued_request, 0, NVICTIMS},
                      {cancel_on_done_of_a_completed_request_does_nothing,
                       UNWATCHED_AND_FREED, KEPT_WATCHED + 1})});
}
