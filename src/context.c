/* The tree: roots, making cancellable contexts and linking them under their
 * parents, reference counting and teardown, and the lock-free accessors. */
#include <limits.h>
#include <stddef.h>
#include <string.h>

#include "uvctx-int.h"

static uvctx_t background = {.kind = UVCTX__BACKGROUND, .id = 1};
static uvctx_t todo = {.kind = UVCTX__TODO, .id = 2};

uvctx_t *uvctx_background(void) { return &background; }
uvctx_t *uvctx_todo(void) { return &todo; }

/* kids changes only under the tree lock of its context's loop, so that a
 * child's link and its count are one critical section (one locked
 * instruction, not two); it stays atomic for the readers without the lock. */
static unsigned int kids_add(uvctx__cancel_t *c, unsigned int n, int sign) {
  unsigned int kids = atomic_load_explicit(&c->kids, memory_order_relaxed);

  kids = sign > 0 ? kids + n : kids - n;
  atomic_store_explicit(&c->kids, kids, memory_order_release);
  return kids;
}

/* Puts l in the children list of its parent's cancellable owner cp, counts
 * it in cp's kids if cp is its parent (not a value context's owner), and gives
 * the child the owner's state if that is already done. Under the owner's
 * tree lock, so a cancel racing with us either finds the child in the list
 * or we see its state. (A born-done child is listed too, for uvctx_dump;
 * walks pass it by, as it is done and has nothing to deliver.) */
static void link_one(uvctx__link_t *l, uvctx__cancel_t *cp, int is_kid) {
  uint64_t state;

  uvctx__tree_lock(cp->lp);
  if (is_kid)
    kids_add(cp, 1, +1);
  state = atomic_load_explicit(&cp->ctx.state, memory_order_acquire);
  if (state != 0)
    uvctx__finish_child(cp->lp, cp, state, uvctx__link_child(l));
  uvctx__list_push(&cp->first_child, l);
  uvctx__tree_unlock(cp->lp);
}

/* Takes l out of its list and, if it was counted there, out of the kids:
 * returns the kids left then (UINT_MAX if it was not counted). */
static unsigned int unlink_one(uvctx__link_t *l, int is_kid) {
  uvctx__cancel_t *cp = uvctx__link_parent(l);
  unsigned int left = UINT_MAX;

  if (cp == NULL)
    return left;
  uvctx__tree_lock(cp->lp);
  uvctx__list_remove(&cp->first_child, l);
  if (cp->ctx.kind == UVCTX__SHUTDOWN)
    uvctx__shutdown_forget(uvctx__as_shutdown(&cp->ctx), uvctx__link_child(l));
  if (is_kid)
    left = kids_add(cp, 1, -1);
  uvctx__tree_unlock(cp->lp);
  return left;
}

/* A new value context has parent: count it, for uvctx_drain(). (A new
 * cancellable context is counted as it is linked.) */
void uvctx__adopt(uvctx_t *parent) {
  uvctx__cancel_t *c;

  if (!uvctx__is_cancellable(parent))
    return;
  c = uvctx__as_cancel(parent);
  uvctx__tree_lock(c->lp);
  kids_add(c, 1, +1);
  uvctx__tree_unlock(c->lp);
}

/* A context of parent is gone, and left of parent's children are alive.
 * When it was the last, a drain waiting on the parent may be due (or a
 * shutdown may be over): the loop thread checks now, another thread asks it
 * to. The caller still holds the gone child's reference to parent. */
void uvctx__left(uvctx_t *parent, unsigned int left) {
  uvctx__cancel_t *c;

  if (parent == NULL || !uvctx__is_cancellable(parent))
    return;
  c = uvctx__as_cancel(parent);
  /* A shutdown context also cares when only its stopping child is left. */
  if (left > 1 || (left == 1 && parent->kind != UVCTX__SHUTDOWN))
    return;
  if (uvctx__on_loop_thread(c->lp)) {
    uvctx__drain_check(c);
  } else {
    uvctx_retain(parent);
    if (!uvctx__mailbox_post(c->lp, c, UVCTX__MB_DRAIN))
      uvctx_release(parent); /* already asked: one reference is enough */
  }
}

/* A value context of parent is gone. */
void uvctx__leave(uvctx_t *parent) {
  uvctx__cancel_t *c;
  unsigned int left;

  if (parent == NULL || !uvctx__is_cancellable(parent))
    return;
  c = uvctx__as_cancel(parent);
  uvctx__tree_lock(c->lp);
  left = kids_add(c, 1, -1);
  uvctx__tree_unlock(c->lp);
  uvctx__left(parent, left);
}

int uvctx__new_cancellable(uv_loop_t *loop, uvctx_t *const *parents,
                           size_t count, int kind, size_t size,
                           uvctx__cancel_t **out) {
  uvctx__cancel_t *owner = uvctx__owner(parents[0]);
  size_t block = size;
  uvctx__loop_t *lp;
  uvctx__cancel_t *c;
  int homed = 0;
  size_t i;
  int err;

  /* An any-context keeps its parents and links after its fields. */
  if (kind == UVCTX__ANY) {
    /* Cannot overflow where pointers are 64 bits (the caller's array of
     * count parents would not fit in the address space), so no test gets
     * here; it can where they are 32 bits. */
    if (count > (SIZE_MAX - size) /
                    (sizeof(uvctx_t *) + sizeof(uvctx__any_link_t)))
      return UV_ENOMEM;
    block += count * (sizeof(uvctx_t *) + sizeof(uvctx__any_link_t));
  }
  /* A child on its parent's loop, the common case, skips the registry. */
  if (owner != NULL && owner->lp->loop == loop) {
    lp = owner->lp;
  } else {
    err = uvctx__loop_get(loop, &lp);
    if (err != 0)
      return err;
  }
  c = uvctx__block_alloc(lp, block);
  if (c == NULL)
    return UV_ENOMEM;

  /* Every field of the part each kind has, one store each: zeroing it first
   * compiled to a `rep stos`, slow to start for so few bytes. A field added
   * to uvctx__cancel_t must be set here too; the assertion says so. Then
   * what follows that part is zeroed, but for a timer: uv_timer_init sets
   * what libuv reads of it, and zeroing its 152 bytes as well was a good
   * part of the cost of a deadline context. */
  _Static_assert(sizeof(void *) != 8 || sizeof(uvctx__cancel_t) == 104,
                 "every field of uvctx__cancel_t is set below");
  atomic_init(&c->ctx.state, 0);
  c->ctx.kind = (uint8_t)kind;
  c->ctx.flags = UVCTX__OWN_REFS | UVCTX__ONE_LOOP;
  c->ctx.mb_flags = 0;
  atomic_init(&c->ctx.seen, 0);
  c->ctx.parent = NULL;
  c->ctx.id = uvctx__next_id();
  uvctx__refs_init(&c->ctx); /* refs, local_refs */
  c->lp = lp;
  c->first_child = NULL;
  atomic_init(&c->kids, 0);
  c->watches = NULL;
  c->extra = NULL;
  c->link.next = NULL;
  c->link.prev_bits = 0;
  c->site = NULL;
  atomic_init(&c->done_ns, 0);
  if (kind == UVCTX__DEADLINE || kind == UVCTX__SHUTDOWN) {
    size_t at = offsetof(uvctx__deadline_t, timer);
    size_t after = at + sizeof(uv_timer_t);
    memset((char *)c + sizeof(*c), 0, at - sizeof(*c));
    if (block > after)
      memset((char *)c + after, 0, block - after);
  } else if (block > sizeof(*c)) {
    memset((char *)c + sizeof(*c), 0, block - sizeof(*c));
  }
  /* A child of a parent on another loop hangs among its own loop's tops by
   * its extra block (live.c). */
  if (kind != UVCTX__ANY && owner != NULL && owner->lp != lp) {
    uvctx__extra_t *extra = uvctx__extra_of(c);
    if (extra == NULL) {
      uvctx__block_free(lp, c, block);
      return UV_ENOMEM;
    }
    extra->home.link.prev_bits = UVCTX__ANY_LINK;
    extra->home.child = c;
  }
  if (kind == UVCTX__ANY) {
    uvctx__any_t *any = uvctx__as_any(&c->ctx);
    any->count = count;
    any->parents = (uvctx_t **)((char *)c + size);
    any->links = (uvctx__any_link_t *)(any->parents + count);
    for (i = 0; i < count; i++) {
      any->parents[i] = uvctx__retain(parents[i]);
      any->links[i].link.prev_bits = UVCTX__ANY_LINK;
      any->links[i].child = c;
    }
    c->ctx.parent = any->parents[0]; /* one reference for both */
  } else {
    c->ctx.parent = uvctx__retain(parents[0]);
  }
  if (uvctx__has_timer(&c->ctx)) {
    uvctx__deadline_t *d = uvctx__as_deadline(&c->ctx);
    atomic_init(&d->deadline, UINT64_MAX);
    uv_timer_init(loop, &d->timer);
    uv_unref((uv_handle_t *)&d->timer);
    uvctx__set_timer_cause(d, 0);
  }

  for (i = 0; i < count; i++) {
    uvctx__cancel_t *o = uvctx__owner(parents[i]);

    if (o != NULL) {
      link_one(uvctx__link_at(c, i), o, uvctx__is_cancellable(parents[i]));
      if (o->lp == lp)
        homed = 1;
      /* A cancel of a parent on another loop takes a reference to c on
       * that loop's thread (uvctx__try_retain). */
      else
        c->ctx.flags &= (uint8_t)~(UVCTX__OWN_REFS | UVCTX__ONE_LOOP);
    }
  }
  /* Under no parent on its loop: one of the loop's tops. */
  if (!homed) {
    if (c->extra != NULL) {
      uvctx__tops_insert(lp, &c->extra->home.link);
      c->ctx.flags |= UVCTX__TOP_EXTRA;
    } else {
      uvctx__tops_insert(lp, &c->link);
      c->ctx.flags |= UVCTX__TOP;
    }
  }
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
  err = uvctx__new_cancellable(loop, &parent, 1, UVCTX__CANCEL,
                               sizeof(uvctx__cancel_t), &c);
  if (err != 0)
    return err;
  uvctx__made(c);
  *out = &c->ctx;
  return 0;
}

/* The memory of c goes back to its loop. Only plain cancel and deadline
 * blocks have the sizes the loop keeps for reuse; the size of the others
 * depends on their signals or parents. */
static void free_block(uvctx__cancel_t *c) {
  size_t size = c->ctx.kind == UVCTX__CANCEL     ? sizeof(uvctx__cancel_t)
                : c->ctx.kind == UVCTX__DEADLINE ? sizeof(uvctx__deadline_t)
                                                 : 0;
  uvctx__block_free(c->lp, c, size);
}

/* Close callback of every handle a context embeds or owns in its block: the
 * memory goes with the last one. */
void uvctx__handle_closed(uv_handle_t *handle) {
  uvctx__cancel_t *c = handle->data;

  if (--c->closing == 0)
    free_block(c);
}

static void close_handle(uvctx__cancel_t *c, uv_handle_t *handle) {
  handle->data = c;
  c->closing++;
  uv_close(handle, uvctx__handle_closed);
}

/* Loop thread, no reference left. Leaves the parents, closes the handles
 * (the memory goes with the last close callback, or now if there are none)
 * and returns the parent whose reference the caller must drop, after
 * uvctx__left(parent, *left). */
static void close_handles(uvctx__cancel_t *c) {
  uvctx__signals_t *signals = uvctx__signals_of(&c->ctx);
  size_t i;

  if (uvctx__has_timer(&c->ctx))
    close_handle(c, (uv_handle_t *)&uvctx__as_deadline(&c->ctx)->timer);
  if (signals != NULL)
    for (i = 0; i < signals->count; i++)
      close_handle(c, (uv_handle_t *)&signals->handles[i]);
}

uvctx_t *uvctx__destroy(uvctx__cancel_t *c, unsigned int *left) {
  uvctx_t *parent = c->ctx.parent;
  size_t i;

  /* First, while its way up is whole: the observer may ask how it ended. */
  UVCTX__PROBE_RELEASED(c);
  uvctx__emit(c->lp, UVCTX_EVENT_RELEASED, &c->ctx);
  /* An any-context leaves its other parents first, in order, each left and
   * then released, and its first parent last (by the caller), as
   * fuzz/model.c says: a parent listed twice loses its last child at its
   * last listing, and a drain that becomes due on the way is due before the
   * next parent is left. */
  if (c->ctx.kind == UVCTX__ANY) {
    uvctx__any_t *any = uvctx__as_any(&c->ctx);
    c->lp->nany--;
    for (i = 1; i < any->count; i++) {
      uvctx__left(any->parents[i],
                  unlink_one(uvctx__link_at(c, i),
                             uvctx__is_cancellable(any->parents[i])));
      uvctx_release(any->parents[i]);
    }
  }
  *left = unlink_one(uvctx__link_at(c, 0), uvctx__is_cancellable(parent));
  if (c->ctx.flags & UVCTX__TOP)
    uvctx__tops_remove(c->lp, &c->link);
  else if (c->ctx.flags & UVCTX__TOP_EXTRA)
    uvctx__tops_remove(c->lp, &c->extra->home.link);
  if (c->extra != NULL)
    uvctx__extra_free(c);

  /* Without handles, the memory goes now; with them, with the last close
   * callback. */
  if (!uvctx__has_handles(&c->ctx)) {
    free_block(c);
    return parent;
  }
  c->closing = 0;
  close_handles(c);
  return parent;
}

int uvctx_err(const uvctx_t *ctx) {
  if (ctx == NULL || uvctx__owner(ctx) == NULL)
    return 0;
  return uvctx__err_of(atomic_load_explicit(&uvctx__owner(ctx)->ctx.state,
                                            memory_order_acquire));
}

int uvctx_cause(const uvctx_t *ctx) {
  uint64_t state;

  if (ctx == NULL || uvctx__owner(ctx) == NULL)
    return 0;
  state = atomic_load_explicit(&uvctx__owner(ctx)->ctx.state,
                               memory_order_acquire);
  return uvctx__cause_of(state) != 0 ? uvctx__cause_of(state)
                                     : uvctx__err_of(state);
}

struct earliest {
  int found;
  uint64_t deadline;
};

/* Folds ctx's own deadline, if it has one, into e. A shutdown context has
 * one once its grace period has begun: its phase, stored after the
 * deadline, says so. */
static void fold_deadline(const uvctx_t *ctx, struct earliest *e) {
  const uvctx__deadline_t *d = uvctx__as_deadline(ctx);
  uint64_t t;

  if (ctx->kind == UVCTX__SHUTDOWN &&
      atomic_load_explicit(&uvctx__as_shutdown(ctx)->phase,
                           memory_order_acquire) < UVCTX__SHUTDOWN_STOPPING)
    return;
  t = atomic_load_explicit(&d->deadline, memory_order_relaxed);
  if (!e->found || t < e->deadline)
    e->deadline = t;
  e->found = 1;
}

static int visit_deadline(const uvctx_t *ctx, void *arg) {
  /* A without-cancel context hides the deadlines above it. */
  if (ctx->kind == UVCTX__WITHOUT_CANCEL)
    return UVCTX__WALK_PRUNE;
  if (uvctx__has_timer(ctx))
    fold_deadline(ctx, arg);
  return UVCTX__WALK_UP;
}

int uvctx_deadline(const uvctx_t *ctx, uint64_t *deadline_ms) {
  struct earliest e = {0, UINT64_MAX};

  if (ctx == NULL || deadline_ms == NULL)
    return UV_EINVAL;
  /* Each distinct ancestor once, however the graph above ctx is shaped. */
  uvctx__walk_up(ctx, visit_deadline, &e);
  if (!e.found)
    return 0;
  *deadline_ms = e.deadline;
  return 1;
}

uv_loop_t *uvctx_loop(const uvctx_t *ctx) {
  if (ctx == NULL || uvctx__owner(ctx) == NULL)
    return NULL;
  return uvctx__owner(ctx)->lp->loop;
}
