/* Debugging: uvctx_dump() prints a subtree, uvctx_dump_loop() every
 * cancellable context alive on a loop (a leak report). */
#include <inttypes.h>

#include "uvctx-int.h"

static const char *kind_name(const uvctx_t *ctx) {
  switch (ctx->kind) {
  case UVCTX__BACKGROUND:
    return "background";
  case UVCTX__TODO:
    return "todo";
  case UVCTX__VALUE:
    return "with_value";
  case UVCTX__WITHOUT_CANCEL:
    return "without_cancel";
  case UVCTX__CANCEL:
    return "with_cancel";
  case UVCTX__DEADLINE:
    return "with_deadline";
  case UVCTX__SIGNAL:
    return "with_signal";
  case UVCTX__ANY:
    return "with_any";
  default:
    return "with_shutdown";
  }
}

static const char *reason_name(uvctx_done_reason_t reason) {
  static const char *const names[UVCTX_DONE_REASON_COUNT] = {
      "?", "cancel", "deadline", "signal", "shutdown-began",
      "shutdown-grace", "shutdown-again", "shutdown-idle"};
  return names[reason];
}

/* The length of a ring of watches given by its last one. */
static size_t count_watches(const uvctx_watch_t *last) {
  const uvctx_watch_t *w;
  size_t n = 0;

  if (last == NULL)
    return 0;
  for (w = last->next, n = 1; w != last; w = w->next)
    n++;
  return n;
}

/* One line about ctx. The watch lists are read only for contexts of the
 * calling thread's loop (lp); others belong to another thread. */
static void dump_line(const uvctx_t *ctx, int depth, const uvctx__loop_t *lp,
                      FILE *out) {
  uint64_t state = uvctx__owner(ctx) != NULL
                       ? atomic_load_explicit(&uvctx__owner(ctx)->ctx.state,
                                              memory_order_acquire)
                       : 0;
  uint64_t deadline;

  fprintf(out, "%*s%s #%" PRIu64 " %p", depth * 2, "", kind_name(ctx),
          ctx->id, (const void *)ctx);
  if (uvctx__owner(ctx) != NULL)
    fprintf(out, " loop=%p", (void *)uvctx__owner(ctx)->lp->loop);
  if (state == 0) {
    fprintf(out, " err=0");
  } else {
    uvctx_done_info_t info = {0};
    uvctx_done_info(ctx, &info); /* cannot fail: ctx is done */
    fprintf(out, " err=%s cause=%s by=%s#%" PRIu64,
            uv_err_name(uvctx__err_of(state)), uv_err_name(uvctx_cause(ctx)),
            reason_name(info.reason), info.origin_id);
  }
  if (uvctx_deadline(ctx, &deadline) == 1) {
    uint64_t now = uvctx_now();
    if (deadline >= now)
      fprintf(out, " deadline=%" PRIu64 " (+%" PRIu64 "ms)", deadline,
              deadline - now);
    else
      fprintf(out, " deadline=%" PRIu64 " (-%" PRIu64 "ms)", deadline,
              now - deadline);
  }
  if (uvctx__is_cancellable(ctx)) {
    const uvctx__cancel_t *c = uvctx__as_cancel(ctx);
    size_t kids = atomic_load_explicit(&c->kids, memory_order_relaxed);
    size_t listed = 0;
    const uvctx__link_t *l;

    /* Children listed here and counted in kids: not those that hang
     * under ctx through a value context, which are listed too. */
    for (l = c->first_child; l != NULL; l = l->next)
      if (uvctx__link_parent_ctx(l) == ctx)
        listed++;
    if (c->lp == lp)
      fprintf(out, " watches=%zu drains=%zu", count_watches(c->watches),
              count_watches(c->extra != NULL ? c->extra->drains : NULL));
    else
      fprintf(out, " (another loop)");
    fprintf(out, " refs=%u others=%zu",
            uvctx__refs_of(ctx),
            kids > listed ? kids - listed : 0);
    if (ctx->kind == UVCTX__SIGNAL || ctx->kind == UVCTX__SHUTDOWN)
      fprintf(out, " signal=%d", uvctx_signal_received(ctx));
  }
  fputc('\n', out);
}

/* One walk of a subtree: the printing one, or the one after it that takes
 * its marks away (out == NULL). */
struct dump {
  const uvctx__loop_t *lp;
  unsigned int bit; /* the walk's mark (ancestors.c) */
  FILE *out;
};

/* Whether the walk goes into the child of l. An any-context hangs in the
 * list of each of its parents, so a subtree may reach it by several paths:
 * the walk goes into it the first time, which it marks, and prints it as a
 * reference the other times. Without the marks, diamonds of any-contexts
 * stacked n deep would print 2^n lines. */
static int enter(const uvctx__link_t *l, const struct dump *d, int depth) {
  const uvctx_t *child = &uvctx__link_child(l)->ctx;

  if (child->kind != UVCTX__ANY)
    return 1;
  if (d->out == NULL)
    return uvctx__unmark(child, d->bit);
  if (uvctx__mark(child, d->bit))
    return 1;
  fprintf(d->out, "%*swith_any #%" PRIu64 " %p (shown above)\n", depth * 2,
          "", child->id, (const void *)child);
  return 0;
}

/* The first link from l on that the walk goes into; the children on other
 * loops passed on the way are printed, as leaves, at depth. */
static const uvctx__link_t *next_entered(const uvctx__link_t *l,
                                         const struct dump *d, int depth) {
  for (; l != NULL; l = l->next) {
    const uvctx__cancel_t *child = uvctx__link_child(l);

    if (child->lp != d->lp) {
      if (d->out != NULL)
        dump_line(&child->ctx, depth, d->lp, d->out);
    } else if (enter(l, d, depth)) {
      return l;
    }
  }
  return NULL;
}

/* The same pre-order walk as a cancel's (cancel.c), over every child. The
 * caller holds the tree lock, which keeps the lists still between the two
 * walks (uvctx__walk_enter notes the way back up). */
static void walk(uvctx__cancel_t *root, const struct dump *d) {
  uvctx__cancel_t *node = root;
  const uvctx__link_t *next;
  int depth = 0;

  if (d->out != NULL)
    dump_line(&node->ctx, depth, d->lp, d->out);
  for (;;) {
    next = next_entered(node->first_child, d, depth + 1);
    if (next != NULL) {
      depth++;
    } else {
      while (next == NULL && node != root) {
        next = next_entered(uvctx__walk_in(node)->next, d, depth);
        if (next == NULL) {
          node = uvctx__link_parent(uvctx__walk_in(node));
          depth--;
        }
      }
      if (next == NULL)
        break;
    }
    node = uvctx__link_child(next);
    uvctx__walk_enter(next);
    if (d->out != NULL)
      dump_line(&node->ctx, depth, d->lp, d->out);
  }
}

int uvctx_dump(const uvctx_t *ctx, FILE *out) {
  uvctx__cancel_t *root;
  struct dump d;

  if (ctx == NULL || out == NULL)
    return UV_EINVAL;
  if (!uvctx__is_cancellable(ctx)) {
    dump_line(ctx, 0, NULL, out);
    return 0;
  }
  root = uvctx__as_cancel(ctx);
  d.lp = root->lp;
  d.out = out;
  /* The mark first: no walk waits for a tree lock while it owns one. */
  d.bit = uvctx__mark_acquire();
  uvctx__tree_lock(root->lp);
  walk(root, &d);
  d.out = NULL;
  walk(root, &d);
  uvctx__tree_unlock(root->lp);
  uvctx__mark_release(d.bit);
  return 0;
}

struct dump_loop {
  const uvctx__loop_t *lp;
  FILE *out;
};

static void dump_live(uvctx__cancel_t *c, void *arg) {
  const struct dump_loop *d = arg;
  dump_line(&c->ctx, 0, d->lp, d->out);
}

int uvctx_dump_loop(const uv_loop_t *loop, FILE *out) {
  struct dump_loop d;
  uvctx__loop_t *lp;

  if (loop == NULL || out == NULL)
    return UV_EINVAL;
  lp = uvctx__loop_find(loop);
  if (lp == NULL)
    return 0;
  d.lp = lp;
  d.out = out;
  return (int)uvctx__each_live(lp, dump_live, &d);
}
