/* The contexts alive on a loop, for uvctx_dump_loop() and uvctx_loop_stats():
 * found by walking the loop's trees, not kept in a list of their own.
 *
 * Most contexts hang under a parent on their loop, and a walk down from that
 * parent finds them. The others are the loop's tops (lp->tops): a context
 * with no cancellable parent, by its own link, which is otherwise unused; an
 * any-context with none on its loop, by the same link, which it never uses;
 * and a child whose parents are on other loops, by the home link of its
 * extra block, made for it at birth (its own link is in that parent's list).
 * A list of every live context cost 16 bytes per context and four stores on
 * every birth and release; the tops cost nothing for a child of a context on
 * its loop, the common case, and the walk is paid only when asked. */
#include "uvctx-int.h"

/* Whether the walk of lp's trees reaches the child of l (in a list of a
 * context on lp) by l: the child is on lp and l is its home there, its only
 * link, or an any-context's first link to a parent on lp. So each context is
 * met once, however many of its parents are on the loop. */
static int is_home(const uvctx__loop_t *lp, const uvctx__link_t *l) {
  const uvctx__cancel_t *child = uvctx__link_child(l);
  const uvctx__any_t *any;
  size_t i;

  if (child->lp != lp)
    return 0; /* met on its own loop */
  if (child->ctx.kind != UVCTX__ANY)
    return 1;
  any = uvctx__as_any(&child->ctx);
  for (i = 0;; i++) {
    const uvctx__cancel_t *parent = uvctx__link_parent(&any->links[i].link);
    if (parent != NULL && parent->lp == lp)
      return &any->links[i].link == l;
  }
}

static const uvctx__link_t *next_home(const uvctx__loop_t *lp,
                                      const uvctx__link_t *l) {
  while (l != NULL && !is_home(lp, l))
    l = l->next;
  return l;
}

size_t uvctx__each_live(uvctx__loop_t *lp, uvctx__live_cb cb, void *arg) {
  const uvctx__link_t *top;
  size_t n = 0;

  uvctx__tree_lock(lp);
  for (top = lp->tops; top != NULL; top = top->next) {
    uvctx__cancel_t *root = uvctx__link_child(top);
    uvctx__cancel_t *node = root;
    const uvctx__link_t *next;

    /* Pre-order, without a stack, as a cancel's walk (cancel.c). */
    for (;;) {
      cb(node, arg);
      n++;
      next = next_home(lp, node->first_child);
      while (next == NULL && node != root) {
        const uvctx__link_t *in = uvctx__walk_in(node);
        next = next_home(lp, in->next);
        node = uvctx__link_parent(in);
      }
      if (next == NULL)
        break;
      node = uvctx__link_child(next);
      uvctx__walk_enter(next);
    }
  }
  uvctx__tree_unlock(lp);
  return n;
}
