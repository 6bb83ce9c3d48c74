/* Walks over the ancestors of an any-context, each at most once.
 *
 * Above an any-context the contexts form a graph, not a chain: its parents
 * may share ancestors (b = with_cancel(a), m = with_any({a, b})), and a walk
 * that searched every parent in turn would search a shared ancestor once per
 * path, which doubles with every level of such diamonds. These walks mark
 * what they have visited and skip it when it comes again, so a lookup costs
 * one visit per distinct ancestor.
 *
 * The marks are bits of uvctx_t.seen, one bit per walk in progress: any
 * thread may look a value up, so several walks may cross the same context at
 * once, and each needs marks of its own that no other walk overwrites. A walk
 * takes one of the eight bits for its duration (a ninth concurrent walk waits
 * for one, which the others give back after a walk linear in their graphs),
 * and clears every mark it made before it gives the bit back, by a second walk
 * that follows only marked contexts. Nothing is allocated.
 *
 * The static roots are never marked: they hold neither values nor deadlines,
 * every thread reads them, and they end a walk anyway. */
#include "uvctx-int.h"

/* Which of the bits of uvctx_t.seen a walk owns. */
static atomic_uint walk_bits;

unsigned int uvctx__mark_acquire(void) {
  unsigned int taken = atomic_load_explicit(&walk_bits, memory_order_relaxed);

  for (;;) {
    unsigned int bit = ~taken & (taken + 1); /* lowest free bit */
    if (bit > UVCTX__WALK_BITS_MASK) {
      sched_yield(); /* all eight walks are under way: each ends soon */
      taken = atomic_load_explicit(&walk_bits, memory_order_relaxed);
      continue;
    }
    /* Acquire: the marks of this bit's last owner are all cleared. */
    if (atomic_compare_exchange_weak_explicit(&walk_bits, &taken,
                                              taken | bit,
                                              memory_order_acquire,
                                              memory_order_relaxed))
      return bit;
  }
}

void uvctx__mark_release(unsigned int bit) {
  atomic_fetch_and_explicit(&walk_bits, ~bit, memory_order_release);
}

/* Pre-order, depth first, parents in order: the order in which the first
 * match of a value lookup is defined. Recursion only for the parents of an
 * any-context but its last, so its depth is the nesting of any-contexts. */
static int visit(const uvctx_t *ctx, unsigned int bit, uvctx__visit_cb cb,
                 void *arg) {
  while (!uvctx__is_root(ctx)) { /* every chain ends at a root */
    if (!uvctx__mark(ctx, bit))
      return 0; /* visited, and everything above it with it */
    switch (cb(ctx, arg)) {
    case UVCTX__WALK_STOP:
      return 1;
    case UVCTX__WALK_PRUNE:
      return 0;
    default:
      break;
    }
    if (ctx->kind == UVCTX__ANY) {
      const uvctx__any_t *any = uvctx__as_any(ctx);
      size_t i;

      for (i = 0; i + 1 < any->count; i++)
        if (visit(any->parents[i], bit, cb, arg))
          return 1;
      ctx = any->parents[any->count - 1];
    } else {
      ctx = ctx->parent;
    }
  }
  return 0;
}

/* Every context marked by a walk from ctx is on a path of marked contexts
 * from ctx, so following marked contexts only, and unmarking them on the
 * way, finds them all, each once. */
static void unmark_all(const uvctx_t *ctx, unsigned int bit) {
  while (!uvctx__is_root(ctx)) { /* every chain ends at a root */
    if (!uvctx__unmark(ctx, bit))
      return;
    if (ctx->kind == UVCTX__ANY) {
      const uvctx__any_t *any = uvctx__as_any(ctx);
      size_t i;

      for (i = 0; i + 1 < any->count; i++)
        unmark_all(any->parents[i], bit);
      ctx = any->parents[any->count - 1];
    } else {
      ctx = ctx->parent;
    }
  }
}

int uvctx__walk_ancestors(const uvctx_t *ctx, uvctx__visit_cb cb, void *arg) {
  unsigned int bit = uvctx__mark_acquire();
  int stopped = visit(ctx, bit, cb, arg);

  unmark_all(ctx, bit);
  uvctx__mark_release(bit);
  return stopped;
}
