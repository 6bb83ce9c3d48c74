/* Per-loop state: the registry that finds it, the mailbox through which other
 * threads hand work to the loop, and the idle handle that delivers due watch
 * callbacks.
 *
 * Why a mailbox and not one uv_async_t per context: libuv scans every
 * uv_async_t of a loop on every wakeup, so with one always-on async per
 * context each cancel would cost O(live contexts). One async per loop keeps a
 * cross-thread cancel O(1) in the number of contexts alive.
 *
 * Why an array of posts and not a list through the contexts: the link would
 * cost every context 8 bytes for what few of them ever need, and another
 * thread must not allocate (a cancel or release has no way to fail). The
 * arrays are the loop's: it grows them after a post found them full, and
 * finds the contexts of such posts by a walk of its trees, marked by their
 * mb_flags. */
#include <string.h>

#include "uvctx-int.h"

/* The loops that have contexts, so that a child of a root finds its loop's
 * state. Keyed by loop: a second loop gets its own entry, and an entry leaves
 * as soon as its loop has no context left. */
static uv_once_t registry_once = UV_ONCE_INIT;
static uv_mutex_t registry_lock;
static uvctx__loop_t *registry;

static void registry_init(void) {
  if (uv_mutex_init(&registry_lock) != 0)
    abort(); /* Only fails on exhausted system resources at start-up. */
}

uint64_t uvctx_now(void) { return uv_hrtime() / 1000000; }

UVCTX__THREAD_LOCAL char uvctx__thread_marker;

/* Posts a loop's mailbox holds before it first grows: plenty for the
 * cross-thread work of one loop turn in most programs. */
#define MAILBOX_START 64

static int posts_init(uvctx__posts_t *a, size_t cap) {
  a->at = uvctx__malloc(cap * sizeof(uvctx__cancel_t *));
  a->len = 0;
  a->cap = a->at != NULL ? cap : 0;
  return a->at != NULL ? 0 : UV_ENOMEM;
}

static void on_mailbox(uv_async_t *async) {
  uvctx__drain_mailbox(uvctx__container_of(async, uvctx__loop_t, mailbox), 1);
}

/* A post can land while libuv is past the mailbox in its scan of the async
 * handles, after the callback that made it (a user's async saying "released,
 * done") has run; if that callback closed the last handle keeping the loop
 * alive, uv_run would return with the post unseen. Checking after every poll
 * closes that window. */
static void on_check(uv_check_t *check) {
  uvctx__loop_t *lp = uvctx__container_of(check, uvctx__loop_t, catch_up);

  if (atomic_load_explicit(&lp->mailbox_full, memory_order_relaxed))
    uvctx__drain_mailbox(lp, 1);
}

/* The state of loop, or NULL if no context lives on it. */
uvctx__loop_t *uvctx__loop_find(const uv_loop_t *loop) {
  uvctx__loop_t *lp;

  uv_once(&registry_once, registry_init);
  uv_mutex_lock(&registry_lock);
  for (lp = registry; lp != NULL; lp = lp->next)
    if (lp->loop == loop)
      break;
  uv_mutex_unlock(&registry_lock);
  return lp;
}

int uvctx__loop_get(uv_loop_t *loop, uvctx__loop_t **out) {
  uvctx__loop_t *lp = uvctx__loop_find(loop);
  int err;

  if (lp != NULL) {
    *out = lp;
    return 0;
  }

  uv_once(&registry_once, registry_init);
  lp = uvctx__malloc(sizeof(*lp));
  if (lp == NULL)
    return UV_ENOMEM;
  *lp = (uvctx__loop_t){.loop = loop, .thread = uvctx__thread_id()};
  if (posts_init(&lp->posts, MAILBOX_START) != 0 ||
      posts_init(&lp->taking, MAILBOX_START) != 0) {
    err = UV_ENOMEM;
    goto fail_mailbox_lock;
  }
  uvctx__tree_lock_init(&lp->tree_lock);
  /* Never fails on glibc (a default mutex needs no resource), so no test
   * gets here; libuv's contract allows it. */
  err = uv_mutex_init(&lp->mailbox_lock);
  if (err != 0)
    goto fail_mailbox_lock;
  err = uv_async_init(loop, &lp->mailbox, on_mailbox);
  if (err != 0)
    goto fail_async;
  uv_unref((uv_handle_t *)&lp->mailbox);
  /* uv_check_init and uv_idle_init cannot fail. */
  uv_check_init(loop, &lp->catch_up);
  uv_check_start(&lp->catch_up, on_check);
  uv_unref((uv_handle_t *)&lp->catch_up);
  uv_idle_init(loop, &lp->deliver);

  uv_mutex_lock(&registry_lock);
  lp->next = registry;
  registry = lp;
  uv_mutex_unlock(&registry_lock);
  *out = lp;
  return 0;

fail_async:
  uv_mutex_destroy(&lp->mailbox_lock);
fail_mailbox_lock:
  uvctx__free(lp->posts.at);
  uvctx__free(lp->taking.at);
  uvctx__free(lp);
  return err;
}

static void on_loop_handle_closed(uv_handle_t *handle) {
  uvctx__loop_t *lp = handle->data;
  if (--lp->closing_handles > 0)
    return;
  uv_mutex_destroy(&lp->mailbox_lock);
  uvctx__free(lp->posts.at);
  uvctx__free(lp->taking.at);
  uvctx__free(lp);
}

/* Loop thread: the state has nothing left to do. */
static void loop_close(uvctx__loop_t *lp) {
  uvctx__loop_t **link;
  int i;

  uv_mutex_lock(&registry_lock);
  for (link = &registry; *link != lp; link = &(*link)->next)
    ;
  *link = lp->next;
  uv_mutex_unlock(&registry_lock);

  for (i = 0; i < 2; i++)
    while (lp->cache[i] != NULL) {
      void *block = lp->cache[i];
      lp->cache[i] = *(void **)block;
      uvctx__free(block);
    }
  lp->closing_handles = 3;
  lp->mailbox.data = lp;
  lp->catch_up.data = lp;
  lp->deliver.data = lp;
  uv_close((uv_handle_t *)&lp->mailbox, on_loop_handle_closed);
  uv_close((uv_handle_t *)&lp->catch_up, on_loop_handle_closed);
  uv_close((uv_handle_t *)&lp->deliver, on_loop_handle_closed);
}

/* The ways of uvctx__block_alloc and uvctx__block_free past the cache. */
void *uvctx__block_alloc_slow(uvctx__loop_t *lp, size_t size) {
  void *block = uvctx__malloc(size);

  if (block == NULL) {
    uvctx__loop_close_if_idle(lp);
    return NULL;
  }
  lp->blocks++;
  return block;
}

void uvctx__block_free_slow(uvctx__loop_t *lp, void *block, size_t size) {
  int class = uvctx__cache_class(size);

  if (class >= 0 && lp->ncache[class] < UVCTX__CACHE_MAX) {
    *(void **)block = lp->cache[class];
    lp->cache[class] = block;
    lp->ncache[class]++;
  } else {
    uvctx__free(block);
  }
  if (--lp->blocks == 0 && lp->observer == NULL)
    loop_close(lp);
}

/* Loop thread: the state goes once no context's memory and no observer is
 * left. */
void uvctx__loop_close_if_idle(uvctx__loop_t *lp) {
  if (lp->blocks == 0 && lp->observer == NULL)
    loop_close(lp);
}

/* Under lp's mailbox lock, c with requests in its mb_flags: in the posts
 * array if there is room, else left for the drain's walk to find. */
static void enqueue(uvctx__loop_t *lp, uvctx__cancel_t *c) {
  if (lp->posts.len < lp->posts.cap) {
    lp->posts.at[lp->posts.len++] = c;
    c->ctx.mb_flags |= UVCTX__MB_QUEUED;
  } else {
    lp->overflow = 1;
  }
}

/* Any thread. The caller guarantees that c stays alive until the loop has
 * taken the entry: every flag but UVCTX__MB_RELEASE comes with a reference
 * the loop drops (UNREF with UVCTX__REFS_HANDED, see refs.c), and a RELEASE
 * entry is for a context nobody references. Returns 0 if `what` was already
 * pending (the loop will act once, so the caller keeps its reference), 1 if
 * it was added. The async is sent under the lock so that the loop cannot
 * tear lp down between the post and the send. */
int uvctx__mailbox_post(uvctx__loop_t *lp, uvctx__cancel_t *c,
                        unsigned int what) {
  int added;

  uv_mutex_lock(&lp->mailbox_lock);
  added = uvctx__mailbox_post_locked(lp, c, what);
  uv_mutex_unlock(&lp->mailbox_lock);
  return added;
}

/* uvctx__mailbox_post(), the caller holding lp's mailbox lock. */
int uvctx__mailbox_post_locked(uvctx__loop_t *lp, uvctx__cancel_t *c,
                               unsigned int what) {
  int added = (c->ctx.mb_flags & what) == 0;
  int fresh = c->ctx.mb_flags == 0;

  c->ctx.mb_flags |= what;
  if (fresh)
    enqueue(lp, c);
  atomic_store_explicit(&lp->mailbox_full, 1, memory_order_relaxed);
  uv_async_send(&lp->mailbox);
  return added;
}

/* A cancel made on another thread, at c itself (it read the clock), is
 * measured from then to now, when the loop acts on it. */
static void note_cancel(uvctx__cancel_t *c) {
  uvctx__counts_t *st = &c->lp->stats;
  uint64_t state = atomic_load_explicit(&c->ctx.state, memory_order_acquire);

  st->handoff_cancels++;
  if (uvctx__via_of(state) == UVCTX_VIA_SELF)
    uvctx__note_lag(st->cancel_lag, &st->cancel_lag_sum_ns,
                    uv_hrtime() - uvctx__done_ns(c));
}

static void act(uvctx__cancel_t *c, unsigned int what, unsigned int unref) {
  c->lp->stats.handoffs++;
  if (what & UVCTX__MB_RELEASE) {
    unsigned int left;
    uvctx_t *parent = uvctx__destroy(c, &left);
    uvctx__left(parent, left);
    uvctx_release(parent);
    return;
  }
  if (what & UVCTX__MB_CANCEL) {
    note_cancel(c);
    uvctx__deliver_subtree(c);
    uvctx_release(&c->ctx);
  }
  if (what & UVCTX__MB_SHUTDOWN) {
    uvctx__shutdown_start_grace(uvctx__as_shutdown(&c->ctx));
    uvctx_release(&c->ctx);
  }
  if (what & UVCTX__MB_DRAIN) {
    uvctx__drain_check(c);
    uvctx_release(&c->ctx);
  }
  /* Last: the last reference handed over may end c. */
  while (unref-- > 0)
    uvctx_release(&c->ctx);
}

/* Under lp's tree lock (each_live): a context posted while the posts array
 * was full goes into it now, if there is room. */
static void enqueue_unqueued(uvctx__cancel_t *c, void *arg) {
  uvctx__loop_t *lp = arg;

  uv_mutex_lock(&lp->mailbox_lock);
  if (c->ctx.mb_flags != 0 && !(c->ctx.mb_flags & UVCTX__MB_QUEUED))
    enqueue(lp, c);
  uv_mutex_unlock(&lp->mailbox_lock);
}

/* Loop thread, `taking` empty: both arrays twice as large, the posts copied
 * over under the lock. If memory is short they stay as they are: an overflow
 * costs a walk, nothing else. */
static void grow(uvctx__loop_t *lp) {
  uvctx__posts_t posts, taking;

  if (posts_init(&posts, lp->posts.cap * 2) != 0 ||
      posts_init(&taking, lp->posts.cap * 2) != 0) {
    uvctx__free(posts.at);
    return;
  }
  uvctx__free(lp->taking.at);
  lp->taking = taking;
  uv_mutex_lock(&lp->mailbox_lock);
  posts.len = lp->posts.len;
  memcpy(posts.at, lp->posts.at, posts.len * sizeof(uvctx__cancel_t *));
  taking = lp->posts; /* now the old posts array */
  lp->posts = posts;
  uv_mutex_unlock(&lp->mailbox_lock);
  uvctx__free(taking.at);
}

/* Loop thread: acts on everything other threads have posted, in order (the
 * posts that found the array full, in the order of the walk that finds
 * them). Acting may post more (a release drops a reference) and may be
 * reached again from inside (uvctx_release catches up): the outermost call
 * does it all. may_grow: called by the loop, not from inside a function of
 * the API, which must not allocate. */
void uvctx__drain_mailbox(uvctx__loop_t *lp, int may_grow) {
  uvctx__posts_t taken;
  int overflow;
  unsigned int what, unref;

  if (lp->draining)
    return;
  lp->draining = 1;
  for (;;) {
    uv_mutex_lock(&lp->mailbox_lock);
    taken = lp->posts; /* lp->taking, empty, until taken is acted on */
    lp->posts = lp->taking;
    overflow = lp->overflow;
    lp->overflow = 0;
    atomic_store_explicit(&lp->mailbox_full, 0, memory_order_relaxed);
    uv_mutex_unlock(&lp->mailbox_lock);
    if (taken.len == 0 && !overflow) {
      lp->taking = taken;
      break;
    }

    for (size_t i = 0; i < taken.len; i++) {
      uvctx__cancel_t *c = taken.at[i];

      uv_mutex_lock(&lp->mailbox_lock);
      what = c->ctx.mb_flags & ~UVCTX__MB_QUEUED;
      c->ctx.mb_flags = 0;
      unref = what & UVCTX__MB_UNREF ? uvctx__refs_take_handed(c) : 0;
      uv_mutex_unlock(&lp->mailbox_lock);
      act(c, what, unref);
    }
    taken.len = 0;
    lp->taking = taken;
    if (overflow) {
      if (may_grow)
        grow(lp);
      uvctx__each_live(lp, enqueue_unqueued, lp);
    }
  }
  lp->draining = 0;
}
