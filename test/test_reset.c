/* Idle timeouts and the loop: uvctx_reset_timeout() and uvctx_keepalive().
 *
 * uvctx_reset_timeout() moves a deadline context's own deadline to
 * uvctx_now() + timeout, later or earlier, while it is not done; the moved
 * deadline still never fires early. uvctx_keepalive() lets a deadline timer
 * keep its loop alive, which contexts otherwise never do.
 *
 * Waiting for a deadline is done with a ref'd polling timer of the test's own
 * (run_until), except in the keepalive tests, where the point is that nothing
 * else keeps the loop alive; there an unref'd guard timer turns a hang into a
 * failure. Nothing asserts how late a deadline fires. A check that needs the
 * loop to have run on time (a loaded machine can stall it for longer than a
 * test's margin) is made when it can be, and counted and reported on stderr
 * when a stall made it impossible (stall_count_t), never skipped in silence. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "test.h"

/* ---------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------- */

static int key_a;
static char val_a[] = "a";

static int never(void *arg) {
  (void)arg;
  return 0;
}

/* Runs the loop until the uvctx clock has reached at least until_ms. */
static void run_until_time(uv_loop_t *loop, uint64_t until_ms) {
  poll_until(loop, never, NULL, until_ms);
  ck_assert_uint_ge(uvctx_now(), until_ms);
}

static uvctx_t *mk_any(uv_loop_t *loop, uvctx_t *p0, uvctx_t *p1) {
  uvctx_t *parents[2] = {p0, p1};
  uvctx_t *c = NULL;
  ck_assert_int_eq(uvctx_with_any(loop, parents, 2, &c), 0);
  ck_assert_ptr_nonnull(c);
  return c;
}

/* Resets ctx to timeout_ms and returns the new deadline, checking that it is
 * uvctx_now() + timeout_ms, read around the call. */
static uint64_t reset(uvctx_t *ctx, uint64_t timeout_ms) {
  uint64_t before = uvctx_now();
  ck_assert_int_eq(uvctx_reset_timeout(ctx, timeout_ms), 0);
  uint64_t after = uvctx_now();
  uint64_t dl = deadline_of(ctx);
  ck_assert_uint_ge(dl, before + timeout_ms);
  ck_assert_uint_le(dl, after + timeout_ms);
  return dl;
}

/* ---------------------------------------------------------------------------
 * uvctx_reset_timeout: moving the deadline
 * ------------------------------------------------------------------------- */

START_TEST(reset_later_does_not_fire_at_the_old_deadline) {
  uv_loop_t loop;
  rec_t r;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *c = mk_timeout(&loop, uvctx_background(), 10);
  uint64_t old = deadline_of(c);
  rec_watch(&r, NULL, c);
  uint64_t moved = reset(c, 100);

  run_until_time(&loop, old + 20); /* well past the old, 70 ms before the new */
  stall_count_t sc;
  stall_count_init(&sc, "reset_later_does_not_fire_at_the_old_deadline",
                   "not-fired-before-the-new-deadline");
  uint64_t now = uvctx_now();
  if (stall_check(&sc, now >= moved ? now - moved + 1 : 0)) {
    ck_assert_int_eq(r.calls, 0);
    assert_not_done(c);
  }
  stall_report(&sc);
  ck_assert(poll_until(&loop, rec_called, &r, moved + EVENTUALLY_MS));
  ck_assert_int_eq(r.calls, 1);
  ck_assert_int_eq(r.err, UV_ETIMEDOUT);
  ck_assert_uint_ge(r.now, moved);

  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(reset_earlier_fires_at_the_new_deadline) {
  uv_loop_t loop;
  rec_t r;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *c = mk_timeout_cause(&loop, uvctx_background(), 60000, UV_EPIPE);
  rec_watch(&r, NULL, c);
  uint64_t moved = reset(c, 10);

  ck_assert(poll_until(&loop, rec_called, &r, moved + EVENTUALLY_MS));
  ck_assert_int_eq(r.calls, 1);
  ck_assert_int_eq(r.err, UV_ETIMEDOUT);
  ck_assert_int_eq(r.cause, UV_EPIPE); /* the deadline's cause still counts */
  ck_assert_uint_ge(r.now, moved);

  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(reset_works_on_an_absolute_deadline_context) {
  uv_loop_t loop;
  rec_t r;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *c = mk_deadline(&loop, uvctx_background(), uvctx_now() + 60000);
  rec_watch(&r, NULL, c);
  uint64_t moved = reset(c, 5);

  ck_assert(poll_until(&loop, rec_called, &r, moved + EVENTUALLY_MS));
  ck_assert_int_eq(r.err, UV_ETIMEDOUT);
  ck_assert_uint_ge(r.now, moved);

  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* libuv's cached loop time lags after a long callback: a timer re-armed from
 * it would fire early. The reset is done in such a callback. */
typedef struct {
  uv_timer_t timer;
  uvctx_t *ctx;
  uint64_t moved;
} stale_t;

static void reset_after_stall(uv_timer_t *t) {
  stale_t *s = t->data;
  uv_sleep(25);
  s->moved = reset(s->ctx, 15);
  uv_close((uv_handle_t *)t, NULL);
}

START_TEST(reset_never_fires_before_the_new_deadline) {
  uv_loop_t loop;
  stale_t s;
  rec_t r;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  s.ctx = mk_timeout(&loop, uvctx_background(), 60000);
  s.moved = 0;
  rec_watch(&r, NULL, s.ctx);
  ck_assert_int_eq(uv_timer_init(&loop, &s.timer), 0);
  s.timer.data = &s;
  ck_assert_int_eq(uv_timer_start(&s.timer, reset_after_stall, 1, 0), 0);

  ck_assert(
      poll_until(&loop, rec_called, &r, uvctx_now() + 100 + EVENTUALLY_MS));
  ck_assert_uint_ne(s.moved, 0);
  ck_assert_int_eq(r.calls, 1);
  ck_assert_msg(r.now >= s.moved, "fired at %llu, before its deadline %llu",
                (unsigned long long)r.now, (unsigned long long)s.moved);

  uvctx_release(s.ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(reset_is_reported_by_deadline_below_it) {
  uv_loop_t loop;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *c = mk_timeout(&loop, uvctx_background(), 30000);
  uvctx_t *v = mk_value(c, &key_a, val_a);
  uvctx_t *own = mk_timeout(&loop, v, 20000);

  uint64_t earlier = reset(c, 10000);
  ck_assert_uint_eq(deadline_of(v), earlier);
  ck_assert_uint_eq(deadline_of(own), earlier); /* now the earliest */
  uint64_t later = reset(c, 50000);
  ck_assert_uint_eq(deadline_of(v), later);
  ck_assert_uint_lt(deadline_of(own), later); /* its own is earlier again */

  uvctx_release(own);
  uvctx_release(v);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* The idle-timeout pattern: a connection resets its timeout on every read;
 * while reads come it stays alive, when they stop it times out. Every read
 * that comes before the deadline in force finds the context not done, on
 * any machine. That the reads kept it alive throughout needs each one to
 * come within IDLE_TIMEOUT of the one before: a read that came later (the
 * loop stalled) may rightly find it timed out, and is counted as such. The
 * timeout leaves 55 ms of margin between reads: a machine with two busy
 * loops per core stalls the loop for 20 ms now and then. */
enum { IDLE_TIMEOUT = 60, IDLE_EVERY = 5, IDLE_READS = 10 };

typedef struct {
  uv_timer_t timer;
  uvctx_t *ctx;
  rec_t rec;
  uint64_t deadline; /* the deadline in force */
  int reads;
  int resets;
  stall_count_t stalls;
} idle_t;

static void idle_read(uv_timer_t *t) {
  idle_t *id = t->data;
  uint64_t now = uvctx_now();
  id->reads++;
  /* In time (before the deadline in force) it is never done. */
  if (stall_check(&id->stalls, now >= id->deadline ? now - id->deadline + 1 : 0))
    assert_not_done(id->ctx);
  if (uvctx_err(id->ctx) == 0) {
    id->deadline = reset(id->ctx, IDLE_TIMEOUT);
    id->resets++;
  }
  if (id->reads == IDLE_READS)
    uv_close((uv_handle_t *)t, NULL);
}

START_TEST(reset_while_active_keeps_an_idle_timeout_from_firing) {
  uv_loop_t loop;
  idle_t id;
  memset(&id, 0, sizeof id);
  stall_count_init(&id.stalls,
                   "reset_while_active_keeps_an_idle_timeout_from_firing",
                   "read-in-time");
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  id.ctx = mk_timeout(&loop, uvctx_background(), IDLE_TIMEOUT);
  id.deadline = deadline_of(id.ctx);
  rec_watch(&id.rec, NULL, id.ctx);
  ck_assert_int_eq(uv_timer_init(&loop, &id.timer), 0);
  id.timer.data = &id;
  ck_assert_int_eq(
      uv_timer_start(&id.timer, idle_read, IDLE_EVERY, IDLE_EVERY), 0);

  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0); /* the reads stop */
  ck_assert_int_eq(id.reads, IDLE_READS);
  if (id.stalls.skipped == 0) { /* every read in time: it never fired */
    ck_assert_int_eq(id.resets, IDLE_READS);
    ck_assert_int_eq(id.rec.calls, 0);
    assert_not_done(id.ctx);
  }
  stall_report(&id.stalls);
  /* Either way it fires, and never before the deadline in force. */
  ck_assert(
      poll_until(&loop, rec_called, &id.rec, id.deadline + EVENTUALLY_MS));
  ck_assert_int_eq(id.rec.calls, 1);
  ck_assert_int_eq(id.rec.err, UV_ETIMEDOUT);
  ck_assert_uint_ge(id.rec.now, id.deadline);

  uvctx_release(id.ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(reset_to_zero_finishes_at_once) {
  uv_loop_t loop;
  rec_t r;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *c = mk_timeout_cause(&loop, uvctx_background(), 60000, UV_EPROTO);
  uvctx_t *child = mk_cancel(&loop, c);
  rec_watch(&r, NULL, c);

  ck_assert_int_eq(uvctx_reset_timeout(c, 0), 0);
  assert_done(c, UV_ETIMEDOUT, UV_EPROTO);
  assert_done(child, UV_ETIMEDOUT, UV_EPROTO);
  ck_assert_int_eq(r.calls, 0); /* never inside the call */
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(r.calls, 1);
  ck_assert_int_eq(r.err, UV_ETIMEDOUT);

  uvctx_release(child);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(reset_after_done_is_ealready_and_changes_nothing) {
  uv_loop_t loop;
  rec_t r;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *cancelled = mk_timeout(&loop, uvctx_background(), 60000);
  uvctx_t *via_parent = mk_timeout(&loop, parent, 60000);
  uvctx_t *timed_out = mk_timeout(&loop, uvctx_background(), 2);
  uvctx_t *born_done = mk_timeout(&loop, uvctx_background(), 0);
  uint64_t dl_cancelled = deadline_of(cancelled);
  uint64_t dl_born = deadline_of(born_done);
  rec_watch(&r, NULL, timed_out);
  ck_assert_int_eq(uvctx_cancel_cause(cancelled, UV_EIO), 0);
  ck_assert_int_eq(uvctx_cancel_cause(parent, UV_EPIPE), 0);
  ck_assert(poll_until(&loop, rec_called, &r, uvctx_now() + EVENTUALLY_MS));
  uint64_t dl_timed_out = deadline_of(timed_out);

  ck_assert_int_eq(uvctx_reset_timeout(cancelled, 10), UV_EALREADY);
  ck_assert_int_eq(uvctx_reset_timeout(cancelled, 0), UV_EALREADY);
  ck_assert_int_eq(uvctx_reset_timeout(via_parent, 10), UV_EALREADY);
  ck_assert_int_eq(uvctx_reset_timeout(timed_out, 10000), UV_EALREADY);
  ck_assert_int_eq(uvctx_reset_timeout(born_done, 10000), UV_EALREADY);
  assert_done(cancelled, UV_ECANCELED, UV_EIO);
  assert_done(via_parent, UV_ECANCELED, UV_EPIPE);
  assert_done(timed_out, UV_ETIMEDOUT, UV_ETIMEDOUT);
  assert_done(born_done, UV_ETIMEDOUT, UV_ETIMEDOUT);
  ck_assert_uint_eq(deadline_of(cancelled), dl_cancelled);
  ck_assert_uint_eq(deadline_of(timed_out), dl_timed_out);
  ck_assert_uint_eq(deadline_of(born_done), dl_born);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(r.calls, 1);

  uvctx_release(born_done);
  uvctx_release(timed_out);
  uvctx_release(via_parent);
  uvctx_release(cancelled);
  uvctx_release(parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(reset_rejects_contexts_without_a_timer_of_their_own) {
  uv_loop_t loop;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *t = mk_timeout(&loop, uvctx_background(), 60000);
  uint64_t dl = deadline_of(t);
  uvctx_t *cancel = mk_cancel(&loop, t);
  uvctx_t *value = mk_value(t, &key_a, val_a); /* has t's deadline, no timer */
  uvctx_t *without = mk_without(t);
  uvctx_t *any = mk_any(&loop, t, cancel);

  ck_assert_int_eq(uvctx_reset_timeout(NULL, 10), UV_EINVAL);
  ck_assert_int_eq(uvctx_reset_timeout(uvctx_background(), 10), UV_EINVAL);
  ck_assert_int_eq(uvctx_reset_timeout(uvctx_todo(), 10), UV_EINVAL);
  ck_assert_int_eq(uvctx_reset_timeout(cancel, 10), UV_EINVAL);
  ck_assert_int_eq(uvctx_reset_timeout(cancel, 0), UV_EINVAL);
  ck_assert_int_eq(uvctx_reset_timeout(value, 10), UV_EINVAL);
  ck_assert_int_eq(uvctx_reset_timeout(value, 0), UV_EINVAL);
  ck_assert_int_eq(uvctx_reset_timeout(without, 10), UV_EINVAL);
  ck_assert_int_eq(uvctx_reset_timeout(any, 0), UV_EINVAL);

  ck_assert_uint_eq(deadline_of(t), dl);
  ck_assert_uint_eq(deadline_of(value), dl);
  assert_not_done(t);
  assert_not_done(cancel);
  assert_not_done(any);

  uvctx_release(any);
  uvctx_release(without);
  uvctx_release(value);
  uvctx_release(cancel);
  uvctx_release(t);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(resetting_a_parent_later_leaves_a_childs_own_deadline_alone) {
  uv_loop_t loop;
  rec_t rp, rc;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *parent = mk_timeout(&loop, uvctx_background(), 20);
  uint64_t before = uvctx_now();
  uvctx_t *child = mk_timeout_cause(&loop, parent, 30, UV_ENOBUFS);
  uint64_t after = uvctx_now();
  ck_assert_uint_eq(deadline_of(child), deadline_of(parent)); /* earliest */
  rec_watch(&rp, NULL, parent);
  rec_watch(&rc, NULL, child);
  uint64_t parent_dl = reset(parent, 60000);
  /* now the child's own deadline is the earliest */
  uint64_t child_dl = deadline_of(child);
  ck_assert_uint_ge(child_dl, before + 30);
  ck_assert_uint_le(child_dl, after + 30);
  ck_assert_uint_lt(child_dl, parent_dl);

  ck_assert(poll_until(&loop, rec_called, &rc, child_dl + EVENTUALLY_MS));
  ck_assert_int_eq(rc.err, UV_ETIMEDOUT);
  ck_assert_int_eq(rc.cause, UV_ENOBUFS); /* its own deadline, not the parent */
  ck_assert_uint_ge(rc.now, child_dl);
  ck_assert_int_eq(rp.calls, 0);
  assert_not_done(parent);
  ck_assert_int_eq(uvctx_unwatch(&rp.w), 0);

  uvctx_release(child);
  uvctx_release(parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(resetting_a_parent_earlier_reaches_children_by_cancellation) {
  uv_loop_t loop;
  rec_t rp, rc;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *parent = mk_timeout_cause(&loop, uvctx_background(), 60000, UV_EIO);
  uvctx_t *child = mk_timeout_cause(&loop, parent, 50000, UV_ENOBUFS);
  uint64_t child_own = deadline_of(child);
  rec_watch(&rp, NULL, parent);
  rec_watch(&rc, NULL, child);
  uint64_t parent_dl = reset(parent, 10);
  ck_assert_uint_eq(deadline_of(child), parent_dl); /* the earliest */

  ck_assert(poll_until(&loop, rec_called, &rc, parent_dl + EVENTUALLY_MS));
  ck_assert_int_eq(rp.calls, 1);
  ck_assert_int_eq(rc.err, UV_ETIMEDOUT);
  ck_assert_int_eq(rc.cause, UV_EIO); /* the parent's, inherited */
  ck_assert_uint_ge(rc.now, parent_dl);
  ck_assert_uint_gt(child_own, parent_dl);

  uvctx_release(child);
  uvctx_release(parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(resetting_a_child_leaves_its_parent_alone) {
  uv_loop_t loop;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *parent = mk_timeout(&loop, uvctx_background(), 60000);
  uint64_t parent_dl = deadline_of(parent);
  uvctx_t *child = mk_timeout(&loop, parent, 50000);
  uvctx_t *sibling = mk_timeout(&loop, parent, 50000);

  ck_assert_int_eq(uvctx_reset_timeout(child, 0), 0);
  ck_assert_int_eq(uvctx_err(child), UV_ETIMEDOUT);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_not_done(parent);
  assert_not_done(sibling);
  ck_assert_uint_eq(deadline_of(parent), parent_dl);

  uvctx_release(sibling);
  uvctx_release(child);
  uvctx_release(parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(reset_many_times_fires_once_at_the_last_deadline) {
  uv_loop_t loop;
  rec_t r;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *c = mk_timeout(&loop, uvctx_background(), 5);
  rec_watch(&r, NULL, c);
  for (int i = 0; i < 1000; i++)
    ck_assert_int_eq(uvctx_reset_timeout(c, (i % 2) ? 1000 : 100000), 0);
  uint64_t last = reset(c, 10);

  ck_assert(poll_until(&loop, rec_called, &r, last + EVENTUALLY_MS));
  ck_assert_int_eq(uv_run(&loop, UV_RUN_NOWAIT), 0);
  ck_assert_int_eq(r.calls, 1);
  ck_assert_uint_ge(r.now, last);

  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(reset_allocates_nothing) {
  uv_loop_t loop;
  ck_assert_int_eq(uvctx_replace_allocator(counting_malloc, free), 0);
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *c = mk_timeout(&loop, uvctx_background(), 60000);
  uvctx_t *v = mk_value(c, &key_a, val_a);
  ck_assert_ptr_nonnull(uvctx_done_async(c));
  long before = counting_allocs;
  for (int i = 0; i < 100; i++)
    ck_assert_int_eq(uvctx_reset_timeout(c, 1000 + (uint64_t)i), 0);
  ck_assert_int_eq(uvctx_reset_timeout(c, 0), 0);
  ck_assert_int_eq(counting_allocs, before);

  uvctx_release(v);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
  ck_assert_int_eq(uvctx_replace_allocator(malloc, free), 0);
}
END_TEST

/* ---------------------------------------------------------------------------
 * uvctx_keepalive: a deadline that holds the loop
 * ------------------------------------------------------------------------- */

START_TEST(without_keepalive_run_returns_with_a_deadline_pending) {
  uv_loop_t loop;
  stop_guard_t g;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *c = mk_timeout(&loop, uvctx_background(), 60000);
  stop_guard_start(&loop, &g, EVENTUALLY_MS);

  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_msg(!g.fired, "a pending deadline kept the loop alive");
  assert_not_done(c);

  stop_guard_close(&g);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(keepalive_runs_the_loop_until_the_deadline_fires) {
  uv_loop_t loop;
  stop_guard_t g;
  rec_t r;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *c = mk_timeout(&loop, uvctx_background(), 20);
  uint64_t dl = deadline_of(c);
  rec_watch(&r, NULL, c);
  ck_assert_int_eq(uvctx_keepalive(c, 1), 0);
  stop_guard_start(&loop, &g, 20 + EVENTUALLY_MS);

  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_msg(!g.fired, "the loop stayed alive after the deadline");
  ck_assert_int_eq(r.calls, 1); /* the loop ran until its callback ran */
  ck_assert_int_eq(r.err, UV_ETIMEDOUT);
  ck_assert_uint_ge(r.now, dl);

  stop_guard_close(&g);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(keepalive_off_restores_the_default) {
  uv_loop_t loop;
  stop_guard_t g;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *c = mk_timeout(&loop, uvctx_background(), 60000);
  ck_assert_int_eq(uvctx_keepalive(c, 1), 0);
  ck_assert_int_eq(uvctx_keepalive(c, 1), 0); /* not counted */
  ck_assert_int_eq(uvctx_keepalive(c, 0), 0);
  stop_guard_start(&loop, &g, EVENTUALLY_MS);

  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_msg(!g.fired, "the deadline still kept the loop alive");
  assert_not_done(c);

  stop_guard_close(&g);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(keepalive_follows_a_reset_deadline) {
  uv_loop_t loop;
  stop_guard_t g;
  rec_t r;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *c = mk_timeout(&loop, uvctx_background(), 5);
  rec_watch(&r, NULL, c);
  ck_assert_int_eq(uvctx_keepalive(c, 1), 0);
  uint64_t moved = reset(c, 30);
  stop_guard_start(&loop, &g, 30 + EVENTUALLY_MS);

  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_msg(!g.fired, "the loop stayed alive after the deadline");
  ck_assert_int_eq(r.calls, 1);
  ck_assert_uint_ge(r.now, moved);

  stop_guard_close(&g);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(keepalive_rejects_contexts_without_a_timer_of_their_own) {
  uv_loop_t loop;
  stop_guard_t g;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *t = mk_timeout(&loop, uvctx_background(), 60000);
  uvctx_t *cancel = mk_cancel(&loop, t);
  uvctx_t *value = mk_value(t, &key_a, val_a);
  uvctx_t *without = mk_without(t);
  uvctx_t *any = mk_any(&loop, t, cancel);

  ck_assert_int_eq(uvctx_keepalive(NULL, 1), UV_EINVAL);
  ck_assert_int_eq(uvctx_keepalive(uvctx_background(), 1), UV_EINVAL);
  ck_assert_int_eq(uvctx_keepalive(cancel, 1), UV_EINVAL);
  ck_assert_int_eq(uvctx_keepalive(value, 1), UV_EINVAL);
  ck_assert_int_eq(uvctx_keepalive(without, 1), UV_EINVAL);
  ck_assert_int_eq(uvctx_keepalive(any, 1), UV_EINVAL);
  ck_assert_int_eq(uvctx_keepalive(cancel, 0), UV_EINVAL);
  /* and nothing started holding the loop */
  stop_guard_start(&loop, &g, EVENTUALLY_MS);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(g.fired, 0);

  stop_guard_close(&g);
  uvctx_release(any);
  uvctx_release(without);
  uvctx_release(value);
  uvctx_release(cancel);
  uvctx_release(t);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(keepalive_stops_holding_the_loop_once_cancelled) {
  uv_loop_t loop;
  stop_guard_t g;
  rec_t r;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *c = mk_timeout(&loop, uvctx_background(), 60000);
  rec_watch(&r, NULL, c);
  ck_assert_int_eq(uvctx_keepalive(c, 1), 0);
  ck_assert_int_eq(uvctx_cancel(c), 0);
  stop_guard_start(&loop, &g, EVENTUALLY_MS);

  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_msg(!g.fired, "a cancelled context kept the loop alive");
  ck_assert_int_eq(r.calls, 1);

  stop_guard_close(&g);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(keepalive_stops_holding_the_loop_when_a_parent_is_cancelled) {
  uv_loop_t loop;
  stop_guard_t g;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *p = mk_cancel(&loop, uvctx_background());
  uvctx_t *c = mk_timeout(&loop, p, 60000);
  ck_assert_int_eq(uvctx_keepalive(c, 1), 0);
  ck_assert_int_eq(uvctx_cancel(p), 0);
  stop_guard_start(&loop, &g, EVENTUALLY_MS);

  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_msg(!g.fired, "a cancelled context kept the loop alive");

  stop_guard_close(&g);
  uvctx_release(c);
  uvctx_release(p);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(keepalive_on_a_done_context_does_not_hold_the_loop) {
  uv_loop_t loop;
  stop_guard_t g;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *cancelled = mk_timeout(&loop, uvctx_background(), 60000);
  uvctx_t *born_done = mk_timeout(&loop, uvctx_background(), 0);
  ck_assert_int_eq(uvctx_cancel(cancelled), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);

  /* Only UV_EINVAL is documented; a done context has nothing to keep. */
  int rc = uvctx_keepalive(cancelled, 1);
  ck_assert(rc == 0 || rc == UV_EALREADY);
  rc = uvctx_keepalive(born_done, 1);
  ck_assert(rc == 0 || rc == UV_EALREADY);
  stop_guard_start(&loop, &g, EVENTUALLY_MS);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_msg(!g.fired, "a done context kept the loop alive");

  stop_guard_close(&g);
  uvctx_release(born_done);
  uvctx_release(cancelled);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(keepalive_context_released_before_its_deadline_lets_the_loop_end) {
  uv_loop_t loop;
  stop_guard_t g;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *c = mk_timeout(&loop, uvctx_background(), 60000);
  ck_assert_int_eq(uvctx_keepalive(c, 1), 0);
  uvctx_release(c);
  stop_guard_start(&loop, &g, EVENTUALLY_MS);

  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_msg(!g.fired, "a released context kept the loop alive");
  stop_guard_close(&g);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ------------------------------------------------------------------------- */

Suite *reset_suite(void) {
  return SUITE(
      "reset",
      {"reset_timeout", TIMEOUT_LOOP_S, NULL, NULL,
       .tests = TESTS(
           reset_later_does_not_fire_at_the_old_deadline,
           reset_earlier_fires_at_the_new_deadline,
           reset_works_on_an_absolute_deadline_context,
           reset_never_fires_before_the_new_deadline,
           reset_is_reported_by_deadline_below_it,
           reset_while_active_keeps_an_idle_timeout_from_firing,
           reset_to_zero_finishes_at_once,
           reset_after_done_is_ealready_and_changes_nothing,
           reset_rejects_contexts_without_a_timer_of_their_own,
           resetting_a_parent_later_leaves_a_childs_own_deadline_alone,
           resetting_a_parent_earlier_reaches_children_by_cancellation,
           resetting_a_child_leaves_its_parent_alone,
           reset_many_times_fires_once_at_the_last_deadline,
           reset_allocates_nothing)},
      {"keepalive", TIMEOUT_LOOP_S, NULL, NULL,
       .tests = TESTS(
           without_keepalive_run_returns_with_a_deadline_pending,
           keepalive_runs_the_loop_until_the_deadline_fires,
           keepalive_off_restores_the_default,
           keepalive_follows_a_reset_deadline,
           keepalive_rejects_contexts_without_a_timer_of_their_own,
           keepalive_stops_holding_the_loop_once_cancelled,
           keepalive_stops_holding_the_loop_when_a_parent_is_cancelled,
           keepalive_on_a_done_context_does_not_hold_the_loop,
           keepalive_context_released_before_its_deadline_lets_the_loop_end)});
}
