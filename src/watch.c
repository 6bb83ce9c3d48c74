/* Being told: watches (Go's AfterFunc) and drains, the per-loop ready queue
 * that delivers them, and the lazily made done signal (uvctx_done_async).
 *
 * A watch waits in its context's ring. When the loop acts on the done context
 * the ring moves, in order, to the end of the loop's ready queue, and the
 * loop's idle handle runs the callbacks. The idle handle is active (and so
 * keeps the loop alive) only while callbacks are due. Each idle callback runs
 * the batch that was due when it started; what becomes due meanwhile runs on
 * the next loop iteration, so a callback that watches a done context again
 * cannot starve the loop. */
#include "uvctx-int.h"

static void list_append(uvctx_watch_t **head, uvctx_watch_t **tail,
                        uvctx_watch_t *w) {
  w->next = NULL;
  w->prev = *tail;
  if (*tail != NULL)
    (*tail)->next = w;
  else
    *head = w;
  *tail = w;
}

static void list_remove(uvctx_watch_t **head, uvctx_watch_t **tail,
                        uvctx_watch_t *w) {
  if (w->prev != NULL)
    w->prev->next = w->next;
  else
    *head = w->next;
  if (w->next != NULL)
    w->next->prev = w->prev;
  else
    *tail = w->prev;
}

static void ready_append(uvctx__loop_t *lp, uvctx_watch_t *w) {
  w->state = UVCTX__WATCH_DUE;
  list_append(&lp->ready_head, &lp->ready_tail, w);
  uv_idle_start(&lp->deliver, uvctx__run_due_watches);
}

static void ready_remove(uvctx__loop_t *lp, uvctx_watch_t *w) {
  if (w == lp->batch_end)
    lp->batch_end = w->prev; /* NULL: the rest of the batch has run */
  list_remove(&lp->ready_head, &lp->ready_tail, w);
}

/* A context's watches and drains wait in rings: *last is the last one
 * (NULL for an empty ring) and its next the first, so one pointer gives
 * both ends. Moves a whole ring, in order, to the end of the loop's ready
 * queue. */
static void make_due(uvctx__loop_t *lp, uvctx_watch_t **last) {
  uvctx_watch_t *end = *last;
  uvctx_watch_t *w;
  uvctx_watch_t *next;

  if (end == NULL)
    return;
  *last = NULL;
  for (w = end->next;; w = next) {
    next = w->next;
    ready_append(lp, w);
    if (w == end)
      break;
  }
}

/* How many value contexts stand between ctx and the cancellable context
 * whose done-ness it shares. */
static unsigned int value_depth(const uvctx_t *ctx) {
  unsigned int depth = 0;

  for (; ctx != &uvctx__owner(ctx)->ctx; ctx = ctx->parent)
    depth++;
  return depth;
}

/* A watch on a value context waits in its cancellable ancestor's ring, yet
 * an ancestor's callbacks run before its descendants': the ring is kept
 * sorted by depth, in registration order within a depth. Usually an append
 * (drains all have depth 0). */
static void ring_insert(uvctx_watch_t **last, uvctx_watch_t *w,
                        unsigned int depth) {
  uvctx_watch_t *first;
  uvctx_watch_t *after;

  w->depth = depth;
  if (*last == NULL) {
    w->next = w;
    w->prev = w;
    *last = w;
    return;
  }
  /* w goes after the last watch no deeper than it; when every watch is
   * deeper, w goes first, which in a ring is after the last one too, with
   * the last unchanged. */
  first = (*last)->next;
  for (after = *last; after->depth > depth && after != first;)
    after = after->prev;
  if (after->depth > depth)
    after = *last;
  else if (after == *last)
    *last = w;
  w->prev = after;
  w->next = after->next;
  after->next->prev = w;
  after->next = w;
}

static void ring_remove(uvctx_watch_t **last, uvctx_watch_t *w) {
  if (w->next == w) {
    *last = NULL;
    return;
  }
  w->prev->next = w->next;
  w->next->prev = w->prev;
  if (*last == w)
    *last = w->prev;
}

/* The handles of a done context stop. A done context stops listening, so
 * the signals get their default behaviour back (Go's NotifyContext does the
 * same). */
static void stop_handles(uvctx__cancel_t *c) {
  uvctx__signals_t *signals = uvctx__signals_of(&c->ctx);
  unsigned int i;

  if (uvctx__has_timer(&c->ctx))
    uv_timer_stop(&uvctx__as_deadline(&c->ctx)->timer);
  if (signals != NULL)
    for (i = 0; i < signals->count; i++)
      uv_signal_stop(&signals->handles[i]);
}

/* Loop thread, c done: the loop acts on it once. */
void uvctx__deliver(uvctx__cancel_t *c) {
  if (c->ctx.flags & UVCTX__DELIVERED)
    return;
  c->ctx.flags |= UVCTX__DELIVERED;
  uvctx__note_done(c);
  if (uvctx__has_handles(&c->ctx))
    stop_handles(c);
  if (c->extra != NULL && c->extra->done_async != NULL)
    uv_async_send(c->extra->done_async);
  make_due(c->lp, &c->watches);
  uvctx__drain_check(c);
}

/* The part of uvctx__drain_check() for a context that has drains or is a
 * shutdown context. (A shutdown context may finish itself on the way: see
 * shutdown.c.) */
void uvctx__drain_check_slow(uvctx__cancel_t *c) {
  if (c->ctx.kind == UVCTX__SHUTDOWN)
    uvctx__shutdown_check_idle(uvctx__as_shutdown(&c->ctx));
  if (!(c->ctx.flags & UVCTX__DELIVERED) ||
      atomic_load_explicit(&c->kids, memory_order_acquire) != 0 ||
      c->extra == NULL)
    return;
  make_due(c->lp, &c->extra->drains);
}

void uvctx__run_due_watches(uv_idle_t *idle) {
  uvctx__loop_t *lp = uvctx__container_of(idle, uvctx__loop_t, deliver);

  lp->batch_end = lp->ready_tail;
  while (lp->batch_end != NULL) {
    uvctx_watch_t *w = lp->ready_head;
    uvctx_t *ctx = w->ctx;

    ready_remove(lp, w); /* ends the batch if w was its last */
    /* Finished before the call: the callback may unwatch, free or reuse w,
     * so w is not touched after it. */
    w->state = UVCTX__WATCH_FINISHED;
    lp->stats.watches_run++;
    UVCTX__PROBE_WATCH(ctx, w);
    uvctx__emit(lp, UVCTX_EVENT_WATCH, ctx);
    w->cb(w, uvctx_err(ctx));
    uvctx_release(ctx);
  }
  if (lp->ready_head == NULL)
    uv_idle_stop(idle);
}

int uvctx_watch(uvctx_t *ctx, uvctx_watch_t *w, uvctx_watch_cb cb) {
  uvctx__cancel_t *owner;

  if (ctx == NULL || w == NULL || cb == NULL)
    return UV_EINVAL;
  if (uvctx__watch_pending(w))
    return UV_EBUSY;
  w->ctx = uvctx__retain(ctx);
  w->cb = cb;
  w->next = NULL;
  w->prev = NULL;
  owner = uvctx__owner(ctx);
  if (owner == NULL) {
    /* Never runs, but holds its reference like any pending watch. */
    w->state = UVCTX__WATCH_NEVER;
    return 0;
  }
  /* If another thread finished the context, the loop acts on it first, so
   * that this watch joins the queue behind the ones registered before it. */
  uvctx__catch_up(owner->lp);
  if (owner->ctx.flags & UVCTX__DELIVERED) {
    ready_append(owner->lp, w);
    return 0;
  }
  w->state = UVCTX__WATCH_PENDING;
  ring_insert(&owner->watches, w, value_depth(ctx));
  return 0;
}

/* Loop thread: c's extra block, made if it has none; NULL if there is no
 * memory for it. */
uvctx__extra_t *uvctx__extra_of(uvctx__cancel_t *c) {
  if (c->extra == NULL) {
    c->extra = uvctx__malloc(sizeof(*c->extra));
    if (c->extra != NULL) {
      c->extra->drains = NULL;
      c->extra->done_async = NULL;
    }
  }
  return c->extra;
}

int uvctx_drain(uvctx_t *ctx, uvctx_watch_t *w, uvctx_watch_cb cb) {
  uvctx__cancel_t *c;

  if (ctx == NULL || w == NULL || cb == NULL || !uvctx__is_cancellable(ctx))
    return UV_EINVAL;
  if (uvctx__watch_pending(w))
    return UV_EBUSY;
  c = uvctx__as_cancel(ctx);
  if (uvctx__extra_of(c) == NULL)
    return UV_ENOMEM;
  w->ctx = uvctx__retain(ctx);
  w->cb = cb;
  uvctx__catch_up(c->lp);
  w->state = UVCTX__WATCH_DRAINING;
  ring_insert(&c->extra->drains, w, 0);
  uvctx__drain_check(c);
  return 0;
}

int uvctx_unwatch(uvctx_watch_t *w) {
  uvctx__cancel_t *owner;

  if (w == NULL)
    return UV_EINVAL;
  switch (w->state) {
  case UVCTX__WATCH_NEVER:
    w->state = UVCTX__WATCH_FINISHED;
    uvctx_release(w->ctx);
    return 0;
  case UVCTX__WATCH_PENDING:
  case UVCTX__WATCH_DRAINING:
  case UVCTX__WATCH_DUE:
    owner = uvctx__owner(w->ctx);
    if (w->state == UVCTX__WATCH_PENDING)
      ring_remove(&owner->watches, w);
    else if (w->state == UVCTX__WATCH_DRAINING)
      ring_remove(&owner->extra->drains, w);
    else
      ready_remove(owner->lp, w);
    w->state = UVCTX__WATCH_FINISHED;
    uvctx_release(w->ctx);
    return 0;
  default:
    return UV_EALREADY;
  }
}

/* Once delivered, the done signal stops holding the loop, in case the user
 * uv_ref'd it to wait for the context. */
static void on_done_signal(uv_async_t *async) {
  uv_unref((uv_handle_t *)async);
}

uv_async_t *uvctx_done_async(uvctx_t *ctx) {
  uvctx__cancel_t *owner;
  uvctx__extra_t *extra;
  uv_async_t *async;

  if (ctx == NULL || uvctx__owner(ctx) == NULL)
    return NULL;
  owner = uvctx__owner(ctx);
  extra = uvctx__extra_of(owner);
  if (extra == NULL)
    return NULL;
  if (extra->done_async != NULL)
    return extra->done_async;
  async = uvctx__malloc(sizeof(*async));
  if (async == NULL ||
      uv_async_init(owner->lp->loop, async, on_done_signal) != 0) {
    uvctx__free(async);
    /* Nothing kept for a call that failed. */
    if (extra->drains == NULL && !(owner->ctx.flags & UVCTX__TOP_EXTRA)) {
      uvctx__free(extra);
      owner->extra = NULL;
    }
    return NULL;
  }
  extra->done_async = async;
  async->data = owner;
  uv_unref((uv_handle_t *)async);
  if (owner->ctx.flags & UVCTX__DELIVERED)
    uv_async_send(async);
  return async;
}

static void on_done_async_closed(uv_handle_t *handle) { uvctx__free(handle); }

/* Loop thread, c going, with an extra block: no drain is left (each holds a
 * reference). The done signal's block goes with its close callback. */
void uvctx__extra_free(uvctx__cancel_t *c) {
  if (c->extra->done_async != NULL)
    uv_close((uv_handle_t *)c->extra->done_async, on_done_async_closed);
  uvctx__free(c->extra);
  c->extra = NULL;
}
