/* Provenance: context ids, and how a done context was finished
 * (uvctx_done_info).
 *
 * Ids. A global counter hands out blocks of ids, one atomic add per block,
 * and each thread takes its ids from its own block: a constructor pays a
 * thread-local increment, no locked instruction.
 *
 * Done info. The thread whose event finishes a context itself (a cancel
 * call, a timer, a signal, a shutdown step) packs the reason into the state
 * word it swaps in, with "via" UVCTX_VIA_SELF; right after winning, it
 * writes the call site and then, with a release store, the time. Every
 * context finished from above gets its parent's state word with only "via"
 * changed, and nothing else: its origin is found by going up the way the
 * cancel came, through the link's parent (an any-context stores which of its
 * parents it was). That way is held alive, as a context holds references to
 * its parents. A reader who sees a state word before the thread that swapped
 * it in has written the rest waits for it, a few instructions away. */
#include <sched.h>

#include "uvctx-int.h"

/* Ids 1 and 2 are the roots'; blocks start after them. */
#define ID_BLOCK 1024
static _Atomic uint64_t id_counter = 3;
UVCTX__THREAD_LOCAL uint64_t uvctx__id_next;
UVCTX__THREAD_LOCAL uint64_t uvctx__id_end;

uint64_t uvctx__next_id_block(void) {
  uvctx__id_next = atomic_fetch_add_explicit(&id_counter, ID_BLOCK,
                                             memory_order_relaxed);
  uvctx__id_end = uvctx__id_next + ID_BLOCK;
  return uvctx__id_next++;
}

uint64_t uvctx_id(const uvctx_t *ctx) { return ctx != NULL ? ctx->id : 0; }

/* Waits for the thread that finished origin to publish the time. */
uint64_t uvctx__done_ns(const uvctx__cancel_t *origin) {
  uint64_t ns;

  while ((ns = atomic_load_explicit(&((uvctx__cancel_t *)origin)->done_ns,
                                    memory_order_acquire)) == 0)
    sched_yield();
  return ns;
}

/* The context at which the event that finished c happened; state is c's,
 * not 0. */
const uvctx__cancel_t *uvctx__origin_of(const uvctx__cancel_t *c,
                                        uint64_t state) {
  const uvctx__cancel_t *up;

  for (;;) {
    switch (uvctx__via_of(state)) {
    case UVCTX_VIA_SELF:
      return c;
    case UVCTX_VIA_ANY:
      while ((up = atomic_load_explicit(&((uvctx__any_t *)c)->via,
                                        memory_order_acquire)) == NULL)
        sched_yield();
      break;
    default:
      up = uvctx__link_parent(&c->link);
      break;
    }
    c = up;
    state = atomic_load_explicit(&c->ctx.state, memory_order_acquire);
  }
}

int uvctx_done_info(const uvctx_t *ctx, uvctx_done_info_t *info) {
  const uvctx__cancel_t *origin;
  uint64_t state;

  if (ctx == NULL || info == NULL)
    return UV_EINVAL;
  if (uvctx__owner(ctx) == NULL)
    return UV_EAGAIN;
  state = atomic_load_explicit(&uvctx__owner(ctx)->ctx.state,
                               memory_order_acquire);
  if (state == 0)
    return UV_EAGAIN;
  origin = uvctx__origin_of(uvctx__owner(ctx), state);
  info->err = uvctx__err_of(state);
  info->cause = uvctx__cause_of(state) != 0 ? uvctx__cause_of(state)
                                            : info->err;
  info->reason = (uvctx_done_reason_t)uvctx__reason_of(state);
  info->via = (uvctx_via_t)uvctx__via_of(state);
  info->origin_id = origin->ctx.id;
  info->when_ms = uvctx__done_ns(origin) / 1000000;
  info->site = origin->site;
  return 0;
}
