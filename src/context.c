/* The tree: roots, making cancellable contexts and linking them under their
 * parent, reference counting and teardown, and the lock-free accessors. */
#include <string.h>

#include "uvctx-int.h"

static uvctx_t background = {.kind = UVCTX__BACKGROUND};
static uvctx_t todo = {.kind = UVCTX__TODO};

uvctx_t *uvctx_background(void) { return &background; }
uvctx_t *uvctx_todo(void) { return &todo; }

/* Links child under its cancellable ancestor, or gives it the ancestor's
 * state if that is already done. Under the ancestor's tree lock, so a cancel
 * racing with us either sees the child in the list or we see its state. */
static void link_child(uvctx_t *child) {
  uvctx_t *cp = uvctx__cancel_parent(child);
  uint64_t state;

  if (cp == NULL)
    return;
  uv_mutex_lock(&cp->u.c.lp->tree_lock);
  state = atomic_load_explicit(&cp->state, memory_order_acquire);
  if (state != 0) {
    atomic_store_explicit(&child->state, state, memory_order_release);
  } else {
    child->u.c.next_sibling = cp->u.c.first_child;
    if (cp->u.c.first_child != NULL)
      cp->u.c.first_child->u.c.prev_sibling = child;
    cp->u.c.first_child = child;
  }
  uv_mutex_unlock(&cp->u.c.lp->tree_lock);
}

static void unlink_child(uvctx_t *child) {
  uvctx_t *cp = uvctx__cancel_parent(child);
  struct uvctx__cancellable *c = &child->u.c;

  if (cp == NULL)
    return;
  uv_mutex_lock(&cp->u.c.lp->tree_lock);
  if (c->prev_sibling != NULL)
    c->prev_sibling->u.c.next_sibling = c->next_sibling;
  else if (cp->u.c.first_child == child)
    cp->u.c.first_child = c->next_sibling;
  if (c->next_sibling != NULL)
    c->next_sibling->u.c.prev_sibling = c->prev_sibling;
  uv_mutex_unlock(&cp->u.c.lp->tree_lock);
}

int uvctx__new_cancellable(uv_loop_t *loop, uvctx_t *parent, int kind,
                           uvctx_t **out) {
  size_t size = kind == UVCTX__DEADLINE ? UVCTX__SIZE_DEADLINE
                                        : UVCTX__SIZE_CANCEL;
  uvctx_t *owner = parent->owner;
  uvctx__loop_t *lp;
  uvctx_t *ctx;
  int err;

  ctx = uvctx__malloc(size);
  if (ctx == NULL)
    return UV_ENOMEM;
  /* A child on its parent's loop, the common case, skips the registry. */
  if (owner != NULL && owner->u.c.lp->loop == loop) {
    lp = owner->u.c.lp;
  } else {
    err = uvctx__loop_get(loop, &lp);
    if (err != 0) {
      uvctx__free(ctx);
      return err;
    }
  }

  memset(ctx, 0, size);
  atomic_init(&ctx->state, 0);
  atomic_init(&ctx->refs, 1);
  ctx->kind = (uint8_t)kind;
  ctx->parent = uvctx_retain(parent);
  ctx->owner = ctx;
  ctx->u.c.lp = lp;
  lp->live++;
  if (kind == UVCTX__DEADLINE) {
    uv_timer_init(loop, &ctx->u.c.timer);
    uv_unref((uv_handle_t *)&ctx->u.c.timer);
  }
  link_child(ctx);
  /* Born done: there is nothing to deliver yet. */
  if (atomic_load_explicit(&ctx->state, memory_order_relaxed) != 0)
    ctx->flags |= UVCTX__DELIVERED;
  *out = ctx;
  return 0;
}

int uvctx_with_cancel(uv_loop_t *loop, uvctx_t *parent, uvctx_t **out) {
  if (loop == NULL || parent == NULL || out == NULL)
    return UV_EINVAL;
  return uvctx__new_cancellable(loop, parent, UVCTX__CANCEL, out);
}

/* Loop thread, refs == 0. Leaves the parent, closes the handles; the memory
 * goes now or in the timer's close callback. */
void uvctx__destroy(uvctx_t *ctx) {
  uvctx__loop_t *lp = ctx->u.c.lp;

  unlink_child(ctx);
  uvctx__done_async_close(ctx);
  if (ctx->kind == UVCTX__DEADLINE)
    uvctx__timer_close(ctx); /* frees ctx once closed */
  else
    uvctx__free(ctx);
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
  while (ctx != NULL && !uvctx__is_root(ctx) &&
         atomic_fetch_sub_explicit(&ctx->refs, 1, memory_order_acq_rel) == 1) {
    uvctx_t *parent = ctx->parent;

    if (uvctx__is_cancellable(ctx)) {
      if (!uvctx__on_loop_thread(ctx->u.c.lp)) {
        uvctx__mailbox_post(ctx->u.c.lp, ctx, UVCTX__MB_RELEASE);
        return;
      }
      uvctx__destroy(ctx);
    } else {
      uvctx__free(ctx);
    }
    ctx = parent;
  }
}

int uvctx_err(const uvctx_t *ctx) {
  if (ctx == NULL || ctx->owner == NULL)
    return 0;
  return uvctx__err_of(
      atomic_load_explicit(&ctx->owner->state, memory_order_acquire));
}

int uvctx_cause(const uvctx_t *ctx) {
  uint64_t state;

  if (ctx == NULL || ctx->owner == NULL)
    return 0;
  state = atomic_load_explicit(&ctx->owner->state, memory_order_acquire);
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
      uint64_t d =
          atomic_load_explicit(&ctx->u.c.deadline, memory_order_relaxed);
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
  return ctx->owner->u.c.lp->loop;
}
