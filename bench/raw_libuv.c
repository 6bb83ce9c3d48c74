/* The floor for bench/uvctx_bench: the same workloads written by hand with
 * libuv alone, the way a program does without uvctx. A request that can be
 * cancelled is a malloc'd struct with a uv_async_t (so that another thread
 * can cancel it), a request with a deadline one with a uv_timer_t; a child is
 * linked into its parent's intrusive list so that the parent's cancel reaches
 * it; its memory goes in the handle's close callback. No locks, no reference
 * counts, no values, no ordering guarantees: only the handles.
 *
 * Same options, harness and output as bench/uvctx_bench (bench/harness.h);
 * the workloads with no hand-written counterpart (Go's CancelTree,
 * CommonParentCancel, CheckCanceled, DeepValue) are left out.
 */
#define _GNU_SOURCE /* malloc_usable_size */
#include <malloc.h>

#include "harness.h"

static uv_loop_t loop;
static uv_timer_t keepalive;
static unsigned int turn_count;
static unsigned int turn_every;

static void turn(void) {
  if (++turn_count >= turn_every) {
    turn_count = 0;
    uv_run(&loop, UV_RUN_NOWAIT);
  }
}

static void settle(void *arg) {
  (void)arg;
  turn_count = 0;
  uv_run(&loop, UV_RUN_NOWAIT);
  uv_run(&loop, UV_RUN_NOWAIT);
}

/* A request: the links, then its handle, in one malloc'd block freed in the
 * handle's close callback (handle.data points at the block). */
typedef struct req_s req_t;
struct req_s {
  req_t *parent;
  req_t *first_child;
  req_t *next;
  req_t *prev;
  int cancelled;
};

typedef struct {
  req_t r;
  uv_async_t async; /* cancellable from any thread */
} async_req_t;

typedef struct {
  req_t r;
  uv_timer_t timer; /* deadline */
} timer_req_t;

static uv_handle_t *handle_of(req_t *r, int is_timer) {
  return is_timer ? (uv_handle_t *)&((timer_req_t *)r)->timer
                  : (uv_handle_t *)&((async_req_t *)r)->async;
}

static void free_cb(uv_handle_t *h) { free(h->data); }

static void link_child(req_t *parent, req_t *r) {
  r->parent = parent;
  r->prev = NULL;
  r->next = NULL;
  r->first_child = NULL;
  r->cancelled = 0;
  if (parent == NULL)
    return;
  r->next = parent->first_child;
  if (r->next != NULL)
    r->next->prev = r;
  parent->first_child = r;
}

static void unlink_child(req_t *r) {
  if (r->parent == NULL)
    return;
  if (r->prev != NULL)
    r->prev->next = r->next;
  else
    r->parent->first_child = r->next;
  if (r->next != NULL)
    r->next->prev = r->prev;
}

static void on_async(uv_async_t *a) { (void)a; }
static void on_timeout(uv_timer_t *t) { ((req_t *)t->data)->cancelled = 1; }

static req_t *async_req_cb(req_t *parent, uv_async_cb cb) {
  async_req_t *a = malloc(sizeof(*a));
  uv_async_init(&loop, &a->async, cb);
  uv_unref((uv_handle_t *)&a->async);
  a->async.data = a;
  link_child(parent, &a->r);
  return &a->r;
}

static req_t *async_req(req_t *parent) {
  return async_req_cb(parent, on_async);
}

static req_t *timer_req(req_t *parent, uint64_t timeout_ms) {
  timer_req_t *t = malloc(sizeof(*t));
  uv_timer_init(&loop, &t->timer);
  uv_unref((uv_handle_t *)&t->timer);
  t->timer.data = t;
  uv_timer_start(&t->timer, on_timeout, timeout_ms, 0);
  link_child(parent, &t->r);
  return &t->r;
}

/* Cancel on the loop thread: flag the request and its subtree, stop timers
 * (a by-hand cancel walks its own list). */
static void cancel_req(req_t *r, int is_timer) {
  req_t *c;
  r->cancelled = 1;
  if (is_timer)
    uv_timer_stop(&((timer_req_t *)r)->timer);
  for (c = r->first_child; c != NULL; c = c->next)
    c->cancelled = 1;
}

static void release_req(req_t *r, int is_timer) {
  unlink_child(r);
  uv_close(handle_of(r, is_timer), free_cb);
}

/* --------------------------------------------------------------------------
 * million: 1,000,000 async requests under one parent
 * ------------------------------------------------------------------------ */

enum { MILLION = 1000000 };

static void bench_million(void) {
  req_t **reqs;
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
  reqs = malloc(sizeof(*reqs) * MILLION);
  memset(reqs, 0, sizeof(*reqs) * MILLION);
  for (r = 0; r < reps; r++) {
    /* Each repetition from a trimmed heap, as the first: what glibc kept
     * of the last one (a freed 128-byte chunk waits in a fastbin, unmerged,
     * where a 160-byte one is merged and given back) would otherwise decide
     * the order of the addresses handed out, and so the cost of the walks. */
    malloc_trim(0);
    req_t *root = async_req(NULL);
    uint64_t t0;

    if (r == 0)
      rss0 = peak_rss_bytes();
    t0 = uv_hrtime();
    for (i = 0; i < MILLION; i++)
      reqs[i] = async_req(root);
    create[r] = (double)(uv_hrtime() - t0) / MILLION;
    if (r == 0)
      rss1 = peak_rss_bytes();
    t0 = uv_hrtime();
    cancel_req(root, 0);
    cancel[r] = (double)(uv_hrtime() - t0);
    t0 = uv_hrtime();
    for (i = 0; i < MILLION; i++)
      release_req(reqs[i], 0);
    release_req(root, 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    release[r] = (double)(uv_hrtime() - t0) / MILLION;
  }
  free(reqs);
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
 * mem: the request structs (libuv allocates nothing per handle)
 * ------------------------------------------------------------------------ */

static void bench_mem(void) {
  /* A by-hand request is one struct: the links, a flag and the handle. */
  size_t async_size = sizeof(async_req_t);
  size_t timer_size = sizeof(timer_req_t);
  void *p;

  if (!group_wanted("mem/"))
    return;
  if (wanted("mem/cancel_ctx"))
    emit("mem/cancel_ctx", (double)async_size, "B");
  if (wanted("mem/cancel_ctx_heap")) {
    p = malloc(async_size);
    emit("mem/cancel_ctx_heap",
         (double)(malloc_usable_size(p) + sizeof(size_t)), "B");
    free(p);
  }
  if (wanted("mem/deadline_ctx"))
    emit("mem/deadline_ctx", (double)timer_size, "B");
  if (wanted("mem/deadline_ctx_heap")) {
    p = malloc(timer_size);
    emit("mem/deadline_ctx_heap",
         (double)(malloc_usable_size(p) + sizeof(size_t)), "B");
    free(p);
  }
}

/* --------------------------------------------------------------------------
 * create + cancel + release
 * ------------------------------------------------------------------------ */

static void op_async(void *arg, uint64_t n) {
  req_t *parent = arg;
  while (n--) {
    req_t *r = async_req(parent);
    cancel_req(r, 0);
    release_req(r, 0);
    turn();
  }
}

static void op_timer(void *arg, uint64_t n) {
  req_t *parent = arg;
  while (n--) {
    req_t *r = timer_req(parent, 3600 * 1000);
    cancel_req(r, 1);
    release_req(r, 1);
    turn();
  }
}

static void bench_create_cancel_release(void) {
  req_t *parent;

  if (!group_wanted("with_cancel_cancel_release") &&
      !group_wanted("with_timeout_cancel_release"))
    return;
  parent = async_req(NULL);
  measure("with_cancel_cancel_release", op_async, settle, parent);
  measure("with_timeout_cancel_release", op_timer, settle, parent);
  turn_every = 4096;
  measure("with_timeout_cancel_release/turn=4096", op_timer, settle, parent);
  turn_every = opt.turn;
  release_req(parent, 0);
  settle(NULL);
}

static void bench_with_timeout_idle(void) {
  static const int idle[] = {40, 4000, 400000};
  size_t k;

  if (!group_wanted("with_timeout/"))
    return;
  for (k = 0; k < sizeof(idle) / sizeof(idle[0]); k++) {
    char name[64];
    req_t **reqs;
    int i;

    snprintf(name, sizeof(name), "with_timeout/idle=%d", idle[k]);
    if (!wanted(name))
      continue;
    if (list_only) {
      emit(name, 0, "ns/op");
      continue;
    }
    reqs = malloc(sizeof(*reqs) * (size_t)idle[k]);
    for (i = 0; i < idle[k]; i++)
      reqs[i] = timer_req(NULL, 3600 * 1000);
    measure(name, op_timer, settle, NULL);
    for (i = 0; i < idle[k]; i++) {
      cancel_req(reqs[i], 1);
      release_req(reqs[i], 1);
    }
    settle(NULL);
    free(reqs);
  }
}

/* --------------------------------------------------------------------------
 * cancel + delivery: a per-request uv_async_t, sent from the loop thread or
 * another thread, among L other live requests (libuv scans every async
 * handle of the loop on each wakeup)
 * ------------------------------------------------------------------------ */

typedef struct {
  uv_sem_t go;
  uv_sem_t ready;
  int stop;
  req_t *target;
  uint64_t t_send;
  uint64_t t_recv;
  int delivered;
} lat_t;

static lat_t lat_state;

static void on_cancel_async(uv_async_t *a) {
  req_t *r = a->data;
  if (!r->cancelled)
    return;
  lat_state.t_recv = uv_hrtime();
  lat_state.delivered = 1;
}

static void fire(lat_t *l) {
  l->t_send = uv_hrtime();
  l->target->cancelled = 1;
  uv_async_send(&((async_req_t *)l->target)->async);
}

static void canceller(void *arg) {
  lat_t *l = arg;
  pin_self(1, NULL);
  for (;;) {
    uv_sem_post(&l->ready);
    uv_sem_wait(&l->go);
    if (l->stop)
      return;
    fire(l);
  }
}

static void bench_cancel_delivery(void) {
  static const int lives[] = {1000, 100000};
  static const char *from[] = {"loop", "thread"};
  lat_t *l = &lat_state;
  uv_thread_t thread;
  cpu_set_t old_mask;
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
  uv_sem_init(&l->go, 0);
  uv_sem_init(&l->ready, 0);
  pick_cpus();
  pin_self(0, &old_mask);
  printf("# cancel_delivery: loop thread on CPU %d, other thread on CPU %d\n",
         pin_cpus[0], pin_cpus[1]);
  uv_thread_create(&thread, canceller, l);
  for (k = 0; k < 2; k++) {
    for (f = 0; f < 2; f++) {
      char n50[96], n99[96];
      double p50[8], p99[8];
      req_t **others, *root;
      uint64_t *lat;

      snprintf(n50, sizeof(n50), "cancel_delivery/live=%d/from=%s/p50",
               lives[k], from[f]);
      snprintf(n99, sizeof(n99), "cancel_delivery/live=%d/from=%s/p99",
               lives[k], from[f]);
      if (!wanted(n50) && !wanted(n99))
        continue;
      others = malloc(sizeof(*others) * (size_t)lives[k]);
      lat = malloc(sizeof(*lat) * (size_t)opt.samples);
      root = async_req(NULL);
      for (i = 0; i < lives[k]; i++)
        others[i] = async_req(root);
      for (r = -1; r < reps; r++) {
        for (i = 0; i < opt.samples; i++) {
          req_t *c = async_req_cb(root, on_cancel_async);
          l->target = c;
          l->delivered = 0;
          if (f == 1) {
            uv_sem_wait(&l->ready);
            uv_sem_post(&l->go);
          } else {
            fire(l);
          }
          while (!l->delivered)
            uv_run(&loop, UV_RUN_ONCE);
          lat[i] = l->t_recv - l->t_send;
          release_req(c, 0);
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
        release_req(others[i], 0);
      release_req(root, 0);
      settle(NULL);
      free(others);
      free(lat);
    }
  }
  l->stop = 1;
  uv_sem_wait(&l->ready);
  uv_sem_post(&l->go);
  uv_thread_join(&thread);
  unpin_self(&old_mask);
  uv_sem_destroy(&l->go);
  uv_sem_destroy(&l->ready);
}

static void noop_timer(uv_timer_t *t) { (void)t; }

int main(int argc, char **argv) {
  uint64_t t0 = uv_hrtime();

  parse_args(argc, argv);
  turn_every = opt.turn;
  if (uv_loop_init(&loop) != 0)
    return 1;
  uv_timer_init(&loop, &keepalive);
  uv_timer_start(&keepalive, noop_timer, 3600 * 1000, 0);

  printf("# raw_libuv: libuv %s, %s, target %.0f ms x %d reps, "
         "%u ops per loop turn\n",
         uv_version_string(), opt.smoke ? "smoke" : "full",
         opt.target_ns / 1e6, opt.reps, opt.turn);
  bench_million();
  bench_mem();
  bench_create_cancel_release();
  bench_with_timeout_idle();
  bench_cancel_delivery();

  uv_close((uv_handle_t *)&keepalive, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  printf("# total %.2f s\n", (double)(uv_hrtime() - t0) / 1e9);
  return uv_loop_close(&loop) == 0 ? 0 : 1;
}
