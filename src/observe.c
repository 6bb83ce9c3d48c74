/* Observability on the loop: the counters of uvctx_loop_stats() and the
 * events of uvctx_observe(). Everything here runs on the loop thread and
 * touches only its loop's state, so the counters are plain integers. */
#include <string.h>

#include "uvctx-int.h"

static const uint64_t lag_bounds_us[UVCTX_LAG_BUCKETS - 1] =
    UVCTX_LAG_BOUNDS_US;

int uvctx__public_kind(const uvctx_t *ctx) {
  return ctx->kind - UVCTX__CANCEL; /* the same order */
}

void uvctx__note_lag(uint64_t *buckets, uint64_t *sum, uint64_t lag_ns) {
  int i = 0;

  while (i < UVCTX_LAG_BUCKETS - 1 && lag_ns > lag_bounds_us[i] * 1000)
    i++;
  buckets[i]++;
  *sum += lag_ns;
}

void uvctx__note_done(uvctx__cancel_t *c) {
  uvctx_stats_t *st = &c->lp->stats;
  uint64_t state = atomic_load_explicit(&c->ctx.state, memory_order_relaxed);

  st->finished++;
  st->finished_by_reason[uvctx__reason_of(state)]++;
  st->finished_via[uvctx__via_of(state)]++;
  uvctx__emit(c->lp, UVCTX_EVENT_DONE, &c->ctx);
}

/* A constructor's last step. A context born done was delivered at birth. */
void uvctx__made(uvctx__cancel_t *c) {
  uvctx_stats_t *st = &c->lp->stats;

  st->live[uvctx__public_kind(&c->ctx)]++;
  st->created++;
  uvctx__emit(c->lp, UVCTX_EVENT_MADE, &c->ctx);
  if (c->ctx.flags & UVCTX__DELIVERED)
    uvctx__note_done(c);
}

void uvctx__note_released(uvctx__cancel_t *c) {
  uvctx_stats_t *st = &c->lp->stats;

  st->live[uvctx__public_kind(&c->ctx)]--;
  st->released++;
  uvctx__emit(c->lp, UVCTX_EVENT_RELEASED, &c->ctx);
}

int uvctx_loop_stats(const uv_loop_t *loop, uvctx_stats_t *st) {
  uvctx_stats_t copy;
  uvctx__loop_t *lp;
  size_t n;

  if (loop == NULL || st == NULL ||
      st->size < offsetof(uvctx_stats_t, live) + sizeof(st->live))
    return UV_EINVAL;
  lp = uvctx__loop_find(loop);
  if (lp == NULL)
    return UV_ENOENT;
  n = st->size < sizeof(copy) ? st->size : sizeof(copy);
  copy = lp->stats;
  copy.size = n;
  memcpy(st, &copy, n);
  return 0;
}

int uvctx_observe(uv_loop_t *loop, uvctx_observe_cb cb, void *data) {
  uvctx__loop_t *lp;
  int err;

  if (loop == NULL)
    return UV_EINVAL;
  if (cb == NULL) {
    lp = uvctx__loop_find(loop);
    if (lp != NULL) {
      lp->observer = NULL;
      lp->observer_data = NULL;
      uvctx__loop_close_if_idle(lp);
    }
    return 0;
  }
  err = uvctx__loop_get(loop, &lp);
  if (err != 0)
    return err;
  lp->observer = cb;
  lp->observer_data = data;
  return 0;
}
