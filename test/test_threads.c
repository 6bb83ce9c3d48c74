/* Threads: cancel, release and the readers (err, cause, value, deadline,
 * retain) called from threads that run no loop, while the loop thread works.
 * Only the functions the header allows off the loop thread are called there.
 *
 * A hand-off from another thread is only seen while the loop polls, so every
 * test keeps a ref'd uv_async_t of its own (a "crew") alive until its worker
 * threads have finished: each worker's last act is to send it, and its
 * callback joins the workers and closes it. The assertions do not depend on
 * how the threads interleave; the TSan build looks for races.
 *
 * No thread spins while it needs another one to act: threads that must race
 * start together on a barrier, and a thread that waits for another blocks on
 * a tally or is woken by a uv_async_t, so that the tests take as long on a
 * loaded machine as the scheduler makes them, not time slices per
 * iteration. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

static int key_a;

/* --- Helpers --- */

enum { MAX_WORKERS = 16 };

typedef struct {
  uv_async_t async;
  uv_thread_t tids[MAX_WORKERS];
  int n;
  atomic_int finished;
  int joined;
} crew_t;

static void crew_async_cb(uv_async_t *a) {
  crew_t *cr = a->data;
  if (cr->joined || atomic_load(&cr->finished) < cr->n)
    return;
  for (int i = 0; i < cr->n; i++)
    ck_assert_int_eq(uv_thread_join(&cr->tids[i]), 0);
  cr->joined = 1;
  uv_close((uv_handle_t *)a, NULL);
}

static void crew_init(crew_t *cr) {
  memset(cr, 0, sizeof *cr);
  atomic_init(&cr->finished, 0);
  ck_assert_int_eq(uv_async_init(&loop, &cr->async, crew_async_cb), 0);
  cr->async.data = cr;
}

static void crew_spawn(crew_t *cr, uv_thread_cb fn, void *arg) {
  ck_assert_int_lt(cr->n, MAX_WORKERS);
  ck_assert_int_eq(uv_thread_create(&cr->tids[cr->n++], fn, arg), 0);
}

/* A worker's last act. */
static void crew_finish(crew_t *cr) {
  atomic_fetch_add(&cr->finished, 1);
  uv_async_send(&cr->async);
}

/* Runs the loop until the crew has finished and everything due has run. */
static void crew_run(crew_t *cr) {
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(cr->joined, 1);
}

/* The first n (3 or 4) of the chain the tests cancel: a cancel context, a
 * deadline context under it, a value context (key_a: val) under that, and a
 * cancel context under that. */
static void mk_chain(uvctx_t **c, int n, void *val) {
  c[0] = mk_cancel(&loop, uvctx_background());
  c[1] = mk_timeout(&loop, c[0], 60000);
  c[2] = mk_value(c[1], &key_a, val);
  if (n > 3)
    c[3] = mk_cancel(&loop, c[2]);
}

static void release_chain(uvctx_t **c, int n) {
  while (n > 0)
    uvctx_release(c[--n]);
}

/* --- Threads cancelling the same context --- */

enum { RACERS = 8, RACE_ROUNDS = 20 };

typedef struct race_s race_t;

typedef struct {
  race_t *race;
  int cause;                      /* 0: uvctx_cancel() */
  int rc, err_after, cause_after; /* read on the racer's thread */
} racer_t;

struct race_s {
  crew_t crew;
  uv_barrier_t barrier;
  uvctx_t *target;
  racer_t racers[RACERS];
};

static void racer_main(void *arg) {
  racer_t *r = arg;
  uv_barrier_wait(&r->race->barrier);
  r->rc = r->cause ? uvctx_cancel_cause(r->race->target, r->cause)
                   : uvctx_cancel(r->race->target);
  r->err_after = uvctx_err(r->race->target);
  r->cause_after = uvctx_cause(r->race->target);
  crew_finish(&r->race->crew);
}

/* n threads, started together on a barrier, cancel target with causes[i];
 * runs the loop until they are joined and what was due has run. */
static void cancel_on_threads(race_t *race, uvctx_t *target, int n,
                              const int *causes) {
  crew_init(&race->crew);
  ck_assert_int_eq(uv_barrier_init(&race->barrier, (unsigned)n), 0);
  race->target = target;
  for (int i = 0; i < n; i++) {
    race->racers[i] = (racer_t){.race = race, .cause = causes[i]};
    crew_spawn(&race->crew, racer_main, &race->racers[i]);
  }
  crew_run(&race->crew);
  uv_barrier_destroy(&race->barrier);
}

START_TEST(cancel_from_another_thread_sets_err_before_it_returns) {
  race_t race;
  uvctx_t *p = mk_cancel(&loop, uvctx_background());
  cancel_on_threads(&race, p, 1, (int[]){UV_EPIPE});
  ck_assert_int_eq(race.racers[0].rc, 0);
  ck_assert_int_eq(race.racers[0].err_after, UV_ECANCELED);
  ck_assert_int_eq(race.racers[0].cause_after, UV_EPIPE);
  uvctx_release(p);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(cancel_from_another_thread_is_delivered_on_the_loop_exactly_once) {
  race_t race;
  uvctx_t *c[4];
  rec_t r[8];
  mk_chain(c, 4, NULL);
  for (int i = 0; i < 8; i++)
    rec_watch(&r[i], NULL, c[i % 4]);
  cancel_on_threads(&race, c[0], 1, (int[]){0});
  ck_assert_int_eq(race.racers[0].rc, 0);

  for (int i = 0; i < 4; i++)
    assert_done(c[i], UV_ECANCELED, UV_ECANCELED);
  for (int i = 0; i < 8; i++) {
    assert_called_once(&r[i], UV_ECANCELED);
    ck_assert(rec_ran_here(&r[i]));
  }
  uv_run(&loop, UV_RUN_NOWAIT);
  for (int i = 0; i < 8; i++)
    ck_assert_int_eq(r[i].calls, 1);
  release_chain(c, 4);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(cancel_from_another_thread_is_delivered_in_tree_order) {
  race_t race;
  journal_t j = {0};
  enum { P1, P2, C1, C2, G1, G2, N }; /* the order of delivery */
  rec_t r[N];
  uvctx_t *p = mk_cancel(&loop, uvctx_background());
  uvctx_t *c = mk_cancel(&loop, p);
  uvctx_t *g = mk_cancel(&loop, c);
  rec_watch(&r[G1], &j, g);
  rec_watch(&r[C1], &j, c);
  rec_watch(&r[P1], &j, p);
  rec_watch(&r[G2], &j, g);
  rec_watch(&r[P2], &j, p);
  rec_watch(&r[C2], &j, c);
  cancel_on_threads(&race, p, 1, (int[]){0});

  ck_assert_int_eq(j.ran, N);
  for (int i = 0; i + 1 < N; i++)
    ck_assert_msg(r[i].seq < r[i + 1].seq, "watch %d ran at %d, %d at %d", i,
                  r[i].seq, i + 1, r[i + 1].seq);
  release_all(g, c, p);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(racing_cancels_exactly_one_wins_and_its_cause_is_everywhere) {
  static const int causes[RACERS] = {UV_EPIPE,  UV_ECONNRESET, UV_EIO,
                                     UV_EINTR,  UV_EAGAIN,     UV_EBUSY,
                                     UV_ENOENT, UV_EPERM};
  race_t *race = calloc(1, sizeof *race);
  ck_assert_ptr_nonnull(race);

  for (int round = 0; round < test_scaled(RACE_ROUNDS); round++) {
    uvctx_t *c[4];
    rec_t w;
    mk_chain(c, 4, NULL);
    rec_watch(&w, NULL, c[3]);
    cancel_on_threads(race, c[0], RACERS, causes);

    int winners = 0, winning_cause = 0;
    for (int i = 0; i < RACERS; i++) {
      racer_t *r = &race->racers[i];
      ck_assert_int_eq(r->err_after, UV_ECANCELED);
      if (r->rc == 0) {
        winners++;
        winning_cause = r->cause;
      } else {
        ck_assert_int_eq(r->rc, UV_EALREADY);
      }
    }
    ck_assert_int_eq(winners, 1);
    for (int i = 0; i < RACERS; i++)
      ck_assert_int_eq(race->racers[i].cause_after, winning_cause);
    for (int i = 0; i < 4; i++)
      ck_assert_int_eq(uvctx_cause(c[i]), winning_cause);
    ck_assert_int_eq(uvctx_err(c[3]), UV_ECANCELED);
    ck_assert_int_eq(w.calls, 1);
    release_chain(c, 4);
  }
  ASSERT_LOOP_CLOSES(&loop);
  free(race);
}
END_TEST

/* --- Threads cancelling nodes while the loop thread adds children --- */

enum { FOREST_NODES = 4, FOREST_KIDS = 150 };

typedef struct forest_s forest_t;

typedef struct {
  forest_t *f;
  int idx;
  int started; /* the loop grew far enough for it in time */
  int rc;
  int err_after;
} feller_t;

struct forest_s {
  journal_t j;
  crew_t crew;
  uv_idle_t idle;
  tally_t rounds; /* rounds of children grown so far */
  int after_finish;
  uvctx_t *root;
  uvctx_t *node[FOREST_NODES + 1]; /* the last one is never cancelled */
  rec_t node_watch[FOREST_NODES + 1];
  int nkids;
  uvctx_t *kids[FOREST_NODES + 1][FOREST_KIDS];
  rec_t kid_watch[FOREST_NODES + 1][FOREST_KIDS];
  feller_t fellers[FOREST_NODES];
};

static const int forest_causes[FOREST_NODES] = {UV_EPIPE, UV_EIO, UV_EINTR,
                                                UV_EBUSY};

/* Feller i cancels once the loop has grown this many rounds of children, so
 * that the cancels land at different points of the growth (and while it goes
 * on) however the threads are scheduled. */
#define FELLER_ROUND(i) (1 + 5 * (i))

/* Loop thread, every iteration: one more child under every node, until the
 * fellers are done (and a few more rounds, for children born done). */
static void forest_grow(uv_idle_t *h) {
  forest_t *f = h->data;
  if (f->nkids < FOREST_KIDS) {
    for (int i = 0; i <= FOREST_NODES; i++) {
      uvctx_t *k;
      switch (f->nkids % 3) {
      case 0: k = mk_cancel(&loop, f->node[i]); break;
      case 1: k = mk_value(f->node[i], &key_a, NULL); break;
      default: k = mk_timeout(&loop, f->node[i], 60000); break;
      }
      f->kids[i][f->nkids] = k;
      rec_watch(&f->kid_watch[i][f->nkids], &f->j, k);
    }
    f->nkids++;
    tally_add(&f->rounds, 1);
  }
  if (atomic_load(&f->crew.finished) == FOREST_NODES)
    f->after_finish++;
  if (f->nkids == FOREST_KIDS || f->after_finish >= 3)
    uv_close((uv_handle_t *)h, NULL);
}

static void feller_main(void *arg) {
  feller_t *fl = arg;
  forest_t *f = fl->f;
  fl->started =
      tally_wait(&f->rounds, FELLER_ROUND(fl->idx), HANDOFF_LIMIT_MS);
  fl->rc = uvctx_cancel_cause(f->node[fl->idx], forest_causes[fl->idx]);
  fl->err_after = uvctx_err(f->node[fl->idx]);
  crew_finish(&f->crew);
}

START_TEST(threads_cancel_nodes_while_the_loop_adds_children_under_them) {
  forest_t *f = calloc(1, sizeof *f);
  ck_assert_ptr_nonnull(f);
  tally_init(&f->rounds);
  f->root = mk_cancel(&loop, uvctx_background());
  for (int i = 0; i <= FOREST_NODES; i++) {
    f->node[i] = i % 2 ? mk_timeout(&loop, f->root, 60000)
                       : mk_cancel(&loop, f->root);
    rec_watch(&f->node_watch[i], &f->j, f->node[i]);
  }
  crew_init(&f->crew);
  ck_assert_int_eq(uv_idle_init(&loop, &f->idle), 0);
  f->idle.data = f;
  ck_assert_int_eq(uv_idle_start(&f->idle, forest_grow), 0);
  for (int i = 0; i < FOREST_NODES; i++) {
    f->fellers[i] = (feller_t){.f = f, .idx = i};
    crew_spawn(&f->crew, feller_main, &f->fellers[i]);
  }
  crew_run(&f->crew);

  for (int i = 0; i < FOREST_NODES; i++) {
    ck_assert_int_eq(f->fellers[i].started, 1);
    ck_assert_int_eq(f->fellers[i].rc, 0);
    ck_assert_int_eq(f->fellers[i].err_after, UV_ECANCELED);
    ck_assert_int_eq(f->node_watch[i].calls, 1);
    for (int k = 0; k < f->nkids; k++) {
      assert_done(f->kids[i][k], UV_ECANCELED, forest_causes[i]);
      assert_called_once(&f->kid_watch[i][k], UV_ECANCELED);
      ck_assert(rec_ran_here(&f->kid_watch[i][k]));
    }
  }
  /* the node nobody cancelled, and the root, are untouched */
  ck_assert_int_eq(uvctx_err(f->root), 0);
  ck_assert_int_eq(uvctx_err(f->node[FOREST_NODES]), 0);
  ck_assert_int_eq(f->node_watch[FOREST_NODES].calls, 0);
  ck_assert_int_eq(uvctx_unwatch(&f->node_watch[FOREST_NODES].w), 0);
  for (int k = 0; k < f->nkids; k++) {
    ck_assert_int_eq(uvctx_err(f->kids[FOREST_NODES][k]), 0);
    ck_assert_int_eq(f->kid_watch[FOREST_NODES][k].calls, 0);
    ck_assert_int_eq(uvctx_unwatch(&f->kid_watch[FOREST_NODES][k].w), 0);
  }

  for (int i = 0; i <= FOREST_NODES; i++) {
    release_n(f->kids[i], (size_t)f->nkids);
    uvctx_release(f->node[i]);
  }
  uvctx_release(f->root);
  ASSERT_LOOP_CLOSES(&loop);
  tally_destroy(&f->rounds);
  free(f);
}
END_TEST

/* --- Release from other threads --- */

typedef struct {
  crew_t *crew;
  uvctx_t *ctx; /* the reference handed over */
} handover_t;

static void release_main(void *arg) {
  handover_t *h = arg;
  uvctx_release(h->ctx);
  crew_finish(h->crew);
}

START_TEST(release_of_the_last_reference_on_another_thread_is_done_by_the_loop) {
  crew_t crew;
  /* a chain held only by its leaf, with handles of every kind */
  uvctx_t *p = mk_cancel(&loop, uvctx_background());
  ck_assert_ptr_nonnull(uvctx_done_async(p));
  uvctx_t *v = mk_value(p, &key_a, NULL);
  uvctx_t *t = mk_timeout(&loop, v, 60000);
  ck_assert_ptr_nonnull(uvctx_done_async(t));
  uvctx_t *leaf = mk_cancel(&loop, t);
  release_all(p, v, t);
  /* and a cancelled deadline context on its own */
  uvctx_t *lone = mk_timeout(&loop, uvctx_background(), 60000);
  ck_assert_ptr_nonnull(uvctx_done_async(lone));
  ck_assert_int_eq(uvctx_cancel(lone), 0);
  uv_run(&loop, UV_RUN_DEFAULT);

  handover_t h[2] = {{&crew, leaf}, {&crew, lone}};
  crew_init(&crew);
  crew_spawn(&crew, release_main, &h[0]);
  crew_spawn(&crew, release_main, &h[1]);
  crew_run(&crew);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* The loop thread and the workers each hold references; whoever drops the
 * last one, the loop tears the context down. */
enum { SHARERS = 4, SHARE_PAIRS = 2000 };

typedef struct {
  crew_t crew;
  uv_async_t started_async; /* the first sharer has started */
  atomic_int started;
  uvctx_t *ctx, *child;
} share_t;

static void sharer_main(void *arg) {
  share_t *s = arg;
  if (atomic_fetch_add(&s->started, 1) == 0) /* only once: it is closed then */
    uv_async_send(&s->started_async);
  int pairs = test_scaled(SHARE_PAIRS);
  for (int i = 0; i < pairs; i++) {
    uvctx_release(uvctx_retain(s->ctx));
    uvctx_release(uvctx_retain(s->child));
  }
  release_all(s->child, s->ctx); /* the references handed over */
  crew_finish(&s->crew);
}

static void share_drop_own(uv_async_t *h) {
  share_t *s = h->data;
  release_all(s->child, s->ctx);
  uv_close((uv_handle_t *)h, NULL);
}

START_TEST(last_reference_dropped_by_whichever_thread_releases_last) {
  share_t *s = calloc(1, sizeof *s);
  ck_assert_ptr_nonnull(s);
  atomic_init(&s->started, 0);
  s->ctx = mk_timeout(&loop, uvctx_background(), 60000);
  ck_assert_ptr_nonnull(uvctx_done_async(s->ctx));
  s->child = mk_cancel(&loop, s->ctx);
  crew_init(&s->crew);
  ck_assert_int_eq(uv_async_init(&loop, &s->started_async, share_drop_own), 0);
  s->started_async.data = s;
  for (int i = 0; i < SHARERS; i++) {
    uvctx_retain(s->ctx); /* one each, handed over */
    uvctx_retain(s->child);
    crew_spawn(&s->crew, sharer_main, s);
  }
  crew_run(&s->crew);
  ASSERT_LOOP_CLOSES(&loop);
  free(s);
}
END_TEST

/* --- retain/release hammered while the loop cancels --- */

enum { HAMMERS = 4, HAMMER_ITERS = 5000 };

typedef struct {
  crew_t crew;
  uv_async_t all_started; /* every hammer is past its first 100 rounds */
  atomic_int started;
  atomic_int faults;
  int val;
  uvctx_t *targets[3]; /* mk_chain's first 3 */
  int cancel_rc;
} hammer_t;

static void hammer_main(void *arg) {
  hammer_t *h = arg;
  int iters = test_scaled(HAMMER_ITERS);
  for (int i = 0; i < iters; i++) {
    uvctx_t *t = h->targets[i % 3];
    if (uvctx_retain(t) != t)
      atomic_fetch_add(&h->faults, 1);
    if (uvctx_value(h->targets[2], &key_a) != &h->val)
      atomic_fetch_add(&h->faults, 1);
    int e = uvctx_err(t);
    if (e != 0 && e != UV_ECANCELED)
      atomic_fetch_add(&h->faults, 1);
    uvctx_release(t);
    if (i == 100 && atomic_fetch_add(&h->started, 1) == HAMMERS - 1)
      uv_async_send(&h->all_started); /* once: it is closed then */
  }
  crew_finish(&h->crew);
}

static void hammer_cancel_when_started(uv_async_t *a) {
  hammer_t *h = a->data;
  h->cancel_rc = uvctx_cancel(h->targets[0]);
  uv_close((uv_handle_t *)a, NULL);
}

START_TEST(retain_release_from_threads_while_the_loop_cancels) {
  rec_t w[3];
  hammer_t *h = calloc(1, sizeof *h);
  ck_assert_ptr_nonnull(h);
  atomic_init(&h->started, 0);
  atomic_init(&h->faults, 0);
  mk_chain(h->targets, 3, &h->val);
  for (int i = 0; i < 3; i++)
    rec_watch(&w[i], NULL, h->targets[i]);
  h->cancel_rc = 12345;

  crew_init(&h->crew);
  ck_assert_int_eq(
      uv_async_init(&loop, &h->all_started, hammer_cancel_when_started), 0);
  h->all_started.data = h;
  for (int i = 0; i < HAMMERS; i++)
    crew_spawn(&h->crew, hammer_main, h);
  crew_run(&h->crew);

  ck_assert_int_eq(atomic_load(&h->faults), 0);
  ck_assert_int_eq(h->cancel_rc, 0);
  for (int i = 0; i < 3; i++) {
    ck_assert_int_eq(uvctx_err(h->targets[i]), UV_ECANCELED);
    ck_assert_int_eq(w[i].calls, 1);
  }
  /* the counts are balanced: still exactly one reference each */
  ck_assert_ptr_eq(uvctx_value(h->targets[2], &key_a), &h->val);
  release_chain(h->targets, 3);
  ASSERT_LOOP_CLOSES(&loop);
  free(h);
}
END_TEST

/* --- err and cause read from threads while the context is cancelled --- */

/* Each reader reads once (all not done), then waits with the canceller on a
 * barrier, so that its reads and the cancel start together; it reads in a
 * tight loop until it sees every context done, or for at most RACE_MS (the
 * cancel may not have run yet on a loaded machine, and a reader must not go
 * on taking the time slices the canceller needs); then it blocks until the
 * cancel has returned, and reads READS_AFTER_DONE more times, when every read
 * must say done. */
enum { READERS = 4, RACE_MS = 20, READS_AFTER_DONE = 500 };

typedef struct {
  crew_t crew;
  uv_barrier_t start; /* the readers and the canceller */
  tally_t cancelled;  /* 1 once the cancel has returned */
  uv_timer_t on_loop; /* the loop thread's cancel, when it cancels */
  atomic_int violations;
  atomic_int first_read_not_zero;
  atomic_int not_done_after_cancel;
  atomic_int timed_out;
  int cancel_rc;
  uvctx_t *ctxs[3]; /* mk_chain's first 3 */
} readers_t;

/* One read of the three contexts, err first, then cause: once err is set,
 * cause must be the given one, and neither may change. Returns how many
 * contexts are done. */
static int read_all(readers_t *r, int prev[3]) {
  int done = 0;
  for (int i = 0; i < 3; i++) {
    int e = uvctx_err(r->ctxs[i]);
    int c = uvctx_cause(r->ctxs[i]);
    if (prev[i] != 0 && e != prev[i])
      atomic_fetch_add(&r->violations, 1); /* err changed once set */
    if (e != 0 && (e != UV_ECANCELED || c != UV_EPIPE))
      atomic_fetch_add(&r->violations, 1); /* cause inconsistent */
    int c2 = uvctx_cause(r->ctxs[i]);
    int e2 = uvctx_err(r->ctxs[i]);
    if (c2 != 0 && e2 == 0)
      atomic_fetch_add(&r->violations, 1); /* a cause without an err */
    if (c2 != 0 && c2 != UV_EPIPE)
      atomic_fetch_add(&r->violations, 1);
    prev[i] = e2 != 0 ? e2 : e;
    if (prev[i] != 0)
      done++;
  }
  return done;
}

static void reader_main(void *arg) {
  readers_t *r = arg;
  int prev[3] = {0, 0, 0};
  if (read_all(r, prev) != 0)
    atomic_fetch_add(&r->first_read_not_zero, 1);
  uv_barrier_wait(&r->start);
  uint64_t give_up = uv_hrtime() + (uint64_t)RACE_MS * 1000000;
  for (int n = 1; read_all(r, prev) != 3; n++)
    if (n % 256 == 0 && uv_hrtime() >= give_up)
      break;
  if (!tally_wait(&r->cancelled, 1, HANDOFF_LIMIT_MS))
    atomic_fetch_add(&r->timed_out, 1);
  for (int n = 0; n < READS_AFTER_DONE; n++)
    if (read_all(r, prev) != 3)
      atomic_fetch_add(&r->not_done_after_cancel, 1);
  crew_finish(&r->crew);
}

static void readers_cancel(readers_t *r) {
  uv_barrier_wait(&r->start);
  r->cancel_rc = uvctx_cancel_cause(r->ctxs[0], UV_EPIPE);
  tally_add(&r->cancelled, 1);
}

static void readers_cancel_main(void *arg) {
  readers_t *r = arg;
  readers_cancel(r);
  crew_finish(&r->crew);
}

/* On the loop thread, inside uv_run: the readers need nothing of the loop,
 * so it may block on the barrier. */
static void readers_cancel_on_loop(uv_timer_t *t) {
  readers_cancel(t->data);
  uv_close((uv_handle_t *)t, NULL);
}

static void run_readers(int from_thread) {
  readers_t *r = calloc(1, sizeof *r);
  ck_assert_ptr_nonnull(r);
  ck_assert_int_eq(uv_barrier_init(&r->start, READERS + 1), 0);
  tally_init(&r->cancelled);
  atomic_init(&r->violations, 0);
  atomic_init(&r->first_read_not_zero, 0);
  atomic_init(&r->not_done_after_cancel, 0);
  atomic_init(&r->timed_out, 0);
  r->cancel_rc = 12345;
  mk_chain(r->ctxs, 3, NULL);

  crew_init(&r->crew);
  if (!from_thread) {
    ck_assert_int_eq(uv_timer_init(&loop, &r->on_loop), 0);
    r->on_loop.data = r;
    ck_assert_int_eq(uv_timer_start(&r->on_loop, readers_cancel_on_loop, 0, 0),
                     0);
  }
  for (int i = 0; i < READERS; i++)
    crew_spawn(&r->crew, reader_main, r);
  if (from_thread)
    crew_spawn(&r->crew, readers_cancel_main, r);
  crew_run(&r->crew);

  ck_assert_int_eq(r->cancel_rc, 0);
  ck_assert_int_eq(atomic_load(&r->timed_out), 0);
  ck_assert_int_eq(atomic_load(&r->first_read_not_zero), 0);
  ck_assert_int_eq(atomic_load(&r->violations), 0);
  ck_assert_int_eq(atomic_load(&r->not_done_after_cancel), 0);
  for (int i = 0; i < 3; i++)
    assert_done(r->ctxs[i], UV_ECANCELED, UV_EPIPE);
  release_chain(r->ctxs, 3);
  ASSERT_LOOP_CLOSES(&loop);
  tally_destroy(&r->cancelled);
  uv_barrier_destroy(&r->start);
  free(r);
}

START_TEST(err_and_cause_read_from_threads_while_the_loop_cancels) {
  run_readers(0);
}
END_TEST

START_TEST(err_and_cause_read_from_threads_while_another_thread_cancels) {
  run_readers(1);
}
END_TEST

/* --- Hand-offs that arrive while the loop is running async callbacks ---
 *
 * The crew recipe (a ref'd handle closed once the worker is done) must work
 * whatever the loop is doing when the worker calls in. Here it is made to
 * call in at the worst moment, deterministically: the worker first wakes the
 * loop through a "gate" async of ours, and does its release or cancel (then
 * finishes the crew) while the loop thread waits inside the gate's callback,
 * that is in the middle of libuv's pass over the loop's async handles. The
 * gate is made after the loop's first context (so after uvctx's own async)
 * and before the crew. */

typedef struct {
  uv_async_t gate;
  crew_t crew;
  tally_t go;      /* the loop thread is inside the gate's callback */
  tally_t done;    /* the worker has finished the crew */
  int worker_went; /* the worker saw go in time */
  uvctx_t *target;
  int cancel; /* 1: cancel target, 0: release it */
  int rc;
} gated_t;

static void gate_cb(uv_async_t *a) {
  gated_t *g = a->data;
  tally_add(&g->go, 1);
  ck_assert_msg(tally_wait(&g->done, 1, HANDOFF_LIMIT_MS),
                "the worker did not finish while the loop waited");
  uv_close((uv_handle_t *)a, NULL);
}

static void gated_worker(void *arg) {
  gated_t *g = arg;
  uv_async_send(&g->gate);
  g->worker_went = tally_wait(&g->go, 1, HANDOFF_LIMIT_MS);
  if (g->cancel)
    g->rc = uvctx_cancel(g->target);
  else
    uvctx_release(g->target);
  crew_finish(&g->crew);
  tally_add(&g->done, 1); /* the loop thread joins us only after this */
}

/* Starts the worker on target and runs the loop until it is joined. */
static void run_gated(gated_t *g, uvctx_t *target, int cancel) {
  memset(g, 0, sizeof *g);
  tally_init(&g->go);
  tally_init(&g->done);
  g->target = target;
  g->cancel = cancel;
  g->rc = 12345;
  ck_assert_int_eq(uv_async_init(&loop, &g->gate, gate_cb), 0);
  g->gate.data = g;
  crew_init(&g->crew);
  crew_spawn(&g->crew, gated_worker, g);
  crew_run(&g->crew);
  ck_assert_int_eq(g->worker_went, 1);
  tally_destroy(&g->go);
  tally_destroy(&g->done);
}

START_TEST(release_on_another_thread_during_async_callbacks_is_not_lost) {
  gated_t g;
  uvctx_t *c = mk_timeout(&loop, uvctx_background(), 60000);
  ck_assert_ptr_nonnull(uvctx_done_async(c));
  run_gated(&g, c, 0);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(cancel_on_another_thread_during_async_callbacks_is_delivered) {
  gated_t g;
  rec_t w;
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  rec_watch(&w, NULL, c);
  run_gated(&g, c, 1);
  ck_assert_int_eq(g.rc, 0);
  /* c is done and its callback is due: uv_run must not have returned yet */
  ck_assert_int_eq(w.calls, 1);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

Suite *threads_suite(void) {
  return SUITE(
      "threads",
      {"threads", TIMEOUT_THREADS_S, loop_setup, NULL,
       .tests = TESTS(
           cancel_from_another_thread_sets_err_before_it_returns,
           cancel_from_another_thread_is_delivered_on_the_loop_exactly_once,
           cancel_from_another_thread_is_delivered_in_tree_order,
           racing_cancels_exactly_one_wins_and_its_cause_is_everywhere,
           threads_cancel_nodes_while_the_loop_adds_children_under_them,
           release_of_the_last_reference_on_another_thread_is_done_by_the_loop,
           last_reference_dropped_by_whichever_thread_releases_last,
           retain_release_from_threads_while_the_loop_cancels,
           err_and_cause_read_from_threads_while_the_loop_cancels,
           err_and_cause_read_from_threads_while_another_thread_cancels,
           release_on_another_thread_during_async_callbacks_is_not_lost,
           cancel_on_another_thread_during_async_callbacks_is_delivered)});
}
