/* Two-phase shutdown: a context (`out`) with a grace timer, optional signal
 * handles, and a cancel child (`stopping`). Phase 1 finishes `stopping` and
 * starts the grace period; phase 2 (the grace period over, or asked again)
 * finishes `out` and so everything below it. */
#include "uvctx-int.h"

int uvctx_with_shutdown(uv_loop_t *loop, uvctx_t *parent, const int *signums,
                        size_t count, uint64_t grace_ms, uvctx_t **stopping,
                        uvctx_t **out) {
  uvctx__shutdown_t *sd;
  uvctx__cancel_t *c;
  uvctx_t *st;
  int err;

  if (loop == NULL || parent == NULL || stopping == NULL || out == NULL)
    return UV_EINVAL;
  err = uvctx__signals_check(signums, count);
  if (err != 0)
    return err;
  err = uvctx__new_cancellable(loop, &parent, 1, UVCTX__SHUTDOWN,
                               sizeof(uvctx__shutdown_t) +
                                   uvctx__signals_size(count),
                               &c);
  if (err != 0)
    return err;
  sd = uvctx__as_shutdown(&c->ctx);
  sd->grace_ms = grace_ms;
  atomic_init(&sd->phase, UVCTX__SHUTDOWN_RUNNING);
  uvctx__signals_start(c, &sd->signals, (uv_signal_t *)(sd + 1), signums,
                       count);
  /* Made before its stopping child, for an observer. */
  uvctx__made(c);
  err = uvctx_with_cancel(loop, &c->ctx, &st);
  if (err != 0) {
    uvctx_release(&c->ctx);
    return err;
  }
  sd->stopping = uvctx__as_cancel(st);
  /* uvctx_shutdown() takes references to it from any thread. */
  st->flags &= (uint8_t)~UVCTX__OWN_REFS;
  *stopping = st;
  *out = &c->ctx;
  return 0;
}

/* Under the tree lock of sd's loop: its stopping child is going away. */
void uvctx__shutdown_forget(uvctx__shutdown_t *sd, uvctx__cancel_t *child) {
  if (sd->stopping == child)
    sd->stopping = NULL;
}

/* Loop thread: the grace period runs from now on, unless sd is done or has
 * nothing left to wait for. */
void uvctx__shutdown_start_grace(uvctx__shutdown_t *sd) {
  if (atomic_load_explicit(&sd->deadline.cancel.ctx.state,
                           memory_order_acquire) != 0)
    return;
  uvctx__timer_arm(&sd->deadline);
  uvctx__shutdown_check_idle(sd);
}

/* Loop thread, no tree lock held: in the grace period, once nothing but the
 * stopping child is left below sd, the shutdown is over early. (Only the
 * loop thread clears `stopping`, so it is read here without the lock.) */
void uvctx__shutdown_check_idle(uvctx__shutdown_t *sd) {
  uvctx__cancel_t *c = &sd->deadline.cancel;
  unsigned int left = atomic_load_explicit(&c->kids, memory_order_acquire);
  int phase = UVCTX__SHUTDOWN_STOPPING;

  if (atomic_load_explicit(&c->ctx.state, memory_order_acquire) != 0 ||
      left > (sd->stopping != NULL ? 1u : 0u) ||
      !atomic_compare_exchange_strong(&sd->phase, &phase,
                                      UVCTX__SHUTDOWN_STOPPED))
    return;
  uvctx__cancel(c, UV_ECANCELED, uvctx__timer_cause(&sd->deadline),
                UVCTX_DONE_SHUTDOWN_IDLE, NULL, 0);
}

static void finish_stopping(uvctx__shutdown_t *sd, int cause) {
  uvctx__cancel_t *c = &sd->deadline.cancel;
  uvctx__cancel_t *st;
  int alive;

  uvctx__tree_lock(c->lp);
  st = sd->stopping;
  alive = st != NULL && uvctx__try_retain(&st->ctx);
  uvctx__tree_unlock(c->lp);
  if (alive) {
    uvctx__cancel(st, UV_ECANCELED, cause, UVCTX_DONE_SHUTDOWN_BEGAN, NULL,
                  0);
    uvctx_release(&st->ctx);
  }
}

/* Phase 1: the cause and the end of the grace period are written before the
 * phase says "stopping", so whoever ends the shutdown next (a second call,
 * the early end, the timer) finds them. */
static void begin(uvctx__shutdown_t *sd, int cause) {
  uvctx__cancel_t *c = &sd->deadline.cancel;

  uvctx__set_timer_cause(&sd->deadline, cause);
  uvctx__timer_set(&sd->deadline,
                   uvctx__deadline_after(uvctx_now(), sd->grace_ms));
  atomic_store_explicit(&sd->phase, UVCTX__SHUTDOWN_STOPPING,
                        memory_order_release);
  finish_stopping(sd, cause);
  if (uvctx__on_loop_thread(c->lp))
    uvctx__shutdown_start_grace(sd);
  else /* the timer is the loop's to start; phase 1 is reached once */
    uvctx__mailbox_post(c->lp, uvctx__as_cancel(uvctx_retain(&c->ctx)),
                        UVCTX__MB_SHUTDOWN);
}

/* Any thread: moves the shutdown on one phase. Another call may be in the
 * middle of a phase change; it has only a few steps to go, so this one waits
 * for it rather than answer for a phase that is not settled. */
static int advance(uvctx__shutdown_t *sd, int cause) {
  uvctx__cancel_t *c = &sd->deadline.cancel;
  int phase;

  for (;;) {
    if (atomic_load_explicit(&c->ctx.state, memory_order_acquire) != 0)
      return UV_EALREADY;
    phase = atomic_load_explicit(&sd->phase, memory_order_acquire);
    switch (phase) {
    case UVCTX__SHUTDOWN_RUNNING:
      if (atomic_compare_exchange_strong(&sd->phase, &phase,
                                         UVCTX__SHUTDOWN_BEGINNING)) {
        begin(sd, cause);
        return 0;
      }
      break;
    case UVCTX__SHUTDOWN_STOPPING:
      if (atomic_compare_exchange_strong(&sd->phase, &phase,
                                         UVCTX__SHUTDOWN_STOPPED))
        return uvctx__cancel(c, UV_ECANCELED, cause,
                             UVCTX_DONE_SHUTDOWN_AGAIN, NULL, 0);
      break;
    default: /* beginning, or being finished by another call */
      sched_yield();
      break;
    }
  }
}

void uvctx__shutdown_on_signal(uvctx__shutdown_t *sd, int signum) {
  (void)signum;
  advance(sd, 0);
}

int uvctx_shutdown(uvctx_t *ctx, int cause) {
  if (ctx == NULL || ctx->kind != UVCTX__SHUTDOWN || cause > 0)
    return UV_EINVAL;
  return advance(uvctx__as_shutdown(ctx), cause);
}
