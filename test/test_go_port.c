/* Go's own context tests (src/context/x_test.go, context_test.go), ported to
 * uvctx: one Check test per Go test, named after it.
 *
 * The mapping: a Go Done channel is a watch whose callback records that it ran;
 * "<-ctx.Done() blocks" is "the callback has not run although the loop ran";
 * goroutines are uv_thread_create threads, which call only the functions the
 * header allows off the loop thread (cancel, err, cause, ...). Go's
 * otherContext (a wrapper of a type the package does not know) has no C
 * counterpart; where a Go test wraps a context in one, these tests put a node
 * of another kind (a value or without-cancel context) in between instead.
 * Go's panics for invalid arguments are UV_EINVAL returns.
 *
 * Times are short (5 ms); waits are bounded by WAIT_LIMIT_MS and never assert
 * how late something was, only that a deadline never fired early.
 *
 * The races start the goroutine and the loop thread together on a barrier;
 * a side that polls what the other does polls for at most RACE_MS, then
 * blocks until the other has acted (a tally), so that on a loaded machine
 * neither spins through the time slices the other needs. */
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "helpers.h"
#include "test.h"

#define SHORT_MS 5                                    /* Go's shortDuration */
#define VERY_LONG_MS ((uint64_t)1000 * 3600 * 1000)   /* Go's veryLongDuration */
#define WAIT_LIMIT_MS 5000   /* give up waiting for a callback after this */
#define RACE_MS 2            /* poll the other thread's effect this long */

/* Distinct negative codes used as causes (never UV_ECANCELED/UV_ETIMEDOUT). */
#define PARENT_CAUSE UV_EPIPE
#define CHILD_CAUSE UV_ECONNRESET
#define TOO_SLOW UV_EBUSY
#define FINISHED_EARLY UV_EIO

/* ---------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------- */

/* The order in which the recs (helpers.h) of a test ran, across all of its
 * watches. */
static journal_t journal;

/* A rec's action: it stops its own watch from inside the callback, recording
 * the result in action_rc. */
static void unwatch_self(rec_t *r) { r->action_rc = uvctx_unwatch(&r->w); }

/* Runs the loop until *count >= want or WAIT_LIMIT_MS have passed (see
 * poll_until). Returns whether it got there. This is how a test waits for a
 * deadline or for a cancel made on another thread: contexts alone never keep
 * the loop alive. */
typedef struct {
  const int *count;
  int want;
} count_t;

static int count_reached(void *arg) {
  count_t *c = arg;
  return *c->count >= c->want;
}

static int wait_until(uv_loop_t *loop, const int *count, int want) {
  count_t c = {count, want};
  return poll_until(loop, count_reached, &c, uvctx_now() + WAIT_LIMIT_MS);
}

/* uvctx_format() into buf, checking the snprintf-like return value. */
static const char *format(const uvctx_t *ctx, char *buf, size_t len) {
  int n = uvctx_format(ctx, buf, len);
  ck_assert_int_ge(n, 0);
  ck_assert_uint_lt((size_t)n, len);
  ck_assert_uint_eq(strlen(buf), (size_t)n);
  return buf;
}

static int starts_with(const char *s, const char *prefix) {
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int count_of(const char *s, const char *needle) {
  int n = 0;
  for (const char *p = strstr(s, needle); p != NULL; p = strstr(p + 1, needle))
    n++;
  return n;
}

/* A thread that cancels contexts (Go's "go cancel()"). It lives for all the
 * rounds of a test and cancels each round's context once it and the loop
 * thread meet on a barrier, so that what the loop thread does next races the
 * cancel. (A thread started per round cost tens of milliseconds a round on a
 * loaded machine, waiting for its first time slice.) */
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

/* Polls pred(ctx) until it is non-zero, for at most RACE_MS (a race the loop
 * thread runs against the canceller); if it is still zero, waits until the
 * cancel has returned, then asks once more. Returns pred's last answer. */
static int poll_then_wait(canceller_t *c, int (*pred)(const uvctx_t *)) {
  uint64_t give_up = uv_hrtime() + (uint64_t)RACE_MS * 1000000;
  int v;
  for (int n = 1; (v = pred(c->ctx)) == 0; n++)
    if (n % 256 == 0 && uv_hrtime() >= give_up) {
      canceller_rc(c);
      return pred(c->ctx);
    }
  return v;
}

/* Small deterministic PRNG (xorshift32) for shuffles and random layers. */
static uint32_t rnd(uint32_t *state) {
  uint32_t x = *state;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return *state = x;
}

static void init_loop(uv_loop_t *loop) {
  ck_assert_int_eq(uv_loop_init(loop), 0);
  journal.ran = 0;
}

/* ---------------------------------------------------------------------------
 * Roots
 * ------------------------------------------------------------------------- */

/* Shared body of TestBackground and TestTODO: a root is never done (a watch on
 * it never runs and stays stoppable) and formats as its name. */
static void check_root(uvctx_t *root, const char *name) {
  uv_loop_t loop;
  char buf[64];
  rec_t r;
  init_loop(&loop);

  ck_assert_ptr_nonnull(root);
  ck_assert_int_eq(uvctx_err(root), 0);
  ck_assert_int_eq(uvctx_cause(root), 0);
  ck_assert_ptr_null(uvctx_done_async(root));
  ck_assert_ptr_null(uvctx_loop(root));
  ck_assert_str_eq(format(root, buf, sizeof(buf)), name);

  rec_watch(&r, &journal, root);
  run_for(&loop, SHORT_MS);
  ck_assert_int_eq(r.calls, 0);
  ck_assert_int_eq(uvctx_unwatch(&r.w), 0);

  ASSERT_LOOP_CLOSES(&loop);
}

/* Ports TestBackground. */
START_TEST(test_background) { check_root(uvctx_background(), "background"); }
END_TEST

/* Ports TestTODO. */
START_TEST(test_todo) {
  ck_assert_ptr_ne(uvctx_todo(), uvctx_background());
  check_root(uvctx_todo(), "todo");
}
END_TEST

/* ---------------------------------------------------------------------------
 * Cancellation
 * ------------------------------------------------------------------------- */

/* Ports TestWithCancel. */
START_TEST(test_with_cancel) {
  static const char key;
  uv_loop_t loop;
  char buf[128];
  rec_t r[3];
  init_loop(&loop);

  uvctx_t *c1 = mk_cancel(&loop, uvctx_background());
  ck_assert_str_eq(format(c1, buf, sizeof(buf)), "background.with_cancel");
  uvctx_t *o = mk_value(c1, &key, NULL); /* stands in for otherContext{c1} */
  uvctx_t *c2 = mk_cancel(&loop, o);
  uvctx_t *ctxs[3] = {c1, o, c2};

  /* Each has a done signal (a value context shares its parent's). */
  ck_assert_ptr_nonnull(uvctx_done_async(c1));
  ck_assert_ptr_eq(uvctx_done_async(o), uvctx_done_async(c1));
  ck_assert_ptr_nonnull(uvctx_done_async(c2));
  ck_assert_ptr_ne(uvctx_done_async(c2), uvctx_done_async(c1));

  for (int i = 0; i < 3; i++) {
    ck_assert_int_eq(uvctx_err(ctxs[i]), 0);
    rec_watch(&r[i], &journal, ctxs[i]);
  }
  run_for(&loop, SHORT_MS);
  for (int i = 0; i < 3; i++)
    ck_assert_msg(r[i].calls == 0, "ctx %d done before cancel", i);

  ck_assert_int_eq(uvctx_cancel(c1), 0);
  /* Propagates synchronously on the loop thread; callbacks come later. */
  for (int i = 0; i < 3; i++) {
    ck_assert_msg(uvctx_err(ctxs[i]) == UV_ECANCELED, "ctx %d err = %d", i,
                  uvctx_err(ctxs[i]));
    ck_assert_int_eq(r[i].calls, 0);
  }
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  for (int i = 0; i < 3; i++) {
    ck_assert_msg(r[i].calls == 1, "ctx %d: %d calls", i, r[i].calls);
    ck_assert_int_eq(r[i].err, UV_ECANCELED);
  }

  for (int i = 0; i < 3; i++)
    uvctx_release(ctxs[i]);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Ports TestParentFinishesChild. */
START_TEST(test_parent_finishes_child) {
  static const char key;
  static char value[] = "value";
  uv_loop_t loop;
  rec_t rp, rc, rv, rt, rpre;
  init_loop(&loop);

  /* parent -> cancel_child; parent -> value_child -> timer_child */
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *cancel_child = mk_cancel(&loop, parent);
  uvctx_t *value_child = mk_value(parent, &key, value);
  uvctx_t *timer_child = mk_timeout(&loop, value_child, VERY_LONG_MS);

  rec_watch(&rp, &journal, parent);
  rec_watch(&rc, &journal, cancel_child);
  rec_watch(&rv, &journal, value_child);
  rec_watch(&rt, &journal, timer_child);
  run_for(&loop, SHORT_MS);
  ck_assert_int_eq(rp.calls + rc.calls + rv.calls + rt.calls, 0);

  ck_assert_int_eq(uvctx_cancel(parent), 0);
  ck_assert_int_eq(uvctx_err(parent), UV_ECANCELED);
  ck_assert_int_eq(uvctx_err(cancel_child), UV_ECANCELED);
  ck_assert_int_eq(uvctx_err(value_child), UV_ECANCELED);
  ck_assert_int_eq(uvctx_err(timer_child), UV_ECANCELED);
  ck_assert_int_eq(rp.calls + rc.calls + rv.calls + rt.calls, 0);

  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  rec_t *all[4] = {&rp, &rc, &rv, &rt};
  for (int i = 0; i < 4; i++) {
    ck_assert_msg(all[i]->calls == 1, "watch %d: %d calls", i, all[i]->calls);
    ck_assert_int_eq(all[i]->err, UV_ECANCELED);
  }
  /* An ancestor's callbacks before its descendants'. */
  ck_assert_int_lt(rp.seq, rc.seq);
  ck_assert_int_lt(rp.seq, rv.seq);
  ck_assert_int_lt(rv.seq, rt.seq);

  /* A child of a cancelled parent is born done. */
  uvctx_t *precanceled = mk_value(parent, &key, value);
  ck_assert_int_eq(uvctx_err(precanceled), UV_ECANCELED);
  rec_watch(&rpre, &journal, precanceled);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(rpre.calls, 1);
  ck_assert_int_eq(rpre.err, UV_ECANCELED);

  uvctx_release(precanceled);
  uvctx_release(timer_child);
  uvctx_release(value_child);
  uvctx_release(cancel_child);
  uvctx_release(parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Ports TestChildFinishesFirst. */
START_TEST(test_child_finishes_first) {
  uv_loop_t loop;
  init_loop(&loop);

  uvctx_t *cancelable = mk_cancel(&loop, uvctx_background());
  uvctx_t *parents[2] = {uvctx_background(), cancelable};
  for (int i = 0; i < 2; i++) {
    rec_t rp, rc;
    uvctx_t *parent = parents[i];
    uvctx_t *child = mk_cancel(&loop, parent);

    rec_watch(&rp, &journal, parent);
    rec_watch(&rc, &journal, child);
    run_for(&loop, SHORT_MS);
    ck_assert_int_eq(rp.calls + rc.calls, 0);

    ck_assert_int_eq(uvctx_cancel(child), 0);
    ck_assert_int_eq(uvctx_err(child), UV_ECANCELED);
    ck_assert_msg(uvctx_err(parent) == 0, "parent %d done by its child", i);

    run_for(&loop, SHORT_MS);
    ck_assert_int_eq(rc.calls, 1);
    ck_assert_int_eq(rc.err, UV_ECANCELED);
    ck_assert_msg(rp.calls == 0, "parent %d's watch ran", i);
    ck_assert_int_eq(uvctx_err(parent), 0);
    ck_assert_int_eq(uvctx_unwatch(&rp.w), 0);

    uvctx_release(child);
  }

  uvctx_release(cancelable);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Ports TestCancelRemoves. Go counts the parent's children; here the effect
 * of the removal is checked instead: a cancelled and released child is out of
 * its parent's tree, so cancelling the parent later neither touches it (the
 * valgrind run would see a use after free) nor re-runs its callbacks. */
START_TEST(test_cancel_removes) {
  uv_loop_t loop;
  init_loop(&loop);

  for (int with_timeout = 0; with_timeout < 2; with_timeout++) {
    rec_t rp, rc;
    uvctx_t *ctx = mk_cancel(&loop, uvctx_background());
    uvctx_t *child = with_timeout ? mk_timeout(&loop, ctx, 60 * 60 * 1000)
                                  : mk_cancel(&loop, ctx);
    rec_watch(&rp, &journal, ctx);
    rec_watch(&rc, &journal, child);

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

/* ---------------------------------------------------------------------------
 * Deadlines
 * ------------------------------------------------------------------------- */

/* Go's testDeadline: waits for ctx to be done, then checks it timed out, and
 * (uvctx's promise) that its watch did not run before its deadline. */
static void wait_timed_out(uv_loop_t *loop, uvctx_t *ctx, const char *name) {
  rec_t r;
  uint64_t deadline = 0;
  ck_assert_msg(uvctx_deadline(ctx, &deadline) == 1, "%s: no deadline", name);
  rec_watch(&r, &journal, ctx);
  ck_assert_msg(wait_until(loop, &r.calls, 1), "%s: not done after %d ms", name,
                WAIT_LIMIT_MS);
  ck_assert_int_eq(r.calls, 1);
  ck_assert_msg(r.err == UV_ETIMEDOUT, "%s: err = %d", name, r.err);
  ck_assert_int_eq(uvctx_err(ctx), UV_ETIMEDOUT);
  ck_assert_msg(r.now >= deadline, "%s: done at %llu, before deadline %llu",
                name, (unsigned long long)r.now, (unsigned long long)deadline);
}

/* Ports TestDeadline. */
START_TEST(test_deadline) {
  static const char key;
  uv_loop_t loop;
  char buf[128];
  uint64_t d = 0;
  init_loop(&loop);

  uvctx_t *c = mk_deadline(&loop, uvctx_background(), uvctx_now() + SHORT_MS);
  ck_assert_msg(starts_with(format(c, buf, sizeof(buf)),
                            "background.with_deadline("),
                "format = %s", buf);
  wait_timed_out(&loop, c, "with_deadline");
  uvctx_release(c);

  c = mk_deadline(&loop, uvctx_background(), uvctx_now() + SHORT_MS);
  uvctx_t *o = mk_value(c, &key, NULL);
  wait_timed_out(&loop, o, "with_deadline+value");
  uvctx_release(o);
  uvctx_release(c);

  uint64_t first = uvctx_now() + SHORT_MS;
  c = mk_deadline(&loop, uvctx_background(), first);
  o = mk_value(c, &key, NULL);
  uvctx_t *c2 = mk_deadline(&loop, o, uvctx_now() + VERY_LONG_MS);
  ck_assert_int_eq(uvctx_deadline(c2, &d), 1);
  ck_assert_uint_eq(d, first); /* the earliest of its ancestry */
  wait_timed_out(&loop, c2, "with_deadline+value+with_deadline");
  uvctx_release(c2);
  uvctx_release(o);
  uvctx_release(c);

  c = mk_deadline(&loop, uvctx_background(), uvctx_now() - 1);
  ck_assert_int_eq(uvctx_err(c), UV_ETIMEDOUT); /* born done */
  wait_timed_out(&loop, c, "with_deadline+inthepast");
  uvctx_release(c);

  c = mk_deadline(&loop, uvctx_background(), uvctx_now());
  wait_timed_out(&loop, c, "with_deadline+now");
  uvctx_release(c);

  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Ports TestTimeout. */
START_TEST(test_timeout) {
  static const char key;
  uv_loop_t loop;
  char buf[128];
  init_loop(&loop);

  uvctx_t *c = mk_timeout(&loop, uvctx_background(), SHORT_MS);
  ck_assert_msg(starts_with(format(c, buf, sizeof(buf)),
                            "background.with_deadline("),
                "format = %s", buf);
  wait_timed_out(&loop, c, "with_timeout");
  uvctx_release(c);

  c = mk_timeout(&loop, uvctx_background(), SHORT_MS);
  uvctx_t *o = mk_value(c, &key, NULL);
  wait_timed_out(&loop, o, "with_timeout+value");
  uvctx_release(o);
  uvctx_release(c);

  c = mk_timeout(&loop, uvctx_background(), SHORT_MS);
  o = mk_value(c, &key, NULL);
  uvctx_t *c2 = mk_timeout(&loop, o, VERY_LONG_MS);
  wait_timed_out(&loop, c2, "with_timeout+value+with_timeout");
  uvctx_release(c2);
  uvctx_release(o);
  uvctx_release(c);

  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Ports TestCanceledTimeout. */
START_TEST(test_canceled_timeout) {
  static const char key;
  uv_loop_t loop;
  rec_t r;
  init_loop(&loop);

  uvctx_t *c = mk_timeout(&loop, uvctx_background(), 1000);
  uvctx_t *o = mk_value(c, &key, NULL);
  uvctx_t *c2 = mk_timeout(&loop, o, VERY_LONG_MS);
  rec_watch(&r, &journal, c2);

  ck_assert_int_eq(uvctx_cancel(c2), 0);
  ck_assert_int_eq(uvctx_err(c2), UV_ECANCELED); /* synchronously */
  ck_assert_int_eq(uvctx_err(c), 0);
  ck_assert_int_eq(r.calls, 0);
  /* The parent's pending 1 s deadline does not keep the loop running. */
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(r.calls, 1);
  ck_assert_int_eq(r.err, UV_ECANCELED);
  ck_assert_int_eq(uvctx_err(c), 0);

  uvctx_release(c2);
  uvctx_release(o);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Values
 * ------------------------------------------------------------------------- */

static const char k1, k2, k3;
static char c1k1[] = "c1k1", c2k2[] = "c2k2", c3k3[] = "c3k3", o2k2[] = "o2k2";

static void check_values(const uvctx_t *c, const char *name, const char *v1,
                         const char *v2, const char *v3) {
  ck_assert_msg(uvctx_value(c, &k1) == v1, "%s: value(k1) = %p want %p", name,
                uvctx_value(c, &k1), (const void *)v1);
  ck_assert_msg(uvctx_value(c, &k2) == v2, "%s: value(k2) = %p want %p", name,
                uvctx_value(c, &k2), (const void *)v2);
  ck_assert_msg(uvctx_value(c, &k3) == v3, "%s: value(k3) = %p want %p", name,
                uvctx_value(c, &k3), (const void *)v3);
}

/* A description shaped background.with_value(...)... with n value layers. */
static void check_value_format(const uvctx_t *c, int n) {
  char buf[512];
  format(c, buf, sizeof(buf));
  ck_assert_msg(starts_with(buf, "background.with_value("), "format = %s", buf);
  ck_assert_msg(count_of(buf, "with_value(") == n, "format = %s, want %d",
                buf, n);
  ck_assert_msg(buf[strlen(buf) - 1] == ')', "format = %s", buf);
}

/* Ports TestValues. Go's otherContext wrappers become a cancel context (o1)
 * and a without-cancel context (o3): values are seen through both. */
START_TEST(test_values) {
  uv_loop_t loop;
  init_loop(&loop);

  uvctx_t *c0 = uvctx_background();
  check_values(c0, "c0", NULL, NULL, NULL);

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

  uvctx_t *all[] = {c1, c2, c3, c4, v1, o1, o2, o3, o4};
  for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
    uvctx_release(all[i]);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Concurrency
 * ------------------------------------------------------------------------- */

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
    int j = (int)(rnd(&t->seed) % (uint32_t)(i + 1));
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

/* Ports TestSimultaneousCancels: a tree of 100+ contexts, every one cancelled
 * from several threads at once in random orders. */
START_TEST(test_simultaneous_cancels) {
  uv_loop_t loop;
  uvctx_t *ctxs[TREE_MAX];
  rec_t recs[TREE_MAX];
  atomic_int wins[TREE_MAX];
  atomic_int bad;
  tree_canceller_t threads[CANCEL_THREADS];
  int n = 0;
  init_loop(&loop);

  ctxs[n++] = mk_cancel(&loop, uvctx_background());
  for (int head = 0; head < n && n < 100; head++)
    for (int i = 0; i < 4; i++)
      ctxs[n++] = mk_cancel(&loop, ctxs[head]);
  ck_assert_int_ge(n, 100);
  for (int i = 0; i < n; i++) {
    rec_watch(&recs[i], &journal, ctxs[i]);
    atomic_init(&wins[i], 0);
  }
  atomic_init(&bad, 0);

  uint32_t seed = (uint32_t)uv_hrtime() | 1;
  for (int t = 0; t < CANCEL_THREADS; t++) {
    threads[t].seed = seed + 0x9e3779b9u * (uint32_t)t;
    threads[t].ctxs = ctxs;
    threads[t].n = n;
    threads[t].wins = wins;
    threads[t].bad = &bad;
    ck_assert_int_eq(
        uv_thread_create(&threads[t].tid, tree_canceller_main, &threads[t]), 0);
  }

  int reached = wait_until(&loop, &journal.ran, n);
  for (int t = 0; t < CANCEL_THREADS; t++)
    ck_assert_int_eq(uv_thread_join(&threads[t].tid), 0);
  ck_assert_msg(reached, "seed %u: %d of %d callbacks after %d ms", seed,
                journal.ran,
                n, WAIT_LIMIT_MS);

  ck_assert_int_eq(atomic_load(&bad), 0);
  ck_assert_int_eq(atomic_load(&wins[0]), 1); /* nothing else cancels root */
  for (int i = 0; i < n; i++) {
    ck_assert_msg(atomic_load(&wins[i]) <= 1, "ctx %d cancelled %d times", i,
                  atomic_load(&wins[i]));
    ck_assert_int_eq(uvctx_err(ctxs[i]), UV_ECANCELED);
    ck_assert_int_eq(uvctx_cause(ctxs[i]), UV_ECANCELED);
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

/* Go's <-parent.Done(): polls for at most RACE_MS, so that it sees the parent
 * done while its cancel runs, then blocks until that cancel has returned. */
static void interlock_main(void *arg) {
  interlock_t *il = arg;
  uint64_t give_up = uv_hrtime() + (uint64_t)RACE_MS * 1000000;
  uv_barrier_wait(&il->start);
  for (int n = 1; uvctx_err(il->parent) == 0; n++)
    if (n % 256 == 0 && uv_hrtime() >= give_up) {
      tally_wait(&il->parent_cancelled, 1, HANDOFF_LIMIT_MS);
      break;
    }
  il->saw_parent_done = uvctx_err(il->parent) != 0;
  il->rc = uvctx_cancel(il->child);
}

/* Ports TestInterlockedCancels: a thread cancels the child as soon as it sees
 * the parent done, while the loop thread's cancel of the parent is running. */
START_TEST(test_interlocked_cancels) {
  uv_loop_t loop;
  interlock_t il;
  rec_t r;
  init_loop(&loop);

  il.parent = mk_cancel(&loop, uvctx_background());
  il.child = mk_cancel(&loop, il.parent);
  il.rc = 1;
  il.saw_parent_done = 0;
  ck_assert_int_eq(uv_barrier_init(&il.start, 2), 0);
  tally_init(&il.parent_cancelled);
  rec_watch(&r, &journal, il.child);
  ck_assert_int_eq(uv_thread_create(&il.tid, interlock_main, &il), 0);

  uv_barrier_wait(&il.start);
  ck_assert_int_eq(uvctx_cancel(il.parent), 0);
  tally_add(&il.parent_cancelled, 1);
  ck_assert_int_eq(uvctx_err(il.child), UV_ECANCELED);
  int reached = wait_until(&loop, &r.calls, 1);
  ck_assert_int_eq(uv_thread_join(&il.tid), 0);
  uv_barrier_destroy(&il.start);
  tally_destroy(&il.parent_cancelled);
  ck_assert_msg(reached, "child's watch not called after %d ms", WAIT_LIMIT_MS);
  ck_assert_int_eq(il.saw_parent_done, 1);
  ck_assert_msg(il.rc == 0 || il.rc == UV_EALREADY, "child cancel: %d", il.rc);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_NOWAIT), 0);
  ck_assert_int_eq(r.calls, 1);
  ck_assert_int_eq(r.err, UV_ECANCELED);

  uvctx_release(il.child);
  uvctx_release(il.parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Layers
 * ------------------------------------------------------------------------- */

#define LAYERS_MAX 256

/* Go's testLayers: at least 30 random layers of value, cancel and timeout
 * contexts (at least one of each); values stay visible through all of them,
 * and cancelling any cancellable layer (or the earliest timeout) finishes the
 * innermost context. */
static void test_layers(int timeout) {
  uv_loop_t loop;
  uvctx_t *layers[LAYERS_MAX];
  int kind[LAYERS_MAX]; /* 0 value, 1 cancel, 2 timeout */
  int vals[LAYERS_MAX];
  int n = 0, nvals = 0, ncancels = 0, ntimers = 0;
  char buf[8192];
  uint32_t seed = (uint32_t)uv_hrtime() | 1, state = seed;
  rec_t r;
  init_loop(&loop);

  uvctx_t *ctx = uvctx_background();
  while (n < 30 || ntimers == 0 || ncancels == 0 || nvals == 0) {
    ck_assert_int_lt(n, LAYERS_MAX);
    kind[n] = (int)(rnd(&state) % 3);
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
  ck_assert_msg(starts_with(format(ctx, buf, sizeof(buf)), "background."),
                "seed %u: format = %s", seed, buf);
  for (int i = 0; i < n; i++)
    if (kind[i] == 0)
      ck_assert_msg(uvctx_value(ctx, &vals[i]) == &vals[i],
                    "seed %u: value of layer %d before done", seed, i);

  if (timeout) {
    uint64_t deadline = 0;
    ck_assert_int_eq(uvctx_deadline(ctx, &deadline), 1);
    rec_watch(&r, &journal, ctx);
    ck_assert_msg(wait_until(&loop, &r.calls, 1), "seed %u: no timeout", seed);
    ck_assert_int_eq(r.err, UV_ETIMEDOUT);
    ck_assert_int_eq(uvctx_err(ctx), UV_ETIMEDOUT);
    ck_assert_uint_ge(r.now, deadline);
  } else {
    int pick = (int)(rnd(&state) % (uint32_t)ncancels), target = -1;
    for (int i = 0; i < n && target < 0; i++)
      if (kind[i] != 0 && pick-- == 0)
        target = i;
    rec_watch(&r, &journal, ctx);
    ck_assert_int_eq(uvctx_cancel(layers[target]), 0);
    for (int i = 0; i < n; i++) /* above target: untouched; below: done */
      ck_assert_msg(uvctx_err(layers[i]) == (i < target ? 0 : UV_ECANCELED),
                    "seed %u: layer %d of %d (cancelled %d): err %d", seed, i,
                    n, target, uvctx_err(layers[i]));
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(r.err, UV_ECANCELED);
  }
  for (int i = 0; i < n; i++)
    if (kind[i] == 0)
      ck_assert_msg(uvctx_value(ctx, &vals[i]) == &vals[i],
                    "seed %u: value of layer %d after done", seed, i);

  for (int i = n - 1; i >= 0; i--)
    uvctx_release(layers[i]);
  ASSERT_LOOP_CLOSES(&loop);
}

/* Ports TestLayersCancel. */
START_TEST(test_layers_cancel) { test_layers(0); }
END_TEST

/* Ports TestLayersTimeout. */
START_TEST(test_layers_timeout) { test_layers(1); }
END_TEST

/* ---------------------------------------------------------------------------
 * Born done, and racing the parent's cancel
 * ------------------------------------------------------------------------- */

/* Ports TestWithCancelCanceledParent. */
START_TEST(test_with_cancel_canceled_parent) {
  uv_loop_t loop;
  rec_t r;
  init_loop(&loop);

  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(uvctx_cancel_cause(parent, PARENT_CAUSE), 0);

  uvctx_t *c = mk_cancel(&loop, parent);
  ck_assert_int_eq(uvctx_err(c), UV_ECANCELED); /* done on construction */
  ck_assert_int_eq(uvctx_cause(c), PARENT_CAUSE);
  rec_watch(&r, &journal, c);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(r.calls, 1);
  ck_assert_int_eq(r.err, UV_ECANCELED);

  uvctx_release(c);
  uvctx_release(parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Ports TestWithCancelSimultaneouslyCanceledParent: another thread cancels the
 * parent (with a cause) while the loop thread derives a child from it. */
START_TEST(test_with_cancel_simultaneously_canceled_parent) {
  uv_loop_t loop;
  init_loop(&loop);

  canceller_t th;
  canceller_start(&th);
  for (int i = 0; i < 100; i++) {
    rec_t r;
    uvctx_t *parent = mk_cancel(&loop, uvctx_background());
    canceller_race(&th, parent, PARENT_CAUSE);

    uvctx_t *c = mk_cancel(&loop, parent);
    rec_watch(&r, &journal, c);
    int reached = wait_until(&loop, &r.calls, 1);
    ck_assert_msg(reached, "round %d: child not done after %d ms", i,
                  WAIT_LIMIT_MS);
    ck_assert_int_eq(canceller_rc(&th), 0);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(r.err, UV_ECANCELED);
    ck_assert_msg(uvctx_err(c) == UV_ECANCELED, "round %d: err %d", i,
                  uvctx_err(c));
    ck_assert_msg(uvctx_cause(c) == PARENT_CAUSE, "round %d: cause %d", i,
                  uvctx_cause(c));

    uvctx_release(c);
    uvctx_release(parent);
  }
  canceller_stop(&th);

  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Invalid arguments (Go panics)
 * ------------------------------------------------------------------------- */

/* Ports TestWithValueChecksKey: a NULL key is refused. (Go's other case, a
 * key of an incomparable type, cannot happen: addresses always compare.) */
START_TEST(test_with_value_checks_key) {
  static char bar[] = "bar";
  uvctx_t *const sentinel = (uvctx_t *)&bar;
  uvctx_t *out = sentinel;
  ck_assert_int_eq(uvctx_with_value(uvctx_background(), NULL, bar, &out),
                   UV_EINVAL);
  ck_assert_ptr_eq(out, sentinel);
}
END_TEST

/* Ports TestInvalidDerivedFail: no context can be derived from a NULL
 * parent; *out is left alone. */
START_TEST(test_invalid_derived_fail) {
  static const char foo;
  static char bar[] = "bar";
  uv_loop_t loop;
  uvctx_t *const sentinel = (uvctx_t *)&bar;
  uvctx_t *out = sentinel;
  init_loop(&loop);

  ck_assert_int_eq(uvctx_with_cancel(&loop, NULL, &out), UV_EINVAL);
  ck_assert_ptr_eq(out, sentinel);
  ck_assert_int_eq(
      uvctx_with_deadline(&loop, NULL, uvctx_now() + SHORT_MS, &out),
      UV_EINVAL);
  ck_assert_ptr_eq(out, sentinel);
  ck_assert_int_eq(uvctx_with_timeout(&loop, NULL, SHORT_MS, &out), UV_EINVAL);
  ck_assert_ptr_eq(out, sentinel);
  ck_assert_int_eq(uvctx_with_value(NULL, &foo, bar, &out), UV_EINVAL);
  ck_assert_ptr_eq(out, sentinel);
  ck_assert_int_eq(uvctx_without_cancel(NULL, &out), UV_EINVAL);
  ck_assert_ptr_eq(out, sentinel);

  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Causes
 * ------------------------------------------------------------------------- */

/* The contexts one row of TestCause builds, to be released afterwards. */
typedef struct {
  uv_loop_t *loop;
  uvctx_t *made[4];
  int n;
} maker_t;

static uvctx_t *keep(maker_t *m, uvctx_t *c) {
  ck_assert_int_lt(m->n, 4);
  return m->made[m->n++] = c;
}

static uvctx_t *row_cancel(maker_t *m, uvctx_t *parent) {
  return keep(m, mk_cancel(m->loop, parent));
}

static uvctx_t *row_timeout(maker_t *m, uvctx_t *parent, uint64_t ms,
                            int cause) {
  uvctx_t *c = NULL;
  ck_assert_int_eq(uvctx_with_timeout_cause(m->loop, parent, ms, cause, &c), 0);
  ck_assert_ptr_nonnull(c);
  return keep(m, c);
}

static uvctx_t *row_without(maker_t *m, uvctx_t *parent) {
  return keep(m, mk_without(parent));
}

static void cancel_expect(uvctx_t *ctx, int cause, int want_rc) {
  ck_assert_int_eq(uvctx_cancel_cause(ctx, cause), want_rc);
}

#define FOREVER_MS ((uint64_t)1000000 * 1000) /* Go's 1e6 * time.Second */

static uvctx_t *cause_background(maker_t *m) {
  (void)m;
  return uvctx_background();
}

static uvctx_t *cause_todo(maker_t *m) {
  (void)m;
  return uvctx_todo();
}

static uvctx_t *cause_with_cancel(maker_t *m) {
  uvctx_t *c = row_cancel(m, uvctx_background());
  ck_assert_int_eq(uvctx_cancel(c), 0);
  return c;
}

static uvctx_t *cause_with_cancel_cause(maker_t *m) {
  uvctx_t *c = row_cancel(m, uvctx_background());
  cancel_expect(c, PARENT_CAUSE, 0);
  return c;
}

static uvctx_t *cause_with_cancel_cause_none(maker_t *m) {
  uvctx_t *c = row_cancel(m, uvctx_background());
  cancel_expect(c, 0, 0);
  return c;
}

static uvctx_t *cause_parent_before_child(maker_t *m) {
  uvctx_t *p = row_cancel(m, uvctx_background());
  uvctx_t *c = row_cancel(m, p);
  cancel_expect(p, PARENT_CAUSE, 0);
  cancel_expect(c, CHILD_CAUSE, UV_EALREADY);
  return c;
}

static uvctx_t *cause_parent_after_child(maker_t *m) {
  uvctx_t *p = row_cancel(m, uvctx_background());
  uvctx_t *c = row_cancel(m, p);
  cancel_expect(c, CHILD_CAUSE, 0);
  cancel_expect(p, PARENT_CAUSE, 0);
  return c;
}

static uvctx_t *cause_parent_before_none(maker_t *m) {
  uvctx_t *p = row_cancel(m, uvctx_background());
  uvctx_t *c = row_cancel(m, p);
  cancel_expect(p, PARENT_CAUSE, 0);
  ck_assert_int_eq(uvctx_cancel(c), UV_EALREADY);
  return c;
}

static uvctx_t *cause_parent_after_none(maker_t *m) {
  uvctx_t *p = row_cancel(m, uvctx_background());
  uvctx_t *c = row_cancel(m, p);
  ck_assert_int_eq(uvctx_cancel(c), 0);
  cancel_expect(p, PARENT_CAUSE, 0);
  return c;
}

static uvctx_t *cause_child_after_none(maker_t *m) {
  uvctx_t *p = row_cancel(m, uvctx_background());
  uvctx_t *c = row_cancel(m, p);
  ck_assert_int_eq(uvctx_cancel(p), 0);
  cancel_expect(c, CHILD_CAUSE, UV_EALREADY);
  return c;
}

static uvctx_t *cause_child_before_none(maker_t *m) {
  uvctx_t *p = row_cancel(m, uvctx_background());
  uvctx_t *c = row_cancel(m, p);
  cancel_expect(c, CHILD_CAUSE, 0);
  ck_assert_int_eq(uvctx_cancel(p), 0);
  return c;
}

static uvctx_t *cause_with_timeout(maker_t *m) {
  uvctx_t *c = row_timeout(m, uvctx_background(), 0, 0);
  ck_assert_int_eq(uvctx_cancel(c), UV_EALREADY);
  return c;
}

static uvctx_t *cause_with_timeout_canceled(maker_t *m) {
  uvctx_t *c = row_timeout(m, uvctx_background(), FOREVER_MS, 0);
  ck_assert_int_eq(uvctx_cancel(c), 0);
  return c;
}

static uvctx_t *cause_with_timeout_cause(maker_t *m) {
  uvctx_t *c = row_timeout(m, uvctx_background(), 0, TOO_SLOW);
  ck_assert_int_eq(uvctx_cancel(c), UV_EALREADY);
  return c;
}

static uvctx_t *cause_with_timeout_cause_canceled(maker_t *m) {
  uvctx_t *c = row_timeout(m, uvctx_background(), FOREVER_MS, TOO_SLOW);
  ck_assert_int_eq(uvctx_cancel(c), 0);
  return c;
}

static uvctx_t *cause_with_timeout_cause_stacked(maker_t *m) {
  uvctx_t *p = row_cancel(m, uvctx_background());
  uvctx_t *c = row_timeout(m, p, 0, TOO_SLOW);
  cancel_expect(p, FINISHED_EARLY, 0);
  return c;
}

static uvctx_t *cause_with_timeout_cause_stacked_canceled(maker_t *m) {
  uvctx_t *p = row_cancel(m, uvctx_background());
  uvctx_t *c = row_timeout(m, p, FOREVER_MS, TOO_SLOW);
  cancel_expect(p, FINISHED_EARLY, 0);
  return c;
}

static uvctx_t *cause_without_cancel(maker_t *m) {
  return row_without(m, uvctx_background());
}

static uvctx_t *cause_without_cancel_canceled(maker_t *m) {
  uvctx_t *p = row_cancel(m, uvctx_background());
  uvctx_t *c = row_without(m, p);
  cancel_expect(p, FINISHED_EARLY, 0);
  return c;
}

static uvctx_t *cause_without_cancel_timeout(maker_t *m) {
  uvctx_t *p = row_timeout(m, uvctx_background(), 0, TOO_SLOW);
  uvctx_t *c = row_without(m, p);
  ck_assert_int_eq(uvctx_cancel(p), UV_EALREADY);
  return c;
}

static const struct {
  const char *name;
  uvctx_t *(*make)(maker_t *m);
  int err;
  int cause;
} cause_rows[] = {
    {"Background", cause_background, 0, 0},
    {"TODO", cause_todo, 0, 0},
    {"WithCancel", cause_with_cancel, UV_ECANCELED, UV_ECANCELED},
    {"WithCancelCause", cause_with_cancel_cause, UV_ECANCELED, PARENT_CAUSE},
    {"WithCancelCause nil", cause_with_cancel_cause_none, UV_ECANCELED,
     UV_ECANCELED},
    {"parent cause before child", cause_parent_before_child, UV_ECANCELED,
     PARENT_CAUSE},
    {"parent cause after child", cause_parent_after_child, UV_ECANCELED,
     CHILD_CAUSE},
    {"parent cause before nil", cause_parent_before_none, UV_ECANCELED,
     PARENT_CAUSE},
    {"parent cause after nil", cause_parent_after_none, UV_ECANCELED,
     UV_ECANCELED},
    {"child cause after nil", cause_child_after_none, UV_ECANCELED,
     UV_ECANCELED},
    {"child cause before nil", cause_child_before_none, UV_ECANCELED,
     CHILD_CAUSE},
    {"WithTimeout", cause_with_timeout, UV_ETIMEDOUT, UV_ETIMEDOUT},
    {"WithTimeout canceled", cause_with_timeout_canceled, UV_ECANCELED,
     UV_ECANCELED},
    {"WithTimeoutCause", cause_with_timeout_cause, UV_ETIMEDOUT, TOO_SLOW},
    {"WithTimeoutCause canceled", cause_with_timeout_cause_canceled,
     UV_ECANCELED, UV_ECANCELED},
    {"WithTimeoutCause stacked", cause_with_timeout_cause_stacked,
     UV_ETIMEDOUT, TOO_SLOW},
    {"WithTimeoutCause stacked canceled",
     cause_with_timeout_cause_stacked_canceled, UV_ECANCELED, FINISHED_EARLY},
    {"WithoutCancel", cause_without_cancel, 0, 0},
    {"WithoutCancel canceled", cause_without_cancel_canceled, 0, 0},
    {"WithoutCancel timeout", cause_without_cancel_timeout, 0, 0},
};

/* Ports TestCause: its whole table, one row after another on one loop. */
START_TEST(test_cause) {
  uv_loop_t loop;
  init_loop(&loop);

  for (size_t i = 0; i < sizeof(cause_rows) / sizeof(cause_rows[0]); i++) {
    maker_t m = {&loop, {NULL}, 0};
    uvctx_t *ctx = cause_rows[i].make(&m);
    ck_assert_msg(uvctx_err(ctx) == cause_rows[i].err,
                  "row \"%s\": err = %d want %d", cause_rows[i].name,
                  uvctx_err(ctx), cause_rows[i].err);
    ck_assert_msg(uvctx_cause(ctx) == cause_rows[i].cause,
                  "row \"%s\": cause = %d want %d", cause_rows[i].name,
                  uvctx_cause(ctx), cause_rows[i].cause);
    while (m.n > 0)
      uvctx_release(m.made[--m.n]);
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  }

  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Ports TestCauseRace: another thread cancels with a cause while the loop
 * thread polls; the first non-zero cause seen is that cause, never a
 * transient UV_ECANCELED. uvctx also promises the converse (cause is 0 only
 * while not done), so a second pass polls err and then reads the cause. */
START_TEST(test_cause_race) {
  uv_loop_t loop;
  init_loop(&loop);

  canceller_t th;
  canceller_start(&th);
  for (int pass = 0; pass < 2; pass++) {
    for (int i = 0; i < 50; i++) {
      rec_t r;
      int seen = 0;
      uvctx_t *ctx = mk_cancel(&loop, uvctx_background());
      rec_watch(&r, &journal, ctx);
      canceller_race(&th, ctx, PARENT_CAUSE);
      /* Once the cancel has returned, the check below must succeed. */
      if (pass == 0) {
        seen = poll_then_wait(&th, uvctx_cause);
      } else {
        ck_assert_int_ne(poll_then_wait(&th, uvctx_err), 0);
        seen = uvctx_cause(ctx);
      }
      ck_assert_msg(seen == PARENT_CAUSE, "pass %d round %d: cause = %d", pass,
                    i, seen);
      ck_assert_int_eq(canceller_rc(&th), 0);
      /* Let the loop take the other thread's cancel before releasing. */
      ck_assert(wait_until(&loop, &r.calls, 1));
      ck_assert_int_eq(r.cause, PARENT_CAUSE);
      uvctx_release(ctx);
    }
  }
  canceller_stop(&th);

  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Ports TestWithoutCancel, plus the same checks over a parent that has a
 * deadline and is cancelled (Go's test uses Background only). */
START_TEST(test_without_cancel) {
  static const char key;
  static char value[] = "value";
  uv_loop_t loop;
  uint64_t d = 12345;
  rec_t r;
  init_loop(&loop);

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
  rec_watch(&r, &journal, w2);
  ck_assert_int_eq(uvctx_cancel(t), 0);
  run_for(&loop, SHORT_MS);
  ck_assert_int_eq(uvctx_err(w2), 0);
  ck_assert_int_eq(uvctx_cause(w2), 0);
  ck_assert_int_eq(r.calls, 0);
  ck_assert_int_eq(uvctx_unwatch(&r.w), 0);

  uvctx_release(w2);
  uvctx_release(t);
  uvctx_release(w);
  uvctx_release(v);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * AfterFunc (watches)
 * ------------------------------------------------------------------------- */

/* Ports TestAfterFuncCalledAfterCancel. */
START_TEST(test_after_func_called_after_cancel) {
  uv_loop_t loop;
  rec_t r;
  init_loop(&loop);

  uvctx_t *ctx = mk_cancel(&loop, uvctx_background());
  rec_watch(&r, &journal, ctx);
  run_for(&loop, SHORT_MS);
  ck_assert_int_eq(r.calls, 0); /* not before the context is done */

  ck_assert_int_eq(uvctx_cancel(ctx), 0);
  ck_assert_int_eq(r.calls, 0); /* not inside uvctx_cancel */
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(r.calls, 1);
  ck_assert_int_eq(r.err, UV_ECANCELED);
  ck_assert_int_eq(r.err_inside, UV_ECANCELED);
  ck_assert_int_eq(uvctx_unwatch(&r.w), UV_EALREADY); /* Go: stop() false */

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Ports TestAfterFuncCalledAfterTimeout. */
START_TEST(test_after_func_called_after_timeout) {
  uv_loop_t loop;
  uint64_t deadline = 0;
  rec_t r;
  init_loop(&loop);

  uvctx_t *ctx = mk_timeout(&loop, uvctx_background(), SHORT_MS);
  ck_assert_int_eq(uvctx_deadline(ctx, &deadline), 1);
  rec_watch(&r, &journal, ctx);
  ck_assert_msg(wait_until(&loop, &r.calls, 1), "not called after %d ms",
                WAIT_LIMIT_MS);
  ck_assert_int_eq(r.calls, 1);
  ck_assert_int_eq(r.err, UV_ETIMEDOUT);
  ck_assert_uint_ge(r.now, deadline);
  ck_assert_int_eq(uvctx_unwatch(&r.w), UV_EALREADY);

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Ports TestAfterFuncCalledImmediately: watching a context that is already
 * done runs the callback, but as a later loop callback, never inside
 * uvctx_watch(); and that due callback keeps the loop alive until it ran. */
START_TEST(test_after_func_called_immediately) {
  uv_loop_t loop;
  rec_t r;
  uv_thread_t self = uv_thread_self();
  init_loop(&loop);

  uvctx_t *ctx = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(uvctx_cancel(ctx), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);

  rec_watch(&r, &journal, ctx); /* asserts calls == 0 on return */
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(r.calls, 1);
  ck_assert_int_eq(r.err, UV_ECANCELED);
  ck_assert(uv_thread_equal(&r.thread, &self));

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Ports TestAfterFuncNotCalledAfterStop. */
START_TEST(test_after_func_not_called_after_stop) {
  uv_loop_t loop;
  rec_t r;
  init_loop(&loop);

  uvctx_t *ctx = mk_cancel(&loop, uvctx_background());
  rec_watch(&r, &journal, ctx);
  ck_assert_int_eq(uvctx_unwatch(&r.w), 0); /* Go: stop() true */
  ck_assert_int_eq(uvctx_cancel(ctx), 0);
  run_for(&loop, SHORT_MS);
  ck_assert_int_eq(r.calls, 0);
  ck_assert_int_eq(uvctx_unwatch(&r.w), UV_EALREADY); /* Go: stop() false */

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Ports TestAfterFuncCalledAsynchronously: cancelling does not wait for the
 * callbacks. A thread cancels and is joined before the loop has run at all,
 * so its uvctx_cancel() returned without any callback; the callback then runs
 * on the loop thread, where the watch already counts as started. */
START_TEST(test_after_func_called_asynchronously) {
  uv_loop_t loop;
  canceller_t th;
  rec_t r;
  uv_thread_t self = uv_thread_self();
  init_loop(&loop);

  uvctx_t *ctx = mk_cancel(&loop, uvctx_background());
  rec_watch(&r, &journal, ctx);
  r.action = unwatch_self;
  canceller_start(&th);
  canceller_race(&th, ctx, 0);
  ck_assert_int_eq(canceller_rc(&th), 0);
  canceller_stop(&th);
  ck_assert_int_eq(uvctx_err(ctx), UV_ECANCELED);
  ck_assert_int_eq(r.calls, 0);

  ck_assert_msg(wait_until(&loop, &r.calls, 1), "not called after %d ms",
                WAIT_LIMIT_MS);
  ck_assert_int_eq(r.calls, 1);
  ck_assert_int_eq(r.err, UV_ECANCELED);
  ck_assert(uv_thread_equal(&r.thread, &self));
  ck_assert_int_eq(r.action_rc, UV_EALREADY); /* "is running" */

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Go's stop() answers the same way however often it is called: once true (if
 * first), then false. Checked before cancel, after the callback ran, and (a
 * uvctx difference: Go's cancel claims its AfterFuncs at once) between the
 * cancel and the loop delivering the callback, when stopping still works. */
START_TEST(test_after_func_stop_is_idempotent) {
  uv_loop_t loop;
  rec_t before, after, between;
  init_loop(&loop);

  uvctx_t *ctx = mk_cancel(&loop, uvctx_background());
  rec_watch(&before, &journal, ctx);
  rec_watch(&after, &journal, ctx);
  rec_watch(&between, &journal, ctx);
  ck_assert_int_eq(uvctx_unwatch(&before.w), 0);
  ck_assert_int_eq(uvctx_unwatch(&before.w), UV_EALREADY);
  ck_assert_int_eq(uvctx_unwatch(&before.w), UV_EALREADY);

  ck_assert_int_eq(uvctx_cancel(ctx), 0);
  ck_assert_int_eq(uvctx_unwatch(&between.w), 0);
  ck_assert_int_eq(uvctx_unwatch(&between.w), UV_EALREADY);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
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

/* Ports TestContextErrDoneRace: Go promises Done is closed once Err is
 * non-nil. Here: once another thread's cancel makes uvctx_err() non-zero (and
 * while that cancel may still be running), the watch callbacks are on their
 * way; the loop delivers them, none is lost. */
START_TEST(test_context_err_done_race) {
  uv_loop_t loop;
  init_loop(&loop);

  canceller_t th;
  canceller_start(&th);
  for (int i = 0; i < 50; i++) {
    rec_t r;
    uvctx_t *ctx = mk_cancel(&loop, uvctx_background());
    rec_watch(&r, &journal, ctx);
    canceller_race(&th, ctx, 0);
    /* once the cancel has returned, err must be visible */
    int err = poll_then_wait(&th, uvctx_err);
    ck_assert_msg(err == UV_ECANCELED, "round %d: err = %d", i, err);
    ck_assert_int_eq(r.calls, 0); /* no loop ran yet */

    int reached = wait_until(&loop, &r.calls, 1);
    ck_assert_msg(reached, "round %d: watch lost (not called after %d ms)", i,
                  WAIT_LIMIT_MS);
    ck_assert_int_eq(canceller_rc(&th), 0);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(r.err, UV_ECANCELED);
    uvctx_release(ctx);
  }
  canceller_stop(&th);

  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

Suite *go_port_suite(void) {
  return SUITE(
      "go_port",
      {"go_port", TIMEOUT_THREADS_S, NULL, NULL,
       .tests = TESTS(
           test_background,
           test_todo,
           test_with_cancel,
           test_parent_finishes_child,
           test_child_finishes_first,
           test_cancel_removes,
           test_deadline,
           test_timeout,
           test_canceled_timeout,
           test_values,
           test_simultaneous_cancels,
           test_interlocked_cancels,
           test_layers_cancel,
           test_layers_timeout,
           test_with_cancel_canceled_parent,
           test_with_cancel_simultaneously_canceled_parent,
           test_with_value_checks_key,
           test_invalid_derived_fail,
           test_cause,
           test_cause_race,
           test_without_cancel,
           test_after_func_called_after_cancel,
           test_after_func_called_after_timeout,
           test_after_func_called_immediately,
           test_after_func_not_called_after_stop,
           test_after_func_called_asynchronously,
           test_after_func_stop_is_idempotent,
           test_context_err_done_race)});
}
