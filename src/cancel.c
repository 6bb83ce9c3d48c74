/* Cancelling: finishing a context and propagating its state down the tree.
 *
 * A cancel finishes its context and every descendant on the same loop under
 * that loop's tree lock, from whatever thread it is called, so that when
 * uvctx_cancel() returns the whole subtree reports done. What only the loop
 * thread may do (stop timers, send done signals, queue watch callbacks) is
 * done right away on the loop thread, or handed to it through the mailbox.
 * A descendant on another loop is finished and handed to its own loop, which
 * carries the cancel on below it. */
#include "uvctx-int.h"

/* Takes a reference unless the context is already being torn down. */
static int try_retain(uvctx_t *ctx) {
  unsigned int refs = atomic_load_explicit(&ctx->refs, memory_order_relaxed);

  while (refs != 0)
    if (atomic_compare_exchange_weak_explicit(&ctx->refs, &refs, refs + 1,
                                              memory_order_relaxed,
                                              memory_order_relaxed))
      return 1;
  return 0;
}

/* Gives child its parent's state if it has none yet, and says whether the
 * walk must visit it: when this made it done, or when the loop still has to
 * act on it. */
static int should_visit(uvctx__loop_t *lp, uint64_t state, uvctx_t *child,
                        int deliver) {
  uint64_t none = 0;
  int finished = atomic_compare_exchange_strong_explicit(
      &child->state, &none, state, memory_order_acq_rel, memory_order_acquire);

  if (child->u.c.lp != lp) {
    if (finished && try_retain(child))
      uvctx__mailbox_post(child->u.c.lp, child, UVCTX__MB_CANCEL);
    return 0;
  }
  return finished || (deliver && !(child->flags & UVCTX__DELIVERED));
}

static uvctx_t *first_to_visit(uvctx__loop_t *lp, const uvctx_t *parent,
                               uvctx_t *child, int deliver) {
  uint64_t state = atomic_load_explicit(&parent->state, memory_order_acquire);

  for (; child != NULL; child = child->u.c.next_sibling)
    if (should_visit(lp, state, child, deliver))
      return child;
  return NULL;
}

/* Pre-order walk of root's subtree on root's loop, so that ancestors are
 * delivered before their descendants. Iterative: trees can be deep. Called
 * with root's loop's tree lock held; root is done. */
static void walk(uvctx_t *root, int deliver) {
  uvctx__loop_t *lp = root->u.c.lp;
  uvctx_t *node = root;
  uvctx_t *next;

  for (;;) {
    if (deliver)
      uvctx__deliver(node);
    next = first_to_visit(lp, node, node->u.c.first_child, deliver);
    while (next == NULL && node != root) {
      uvctx_t *up = uvctx__cancel_parent(node);
      next = first_to_visit(lp, up, node->u.c.next_sibling, deliver);
      node = up;
    }
    if (next == NULL)
      return;
    node = next;
  }
}

int uvctx__cancel(uvctx_t *ctx, int err, int cause) {
  uvctx__loop_t *lp = ctx->u.c.lp;
  uint64_t none = 0;
  int on_loop;

  if (atomic_load_explicit(&ctx->state, memory_order_acquire) != 0)
    return UV_EALREADY;
  on_loop = uvctx__on_loop_thread(lp);
  uv_mutex_lock(&lp->tree_lock);
  if (!atomic_compare_exchange_strong_explicit(&ctx->state, &none,
                                               uvctx__pack(err, cause),
                                               memory_order_acq_rel,
                                               memory_order_acquire)) {
    uv_mutex_unlock(&lp->tree_lock);
    return UV_EALREADY;
  }
  walk(ctx, on_loop);
  uv_mutex_unlock(&lp->tree_lock);
  if (!on_loop)
    uvctx__mailbox_post(lp, uvctx_retain(ctx), UVCTX__MB_CANCEL);
  return 0;
}

/* Loop thread: acts on the part of ctx's subtree the loop has not acted on. */
void uvctx__deliver_subtree(uvctx_t *ctx) {
  uvctx__loop_t *lp = ctx->u.c.lp;

  uv_mutex_lock(&lp->tree_lock);
  walk(ctx, 1);
  uv_mutex_unlock(&lp->tree_lock);
}

int uvctx_cancel(uvctx_t *ctx) { return uvctx_cancel_cause(ctx, 0); }

int uvctx_cancel_cause(uvctx_t *ctx, int cause) {
  if (ctx == NULL || cause > 0 || !uvctx__is_cancellable(ctx))
    return UV_EINVAL;
  return uvctx__cancel(ctx, UV_ECANCELED, cause);
}
