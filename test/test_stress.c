/* Stress: threads against the loop thread, on one large tree.
 *
 * WORKERS threads, which run no loop, keep grabbing references to random
 * nodes of the tree (uvctx_retain), cancelling them with causes, querying
 * them (err, cause, value, deadline), beginning shutdowns (uvctx_shutdown),
 * making and dropping value and without-cancel children of them, and
 * releasing them -- while the loop thread keeps making nodes of every kind
 * (cancel, deadline with short and long timeouts, value, without-cancel,
 * any-of, two-phase shutdown), watching, draining and unwatching them,
 * resetting their deadlines (uvctx_reset_timeout), cancelling and releasing
 * them, with watch callbacks that watch again.
 *
 * What is checked:
 *   - every cancel returns 0, UV_EALREADY, or UV_EINVAL exactly for the kinds
 *     that are not cancellable; at most one cancel of a node returns 0, and
 *     when it has returned the node reports UV_ECANCELED and that cause;
 *   - err is 0, UV_ECANCELED or UV_ETIMEDOUT, cause is 0 exactly while err is,
 *     and neither changes once set (seen by each worker);
 *   - at quiescent points (workers paused, and at the end): a done node's
 *     children are done; a node that no cancel of its own finished has its
 *     parent's err and cause (for an any-context, one parent's), or timed out
 *     by itself with its own cause; a value context has its parent's state;
 *     a without-cancel context is never done; after a cancel on the loop
 *     thread returns, every descendant is done;
 *   - uvctx_value() finds the nearest definition (any-contexts: parents in
 *     order); uvctx_deadline() says 1 exactly when a deadline is in reach;
 *   - every watch (and drain) runs exactly once, with its context's err, or
 *     is unwatched (uvctx_unwatch() returned 0) and never runs; unwatch says
 *     UV_EALREADY only for watches that ran; after uv_run() returns no watch
 *     of a done context is still waiting;
 *   - uvctx_shutdown() from the workers: 0 or UV_EALREADY on shutdown
 *     contexts (then done), UV_EINVAL on the others;
 *   - at the end of each round, after everything is released: nothing is
 *     left (uvctx_dump_loop() == 0, uv_loop_close() == 0, every byte uvctx
 *     allocated is freed).
 *
 * Duration. In `make check` it runs ROUND_OPS loop-thread operations
 * (scaled by UVCTX_TEST_SCALE) with a fixed seed, capped at ~1.5 s of
 * operations; the seed and round are printed with any failure. For a soak:
 *   UVCTX_STRESS_SECONDS=600 CK_RUN_SUITE=stress test/uvctx_test
 * runs rounds (seed, seed + 1, ...) for that many seconds, each with the full
 * end-of-round checks; UVCTX_STRESS_SEED=N starts from another seed. Build
 * with -fsanitize=thread (.ci/run does) to look for races as well.
 *
 * No thread spins while it needs another one to act: a worker that is paused,
 * or ahead of its pace, blocks on a condition variable until the loop thread
 * moves on; the loop thread waits for the pause the same way. */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "helpers.h"
#include "test.h"

#define DEFAULT_SEED 0x5eed2026u
#define ROUND_OPS 60000     /* loop-thread operations per round (scaled) */
#define ROUND_CAP_MS 1500   /* ...or this long, when not soaking */
#define CHECKPOINT_OPS 5000 /* a quiescent check every so many operations */
#define BATCH 16            /* loop-thread operations per idle callback */
#define WORKER_PACE 20      /* at most so many worker ops per loop op */

enum {
  WORKERS = 4,
  MAX_NODES = 65536,   /* node records per round */
  TABLE_MAX = 1024,    /* nodes the loop thread holds at once */
  MAX_WATCHES = 1024,
  STASH = 24,          /* references a worker holds at once */
  MAX_PARENTS = 3,
  NKEYS = 8
};

enum { K_CANCEL, K_DEADLINE, K_VALUE, K_WITHOUT, K_ANY, K_SHUTDOWN };
#define ROOT (-1) /* the round's root, a cancel context under background */

typedef struct {
  uvctx_t *ctx; /* valid while someone holds a reference */
  int kind;
  int nparents;
  int parents[MAX_PARENTS]; /* record indices, or ROOT */
  uvctx_t *parent_ctx[MAX_PARENTS];
  /* Children, for the walk after a cancel: first child, and the next sibling
   * in each parent's list (an any-context is in several). */
  int first_child;
  int next_sibling[MAX_PARENTS];
  int own_cause;    /* deadline: the cause its timer finishes it with */
  int key;          /* value: index into keys[] */
  int has_deadline; /* uvctx_deadline() must return 1 */
  int deadline_unknown; /* a shutdown above may have begun: 0 or 1 */
  int is_stopping;  /* the stopping child of a shutdown context */
  int never_done;   /* without-cancel, or a value context below one */
  int in_table;     /* loop thread */
  atomic_int wins;  /* cancels of this node that returned 0 */
  atomic_int win_cause;
} node_t;

typedef enum { W_FREE, W_PENDING, W_RAN, W_UNWATCHED } wstate_t;

typedef struct {
  uvctx_watch_t w;
  int node; /* record index, or ROOT */
  wstate_t state;
  int is_drain; /* uvctx_drain: due once done and childless */
} watch_rec_t;

/* A reference a worker holds, and the first non-zero err/cause it saw. */
typedef struct {
  uvctx_t *ctx;
  int node;
  int seen_err;
  int seen_cause;
} held_t;

typedef struct {
  uv_thread_t tid;
  uint32_t rng;
  held_t stash[STASH];
  int nstash;
  long ops;
} worker_t;

static int keys[NKEYS];

/* The state of a round. */
static struct {
  uv_loop_t loop;
  uint32_t seed;
  int round;
  uint32_t rng; /* loop thread */
  uvctx_t *root;
  node_t nodes[MAX_NODES];
  int nnodes;
  int root_first_child;
  uv_mutex_t table_lock;
  int table[TABLE_MAX];
  int ntable;
  watch_rec_t watches[MAX_WATCHES];
  worker_t workers[WORKERS];
  atomic_int stop;
  atomic_long loop_ops; /* S.ops, published for the workers' pacing */
  atomic_int pause_req;
  /* Workers wait on gate_cond (under gate_lock) while paused or ahead of
   * their pace; the loop thread waits on it for all of them to pause. */
  uv_mutex_t gate_lock;
  uv_cond_t gate_cond;
  int paused;          /* under gate_lock */
  atomic_int blocked;  /* workers waiting for loop_ops to move */
  atomic_int finished;
  uv_async_t crew; /* ref'd: keeps the loop polling until workers are done */
  int joined;
  uv_idle_t driver;
  long ops, ops_limit;
  uint64_t deadline_ms; /* when to stop, on the uvctx clock */
  /* The first failure, from any thread. */
  atomic_int failures;
  char failure[512];
} S;

/* Counts over all the rounds of a test, for the report. Each round leaves
 * watched == ran + unwatched. */
static struct {
  long ops, worker_ops, created, watched, ran, unwatched, cancels, resets,
      checkpoints, checked;
} T;

/* Records the first failure; any thread. The main thread asserts at the
 * end of the round (and at checkpoints) that there was none. */
static void record_failure(const char *fmt, ...) {
  va_list ap;
  if (atomic_fetch_add(&S.failures, 1) != 0)
    return;
  va_start(ap, fmt);
  vsnprintf(S.failure, sizeof S.failure, fmt, ap);
  va_end(ap);
}

#define EXPECT(cond, ...)                                                     \
  do {                                                                        \
    if (!(cond))                                                              \
      record_failure(__VA_ARGS__);                                            \
  } while (0)

static void assert_no_failure(const char *where) {
  ck_assert_msg(atomic_load(&S.failures) == 0,
                "stress seed %u round %d (%s): %s (%d failures)", S.seed,
                S.round, where, S.failure, atomic_load(&S.failures));
}

/* ck_assert with the seed and round in its message. */
#define SASSERT(cond)                                                         \
  ck_assert_msg((cond), "stress seed %u round %d: %s", S.seed, S.round, #cond)

static uvctx_t *ctx_of(int idx) {
  return idx == ROOT ? S.root : S.nodes[idx].ctx;
}

/* A watch of a context that can never be done holds no reference to it
 * (only watches that can run do), so the test must not look at such a
 * context once it has released it. */
static int never_done(int idx) {
  return idx != ROOT && S.nodes[idx].never_done;
}

static int cancellable(int kind) {
  return kind == K_CANCEL || kind == K_DEADLINE || kind == K_ANY ||
         kind == K_SHUTDOWN;
}

/* A cause: 0 (none) or a distinct negative code. */
static int some_cause(uint32_t *rng) {
  return rng_below(rng, 4) == 0 ? 0 : -(int)(1000 + rng_below(rng, 100000));
}

/* ---------------------------------------------------------------------------
 * What the records say the library must answer
 * ------------------------------------------------------------------------- */

/* uvctx_value(): the nearest definition of keys[k] up from idx; an
 * any-context looks in its parents in order. Records never change once
 * published, so any thread may walk them. */
static void *expected_value(int idx, int k) {
  while (idx != ROOT) {
    const node_t *n = &S.nodes[idx];
    if (n->kind == K_VALUE && n->key == k)
      return (void *)n;
    if (n->kind == K_ANY) {
      void *v = NULL;
      for (int i = 0; i < n->nparents && v == NULL; i++)
        v = expected_value(n->parents[i], k);
      return v;
    }
    idx = n->parents[0];
  }
  return NULL;
}

/* err and cause read separately, as a user would: once err is non-zero,
 * cause is too, and neither changes. */
static void check_state_shape(uvctx_t *ctx, int idx, int *err_out,
                              int *cause_out) {
  int err = uvctx_err(ctx);
  int cause = uvctx_cause(ctx);
  int err2 = uvctx_err(ctx);

  EXPECT(err == 0 || err == UV_ECANCELED || err == UV_ETIMEDOUT,
         "node %d: err %d", idx, err);
  EXPECT(err2 == 0 || err2 == UV_ECANCELED || err2 == UV_ETIMEDOUT,
         "node %d: err %d", idx, err2);
  EXPECT(err == 0 || err2 == err, "node %d: err changed %d -> %d", idx, err,
         err2);
  EXPECT(err == 0 || cause != 0, "node %d: err %d but cause 0", idx, err);
  EXPECT(cause == 0 || err2 != 0, "node %d: cause %d but err 0", idx, cause);
  *err_out = err2;
  *cause_out = uvctx_cause(ctx);
  EXPECT(err == 0 || *cause_out == cause, "node %d: cause changed %d -> %d",
         idx, cause, *cause_out);
}

/* Everything about one live node; quiescent: no cancel is running. */
static void check_node(int idx, int quiescent) {
  node_t *n = &S.nodes[idx];
  int err, cause;
  int wins = atomic_load(&n->wins);
  int wc = atomic_load(&n->win_cause);
  uint64_t d;

  T.checked++;
  check_state_shape(n->ctx, idx, &err, &cause);
  EXPECT(wins <= 1, "node %d: cancelled %d times", idx, wins);
  if (n->kind == K_WITHOUT)
    EXPECT(err == 0, "without-cancel node %d is done (%d)", idx, err);
  if (wins == 1)
    EXPECT(err == UV_ECANCELED && cause == (wc != 0 ? wc : UV_ECANCELED),
           "node %d won its cancel with cause %d but says %d/%d", idx, wc, err,
           cause);
  if (!n->deadline_unknown)
    EXPECT(uvctx_deadline(n->ctx, &d) == n->has_deadline,
           "node %d: uvctx_deadline != %d", idx, n->has_deadline);
  for (int k = 0; k < NKEYS; k += 3)
    EXPECT(uvctx_value(n->ctx, &keys[k]) == expected_value(idx, k),
           "node %d: wrong value for key %d", idx, k);
  if (!quiescent || n->kind == K_WITHOUT)
    return;

  int parent_done = 0, inherited = 0;
  for (int i = 0; i < n->nparents; i++) {
    int pe = uvctx_err(n->parent_ctx[i]);
    int pc = uvctx_cause(n->parent_ctx[i]);
    if (pe != 0) {
      parent_done = 1;
      if (pe == err && pc == cause)
        inherited = 1;
    }
  }
  if (n->kind == K_VALUE) {
    EXPECT(err == uvctx_err(n->parent_ctx[0]) &&
               cause == uvctx_cause(n->parent_ctx[0]),
           "value node %d: %d/%d, its parent %d/%d", idx, err, cause,
           uvctx_err(n->parent_ctx[0]), uvctx_cause(n->parent_ctx[0]));
    return;
  }
  EXPECT(!parent_done || err != 0, "node %d: a parent is done, it is not",
         idx);
  if (err != 0 && wins == 0) {
    int timed_out = n->kind == K_DEADLINE && err == UV_ETIMEDOUT &&
                    cause == (n->own_cause != 0 ? n->own_cause : UV_ETIMEDOUT);
    /* A shutdown finishes itself (grace period over, asked twice, ended
     * early) and its stopping child, with the causes workers gave. */
    if (n->kind == K_SHUTDOWN)
      timed_out = err == UV_ECANCELED || err == UV_ETIMEDOUT;
    if (n->is_stopping)
      timed_out = err == UV_ECANCELED;
    EXPECT(inherited || timed_out,
           "node %d (kind %d) is done with %d/%d: not its own cancel, not its "
           "timer, not a parent's",
           idx, n->kind, err, cause);
  }
}

/* Loop thread, after its own cancel of idx returned 0: every descendant it
 * still holds is done. Walks the records, without touching released nodes. */
static void check_descendants_done(int idx) {
  static int stack[MAX_NODES];
  static unsigned int seen[MAX_NODES], gen;
  int sp = 0;
  gen++;
  stack[sp++] = idx;
  while (sp > 0) {
    int i = stack[--sp];
    int c = i == ROOT ? S.root_first_child : S.nodes[i].first_child;
    while (c >= 0) {
      node_t *cn = &S.nodes[c];
      int slot = 0;
      if (cn->kind != K_WITHOUT) {
        if (cn->in_table)
          EXPECT(uvctx_err(cn->ctx) != 0,
                 "node %d not done after the loop thread cancelled its "
                 "ancestor %d",
                 c, idx);
        /* An any-context is listed under each parent: walk it once. */
        if (seen[c] != gen) {
          seen[c] = gen;
          stack[sp++] = c;
        }
      }
      while (slot < cn->nparents - 1 && cn->parents[slot] != i)
        slot++;
      c = cn->next_sibling[slot];
    }
  }
}

/* ---------------------------------------------------------------------------
 * Worker threads
 * ------------------------------------------------------------------------- */

static void stash_drop(worker_t *wk, int s) {
  uvctx_release(wk->stash[s].ctx);
  wk->stash[s] = wk->stash[--wk->nstash];
}

static void stash_push(worker_t *wk, uvctx_t *ctx, int idx) {
  if (wk->nstash == STASH)
    stash_drop(wk, (int)rng_below(&wk->rng, STASH));
  wk->stash[wk->nstash++] = (held_t){ctx, idx, 0, 0};
}

static void worker_grab(worker_t *wk) {
  uvctx_t *ctx = NULL;
  int idx = 0;
  uv_mutex_lock(&S.table_lock);
  if (S.ntable > 0) {
    idx = S.table[rng_below(&wk->rng, (uint32_t)S.ntable)];
    ctx = uvctx_retain(S.nodes[idx].ctx); /* the table's reference is held */
  }
  uv_mutex_unlock(&S.table_lock);
  if (ctx != NULL)
    stash_push(wk, ctx, idx);
}

static void cancel_checked(uvctx_t *ctx, int idx, int cause) {
  int kind = idx == ROOT ? K_CANCEL : S.nodes[idx].kind;
  int rc = uvctx_cancel_cause(ctx, cause);

  if (!cancellable(kind)) {
    EXPECT(rc == UV_EINVAL, "cancel of node %d (kind %d): %d, not EINVAL",
           idx, kind, rc);
    return;
  }
  EXPECT(rc == 0 || rc == UV_EALREADY, "cancel of node %d: %d", idx, rc);
  if (rc == 0 && idx != ROOT) {
    atomic_store(&S.nodes[idx].win_cause, cause);
    EXPECT(atomic_fetch_add(&S.nodes[idx].wins, 1) == 0,
           "two cancels of node %d returned 0", idx);
  }
  if (rc == 0) {
    EXPECT(uvctx_err(ctx) == UV_ECANCELED, "node %d: err %d after cancel",
           idx, uvctx_err(ctx));
    EXPECT(uvctx_cause(ctx) == (cause != 0 ? cause : UV_ECANCELED),
           "node %d: cause %d after cancel with %d", idx, uvctx_cause(ctx),
           cause);
  } else if (rc == UV_EALREADY) {
    EXPECT(uvctx_err(ctx) != 0, "node %d: EALREADY but not done", idx);
  }
}

/* Pacing: a worker stays within WORKER_PACE operations per loop-thread
 * operation, so that the loop thread gets its share where threads are
 * serialized (valgrind) or the machine is loaded. */
static int ahead_of_pace(const worker_t *wk) {
  return wk->ops > WORKER_PACE * (atomic_load(&S.loop_ops) + 1000);
}

/* A worker that is asked to pause, or is ahead of its pace, waits for the
 * loop thread. Pausing counts in S.paused, which the loop thread waits for.
 * Pacing counts in S.blocked: the loop thread publishes loop_ops, then wakes
 * the workers if S.blocked says one may wait; a worker counts itself in
 * S.blocked before it looks at loop_ops (both sequentially consistent), so
 * one of the two sees the other and no wake-up is lost. */
static void worker_wait(worker_t *wk) {
  uv_mutex_lock(&S.gate_lock);
  if (atomic_load(&S.pause_req)) {
    S.paused++;
    uv_cond_broadcast(&S.gate_cond);
    while (atomic_load(&S.pause_req) && !atomic_load(&S.stop))
      uv_cond_wait(&S.gate_cond, &S.gate_lock);
    S.paused--;
  } else {
    atomic_fetch_add(&S.blocked, 1);
    while (ahead_of_pace(wk) && !atomic_load(&S.pause_req) &&
           !atomic_load(&S.stop))
      uv_cond_wait(&S.gate_cond, &S.gate_lock);
    atomic_fetch_sub(&S.blocked, 1);
  }
  uv_mutex_unlock(&S.gate_lock);
}

/* Loop thread: wakes the waiting workers after it changed what they wait
 * for (loop_ops, pause_req or stop). */
static void wake_workers(void) {
  uv_mutex_lock(&S.gate_lock);
  uv_cond_broadcast(&S.gate_cond);
  uv_mutex_unlock(&S.gate_lock);
}

static void worker_main(void *arg) {
  worker_t *wk = arg;

  while (!atomic_load(&S.stop)) {
    if (atomic_load(&S.pause_req) || ahead_of_pace(wk)) {
      worker_wait(wk);
      continue;
    }
    wk->ops++;
    uint32_t op = rng_below(&wk->rng, 100);
    if (op < 30 || wk->nstash == 0) {
      worker_grab(wk);
      continue;
    }
    int s = (int)rng_below(&wk->rng, (uint32_t)wk->nstash);
    held_t *h = &wk->stash[s];
    uvctx_t *ctx = h->ctx;
    int idx = h->node;
    if (op < 42) {
      cancel_checked(ctx, idx, some_cause(&wk->rng));
    } else if (op < 50) {
      /* uvctx_shutdown, any thread: moves a shutdown on a phase. */
      int rc = uvctx_shutdown(ctx, some_cause(&wk->rng));
      if (S.nodes[idx].kind != K_SHUTDOWN)
        EXPECT(rc == UV_EINVAL, "shutdown of kind %d: %d", S.nodes[idx].kind,
               rc);
      else
        EXPECT(rc == 0 || rc == UV_EALREADY, "shutdown of node %d: %d", idx,
               rc);
      if (rc == UV_EALREADY)
        EXPECT(uvctx_err(ctx) != 0, "shutdown: EALREADY, not done");
    } else if (op < 68) {
      int err, cause;
      uint64_t d;
      check_state_shape(ctx, idx, &err, &cause);
      if (h->seen_err != 0)
        EXPECT(err == h->seen_err && cause == h->seen_cause,
               "node %d: was %d/%d, now %d/%d", idx, h->seen_err,
               h->seen_cause, err, cause);
      else if (err != 0) {
        h->seen_err = err;
        h->seen_cause = cause;
      }
      int k = (int)rng_below(&wk->rng, NKEYS);
      EXPECT(uvctx_value(ctx, &keys[k]) == expected_value(idx, k),
             "node %d: wrong value for key %d (worker)", idx, k);
      if (!S.nodes[idx].deadline_unknown)
        EXPECT(uvctx_deadline(ctx, &d) == S.nodes[idx].has_deadline,
               "node %d: uvctx_deadline (worker)", idx);
    } else if (op < 78) {
      /* Value and without-cancel contexts may be made on any thread. */
      uvctx_t *child = NULL;
      static const char local_key;
      if (rng_below(&wk->rng, 2)) {
        EXPECT(uvctx_with_value(ctx, &local_key, wk, &child) == 0,
               "with_value on a worker");
        if (child != NULL) {
          int ce = uvctx_err(child), pe = uvctx_err(ctx);
          EXPECT(ce == 0 || ce == pe, "value child of %d: %d, parent %d", idx,
                 ce, pe);
          EXPECT(uvctx_value(child, &local_key) == wk, "value child of %d",
                 idx);
        }
      } else {
        EXPECT(uvctx_without_cancel(ctx, &child) == 0,
               "without_cancel on a worker");
        if (child != NULL)
          EXPECT(uvctx_err(child) == 0 && uvctx_cancel(child) == UV_EINVAL,
                 "without-cancel child of %d", idx);
      }
      uvctx_release(child);
    } else if (op < 84) {
      if (wk->nstash < STASH) { /* a second reference to the same node */
        uvctx_t *again = uvctx_retain(ctx);
        EXPECT(again == ctx, "retain returned another pointer");
        stash_push(wk, again, idx);
      }
    } else {
      stash_drop(wk, s);
    }
  }
  while (wk->nstash > 0)
    stash_drop(wk, wk->nstash - 1);
  atomic_fetch_add(&S.finished, 1);
  uv_async_send(&S.crew);
}

static void crew_cb(uv_async_t *a) {
  if (S.joined || atomic_load(&S.finished) < WORKERS)
    return;
  for (int i = 0; i < WORKERS; i++)
    ck_assert_int_eq(uv_thread_join(&S.workers[i].tid), 0);
  S.joined = 1;
  uv_close((uv_handle_t *)a, NULL);
}

/* ---------------------------------------------------------------------------
 * The loop thread
 * ------------------------------------------------------------------------- */

static int random_parent(void) {
  if (S.ntable == 0 || rng_below(&S.rng, 8) == 0)
    return ROOT;
  return S.table[rng_below(&S.rng, (uint32_t)S.ntable)];
}

static void table_add(int idx) {
  uv_mutex_lock(&S.table_lock);
  S.table[S.ntable++] = idx;
  uv_mutex_unlock(&S.table_lock);
  S.nodes[idx].in_table = 1;
}

static int table_take(int slot) {
  int idx;
  uv_mutex_lock(&S.table_lock);
  idx = S.table[slot];
  S.table[slot] = S.table[--S.ntable];
  uv_mutex_unlock(&S.table_lock);
  S.nodes[idx].in_table = 0;
  return idx;
}

static uint64_t random_timeout(void) {
  uint32_t r = rng_below(&S.rng, 20);
  if (r == 0)
    return 0; /* born done */
  if (r < 10)
    return 1 + rng_below(&S.rng, 30); /* fires during the round */
  return 60000;
}

/* Fills in what the records derive from a new node's parents, links it
 * into their lists of children, and puts it in the table. */
static void publish(int idx) {
  node_t *n = &S.nodes[idx];

  n->never_done = n->kind == K_WITHOUT ||
                  (n->kind == K_VALUE && n->parents[0] != ROOT &&
                   S.nodes[n->parents[0]].never_done);
  if (n->kind == K_DEADLINE) {
    n->has_deadline = 1;
  } else if (n->kind != K_WITHOUT) {
    for (int i = 0; i < n->nparents; i++) {
      int p = n->parents[i];
      if (p == ROOT)
        continue;
      n->has_deadline |= S.nodes[p].has_deadline;
      /* A shutdown context's deadline comes when shutdown begins. */
      n->deadline_unknown |= S.nodes[p].deadline_unknown;
    }
  }
  if (n->kind == K_SHUTDOWN)
    n->deadline_unknown = 1;
  atomic_init(&n->wins, 0);
  atomic_init(&n->win_cause, 0);
  for (int i = 0; i < n->nparents; i++) {
    int p = n->parents[i];
    int *head = p == ROOT ? &S.root_first_child : &S.nodes[p].first_child;
    int dup = 0;
    for (int j = 0; j < i; j++)
      dup |= n->parents[j] == p;
    if (dup)
      continue; /* listed once under a parent given twice */
    n->next_sibling[i] = *head;
    *head = idx;
  }
  S.nnodes++;
  T.created++;
  table_add(idx);
}

static node_t *new_record(int kind) {
  node_t *n = &S.nodes[S.nnodes];
  memset(n, 0, sizeof *n);
  n->kind = kind;
  n->first_child = -1;
  for (int i = 0; i < MAX_PARENTS; i++)
    n->next_sibling[i] = -1;
  return n;
}

static void op_create(void) {
  int kind;
  uint32_t r = rng_below(&S.rng, 100);
  uvctx_t *ctx = NULL, *stopping = NULL;
  node_t *n;
  int rc;

  if (S.nnodes + 2 > MAX_NODES || S.ntable + 2 > TABLE_MAX)
    return;
  kind = r < 30 ? K_CANCEL : r < 53 ? K_DEADLINE : r < 75 ? K_VALUE
       : r < 82 ? K_WITHOUT : r < 94 ? K_ANY : K_SHUTDOWN;
  n = new_record(kind);
  n->nparents = kind == K_ANY ? 2 + (int)rng_below(&S.rng, 2) : 1;
  for (int i = 0; i < n->nparents; i++) {
    n->parents[i] = random_parent();
    n->parent_ctx[i] = ctx_of(n->parents[i]);
  }

  switch (kind) {
  case K_CANCEL:
    rc = uvctx_with_cancel(&S.loop, n->parent_ctx[0], &ctx);
    break;
  case K_DEADLINE:
    n->own_cause = some_cause(&S.rng);
    rc = uvctx_with_timeout_cause(&S.loop, n->parent_ctx[0], random_timeout(),
                                  n->own_cause, &ctx);
    break;
  case K_VALUE:
    n->key = (int)rng_below(&S.rng, NKEYS);
    rc = uvctx_with_value(n->parent_ctx[0], &keys[n->key], n, &ctx);
    break;
  case K_WITHOUT:
    rc = uvctx_without_cancel(n->parent_ctx[0], &ctx);
    break;
  case K_ANY:
    rc = uvctx_with_any(&S.loop, n->parent_ctx, (size_t)n->nparents, &ctx);
    break;
  default: /* the grace period is short or long; workers begin it */
    rc = uvctx_with_shutdown(
        &S.loop, n->parent_ctx[0], NULL, 0,
        rng_below(&S.rng, 2) ? 1 + rng_below(&S.rng, 20) : 60000, &stopping,
        &ctx);
    break;
  }
  ck_assert_msg(rc == 0, "seed %u: creating kind %d: %d", S.seed, kind, rc);
  n->ctx = ctx;
  publish(S.nnodes);
  if (kind == K_SHUTDOWN) { /* its stopping child, a cancel context */
    int sd = S.nnodes - 1;
    n = new_record(K_CANCEL);
    n->is_stopping = 1;
    n->nparents = 1;
    n->parents[0] = sd;
    n->parent_ctx[0] = ctx;
    n->ctx = stopping;
    publish(S.nnodes);
  }
}

static void op_release(int slot) {
  int idx = table_take(slot);
  check_node(idx, 0);
  uvctx_release(S.nodes[idx].ctx); /* workers may hold it still */
}

static void watch_cb(uvctx_watch_t *w, int err);

static int free_watch(void) {
  for (int tries = 0; tries < 8; tries++) {
    int i = (int)rng_below(&S.rng, MAX_WATCHES);
    if (S.watches[i].state != W_PENDING)
      return i;
  }
  return -1;
}

/* uvctx_watch(), or uvctx_drain() (which takes cancellable kinds only). */
static void watch_node(watch_rec_t *wr, int idx, int is_drain) {
  uvctx_t *ctx = ctx_of(idx);
  wr->node = idx;
  wr->w.data = wr;
  wr->is_drain = is_drain;
  int rc = is_drain ? uvctx_drain(ctx, &wr->w, watch_cb)
                    : uvctx_watch(ctx, &wr->w, watch_cb);
  if (is_drain && !cancellable(S.nodes[idx].kind)) {
    EXPECT(rc == UV_EINVAL, "drain of kind %d: %d", S.nodes[idx].kind, rc);
    return;
  }
  ck_assert_msg(rc == 0, "seed %u: %s of node %d: %d", S.seed,
                is_drain ? "drain" : "watch", idx, rc);
  wr->state = W_PENDING;
  T.watched++;
}

static void watch_cb(uvctx_watch_t *w, int err) {
  watch_rec_t *wr = w->data;
  uvctx_t *ctx = ctx_of(wr->node); /* the watch holds a reference */

  EXPECT(wr->state == W_PENDING, "watch of node %d ran in state %d", wr->node,
         wr->state);
  EXPECT(err != 0 && err == uvctx_err(ctx), "watch of node %d: err %d, ctx %d",
         wr->node, err, uvctx_err(ctx));
  wr->state = W_RAN;
  T.ran++;
  /* Sometimes watch again, from the callback, with the same watch. */
  if (!atomic_load(&S.stop) && S.ntable > 0 && rng_below(&S.rng, 4) == 0)
    watch_node(wr, S.table[rng_below(&S.rng, (uint32_t)S.ntable)], 0);
}

static void op_watch(int idx) {
  int i = free_watch();
  if (i < 0)
    return;
  watch_node(&S.watches[i], idx, rng_below(&S.rng, 5) == 0);
}

static void op_unwatch(void) {
  watch_rec_t *wr = &S.watches[rng_below(&S.rng, MAX_WATCHES)];
  int rc;
  if (wr->state == W_FREE)
    return;
  rc = uvctx_unwatch(&wr->w);
  if (wr->state == W_PENDING) {
    EXPECT(rc == 0, "unwatch of a pending watch of node %d: %d", wr->node, rc);
    wr->state = W_UNWATCHED;
    T.unwatched++;
  } else {
    EXPECT(rc == UV_EALREADY, "unwatch of a finished watch (state %d): %d",
           wr->state, rc);
  }
}

static void op_reset(int idx) {
  uint64_t timeout = random_timeout();
  int rc = uvctx_reset_timeout(S.nodes[idx].ctx, timeout);
  if (S.nodes[idx].kind != K_DEADLINE) {
    EXPECT(rc == UV_EINVAL, "reset_timeout of kind %d: %d", S.nodes[idx].kind,
           rc);
    return;
  }
  T.resets++;
  EXPECT(rc == 0 || rc == UV_EALREADY, "reset_timeout of node %d: %d", idx,
         rc);
  if (rc == UV_EALREADY)
    EXPECT(uvctx_err(S.nodes[idx].ctx) != 0, "reset: EALREADY, not done");
  if (rc == 0 && timeout == 0)
    EXPECT(uvctx_err(S.nodes[idx].ctx) != 0, "reset to 0: not done");
}

static void op_cancel(int idx) {
  int before = atomic_load(&S.nodes[idx].wins);
  cancel_checked(S.nodes[idx].ctx, idx, some_cause(&S.rng));
  T.cancels++;
  if (cancellable(S.nodes[idx].kind) && uvctx_err(S.nodes[idx].ctx) != 0 &&
      atomic_load(&S.nodes[idx].wins) > before)
    check_descendants_done(idx);
}

static void op_done_async(int idx) {
  uv_async_t *a = uvctx_done_async(S.nodes[idx].ctx);
  EXPECT((a != NULL) == (uvctx_loop(S.nodes[idx].ctx) != NULL),
         "done_async of node %d (kind %d): %p", idx, S.nodes[idx].kind,
         (void *)a);
}

/* Quiescent (no cancel running): every table node checked in full. */
static void check_table(void) {
  for (int i = 0; i < S.ntable; i++)
    check_node(S.table[i], 1);
}

/* Workers paused, every table node checked in full. */
static void checkpoint(void) {
  uv_mutex_lock(&S.gate_lock);
  atomic_store(&S.pause_req, 1);
  uv_cond_broadcast(&S.gate_cond); /* workers waiting on their pace */
  while (S.paused < WORKERS)
    uv_cond_wait(&S.gate_cond, &S.gate_lock);
  uv_mutex_unlock(&S.gate_lock);
  check_table();
  T.checkpoints++;
  atomic_store(&S.pause_req, 0);
  wake_workers();
  assert_no_failure("checkpoint");
}

static void driver_cb(uv_idle_t *idle) {
  for (int b = 0; b < BATCH; b++) {
    uint32_t op = rng_below(&S.rng, 100);
    int slot = S.ntable > 0 ? (int)rng_below(&S.rng, (uint32_t)S.ntable) : -1;
    int idx = slot >= 0 ? S.table[slot] : -1;
    S.ops++;
    if (op < 30)
      op_create();
    else if (op >= 45 && op < 53)
      op_unwatch();
    else if (slot >= 0) { /* the rest need a node */
      if (op < 45)
        op_watch(idx);
      else if (op < 63)
        op_reset(idx);
      else if (op < 70)
        op_cancel(idx);
      else if (op < 73)
        op_done_async(idx);
      else
        op_release(slot);
    }
    if (S.ntable > TABLE_MAX - 8)
      op_release((int)rng_below(&S.rng, (uint32_t)S.ntable));
    if (S.ops % CHECKPOINT_OPS == 0)
      checkpoint();
  }
  atomic_store(&S.loop_ops, S.ops);
  if (atomic_load(&S.blocked) > 0)
    wake_workers();
  if (S.ops >= S.ops_limit || uvctx_now() >= S.deadline_ms ||
      S.nnodes == MAX_NODES) {
    atomic_store(&S.stop, 1);
    wake_workers();
    uv_idle_stop(idle);
    uv_close((uv_handle_t *)idle, NULL);
  }
}

/* ---------------------------------------------------------------------------
 * A round
 * ------------------------------------------------------------------------- */

static void run_round(uint32_t seed, int round, long ops_limit,
                      uint64_t cap_ms) {
  memset(&S, 0, sizeof S);
  S.seed = seed;
  S.round = round;
  S.rng = seed | 1;
  S.ops_limit = ops_limit;
  S.deadline_ms = uvctx_now() + cap_ms;
  S.root_first_child = -1;
  atomic_init(&S.failures, 0);
  atomic_init(&S.stop, 0);
  atomic_init(&S.loop_ops, 0);
  atomic_init(&S.pause_req, 0);
  atomic_init(&S.blocked, 0);
  atomic_init(&S.finished, 0);
  atomic_store(&counting_outstanding, 0);

  SASSERT(uv_loop_init(&S.loop) == 0);
  SASSERT(uv_mutex_init(&S.table_lock) == 0);
  SASSERT(uv_mutex_init(&S.gate_lock) == 0);
  SASSERT(uv_cond_init(&S.gate_cond) == 0);
  SASSERT(uvctx_with_cancel(&S.loop, uvctx_background(), &S.root) == 0);
  SASSERT(uv_async_init(&S.loop, &S.crew, crew_cb) == 0);
  SASSERT(uv_idle_init(&S.loop, &S.driver) == 0);
  SASSERT(uv_idle_start(&S.driver, driver_cb) == 0);
  /* A tree to start from, before the workers come. */
  for (int i = 0; i < 200; i++)
    op_create();
  for (int i = 0; i < WORKERS; i++) {
    S.workers[i].rng = (seed ^ (0x9e3779b9u * (uint32_t)(i + 1))) | 1;
    SASSERT(uv_thread_create(&S.workers[i].tid, worker_main,
                             &S.workers[i]) == 0);
  }

  /* Runs until the driver has stopped and the workers are joined. */
  SASSERT(uv_run(&S.loop, UV_RUN_DEFAULT) == 0);
  SASSERT(S.joined);
  assert_no_failure("run");

  /* Quiescent: the whole table, and no watch of a done context waits. */
  check_table();
  for (int i = 0; i < MAX_WATCHES; i++)
    if (S.watches[i].state == W_PENDING && !S.watches[i].is_drain &&
        !never_done(S.watches[i].node))
      EXPECT(uvctx_err(ctx_of(S.watches[i].node)) == 0,
             "a watch of done node %d still waits after uv_run returned",
             S.watches[i].node);
  assert_no_failure("end of run");

  /* Cancel everything from the root: all but what hangs below a
   * without-cancel context is done; the watches of it run. */
  int rc = uvctx_cancel_cause(S.root, UV_ESHUTDOWN);
  SASSERT(rc == 0 || rc == UV_EALREADY);
  check_descendants_done(ROOT);
  SASSERT(uv_run(&S.loop, UV_RUN_DEFAULT) == 0);
  check_table();
  for (int i = 0; i < MAX_WATCHES; i++) {
    watch_rec_t *wr = &S.watches[i];
    if (wr->state != W_PENDING)
      continue;
    EXPECT(wr->is_drain || never_done(wr->node) ||
               uvctx_err(ctx_of(wr->node)) == 0,
           "a watch of done node %d never ran", wr->node);
    EXPECT(uvctx_unwatch(&wr->w) == 0, "final unwatch of node %d", wr->node);
    wr->state = W_UNWATCHED;
    T.unwatched++;
  }
  assert_no_failure("after cancelling the root");

  /* Release everything; the loop must close with nothing left. */
  while (S.ntable > 0)
    uvctx_release(S.nodes[table_take(S.ntable - 1)].ctx);
  uvctx_release(S.root);
  SASSERT(uv_run(&S.loop, UV_RUN_DEFAULT) == 0);
  SASSERT(uvctx_dump_loop(&S.loop, stderr) == 0);
  SASSERT(uv_loop_close(&S.loop) == 0);
  uv_mutex_destroy(&S.table_lock);
  uv_cond_destroy(&S.gate_cond);
  uv_mutex_destroy(&S.gate_lock);
  ck_assert_msg(atomic_load(&counting_outstanding) == 0,
                "stress seed %u round %d: %ld blocks not freed", seed, round,
                atomic_load(&counting_outstanding));
  SASSERT(T.watched == T.ran + T.unwatched);
  assert_no_failure("end of round");
  T.ops += S.ops;
  for (int i = 0; i < WORKERS; i++)
    T.worker_ops += S.workers[i].ops;
}

START_TEST(test_threads_and_loop_on_one_tree_keep_every_promise) {
  const char *secs_env = getenv("UVCTX_STRESS_SECONDS");
  const char *seed_env = getenv("UVCTX_STRESS_SEED");
  uint32_t seed = seed_env != NULL ? (uint32_t)strtoul(seed_env, NULL, 0)
                                   : DEFAULT_SEED;
  long secs = secs_env != NULL ? strtol(secs_env, NULL, 10) : 0;
  uint64_t end = uvctx_now() + (uint64_t)(secs > 0 ? secs : 0) * 1000;
  int round = 0;
  memset(&T, 0, sizeof T);

  do {
    if (secs > 0) /* soak: rounds of up to ~2 s each until the time is up */
      run_round(seed + (uint32_t)round, round, 1L << 40, 2000);
    else
      run_round(seed, round, test_scaled(ROUND_OPS), ROUND_CAP_MS);
    round++;
  } while (secs > 0 && uvctx_now() < end);

  if (secs > 0 || getenv("UVCTX_STRESS_VERBOSE") != NULL)
    fprintf(stderr,
            "stress: %d round(s) from seed %u: %ld loop ops (%ld nodes made, "
            "%ld watches, %ld cancels, %ld resets), %ld worker ops, %ld node "
            "checks, %ld checkpoints\n",
            round, seed, T.ops, T.created, T.watched, T.cancels, T.resets,
            T.worker_ops, T.checked, T.checkpoints);
}
END_TEST

/* ---------------------------------------------------------------------------
 * A narrower race: uvctx_shutdown() from two threads while the loop thread
 * lets the last child of the shutdown context go (which may end the
 * shutdown early). Whatever the interleaving: the context ends with the
 * cause of a uvctx_shutdown() call ("The cause given to the call that began
 * it is the cause ... of *out when ... it ends early"; the second call's when
 * that call ends it), never a bare UV_ECANCELED; and UV_EALREADY comes only
 * once it is done ("UV_EALREADY when ctx is done").
 * ------------------------------------------------------------------------- */

/* The two threads live for all the rounds; in each one they and the loop
 * thread start together on a barrier (starting two threads per round cost
 * tens of milliseconds a round on a loaded machine), and meet again on
 * another once both have made their calls. Each meeting costs a wake-up,
 * which a loaded machine makes milliseconds long: the rounds stop at
 * SD_RACE_CAP_MS (after SD_RACE_MIN_ROUNDS at least), and the test says on
 * stderr when the cap cut them short. */
#define SD_RACE_ROUNDS 2000
#define SD_RACE_MIN_ROUNDS 200
#define SD_RACE_CAP_MS 3000

typedef struct {
  int stop;    /* set by the loop thread before `go`: no more rounds */
  uvctx_t *sd; /* this round's, set by the loop thread before `go` */
  uv_barrier_t go;
  uv_barrier_t done;
} sd_race_t;

/* One of the two threads: each round, calls uvctx_shutdown(sd, cause) so
 * many times (the first call of either may begin the shutdown, a later one
 * ends it). */
typedef struct {
  sd_race_t *r;
  int cause;
  int calls;
  int ealready_not_done; /* read once joined */
} sd_caller_t;

static void sd_race_caller(void *arg) {
  sd_caller_t *c = arg;
  for (;;) {
    uv_barrier_wait(&c->r->go);
    if (c->r->stop)
      break;
    for (int k = 0; k < c->calls; k++)
      if (uvctx_shutdown(c->r->sd, c->cause) == UV_EALREADY &&
          uvctx_err(c->r->sd) == 0)
        c->ealready_not_done++;
    uv_barrier_wait(&c->r->done);
  }
}

START_TEST(test_shutdown_from_threads_while_its_last_child_goes) {
  int lost_cause = 0, rounds = test_scaled(SD_RACE_ROUNDS), round;
  uint64_t cap = uvctx_now() + SD_RACE_CAP_MS;
  uv_thread_t tid[2];
  sd_race_t r = {0};
  sd_caller_t callers[2] = {{&r, UV_EPIPE, 1, 0}, {&r, UV_EIO, 3, 0}};
  ck_assert_int_eq(uv_barrier_init(&r.go, 3), 0);
  ck_assert_int_eq(uv_barrier_init(&r.done, 3), 0);
  for (int i = 0; i < 2; i++)
    ck_assert_int_eq(uv_thread_create(&tid[i], sd_race_caller, &callers[i]),
                     0);

  for (round = 0; round < rounds; round++) {
    uv_loop_t loop;
    if (round >= SD_RACE_MIN_ROUNDS && uvctx_now() >= cap)
      break;
    uvctx_t *stopping, *child;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    ck_assert_int_eq(uvctx_with_shutdown(&loop, uvctx_background(), NULL, 0,
                                         60000, &stopping, &r.sd),
                     0);
    ck_assert_int_eq(uvctx_with_cancel(&loop, r.sd, &child), 0);
    uv_barrier_wait(&r.go);
    uvctx_release(child); /* nothing but stopping left: may end it early */
    uv_barrier_wait(&r.done);
    uv_run(&loop, UV_RUN_NOWAIT);

    ck_assert_int_eq(uvctx_err(r.sd), UV_ECANCELED);
    int cause = uvctx_cause(r.sd);
    if (cause != UV_EPIPE && cause != UV_EIO)
      lost_cause++;
    uvctx_release(stopping);
    uvctx_release(r.sd);
    ASSERT_LOOP_CLOSES(&loop);
  }
  r.stop = 1;
  uv_barrier_wait(&r.go);
  for (int i = 0; i < 2; i++)
    ck_assert_int_eq(uv_thread_join(&tid[i]), 0);
  if (round < rounds)
    fprintf(stderr,
            "test_shutdown_from_threads_while_its_last_child_goes: ran %d of "
            "%d rounds: the %d ms cap came first (a slow or loaded machine)\n",
            round, rounds, SD_RACE_CAP_MS);
  uv_barrier_destroy(&r.go);
  uv_barrier_destroy(&r.done);
  int early_ealready =
      callers[0].ealready_not_done + callers[1].ealready_not_done;
  ck_assert_msg(lost_cause == 0 && early_ealready == 0,
                "%d rounds: %d ended with cause UV_ECANCELED instead of their "
                "uvctx_shutdown() cause; %d times UV_EALREADY while not done",
                round, lost_cause, early_ealready);
}
END_TEST

Suite *stress_suite(void) {
  /* A soak sets its own length; valgrind and TSan are slow. */
  const char *secs = getenv("UVCTX_STRESS_SECONDS");
  double soak = secs != NULL ? (double)strtol(secs, NULL, 10) : 0;
  return SUITE(
      "stress",
      {"tree", soak + TIMEOUT_THREADS_S, counting_install, counting_uninstall,
       .tests = TESTS(
           test_threads_and_loop_on_one_tree_keep_every_promise)},
      {"shutdown_race", TIMEOUT_THREADS_S, NULL, NULL,
       .tests = TESTS(
           test_shutdown_from_threads_while_its_last_child_goes)});
}
