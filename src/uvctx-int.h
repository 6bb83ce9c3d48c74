/* Internal declarations shared by the sources of libuvctx.
 *
 * Ownership and locking, in one place:
 *
 * - A context's state word (err and cause) is atomic and written once, by the
 *   compare-and-swap that finishes the context. Anyone may read it.
 * - The tree (children lists of cancellable contexts) of one loop is guarded
 *   by that loop's tree_lock, so that any thread may cancel a subtree. A child
 *   on another loop sits in its parent's children list under the parent's
 *   loop's lock. Tree locks are never nested.
 * - Everything else that is not immutable (watch lists, the ready queue,
 *   timers, handles, the `flags` byte, the live count) belongs to the loop
 *   thread alone. Other threads reach it only through the per-loop mailbox,
 *   whose lock is a leaf: nothing else is locked while it is held.
 */
#ifndef UVCTX_INT_H
#define UVCTX_INT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "uvctx.h"

#define uvctx__container_of(ptr, type, field)                                 \
  ((type *)((char *)(ptr) - offsetof(type, field)))

enum uvctx__kind {
  UVCTX__BACKGROUND,
  UVCTX__TODO,
  UVCTX__CANCEL,
  UVCTX__DEADLINE,
  UVCTX__VALUE,
  UVCTX__WITHOUT_CANCEL
};

/* Bits of uvctx_t.flags (loop thread only). */
enum {
  /* The context is done and the loop has acted on it: timer stopped, done
   * signal sent, watches moved to the ready queue. */
  UVCTX__DELIVERED = 1
};

/* What a mailbox entry asks the loop to do (uvctx__cancel_t.mb_flags). */
enum {
  UVCTX__MB_CANCEL = 1, /* deliver a subtree cancelled from another thread */
  UVCTX__MB_RELEASE = 2 /* tear down a context released on another thread */
};

/* uvctx_watch_t.state: distinctive values, so that a watch that was never
 * registered is very unlikely to look pending. */
enum {
  UVCTX__WATCH_PENDING = 0x75637701, /* in its context's watch list */
  UVCTX__WATCH_DUE = 0x75637702,     /* in the loop's ready queue */
  UVCTX__WATCH_NEVER = 0x75637703,   /* on a context that is never done */
  UVCTX__WATCH_FINISHED = 0x75637704 /* ran, running or unwatched */
};

typedef struct uvctx__loop_s uvctx__loop_t;
typedef struct uvctx__cancel_s uvctx__cancel_t;

/* What every context has. One type per kind embeds it first. */
struct uvctx_s {
  _Atomic uint64_t state; /* see uvctx__pack(); only cancellables use it */
  atomic_uint refs;
  uint8_t kind;
  uint8_t flags;
  uvctx_t *parent; /* holds a reference; NULL for roots */
  /* The cancellable context whose state this one reports: itself when it is
   * cancellable, its nearest cancellable ancestor for a value context, NULL
   * when it can never be done. */
  uvctx__cancel_t *owner;
};

typedef struct {
  uvctx_t ctx;
  const void *key;
  void *value;
} uvctx__value_t;

struct uvctx__cancel_s {
  uvctx_t ctx;
  uvctx__loop_t *lp;
  /* Children lists: first_child is guarded by lp->tree_lock, the sibling
   * links by the tree_lock of the parent's loop. */
  uvctx__cancel_t *first_child;
  uvctx__cancel_t *next_sibling;
  uvctx__cancel_t *prev_sibling;
  /* Watches waiting for this context to be done (loop thread). */
  uvctx_watch_t *watch_head;
  uvctx_watch_t *watch_tail;
  uv_async_t *done_async; /* made by uvctx_done_async() */
  /* Mailbox link, guarded by lp->mailbox_lock. */
  uvctx__cancel_t *mb_next;
  unsigned int mb_flags;
};

typedef struct {
  uvctx__cancel_t cancel;
  int cause;                /* recorded when the deadline finishes it */
  _Atomic uint64_t deadline;
  uv_timer_t timer;
} uvctx__deadline_t;

/* Per-loop state, made with the first cancellable context of a loop and
 * closed with the last one. */
struct uvctx__loop_s {
  uv_loop_t *loop;
  uv_thread_t thread; /* the thread that runs the loop */
  uv_mutex_t tree_lock;
  uv_mutex_t mailbox_lock;
  uvctx__cancel_t *mailbox_head; /* guarded by mailbox_lock */
  uvctx__cancel_t *mailbox_tail;
  atomic_int mailbox_full;       /* a hint, read without the lock */
  int draining;                  /* loop thread: uvctx__drain_mailbox runs */
  uv_async_t mailbox;    /* unref'd: wakes the loop for another thread */
  uv_check_t catch_up;   /* unref'd: drains what arrived during a poll */
  uv_idle_t deliver;     /* runs due watch callbacks; active only when due */
  uvctx_watch_t *ready_head; /* due watches, in delivery order */
  uvctx_watch_t *ready_tail;
  uvctx_watch_t *batch_end;  /* last watch of the batch being delivered */
  size_t live;               /* cancellable contexts on this loop */
  int closing_handles;
  uvctx__loop_t *next;       /* registry link */
};

/* The state word: err in the low half, cause in the high half, so that one
 * atomic load gives both and they are always seen together. */
static inline uint64_t uvctx__pack(int err, int cause) {
  return (uint64_t)(uint32_t)err | ((uint64_t)(uint32_t)cause << 32);
}

static inline int uvctx__err_of(uint64_t state) {
  return (int)(uint32_t)(state & 0xffffffffu);
}

static inline int uvctx__cause_of(uint64_t state) {
  return (int)(uint32_t)(state >> 32);
}

static inline int uvctx__is_cancellable(const uvctx_t *ctx) {
  return ctx->kind == UVCTX__CANCEL || ctx->kind == UVCTX__DEADLINE;
}

static inline int uvctx__is_root(const uvctx_t *ctx) {
  return ctx->kind == UVCTX__BACKGROUND || ctx->kind == UVCTX__TODO;
}

static inline uvctx__cancel_t *uvctx__as_cancel(const uvctx_t *ctx) {
  return (uvctx__cancel_t *)ctx;
}

static inline uvctx__deadline_t *uvctx__as_deadline(const uvctx_t *ctx) {
  return (uvctx__deadline_t *)ctx;
}

static inline const uvctx__value_t *uvctx__as_value(const uvctx_t *ctx) {
  return (const uvctx__value_t *)ctx;
}

/* The cancellable context in whose children list c sits, if any. */
static inline uvctx__cancel_t *uvctx__cancel_parent(const uvctx__cancel_t *c) {
  return c->ctx.parent != NULL ? c->ctx.parent->owner : NULL;
}


/* alloc.c */
void *uvctx__malloc(size_t size);
void uvctx__free(void *ptr);

/* loop.c */
int uvctx__loop_get(uv_loop_t *loop, uvctx__loop_t **out);
void uvctx__loop_unref(uvctx__loop_t *lp);
int uvctx__on_loop_thread(const uvctx__loop_t *lp);
void uvctx__mailbox_post(uvctx__loop_t *lp, uvctx__cancel_t *c,
                         unsigned int what);
void uvctx__drain_mailbox(uvctx__loop_t *lp);

/* Loop thread: acts on what other threads posted before going on, so that a
 * release or a watch on the loop thread sees their cancels and releases
 * even when the loop has not polled since. */
static inline void uvctx__catch_up(uvctx__loop_t *lp) {
  if (atomic_load_explicit(&lp->mailbox_full, memory_order_relaxed))
    uvctx__drain_mailbox(lp);
}

/* context.c */
int uvctx__new_cancellable(uv_loop_t *loop, uvctx_t *parent, int kind,
                           uvctx__cancel_t **out);
void uvctx__destroy(uvctx__cancel_t *c);

/* cancel.c */
int uvctx__cancel(uvctx__cancel_t *c, int err, int cause);
void uvctx__deliver_subtree(uvctx__cancel_t *c);

/* timer.c */
void uvctx__timer_close(uvctx__deadline_t *d);

/* watch.c */
void uvctx__deliver(uvctx__cancel_t *c);
void uvctx__done_async_close(uvctx__cancel_t *c);
void uvctx__run_due_watches(uv_idle_t *idle);

#endif /* UVCTX_INT_H */
