/* The tree: roots, making cancellable contexts and linking them under their
 * parent, reference counting and teardown, and the lock-free accessors. */
#include <string.h>

#include "uvctx-int.h"

static uvctx_t background = {.kind = UVCTX__BACKGROUND};
static uvctx_t todo = {.kind = UVCTX__TODO};

uvctx_t *uvctx_background(void) { return &background; }
uvctx_t *uvctx_todo(void) { return &todo; }

/* Links c under its cancellable ancestor, or gives it the ancestor's state if
 * that is already done. Under the ancestor's tree lock, so a cancel racing
 * with us either finds c in the list or we see its state. */
static void link_child(uvctx__cancel_t *c) {
  uvctx__cancel_t *cp = uvctx__cancel_parent(c);
  uint64_t state;

  if (cp == NULL)
    return;
  uv_mutex_lock(&cp->lp->tree_lock);
  state = atomic_load_explicit(&cp->ctx.state, memory_order_acquire);
  if (state != 0) {
    atomic_store_explicit(&c->ctx.state, state, memory_order_release);
  } else {
    c->next_sibling = cp->first_child;
    if (cp->first_child != NULL)
      cp->first_child->prev_sibling = c;
    cp->first_child = c;
  }
  uv_mutex_unlock(&cp->lp->tree_lock);
}

static void unlink_child(uvctx__cancel_t *c) {
  uvctx__cancel_t *cp = uvctx__cancel_parent(c);

  if (cp == NULL)
    return;
  uv_mutex_lock(&cp->lp->tree_lock);
  if (c->prev_sibling != NULL)
    c->prev_sibling->next_sibling = c->next_sibling;
  else if (cp->first_child == c)
    cp->first_child = c->next_sibling;
  if (c->next_sibling != NULL)
    c->next_sibling->prev_sibling = c->prev_sibling;
  uv_mutex_unlock(&cp->lp->tree_lock);
}

int uvctx__new_cancellable(uv_loop_t *loop, uvctx_t *parent, int kind,
                           uvctx__cancel_t **out) {
  size_t size = kind == UVCTX__DEADLINE ? sizeof(uvctx__deadline_t)
                                        : sizeof(uvctx__cancel_t);
  uvctx__cancel_t *owner = parent->owner;
  uvctx__loop_t *lp;
  uvctx__cancel_t *c;
  int err;

  c = uvctx__malloc(size);
  if (c == NULL)
    return UV_ENOMEM;
  /* A child on its parent's loop, the common case, skips the registry. */
  if (owner != NULL && owner->lp->loop == loop) {
    lp = owner->lp;
  } else {
    err = uvctx__loop_get(loop, &lp);
    if (err != 0) {
      uvctx__free(c);
      return err;
    }
  }

  memset(c, 0, size);
  atomic_init(&c->ctx.state, 0);
  atomic_init(&c->ctx.refs, 1);
  c->ctx.kind = (uint8_t)kind;
  c->ctx.parent = uvctx_retain(parent);
  c->ctx.owner = c;
  c->lp = lp;
  lp->live++;
  if (kind == UVCTX__DEADLINE) {
    uvctx__deadline_t *d = uvctx__as_deadline(&c->ctx);
    atomic_init(&d->deadline, 0);
    uv_timer_init(loop, &d->timer);
    uv_unref((uv_handle_t *)&d->timer);
  }
  link_child(c);
  /* Born done: there is nothing to deliver yet. */
  if (atomic_load_explicit(&c->ctx.state, memory_order_relaxed) != 0)
    c->ctx.flags |= UVCTX__DELIVERED;
  *out = c;
  return 0;
}

int uvctx_with_cancel(uv_loop_t *loop, uvctx_t *parent, uvctx_t **out) {
  uvctx__cancel_t *c;
  int err;

  if (loop == NULL || parent == NULL || out == NULL)
    return UV_EINVAL;
  err = uvctx__new_cancellable(loop, parent, UVCTX__CANCEL, &c);
  if (err == 0)
    *out = &c->ctx;
  return err;
}

/* Loop thread, no reference left. Leaves the parent and closes the handles;
 * the memory goes now or in the timer's close callback. */
void uvctx__destroy(uvctx__cancel_t *c) {
  uvctx__loop_t *lp = c->lp;

  unlink_child(c);
  uvctx__done_async_close(c);
  if (c->ctx.kind == UVCTX__DEADLINE)
    uvctx__timer_close(uvctx__as_deadline(&c->ctx));
  else
    uvctx__free(c);
  uvctx__loop_unref(lp);
}

uvctx_t *uvctx_retain(uvctx_t *ctx) {
  if (ctx != NULL && !uvctx__is_root(ctx))
    atomic_fetch_add_explicit(&ctx->refs, 1, memory_order_relaxed);
  return ctx;
}

void uvctx_release(uvctx_t *ctx) {
  /* A loop rather than recursion: releasing the leaf of a long chain may free
   * the whole chain. */
  while (ctx != NULL && !uvctx__is_root(ctx)) {
    uvctx__cancel_t *c = uvctx__is_cancellable(ctx) ? uvctx__as_cancel(ctx)
                                                     : NULL;
    int on_loop = c != NULL && uvctx__on_loop_thread(c->lp);
    uvctx_t *parent = ctx->parent;

    /* A reference the mailbox holds for a cancel from another thread must
     * not outlive the last release just because the loop has not polled. */
    if (on_loop)
      uvctx__catch_up(c->lp);
    if (atomic_fetch_sub_explicit(&ctx->refs, 1, memory_order_acq_rel) != 1)
      return;
    if (c == NULL) {
      uvctx__free(ctx);
    } else if (on_loop) {
      uvctx__destroy(c);
    } else {
      uvctx__mailbox_post(c->lp, c, UVCTX__MB_RELEASE);
      return;
    }
    ctx = parent;
  }
}

int uvctx_err(const uvctx_t *ctx) {
  if (ctx == NULL || ctx->owner == NULL)
    return 0;
  return uvctx__err_of(
      atomic_load_explicit(&ctx->owner->ctx.state, memory_order_acquire));
}

int uvctx_cause(const uvctx_t *ctx) {
  uint64_t state;

  if (ctx == NULL || ctx->owner == NULL)
    return 0;
  state = atomic_load_explicit(&ctx->owner->ctx.state, memory_order_acquire);
  return uvctx__cause_of(state) != 0 ? uvctx__cause_of(state)
                                     : uvctx__err_of(state);
}

int uvctx_deadline(const uvctx_t *ctx, uint64_t *deadline_ms) {
  uint64_t earliest = UINT64_MAX;
  int found = 0;

  if (ctx == NULL || deadline_ms == NULL)
    return UV_EINVAL;
  /* A without-cancel context hides the deadlines above it. */
  for (; ctx != NULL && ctx->kind != UVCTX__WITHOUT_CANCEL; ctx = ctx->parent) {
    if (ctx->kind == UVCTX__DEADLINE) {
      uint64_t d = atomic_load_explicit(&uvctx__as_deadline(ctx)->deadline,
                                        memory_order_relaxed);
      if (!found || d < earliest)
        earliest = d;
      found = 1;
    }
  }
  if (found)
    *deadline_ms = earliest;
  return found;
}

uv_loop_t *uvctx_loop(const uvctx_t *ctx) {
  if (ctx == NULL || ctx->owner == NULL)
    return NULL;
  return ctx->owner->lp->loop;
}
