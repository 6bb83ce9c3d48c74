/* Model-based fuzzer: the input is a program of uvctx calls, run against the
 * library and against the reference model (model.c); any difference, crash,
 * leak or sanitizer report aborts.
 *
 * The program is a sequence of instructions, one opcode byte and a few
 * argument bytes each (a missing byte reads as 0):
 *
 *   make a context   with_cancel, with_deadline(_cause) (deadlines 0, 1,
 *                    2^62, UINT64_MAX - 1, UINT64_MAX), with_timeout(_cause)
 *                    (0 or UINT64_MAX), with_value (4 keys, 5 values, NULL
 *                    among them), without_cancel, with_any (1-4 parents,
 *                    repeats allowed), with_shutdown (grace 0 or UINT64_MAX,
 *                    no signals); the parent is a handle the program holds
 *   cancel           uvctx_cancel / uvctx_cancel_cause (causes 0, three
 *                    negative codes, and 1, which is invalid)
 *   shutdown         uvctx_shutdown
 *   reset            uvctx_reset_timeout (0 or UINT64_MAX)
 *   retain, release  of a handle; push a root as a handle
 *   watch, drain     in one of 16 watch slots, with an action the callback
 *                    performs once: nothing, cancel or release a handle,
 *                    unwatch a slot, watch again from the callback
 *   unwatch          a slot
 *   done_async       uvctx_done_async: NULL exactly for contexts that can
 *                    never be done, one handle per cancellable context
 *   format           uvctx_format, whole and truncated, against a template
 *   run              uv_run, UV_RUN_NOWAIT or UV_RUN_DEFAULT
 *   fail an alloc    the k-th allocation from now fails (k < 8): the call it
 *                    lands in must return UV_ENOMEM (NULL) and change nothing
 *   chain            1-64 levels stacked on a handle, each a side context of
 *                    the level below (cancel, value, NULL value, far or past
 *                    deadline, without_cancel, timeout, any of one) and an
 *                    any-context over the two that share everything above:
 *                    {t, s}, {s, t}, {t, t}, {s, s}, {t, s, t}, {s, t, s, t},
 *                    {s, t, t}, or the side alone; one shape for every level
 *                    or a different one each; only the top is kept as a
 *                    handle. Ancestors reachable by 2^levels paths.
 *
 * After every instruction the err, cause and loop of every handle are
 * compared with the model, and its deadline and values when it is new, every
 * fourth instruction and at the end (check_all). At the end every slot is unwatched,
 * every handle released and the loop run: no handle or request may be left
 * on it (what uv_loop_close() checks) and every byte uvctx allocated must
 * have been freed.
 *
 * Every instruction, every uvctx_value() and uvctx_deadline() of the checks
 * and every step of the teardown must take at most 100 ms (OP_LIMIT_MS, by
 * CLOCK_MONOTONIC): all of them take microseconds, so an operation that takes
 * longer has gone exponential or quadratic, and must show as a finding that
 * names it, not as a slow run or a libFuzzer timeout somewhere inside. Time
 * the fuzzing thread spent not running (another process had the core, on a
 * shared machine) is not the operation's: it must also have used that much
 * CPU time; one that has not returned after HANG_MS fails however. A VM's
 * guest still charges the time its host took the core away to the thread,
 * so fuzz/run runs the input of a stop again: a blow-up stops it every time.
 *
 * Time is kept out of it (see model.h): deadlines are past or out of reach,
 * and the calls that finish a context "now" do it inside the call. Real
 * timers firing late or early are the Check suite's business (test_timer.c).
 *
 * Built by fuzz/run with clang -fsanitize=fuzzer,address,undefined; built
 * without libFuzzer (fuzz/replay.c) it replays files, which `make check`
 * does with the corpus in fuzz/corpus. */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model.h"
#include "uvctx.h"

/* UVCTX_FUZZ_TRACE=1 prints each call and what it returned. */
static int trace;
#define TRACE(...)                                                            \
  do {                                                                        \
    if (trace)                                                                \
      fprintf(stderr, __VA_ARGS__);                                           \
  } while (0)

#define EXPECT(cond, ...)                                                     \
  do {                                                                        \
    if (!(cond))                                                              \
      m_fail(__VA_ARGS__);                                                    \
  } while (0)

enum {
  MAX_HANDLES = 48,
  FORMAT_MAX = M_MAX_NODES * 64,
  OP_LIMIT_MS = 100,
  HANG_MS = 2000
};

/* Opcodes; the byte is taken modulo OP_COUNT. */
enum {
  OP_CANCEL_CTX,
  OP_DEADLINE,
  OP_TIMEOUT,
  OP_VALUE,
  OP_WITHOUT,
  OP_ANY,
  OP_SHUTDOWN_CTX,
  OP_CANCEL,
  OP_SHUTDOWN,
  OP_RESET,
  OP_RETAIN,
  OP_RELEASE,
  OP_ROOT,
  OP_WATCH,
  OP_DRAIN,
  OP_UNWATCH,
  OP_DONE_ASYNC,
  OP_FORMAT,
  OP_RUN_NOWAIT,
  OP_RUN_DEFAULT,
  OP_FAIL_ALLOC,
  OP_CHAIN,
  OP_COUNT
};

static const char *const op_names[OP_COUNT] = {
    "with_cancel", "with_deadline", "with_timeout", "with_value",
    "without_cancel", "with_any", "with_shutdown", "cancel", "shutdown",
    "reset_timeout", "retain", "release", "root", "watch", "drain", "unwatch",
    "done_async", "format", "uv_run(NOWAIT)", "uv_run(DEFAULT)", "fail_alloc",
    "chain"};

typedef struct {
  uvctx_watch_t w;
  int action; /* done once, then 0 */
  int a1, a2;
} slot_t;

/* One loop for every input of the process: making one costs an epoll fd, a
 * pipe, an eventfd and a dozen system calls, a tenth of a short input's time.
 * Each input ends with nothing left on it (checked as uv_loop_close() would
 * check: no handle, no request), and uvctx's state of a loop goes with its
 * last context, so the next input finds it as a new one. */
static uv_loop_t loop;

static struct {
  int node[MAX_HANDLES];
  uvctx_t *ctx[MAX_HANDLES];
  int nh;
  slot_t slots[M_MAX_WATCHES];
  uv_async_t *async_of[M_MAX_NODES];
  uint64_t id_of[M_MAX_NODES]; /* uvctx_id() of a node that had a handle */
  int origin_of[M_MAX_NODES];  /* 1 + the origin node of a done node; 0: not
                                  looked up yet (it is fixed once done) */
  int in_api;
  const uint8_t *p;
  size_t left;
  uint64_t t0;
  unsigned steps;
  int new_nodes_from; /* nodes made by the current instruction: from here */
  unsigned deadline_epoch; /* the model's, when the last walks were checked */
} H;

static int keys[4];
static int vals[4];
static const int causes[5] = {0, UV_EPIPE, UV_ECONNRESET, -12345, 1};

/* ---------------------------------------------------------------------------
 * The allocator: counts, and fails the k-th allocation when asked.
 * ------------------------------------------------------------------------- */

static long outstanding;
static long fail_in = -1; /* allocations left before one fails; -1: none */
static long failures;

static void *fz_malloc(size_t size) {
  void *p;
  if (fail_in == 0) {
    fail_in = -1;
    failures++;
    return NULL;
  }
  if (fail_in > 0)
    fail_in--;
  p = malloc(size);
  if (p != NULL)
    outstanding++;
  return p;
}

static void fz_free(void *p) {
  if (p != NULL)
    outstanding--;
  free(p);
}

/* Runs a uvctx call, noting whether an allocation failed inside it. */
static int alloc_failed;
#define CALL(expr)                                                            \
  __extension__({                                                             \
    long f0_ = failures;                                                      \
    H.in_api++;                                                               \
    __typeof__(expr) r_ = (expr);                                             \
    H.in_api--;                                                               \
    alloc_failed = failures != f0_;                                           \
    r_;                                                                       \
  })

/* ---------------------------------------------------------------------------
 * Timing: no operation may take more than OP_LIMIT_MS
 *
 * A blow-up does not return for hours, so it cannot be measured after the
 * fact: each operation notes when it began and what it is, and a watchdog
 * thread looks every few milliseconds. When one has run too long it names it
 * and sends SIGABRT to the fuzzing thread, whose stack (libFuzzer's crash
 * report, or a core) shows where it was stuck. Reading the fuzzing thread's
 * CPU clock is a system call, so only the watchdog does it, from the moment
 * it first sees an operation (at most a tick after it began).
 * ------------------------------------------------------------------------- */

enum { TICK_MS = 20 };

static uint64_t clock_ns(clockid_t id);

/* The coarse clock: read from the vDSO without the time counter, a few
 * nanoseconds per operation, to the tick (a few ms): plenty for 100 ms. */
static uint64_t mono_ns(void) { return clock_ns(CLOCK_MONOTONIC_COARSE); }

/* The operation running: since 0 when none. */
typedef struct {
  uint64_t since;
  const char *what;
  int node;
} op_t;

static _Atomic uint64_t op_since;
static const char *_Atomic op_what;
static _Atomic int op_node;
static pthread_t fuzz_thread, watchdog_thread;
static atomic_int watchdog_stop;

/* Starts timing what (on node n, if n >= 0); returns what was being timed,
 * for op_end() to resume: a callback's checks run inside uv_run. */
static op_t op_begin(const char *what, int n) {
  op_t prev = {atomic_load_explicit(&op_since, memory_order_relaxed),
               atomic_load_explicit(&op_what, memory_order_relaxed),
               atomic_load_explicit(&op_node, memory_order_relaxed)};
  atomic_store_explicit(&op_since, 0, memory_order_relaxed);
  atomic_store_explicit(&op_what, what, memory_order_relaxed);
  atomic_store_explicit(&op_node, n, memory_order_relaxed);
  atomic_store_explicit(&op_since, mono_ns(), memory_order_release);
  return prev;
}

static void op_end(op_t prev) {
  atomic_store_explicit(&op_since, 0, memory_order_relaxed);
  atomic_store_explicit(&op_what, prev.what, memory_order_relaxed);
  atomic_store_explicit(&op_node, prev.node, memory_order_relaxed);
  atomic_store_explicit(&op_since, prev.since, memory_order_release);
}

static uint64_t clock_ns(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *watchdog(void *arg) {
  const struct timespec tick = {0, TICK_MS * 1000000};
  const uint64_t ms = 1000000;
  uint64_t seen = 0, cpu0 = 0; /* the operation last seen, and its start */
  clockid_t cpu;

  (void)arg;
  if (pthread_getcpuclockid(fuzz_thread, &cpu) != 0)
    abort();
  while (!atomic_load_explicit(&watchdog_stop, memory_order_relaxed)) {
    uint64_t since, wall, used;
    const char *what;
    int n;

    nanosleep(&tick, NULL);
    since = atomic_load_explicit(&op_since, memory_order_acquire);
    if (since == 0)
      continue;
    if (since != seen) {
      seen = since;
      cpu0 = clock_ns(cpu);
      continue;
    }
    wall = mono_ns() - since;
    used = clock_ns(cpu) - cpu0;
    if (!(wall > OP_LIMIT_MS * ms && used > OP_LIMIT_MS * ms) &&
        wall <= HANG_MS * ms)
      continue;
    what = atomic_load_explicit(&op_what, memory_order_relaxed);
    n = atomic_load_explicit(&op_node, memory_order_relaxed);
    if (atomic_load_explicit(&op_since, memory_order_acquire) != since)
      continue; /* it ended meanwhile: what and n may be the next one's */
    fprintf(stderr, "\nfuzz_model: %s", what);
    if (n >= 0)
      fprintf(stderr, " of node %d", n);
    fprintf(stderr,
            " has run for %" PRIu64 " ms (%" PRIu64 " ms of CPU seen), more "
            "than %d ms (%d nodes)\n",
            wall / ms, used / ms, OP_LIMIT_MS, M.nnodes);
    pthread_kill(fuzz_thread, SIGABRT);
    return NULL;
  }
  return NULL;
}

/* At exit (fuzz/replay's end, libFuzzer's -runs), so that valgrind finds
 * nothing of the thread left. */
static void watchdog_end(void) {
  atomic_store_explicit(&watchdog_stop, 1, memory_order_relaxed);
  pthread_join(watchdog_thread, NULL);
}

/* ---------------------------------------------------------------------------
 * Reading the program
 * ------------------------------------------------------------------------- */

static unsigned byte(void) {
  if (H.left == 0)
    return 0;
  H.left--;
  return *H.p++;
}

/* A handle index, or -1 when the program holds none. */
static int pick(unsigned b) {
  return H.nh == 0 ? -1 : (int)(b % (unsigned)H.nh);
}

static int node_of(int h) { return h < 0 ? 0 : H.node[h]; }
static uvctx_t *ctx_of(int h) { return h < 0 ? uvctx_background() : H.ctx[h]; }

static void add_handle(int node, uvctx_t *ctx) {
  H.id_of[node] = uvctx_id(ctx);
  H.node[H.nh] = node;
  H.ctx[H.nh] = ctx;
  H.nh++;
}

static void drop_handle(int h) {
  H.nh--;
  H.node[h] = H.node[H.nh];
  H.ctx[h] = H.ctx[H.nh];
}

static int room(int handles) {
  return H.nh + handles <= MAX_HANDLES && M.nnodes + 2 <= M_MAX_NODES;
}

/* ---------------------------------------------------------------------------
 * Comparing with the model
 * ------------------------------------------------------------------------- */

/* uvctx_done_info() against the model: the origin is the node the event
 * that finished n started from, and "via" is UVCTX_VIA_SELF exactly when
 * that is n's owner (the context whose state n reports). The origin's id is
 * known when it had a handle (a chain's inner levels had none). */
static void check_done_info(int n, uvctx_t *ctx, const m_node *x) {
  uvctx_done_info_t info;
  int rc = uvctx_done_info(ctx, &info);
  int o;

  if (x->err == 0) {
    EXPECT(rc == UV_EAGAIN, "node %d: done_info %d while not done", n, rc);
    return;
  }
  EXPECT(rc == 0, "node %d: done_info %d", n, rc);
  EXPECT(info.err == x->err && info.cause == x->cause,
         "node %d: done_info err %d cause %d", n, info.err, info.cause);
  if (H.origin_of[n] == 0) {
    for (o = 0; o < M.nnodes; o++)
      if (M.nodes[o].event == x->event && M.nodes[o].root_of_event)
        break;
    EXPECT(o < M.nnodes, "node %d: the model has no origin", n);
    H.origin_of[n] = o + 1;
  }
  o = H.origin_of[n] - 1;
  EXPECT((info.via == UVCTX_VIA_SELF) == (o == m_owner(n)),
         "node %d: via %d, origin node %d, owner %d", n, (int)info.via, o,
         m_owner(n));
  if (H.id_of[o] != 0)
    EXPECT(info.origin_id == H.id_of[o],
           "node %d: origin #%" PRIu64 ", model node %d is #%" PRIu64, n,
           info.origin_id, o, H.id_of[o]);
}

static void check_handle(int h, int walks) {
  int n = H.node[h];
  uvctx_t *ctx = H.ctx[h];
  const m_node *x = &M.nodes[n];
  uint64_t got = 0, want = 0;
  int rc, mrc;
  op_t t;

  EXPECT(uvctx_err(ctx) == x->err, "node %d: err %d, model %d", n,
         uvctx_err(ctx), x->err);
  EXPECT(uvctx_cause(ctx) == x->cause, "node %d: cause %d, model %d", n,
         uvctx_cause(ctx), x->cause);
  check_done_info(n, ctx, x);
  EXPECT(uvctx_loop(ctx) == (m_can_be_done(n) ? &loop : NULL),
         "node %d: uvctx_loop", n);
  if (!walks)
    return;
  t = op_begin("uvctx_deadline", n);
  rc = uvctx_deadline(ctx, &got);
  op_end(t);
  mrc = m_deadline(n, &want);
  EXPECT(rc == mrc, "node %d: uvctx_deadline %d, model %d", n, rc, mrc);
  if (rc == 1) {
    if (want == M_NOW)
      EXPECT(got >= H.t0 && got <= uvctx_now(),
             "node %d: deadline %" PRIu64 " is not 'now'", n, got);
    else
      EXPECT(got == want, "node %d: deadline %" PRIu64 ", model %" PRIu64, n,
             got, want);
  }
  for (int k = 0; k < 5; k++) {
    /* Four keys, then one that nothing defines: a walk of everything. */
    const void *key = k < 4 ? (const void *)&keys[k] : (const void *)&H;
    void *v = NULL, *got_v;
    m_value(n, key, &v);
    t = op_begin("uvctx_value", n);
    got_v = uvctx_value(ctx, key);
    op_end(t);
    EXPECT(got_v == v, "node %d: value of key %d", n, k);
  }
}

/* Each node once: retained handles of one node share its context.
 *
 * err, cause and loop change with every cancel, run and release, so they are
 * compared for every node after every instruction. The lookups that walk a
 * node's ancestors (its deadline and five values, one of them a miss that
 * walks them all) were three quarters of the fuzzer's time, and their
 * answers are fixed when the node is made (but for deadlines that a reset or
 * a shutdown moves: the model's deadline_epoch): they are compared for a node
 * when it is made, for every node after a deadline moved, every WALKS_EVERY
 * instructions and at the end of the input,
 * before the teardown. A lookup that a later instruction breaks (a release
 * or a cancel somewhere in its graph) stays broken, so it shows at the next
 * full comparison. */
#define WALKS_EVERY 4

/* The contexts the loop's trees reach (uvctx_loop_stats walks them from the
 * loop's tops) are the cancellable nodes the model has alive, kind by kind:
 * none missed, none met twice, whatever the any-contexts' parents. */
static void check_live(void) {
  static const int kinds[UVCTX_KIND_COUNT] = {
      [UVCTX_KIND_CANCEL] = M_CANCEL,
      [UVCTX_KIND_DEADLINE] = M_DEADLINE,
      [UVCTX_KIND_SIGNAL] = -1, /* the model makes no signal contexts */
      [UVCTX_KIND_ANY] = M_ANY,
      [UVCTX_KIND_SHUTDOWN] = M_SHUTDOWN,
  };
  uvctx_stats_t st = {.size = sizeof st};
  int rc = uvctx_loop_stats(&loop, &st);

  EXPECT(rc == 0 || rc == UV_ENOENT, "uvctx_loop_stats: %d", rc);
  for (int k = 0; k < UVCTX_KIND_COUNT; k++) {
    uint64_t alive = 0;
    for (int n = 0; n < M.nnodes; n++)
      alive += M.nodes[n].alive && M.nodes[n].kind == kinds[k];
    EXPECT((rc == 0 ? st.live[k] : 0) == alive,
           "live contexts of kind %d: %" PRIu64 ", the model has %" PRIu64, k,
           rc == 0 ? st.live[k] : 0, alive);
  }
}

static void check_all(int walks) {
  static unsigned gen, checked[M_MAX_NODES];

  if (M.deadline_epoch != H.deadline_epoch) /* a deadline moved */
    walks = 1;
  if (walks) {
    H.deadline_epoch = M.deadline_epoch;
    check_live();
  }

  if (++gen == 0) {
    memset(checked, 0, sizeof checked);
    gen = 1;
  }
  for (int h = 0; h < H.nh; h++)
    if (checked[H.node[h]] != gen) {
      checked[H.node[h]] = gen;
      check_handle(h, walks || H.node[h] >= H.new_nodes_from);
    }
}

/* A constructor's outcome: an allocation failed and it said UV_ENOMEM with
 * *out untouched, or it succeeded as the model says. */
static char sentinel;
#define SENTINEL ((uvctx_t *)&sentinel)

static int made(int rc, uvctx_t *out) {
  if (alloc_failed) {
    EXPECT(rc == UV_ENOMEM, "an allocation failed, the call returned %d", rc);
    EXPECT(out == SENTINEL, "failed constructor wrote *out");
    return 0;
  }
  EXPECT(rc == 0, "constructor returned %d", rc);
  EXPECT(out != SENTINEL && out != NULL, "constructor gave no context");
  return 1;
}

/* ---------------------------------------------------------------------------
 * Instructions
 * ------------------------------------------------------------------------- */

static void watch_cb(uvctx_watch_t *w, int err);

static void do_cancel(int h, int cause) {
  int n = node_of(h);
  int rc = cause == 0 ? CALL(uvctx_cancel(ctx_of(h)))
                      : CALL(uvctx_cancel_cause(ctx_of(h), cause));
  int mrc = m_cancel(n, cause);
  TRACE("cancel node %d cause %d -> %d\n", n, cause, rc);
  EXPECT(rc == mrc, "cancel of node %d (cause %d): %d, model %d", n, cause, rc,
         mrc);
}

static void do_release(int h) {
  if (h < 0)
    return;
  CALL((uvctx_release(H.ctx[h]), 0));
  TRACE("release node %d\n", H.node[h]);
  m_release(H.node[h]);
  drop_handle(h);
}

static void do_unwatch(int s) {
  int rc = CALL(uvctx_unwatch(&H.slots[s].w));
  int mrc = m_unwatch(s);
  TRACE("unwatch slot %d -> %d\n", s, rc);
  EXPECT(rc == mrc, "unwatch of slot %d: %d, model %d", s, rc, mrc);
}

static void do_watch(int s, int h, int drain) {
  slot_t *sl = &H.slots[s];
  int n = node_of(h);
  int rc, mrc;

  sl->w.data = sl;
  if (drain) {
    rc = CALL(uvctx_drain(ctx_of(h), &sl->w, watch_cb));
    /* A context's first drain makes its extra block: when that allocation
     * fails, the drain says UV_ENOMEM and is not registered. */
    if (alloc_failed) {
      TRACE("drain node %d slot %d -> %d (allocation failed)\n", n, s, rc);
      EXPECT(rc == UV_ENOMEM, "drain of node %d: an allocation failed, %d", n,
             rc);
      return;
    }
    mrc = m_drain(s, n);
  } else {
    rc = CALL(uvctx_watch(ctx_of(h), &sl->w, watch_cb));
    mrc = m_watch(s, n);
  }
  TRACE("%s node %d slot %d action %d -> %d\n", drain ? "drain" : "watch",
        n, s, sl->action, rc);
  EXPECT(rc == mrc, "%s of node %d in slot %d: %d, model %d",
         drain ? "drain" : "watch", n, s, rc, mrc);
}

static void watch_cb(uvctx_watch_t *w, int err) {
  slot_t *sl = w->data;
  int s = (int)(sl - H.slots);
  int action = sl->action;

  EXPECT(H.in_api == 0, "a callback ran inside a uvctx call");
  TRACE("  callback slot %d node %d err %d\n", s, M.watches[s].node, err);
  m_callback(s, err);
  sl->action = 0;
  switch (action) {
  case 1:
    do_cancel(pick((unsigned)sl->a1), causes[sl->a2 % 4]);
    break;
  case 2:
    do_release(pick((unsigned)sl->a1));
    break;
  case 3:
    do_unwatch(sl->a1 % M_MAX_WATCHES);
    break;
  case 4:
    do_watch(s, pick((unsigned)sl->a1), 0);
    break;
  default:
    break;
  }
  check_all(0);
}

static void made_trace(int op, int rc) {
  TRACE("make op %d -> %d%s, node %d, %d handles\n", op, rc,
        alloc_failed ? " (allocation failed)" : "", M.nnodes - 1, H.nh);
}

static void op_make(int op) {
  int h = pick(byte());
  int parent = node_of(h);
  uvctx_t *pctx = ctx_of(h);
  uvctx_t *out = SENTINEL, *stopping = SENTINEL;
  unsigned a = byte(), b = byte();
  int rc, n;

  if (!room(2))
    return;
  switch (op) {
  case OP_CANCEL_CTX:
    rc = CALL(uvctx_with_cancel(&loop, pctx, &out));
    if (made(rc, out))
      add_handle(m_new_cancel(parent), out);
    break;
  case OP_DEADLINE: {
    static const uint64_t deadlines[5] = {0, 1, (uint64_t)1 << 62,
                                          UINT64_MAX - 1, UINT64_MAX};
    uint64_t d = deadlines[a % 5];
    int cause = causes[b % 4];
    rc = b % 5 == 4 ? CALL(uvctx_with_deadline(&loop, pctx, d, &out))
                    : CALL(uvctx_with_deadline_cause(&loop, pctx, d, cause,
                                                     &out));
    if (b % 5 == 4)
      cause = 0;
    if (made(rc, out))
      add_handle(m_new_deadline(parent, d, cause), out);
    break;
  }
  case OP_TIMEOUT: {
    uint64_t t = a % 2 ? UINT64_MAX : 0;
    int cause = causes[b % 4];
    rc = b % 5 == 4 ? CALL(uvctx_with_timeout(&loop, pctx, t, &out))
                    : CALL(uvctx_with_timeout_cause(&loop, pctx, t, cause,
                                                    &out));
    if (b % 5 == 4)
      cause = 0;
    if (made(rc, out))
      add_handle(m_new_deadline(parent, t == 0 ? M_NOW : UINT64_MAX, cause),
                 out);
    break;
  }
  case OP_VALUE: {
    const void *key = &keys[a % 4];
    void *value = b % 5 == 4 ? NULL : &vals[b % 5];
    rc = CALL(uvctx_with_value(pctx, key, value, &out));
    if (made(rc, out))
      add_handle(m_new_value(parent, key, value), out);
    break;
  }
  case OP_WITHOUT:
    rc = CALL(uvctx_without_cancel(pctx, &out));
    if (made(rc, out))
      add_handle(m_new_without(parent), out);
    break;
  case OP_ANY: {
    int count = 1 + (int)(a % M_MAX_PARENTS);
    int parents[M_MAX_PARENTS];
    uvctx_t *pctxs[M_MAX_PARENTS];
    parents[0] = parent;
    pctxs[0] = pctx;
    for (int i = 1; i < count; i++) {
      int hi = pick(byte());
      parents[i] = node_of(hi);
      pctxs[i] = ctx_of(hi);
    }
    rc = CALL(uvctx_with_any(&loop, pctxs, (size_t)count, &out));
    if (made(rc, out))
      add_handle(m_new_any(parents, count), out);
    break;
  }
  case OP_SHUTDOWN_CTX: {
    uint64_t grace = a % 2 ? UINT64_MAX : 0;
    rc = CALL(uvctx_with_shutdown(&loop, pctx, NULL, 0, grace, &stopping,
                                  &out));
    if (!made(rc, out)) {
      EXPECT(stopping == SENTINEL, "failed with_shutdown wrote *stopping");
      break;
    }
    n = m_new_shutdown(parent, grace);
    add_handle(n, out);
    add_handle(M.nodes[n].stopping, stopping);
    break;
  }
  }
  made_trace(op, rc);
}

/* One level's side context s of top, as kind says (see the header); 1 and
 * s's node and context, or 0 when an injected allocation failure stopped it.
 * r varies deadlines and values from level to level. */
static int make_side(unsigned kind, int top, uvctx_t *tctx, unsigned level,
                     uint32_t r, int *node, uvctx_t **out) {
  uvctx_t *s = SENTINEL;
  const void *key = &keys[r >> 2 & 3];
  int cause = causes[r & 3];
  int rc;

  switch (kind) {
  case 0:
    rc = CALL(uvctx_with_cancel(&loop, tctx, &s));
    if (made(rc, s))
      *node = m_new_cancel(top);
    break;
  case 1:
  case 2: {
    void *value = kind == 2 ? NULL : &vals[r >> 4 & 3];
    rc = CALL(uvctx_with_value(tctx, key, value, &s));
    if (made(rc, s))
      *node = m_new_value(top, key, value);
    break;
  }
  case 3: {
    /* Far and different at each level, so that the earliest is one of
     * them, anywhere in the chain. */
    uint64_t d = ((uint64_t)1 << 62) + (r >> 8 & 0xffff);
    rc = CALL(uvctx_with_deadline_cause(&loop, tctx, d, cause, &s));
    if (made(rc, s))
      *node = m_new_deadline(top, d, cause);
    break;
  }
  case 4:
    rc = CALL(uvctx_without_cancel(tctx, &s));
    if (made(rc, s))
      *node = m_new_without(top);
    break;
  case 5:
    rc = CALL(uvctx_with_timeout(&loop, tctx, UINT64_MAX, &s));
    if (made(rc, s))
      *node = m_new_deadline(top, UINT64_MAX, 0);
    break;
  case 6:
    rc = CALL(uvctx_with_deadline_cause(&loop, tctx, r >> 6 & 1, cause,
                                        &s));
    if (made(rc, s))
      *node = m_new_deadline(top, r >> 6 & 1, cause);
    break;
  default:
    rc = CALL(uvctx_with_any(&loop, &tctx, 1, &s));
    if (made(rc, s))
      *node = m_new_any(&top, 1);
    break;
  }
  TRACE("  chain level %u: side kind %u -> %d, node %d\n", level, kind, rc,
        alloc_failed ? -1 : *node);
  if (alloc_failed)
    return 0;
  *out = s;
  return 1;
}

/* Lets go of a context the program does not hold as a handle. */
static void release_tmp(int node, uvctx_t *ctx) {
  CALL((uvctx_release(ctx), 0));
  m_release(node);
}

/* The any-context parents of each pattern: t is the level below, s its side
 * context; the last pattern uses s alone, as the next level. */
static const char chain_patterns[8][M_MAX_PARENTS + 1] = {
    "ts", "st", "tt", "ss", "tst", "stst", "stt", "s"};

static void op_chain(void) {
  int h = pick(byte());
  unsigned levels = 1 + byte() % 64, shape = byte();
  uint32_t r = byte() * 2654435761u + 1;
  int top = node_of(h), held = 0; /* held: top is ours to release */
  uvctx_t *tctx = ctx_of(h);

  if (!room(1))
    return;
  for (unsigned i = 0; i < levels && M.nnodes + 2 <= M_MAX_NODES; i++) {
    unsigned kind = shape % 8, pattern = shape / 8 % 8;
    const char *pat;
    int side = -1, parents[M_MAX_PARENTS], count = 0, any = -1, rc;
    uvctx_t *sctx = NULL, *pctxs[M_MAX_PARENTS], *out = SENTINEL;

    r = r * 1103515245u + 12345u;
    if (shape & 0x80) { /* a different shape at each level */
      kind = r >> 16 & 7;
      pattern = r >> 19 & 7;
    }
    pat = chain_patterns[pattern];
    if (strchr(pat, 's') != NULL &&
        !make_side(kind, top, tctx, i, r >> 8, &side, &sctx))
      break;
    if (strcmp(pat, "s") == 0) {
      any = side;
      out = sctx;
    } else {
      for (; pat[count] != '\0'; count++) {
        parents[count] = pat[count] == 't' ? top : side;
        pctxs[count] = pat[count] == 't' ? tctx : sctx;
      }
      rc = CALL(uvctx_with_any(&loop, pctxs, (size_t)count, &out));
      if (made(rc, out))
        any = m_new_any(parents, count);
      TRACE("  chain level %u: any of %s -> %d, node %d\n", i, pat, rc, any);
      /* The any-context holds its own reference to the side context. */
      if (side >= 0)
        release_tmp(side, sctx);
      if (any < 0)
        break;
    }
    if (held)
      release_tmp(top, tctx);
    top = any;
    tctx = out;
    held = 1;
  }
  if (held)
    add_handle(top, tctx);
}

static void op_done_async(void) {
  int h = pick(byte());
  int n = node_of(h);
  int o = m_owner(n);
  uv_async_t *a = CALL(uvctx_done_async(ctx_of(h)));

  if (o < 0) {
    EXPECT(a == NULL, "done_async of node %d, never done: not NULL", n);
    return;
  }
  if (alloc_failed) {
    EXPECT(a == NULL, "done_async: an allocation failed, not NULL");
    return;
  }
  EXPECT(a != NULL, "done_async of node %d: NULL", n);
  if (H.async_of[o] != NULL)
    EXPECT(a == H.async_of[o], "done_async of node %d: another handle", n);
  H.async_of[o] = a;
}

static void op_format(void) {
  int h = pick(byte());
  unsigned cut = byte();
  int n = node_of(h);
  static char tmpl[FORMAT_MAX], buf[FORMAT_MAX], small[FORMAT_MAX + 8];
  int len, rc;

  m_format_template(n, tmpl, sizeof tmpl);
  /* Then the id, but for a root; and for a done context how it ended, which
   * check_done_info() compares with the model. */
  if (uvctx_id(ctx_of(h)) > 2) {
    size_t used = strlen(tmpl);
    snprintf(tmpl + used, sizeof tmpl - used, " #%" PRIu64 "%s",
             uvctx_id(ctx_of(h)), M.nodes[n].err != 0 ? " done *" : "");
  }
  len = CALL(uvctx_format(ctx_of(h), buf, sizeof buf));
  EXPECT(len >= 0 && (size_t)len < sizeof buf, "format of node %d: %d", n,
         len);
  EXPECT((size_t)len == strlen(buf), "format of node %d: length %d, '%s'", n,
         len, buf);
  EXPECT(m_format_match(tmpl, buf), "format of node %d: '%s', model '%s'", n,
         buf, tmpl);
  /* Truncated like snprintf. Deadlines print the time left, which may
   * change between the two calls: then only the shape is compared. */
  size_t cap = cut % (size_t)(len + 3);
  memset(small, 'X', cap + 1);
  rc = CALL(uvctx_format(ctx_of(h), cap ? small : NULL, cap));
  if (strchr(tmpl, '*') == NULL) {
    size_t keep = (size_t)len < cap ? (size_t)len : cap ? cap - 1 : 0;
    EXPECT(rc == len, "format of node %d into %zu bytes: %d, not %d", n, cap,
           rc, len);
    if (cap > 0)
      EXPECT(memcmp(small, buf, keep) == 0 && small[keep] == '\0',
             "format of node %d into %zu bytes: '%s'", n, cap, small);
  } else if (cap > 0) {
    EXPECT(rc >= 0 && memchr(small, '\0', cap) != NULL,
           "format of node %d into %zu bytes: not terminated", n, cap);
  }
  EXPECT(small[cap] == 'X', "format of node %d wrote past %zu bytes", n, cap);
}

static void op_run(int nowait) {
  int rc;
  TRACE("run %s\n", nowait ? "nowait" : "default");
  m_run_begin();
  rc = uv_run(&loop, nowait ? UV_RUN_NOWAIT : UV_RUN_DEFAULT);
  m_run_end(nowait);
  if (!nowait)
    EXPECT(rc == 0, "uv_run(UV_RUN_DEFAULT) returned %d: something keeps the "
                    "loop alive", rc);
}

static void step(void) {
  int op = (int)(byte() % OP_COUNT);
  int h, s;
  unsigned a, b, c;
  op_t t = op_begin(op_names[op], -1);

  H.new_nodes_from = M.nnodes;
  switch (op) {
  case OP_CANCEL_CTX:
  case OP_DEADLINE:
  case OP_TIMEOUT:
  case OP_VALUE:
  case OP_WITHOUT:
  case OP_ANY:
  case OP_SHUTDOWN_CTX:
    op_make(op);
    break;
  case OP_CANCEL:
    h = pick(byte());
    do_cancel(h, causes[byte() % 5]);
    break;
  case OP_SHUTDOWN: {
    int cause;
    h = pick(byte());
    cause = causes[byte() % 5];
    int rc = CALL(uvctx_shutdown(ctx_of(h), cause));
    int mrc = m_shutdown(node_of(h), cause);
    TRACE("shutdown node %d cause %d -> %d\n", node_of(h), cause, rc);
    EXPECT(rc == mrc, "shutdown of node %d: %d, model %d", node_of(h), rc,
           mrc);
    break;
  }
  case OP_RESET: {
    h = pick(byte());
    int zero = byte() % 2;
    int rc = CALL(uvctx_reset_timeout(ctx_of(h), zero ? 0 : UINT64_MAX));
    int mrc = m_reset_timeout(node_of(h), zero);
    TRACE("reset node %d %s -> %d\n", node_of(h), zero ? "0" : "max", rc);
    EXPECT(rc == mrc, "reset_timeout of node %d: %d, model %d", node_of(h),
           rc, mrc);
    break;
  }
  case OP_RETAIN:
    h = pick(byte());
    if (h >= 0 && room(1)) {
      EXPECT(CALL(uvctx_retain(H.ctx[h])) == H.ctx[h], "retain");
      m_retain(H.node[h]);
      add_handle(H.node[h], H.ctx[h]);
    }
    break;
  case OP_RELEASE:
    do_release(pick(byte()));
    break;
  case OP_ROOT:
    if (room(1)) {
      int todo = byte() % 2;
      add_handle(todo, todo ? uvctx_todo() : uvctx_background());
    }
    break;
  case OP_WATCH:
  case OP_DRAIN:
    s = (int)(byte() % M_MAX_WATCHES);
    h = pick(byte());
    a = byte();
    b = byte();
    c = byte();
    /* The action is set only if the watch is not pending: a pending one
     * keeps what it has (the call must fail with UV_EBUSY). */
    if (M.watches[s].state == MW_IDLE) {
      H.slots[s].action = (int)(a % 6);
      H.slots[s].a1 = (int)b;
      H.slots[s].a2 = (int)c;
    }
    do_watch(s, h, op == OP_DRAIN);
    break;
  case OP_UNWATCH:
    do_unwatch((int)(byte() % M_MAX_WATCHES));
    break;
  case OP_DONE_ASYNC:
    op_done_async();
    break;
  case OP_FORMAT:
    op_format();
    break;
  case OP_RUN_NOWAIT:
  case OP_RUN_DEFAULT:
    op_run(op == OP_RUN_NOWAIT);
    break;
  case OP_FAIL_ALLOC:
    fail_in = (long)(byte() % 8);
    break;
  case OP_CHAIN:
    op_chain();
    break;
  }
  op_end(t);
  check_all(++H.steps % WALKS_EVERY == 0);
}

static void count_handle(uv_handle_t *handle, void *arg) {
  (void)handle;
  (*(int *)arg)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int once;
  op_t t;
  int open_handles = 0;

  if (!once) {
    once = 1;
    trace = getenv("UVCTX_FUZZ_TRACE") != NULL;
    if (uvctx_replace_allocator(fz_malloc, fz_free) != 0)
      abort();
    if (uv_loop_init(&loop) != 0)
      abort();
    fuzz_thread = pthread_self();
    if (pthread_create(&watchdog_thread, NULL, watchdog, NULL) != 0 ||
        atexit(watchdog_end) != 0)
      abort();
  }
  memset(&H, 0, sizeof H);
  m_init();
  outstanding = 0;
  fail_in = -1;
  H.p = data;
  H.left = size;
  H.t0 = uvctx_now();

  while (H.left > 0)
    step();
  check_all(1);

  /* The end: no failure injected any more, everything let go of. */
  fail_in = -1;
  for (int s = 0; s < M_MAX_WATCHES; s++) {
    t = op_begin("unwatch at the end", -1);
    do_unwatch(s);
    op_end(t);
  }
  while (H.nh > 0) {
    t = op_begin("release at the end", H.node[H.nh - 1]);
    do_release(H.nh - 1);
    op_end(t);
  }
  t = op_begin("uv_run(DEFAULT) at the end", -1);
  op_run(0);
  op_end(t);
  for (int n = 2; n < M.nnodes; n++)
    EXPECT(!M.nodes[n].alive, "model: node %d still alive at the end", n);
  t = op_begin("uvctx_dump_loop and uv_walk at the end", -1);
  EXPECT(uvctx_dump_loop(&loop, stderr) == 0,
         "contexts alive after everything was released");
  uv_walk(&loop, count_handle, &open_handles);
  EXPECT(open_handles == 0 && !uv_loop_alive(&loop),
         "%d handles left on the loop at the end (uv_loop_close would fail)",
         open_handles);
  op_end(t);
  EXPECT(outstanding == 0, "%ld blocks uvctx allocated were not freed",
         outstanding);
  return 0;
}
