/* Helpers shared by the test files; see helpers.h. */
#include "helpers.h"

#include <string.h>

uvctx_t *mk_cancel(uv_loop_t *loop, uvctx_t *parent) {
  uvctx_t *c = NULL;
  ck_assert_int_eq(uvctx_with_cancel(loop, parent, &c), 0);
  ck_assert_ptr_nonnull(c);
  return c;
}

uvctx_t *mk_deadline(uv_loop_t *loop, uvctx_t *parent, uint64_t dl) {
  uvctx_t *c = NULL;
  ck_assert_int_eq(uvctx_with_deadline(loop, parent, dl, &c), 0);
  ck_assert_ptr_nonnull(c);
  return c;
}

uvctx_t *mk_timeout(uv_loop_t *loop, uvctx_t *parent, uint64_t ms) {
  uvctx_t *c = NULL;
  ck_assert_int_eq(uvctx_with_timeout(loop, parent, ms, &c), 0);
  ck_assert_ptr_nonnull(c);
  return c;
}

uvctx_t *mk_timeout_cause(uv_loop_t *loop, uvctx_t *parent, uint64_t ms,
                          int cause) {
  uvctx_t *c = NULL;
  ck_assert_int_eq(uvctx_with_timeout_cause(loop, parent, ms, cause, &c), 0);
  ck_assert_ptr_nonnull(c);
  return c;
}

uvctx_t *mk_value(uvctx_t *parent, const void *key, void *value) {
  uvctx_t *c = NULL;
  ck_assert_int_eq(uvctx_with_value(parent, key, value, &c), 0);
  ck_assert_ptr_nonnull(c);
  return c;
}

uvctx_t *mk_without(uvctx_t *parent) {
  uvctx_t *c = NULL;
  ck_assert_int_eq(uvctx_without_cancel(parent, &c), 0);
  ck_assert_ptr_nonnull(c);
  return c;
}

typedef struct {
  uv_timer_t t;
  const int *counter;
  int target;
  int ticks;
  int met;
} poll_t;

static void poll_tick(uv_timer_t *t) {
  poll_t *p = t->data;
  if (*p->counter >= p->target)
    p->met = 1;
  if (p->met || ++p->ticks >= 3000)
    uv_close((uv_handle_t *)t, NULL);
}

int run_until(uv_loop_t *loop, const int *counter, int target) {
  poll_t p;
  memset(&p, 0, sizeof p);
  p.counter = counter;
  p.target = target;
  ck_assert_int_eq(uv_timer_init(loop, &p.t), 0);
  p.t.data = &p;
  ck_assert_int_eq(uv_timer_start(&p.t, poll_tick, 1, 1), 0);
  uv_run(loop, UV_RUN_DEFAULT);
  ck_assert(uv_is_closing((uv_handle_t *)&p.t));
  return p.met;
}

static void run_for_done(uv_timer_t *t) { uv_close((uv_handle_t *)t, NULL); }

void run_for(uv_loop_t *loop, uint64_t ms) {
  uv_timer_t t;
  ck_assert_int_eq(uv_timer_init(loop, &t), 0);
  ck_assert_int_eq(uv_timer_start(&t, run_for_done, ms, 0), 0);
  ck_assert_int_eq(uv_run(loop, UV_RUN_DEFAULT), 0);
  ck_assert(uv_is_closing((uv_handle_t *)&t));
}

static void catcher_cb(uv_signal_t *h, int signum) {
  catcher_t *c = h->data;
  (void)signum;
  c->got++;
}

void catcher_start(catcher_t *c, uv_loop_t *loop, int signum) {
  memset(c, 0, sizeof *c);
  ck_assert_int_eq(uv_signal_init(loop, &c->h), 0);
  c->h.data = c;
  ck_assert_int_eq(uv_signal_start(&c->h, catcher_cb, signum), 0);
  uv_unref((uv_handle_t *)&c->h);
}

void catcher_close(catcher_t *c) { uv_close((uv_handle_t *)&c->h, NULL); }

void send_signal(int signum) {
  ck_assert_int_eq(uv_kill(uv_os_getpid(), signum), 0);
}

static void stop_guard_cb(uv_timer_t *t) {
  ((stop_guard_t *)t->data)->fired = 1;
  uv_stop(t->loop);
}

void stop_guard_start(uv_loop_t *loop, stop_guard_t *g, uint64_t ms) {
  g->fired = 0;
  ck_assert_int_eq(uv_timer_init(loop, &g->timer), 0);
  g->timer.data = g;
  ck_assert_int_eq(uv_timer_start(&g->timer, stop_guard_cb, ms, 0), 0);
  uv_unref((uv_handle_t *)&g->timer);
}

void stop_guard_close(stop_guard_t *g) {
  uv_close((uv_handle_t *)&g->timer, NULL);
}

/* How long past limit_ms poll_until lets the loop run before calling it
 * stuck: only reached when something is broken. */
#define POLL_STUCK_MS 1000

typedef struct {
  uv_timer_t timer;
  int (*pred)(void *);
  void *arg;
  uint64_t limit_ms;
} pred_poll_t;

static void pred_poll_cb(uv_timer_t *t) {
  pred_poll_t *p = t->data;
  if (p->pred(p->arg) || uvctx_now() >= p->limit_ms)
    ck_assert_int_eq(uv_timer_stop(t), 0);
}

int poll_until(uv_loop_t *loop, int (*pred)(void *), void *arg,
               uint64_t limit_ms) {
  stop_guard_t guard;
  pred_poll_t p;
  uint64_t now;
  int r;

  p.pred = pred;
  p.arg = arg;
  p.limit_ms = limit_ms;
  ck_assert_int_eq(uv_timer_init(loop, &p.timer), 0);
  p.timer.data = &p;
  ck_assert_int_eq(uv_timer_start(&p.timer, pred_poll_cb, 1, 1), 0);
  now = uvctx_now();
  stop_guard_start(loop, &guard,
                   (limit_ms > now ? limit_ms - now : 0) + POLL_STUCK_MS);
  r = uv_run(loop, UV_RUN_DEFAULT);
  ck_assert_msg(!guard.fired, "the loop stayed alive after polling stopped");
  ck_assert_int_eq(r, 0);
  stop_guard_close(&guard);
  uv_close((uv_handle_t *)&p.timer, NULL);
  ck_assert_int_eq(uv_run(loop, UV_RUN_DEFAULT), 0);
  return pred(arg);
}
