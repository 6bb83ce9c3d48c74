/* Deadline contexts: a cancel context with a uv_timer_t of its own.
 *
 * libuv runs timers against its cached loop time, which may lag the uvctx
 * clock (it is taken once per loop iteration, possibly from a coarse clock).
 * A timer armed while the cached time lags fires early by that lag, so the
 * timer callback checks the real clock and re-arms for what is left. */
#include "uvctx-int.h"

static void on_deadline(uv_timer_t *timer) {
  uvctx__deadline_t *d = uvctx__container_of(timer, uvctx__deadline_t, timer);
  uint64_t deadline = atomic_load_explicit(&d->deadline, memory_order_relaxed);
  uint64_t now = uvctx_now();

  if (now < deadline) {
    uv_timer_start(timer, on_deadline, deadline - now, 0);
    return;
  }
  uvctx__cancel(&d->cancel, UV_ETIMEDOUT, d->cause);
}

int uvctx_with_deadline_cause(uv_loop_t *loop, uvctx_t *parent,
                              uint64_t deadline_ms, int cause,
                              uvctx_t **out) {
  uvctx__cancel_t *c;
  uvctx__deadline_t *d;
  uint64_t now;
  int err;

  if (loop == NULL || parent == NULL || out == NULL || cause > 0)
    return UV_EINVAL;
  err = uvctx__new_cancellable(loop, parent, UVCTX__DEADLINE, &c);
  if (err != 0)
    return err;
  d = uvctx__as_deadline(&c->ctx);
  d->cause = cause;
  atomic_store_explicit(&d->deadline, deadline_ms, memory_order_relaxed);

  /* A child of a done parent is born done and needs no timer. */
  if (atomic_load_explicit(&c->ctx.state, memory_order_acquire) == 0) {
    now = uvctx_now();
    if (deadline_ms <= now)
      uvctx__cancel(c, UV_ETIMEDOUT, cause);
    else
      uv_timer_start(&d->timer, on_deadline, deadline_ms - now, 0);
  }
  *out = &c->ctx;
  return 0;
}

int uvctx_with_deadline(uv_loop_t *loop, uvctx_t *parent, uint64_t deadline_ms,
                        uvctx_t **out) {
  return uvctx_with_deadline_cause(loop, parent, deadline_ms, 0, out);
}

int uvctx_with_timeout_cause(uv_loop_t *loop, uvctx_t *parent,
                             uint64_t timeout_ms, int cause, uvctx_t **out) {
  uint64_t now = uvctx_now();
  uint64_t deadline = timeout_ms > UINT64_MAX - now ? UINT64_MAX
                                                    : now + timeout_ms;

  return uvctx_with_deadline_cause(loop, parent, deadline, cause, out);
}

int uvctx_with_timeout(uv_loop_t *loop, uvctx_t *parent, uint64_t timeout_ms,
                       uvctx_t **out) {
  return uvctx_with_timeout_cause(loop, parent, timeout_ms, 0, out);
}

static void on_timer_closed(uv_handle_t *handle) {
  uvctx__free(uvctx__container_of(handle, uvctx__deadline_t, timer));
}

/* Loop thread: closes the timer; the context's memory goes with it. */
void uvctx__timer_close(uvctx__deadline_t *d) {
  uv_close((uv_handle_t *)&d->timer, on_timer_closed);
}
