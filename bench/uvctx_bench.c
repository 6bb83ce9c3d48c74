/* uvctx benchmark suite: the workloads of Go's context/benchmark_test.go and
 * a few of uvctx's own, one result per line (`name<TAB>value<TAB>unit`).
 * bench/compare runs it next to Go (bench/go), Node (bench/node) and raw
 * libuv (bench/raw_libuv) and prints the ratios.
 *
 * usage: bench/uvctx_bench [--smoke] [--only NAME] [--time MS] [--reps N]
 *                          [--turn N] [--list]
 *
 * Everything runs on one loop thread (Go's benchmarks use RunParallel; here
 * the per-op cost on one thread is what is measured). Memory of released
 * contexts goes back in libuv close callbacks, so the create/cancel/release
 * workloads run one loop turn (uv_run(UV_RUN_NOWAIT)) every --turn ops
 * (default 64), inside the timed region. A ref'd 1-hour timer keeps the loop
 * alive, as a server's listening socket would, and a long-lived cancel
 * context (the keeper) keeps uvctx's per-loop state alive, as a server's root
 * context would.
 *
 * Results (see also bench/harness.h):
 *   million/{create,release}          ns per context, 1,000,000 cancel
 *                                     contexts under one root
 *   million/cancel_root               ns for the one cancel of that root
 *   million/peak_rss, rss_per_ctx     getrusage ru_maxrss: peak, and (peak -
 *                                     RSS before) / 1,000,000
 *   mem/{cancel,deadline}_ctx         bytes asked of the allocator per
 *                                     context (uvctx_replace_allocator and
 *                                     uv_replace_allocator counting wrappers)
 *   mem/{cancel,deadline}_ctx_heap    the same in glibc heap chunks
 *                                     (malloc_usable_size + 8-byte header)
 *   with_cancel_cancel_release        child of an open cancel context
 *   with_timeout_cancel_release       same, a 1-hour deadline context
 *   with_timeout_cancel_release/turn=4096  the same with 4096 ops per turn
 *   common_parent_cancel              Go's BenchmarkCommonParentCancel
 *   with_timeout/idle=N               Go's BenchmarkWithTimeout: N 1-hour
 *                                     deadline contexts alive under
 *                                     Background, one more made, cancelled,
 *                                     released per op
 *   cancel_tree/depth=D/root=R        Go's BenchmarkCancelTree (plus the
 *                                     release of the D contexts)
 *   check_canceled/err                Go's BenchmarkCheckCanceled/Err
 *   deep_value/depth=D                Go's BenchmarkDeepValueSameGoRoutine
 *   any_chain/depth=40/{value_miss,deadline}  uvctx_value (a key defined
 *                                     nowhere) and uvctx_deadline through 40
 *                                     stacked diamonds of any-contexts
 *   cancel_delivery/live=L/from=F/pP  ns from uvctx_cancel to the watch
 *                                     callback, L contexts alive, cancelled
 *                                     from the loop thread or another thread
 *   grpc_timeout/encode               uvctx_grpc_timeout of a context with a
 *                                     30 s deadline ("29999876u")
 *   grpc_timeout/parse                uvctx_with_grpc_timeout + release, the
 *                                     values grpc-go and grpc-js send in turn
 *   grpc_timeout/with_timeout         uvctx_with_timeout + release in the
 *                                     same loop, for comparison: what parse
 *                                     costs above it is the decoding
 */
#define _GNU_SOURCE /* malloc_usable_size */
#include <malloc.h>

#include "harness.h"
#include "uvctx.h"

static uv_loop_t loop;
static uv_timer_t keepalive;
static uvctx_t *keeper;
static unsigned int turn_count;
static unsigned int turn_every;
static volatile int64_t sink;

static void turn(void) {
  if (++turn_count >= turn_every) {
    turn_count = 0;
    uv_run(&loop, UV_RUN_NOWAIT);
  }
}

/* Untimed, after each timed run: finish the close callbacks still due. */
static void settle(void *arg) {
  (void)arg;
  turn_count = 0;
  uv_run(&loop, UV_RUN_NOWAIT);
  uv_run(&loop, UV_RUN_NOWAIT);
}

static void noop_timer(uv_timer_t *t) { (void)t; }

static void must(int err, const char *what) {
  if (err != 0) {
    fprintf(stderr, "uvctx_bench: %s: %s\n", what, uv_strerror(err));
    exit(1);
  }
}

/* --------------------------------------------------------------------------
 * Counting allocators (memory per context)
 * ------------------------------------------------------------------------ */

static struct {
  uint64_t allocs;
  uint64_t requested;
  uint64_t heap; /* malloc_usable_size + the 8-byte chunk header */
} counted;

static void count(void *p, size_t size) {
  if (p != NULL) {
    counted.allocs++;
    counted.requested += size;
    counted.heap += malloc_usable_size(p) + sizeof(size_t);
  }
}

static void *count_malloc(size_t size) {
  void *p = malloc(size);
  count(p, size);
  return p;
}

static void *count_calloc(size_t n, size_t size) {
  void *p = calloc(n, size);
  count(p, n * size);
  return p;
}

static void *count_realloc(void *old, size_t size) {
  void *p = realloc(old, size);
  count(p, size);
  return p;
}

/* --------------------------------------------------------------------------
 * million: 1,000,000 cancel contexts under one root
 * ------------------------------------------------------------------------ */

enum { MILLION = 1000000 };

static void bench_million(void) {
  uvctx_t **ctxs;
  double create[8], cancel[8], release[8];
  double rss0 = 0, rss1 = 0;
  int reps = opt.smoke ? 1 : 3;
  int r, i;

  if (!group_wanted("million/"))
    return;
  if (list_only) {
    emit("million/create", 0, "ns/op");
    emit("million/cancel_root", 0, "ns");
    emit("million/release", 0, "ns/op");
    emit("million/peak_rss", 0, "MiB");
    emit("million/rss_per_ctx", 0, "B");
    return;
  }
  ctxs = malloc(sizeof(*ctxs) * MILLION);
  memset(ctxs, 0, sizeof(*ctxs) * MILLION); /* in the RSS before */
  for (r = 0; r < reps; r++) {
    /* Each repetition from a trimmed heap, as the first: what glibc kept
     * of the last one (a freed 128-byte chunk waits in a fastbin, unmerged,
     * where a 160-byte one is merged and given back) would otherwise decide
     * the order of the addresses handed out, and so the cost of the walks. */
    malloc_trim(0);
    uvctx_t *root;
    uint64_t t0;

    must(uvctx_with_cancel(&loop, keeper, &root), "with_cancel");
    if (r == 0)
      rss0 = peak_rss_bytes();
    t0 = uv_hrtime();
    for (i = 0; i < MILLION; i++)
      must(uvctx_with_cancel(&loop, root, &ctxs[i]), "with_cancel");
    create[r] = (double)(uv_hrtime() - t0) / MILLION;
    if (r == 0)
      rss1 = peak_rss_bytes();
    t0 = uv_hrtime();
    uvctx_cancel(root);
    cancel[r] = (double)(uv_hrtime() - t0);
    t0 = uv_hrtime();
    for (i = 0; i < MILLION; i++)
      uvctx_release(ctxs[i]);
    uvctx_release(root);
    uv_run(&loop, UV_RUN_NOWAIT);
    release[r] = (double)(uv_hrtime() - t0) / MILLION;
  }
  free(ctxs);
  if (wanted("million/create"))
    emit("million/create", median(create, reps), "ns/op");
  if (wanted("million/cancel_root"))
    emit("million/cancel_root", median(cancel, reps), "ns");
  if (wanted("million/release"))
    emit("million/release", median(release, reps), "ns/op");
  if (wanted("million/peak_rss"))
    emit("million/peak_rss", rss1 / (1024.0 * 1024.0), "MiB");
  if (wanted("million/rss_per_ctx"))
    emit("million/rss_per_ctx", (rss1 - rss0) / MILLION, "B");
}

/* --------------------------------------------------------------------------
 * mem: bytes per context, from the allocator
 * ------------------------------------------------------------------------ */

enum { MEM_N = 1000 };

static void bench_mem(void) {
  static uvctx_t *ctxs[MEM_N];
  uv_loop_t mloop;
  uv_timer_t mkeepalive;
  uvctx_t *root;
  int kind, i;

  if (!group_wanted("mem/"))
    return;
  if (list_only) {
    emit("mem/cancel_ctx", 0, "B");
    emit("mem/cancel_ctx_heap", 0, "B");
    emit("mem/deadline_ctx", 0, "B");
    emit("mem/deadline_ctx_heap", 0, "B");
    return;
  }
  /* A loop of its own, so that no block that uvctx keeps for reuse on
   * another loop is handed out here, and nothing alive when the allocator
   * is replaced. */
  must(uv_loop_init(&mloop), "uv_loop_init");
  uv_timer_init(&mloop, &mkeepalive);
  uv_timer_start(&mkeepalive, noop_timer, 3600 * 1000, 0);
  must(uvctx_replace_allocator(count_malloc, free), "replace_allocator");
  must(uvctx_with_cancel(&mloop, uvctx_background(), &root), "with_cancel");
  for (kind = 0; kind < 2; kind++) {
    const char *name = kind == 0 ? "mem/cancel_ctx" : "mem/deadline_ctx";
    char heap_name[64];
    uint64_t allocs0 = counted.allocs, req0 = counted.requested,
             heap0 = counted.heap;

    for (i = 0; i < MEM_N; i++) {
      if (kind == 0)
        must(uvctx_with_cancel(&mloop, root, &ctxs[i]), "with_cancel");
      else
        must(uvctx_with_timeout(&mloop, root, 3600 * 1000, &ctxs[i]),
             "with_timeout");
    }
    snprintf(heap_name, sizeof(heap_name), "%s_heap", name);
    printf("# %s: %.2f allocations per context (uvctx and libuv)\n", name,
           (double)(counted.allocs - allocs0) / MEM_N);
    if (wanted(name))
      emit(name, (double)(counted.requested - req0) / MEM_N, "B");
    if (wanted(heap_name))
      emit(heap_name, (double)(counted.heap - heap0) / MEM_N, "B");
    for (i = 0; i < MEM_N; i++)
      uvctx_release(ctxs[i]);
    uv_run(&mloop, UV_RUN_NOWAIT);
  }
  uvctx_release(root);
  uv_close((uv_handle_t *)&mkeepalive, NULL);
  uv_run(&mloop, UV_RUN_DEFAULT);
  must(uvctx_replace_allocator(malloc, free), "replace_allocator");
  must(uv_loop_close(&mloop), "uv_loop_close (mem)");
}

/* --------------------------------------------------------------------------
 * Create + cancel + release
 * ------------------------------------------------------------------------ */

static void op_with_cancel(void *arg, uint64_t n) {
  uvctx_t *parent = arg;
  uvctx_t *c;

  while (n--) {
    uvctx_with_cancel(&loop, parent, &c);
    uvctx_cancel(c);
    uvctx_release(c);
    turn();
  }
}

static void op_with_timeout(void *arg, uint64_t n) {
  uvctx_t *parent = arg;
  uvctx_t *c;

  while (n--) {
    uvctx_with_timeout(&loop, parent, 3600 * 1000, &c);
    uvctx_cancel(c);
    uvctx_release(c);
    turn();
  }
}

static void bench_create_cancel_release(void) {
  uvctx_t *parent;

  if (!group_wanted("with_cancel_cancel_release") &&
      !group_wanted("with_timeout_cancel_release"))
    return;
  must(uvctx_with_cancel(&loop, keeper, &parent), "with_cancel");
  measure("with_cancel_cancel_release", op_with_cancel, settle, parent);
  measure("with_timeout_cancel_release", op_with_timeout, settle, parent);
  turn_every = 4096;
  measure("with_timeout_cancel_release/turn=4096", op_with_timeout, settle,
          parent);
  turn_every = opt.turn;
  uvctx_release(parent);
  settle(NULL);
}

/* --------------------------------------------------------------------------
 * Go's BenchmarkCommonParentCancel
 * ------------------------------------------------------------------------ */

static char key_key;
static char value_value[] = "value";

static void op_common_parent(void *arg, uint64_t n) {
  uvctx_t *shared = arg;
  uvctx_t *c;
  int64_t x = 0;

  while (n--) {
    uvctx_with_cancel(&loop, shared, &c);
    if (uvctx_value(c, &key_key) != value_value)
      abort();
    x = busy100(x);
    uvctx_cancel(c);
    x = busy100(x);
    uvctx_release(c);
    turn();
  }
  sink = x;
}

static void bench_common_parent(void) {
  uvctx_t *root, *shared;

  if (!group_wanted("common_parent_cancel"))
    return;
  must(uvctx_with_value(uvctx_background(), &key_key, value_value, &root),
       "with_value");
  must(uvctx_with_cancel(&loop, root, &shared), "with_cancel");
  measure("common_parent_cancel", op_common_parent, settle, shared);
  uvctx_cancel(shared);
  uvctx_release(shared);
  uvctx_release(root);
  settle(NULL);
}

/* --------------------------------------------------------------------------
 * Go's BenchmarkWithTimeout: N idle deadline contexts under Background
 * ------------------------------------------------------------------------ */

static void bench_with_timeout_idle(void) {
  static const int idle[] = {40, 4000, 400000};
  size_t k;

  if (!group_wanted("with_timeout/"))
    return;
  for (k = 0; k < sizeof(idle) / sizeof(idle[0]); k++) {
    char name[64];
    uvctx_t **ctxs;
    int i;

    snprintf(name, sizeof(name), "with_timeout/idle=%d", idle[k]);
    if (!wanted(name))
      continue;
    if (list_only) {
      emit(name, 0, "ns/op");
      continue;
    }
    ctxs = malloc(sizeof(*ctxs) * (size_t)idle[k]);
    for (i = 0; i < idle[k]; i++)
      must(uvctx_with_timeout(&loop, uvctx_background(), 3600 * 1000,
                              &ctxs[i]),
           "with_timeout");
    measure(name, op_with_timeout, settle, uvctx_background());
    for (i = 0; i < idle[k]; i++) {
      uvctx_cancel(ctxs[i]);
      uvctx_release(ctxs[i]);
    }
    settle(NULL);
    free(ctxs);
  }
}

/* --------------------------------------------------------------------------
 * Go's BenchmarkCancelTree
 * ------------------------------------------------------------------------ */

typedef struct {
  int depth;
  int root; /* 0 Background, 1 open canceler, 2 closed canceler */
  uvctx_t **chain;
} tree_t;

static void op_cancel_tree(void *arg, uint64_t n) {
  tree_t *t = arg;
  uvctx_t *root = NULL, *parent;
  int d;

  while (n--) {
    if (t->root == 0) {
      parent = uvctx_background();
    } else {
      uvctx_with_cancel(&loop, uvctx_background(), &root);
      if (t->root == 2)
        uvctx_cancel(root);
      parent = root;
    }
    for (d = 0; d < t->depth; d++) {
      uvctx_with_cancel(&loop, parent, &t->chain[d]);
      parent = t->chain[d];
    }
    if (t->root == 1)
      uvctx_cancel(root);
    for (d = t->depth - 1; d >= 0; d--)
      uvctx_release(t->chain[d]);
    uvctx_release(root);
    turn();
  }
}

static void bench_cancel_tree(void) {
  static const int depths[] = {1, 10, 100, 1000};
  static const char *roots[] = {"background", "open", "closed"};
  static uvctx_t *chain[1000];
  size_t k;
  int r;

  if (!group_wanted("cancel_tree/"))
    return;
  for (k = 0; k < sizeof(depths) / sizeof(depths[0]); k++) {
    for (r = 0; r < 3; r++) {
      tree_t t = {depths[k], r, chain};
      char name[64];
      snprintf(name, sizeof(name), "cancel_tree/depth=%d/root=%s", depths[k],
               roots[r]);
      measure(name, op_cancel_tree, settle, &t);
    }
  }
}

/* --------------------------------------------------------------------------
 * Go's BenchmarkCheckCanceled/Err and BenchmarkDeepValueSameGoRoutine
 * ------------------------------------------------------------------------ */

static void op_err(void *arg, uint64_t n) {
  const uvctx_t *c = arg;
  int acc = 0;

  while (n--)
    acc += uvctx_err(c);
  sink = acc;
}

static void bench_check_canceled(void) {
  uvctx_t *c;

  if (!group_wanted("check_canceled/"))
    return;
  must(uvctx_with_cancel(&loop, keeper, &c), "with_cancel");
  uvctx_cancel(c);
  measure("check_canceled/err", op_err, NULL, c);
  uvctx_release(c);
  settle(NULL);
}

static char value_keys[100];
static char missing_key;

static void op_value(void *arg, uint64_t n) {
  const uvctx_t *c = arg;
  uintptr_t acc = 0;

  while (n--)
    acc += (uintptr_t)uvctx_value(c, &missing_key);
  sink = (int64_t)acc;
}

static void bench_deep_value(void) {
  static const int depths[] = {10, 20, 30, 50, 100};
  size_t k;

  if (!group_wanted("deep_value/"))
    return;
  for (k = 0; k < sizeof(depths) / sizeof(depths[0]); k++) {
    uvctx_t *c = uvctx_background(), *next;
    char name[64];
    int i;

    for (i = 0; i < depths[k]; i++) {
      must(uvctx_with_value(c, &value_keys[i], &value_keys[i], &next),
           "with_value");
      uvctx_release(c); /* the child holds it */
      c = next;
    }
    snprintf(name, sizeof(name), "deep_value/depth=%d", depths[k]);
    measure(name, op_value, NULL, c);
    uvctx_release(c);
  }
}

/* --------------------------------------------------------------------------
 * Lookups through a chain of any-context diamonds (issue: they were
 * exponential in the depth)
 * ------------------------------------------------------------------------ */

static void op_deadline(void *arg, uint64_t n) {
  const uvctx_t *c = arg;
  uint64_t acc = 0, dl = 0;

  while (n--) {
    uvctx_deadline(c, &dl);
    acc += dl;
  }
  sink = (int64_t)acc;
}

/* m_k = with_any({m_k-1, with_cancel(m_k-1)}), 40 levels over a 1-hour
 * deadline context: 81 distinct ancestors, 2^40 paths. */
static void bench_any_chain(void) {
  enum { DEPTH = 40 };
  uvctx_t *m, *d;
  int i;

  if (!group_wanted("any_chain/"))
    return;
  must(uvctx_with_timeout(&loop, keeper, 3600 * 1000, &m), "with_timeout");
  for (i = 0; i < DEPTH; i++) {
    uvctx_t *parents[2], *next;

    must(uvctx_with_cancel(&loop, m, &d), "with_cancel");
    parents[0] = m;
    parents[1] = d;
    must(uvctx_with_any(&loop, parents, 2, &next), "with_any");
    uvctx_release(d); /* the any-context holds both */
    uvctx_release(m);
    m = next;
  }
  measure("any_chain/depth=40/value_miss", op_value, NULL, m);
  measure("any_chain/depth=40/deadline", op_deadline, NULL, m);
  uvctx_release(m);
  settle(NULL);
}

/* --------------------------------------------------------------------------
 * cancel + delivery latency (the logic of bench/cancel_scaling.c)
 * ------------------------------------------------------------------------ */

typedef struct {
  uv_sem_t go;    /* loop thread -> canceller: cancel now */
  uv_sem_t ready; /* canceller -> loop thread: waiting */
  int stop;
  uvctx_t *target;
  uint64_t t_send;
  uint64_t t_recv;
  int delivered;
} lat_t;

static void on_watch(uvctx_watch_t *w, int err) {
  lat_t *l = w->data;
  (void)err;
  l->t_recv = uv_hrtime();
  l->delivered = 1;
}

static void canceller(void *arg) {
  lat_t *l = arg;
  pin_self(1, NULL);
  for (;;) {
    uv_sem_post(&l->ready);
    uv_sem_wait(&l->go);
    if (l->stop)
      return;
    l->t_send = uv_hrtime();
    uvctx_cancel(l->target);
  }
}

static void bench_cancel_delivery(void) {
  static const int lives[] = {1000, 100000};
  static const char *from[] = {"loop", "thread"};
  uv_thread_t thread;
  cpu_set_t old_mask;
  lat_t l;
  int reps = opt.smoke ? 1 : 3;
  int k, f, r, i;

  if (!group_wanted("cancel_delivery/"))
    return;
  if (list_only) {
    for (k = 0; k < 2; k++)
      for (f = 0; f < 2; f++)
        for (r = 50; r <= 99; r += 49) {
          char name[96];
          snprintf(name, sizeof(name), "cancel_delivery/live=%d/from=%s/p%d",
                   lives[k], from[f], r);
          if (wanted(name))
            emit(name, 0, "ns");
        }
    return;
  }
  memset(&l, 0, sizeof(l));
  uv_sem_init(&l.go, 0);
  uv_sem_init(&l.ready, 0);
  pick_cpus();
  pin_self(0, &old_mask);
  printf("# cancel_delivery: loop thread on CPU %d, other thread on CPU %d\n",
         pin_cpus[0], pin_cpus[1]);
  uv_thread_create(&thread, canceller, &l);
  for (k = 0; k < 2; k++) {
    for (f = 0; f < 2; f++) {
      char n50[96], n99[96];
      double p50[8], p99[8];
      uvctx_t **others, *root;
      uint64_t *lat;

      snprintf(n50, sizeof(n50), "cancel_delivery/live=%d/from=%s/p50",
               lives[k], from[f]);
      snprintf(n99, sizeof(n99), "cancel_delivery/live=%d/from=%s/p99",
               lives[k], from[f]);
      if (!wanted(n50) && !wanted(n99))
        continue;
      others = malloc(sizeof(*others) * (size_t)lives[k]);
      lat = malloc(sizeof(*lat) * (size_t)opt.samples);
      must(uvctx_with_cancel(&loop, keeper, &root), "with_cancel");
      for (i = 0; i < lives[k]; i++)
        must(uvctx_with_cancel(&loop, root, &others[i]), "with_cancel");
      for (r = -1; r < reps; r++) { /* r == -1: warm-up */
        for (i = 0; i < opt.samples; i++) {
          uvctx_watch_t w = {.data = &l};
          uvctx_t *c;
          must(uvctx_with_cancel(&loop, root, &c), "with_cancel");
          must(uvctx_watch(c, &w, on_watch), "watch");
          l.target = c;
          l.delivered = 0;
          if (f == 1) {
            uv_sem_wait(&l.ready);
            uv_sem_post(&l.go);
          } else {
            l.t_send = uv_hrtime();
            uvctx_cancel(c);
          }
          while (!l.delivered)
            uv_run(&loop, UV_RUN_ONCE);
          lat[i] = l.t_recv - l.t_send;
          uvctx_release(c);
        }
        if (r >= 0) {
          p50[r] = percentile(lat, opt.samples, 0.50);
          p99[r] = percentile(lat, opt.samples, 0.99);
        }
      }
      if (wanted(n50))
        emit(n50, median(p50, reps), "ns");
      if (wanted(n99))
        emit(n99, median(p99, reps), "ns");
      for (i = 0; i < lives[k]; i++)
        uvctx_release(others[i]);
      uvctx_release(root);
      settle(NULL);
      free(others);
      free(lat);
    }
  }
  l.stop = 1;
  uv_sem_wait(&l.ready);
  uv_sem_post(&l.go);
  uv_thread_join(&thread);
  unpin_self(&old_mask);
  uv_sem_destroy(&l.go);
  uv_sem_destroy(&l.ready);
}

/* --------------------------------------------------------------------------
 * grpc_timeout: the grpc-timeout codec
 * ------------------------------------------------------------------------ */

static void op_grpc_encode(void *arg, uint64_t n) {
  const uvctx_t *c = arg;
  char buf[UVCTX_GRPC_TIMEOUT_LEN];
  int acc = 0;

  while (n--)
    acc += uvctx_grpc_timeout(c, buf, sizeof buf);
  sink = acc;
}

/* What peers send: grpc-go in n or u, grpc-js in m, a hand-set S. */
static const char *const grpc_values[] = {"99978499n", "4999972u", "81m",
                                          "30S"};

static void op_grpc_parse(void *arg, uint64_t n) {
  uvctx_t *parent = arg;
  uvctx_t *c;

  while (n--) {
    const char *v = grpc_values[n & 3];
    uvctx_with_grpc_timeout(&loop, parent, v, strlen(v), &c);
    uvctx_release(c);
    turn();
  }
}

static void op_timeout_release(void *arg, uint64_t n) {
  uvctx_t *parent = arg;
  uvctx_t *c;

  while (n--) {
    uvctx_with_timeout(&loop, parent, 81, &c);
    uvctx_release(c);
    turn();
  }
}

static void bench_grpc_timeout(void) {
  uvctx_t *parent, *c;
  char buf[UVCTX_GRPC_TIMEOUT_LEN];

  if (!group_wanted("grpc_timeout/"))
    return;
  must(uvctx_with_cancel(&loop, keeper, &parent), "with_cancel");
  must(uvctx_with_timeout(&loop, parent, 30000, &c), "with_timeout");
  if (uvctx_grpc_timeout(c, buf, sizeof buf) <= 0) {
    fprintf(stderr, "uvctx_bench: uvctx_grpc_timeout failed\n");
    exit(1);
  }
  printf("# grpc_timeout/encode: \"%s\" from a 30 s deadline\n", buf);
  measure("grpc_timeout/encode", op_grpc_encode, NULL, c);
  measure("grpc_timeout/parse", op_grpc_parse, settle, parent);
  measure("grpc_timeout/with_timeout", op_timeout_release, settle, parent);
  uvctx_release(c);
  uvctx_release(parent);
  settle(NULL);
}

int main(int argc, char **argv) {
  uint64_t t0 = uv_hrtime();

  parse_args(argc, argv);
  turn_every = opt.turn;
  /* Before libuv allocates anything: counts libuv's own allocations too
   * (a timer or an async handle should need none). */
  uv_replace_allocator(count_malloc, count_realloc, count_calloc, free);
  must(uv_loop_init(&loop), "uv_loop_init");
  uv_timer_init(&loop, &keepalive);
  uv_timer_start(&keepalive, noop_timer, 3600 * 1000, 0);

  printf("# uvctx_bench: libuv %s, %s, target %.0f ms x %d reps, "
         "%u ops per loop turn\n",
         uv_version_string(), opt.smoke ? "smoke" : "full",
         opt.target_ns / 1e6, opt.reps, opt.turn);
  /* First, on a loop of its own, while no other context is alive. */
  bench_mem();
  must(uvctx_with_cancel(&loop, uvctx_background(), &keeper), "with_cancel");
  /* Next, so that the peak RSS before it is (nearly) the start-up one. */
  bench_million();
  bench_create_cancel_release();
  bench_common_parent();
  bench_with_timeout_idle();
  bench_cancel_tree();
  bench_check_canceled();
  bench_deep_value();
  bench_any_chain();
  bench_cancel_delivery();
  bench_grpc_timeout();

  uvctx_release(keeper);
  uv_close((uv_handle_t *)&keepalive, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  printf("# total %.2f s\n", (double)(uv_hrtime() - t0) / 1e9);
  if (uv_loop_close(&loop) != 0) {
    fprintf(stderr, "uvctx_bench: uv_loop_close: a context leaked\n");
    return 1;
  }
  return 0;
}
