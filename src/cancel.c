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

/* Whether an any-context reached from parent has another parent on the loop
 * that is done and not yet delivered: it is then delivered when that one is,
 * so that every parent's callbacks run before the any-context's. */
static int waits_for_other_parent(const uvctx__cancel_t *child,
                                  const uvctx__cancel_t *parent) {
  size_t count = uvctx__link_count(child);
  size_t i;

  for (i = 0; i < count; i++) {
    const uvctx__cancel_t *other = uvctx__link_parent(uvctx__link_at(child, i));
    if (other != NULL && other != parent && other->lp == child->lp &&
        !(other->ctx.flags & UVCTX__DELIVERED) &&
        atomic_load_explicit(&other->ctx.state, memory_order_acquire) != 0)
      return 1;
  }
  return 0;
}

/* Finishes c with state if it is not done yet: 1 if this call did. Called
 * with the tree lock of lp, the loop the caller walks. A context on lp with
 * all its parents there (UVCTX__ONE_LOOP, which only lp's thread may read)
 * has no writer without that lock, so there a load and a store do, without
 * the compare-and-swap's locked instruction. */
static int finish(uvctx__loop_t *lp, uvctx__cancel_t *c, uint64_t state) {
  uint64_t none = 0;

  if (c->lp == lp && uvctx__on_loop_thread(lp) &&
      (c->ctx.flags & UVCTX__ONE_LOOP)) {
    if (atomic_load_explicit(&c->ctx.state, memory_order_relaxed) != 0)
      return 0;
    atomic_store_explicit(&c->ctx.state, state, memory_order_release);
    return 1;
  }
  return atomic_compare_exchange_strong_explicit(
      &c->ctx.state, &none, state, memory_order_acq_rel, memory_order_acquire);
}

int uvctx__finish_child(uvctx__loop_t *lp, uvctx__cancel_t *parent,
                        uint64_t state, uvctx__cancel_t *child) {
  int via = uvctx__via_to(lp, child);
  int finished = finish(lp, child, uvctx__with_via(state, via));

  if (finished && via == UVCTX_VIA_ANY)
    atomic_store_explicit(&uvctx__as_any(&child->ctx)->via, parent,
                          memory_order_release);
  return finished;
}

/* Gives child its parent's state if it has none yet, and says whether the
 * walk must visit it: when this made it done, or when the loop still has to
 * act on it. A child on another loop is handed to that loop instead. */
static int should_visit(uvctx__loop_t *lp, uvctx__cancel_t *parent,
                        uint64_t state, uvctx__cancel_t *child, int deliver) {
  int finished = uvctx__finish_child(lp, parent, state, child);

  /* Finished once, so posted once: the entry's reference is this one. */
  if (child->lp != lp) {
    if (finished && uvctx__try_retain(&child->ctx))
      uvctx__mailbox_post(child->lp, child, UVCTX__MB_CANCEL);
    return 0;
  }
  if (!deliver)
    return finished;
  if (child->ctx.flags & UVCTX__DELIVERED)
    return 0;
  return child->ctx.kind != UVCTX__ANY ||
         !waits_for_other_parent(child, parent);
}

/* The first link from l on, in parent's list, whose child the walk visits. */
static uvctx__link_t *first_to_visit(uvctx__loop_t *lp,
                                     uvctx__cancel_t *parent,
                                     uvctx__link_t *l, int deliver) {
  uint64_t state;

  if (l == NULL)
    return NULL;
  state = atomic_load_explicit(&parent->ctx.state, memory_order_acquire);
  for (; l != NULL; l = l->next)
    if (should_visit(lp, parent, state, uvctx__link_child(l), deliver))
      return l;
  return NULL;
}

/* Pre-order walk of root's subtree on root's loop, so that ancestors are
 * delivered before their descendants. Iterative, since trees can be deep:
 * each node remembers the link it was entered by, to come back up the way it
 * went down (an any-context has several). Called with root's loop's tree
 * lock held; root is done. */
static void walk(uvctx__cancel_t *root, int deliver) {
  uvctx__loop_t *lp = root->lp;
  uvctx__cancel_t *node = root;
  uvctx__link_t *next;

  for (;;) {
    if (deliver)
      uvctx__deliver(node);
    next = first_to_visit(lp, node, node->first_child, deliver);
    while (next == NULL && node != root) {
      uvctx__link_t *in = uvctx__walk_in(node);
      node = uvctx__link_parent(in);
      next = first_to_visit(lp, node, in->next, deliver);
    }
    if (next == NULL)
      return;
    node = uvctx__link_child(next);
    uvctx__walk_enter(next);
  }
}

/* Finishes root's subtree and, on the loop thread, delivers it. With
 * any-contexts on the loop the tree is a graph: the whole subtree is finished
 * first, so that delivery can hold an any-context back until each of its
 * parents has been delivered. */
static void finish_subtree(uvctx__cancel_t *root, int on_loop) {
  if (root->first_child == NULL) { /* most are leaves */
    if (on_loop)
      uvctx__deliver(root);
    return;
  }
  if (on_loop && root->lp->nany > 0)
    walk(root, 0);
  walk(root, on_loop);
}

int uvctx__cancel(uvctx__cancel_t *c, int err, int cause, int reason,
                  const char *site, uint64_t when_ns) {
  uvctx__loop_t *lp = c->lp;
  uint64_t state = uvctx__pack(err, cause, reason);
  int on_loop;

  if (atomic_load_explicit(&c->ctx.state, memory_order_acquire) != 0)
    return UV_EALREADY;
  on_loop = uvctx__on_loop_thread(lp);
  uvctx__tree_lock(lp);
  if (!finish(lp, c, state)) {
    uvctx__tree_unlock(lp);
    return UV_EALREADY;
  }
  /* The loop's cached time on its thread: reading the clock would be a
   * large part of a short-lived context's cost (see uvctx_done_info_t). */
  if (when_ns == 0)
    when_ns = on_loop ? uv_now(lp->loop) * 1000000 : uv_hrtime();
  c->site = site;
  /* Odd, so never 0 ("not yet"): a nanosecond does not matter. */
  atomic_store_explicit(&c->done_ns, when_ns | 1, memory_order_release);
  finish_subtree(c, on_loop);
  uvctx__tree_unlock(lp);
  if (!on_loop) /* finished once, so posted once, with this reference */
    uvctx__mailbox_post(lp, uvctx__as_cancel(uvctx_retain(&c->ctx)),
                        UVCTX__MB_CANCEL);
  return 0;
}

/* Loop thread: acts on the part of c's subtree the loop has not acted on. */
void uvctx__deliver_subtree(uvctx__cancel_t *c) {
  uvctx__tree_lock(c->lp);
  finish_subtree(c, 1);
  uvctx__tree_unlock(c->lp);
}

int uvctx_cancel_at(uvctx_t *ctx, int cause, const char *site) {
  if (ctx == NULL || cause > 0 || !uvctx__is_cancellable(ctx))
    return UV_EINVAL;
  return uvctx__cancel(uvctx__as_cancel(ctx), UV_ECANCELED, cause,
                       UVCTX_DONE_CANCEL, site, 0);
}

/* The functions behind the header's macros, for callers that name them
 * (uvctx_cancel)(ctx): no call site. */
int(uvctx_cancel)(uvctx_t *ctx) { return uvctx_cancel_at(ctx, 0, NULL); }

int(uvctx_cancel_cause)(uvctx_t *ctx, int cause) {
  return uvctx_cancel_at(ctx, cause, NULL);
}
