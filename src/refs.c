/* Reference counting, biased towards the loop thread.
 *
 * Most references to a cancellable context are taken and dropped on its loop
 * thread: the user's own, each child's, each pending watch's. A locked
 * read-modify-write for each was the largest part of a short-lived context's
 * cost in a busy server, so the loop thread counts its references in
 * local_refs with plain loads and stores, and other threads count theirs in
 * refs, atomically. Neither count alone says when the total comes to 0; three
 * rules make it known:
 *
 * - When the loop thread drops its last local reference, it sets
 *   UVCTX__REFS_SHARED in refs (one atomic OR). If refs counted 0 then, that
 *   was the last reference. If not, every reference is counted in refs from
 *   then on, by every thread, and whoever brings it to 0 ends the context.
 *   local_refs is 0 exactly when refs is shared, and never grows again.
 * - Another thread never brings an unshared count below 0: when it counts 0,
 *   the reference being dropped is one of local_refs' (the loop thread took
 *   it and handed it over), so the thread gives it back to the loop thread to
 *   drop (handed_refs and UVCTX__MB_UNREF in the mailbox). That reference
 *   keeps the context alive until the loop thread has dropped it; it is
 *   counted in handed_refs under the mailbox lock, and the loop takes the
 *   count under it, so the loop never drops a reference (perhaps the last)
 *   while the thread that handed it is still posting.
 * - uvctx__try_retain fails only on a shared count of 0: an unshared context
 *   is alive, held by local_refs.
 *
 * Value contexts have no loop thread: they are born shared. */
#include "uvctx-int.h"

#define SHARED UVCTX__REFS_SHARED

uvctx_t *uvctx_retain(uvctx_t *ctx) { return uvctx__retain(ctx); }

/* Takes a reference unless the context is already being torn down. */
int uvctx__try_retain(uvctx_t *ctx) {
  unsigned int refs = atomic_load_explicit(&ctx->refs, memory_order_relaxed);

  while (refs != SHARED)
    if (atomic_compare_exchange_weak_explicit(&ctx->refs, &refs, refs + 1,
                                              memory_order_relaxed,
                                              memory_order_relaxed))
      return 1;
  return 0;
}

/* Drops one reference to ctx; returns 1 if it was the last. on_loop: ctx is
 * cancellable and this is its loop thread. */
static int drop(uvctx_t *ctx, int on_loop) {
  unsigned int local =
      on_loop ? atomic_load_explicit(&uvctx__as_cancel(ctx)->local_refs,
                                     memory_order_relaxed)
              : 0;
  unsigned int refs;

  if (local != 0) {
    uvctx__cancel_t *c = uvctx__as_cancel(ctx);

    atomic_store_explicit(&c->local_refs, local - 1, memory_order_relaxed);
    if (local > 1)
      return 0;
    /* No other thread can take a reference it does not hold: a count of 0
     * stays 0, and the context ends without a locked instruction. */
    if (ctx->flags & UVCTX__OWN_REFS &&
        atomic_load_explicit(&ctx->refs, memory_order_acquire) == 0)
      return 1;
    refs = atomic_fetch_or_explicit(&ctx->refs, SHARED, memory_order_acq_rel);
    return refs == 0;
  }
  refs = atomic_load_explicit(&ctx->refs, memory_order_relaxed);
  while (!(refs & SHARED)) {
    /* Another thread, the count not yet shared. */
    if (refs == 0) {
      uvctx__cancel_t *c = uvctx__as_cancel(ctx);

      uvctx__mailbox_post(c->lp, c, UVCTX__MB_UNREF);
      return 0;
    }
    if (atomic_compare_exchange_weak_explicit(&ctx->refs, &refs, refs - 1,
                                              memory_order_release,
                                              memory_order_relaxed))
      return 0;
  }
  return atomic_fetch_sub_explicit(&ctx->refs, 1, memory_order_acq_rel) ==
         (SHARED | 1);
}

void uvctx_release(uvctx_t *ctx) {
  /* A loop rather than recursion: releasing the leaf of a long chain may free
   * the whole chain. */
  while (ctx != NULL && !uvctx__is_root(ctx)) {
    uvctx__cancel_t *c = uvctx__is_cancellable(ctx) ? uvctx__as_cancel(ctx)
                                                     : NULL;
    int on_loop = c != NULL && uvctx__on_loop_thread(c->lp);
    uvctx_t *parent;

    /* A reference the mailbox holds for a cancel from another thread must
     * not outlive the last release just because the loop has not polled. */
    if (on_loop)
      uvctx__catch_up(c->lp);
    if (!drop(ctx, on_loop))
      return;
    if (c == NULL) {
      parent = ctx->parent;
      uvctx__free(ctx);
      uvctx__leave(parent);
    } else if (on_loop) {
      unsigned int left;
      parent = uvctx__destroy(c, &left);
      uvctx__left(parent, left);
    } else {
      uvctx__mailbox_post(c->lp, c, UVCTX__MB_RELEASE);
      return;
    }
    ctx = parent;
  }
}

/* For uvctx_dump: the references alive, as last seen (the handed ones are
 * gone, though local_refs still counts them). */
unsigned int uvctx__refs_of(const uvctx_t *ctx) {
  unsigned int refs = atomic_load_explicit(&ctx->refs, memory_order_relaxed);

  if (uvctx__is_cancellable(ctx)) {
    const uvctx__cancel_t *c = uvctx__as_cancel(ctx);
    refs += atomic_load_explicit(&c->local_refs, memory_order_relaxed) -
            atomic_load_explicit(&c->handed_refs, memory_order_relaxed);
  }
  return refs & ~SHARED;
}
