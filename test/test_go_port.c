/* Go's own context tests (src/context/x_test.go, context_test.go), ported to
 * uvctx: one Check test, or one row of a table, per Go test (or per case of a
 * Go table), named after it.
 *
 * The mapping: a Go Done channel is a watch whose callback records that it ran;
 * "<-ctx.Done() blocks" is "the callback has not run although the loop ran";
 * goroutines are threads, which call only the functions the header allows off
 * the loop thread (cancel, err, cause, ...). Go's otherContext (a wrapper of a
 * type the package does not know) has no C counterpart; where a Go test wraps
 * a context in one, a node of another kind (a value or without-cancel
 * context) stands in between instead. Go's panics for invalid arguments are
 * UV_EINVAL returns.
 *
 * Times are short (5 ms); waits are bounded by EVENTUALLY_MS and never assert
 * how late something was, only that a deadline never fired early.
 *
 * The races start the goroutine and the loop thread together on a barrier;
 * a side that polls what the other does polls for at most RACE_MS, then
 * blocks until the other has acted (a tally), so that on a loaded machine
 * neither spins through the time slices the other needs. */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "helpers.h"

#define SHORT_MS 5                                  /* Go's shortDuration */
#define VERY_LONG_MS ((uint64_t)1000 * 3600 * 1000) /* Go's veryLongDuration */
#define FOREVER_MS ((uint64_t)1000000 * 1000)       /* Go's 1e6 * time.Second */
#define RACE_MS 2 /* poll the other thread's effect this long */

/* Distinct negative codes used as causes (never UV_ECANCELED/UV_ETIMEDOUT). */
#define PARENT_CAUSE UV_EPIPE
#define CHILD_CAUSE UV_ECONNRESET
#define TOO_SLOW UV_EBUSY
#define FINISHED_EARLY UV_EIO

static const char key;

/* --- Go's "go cancel()" --- */

/* A thread that cancels contexts. It lives for all the rounds of a test and
 * cancels each round's context once it and the loop thread meet on a
 * barrier, so that what the loop thread does next races the cancel. (A
 * thread started per round cost tens of milliseconds a round on a loaded
 * machine, waiting for its first time slice.) */
typedef struct {
  uv_thread_t tid;
  uv_barrier_t start;
  uvctx_t *ctx; /* the round's, set before the barrier; NULL: stop */
  int cause;
  int rc;           /* the round's cancel: read it with canceller_rc */
  int rounds;       /* rounds begun (loop thread) */
  tally_t returned; /* rounds whose cancel has returned */
} canceller_t;

static void canceller_main(void *arg) {
  canceller_t *c = arg;
  for (;;) {
    uv_barrier_wait(&c->start);
    if (c->ctx == NULL)
      break;
    c->rc = uvctx_cancel_cause(c->ctx, c->cause);
    tally_add(&c->returned, 1);
  }
}

static void canceller_start(canceller_t *c) {
  memset(c, 0, sizeof(*c));
  ck_assert_int_eq(uv_barrier_init(&c->start, 2), 0);
  tally_init(&c->returned);
  ck_assert_int_eq(uv_thread_create(&c->tid, canceller_main, c), 0);
}

/* Waits until the last round's cancel has returned; returns its result. */
static int canceller_rc(canceller_t *c) {
  ck_assert_msg(tally_wait(&c->returned, c->rounds, HANDOFF_LIMIT_MS),
                "round %d: the cancel did not return", c->rounds);
  return c->rc;
}

/* Begins a round: the canceller cancels ctx with cause while the caller goes
 * on. */
static void canceller_race(canceller_t *c, uvctx_t *ctx, int cause) {
  if (c->rounds > 0)
    canceller_rc(c); /* the thread is done with the last round's fields */
  c->ctx = ctx;
  c->cause = cause;
  c->rc = 1;
  c->rounds++;
  uv_barrier_wait(&c->start);
}

static void canceller_stop(canceller_t *c) {
  if (c->rounds > 0)
    canceller_rc(c);
  c->ctx = NULL;
  uv_barrier_wait(&c->start);
  ck_assert_int_eq(uv_thread_join(&c->tid), 0);
  uv_barrier_destroy(&c->start);
  tally_destroy(&c->returned);
}

/* Polls pred(ctx) until it is non-zero, for at most RACE_MS (a race against
 * another thread's cancel); if it is still zero, blocks until the cancel has
 * returned (acted reaches n), then asks once more. Returns pred's last answer.
 * A wait that timed out is caught by the caller's later checks. */
static int poll_then_wait(int (*pred)(const uvctx_t *), const uvctx_t *ctx,
                          tally_t *acted, int n) {
  uint64_t give_up = uv_hrtime() + (uint64_t)RACE_MS * 1000000;
  int v;
  for (int i = 1; (v = pred(ctx)) == 0; i++)
    if (i % 256 == 0 && uv_hrtime() >= give_up) {
      tally_wait(acted, n, HANDOFF_LIMIT_MS);
      return pred(ctx);
    }
  return v;
}

/* The end of a round: the loop delivers the watch r of the round's context,
 * cancelled by the canceller, whose cancel returned 0. */
static void round_end(canceller_t *th, rec_t *r, int round) {
  ck_assert_msg(poll_count(&loop, &r->calls, 1),
                "round %d: watch not called after %d ms", round, EVENTUALLY_MS);
  ck_assert_int_eq(canceller_rc(th), 0);
  assert_called_once(r, UV_ECANCELED);
}

/* --- Roots --- */

static const struct {
  const char *name;
  uvctx_t *(*get)(void);
  uvctx_t *(*other)(void);
} roots[] = {{"background", uvctx_background, uvctx_todo},
             {"todo", uvctx_todo, uvctx_background}};

/* Go: TestBackground, TestTODO. A root is never done (a watch on it never
 * runs and stays stoppable) and formats as its name. */
START_TEST(test_background_todo) {
  uvctx_t *root = roots[_i].get();
  char buf[64];
  rec_t r;

  ck_assert_msg(root != NULL && root != roots[_i].other(), "%s: %p",
                roots[_i].name, (void *)root);
  assert_not_done(root);
  ck_assert_ptr_null(uvctx_done_async(root));
  ck_assert_ptr_null(uvctx_loop(root));
  ck_assert_str_eq(format_ok(root, buf, sizeof(buf)), roots[_i].name);

  rec_watch(&r, NULL, root);
  run_for(&loop, SHORT_MS);
  ck_assert_int_eq(r.calls, 0);
  ck_assert_int_eq(uvctx_unwatch(&r.w), 0);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* --- Cancellation --- */

/* Watches each of ctxs[0..n), none done, with r[i] in journal j; cancels
 * ctxs[0], which must finish them all: err at once, on the loop thread, and
 * the callbacks only later (Go: TestAfterFuncCalledAfterCancel), never
 * before the cancel nor inside it; a watch that ran cannot be stopped. */
static void cancel_finishes_all(uvctx_t **ctxs, rec_t *r, int n,
                                journal_t *j) {
  for (int i = 0; i < n; i++) {
    ck_assert_int_eq(uvctx_err(ctxs[i]), 0);
    rec_watch(&r[i], j, ctxs[i]);
  }
  run_for(&loop, SHORT_MS);
  ck_assert_int_eq(j->ran, 0);

  ck_assert_int_eq(uvctx_cancel(ctxs[0]), 0);
  for (int i = 0; i < n; i++)
    ck_assert_msg(uvctx_err(ctxs[i]) == UV_ECANCELED, "ctx %d err = %d", i,
                  uvctx_err(ctxs[i]));
  ck_assert_int_eq(j->ran, 0);

  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  for (int i = 0; i < n; i++) {
    ck_assert_msg(r[i].calls == 1, "ctx %d: %d calls", i, r[i].calls);
    ck_assert_int_eq(r[i].err, UV_ECANCELED);
    ck_assert_int_eq(r[i].err_inside, UV_ECANCELED);
    /* Go: stop() false */
    ck_assert_int_eq(uvctx_unwatch(&r[i].w), UV_EALREADY);
  }
}

/* Go: TestWithCancel. */
START_TEST(test_with_cancel) {
  char buf[128];
  journal_t j = {0};
  rec_t r[3];
  uvctx_t *c1 = mk_cancel(&loop, uvctx_background());
  char want[64];
  snprintf(want, sizeof want, "background.with_cancel #%" PRIu64,
           uvctx_id(c1));
  ck_assert_str_eq(format_ok(c1, buf, sizeof(buf)), want);
  uvctx_t *o = mk_value(c1, &key, NULL); /* stands in for otherContext{c1} */
  uvctx_t *c2 = mk_cancel(&loop, o);
  uvctx_t *ctxs[3] = {c1, o, c2};

  /* Each has a done signal (a value context shares its parent's). */
  ck_assert_ptr_nonnull(uvctx_done_async(c1));
  ck_assert_ptr_eq(uvctx_done_async(o), uvctx_done_async(c1));
  ck_assert_ptr_nonnull(uvctx_done_async(c2));
  ck_assert_ptr_ne(uvctx_done_async(c2), uvctx_done_async(c1));
  cancel_finishes_all(ctxs, r, 3, &j);

  release_all(c1, o, c2);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Go: TestParentFinishesChild. */
START_TEST(test_parent_finishes_child) {
  static char value[] = "value";
  journal_t j = {0};
  rec_t r[4], pre;

  /* parent -> cancel_child; parent -> value_child -> timer_child */
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *cancel_child = mk_cancel(&loop, parent);
  uvctx_t *value_child = mk_value(parent, &key, value);
  uvctx_t *timer_child = mk_timeout(&loop, value_child, VERY_LONG_MS);
  uvctx_t *ctxs[4] = {parent, cancel_child, value_child, timer_child};
  cancel_finishes_all(ctxs, r, 4, &j);
  /* An ancestor's callbacks before its descendants'. */
  ck_assert_int_lt(r[0].seq, r[1].seq);
  ck_assert_int_lt(r[0].seq, r[2].seq);
  ck_assert_int_lt(r[2].seq, r[3].seq);

  /* A child of a cancelled parent is born done. */
  uvctx_t *precanceled = mk_value(parent, &key, value);
  ck_assert_int_eq(uvctx_err(precanceled), UV_ECANCELED);
  rec_watch(&pre, &j, precanceled);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_called_once(&pre, UV_ECANCELED);

  release_all(precanceled, timer_child, value_child, cancel_child, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Go: TestChildFinishesFirst, under Background and under a cancel context. */
START_TEST(test_child_finishes_first) {
  uvctx_t *cancelable = mk_cancel(&loop, uvctx_background());
  uvctx_t *parents[2] = {uvctx_background(), cancelable};
  for (int i = 0; i < 2; i++) {
    rec_t rp, rc;
    uvctx_t *parent = parents[i];
    uvctx_t *child = mk_cancel(&loop, parent);

    rec_watch(&rp, NULL, parent);
    rec_watch(&rc, NULL, child);
    run_for(&loop, SHORT_MS);
    ck_assert_int_eq(rp.calls + rc.calls, 0);

    ck_assert_int_eq(uvctx_cancel(child), 0);
    ck_assert_int_eq(uvctx_err(child), UV_ECANCELED);
    ck_assert_msg(uvctx_err(parent) == 0, "parent %d done by its child", i);

    run_for(&loop, SHORT_MS);
    assert_called_once(&rc, UV_ECANCELED);
    ck_assert_msg(rp.calls == 0, "parent %d's watch ran", i);
    ck_assert_int_eq(uvctx_err(parent), 0);
    ck_assert_int_eq(uvctx_unwatch(&rp.w), 0);
    uvctx_release(child);
  }
  uvctx_release(cancelable);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Go: TestCancelRemoves, for a cancel and a timeout child. Go counts the
 * parent's children; here the effect of the removal is checked instead: a
 * cancelled and released child is out of its parent's tree, so cancelling the
 * parent later neither touches it (valgrind would see a use after free) nor
 * re-runs its callbacks. */
START_TEST(test_cancel_removes) {
  for (int with_timeout = 0; with_timeout < 2; with_timeout++) {
    rec_t rp, rc;
    uvctx_t *ctx = mk_cancel(&loop, uvctx_background());
    uvctx_t *child = with_timeout ? mk_timeout(&loop, ctx, 60 * 60 * 1000)
                                  : mk_cancel(&loop, ctx);
    rec_watch(&rp, NULL, ctx);
    rec_watch(&rc, NULL, child);

    ck_assert_int_eq(uvctx_cancel_cause(child, CHILD_CAUSE), 0);
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(rc.calls, 1);
    ck_assert_int_eq(rp.calls, 0);
    uvctx_release(child);
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0); /* child torn down */

    ck_assert_int_eq(uvctx_cancel_cause(ctx, PARENT_CAUSE), 0);
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(rp.calls, 1);
    ck_assert_int_eq(rp.cause, PARENT_CAUSE);
    ck_assert_int_eq(rc.calls, 1);
    ck_assert_int_eq(rc.cause, CHILD_CAUSE);
    uvctx_release(ctx);
  }
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* --- Deadlines --- */

/* Go's testDeadline: waits for ctx to be done, then checks it timed out, and
 * (uvctx's promise) that its watch did not run before its deadline; as in
 * TestAfterFuncCalledAfterTimeout, the watch can no longer be stopped. */
static void wait_timed_out(uvctx_t *ctx, const char *name) {
  rec_t r;
  uint64_t deadline = 0;
  ck_assert_msg(uvctx_deadline(ctx, &deadline) == 1, "%s: no deadline", name);
  rec_watch(&r, NULL, ctx);
  ck_assert_msg(poll_count(&loop, &r.calls, 1), "%s: not done after %d ms",
                name, EVENTUALLY_MS);
  ck_assert_int_eq(r.calls, 1);
  ck_assert_msg(r.err == UV_ETIMEDOUT, "%s: err = %d", name, r.err);
  ck_assert_int_eq(uvctx_err(ctx), UV_ETIMEDOUT);
  ck_assert_msg(r.now >= deadline, "%s: done at %llu, before deadline %llu",
                name, (unsigned long long)r.now, (unsigned long long)deadline);
  ck_assert_int_eq(uvctx_unwatch(&r.w), UV_EALREADY);
}

/* What a row of deadline_rows waits on: the deadline (or timeout) context
 * alone, a value context under it, or a context with a much later deadline
 * under that value context (it keeps the earliest of its ancestry). */
enum { ALONE, UNDER_VALUE, LATER_UNDER_VALUE };

static const struct {
  const char *name;
  int timeout;      /* uvctx_with_timeout(), else uvctx_with_deadline() */
  int64_t from_now; /* ms */
  int shape;
} deadline_rows[] = {
    /* Go: TestDeadline */
    {"with_deadline", 0, SHORT_MS, ALONE},
    {"with_deadline+value", 0, SHORT_MS, UNDER_VALUE},
    {"with_deadline+value+with_deadline", 0, SHORT_MS, LATER_UNDER_VALUE},
    {"with_deadline+inthepast", 0, -1, ALONE},
    {"with_deadline+now", 0, 0, ALONE},
    /* Go: TestTimeout; its first row is TestAfterFuncCalledAfterTimeout's */
    {"with_timeout", 1, SHORT_MS, ALONE},
    {"with_timeout+value", 1, SHORT_MS, UNDER_VALUE},
    {"with_timeout+value+with_timeout", 1, SHORT_MS, LATER_UNDER_VALUE},
};

START_TEST(test_deadline_timeout) {
  const char *name = deadline_rows[_i].name;
  int timeout = deadline_rows[_i].timeout, shape = deadline_rows[_i].shape;
  int64_t from_now = deadline_rows[_i].from_now;
  uint64_t dl = uvctx_now() + (uint64_t)from_now;
  uvctx_t *c[3] = {NULL, NULL, NULL};
  char buf[128];

  c[0] = timeout ? mk_timeout(&loop, uvctx_background(), (uint64_t)from_now)
                 : mk_deadline(&loop, uvctx_background(), dl);
  ck_assert_msg(has_prefix(format_ok(c[0], buf, sizeof(buf)),
                           "background.with_deadline("),
                "%s: format = %s", name, buf);
  if (!timeout)
    ck_assert_msg(deadline_of(c[0]) == dl, "%s: deadline moved", name);
  if (from_now < 0)
    ck_assert_msg(uvctx_err(c[0]) == UV_ETIMEDOUT, "%s: not born done", name);
  if (shape != ALONE)
    c[1] = mk_value(c[0], &key, NULL);
  if (shape == LATER_UNDER_VALUE) {
    c[2] = timeout ? mk_timeout(&loop, c[1], VERY_LONG_MS)
                   : mk_deadline(&loop, c[1], uvctx_now() + VERY_LONG_MS);
    ck_assert_msg(deadline_of(c[2]) == deadline_of(c[0]),
                  "%s: not the earliest deadline of its ancestry", name);
  }
  wait_timed_out(c[shape], name);

  release_all(c[2], c[1], c[0]);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Go: TestCanceledTimeout. */
START_TEST(test_canceled_timeout) {
  rec_t r;
  uvctx_t *c = mk_timeout(&loop, uvctx_background(), 1000);
  uvctx_t *o = mk_value(c, &key, NULL);
  uvctx_t *c2 = mk_timeout(&loop, o, VERY_LONG_MS);
  rec_watch(&r, NULL, c2);

  ck_assert_int_eq(uvctx_cancel(c2), 0);
  ck_assert_int_eq(uvctx_err(c2), UV_ECANCELED); /* synchronously */
  ck_assert_int_eq(uvctx_err(c), 0);
  ck_assert_int_eq(r.calls, 0);
  /* The parent's pending 1 s deadline does not keep the loop running. */
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_called_once(&r, UV_ECANCELED);
  ck_assert_int_eq(uvctx_err(c), 0);

  release_all(c2, o, c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* --- Values --- */

static const char k1, k2, k3;
static char c1k1[] = "c1k1", c2k2[] = "c2k2", c3k3[] = "c3k3", o2k2[] = "o2k2";

static void check_values(const uvctx_t *c, const char *name, const char *v1,
                         const char *v2, const char *v3) {
  const void *keys[3] = {&k1, &k2, &k3}, *want[3] = {v1, v2, v3};
  for (int i = 0; i < 3; i++)
    ck_assert_msg(uvctx_value(c, keys[i]) == want[i],
                  "%s: value(k%d) = %p want %p", name, i + 1,
                  uvctx_value(c, keys[i]), want[i]);
}

static int count_of(const char *s, const char *needle) {
  int n = 0;
  for (const char *p = strstr(s, needle); p != NULL; p = strstr(p + 1, needle))
    n++;
  return n;
}

/* A description shaped background.with_value(...)... with n value layers. */
static void check_value_format(const uvctx_t *c, int n) {
  char buf[512];
  format_ok(c, buf, sizeof(buf));
  ck_assert_msg(has_prefix(buf, "background.with_value("), "format = %s", buf);
  ck_assert_msg(count_of(buf, "with_value(") == n, "format = %s, want %d",
                buf, n);
  char tail[32];
  snprintf(tail, sizeof tail, ") #%" PRIu64, uvctx_id(c));
  ck_assert_msg(strlen(buf) > strlen(tail) &&
                    strcmp(buf + strlen(buf) - strlen(tail), tail) == 0,
                "format = %s, want it to end with %s", buf, tail);
}

/* Go: TestValues. Go's otherContext wrappers become a cancel context (o1)
 * and a without-cancel context (o3): values are seen through both. */
START_TEST(test_values) {
  check_values(uvctx_background(), "c0", NULL, NULL, NULL);

  uvctx_t *c1 = mk_value(uvctx_background(), &k1, c1k1);
  check_values(c1, "c1", c1k1, NULL, NULL);
  check_value_format(c1, 1);

  uvctx_t *c2 = mk_value(c1, &k2, c2k2);
  check_values(c2, "c2", c1k1, c2k2, NULL);
  check_value_format(c2, 2);

  uvctx_t *c3 = mk_value(c2, &k3, c3k3);
  check_values(c3, "c3", c1k1, c2k2, c3k3);

  uvctx_t *c4 = mk_value(c3, &k1, NULL); /* a NULL value shadows c1's */
  check_values(c4, "c4", NULL, c2k2, c3k3);
  check_value_format(c4, 4);

  uvctx_t *v1 = mk_value(uvctx_background(), &k1, c1k1);
  uvctx_t *o1 = mk_cancel(&loop, v1);
  check_values(o1, "o1", c1k1, NULL, NULL);

  uvctx_t *o2 = mk_value(o1, &k2, o2k2);
  check_values(o2, "o2", c1k1, o2k2, NULL);

  uvctx_t *o3 = mk_without(c4);
  check_values(o3, "o3", NULL, c2k2, c3k3);

  uvctx_t *o4 = mk_value(o3, &k3, NULL);
  check_values(o4, "o4", NULL, c2k2, NULL);

  release_all(c1, c2, c3, c4, v1, o1, o2, o3, o4);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* --- Concurrency --- */

#define TREE_MAX 128
#define CANCEL_THREADS 8

typedef struct {
  uv_thread_t tid;
  uint32_t seed;
  uvctx_t **ctxs;
  int n;
  atomic_int *wins; /* per context: cancels that returned 0 */
  atomic_int *bad;  /* cancels that returned neither 0 nor UV_EALREADY */
} tree_canceller_t;

static void tree_canceller_main(void *arg) {
  tree_canceller_t *t = arg;
  int order[TREE_MAX];
  for (int i = 0; i < t->n; i++)
    order[i] = i;
  for (int i = t->n - 1; i > 0; i--) { /* Fisher-Yates */
    int j = (int)(xorshift32(&t->seed) % (uint32_t)(i + 1));
    int tmp = order[i];
    order[i] = order[j];
    order[j] = tmp;
  }
  for (int i = 0; i < t->n; i++) {
    int rc = uvctx_cancel(t->ctxs[order[i]]);
    if (rc == 0)
      atomic_fetch_add(&t->wins[order[i]], 1);
    else if (rc != UV_EALREADY)
      atomic_fetch_add(t->bad, 1);
  }
}

/* Go: TestSimultaneousCancels: a tree of 100+ contexts, every one cancelled
 * from several threads at once in random orders. */
START_TEST(test_simultaneous_cancels) {
  uvctx_t *ctxs[TREE_MAX];
  rec_t recs[TREE_MAX];
  atomic_int wins[TREE_MAX];
  atomic_int bad;
  tree_canceller_t threads[CANCEL_THREADS];
  journal_t j = {0};
  int n = 0;

  ctxs[n++] = mk_cancel(&loop, uvctx_background());
  for (int head = 0; head < n && n < 100; head++)
    for (int i = 0; i < 4; i++)
      ctxs[n++] = mk_cancel(&loop, ctxs[head]);
  ck_assert_int_ge(n, 100);
  for (int i = 0; i < n; i++) {
    rec_watch(&recs[i], &j, ctxs[i]);
    atomic_init(&wins[i], 0);
  }
  atomic_init(&bad, 0);

  uint32_t seed = (uint32_t)uv_hrtime() | 1;
  for (int t = 0; t < CANCEL_THREADS; t++) {
    threads[t] = (tree_canceller_t){.seed = seed + 0x9e3779b9u * (uint32_t)t,
                                    .ctxs = ctxs,
                                    .n = n,
                                    .wins = wins,
                                    .bad = &bad};
    ck_assert_int_eq(
        uv_thread_create(&threads[t].tid, tree_canceller_main, &threads[t]), 0);
  }

  int reached = poll_count(&loop, &j.ran, n);
  for (int t = 0; t < CANCEL_THREADS; t++)
    ck_assert_int_eq(uv_thread_join(&threads[t].tid), 0);
  ck_assert_msg(reached, "seed %u: %d of %d callbacks after %d ms", seed,
                j.ran, n, EVENTUALLY_MS);

  ck_assert_int_eq(atomic_load(&bad), 0);
  ck_assert_int_eq(atomic_load(&wins[0]), 1); /* nothing else cancels root */
  for (int i = 0; i < n; i++) {
    ck_assert_msg(atomic_load(&wins[i]) <= 1, "ctx %d cancelled %d times", i,
                  atomic_load(&wins[i]));
    assert_done(ctxs[i], UV_ECANCELED, UV_ECANCELED);
    ck_assert_msg(recs[i].calls == 1, "ctx %d: %d calls", i, recs[i].calls);
    ck_assert_int_eq(recs[i].err, UV_ECANCELED);
  }

  for (int i = n - 1; i >= 0; i--)
    uvctx_release(ctxs[i]);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

typedef struct {
  uv_thread_t tid;
  uv_barrier_t start;
  tally_t parent_cancelled; /* the loop thread's cancel has returned */
  uvctx_t *parent;
  uvctx_t *child;
  int saw_parent_done;
  int rc;
} interlock_t;

/* Go's <-parent.Done(), polled so that it sees the parent done while its
 * cancel runs. */
static void interlock_main(void *arg) {
  interlock_t *il = arg;
  uv_barrier_wait(&il->start);
  il->saw_parent_done =
      poll_then_wait(uvctx_err, il->parent, &il->parent_cancelled, 1) != 0;
  il->rc = uvctx_cancel(il->child);
}

/* Go: TestInterlockedCancels: a thread cancels the child as soon as it sees
 * the parent done, while the loop thread's cancel of the parent is running. */
START_TEST(test_interlocked_cancels) {
  interlock_t il = {.rc = 1};
  rec_t r;
  il.parent = mk_cancel(&loop, uvctx_background());
  il.child = mk_cancel(&loop, il.parent);
  ck_assert_int_eq(uv_barrier_init(&il.start, 2), 0);
  tally_init(&il.parent_cancelled);
  rec_watch(&r, NULL, il.child);
  ck_assert_int_eq(uv_thread_create(&il.tid, interlock_main, &il), 0);

  uv_barrier_wait(&il.start);
  ck_assert_int_eq(uvctx_cancel(il.parent), 0);
  tally_add(&il.parent_cancelled, 1);
  ck_assert_int_eq(uvctx_err(il.child), UV_ECANCELED);
  int reached = poll_count(&loop, &r.calls, 1);
  ck_assert_int_eq(uv_thread_join(&il.tid), 0);
  uv_barrier_destroy(&il.start);
  tally_destroy(&il.parent_cancelled);
  ck_assert_msg(reached, "child's watch not called after %d ms", EVENTUALLY_MS);
  ck_assert_int_eq(il.saw_parent_done, 1);
  ck_assert_msg(il.rc == 0 || il.rc == UV_EALREADY, "child cancel: %d", il.rc);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_NOWAIT), 0);
  assert_called_once(&r, UV_ECANCELED);

  release_all(il.child, il.parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* --- Layers --- */

#define LAYERS_MAX 256

/* Go: TestLayersCancel (_i 0), TestLayersTimeout (_i 1), after their
 * testLayers: at least 30 random layers of value, cancel and timeout contexts
 * (at least one of each); values stay visible through all of them, and
 * cancelling any cancellable layer (or the earliest timeout) finishes the
 * innermost context. */
START_TEST(test_layers) {
  int timeout = _i;
  uvctx_t *layers[LAYERS_MAX];
  int kind[LAYERS_MAX]; /* 0 value, 1 cancel, 2 timeout */
  int vals[LAYERS_MAX];
  int n = 0, nvals = 0, ncancels = 0, ntimers = 0;
  char buf[8192];
  uint32_t seed = (uint32_t)uv_hrtime() | 1, state = seed;
  rec_t r;

  uvctx_t *ctx = uvctx_background();
  while (n < 30 || ntimers == 0 || ncancels == 0 || nvals == 0) {
    ck_assert_int_lt(n, LAYERS_MAX);
    kind[n] = (int)(xorshift32(&state) % 3);
    switch (kind[n]) {
    case 0:
      ctx = mk_value(ctx, &vals[n], &vals[n]);
      nvals++;
      break;
    case 1:
      ctx = mk_cancel(&loop, ctx);
      ncancels++;
      break;
    default:
      ctx = mk_timeout(&loop, ctx, timeout ? SHORT_MS : VERY_LONG_MS);
      ntimers++;
      break;
    }
    layers[n++] = ctx;
  }

  if (!timeout)
    ck_assert_msg(uvctx_err(ctx) == 0, "seed %u: done too early", seed);
  ck_assert_msg(has_prefix(format_ok(ctx, buf, sizeof(buf)), "background."),
                "seed %u: format = %s", seed, buf);
  for (int i = 0; i < n; i++)
    if (kind[i] == 0)
      ck_assert_msg(uvctx_value(ctx, &vals[i]) == &vals[i],
                    "seed %u: value of layer %d before done", seed, i);

  rec_watch(&r, NULL, ctx);
  if (timeout) {
    uint64_t deadline = deadline_of(ctx);
    ck_assert_msg(poll_count(&loop, &r.calls, 1), "seed %u: no timeout", seed);
    assert_called_once(&r, UV_ETIMEDOUT);
    ck_assert_int_eq(uvctx_err(ctx), UV_ETIMEDOUT);
    ck_assert_uint_ge(r.now, deadline);
  } else {
    int pick = (int)(xorshift32(&state) % (uint32_t)ncancels), target = -1;
    for (int i = 0; i < n && target < 0; i++)
      if (kind[i] != 0 && pick-- == 0)
        target = i;
    ck_assert_int_eq(uvctx_cancel(layers[target]), 0);
    for (int i = 0; i < n; i++) /* above target: untouched; below: done */
      ck_assert_msg(uvctx_err(layers[i]) == (i < target ? 0 : UV_ECANCELED),
                    "seed %u: layer %d of %d (cancelled %d): err %d", seed, i,
                    n, target, uvctx_err(layers[i]));
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_called_once(&r, UV_ECANCELED);
  }
  for (int i = 0; i < n; i++)
    if (kind[i] == 0)
      ck_assert_msg(uvctx_value(ctx, &vals[i]) == &vals[i],
                    "seed %u: value of layer %d after done", seed, i);

  for (int i = n - 1; i >= 0; i--)
    uvctx_release(layers[i]);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* --- Born done, and racing the parent's cancel --- */

/* Go: TestWithCancelCanceledParent. */
START_TEST(test_with_cancel_canceled_parent) {
  rec_t r;
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(uvctx_cancel_cause(parent, PARENT_CAUSE), 0);

  uvctx_t *c = mk_cancel(&loop, parent);
  assert_done(c, UV_ECANCELED, PARENT_CAUSE); /* on construction */
  rec_watch(&r, NULL, c);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_called_once(&r, UV_ECANCELED);

  release_all(c, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Go: TestWithCancelSimultaneouslyCanceledParent: another thread cancels the
 * parent (with a cause) while the loop thread derives a child from it. */
START_TEST(test_with_cancel_simultaneously_canceled_parent) {
  canceller_t th;
  canceller_start(&th);
  for (int i = 0; i < 100; i++) {
    rec_t r;
    uvctx_t *parent = mk_cancel(&loop, uvctx_background());
    canceller_race(&th, parent, PARENT_CAUSE);

    uvctx_t *c = mk_cancel(&loop, parent);
    rec_watch(&r, NULL, c);
    round_end(&th, &r, i);
    ck_assert_msg(uvctx_err(c) == UV_ECANCELED, "round %d: err %d", i,
                  uvctx_err(c));
    ck_assert_msg(uvctx_cause(c) == PARENT_CAUSE, "round %d: cause %d", i,
                  uvctx_cause(c));
    release_all(c, parent);
  }
  canceller_stop(&th);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* --- Invalid arguments (Go panics) --- */

/* The call fails with UV_EINVAL and leaves *out alone. */
#define ASSERT_REFUSED(call)                                                   \
  do {                                                                         \
    ck_assert_int_eq((call), UV_EINVAL);                                       \
    ck_assert_ptr_eq(out, SENTINEL);                                           \
  } while (0)

/* Go: TestWithValueChecksKey: a NULL key is refused (Go's other case, a key
 * of an incomparable type, cannot happen: addresses always compare). And
 * TestInvalidDerivedFail: no context can be derived from a NULL parent. */
START_TEST(test_invalid_derived_fail) {
  static char bar[] = "bar";
  uvctx_t *out = SENTINEL;
  ASSERT_REFUSED(uvctx_with_value(uvctx_background(), NULL, bar, &out));
  ASSERT_REFUSED(uvctx_with_cancel(&loop, NULL, &out));
  ASSERT_REFUSED(
      uvctx_with_deadline(&loop, NULL, uvctx_now() + SHORT_MS, &out));
  ASSERT_REFUSED(uvctx_with_timeout(&loop, NULL, SHORT_MS, &out));
  ASSERT_REFUSED(uvctx_with_value(NULL, &key, bar, &out));
  ASSERT_REFUSED(uvctx_without_cancel(NULL, &out));
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* --- Causes --- */

/* A node of a TestCause row: what it is, and for a timeout its duration and
 * cause. The parent of a row defaults to Background. */
enum { BACKGROUND, TODO, CANCEL, TIMEOUT, WITHOUT };
typedef struct {
  int kind;
  uint64_t ms;
  int cause;
} node_t;
#define N_BG {BACKGROUND, 0, 0}
#define N_TODO {TODO, 0, 0}
#define N_CANCEL {CANCEL, 0, 0}
#define N_TIMEOUT(ms, cause) {TIMEOUT, ms, cause}
#define N_WITHOUT {WITHOUT, 0, 0}

/* One cancel of a row: of the parent or the child, with a cause (PLAIN: with
 * uvctx_cancel(), Go's cancel() of WithCancel), and what it must return. */
enum { END, P, C };
#define PLAIN 1 /* never a valid cause: causes are <= 0 */
typedef struct {
  int who;
  int cause;
  int rc;
} op_t;

static const struct {
  const char *name;
  node_t parent, child;
  op_t ops[2];
  int err, cause;
} cause_rows[] = {
    {"Background", N_BG, N_BG, {{END, 0, 0}}, 0, 0},
    {"TODO", N_BG, N_TODO, {{END, 0, 0}}, 0, 0},
    {"WithCancel", N_BG, N_CANCEL, {{C, PLAIN, 0}}, UV_ECANCELED, UV_ECANCELED},
    {"WithCancelCause", N_BG, N_CANCEL, {{C, PARENT_CAUSE, 0}}, UV_ECANCELED,
     PARENT_CAUSE},
    {"WithCancelCause nil", N_BG, N_CANCEL, {{C, 0, 0}}, UV_ECANCELED,
     UV_ECANCELED},
    {"parent cause before child", N_CANCEL, N_CANCEL,
     {{P, PARENT_CAUSE, 0}, {C, CHILD_CAUSE, UV_EALREADY}}, UV_ECANCELED,
     PARENT_CAUSE},
    {"parent cause after child", N_CANCEL, N_CANCEL,
     {{C, CHILD_CAUSE, 0}, {P, PARENT_CAUSE, 0}}, UV_ECANCELED, CHILD_CAUSE},
    {"parent cause before nil", N_CANCEL, N_CANCEL,
     {{P, PARENT_CAUSE, 0}, {C, PLAIN, UV_EALREADY}}, UV_ECANCELED,
     PARENT_CAUSE},
    {"parent cause after nil", N_CANCEL, N_CANCEL,
     {{C, PLAIN, 0}, {P, PARENT_CAUSE, 0}}, UV_ECANCELED, UV_ECANCELED},
    {"child cause after nil", N_CANCEL, N_CANCEL,
     {{P, PLAIN, 0}, {C, CHILD_CAUSE, UV_EALREADY}}, UV_ECANCELED,
     UV_ECANCELED},
    {"child cause before nil", N_CANCEL, N_CANCEL,
     {{C, CHILD_CAUSE, 0}, {P, PLAIN, 0}}, UV_ECANCELED, CHILD_CAUSE},
    {"WithTimeout", N_BG, N_TIMEOUT(0, 0), {{C, PLAIN, UV_EALREADY}},
     UV_ETIMEDOUT, UV_ETIMEDOUT},
    {"WithTimeout canceled", N_BG, N_TIMEOUT(FOREVER_MS, 0), {{C, PLAIN, 0}},
     UV_ECANCELED, UV_ECANCELED},
    {"WithTimeoutCause", N_BG, N_TIMEOUT(0, TOO_SLOW),
     {{C, PLAIN, UV_EALREADY}}, UV_ETIMEDOUT, TOO_SLOW},
    {"WithTimeoutCause canceled", N_BG, N_TIMEOUT(FOREVER_MS, TOO_SLOW),
     {{C, PLAIN, 0}}, UV_ECANCELED, UV_ECANCELED},
    {"WithTimeoutCause stacked", N_CANCEL, N_TIMEOUT(0, TOO_SLOW),
     {{P, FINISHED_EARLY, 0}}, UV_ETIMEDOUT, TOO_SLOW},
    {"WithTimeoutCause stacked canceled", N_CANCEL,
     N_TIMEOUT(FOREVER_MS, TOO_SLOW), {{P, FINISHED_EARLY, 0}}, UV_ECANCELED,
     FINISHED_EARLY},
    {"WithoutCancel", N_BG, N_WITHOUT, {{END, 0, 0}}, 0, 0},
    {"WithoutCancel canceled", N_CANCEL, N_WITHOUT, {{P, FINISHED_EARLY, 0}},
     0, 0},
    {"WithoutCancel timeout", N_TIMEOUT(0, TOO_SLOW), N_WITHOUT,
     {{P, PLAIN, UV_EALREADY}}, 0, 0},
};

static uvctx_t *mk_node(node_t n, uvctx_t *parent) {
  switch (n.kind) {
  case BACKGROUND: return uvctx_background();
  case TODO: return uvctx_todo();
  case CANCEL: return mk_cancel(&loop, parent);
  case TIMEOUT: return mk_timeout_cause(&loop, parent, n.ms, n.cause);
  default: return mk_without(parent);
  }
}

/* Go: TestCause, one row per case of its table. */
START_TEST(test_cause) {
  const char *name = cause_rows[_i].name;
  uvctx_t *p = mk_node(cause_rows[_i].parent, uvctx_background());
  uvctx_t *c = mk_node(cause_rows[_i].child, p);
  for (int i = 0; i < 2 && cause_rows[_i].ops[i].who != END; i++) {
    const op_t *op = &cause_rows[_i].ops[i];
    uvctx_t *ctx = op->who == P ? p : c;
    int rc = op->cause == PLAIN ? uvctx_cancel(ctx)
                                : uvctx_cancel_cause(ctx, op->cause);
    ck_assert_msg(rc == op->rc, "row \"%s\": cancel %d = %d want %d", name, i,
                  rc, op->rc);
  }
  ck_assert_msg(uvctx_err(c) == cause_rows[_i].err,
                "row \"%s\": err = %d want %d", name, uvctx_err(c),
                cause_rows[_i].err);
  ck_assert_msg(uvctx_cause(c) == cause_rows[_i].cause,
                "row \"%s\": cause = %d want %d", name, uvctx_cause(c),
                cause_rows[_i].cause);
  if (cause_rows[_i].child.kind > TODO)
    uvctx_release(c);
  if (cause_rows[_i].parent.kind > TODO)
    uvctx_release(p);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Go: TestWithoutCancel, plus the same checks over a parent that has a
 * deadline and is cancelled (Go's test uses Background only). */
START_TEST(test_without_cancel) {
  static char value[] = "value";
  uint64_t d = 12345;
  rec_t r;

  uvctx_t *v = mk_value(uvctx_background(), &key, value);
  uvctx_t *w = mk_without(v);
  ck_assert_int_eq(uvctx_deadline(w, &d), 0);
  ck_assert_uint_eq(d, 12345);
  ck_assert_ptr_null(uvctx_done_async(w));
  ck_assert_int_eq(uvctx_err(w), 0);
  ck_assert_ptr_eq(uvctx_value(w, &key), value);

  uvctx_t *t = mk_timeout(&loop, v, VERY_LONG_MS);
  uvctx_t *w2 = mk_without(t);
  ck_assert_int_eq(uvctx_deadline(w2, &d), 0);
  ck_assert_ptr_null(uvctx_done_async(w2));
  ck_assert_ptr_null(uvctx_loop(w2));
  ck_assert_ptr_eq(uvctx_value(w2, &key), value);
  rec_watch(&r, NULL, w2);
  ck_assert_int_eq(uvctx_cancel(t), 0);
  run_for(&loop, SHORT_MS);
  assert_not_done(w2);
  ck_assert_int_eq(r.calls, 0);
  ck_assert_int_eq(uvctx_unwatch(&r.w), 0);

  release_all(w2, t, w, v);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* --- AfterFunc (watches) --- */

/* Go: TestAfterFuncCalledImmediately: watching a context that is already
 * done runs the callback, but as a later loop callback, never inside
 * uvctx_watch(); and that due callback keeps the loop alive until it ran. */
START_TEST(test_after_func_called_immediately) {
  rec_t r;
  uvctx_t *ctx = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(uvctx_cancel(ctx), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);

  rec_watch(&r, NULL, ctx); /* asserts calls == 0 on return */
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_called_once(&r, UV_ECANCELED);
  ck_assert(rec_ran_here(&r));

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* A rec's action: it stops its own watch from inside the callback. */
static void unwatch_self(rec_t *r) { r->action_rc = uvctx_unwatch(&r->w); }

/* Go: TestAfterFuncCalledAsynchronously: cancelling does not wait for the
 * callbacks. A thread cancels and is joined before the loop has run at all,
 * so its uvctx_cancel() returned without any callback; the callback then runs
 * on the loop thread, where the watch already counts as started. */
START_TEST(test_after_func_called_asynchronously) {
  canceller_t th;
  rec_t r;
  uvctx_t *ctx = mk_cancel(&loop, uvctx_background());
  rec_watch(&r, NULL, ctx);
  r.action = unwatch_self;
  canceller_start(&th);
  canceller_race(&th, ctx, 0);
  ck_assert_int_eq(canceller_rc(&th), 0);
  canceller_stop(&th);
  ck_assert_int_eq(uvctx_err(ctx), UV_ECANCELED);
  ck_assert_int_eq(r.calls, 0);

  ck_assert_msg(poll_count(&loop, &r.calls, 1), "not called after %d ms",
                EVENTUALLY_MS);
  assert_called_once(&r, UV_ECANCELED);
  ck_assert(rec_ran_here(&r));
  ck_assert_int_eq(r.action_rc, UV_EALREADY); /* "is running" */

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Go: TestAfterFuncNotCalledAfterStop (the watch "before"). And Go's stop()
 * answers the same way however often it is called: once true (if first),
 * then false. Checked before cancel, after the callback ran, and (a uvctx
 * difference: Go's cancel claims its AfterFuncs at once) between the cancel
 * and the loop delivering the callback, when stopping still works. */
START_TEST(test_after_func_not_called_after_stop) {
  rec_t before, after, between;
  uvctx_t *ctx = mk_cancel(&loop, uvctx_background());
  rec_watch(&before, NULL, ctx);
  rec_watch(&after, NULL, ctx);
  rec_watch(&between, NULL, ctx);
  ck_assert_int_eq(uvctx_unwatch(&before.w), 0);
  ck_assert_int_eq(uvctx_unwatch(&before.w), UV_EALREADY);
  ck_assert_int_eq(uvctx_unwatch(&before.w), UV_EALREADY);

  ck_assert_int_eq(uvctx_cancel(ctx), 0);
  ck_assert_int_eq(uvctx_unwatch(&between.w), 0);
  ck_assert_int_eq(uvctx_unwatch(&between.w), UV_EALREADY);
  run_for(&loop, SHORT_MS);
  ck_assert_int_eq(before.calls, 0);
  ck_assert_int_eq(between.calls, 0);
  ck_assert_int_eq(after.calls, 1);
  ck_assert_int_eq(uvctx_unwatch(&after.w), UV_EALREADY);
  ck_assert_int_eq(uvctx_unwatch(&after.w), UV_EALREADY);
  ck_assert_int_eq(uvctx_unwatch(&between.w), UV_EALREADY);

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Races of another thread's cancel against the loop thread polling the
 * context; once the cancel has returned, what is polled must be seen.
 * Go: TestCauseRace: the first non-zero cause seen is the cancel's cause,
 * never a transient UV_ECANCELED; and (uvctx's converse: cause is 0 only
 * while not done) once err is seen, so is the cause.
 * Go: TestContextErrDoneRace: Go promises Done is closed once Err is
 * non-nil. Here: once err is seen (while the cancel may still be running),
 * the watch callbacks are on their way; the loop delivers them, none lost. */
static const struct {
  const char *name;
  int (*poll)(const uvctx_t *);
  int cause, seen, then_cause;
} poll_race_rows[] = {
    {"TestCauseRace: cause", uvctx_cause, PARENT_CAUSE, PARENT_CAUSE,
     PARENT_CAUSE},
    {"TestCauseRace: err, then cause", uvctx_err, PARENT_CAUSE, UV_ECANCELED,
     PARENT_CAUSE},
    {"TestContextErrDoneRace", uvctx_err, 0, UV_ECANCELED, UV_ECANCELED},
};

START_TEST(test_poll_race) {
  canceller_t th;
  canceller_start(&th);
  for (int i = 0; i < 50; i++) {
    rec_t r;
    uvctx_t *ctx = mk_cancel(&loop, uvctx_background());
    rec_watch(&r, NULL, ctx);
    canceller_race(&th, ctx, poll_race_rows[_i].cause);
    int seen = poll_then_wait(poll_race_rows[_i].poll, ctx, &th.returned,
                              th.rounds);
    ck_assert_msg(seen == poll_race_rows[_i].seen, "%s, round %d: saw %d",
                  poll_race_rows[_i].name, i, seen);
    ck_assert_int_eq(uvctx_cause(ctx), poll_race_rows[_i].then_cause);
    ck_assert_int_eq(r.calls, 0); /* no loop ran yet */

    round_end(&th, &r, i); /* the watch is not lost */
    ck_assert_int_eq(r.cause, poll_race_rows[_i].then_cause);
    uvctx_release(ctx);
  }
  canceller_stop(&th);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

Suite *go_port_suite(void) {
  return SUITE(
      "go_port",
      {"go_port", TIMEOUT_THREADS_S, loop_setup, NULL,
       .tests = TESTS(test_with_cancel, test_parent_finishes_child,
                      test_child_finishes_first, test_cancel_removes,
                      test_canceled_timeout, test_values,
                      test_simultaneous_cancels, test_interlocked_cancels,
                      test_with_cancel_canceled_parent,
                      test_with_cancel_simultaneously_canceled_parent,
                      test_invalid_derived_fail,
                      test_without_cancel, test_after_func_called_immediately,
                      test_after_func_not_called_after_stop,
                      test_after_func_called_asynchronously),
       .loops = LOOPS({test_background_todo, 0, NROWS(roots)},
                      {test_deadline_timeout, 0, NROWS(deadline_rows)},
                      {test_layers, 0, 2},
                      {test_cause, 0, NROWS(cause_rows)},
                      {test_poll_race, 0, NROWS(poll_race_rows)})});
}
