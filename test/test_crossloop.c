/* Cross-loop trees: a child on loop B, run by a thread of its own, under a
 * parent on loop A, run by the test's thread.
 *
 * Only uv_async_send() crosses threads, as libuv requires: A posts B a
 * command through B's ref'd async "cmd" and runs its loop until B answers
 * through A's async "wake". B never calls Check's asserts (they may not run
 * off the test's thread): it records the line of its first failed check.
 * Contexts are made, watched and released on their own loop's thread; across
 * loops only what the header allows (cancel, err, cause, deadline, value,
 * retain, release) reaches them. Threads that must act at the same moment
 * meet on a barrier; one waiting for the other blocks, never spins. */
#include <stdatomic.h>
#include <stdlib.h>

#include "helpers.h"

static int key_a;
static char val_a[] = "a";

typedef struct xl_s xl_t;
typedef void (*b_fn)(xl_t *x);

struct xl_s {
  uv_loop_t a;
  uv_async_t wake; /* on A, unref'd */
  journal_t ja;    /* the recs of loop A */

  uv_loop_t b;
  uv_thread_t b_tid;
  uv_thread_t b_thread;
  uv_async_t cmd;
  _Atomic(b_fn) fn; /* the command posted, taken by B */
  tally_t started;
  atomic_int answered;
  atomic_int finished;
  int b_init_rc;
  int b_run_rc;
  int b_close_rc;
  int b_fail_line; /* first failed check on B; read after an answer */
  atomic_int wake_failed; /* a uv_async_send to A failed (wake_a) */
  journal_t jb;    /* the recs of loop B */

  /* Watch callbacks run, on both loops: A reads a rec only once this count
   * says it ran (the rec's fields are plain ints). */
  atomic_int called;

  uvctx_t *p;  /* on A */
  uvctx_t *pv; /* on A, a value context over p */
  uvctx_t *c;  /* on B from here */
  uvctx_t *g[3];
  uvctx_t *q;
  uvctx_t *any;
  /* read on B */
  int err_b;
  int cause_b;
  int has_deadline_b;
  uint64_t deadline_b;
  void *value_b;

  rec_t pa;    /* on p, loop A */
  rec_t pc;    /* on c, loop B */
  rec_t pg[3]; /* on g[i], loop B */

  /* children that B keeps making under p, one per loop iteration */
  uv_idle_t grow;
  uvctx_t **kids;
  rec_t *kid_watch;
  tally_t grown_enough; /* one per round: B grew KIDS_BEFORE_CANCEL kids */
  atomic_int grown;
  atomic_int grow_done;
  int rounds_after_cancel;

  uv_barrier_t race; /* a cancel on B and one on A, started together */
  int b_cancel_rc;
};

#define B_CHECK(x, cond)                                                       \
  do {                                                                         \
    if (!(cond) && (x)->b_fail_line == 0)                                      \
      (x)->b_fail_line = __LINE__;                                             \
  } while (0)

/* Runs on either loop's thread, where a Check assertion must not fail (with
 * CK_FORK=no it would longjmp into the test's thread): a failure is recorded
 * for a_wait, on the test's thread, to report. */
static void wake_a(xl_t *x) {
  if (uv_async_send(&x->wake) != 0)
    atomic_store(&x->wake_failed, 1);
}

static void wake_cb(uv_async_t *a) { (void)a; /* a_wait looks */ }

static void count_and_wake(rec_t *r) {
  xl_t *x = r->arg;
  atomic_fetch_add(&x->called, 1);
  wake_a(x);
}

/* Watches ctx with r, on A's loop (on_a) or B's, counted in x->called. */
static int xl_watch(xl_t *x, rec_t *r, uvctx_t *ctx, int on_a) {
  rec_init(r, on_a ? &x->ja : &x->jb, ctx);
  r->action = count_and_wake;
  r->arg = x;
  return uvctx_watch(ctx, &r->w, rec_cb);
}

static int ran_on_b(xl_t *x, const rec_t *r) {
  return uv_thread_equal(&r->thread, &x->b_thread);
}

/* The rec r of loop B ran once, on B's thread, with err and cause. */
#define assert_ran_on_b(x, r, e, c)                                            \
  do {                                                                         \
    ck_assert_int_eq((r)->calls, 1);                                           \
    ck_assert_int_eq((r)->err, (e));                                           \
    ck_assert_int_eq((r)->cause, (c));                                         \
    ck_assert(ran_on_b((x), (r)));                                             \
  } while (0)

/* Loop B's command handler: runs the command A posted, then answers. */
static void b_cmd_cb(uv_async_t *a) {
  xl_t *x = a->data;
  b_fn fn = atomic_exchange(&x->fn, NULL);
  if (fn != NULL) {
    fn(x);
    atomic_fetch_add(&x->answered, 1);
    wake_a(x);
  }
}

static void b_main(void *arg) {
  xl_t *x = arg;
  x->b_thread = uv_thread_self();
  x->b_init_rc = uv_loop_init(&x->b);
  if (x->b_init_rc == 0) {
    x->b_init_rc = uv_async_init(&x->b, &x->cmd, b_cmd_cb);
    x->cmd.data = x;
  }
  tally_add(&x->started, 1);
  if (x->b_init_rc == 0) {
    x->b_run_rc = uv_run(&x->b, UV_RUN_DEFAULT);
    x->b_close_rc = uv_loop_close(&x->b);
  }
  atomic_store(&x->finished, 1);
  wake_a(x);
}

typedef struct {
  atomic_int *ctr;
  int target;
} wait_t;

static int ctr_reached(void *arg) {
  wait_t *w = arg;
  return atomic_load(w->ctr) >= w->target;
}

/* Runs loop A until *ctr >= target or EVENTUALLY_MS have passed; returns
 * whether it was met. */
static int a_wait(xl_t *x, atomic_int *ctr, int target) {
  wait_t w = {ctr, target};
  int met = poll_until(&x->a, ctr_reached, &w, uvctx_now() + EVENTUALLY_MS);

  ck_assert_msg(!atomic_load(&x->wake_failed), "uv_async_send to loop A failed");
  return met;
}

/* Posts fn to B; returns the count of answers that says B ran it. */
static int b_post(xl_t *x, b_fn fn) {
  int target = atomic_load(&x->answered) + 1;
  atomic_store(&x->fn, fn);
  ck_assert_int_eq(uv_async_send(&x->cmd), 0);
  return target;
}

/* Has B run fn on its thread, while A's loop runs; fails if B does not
 * answer or one of its checks failed. */
static void b_call(xl_t *x, b_fn fn) {
  ck_assert_msg(a_wait(x, &x->answered, b_post(x, fn)),
                "loop B did not answer");
  ck_assert_msg(x->b_fail_line == 0, "a check on loop B failed at line %d",
                x->b_fail_line);
}

static void b_quit(xl_t *x) { uv_close((uv_handle_t *)&x->cmd, NULL); }

static void b_noop(xl_t *x) { (void)x; }

/* Sets up loop A on this thread and starts the thread running loop B. */
static xl_t *xl_start(void) {
  xl_t *x = calloc(1, sizeof(*x));
  ck_assert_ptr_nonnull(x);
  ck_assert_int_eq(uv_loop_init(&x->a), 0);
  atomic_init(&x->fn, NULL);
  ck_assert_int_eq(uv_async_init(&x->a, &x->wake, wake_cb), 0);
  uv_unref((uv_handle_t *)&x->wake);
  tally_init(&x->started);
  tally_init(&x->grown_enough);
  atomic_init(&x->answered, 0);
  atomic_init(&x->finished, 0);
  atomic_init(&x->called, 0);
  atomic_init(&x->grown, 0);
  atomic_init(&x->grow_done, 0);
  ck_assert_int_eq(uv_thread_create(&x->b_tid, b_main, x), 0);
  ck_assert_msg(tally_wait(&x->started, 1, HANDOFF_LIMIT_MS),
                "loop B's thread did not start");
  ck_assert_int_eq(x->b_init_rc, 0);
  return x;
}

/* xl_start(), with p a cancel context under background. */
static xl_t *xl_start_with_parent(void) {
  xl_t *x = xl_start();
  x->p = mk_cancel(&x->a, uvctx_background());
  return x;
}

/* Has B quit once its contexts are released, running loop A until B's
 * thread is done (B may hand A a release on its way out). */
static void xl_stop_b(xl_t *x) {
  b_call(x, b_quit);
  ck_assert_msg(a_wait(x, &x->finished, 1), "loop B did not finish");
  ck_assert_int_eq(uv_thread_join(&x->b_tid), 0);
  ck_assert_int_eq(x->b_run_rc, 0);
  ck_assert_int_eq(x->b_close_rc, 0);
}

/* After xl_stop_b and the release of A's contexts: loop A closes. */
static void xl_finish(xl_t *x) {
  uv_close((uv_handle_t *)&x->wake, NULL);
  ASSERT_LOOP_CLOSES(&x->a);
  tally_destroy(&x->grown_enough);
  tally_destroy(&x->started);
  free(x->kid_watch);
  free(x->kids);
  free(x);
}

/* --- Commands run on loop B --- */

/* c: a cancel context on B under p (or pv if set); records its state at
 * birth. */
static void b_make_child(xl_t *x) {
  uvctx_t *parent = x->pv != NULL ? x->pv : x->p;
  B_CHECK(x, uvctx_with_cancel(&x->b, parent, &x->c) == 0);
  B_CHECK(x, uvctx_loop(x->c) == &x->b);
  x->err_b = uvctx_err(x->c);
  x->cause_b = uvctx_cause(x->c);
}

static void b_make_child_and_watch(xl_t *x) {
  b_make_child(x);
  B_CHECK(x, xl_watch(x, &x->pc, x->c, 0) == 0);
}

/* c with a subtree on B: g0 cancel under c, g1 value under c, g2 deadline
 * under g1; watches registered grandchildren first. */
static void b_make_tree(xl_t *x) {
  b_make_child(x);
  B_CHECK(x, uvctx_with_cancel(&x->b, x->c, &x->g[0]) == 0);
  B_CHECK(x, uvctx_with_value(x->c, &key_a, val_a, &x->g[1]) == 0);
  B_CHECK(x, uvctx_with_timeout(&x->b, x->g[1], 60000, &x->g[2]) == 0);
  for (int i = 2; i >= 0; i--)
    B_CHECK(x, xl_watch(x, &x->pg[i], x->g[i], 0) == 0);
  B_CHECK(x, xl_watch(x, &x->pc, x->c, 0) == 0);
}

static void b_read_child(xl_t *x) {
  x->err_b = uvctx_err(x->c);
  x->cause_b = uvctx_cause(x->c);
  x->has_deadline_b = uvctx_deadline(x->c, &x->deadline_b);
  x->value_b = uvctx_value(x->c, &key_a);
}

static void b_cancel_child(xl_t *x) {
  B_CHECK(x, uvctx_cancel_cause(x->c, UV_EIO) == 0);
}

/* Unwatches what has not run (a pending watch keeps its context alive) and
 * releases every context of B. */
static void b_release_all(xl_t *x) {
  uvctx_unwatch(&x->pc.w);
  for (int i = 0; i < 3; i++)
    uvctx_unwatch(&x->pg[i].w);
  release_all(x->g[2], x->g[1], x->g[0], x->any, x->q, x->c);
  x->g[0] = x->g[1] = x->g[2] = x->any = x->q = x->c = NULL;
}

/* The end of most tests: the contexts of one loop released, then the other's
 * (which may then drop the last reference to one of the first loop). */
enum { A_FIRST, B_FIRST };

static void xl_end(xl_t *x, int first) {
  if (first == B_FIRST)
    b_call(x, b_release_all);
  uvctx_release(x->pv);
  uvctx_release(x->p);
  if (first == A_FIRST)
    b_call(x, b_release_all);
  xl_stop_b(x);
  xl_finish(x);
}

static void b_make_q(xl_t *x) {
  B_CHECK(x, uvctx_with_cancel(&x->b, uvctx_background(), &x->q) == 0);
}

/* any on B of [q (on B), pv (on A)]. */
static void b_make_any(xl_t *x) {
  b_make_q(x);
  uvctx_t *parents[] = {x->q, x->pv};
  B_CHECK(x, uvctx_with_any(&x->b, parents, 2, &x->any) == 0);
  B_CHECK(x, uvctx_value(x->any, &key_a) == val_a);
  B_CHECK(x, xl_watch(x, &x->pc, x->any, 0) == 0);
}

static void b_read_any(xl_t *x) {
  x->err_b = uvctx_err(x->q);
  x->cause_b = uvctx_cause(x->any);
}

enum { KIDS_MAX = 2000, KIDS_BEFORE_CANCEL = 10, RACE_ROUNDS = 10 };

/* One more child of p per iteration of loop B: a cancel or a deadline
 * context under p, or a cancel context under pv (a value context of p, whose
 * callbacks run on A), each watched; until a few iterations after p is
 * seen done. Tells A once KIDS_BEFORE_CANCEL are there. */
static void b_grow_cb(uv_idle_t *h) {
  xl_t *x = h->data;
  int i = atomic_load(&x->grown);
  uvctx_t *k = NULL;
  switch (i % 3) {
  case 0: B_CHECK(x, uvctx_with_cancel(&x->b, x->p, &k) == 0); break;
  case 1: B_CHECK(x, uvctx_with_timeout(&x->b, x->p, 60000, &k) == 0); break;
  default: B_CHECK(x, uvctx_with_cancel(&x->b, x->pv, &k) == 0);
  }
  x->kids[i] = k;
  B_CHECK(x, xl_watch(x, &x->kid_watch[i], k, 0) == 0);
  atomic_store(&x->grown, i + 1);
  if (i + 1 == KIDS_BEFORE_CANCEL)
    tally_add(&x->grown_enough, 1);
  if (uvctx_err(x->p) != 0)
    x->rounds_after_cancel++;
  if (x->rounds_after_cancel >= 3 || i + 1 == KIDS_MAX) {
    uv_close((uv_handle_t *)h, NULL);
    atomic_store(&x->grow_done, 1);
    wake_a(x);
  }
}

static void b_start_growing(xl_t *x) {
  B_CHECK(x, uv_idle_init(&x->b, &x->grow) == 0);
  x->grow.data = x;
  B_CHECK(x, uv_idle_start(&x->grow, b_grow_cb) == 0);
}

static void b_check_and_release_kids(xl_t *x) {
  int n = atomic_load(&x->grown);
  for (int i = 0; i < n; i++) {
    B_CHECK(x, uvctx_err(x->kids[i]) == UV_ECANCELED);
    B_CHECK(x, uvctx_cause(x->kids[i]) == UV_EPIPE);
    B_CHECK(x, x->kid_watch[i].calls == 1);
    B_CHECK(x, x->kid_watch[i].err == UV_ECANCELED);
    B_CHECK(x, rec_ran_here(&x->kid_watch[i]));
    uvctx_release(x->kids[i]);
  }
}

static void b_cancel_q_on_go(xl_t *x) {
  uv_barrier_wait(&x->race);
  x->b_cancel_rc = uvctx_cancel_cause(x->q, UV_EIO);
}

/* xl_start_with_parent(), p watched by pa; then c, watched by pc, on B under
 * p. */
static xl_t *xl_start_watched(void) {
  xl_t *x = xl_start_with_parent();
  ck_assert_int_eq(xl_watch(x, &x->pa, x->p, 1), 0);
  b_call(x, b_make_child_and_watch);
  return x;
}

/* --- Cancelling the parent --- */

START_TEST(cancelling_a_parent_finishes_a_child_on_another_loop_at_once) {
  xl_t *x = xl_start_with_parent();
  b_call(x, b_make_child);
  ck_assert_int_eq(x->err_b, 0);

  ck_assert_int_eq(uvctx_cancel_cause(x->p, UV_EPIPE), 0);
  /* seen from this thread as soon as the cancel returns... */
  ck_assert_int_eq(uvctx_err(x->c), UV_ECANCELED);
  ck_assert_int_eq(uvctx_cause(x->c), UV_EPIPE);
  /* ...and from B's */
  b_call(x, b_read_child);
  ck_assert_int_eq(x->err_b, UV_ECANCELED);
  ck_assert_int_eq(x->cause_b, UV_EPIPE);
  xl_end(x, A_FIRST);
}
END_TEST

START_TEST(watches_of_a_child_on_another_loop_run_on_its_own_loop_thread) {
  xl_t *x = xl_start_watched();

  ck_assert_int_eq(uvctx_cancel_cause(x->p, UV_ECONNRESET), 0);
  ck_assert(a_wait(x, &x->called, 2));
  b_call(x, b_noop); /* B ran again: still once */
  b_call(x, b_noop);
  assert_ran_on_b(x, &x->pc, UV_ECANCELED, UV_ECONNRESET);
  ck_assert_int_eq(x->pa.calls, 1);
  ck_assert(rec_ran_here(&x->pa));
  xl_end(x, B_FIRST);
}
END_TEST

START_TEST(grandchildren_on_the_child_loop_are_done_in_tree_order) {
  xl_t *x = xl_start_with_parent();
  b_call(x, b_make_tree);

  ck_assert_int_eq(uvctx_cancel_cause(x->p, UV_ENETDOWN), 0);
  ck_assert(a_wait(x, &x->called, 4)); /* c and g[0..2] */
  b_call(x, b_noop);
  ck_assert_int_eq(x->pc.calls, 1);
  ck_assert_int_eq(x->pc.seq, 1); /* the child before its descendants */
  for (int i = 0; i < 3; i++) {
    assert_ran_on_b(x, &x->pg[i], UV_ECANCELED, UV_ENETDOWN);
    ck_assert_int_gt(x->pg[i].seq, x->pc.seq);
  }
  ck_assert_int_lt(x->pg[1].seq, x->pg[2].seq);
  xl_end(x, A_FIRST);
}
END_TEST

START_TEST(child_of_a_parent_cancelled_before_it_exists_is_born_done) {
  xl_t *x = xl_start_with_parent();
  ck_assert_int_eq(uvctx_cancel_cause(x->p, UV_EHOSTUNREACH), 0);
  ck_assert_int_eq(uv_run(&x->a, UV_RUN_DEFAULT), 0);

  b_call(x, b_make_child_and_watch);
  ck_assert_int_eq(x->err_b, UV_ECANCELED); /* read on B right at birth */
  ck_assert_int_eq(x->cause_b, UV_EHOSTUNREACH);
  ck_assert(a_wait(x, &x->called, 1));
  assert_ran_on_b(x, &x->pc, UV_ECANCELED, UV_EHOSTUNREACH);
  xl_end(x, B_FIRST);
}
END_TEST

START_TEST(a_deadline_on_the_parent_loop_reaches_the_child_on_another_loop) {
  xl_t *x = xl_start();
  uint64_t dl = 0;
  x->p = mk_timeout_cause(&x->a, uvctx_background(), 20, UV_EHOSTDOWN);
  ck_assert_int_eq(uvctx_deadline(x->p, &dl), 1);
  x->pv = mk_value(x->p, &key_a, val_a);
  b_call(x, b_make_child_and_watch);
  b_call(x, b_read_child);
  ck_assert_int_eq(x->has_deadline_b, 1);
  ck_assert_uint_eq(x->deadline_b, dl);
  ck_assert_ptr_eq(x->value_b, val_a);

  ck_assert_msg(a_wait(x, &x->called, 1), "the deadline never reached B");
  assert_ran_on_b(x, &x->pc, UV_ETIMEDOUT, UV_EHOSTDOWN);
  ck_assert_uint_ge(x->pc.now, dl);
  xl_end(x, B_FIRST);
}
END_TEST

START_TEST(cancelling_the_child_leaves_the_parent_on_the_other_loop_alone) {
  xl_t *x = xl_start_watched();

  b_call(x, b_cancel_child);
  ck_assert(a_wait(x, &x->called, 1));
  assert_ran_on_b(x, &x->pc, UV_ECANCELED, UV_EIO);
  ck_assert_int_eq(uvctx_err(x->p), 0);
  ck_assert_int_eq(x->pa.calls, 0);
  ck_assert_int_eq(uvctx_unwatch(&x->pa.w), 0);
  xl_end(x, B_FIRST);
}
END_TEST

START_TEST(any_on_one_loop_of_parents_on_two_loops) {
  xl_t *x = xl_start_with_parent();
  x->pv = mk_value(x->p, &key_a, val_a);
  b_call(x, b_make_any);

  ck_assert_int_eq(uvctx_cancel_cause(x->p, UV_EPIPE), 0);
  ck_assert_int_eq(uvctx_err(x->any), UV_ECANCELED);
  ck_assert(a_wait(x, &x->called, 1));
  assert_ran_on_b(x, &x->pc, UV_ECANCELED, UV_EPIPE);
  b_call(x, b_read_any);
  ck_assert_int_eq(x->err_b, 0); /* the other parent, on B, is untouched */
  ck_assert_int_eq(x->cause_b, UV_EPIPE);
  xl_end(x, A_FIRST);
}
END_TEST

/* The parent is cancelled on A while B is adding children under it: every
 * child ends up done (cancelled, or born done), its watch runs once on B.
 * This thread waits (blocked, not running loop A) until B has linked
 * KIDS_BEFORE_CANCEL children, then cancels while B goes on linking more. */
START_TEST(cancel_while_the_other_loop_adds_children_reaches_every_one) {
  xl_t *x = xl_start();
  x->kids = calloc(KIDS_MAX, sizeof(*x->kids));
  x->kid_watch = calloc(KIDS_MAX, sizeof(*x->kid_watch));
  ck_assert_ptr_nonnull(x->kids);
  ck_assert_ptr_nonnull(x->kid_watch);

  for (int round = 0; round < RACE_ROUNDS; round++) {
    atomic_store(&x->grown, 0);
    atomic_store(&x->grow_done, 0);
    atomic_store(&x->called, 0);
    x->rounds_after_cancel = 0;
    x->p = mk_cancel(&x->a, uvctx_background());
    x->pv = mk_value(x->p, &key_a, val_a);
    b_call(x, b_start_growing);

    ck_assert_msg(tally_wait(&x->grown_enough, round + 1, HANDOFF_LIMIT_MS),
                  "loop B did not grow %d children", KIDS_BEFORE_CANCEL);
    ck_assert_int_eq(uvctx_cancel_cause(x->p, UV_EPIPE), 0);
    ck_assert_msg(a_wait(x, &x->grow_done, 1), "loop B kept growing");
    int n = atomic_load(&x->grown);
    ck_assert_int_ge(n, KIDS_BEFORE_CANCEL);
    ck_assert_msg(a_wait(x, &x->called, n), "%d of %d watches ran",
                  atomic_load(&x->called), n);
    b_call(x, b_check_and_release_kids);
    ck_assert_int_eq(atomic_load(&x->called), n);
    release_all(x->pv, x->p);
  }
  xl_stop_b(x);
  xl_finish(x);
}
END_TEST

/* An any on A of p (on A) and q (on B); p and q cancelled at the same time,
 * each on its own loop's thread: the any is done once, with one of the two
 * causes, its watch runs once. */
START_TEST(racing_cancels_of_parents_on_two_loops_finish_any_once) {
  xl_t *x = xl_start();
  ck_assert_int_eq(uv_barrier_init(&x->race, 2), 0);
  for (int round = 0; round < RACE_ROUNDS; round++) {
    uvctx_t *any = NULL;
    atomic_store(&x->called, 0);
    x->p = mk_cancel(&x->a, uvctx_background());
    b_call(x, b_make_q);
    uvctx_t *parents[] = {x->p, x->q};
    ck_assert_int_eq(uvctx_with_any(&x->a, parents, 2, &any), 0);
    ck_assert_int_eq(xl_watch(x, &x->pa, any, 1), 0);

    int target = b_post(x, b_cancel_q_on_go);
    uv_barrier_wait(&x->race);
    ck_assert_int_eq(uvctx_cancel_cause(x->p, UV_EPIPE), 0);
    ck_assert(a_wait(x, &x->answered, target));
    ck_assert_int_eq(x->b_cancel_rc, 0);
    ck_assert(a_wait(x, &x->called, 1));
    b_call(x, b_noop);
    ck_assert_int_eq(uv_run(&x->a, UV_RUN_NOWAIT), 0);

    ck_assert_int_eq(x->pa.calls, 1);
    ck_assert_int_eq(x->pa.err, UV_ECANCELED);
    ck_assert(x->pa.cause == UV_EPIPE || x->pa.cause == UV_EIO);
    ck_assert_int_eq(uvctx_cause(any), x->pa.cause);
    ck_assert(rec_ran_here(&x->pa));
    release_all(any, x->p);
    b_call(x, b_release_all);
  }
  uv_barrier_destroy(&x->race);
  xl_stop_b(x);
  xl_finish(x);
}
END_TEST

/* --- Release order: both loops close either way --- */

START_TEST(releasing_the_parent_first_then_the_child_lets_both_loops_close) {
  xl_t *x = xl_start_with_parent();
  ck_assert_ptr_nonnull(uvctx_done_async(x->p)); /* a handle to leak */
  b_call(x, b_make_tree);

  uvctx_release(x->p); /* the child still holds it */
  ck_assert_int_eq(uv_run(&x->a, UV_RUN_DEFAULT), 0);
  b_call(x, b_read_child);
  ck_assert_int_eq(x->err_b, 0);
  x->p = NULL;
  xl_end(x, A_FIRST); /* B drops the last reference to p */
}
END_TEST

START_TEST(releasing_the_child_first_then_the_parent_lets_both_loops_close) {
  xl_t *x = xl_start_with_parent();
  ck_assert_ptr_nonnull(uvctx_done_async(x->p));
  b_call(x, b_make_tree);

  b_call(x, b_release_all);
  xl_stop_b(x); /* loop B is closed and its thread gone... */
  /* ...and the parent no longer knows the child: cancelling it is local */
  ck_assert_int_eq(uvctx_cancel(x->p), 0);
  ck_assert_int_eq(uv_run(&x->a, UV_RUN_DEFAULT), 0);
  uvctx_release(x->p);
  xl_finish(x);
}
END_TEST

Suite *crossloop_suite(void) {
  return SUITE(
      "crossloop",
      {"cancel", TIMEOUT_THREADS_S, NULL, NULL,
       .tests = TESTS(
           cancelling_a_parent_finishes_a_child_on_another_loop_at_once,
           watches_of_a_child_on_another_loop_run_on_its_own_loop_thread,
           grandchildren_on_the_child_loop_are_done_in_tree_order,
           child_of_a_parent_cancelled_before_it_exists_is_born_done,
           a_deadline_on_the_parent_loop_reaches_the_child_on_another_loop,
           cancelling_the_child_leaves_the_parent_on_the_other_loop_alone,
           any_on_one_loop_of_parents_on_two_loops,
           cancel_while_the_other_loop_adds_children_reaches_every_one,
           racing_cancels_of_parents_on_two_loops_finish_any_once)},
      {"release", TIMEOUT_THREADS_S, NULL, NULL,
       .tests = TESTS(
           releasing_the_parent_first_then_the_child_lets_both_loops_close,
           releasing_the_child_first_then_the_parent_lets_both_loops_close)});
}
