/* Internal declarations shared by the sources of libuvctx.
 *
 * Ownership and locking, in one place:
 *
 * - A context's state word (err and cause) is atomic and written once, by the
 *   compare-and-swap that finishes the context. Anyone may read it.
 * - The tree (children lists of cancellable contexts, and an any-context's
 *   walk_link, a walk's scratch) of one loop is guarded by that loop's
 *   tree_lock, so that any thread may cancel a subtree. A child on another
 *   loop sits in its parent's children list under the parent's loop's lock.
 *   Tree locks are never nested. The loop thread takes its own loop's without
 *   a locked instruction (treelock.c).
 * - Everything else that is not immutable (watch lists, the ready queue,
 *   timers, handles, the `flags` byte, the tops) belongs to the loop
 *   thread alone. Other threads reach it only through the per-loop mailbox,
 *   whose lock is a leaf: nothing else is locked while it is held.
 */
#ifndef UVCTX_INT_H
#define UVCTX_INT_H

#include <sched.h>
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
  UVCTX__VALUE,
  UVCTX__WITHOUT_CANCEL,
  /* Cancellable kinds from here on. */
  UVCTX__CANCEL,
  UVCTX__DEADLINE,
  UVCTX__SIGNAL,
  UVCTX__ANY,
  UVCTX__SHUTDOWN
};

/* Bits of uvctx_t.flags (loop thread only). */
enum {
  /* The context is done and the loop has acted on it: timer stopped, done
   * signal sent, watches moved to the ready queue. */
  UVCTX__DELIVERED = 1,
  /* A cancellable context that no other thread takes a reference to without
   * holding one (uvctx__try_retain never sees it): see refs.c. */
  UVCTX__OWN_REFS = 2,
  /* Every parent of the context with a cancellable owner is on its loop, so
   * whoever writes its state holds that loop's tree lock (cancel.c). */
  UVCTX__ONE_LOOP = 4,
  /* The context is one of its loop's tops (live.c), by its own link, or by
   * the home link of its extra block. */
  UVCTX__TOP = 8,
  UVCTX__TOP_EXTRA = 16
};

/* What a mailbox entry asks the loop to do (uvctx_t.mb_flags). Every
 * flag but RELEASE carries a reference to the context. */
enum {
  UVCTX__MB_CANCEL = 1,   /* deliver a subtree cancelled from another thread */
  UVCTX__MB_RELEASE = 2,  /* tear down a context released on another thread */
  UVCTX__MB_DRAIN = 4,    /* its last child went on another thread */
  UVCTX__MB_SHUTDOWN = 8, /* start the grace timer of a shutdown context */
  UVCTX__MB_UNREF = 16,   /* take back references dropped below 0 (refs.c) */
  /* Not a request: the context is in the loop's posts array. A context with
   * requests and without it is found by the drain's walk (loop.c). */
  UVCTX__MB_QUEUED = 32
};

/* uvctx_watch_t.state: distinctive values, so that a watch that was never
 * registered is very unlikely to look pending. */
enum {
  UVCTX__WATCH_PENDING = 0x75637701, /* in its context's watch list */
  UVCTX__WATCH_DUE = 0x75637702,     /* in the loop's ready queue */
  UVCTX__WATCH_NEVER = 0x75637703,   /* on a context that is never done */
  UVCTX__WATCH_FINISHED = 0x75637704,/* ran, running or unwatched */
  UVCTX__WATCH_DRAINING = 0x75637705 /* in its context's drain list */
};

/* A spin lock that yields. No one blocks while holding it. */
typedef atomic_flag uvctx__lock_t;

static inline void uvctx__lock(uvctx__lock_t *lock) {
  while (atomic_flag_test_and_set_explicit(lock, memory_order_acquire))
    sched_yield();
}

static inline void uvctx__unlock(uvctx__lock_t *lock) {
  atomic_flag_clear_explicit(lock, memory_order_release);
}

/* A loop's tree lock (treelock.c): taken on every create, cancel and
 * release, by the loop thread almost always, and by another thread only for a
 * cancel, a release or a child across loops. So it is asymmetric: the loop
 * thread enters with plain stores and loads, and the rare other thread pays
 * for both, with a process-wide memory barrier (membarrier(2)). Locked
 * instructions were a third of a short-lived context's cost. Where the kernel
 * has no such barrier, every thread takes the spin lock. */
typedef struct {
  uvctx__lock_t remote; /* other threads, and the loop thread's slow path */
  atomic_int loop_in;   /* the loop thread is inside without `remote` */
  atomic_int remote_in; /* a holder of `remote` is inside, or waits to be */
  /* The barrier is there. If not, remote_in stays 1, which closes the loop
   * thread's way. */
  int asymmetric;
} uvctx__tree_lock_t;

typedef struct uvctx__loop_s uvctx__loop_t;
typedef struct uvctx__cancel_s uvctx__cancel_t;
typedef struct uvctx__link_s uvctx__link_t;

/* What every context has. One type per kind embeds it first. */
struct uvctx_s {
  _Atomic uint64_t state; /* see uvctx__pack(); only cancellables use it */
  /* References, counted in two places for a cancellable context: those its
   * loop thread takes and drops, in its local_refs without atomic
   * read-modify-writes, and those of other threads here, as a signed count
   * in bits 2-31 (UVCTX__REF each). When local_refs comes to 0, its loop
   * thread sets UVCTX__REFS_SHARED (bit 0) here: from then on every
   * reference is counted here, and the count coming to 0 is the end. Value
   * contexts are born shared. See refs.c. */
  atomic_uint refs;
  uint8_t kind;
  uint8_t flags;
  uint8_t mb_flags; /* UVCTX__MB_*, guarded by the loop's mailbox_lock */
  /* One bit per graph walk under way that has visited it (ancestors.c). */
  _Atomic uint8_t seen;
  /* Holds a reference; NULL for roots. An any-context holds its other
   * parents in uvctx__any_t. */
  uvctx_t *parent;
  uint64_t id; /* uvctx_id(): set at birth, never changes (provenance.c) */
};

typedef struct {
  uvctx_t ctx;
  const void *key;
  void *value;
  uvctx__cancel_t *owner; /* see uvctx__owner() */
} uvctx__value_t;

/* A context's place in one parent's list of children. Neither whose place
 * it is nor whose list it is in is stored for the one link of most contexts:
 * the child is the context the link is part of (uvctx__link_child), the
 * parent that child's owner (uvctx__link_parent). An any-context's links, one
 * per parent, are uvctx__any_link_t, and say so in bit 0 of prev_bits. */
struct uvctx__link_s {
  uvctx__link_t *next;
  uintptr_t prev_bits; /* the previous link (NULL for the first), and
                          UVCTX__ANY_LINK */
};

#define UVCTX__ANY_LINK ((uintptr_t)1)

/* One of an any-context's links, or the home link of an extra block: a link
 * that names its child. */
typedef struct {
  uvctx__link_t link;
  uvctx__cancel_t *child;
} uvctx__any_link_t;

/* What few cancellable contexts use, in a block of its own made on first use
 * (loop thread), so that the many that never do are smaller: the drains
 * waiting for the context to be done and childless (a ring, as watches), the
 * done signal, and for a child of a parent on another loop, its place among
 * its own loop's tops (live.c). */
typedef struct {
  uvctx_watch_t *drains;
  /* uvctx_done_async(), in a block of its own (128 bytes, and the rarest):
   * NULL until asked for. */
  uv_async_t *done_async;
  uvctx__any_link_t home; /* in the loop's tops if UVCTX__TOP_EXTRA */
} uvctx__extra_t;

struct uvctx__cancel_s {
  uvctx_t ctx;
  uvctx__loop_t *lp;
  uvctx__link_t *first_child; /* guarded by lp->tree_lock */
  union {
    /* Contexts whose parent this is, of every kind: uvctx_drain() waits for
     * them to go. */
    atomic_uint kids;
    /* Once it is torn down (none is left then: each holds a reference), its
     * handles whose close callback is pending. */
    unsigned int closing;
  };
  /* The loop thread's references (see uvctx_t.refs). Atomic only so that
   * uvctx_dump on another loop may read it: the loop thread loads and stores
   * it without a locked instruction. */
  atomic_uint local_refs;
  /* Watches waiting for this context to be done (loop thread): a ring, and
   * this is its last watch (NULL when there is none), so that one pointer
   * gives both ends. */
  uvctx_watch_t *watches;
  uvctx__extra_t *extra; /* made on first use; NULL until then */
  /* Its place under its parent (see uvctx__link_at), or for a context that
   * has no cancellable parent, among its loop's tops (live.c). */
  uvctx__link_t link;
  /* Provenance, written once by the thread whose event finished this
   * context itself (its state says UVCTX_VIA_SELF), right after the
   * compare-and-swap that did it: the call site of a cancel call, then the
   * time, published by the release store of done_ns (never 0 once set).
   * A context finished from above records nothing here: its origin is found
   * by going up the way the cancel came (provenance.c). */
  const char *site;
  _Atomic uint64_t done_ns;
};

/* A context that also has a uv_timer_t of its own: deadline and shutdown
 * (which has a deadline, the end of its grace period, once its phase is
 * UVCTX__SHUTDOWN_STOPPING). */
typedef struct {
  uvctx__cancel_t cancel;
  _Atomic uint64_t deadline;
  uv_timer_t timer;
} uvctx__deadline_t;

/* The cause a deadline or shutdown context's timer finishes it with lives in
 * the timer's data field, which libuv leaves to the handle's owner, until
 * the handle is closed (close_handle then points it at the context): a field
 * of its own would take 8 bytes, with padding, in every cancellable context.
 * Written before the timer can fire, or for a shutdown before its phase is
 * published; read by whoever saw that. */
static inline int uvctx__timer_cause(const uvctx__deadline_t *d) {
  return (int)(intptr_t)d->timer.data;
}

static inline void uvctx__set_timer_cause(uvctx__deadline_t *d, int cause) {
  d->timer.data = (void *)(intptr_t)cause;
}

/* The signal handles of a signal or shutdown context. */
typedef struct {
  atomic_int received; /* the first signal that arrived */
  unsigned int count;
  uv_signal_t *handles; /* count of them, in the context's block */
  /* Their numbers, after the handles: a stopped uv_signal_t forgets its
   * number (libuv zeroes signum), and a context born done never starts
   * its handles. Immutable: uvctx_format reads them from any thread. */
  const int *signums;
} uvctx__signals_t;

/* The bytes a signal or shutdown context's block adds for count signals. */
static inline size_t uvctx__signals_size(size_t count) {
  return count * (sizeof(uv_signal_t) + sizeof(int));
}

typedef struct {
  uvctx__cancel_t cancel;
  uvctx__signals_t signals;
} uvctx__signal_t;

/* The phases of a shutdown context. BEGINNING and the wait for the context
 * to be done after STOPPED are short: one thread is between two steps. */
enum {
  UVCTX__SHUTDOWN_RUNNING,
  UVCTX__SHUTDOWN_BEGINNING,
  UVCTX__SHUTDOWN_STOPPING, /* phase 1: the grace period */
  UVCTX__SHUTDOWN_STOPPED   /* phase 2: the context is being finished */
};

typedef struct {
  uvctx__deadline_t deadline;
  uvctx__signals_t signals;
  uint64_t grace_ms;
  int grace_cause;            /* the cause shutdown began with */
  atomic_int phase;           /* UVCTX__SHUTDOWN_* */
  uvctx__cancel_t *stopping;  /* its child; cleared when that goes */
} uvctx__shutdown_t;

typedef struct {
  uvctx__cancel_t cancel; /* its link is unused: links has one per parent */
  /* The parent (its owner) whose cancel finished it, stored by whoever
   * finished it through a parent, right after doing so (provenance.c). */
  _Atomic(uvctx__cancel_t *) via;
  /* The link a walk of the tree came in by (walk scratch, tree_lock): an
   * any-context has one per parent. Other contexts have one link, their
   * own, and keep no such field (uvctx__walk_in). */
  uvctx__link_t *walk_link;
  size_t count;
  uvctx_t **parents;        /* count of them, in the context's block */
  uvctx__any_link_t *links; /* count of them, in the context's block */
} uvctx__any_t;

static inline int uvctx__link_names_child(const uvctx__link_t *l) {
  return (l->prev_bits & UVCTX__ANY_LINK) != 0;
}

static inline uvctx__link_t *uvctx__link_prev(const uvctx__link_t *l) {
  return (uvctx__link_t *)(l->prev_bits & ~UVCTX__ANY_LINK);
}

static inline void uvctx__link_set_prev(uvctx__link_t *l, uvctx__link_t *prev) {
  l->prev_bits = (uintptr_t)prev | (l->prev_bits & UVCTX__ANY_LINK);
}

static inline uvctx__cancel_t *uvctx__link_child(const uvctx__link_t *l) {
  if (uvctx__link_names_child(l))
    return ((const uvctx__any_link_t *)l)->child;
  return uvctx__container_of(l, uvctx__cancel_t, link);
}

/* A doubly linked list of links whose head is *head: l first, and l out. */
static inline void uvctx__list_push(uvctx__link_t **head, uvctx__link_t *l) {
  uvctx__link_set_prev(l, NULL);
  l->next = *head;
  if (*head != NULL)
    uvctx__link_set_prev(*head, l);
  *head = l;
}

static inline void uvctx__list_remove(uvctx__link_t **head,
                                      uvctx__link_t *l) {
  uvctx__link_t *prev = uvctx__link_prev(l);

  if (prev != NULL)
    prev->next = l->next;
  else
    *head = l->next;
  if (l->next != NULL)
    uvctx__link_set_prev(l->next, prev);
}

/* The ways a context can be finished, reason and via (see uvctx__pack). */
#define UVCTX__HOW_COUNT 32

/* A loop's counts (observe.c), plain: only its thread changes them (other
 * threads' hand-offs are counted as the loop takes them from its mailbox).
 * What uvctx_loop_stats() can work out when asked (live contexts by kind,
 * by a walk of its trees (live.c); released; finished by reason and by via) is
 * not counted, to keep the hot paths short. */
typedef struct {
  uint64_t created;
  uint64_t finished[UVCTX__HOW_COUNT]; /* by uvctx__how_of() */
  uint64_t watches_run;
  uint64_t handoffs;
  uint64_t handoff_cancels;
  uint64_t deadline_lag[UVCTX_LAG_BUCKETS];
  uint64_t deadline_lag_sum_ns;
  uint64_t cancel_lag[UVCTX_LAG_BUCKETS];
  uint64_t cancel_lag_sum_ns;
} uvctx__counts_t;

/* An array of a loop's mailbox (see uvctx__loop_s). */
typedef struct {
  uvctx__cancel_t **at;
  size_t len;
  size_t cap;
} uvctx__posts_t;

/* Per-loop state, made with the first cancellable context of a loop and
 * closed with the last one. */
struct uvctx__loop_s {
  uv_loop_t *loop;
  const void *thread; /* uvctx__thread_id() of the thread that runs it */
  uvctx__tree_lock_t tree_lock;
  uv_mutex_t mailbox_lock;
  /* The mailbox: contexts other threads posted, in order, each once
   * (UVCTX__MB_QUEUED), what for in their mb_flags. Posters fill `posts`,
   * under mailbox_lock; the loop swaps it with `taking` and acts on what it
   * took. A post that finds `posts` full marks its context by mb_flags alone
   * and sets `overflow`, and the loop finds it by a walk of its trees. So a
   * context needs no mailbox link of its own, and no other thread allocates:
   * the arrays are the loop's to grow, after an overflow. */
  uvctx__posts_t posts;
  int overflow;
  uvctx__posts_t taking; /* loop thread */
  atomic_int mailbox_full;       /* a hint, read without the lock */
  int draining;                  /* loop thread: uvctx__drain_mailbox runs */
  uv_async_t mailbox;    /* unref'd: wakes the loop for another thread */
  uv_check_t catch_up;   /* unref'd: drains what arrived during a poll */
  uv_idle_t deliver;     /* runs due watch callbacks; active only when due */
  uvctx_watch_t *ready_head; /* due watches, in delivery order */
  uvctx_watch_t *ready_tail;
  uvctx_watch_t *batch_end;  /* last watch of the batch being delivered */
  /* The contexts of this loop that hang under no parent on it (loop
   * thread): from them, its trees reach every other one (live.c). */
  uvctx__link_t *tops;
  size_t nany;               /* its any-contexts */
  /* Blocks of this loop's contexts not yet freed, counting those whose
   * handles are still closing: the state closes when none is left. */
  size_t blocks;
  /* Freed blocks of the two common sizes, kept for reuse: contexts are
   * freed in close callbacks, in batches per loop turn, and handing each
   * batch back to malloc makes glibc grow and trim its heap every turn. */
  void *cache[2];
  size_t ncache[2];
  int closing_handles;
  uvctx__loop_t *next;       /* registry link */
  /* uvctx_loop_stats() and uvctx_observe() (observe.c), loop thread. While
   * an observer is set the state stays, even with no context left. */
  uvctx__counts_t stats;
  uvctx_observe_cb observer;
  void *observer_data;
};

/* The state word, so that one atomic load gives all of it and its parts are
 * always seen together: err (UV_ECANCELED or UV_ETIMEDOUT, which fit 16 bits
 * with their sign) in bits 0-15, the reason of the event that finished the
 * origin (uvctx_done_reason_t) in bits 16-18, how it came to this context
 * (uvctx_via_t) in bits 19-20, and the cause in the high half. A cancel
 * copies its context's state down the tree with only the "via" changed.
 * Reason and via side by side are the index of the loop's finished count
 * (UVCTX__HOW_COUNT of them): one increment per context finished. */
#define UVCTX__VIA_SHIFT 19
#define UVCTX__VIA_MASK ((uint64_t)3 << UVCTX__VIA_SHIFT)
_Static_assert(UVCTX_DONE_REASON_COUNT <= 8 && UVCTX_VIA_COUNT <= 4,
               "reason and via fit their bits of the state word");

static inline uint64_t uvctx__pack(int err, int cause, int reason) {
  return (uint64_t)(uint16_t)err | ((uint64_t)(unsigned)reason << 16) |
         ((uint64_t)(uint32_t)cause << 32);
}

static inline int uvctx__err_of(uint64_t state) {
  return (int)(int16_t)(uint16_t)(state & 0xffffu);
}

static inline int uvctx__reason_of(uint64_t state) {
  return (int)((state >> 16) & 7u);
}

static inline int uvctx__via_of(uint64_t state) {
  return (int)((state & UVCTX__VIA_MASK) >> UVCTX__VIA_SHIFT);
}

/* The index of finished[]: reason + 8 * via. */
static inline unsigned int uvctx__how_of(uint64_t state) {
  return (unsigned int)(state >> 16) & (UVCTX__HOW_COUNT - 1);
}

static inline uint64_t uvctx__with_via(uint64_t state, int via) {
  return (state & ~UVCTX__VIA_MASK) |
         ((uint64_t)(unsigned)via << UVCTX__VIA_SHIFT);
}

static inline int uvctx__cause_of(uint64_t state) {
  return (int)(uint32_t)(state >> 32);
}

static inline int uvctx__is_cancellable(const uvctx_t *ctx) {
  return ctx->kind >= UVCTX__CANCEL;
}

/* Deadline, signal and shutdown contexts: those with handles of their own
 * (one at least), which stop when done and close when torn down. */
static inline int uvctx__has_handles(const uvctx_t *ctx) {
  return ctx->kind != UVCTX__CANCEL && ctx->kind != UVCTX__ANY;
}

static inline int uvctx__has_timer(const uvctx_t *ctx) {
  return ctx->kind == UVCTX__DEADLINE || ctx->kind == UVCTX__SHUTDOWN;
}

static inline int uvctx__is_root(const uvctx_t *ctx) {
  return ctx->kind == UVCTX__BACKGROUND || ctx->kind == UVCTX__TODO;
}

/* The cancellable context whose state ctx reports: itself when it is
 * cancellable, its nearest cancellable ancestor for a value context (which
 * keeps it), NULL when it can never be done. Not a field of every context:
 * most are cancellable, and for them it would only point to themselves. */
static inline uvctx__cancel_t *uvctx__owner(const uvctx_t *ctx) {
  if (ctx->kind >= UVCTX__CANCEL)
    return (uvctx__cancel_t *)ctx;
  if (ctx->kind == UVCTX__VALUE)
    return ((const uvctx__value_t *)ctx)->owner;
  return NULL;
}

/* The parent l was made for (a value context, perhaps): its child's parent,
 * or an any-context's parent of the same index. NULL for the tops' links
 * (live.c), which were made for none. */
static inline const uvctx_t *uvctx__link_parent_ctx(const uvctx__link_t *l) {
  const uvctx__cancel_t *child = uvctx__link_child(l);

  if (child->ctx.kind != UVCTX__ANY) /* its own link, or its home link */
    return l == &child->link ? child->ctx.parent : NULL;
  if (uvctx__link_names_child(l))
    return ((const uvctx__any_t *)child)
        ->parents[(const uvctx__any_link_t *)l -
                  ((const uvctx__any_t *)child)->links];
  return NULL; /* an any-context's own link: it has none in a parent's list */
}

/* The context in whose list of children l is: the owner of the link's
 * parent. NULL for a link with no cancellable owner above it, which is in no
 * such list (uvctx__link_t), and for the tops' links. */
static inline uvctx__cancel_t *uvctx__link_parent(const uvctx__link_t *l) {
  const uvctx_t *parent = uvctx__link_parent_ctx(l);

  return parent != NULL ? uvctx__owner(parent) : NULL;
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

static inline uvctx__any_t *uvctx__as_any(const uvctx_t *ctx) {
  return (uvctx__any_t *)ctx;
}

static inline uvctx__shutdown_t *uvctx__as_shutdown(const uvctx_t *ctx) {
  return (uvctx__shutdown_t *)ctx;
}

/* The places of c in its parents' lists of children: one, or one per
 * parent of an any-context. */
static inline size_t uvctx__link_count(const uvctx__cancel_t *c) {
  return c->ctx.kind == UVCTX__ANY ? ((const uvctx__any_t *)c)->count : 1;
}

static inline uvctx__link_t *uvctx__link_at(const uvctx__cancel_t *c,
                                            size_t i) {
  if (c->ctx.kind == UVCTX__ANY)
    return &((const uvctx__any_t *)c)->links[i].link;
  return (uvctx__link_t *)&c->link;
}

/* Walks down the tree (cancel.c, dump.c) go back up the way they came in,
 * without a stack: uvctx__walk_enter notes the link they entered a child by,
 * uvctx__walk_in gives it back. Tree lock held. */
static inline void uvctx__walk_enter(const uvctx__link_t *in) {
  if (uvctx__link_names_child(in))
    ((uvctx__any_t *)uvctx__link_child(in))->walk_link = (uvctx__link_t *)in;
}

static inline uvctx__link_t *uvctx__walk_in(const uvctx__cancel_t *c) {
  if (c->ctx.kind == UVCTX__ANY)
    return ((const uvctx__any_t *)c)->walk_link;
  return (uvctx__link_t *)&c->link;
}

/* How a cancel from a parent on loop lp reaches child (uvctx_via_t). */
static inline int uvctx__via_to(const uvctx__loop_t *lp,
                                const uvctx__cancel_t *child) {
  if (child->ctx.kind == UVCTX__ANY)
    return UVCTX_VIA_ANY;
  return child->lp != lp ? UVCTX_VIA_LOOP : UVCTX_VIA_PARENT;
}

/* The signals of a signal or shutdown context, NULL for other kinds. */
static inline uvctx__signals_t *uvctx__signals_of(const uvctx_t *ctx) {
  if (ctx->kind == UVCTX__SIGNAL)
    return &((uvctx__signal_t *)ctx)->signals;
  if (ctx->kind == UVCTX__SHUTDOWN)
    return &((uvctx__shutdown_t *)ctx)->signals;
  return NULL;
}

/* A watch that is registered and not yet finished. */
static inline int uvctx__watch_pending(const uvctx_watch_t *w) {
  return w->state == UVCTX__WATCH_PENDING || w->state == UVCTX__WATCH_DUE ||
         w->state == UVCTX__WATCH_NEVER || w->state == UVCTX__WATCH_DRAINING;
}

/* ancestors.c: walks of the graph above an any-context, each context
 * visited once. A visitor says whether the walk goes on above the context. */
enum {
  UVCTX__WALK_UP,    /* go on to its parents */
  UVCTX__WALK_PRUNE, /* nothing above it matters */
  UVCTX__WALK_STOP   /* found: the walk ends */
};
typedef int (*uvctx__visit_cb)(const uvctx_t *ctx, void *arg);

/* Calls cb on ctx and its ancestors, pre-order, depth first, parents in
 * order, each once; 1 if cb stopped the walk. Any thread. */
int uvctx__walk_ancestors(const uvctx_t *ctx, uvctx__visit_cb cb, void *arg);

/* Calls cb on ctx and its ancestors, nearest first: a plain loop up the
 * chain, and from the first any-context on, uvctx__walk_ancestors(). Inline,
 * so that each lookup's cb is inlined in its chain loop, the hot path. */
static inline int uvctx__walk_up(const uvctx_t *ctx, uvctx__visit_cb cb,
                                 void *arg) {
  for (; !uvctx__is_root(ctx); ctx = ctx->parent) { /* a chain ends at one */
    if (ctx->kind == UVCTX__ANY)
      return uvctx__walk_ancestors(ctx, cb, arg);
    switch (cb(ctx, arg)) {
    case UVCTX__WALK_STOP:
      return 1;
    case UVCTX__WALK_PRUNE:
      return 0;
    default:
      break;
    }
  }
  return 0;
}

/* The bits of uvctx_t.seen, one per walk under way. */
#define UVCTX__WALK_BITS_MASK 0xffu
unsigned int uvctx__mark_acquire(void);
void uvctx__mark_release(unsigned int bit);

/* Marks ctx for the walk that owns bit: 1 if it was not marked yet. */
static inline int uvctx__mark(const uvctx_t *ctx, unsigned int bit) {
  return !(atomic_fetch_or_explicit(&((uvctx_t *)ctx)->seen, (uint8_t)bit,
                                    memory_order_relaxed) &
           bit);
}

/* Unmarks ctx: 1 if it was marked. */
static inline int uvctx__unmark(const uvctx_t *ctx, unsigned int bit) {
  return (atomic_fetch_and_explicit(&((uvctx_t *)ctx)->seen,
                                    (uint8_t)~bit, memory_order_relaxed) &
          bit) != 0;
}

/* alloc.c */
void *uvctx__malloc(size_t size);
void uvctx__free(void *ptr);

/* loop.c */
int uvctx__loop_get(uv_loop_t *loop, uvctx__loop_t **out);
uvctx__loop_t *uvctx__loop_find(const uv_loop_t *loop);
void *uvctx__block_alloc_slow(uvctx__loop_t *lp, size_t size);
void uvctx__block_free_slow(uvctx__loop_t *lp, void *block, size_t size);

/* The blocks a loop keeps for reuse (see uvctx__loop_t.cache): those of plain
 * cancel and deadline contexts, up to UVCTX__CACHE_MAX of each. */
#define UVCTX__CACHE_MAX 1024

static inline int uvctx__cache_class(size_t size) {
  if (size == sizeof(uvctx__cancel_t))
    return 0;
  if (size == sizeof(uvctx__deadline_t))
    return 1;
  return -1;
}

/* Loop thread: memory for a context of lp (NULL if there is none; a state
 * that was made for this context alone then closes again). Inline: a block
 * from the cache is on every constructor's way. */
static inline void *uvctx__block_alloc(uvctx__loop_t *lp, size_t size) {
  int class = uvctx__cache_class(size);
  void *block;

  if (class < 0 || lp->cache[class] == NULL)
    return uvctx__block_alloc_slow(lp, size);
  block = lp->cache[class];
  lp->cache[class] = *(void **)block;
  lp->ncache[class]--;
  lp->blocks++;
  return block;
}

/* Loop thread: a context's memory is no longer used, handles included. The
 * last block of a loop closes its state (out of line). */
static inline void uvctx__block_free(uvctx__loop_t *lp, void *block,
                                     size_t size) {
  int class = uvctx__cache_class(size);

  if (class < 0 || lp->ncache[class] >= UVCTX__CACHE_MAX || lp->blocks == 1) {
    uvctx__block_free_slow(lp, block, size);
    return;
  }
  *(void **)block = lp->cache[class];
  lp->cache[class] = block;
  lp->ncache[class]++;
  lp->blocks--;
}
void uvctx__loop_close_if_idle(uvctx__loop_t *lp);

/* Loop thread: l (a context's own link, or its extra block's home link)
 * among lp's tops, and out again (live.c). */
static inline void uvctx__tops_insert(uvctx__loop_t *lp, uvctx__link_t *l) {
  uvctx__list_push(&lp->tops, l);
}

static inline void uvctx__tops_remove(uvctx__loop_t *lp, uvctx__link_t *l) {
  uvctx__list_remove(&lp->tops, l);
}

/* live.c. Loop thread: calls cb on every cancellable context alive on lp,
 * under lp's tree lock, parents before their children; returns how many. */
typedef void (*uvctx__live_cb)(uvctx__cancel_t *c, void *arg);
size_t uvctx__each_live(uvctx__loop_t *lp, uvctx__live_cb cb, void *arg);
/* Each thread's own address of this variable identifies it. Initial-exec,
 * where the compiler knows it, makes reading it one instruction in a shared
 * library too, instead of a call to __tls_get_addr; and it is read inline, on
 * every cancel and release. */
#if defined(__GNUC__)
#define UVCTX__THREAD_LOCAL                                                    \
  __attribute__((tls_model("initial-exec"))) _Thread_local
#else
#define UVCTX__THREAD_LOCAL _Thread_local
#endif
extern UVCTX__THREAD_LOCAL char uvctx__thread_marker;

static inline const void *uvctx__thread_id(void) {
  return &uvctx__thread_marker;
}

/* Whether the calling thread runs lp's loop. On every cancel and release,
 * so it is a thread-local address compared, not a call into pthreads. */
static inline int uvctx__on_loop_thread(const uvctx__loop_t *lp) {
  return lp->thread == uvctx__thread_id();
}
/* treelock.c */
void uvctx__tree_lock_init(uvctx__tree_lock_t *t);
void uvctx__tree_lock_remote(uvctx__tree_lock_t *t);

/* The loop thread's way in says it is inside, then looks whether another
 * thread is: neither thread's CPU orders that store before that load, so
 * the other side's barrier (which runs a full fence on every CPU of the
 * process) does it for both. The compiler is kept from reordering here. */
static inline void uvctx__tree_lock(uvctx__loop_t *lp) {
  uvctx__tree_lock_t *t = &lp->tree_lock;

  if (!uvctx__on_loop_thread(lp)) {
    uvctx__tree_lock_remote(t);
    return;
  }
  atomic_store_explicit(&t->loop_in, 1, memory_order_relaxed);
  atomic_signal_fence(memory_order_seq_cst);
  if (atomic_load_explicit(&t->remote_in, memory_order_acquire) == 0)
    return;
  atomic_store_explicit(&t->loop_in, 0, memory_order_release);
  uvctx__lock(&t->remote);
}

static inline void uvctx__tree_unlock(uvctx__loop_t *lp) {
  uvctx__tree_lock_t *t = &lp->tree_lock;

  if (uvctx__on_loop_thread(lp)) {
    if (atomic_load_explicit(&t->loop_in, memory_order_relaxed)) {
      atomic_store_explicit(&t->loop_in, 0, memory_order_release);
      return;
    }
  } else if (t->asymmetric) {
    atomic_store_explicit(&t->remote_in, 0, memory_order_release);
  }
  uvctx__unlock(&t->remote);
}

int uvctx__mailbox_post(uvctx__loop_t *lp, uvctx__cancel_t *c,
                        unsigned int what);
int uvctx__mailbox_post_locked(uvctx__loop_t *lp, uvctx__cancel_t *c,
                               unsigned int what);
void uvctx__drain_mailbox(uvctx__loop_t *lp, int may_grow);

/* Loop thread: acts on what other threads posted before going on, so that a
 * release or a watch on the loop thread sees their cancels and releases
 * even when the loop has not polled since. */
static inline void uvctx__catch_up(uvctx__loop_t *lp) {
  if (atomic_load_explicit(&lp->mailbox_full, memory_order_relaxed))
    uvctx__drain_mailbox(lp, 0);
}

/* context.c */
int uvctx__new_cancellable(uv_loop_t *loop, uvctx_t *const *parents,
                           size_t count, int kind, size_t size,
                           uvctx__cancel_t **out);
void uvctx__adopt(uvctx_t *parent);
void uvctx__leave(uvctx_t *parent);
void uvctx__left(uvctx_t *parent, unsigned int left);
uvctx_t *uvctx__destroy(uvctx__cancel_t *c, unsigned int *left);
void uvctx__handle_closed(uv_handle_t *handle);

/* refs.c */
/* uvctx_t.refs: two flags in the low bits, so that adding or taking
 * UVCTX__REF changes the signed count above them, negative too, and never a
 * flag. HANDED: an UVCTX__MB_UNREF entry is in the mailbox, and holds the
 * context until the loop has taken it (changed under the mailbox lock). */
#define UVCTX__REFS_SHARED 1u
#define UVCTX__REFS_HANDED 2u
#define UVCTX__REF 4u

static inline int uvctx__refs_count(unsigned int refs) {
  return (int)(refs & ~(UVCTX__REF - 1)) / (int)UVCTX__REF;
}

/* A new context's counts: one reference, its maker's (after its kind is
 * set). Inline: on every constructor's way. */
static inline void uvctx__refs_init(uvctx_t *ctx) {
  if (uvctx__is_cancellable(ctx)) {
    atomic_init(&ctx->refs, 0);
    atomic_init(&uvctx__as_cancel(ctx)->local_refs, 1);
  } else {
    atomic_init(&ctx->refs, UVCTX__REFS_SHARED | UVCTX__REF);
  }
}

/* uvctx_retain(), inline for the constructors and watches, which take a
 * reference on every call: on its loop thread, a cancellable context's count
 * is a plain increment of local_refs while that is not 0 (refs.c). */
static inline uvctx_t *uvctx__retain(uvctx_t *ctx) {
  if (ctx == NULL || uvctx__is_root(ctx))
    return ctx;
  if (uvctx__is_cancellable(ctx)) {
    uvctx__cancel_t *c = uvctx__as_cancel(ctx);
    unsigned int local =
        uvctx__on_loop_thread(c->lp)
            ? atomic_load_explicit(&c->local_refs, memory_order_relaxed)
            : 0;
    if (local != 0) {
      atomic_store_explicit(&c->local_refs, local + 1, memory_order_relaxed);
      return ctx;
    }
  }
  atomic_fetch_add_explicit(&ctx->refs, UVCTX__REF, memory_order_relaxed);
  return ctx;
}
int uvctx__try_retain(uvctx_t *ctx);
unsigned int uvctx__refs_take_handed(uvctx__cancel_t *c);
unsigned int uvctx__refs_of(const uvctx_t *ctx);

/* cancel.c. reason is a uvctx_done_reason_t; site the call site of a
 * cancel call or NULL; when_ns the uv_hrtime() of the event if the caller
 * has read it, else 0. */
int uvctx__cancel(uvctx__cancel_t *c, int err, int cause, int reason,
                  const char *site, uint64_t when_ns);
void uvctx__deliver_subtree(uvctx__cancel_t *c);
/* Under lp's tree lock, parent on lp done with state: gives child that
 * state, with how it came (uvctx__via_to), if child has none yet, and for an
 * any-context records parent as the way (provenance.c). 1 if this finished
 * child. */
int uvctx__finish_child(uvctx__loop_t *lp, uvctx__cancel_t *parent,
                        uint64_t state, uvctx__cancel_t *child);

/* timer.c */
void uvctx__timer_set(uvctx__deadline_t *d, uint64_t deadline_ms);
uint64_t uvctx__deadline_after(uint64_t now, uint64_t timeout_ms);
int uvctx__new_deadline(uv_loop_t *loop, uvctx_t *parent, uint64_t deadline_ms,
                        int cause, uint64_t now, uvctx_t **out);
void uvctx__timer_arm(uvctx__deadline_t *d);

/* signal.c */
int uvctx__signals_check(const int *signums, size_t count);
void uvctx__signals_start(uvctx__cancel_t *c, uvctx__signals_t *s,
                          uv_signal_t *handles, const int *signums,
                          size_t count);

/* shutdown.c */
void uvctx__shutdown_on_signal(uvctx__shutdown_t *sd, int signum);
void uvctx__shutdown_start_grace(uvctx__shutdown_t *sd);
void uvctx__shutdown_forget(uvctx__shutdown_t *sd, uvctx__cancel_t *child);
void uvctx__shutdown_check_idle(uvctx__shutdown_t *sd);

/* provenance.c. Ids come from the calling thread's block (inline: on every
 * constructor's way), and a new block when it is used up. */
extern UVCTX__THREAD_LOCAL uint64_t uvctx__id_next;
extern UVCTX__THREAD_LOCAL uint64_t uvctx__id_end;
uint64_t uvctx__next_id_block(void);

static inline uint64_t uvctx__next_id(void) {
  if (uvctx__id_next != uvctx__id_end)
    return uvctx__id_next++;
  return uvctx__next_id_block();
}
const uvctx__cancel_t *uvctx__origin_of(const uvctx__cancel_t *c,
                                        uint64_t state);
uint64_t uvctx__done_ns(const uvctx__cancel_t *origin);

/* observe.c: the counts and the observer's events, loop thread; inline, as
 * they are on every context's way. With no observer, an event is one
 * branch. */
void uvctx__note_lag(uint64_t *buckets, uint64_t *sum, uint64_t lag_ns);

/* USDT probes at the observer's events, when configure found sys/sdt.h
 * (Debian systemtap-sdt-dev; a header, nothing at run time): each is a nop
 * in the code and a note in the ELF file (readelf -n), for perf, bpftrace or
 * SystemTap to attach to while the process runs. Their arguments are values
 * the code has at hand. docs/OBSERVABILITY.md lists them. */
#ifdef UVCTX_HAVE_SDT
#include <sys/sdt.h>
#define UVCTX__PROBE_MADE(c)                                                   \
  STAP_PROBE3(uvctx, made, (c)->ctx.id, (c)->ctx.kind - UVCTX__CANCEL,       \
              (c)->lp->loop)
#define UVCTX__PROBE_DONE(c, state)                                            \
  STAP_PROBE4(uvctx, done, (c)->ctx.id, uvctx__err_of(state),                  \
              uvctx__reason_of(state), uvctx__via_of(state))
#define UVCTX__PROBE_RELEASED(c) STAP_PROBE1(uvctx, released, (c)->ctx.id)
#define UVCTX__PROBE_WATCH(ctx, w) STAP_PROBE2(uvctx, watch, (ctx)->id, (w))
#else
#define UVCTX__PROBE_MADE(c) ((void)0)
#define UVCTX__PROBE_DONE(c, state) ((void)0)
#define UVCTX__PROBE_RELEASED(c) ((void)0)
#define UVCTX__PROBE_WATCH(ctx, w) ((void)0)
#endif

static inline void uvctx__emit(uvctx__loop_t *lp, int event,
                               const uvctx_t *ctx) {
  if (lp->observer != NULL)
    lp->observer((uvctx_event_t)event, ctx, lp->observer_data);
}

static inline void uvctx__note_done(uvctx__cancel_t *c) {
  uint64_t state = atomic_load_explicit(&c->ctx.state, memory_order_relaxed);

  c->lp->stats.finished[uvctx__how_of(state)]++;
  UVCTX__PROBE_DONE(c, state);
  uvctx__emit(c->lp, UVCTX_EVENT_DONE, &c->ctx);
}

/* A constructor's last step. A context born done was delivered at birth. */
static inline void uvctx__made(uvctx__cancel_t *c) {
  c->lp->stats.created++;
  UVCTX__PROBE_MADE(c);
  uvctx__emit(c->lp, UVCTX_EVENT_MADE, &c->ctx);
  if (c->ctx.flags & UVCTX__DELIVERED)
    uvctx__note_done(c);
}

/* watch.c */
void uvctx__deliver(uvctx__cancel_t *c);
void uvctx__drain_check_slow(uvctx__cancel_t *c);

/* Loop thread: the drains of c are due once it is done and childless. Inline
 * for the many contexts without drains: it is on every cancel and on every
 * release of a last child. */
static inline void uvctx__drain_check(uvctx__cancel_t *c) {
  if (c->extra != NULL || c->ctx.kind == UVCTX__SHUTDOWN)
    uvctx__drain_check_slow(c);
}
uvctx__extra_t *uvctx__extra_of(uvctx__cancel_t *c);
void uvctx__extra_free(uvctx__cancel_t *c);
void uvctx__run_due_watches(uv_idle_t *idle);

#endif /* UVCTX_INT_H */
