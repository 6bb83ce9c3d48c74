/* Deadline contexts: a cancel context with a uv_timer_t of its own; also
 * idle timeouts (uvctx_reset_timeout) and uvctx_keepalive.
 *
 * libuv runs timers against its cached loop time, which may lag the uvctx
 * clock (it is taken once per loop iteration, possibly from a coarse clock).
 * A timer armed while the cached time lags fires early by that lag, so the
 * timer callback checks the real clock and re-arms for what is left. */
#include "uvctx-int.h"

/* The reason a timer gives: a shutdown context's timer is its grace period. */
static int timer_reason(const uvctx__deadline_t *d) {
  return d->cancel.ctx.kind == UVCTX__SHUTDOWN ? UVCTX_DONE_SHUTDOWN_GRACE
                                               : UVCTX_DONE_DEADLINE;
}

static void on_deadline(uv_timer_t *timer) {
  uvctx__deadline_t *d = uvctx__container_of(timer, uvctx__deadline_t, timer);
  uint64_t deadline = atomic_load_explicit(&d->deadline, memory_order_relaxed);
  uint64_t ns = uv_hrtime();
  uint64_t now = ns / 1000000;
  uvctx__counts_t *st = &d->cancel.lp->stats;

  if (now < deadline) {
    uv_timer_start(timer, on_deadline, deadline - now, 0);
    return;
  }
  /* The clock is read here anyway: the lag from the deadline to now. */
  uvctx__note_lag(st->deadline_lag, &st->deadline_lag_sum_ns,
                  ns - deadline * 1000000);
  uvctx__cancel(&d->cancel, UV_ETIMEDOUT, uvctx__timer_cause(d),
                timer_reason(d), NULL, ns);
}

/* Loop thread: (re)starts the timer for d's deadline, or finishes d now if
 * the deadline has come. */
static void arm_at(uvctx__deadline_t *d, uint64_t now) {
  uint64_t deadline = atomic_load_explicit(&d->deadline, memory_order_relaxed);

  if (deadline <= now)
    uvctx__cancel(&d->cancel, UV_ETIMEDOUT, uvctx__timer_cause(d),
                  timer_reason(d), NULL, now * 1000000);
  else
    uv_timer_start(&d->timer, on_deadline, deadline - now, 0);
}

void uvctx__timer_arm(uvctx__deadline_t *d) { arm_at(d, uvctx_now()); }

/* Any thread: d's deadline, as uvctx_deadline() will report it (for a
 * shutdown context, once its phase is published). */
void uvctx__timer_set(uvctx__deadline_t *d, uint64_t deadline_ms) {
  atomic_store_explicit(&d->deadline, deadline_ms, memory_order_relaxed);
}

/* now + timeout_ms, saturating: a timeout too large never comes. */
uint64_t uvctx__deadline_after(uint64_t now, uint64_t timeout_ms) {
  return timeout_ms > UINT64_MAX - now ? UINT64_MAX : now + timeout_ms;
}

/* The clock is read once per constructor: reading it is a good part of the
 * cost of a short-lived deadline context. So the caller passes `now`, the
 * uvctx_now() it read (uvctx_with_grpc_timeout reads uv_hrtime() itself). */
int uvctx__new_deadline(uv_loop_t *loop, uvctx_t *parent, uint64_t deadline_ms,
                        int cause, uint64_t now, uvctx_t **out) {
  uvctx__cancel_t *c;
  uvctx__deadline_t *d;
  int err;

  if (loop == NULL || parent == NULL || out == NULL || cause > 0)
    return UV_EINVAL;
  err = uvctx__new_cancellable(loop, &parent, 1, UVCTX__DEADLINE,
                               sizeof(uvctx__deadline_t), &c);
  if (err != 0)
    return err;
  d = uvctx__as_deadline(&c->ctx);
  uvctx__set_timer_cause(d, cause);
  uvctx__timer_set(d, deadline_ms);
  uvctx__made(c);
  /* A child of a done parent is born done and needs no timer. */
  if (atomic_load_explicit(&c->ctx.state, memory_order_acquire) == 0)
    arm_at(d, now);
  *out = &c->ctx;
  return 0;
}

int uvctx_with_deadline_cause(uv_loop_t *loop, uvctx_t *parent,
                              uint64_t deadline_ms, int cause,
                              uvctx_t **out) {
  return uvctx__new_deadline(loop, parent, deadline_ms, cause, uvctx_now(),
                             out);
}

int uvctx_with_deadline(uv_loop_t *loop, uvctx_t *parent, uint64_t deadline_ms,
                        uvctx_t **out) {
  return uvctx_with_deadline_cause(loop, parent, deadline_ms, 0, out);
}

int uvctx_with_timeout_cause(uv_loop_t *loop, uvctx_t *parent,
                             uint64_t timeout_ms, int cause, uvctx_t **out) {
  uint64_t now = uvctx_now();

  return uvctx__new_deadline(loop, parent,
                             uvctx__deadline_after(now, timeout_ms), cause,
                             now, out);
}

int uvctx_with_timeout(uv_loop_t *loop, uvctx_t *parent, uint64_t timeout_ms,
                       uvctx_t **out) {
  return uvctx_with_timeout_cause(loop, parent, timeout_ms, 0, out);
}

int uvctx_reset_timeout(uvctx_t *ctx, uint64_t timeout_ms) {
  uvctx__deadline_t *d;
  uint64_t now;

  if (ctx == NULL || ctx->kind != UVCTX__DEADLINE)
    return UV_EINVAL;
  d = uvctx__as_deadline(ctx);
  uvctx__catch_up(d->cancel.lp);
  if (atomic_load_explicit(&ctx->state, memory_order_acquire) != 0)
    return UV_EALREADY;
  now = uvctx_now();
  uvctx__timer_set(d, uvctx__deadline_after(now, timeout_ms));
  arm_at(d, now);
  return 0;
}

int uvctx_keepalive(uvctx_t *ctx, int on) {
  uv_handle_t *timer;

  if (ctx == NULL || !uvctx__has_timer(ctx))
    return UV_EINVAL;
  timer = (uv_handle_t *)&uvctx__as_deadline(ctx)->timer;
  if (on)
    uv_ref(timer);
  else
    uv_unref(timer);
  return 0;
}
