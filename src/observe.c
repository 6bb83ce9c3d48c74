/* Observability on the loop: the counts of uvctx_loop_stats() and the
 * events of uvctx_observe(). The counting itself is inline in the paths it
 * counts (uvctx-int.h); here is what the loop works out when asked. Loop
 * thread, its own loop's state only, so the counts are plain integers. */
#include <string.h>

#include "uvctx-int.h"

/* finished[] of a loop is indexed by reason + 8 * via. */
_Static_assert(UVCTX_DONE_REASON_COUNT == 8 && UVCTX_VIA_COUNT == 4,
               "uvctx_loop_stats() splits finished[] by 8 reasons, 4 vias");

static const uint64_t lag_bounds_us[UVCTX_LAG_BUCKETS - 1] =
    UVCTX_LAG_BOUNDS_US;

void uvctx__note_lag(uint64_t *buckets, uint64_t *sum, uint64_t lag_ns) {
  int i = 0;

  while (i < UVCTX_LAG_BUCKETS - 1 && lag_ns > lag_bounds_us[i] * 1000)
    i++;
  buckets[i]++;
  *sum += lag_ns;
}

/* The cancellable kinds in the order of uvctx_stats_t.live. */
static void count_live(uvctx__cancel_t *c, void *arg) {
  ((uvctx_stats_t *)arg)->live[c->ctx.kind - UVCTX__CANCEL]++;
}

int uvctx_loop_stats(const uv_loop_t *loop, uvctx_stats_t *st) {
  const uvctx__counts_t *n;
  uvctx_stats_t s;
  uvctx__loop_t *lp;
  uint64_t live = 0;
  unsigned int how;

  if (loop == NULL || st == NULL ||
      st->size < offsetof(uvctx_stats_t, live) + sizeof(st->live))
    return UV_EINVAL;
  lp = uvctx__loop_find(loop);
  if (lp == NULL)
    return UV_ENOENT;
  n = &lp->stats;
  memset(&s, 0, sizeof s);
  live = uvctx__each_live(lp, count_live, &s);
  s.created = n->created;
  s.released = n->created - live;
  for (how = 0; how < UVCTX__HOW_COUNT; how++) {
    s.finished += n->finished[how];
    s.finished_by_reason[how % 8] += n->finished[how];
    s.finished_via[how / 8] += n->finished[how];
  }
  s.watches_run = n->watches_run;
  s.handoffs = n->handoffs;
  s.handoff_cancels = n->handoff_cancels;
  memcpy(s.deadline_lag, n->deadline_lag, sizeof s.deadline_lag);
  s.deadline_lag_sum_ns = n->deadline_lag_sum_ns;
  memcpy(s.cancel_lag, n->cancel_lag, sizeof s.cancel_lag);
  s.cancel_lag_sum_ns = n->cancel_lag_sum_ns;
  s.size = st->size < sizeof s ? st->size : sizeof s;
  memcpy(st, &s, s.size);
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
