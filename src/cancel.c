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
static int try_retain(uvctx__cancel_t *c) {
  unsigned int refs = atomic_load_explicit(&c->ctx.refs, memory_order_relaxed);

  while (refs != 0)
    if (atomic_compare_exchange_weak_explicit(&c->ctx.refs, &refs, refs + 1,
                                              memory_order_relaxed,
                                              memory_order_relaxed))
      return 1;
  return 0;
}

/* Gives child its parent's state if it has none yet, and says whether the
 * walk must visit it: when this made it done, or when the loop still has to
 * act on it. */
static int should_visit(uvctx__loop_t *lp, uint64_t state,
                        uvctx__cancel_t *child, int deliver) {
  uint64_t none = 0;
  int finished = atomic_compare_exchange_strong_explicit(
      &child->ctx.state, &none, state, memory_order_acq_rel,
      memory_order_acquire);

  if (child->lp != lp) {
    if (finished && try_retain(child))
      uvctx__mailbox_post(child->lp, child, UVCTX__MB_CANCEL);
    return 0;
  }
  return finished || (deliver && !(child->ctx.flags & UVCTX__DELIVERED));
}

static uvctx__cancel_t *first_to_visit(uvctx__loop_t *lp,
                                       const uvctx__cancel_t *parent,
                                       uvctx__cancel_t *child, int deliver) {
  uint64_t state =
      atomic_load_explicit(&parent->ctx.state, memory_order_acquire);

  for (; child != NULL; child = child->next_sibling)
    if (should_visit(lp, state, child, deliver))
      return child;
  return NULL;
}

/* Pre-order walk of root's subtree on root's loop, so that ancestors are
 * delivered before their descendants. Iterative: trees can be deep. Called
 * with root's loop's tree lock held; root is done. */
static void walk(uvctx__cancel_t *root, int deliver) {
  uvctx__loop_t *lp = root->lp;
  uvctx__cancel_t *node = root;
  uvctx__cancel_t *next;

  for (;;) {
    if (deliver)
      uvctx__deliver(node);
    next = first_to_visit(lp, node, node->first_child, deliver);
    while (next == NULL && node != root) {
      uvctx__cancel_t *up = uvctx__cancel_parent(node);
      next = first_to_visit(lp, up, node->next_sibling, deliver);
      node = up;
    }
    if (next == NULL)
      return;
    node = next;
  }
}

int uvctx__cancel(uvctx__cancel_t *c, int err, int cause) {
  uvctx__loop_t *lp = c->lp;
  uint64_t none = 0;
  int on_loop;

  if (atomic_load_explicit(&c->ctx.state, memory_order_acquire) != 0)
    return UV_EALREADY;
  on_loop = uvctx__on_loop_thread(lp);
  uv_mutex_lock(&lp->tree_lock);
  if (!atomic_compare_exchange_strong_explicit(&c->ctx.state, &none,
                                               uvctx__pack(err, cause),
                                               memory_order_acq_rel,
                                               memory_order_acquire)) {
    uv_mutex_unlock(&lp->tree_lock);
    return UV_EALREADY;
  }
  walk(c, on_loop);
  uv_mutex_unlock(&lp->tree_lock);
  if (!on_loop) {
    uvctx_retain(&c->ctx); /* the mailbox's reference */
    uvctx__mailbox_post(lp, c, UVCTX__MB_CANCEL);
  }
  return 0;
}

/* Loop thread: acts on the part of c's subtree the loop has not acted on. */
void uvctx__deliver_subtree(uvctx__cancel_t *c) {
  uv_mutex_lock(&c->lp->tree_lock);
  walk(c, 1);
  uv_mutex_unlock(&c->lp->tree_lock);
}

int uvctx_cancel(uvctx_t *ctx) { return uvctx_cancel_cause(ctx, 0); }

int uvctx_cancel_cause(uvctx_t *ctx, int cause) {
  if (ctx == NULL || cause > 0 || !uvctx__is_cancellable(ctx))
    return UV_EINVAL;
  return uvctx__cancel(uvctx__as_cancel(ctx), UV_ECANCELED, cause);
}
