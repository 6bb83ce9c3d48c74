/* Reference counting, biased towards the loop thread.
 *
 * Most references to a cancellable context are taken and dropped on its loop
 * thread: the user's own, each child's, each pending watch's. A locked
 * read-modify-write for each was the largest part of a short-lived context's
 * cost in a busy server, so the loop thread counts its references in
 * local_refs with plain loads and stores, and other threads count theirs in
 * refs, atomically. Neither count alone says when the total comes to 0; four
 * rules make it known:
 *
 * - When the loop thread drops its last local reference, it sets
 *   UVCTX__REFS_SHARED in refs (one atomic OR). If refs counted 0 then, that
 *   was the last reference. If not, every reference is counted in refs from
 *   then on, by every thread, and whoever brings it to 0 ends the context.
 *   local_refs is 0 exactly when refs is shared, and never grows again.
 * - The two counts add up to the references alive, so an unshared refs may
 *   count below 0. Another thread that finds it at 0 or less drops a
 *   reference that local_refs counts (the loop thread took it and handed it
 *   over). It takes it from refs all the same, and asks the loop thread to
 *   take that debt back: to bring refs back up to 0 and drop as many local
 *   references, perhaps the last (UVCTX__MB_UNREF in the mailbox).
 *   local_refs cannot come to 0 while refs counts below 0, as the sum counts
 *   the references alive.
 * - The mailbox entry holds the context (UVCTX__REFS_HANDED in refs: no
 *   count with it set is the last) until the loop has taken it, even if
 *   retains meanwhile paid the debt and the references went elsewhere. The
 *   flag and the entry are set together and cleared together under the
 *   mailbox lock, so the loop never ends a context whose entry is pending or
 *   whose poster is still posting.
 * - uvctx__try_retain fails only on a shared count of 0: an unshared context
 *   is alive, held by local_refs.
 *
 * Value contexts have no loop thread: they are born shared. */
#include "uvctx-int.h"

#define SHARED UVCTX__REFS_SHARED
#define HANDED UVCTX__REFS_HANDED
#define REF UVCTX__REF

uvctx_t *uvctx_retain(uvctx_t *ctx) { return uvctx__retain(ctx); }

/* Takes a reference unless the context is already being torn down. */
int uvctx__try_retain(uvctx_t *ctx) {
  unsigned int refs = atomic_load_explicit(&ctx->refs, memory_order_relaxed);

  while (refs != SHARED)
    if (atomic_compare_exchange_weak_explicit(&ctx->refs, &refs, refs + REF,
                                              memory_order_relaxed,
                                              memory_order_relaxed))
      return 1;
  return 0;
}

/* Another thread drops a reference to c that local_refs may count. Under
 * the mailbox lock, with the post. The count may have been shared or raised
 * meanwhile: then this is an ordinary drop. Returns 1 if it was the last. */
static int hand_back(uvctx__cancel_t *c) {
  uvctx__loop_t *lp = c->lp;
  unsigned int refs, next;
  int debt;

  uv_mutex_lock(&lp->mailbox_lock);
  refs = atomic_load_explicit(&c->ctx.refs, memory_order_relaxed);
  do {
    debt = !(refs & SHARED) && uvctx__refs_count(refs) <= 0;
    next = (refs - REF) | (debt ? HANDED : 0);
  } while (!atomic_compare_exchange_weak_explicit(
      &c->ctx.refs, &refs, next, memory_order_acq_rel, memory_order_relaxed));
  if (debt)
    uvctx__mailbox_post_locked(lp, c, UVCTX__MB_UNREF);
  uv_mutex_unlock(&lp->mailbox_lock);
  return next == SHARED;
}

/* Loop thread, under the mailbox lock, taking c's UVCTX__MB_UNREF entry:
 * clears UVCTX__REFS_HANDED and returns how many references the caller must
 * drop once the lock is let go. Unshared: the debt, which refs no longer
 * counts. Shared (the loop thread had nothing left to drop): the entry's hold
 * on c, turned into one reference. */
unsigned int uvctx__refs_take_handed(uvctx__cancel_t *c) {
  unsigned int refs = atomic_load_explicit(&c->ctx.refs, memory_order_relaxed);
  unsigned int next, drops;
  int count;

  do {
    count = uvctx__refs_count(refs);
    if (refs & SHARED) {
      next = (refs & ~HANDED) + REF;
      drops = 1;
    } else if (count < 0) {
      next = 0;
      drops = (unsigned int)-count;
    } else {
      next = refs & ~HANDED;
      drops = 0;
    }
  } while (!atomic_compare_exchange_weak_explicit(
      &c->ctx.refs, &refs, next, memory_order_acq_rel, memory_order_relaxed));
  return drops;
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
    if (uvctx__refs_count(refs) <= 0)
      return hand_back(uvctx__as_cancel(ctx));
    if (atomic_compare_exchange_weak_explicit(&ctx->refs, &refs, refs - REF,
                                              memory_order_release,
                                              memory_order_relaxed))
      return 0;
  }
  return atomic_fetch_sub_explicit(&ctx->refs, REF, memory_order_acq_rel) ==
         (SHARED | REF);
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

/* For uvctx_dump: the references alive, as last seen. */
unsigned int uvctx__refs_of(const uvctx_t *ctx) {
  int refs = uvctx__refs_count(
      atomic_load_explicit(&ctx->refs, memory_order_relaxed));

  if (uvctx__is_cancellable(ctx))
    refs += (int)atomic_load_explicit(&uvctx__as_cancel(ctx)->local_refs,
                                      memory_order_relaxed);
  return refs > 0 ? (unsigned int)refs : 0;
}
