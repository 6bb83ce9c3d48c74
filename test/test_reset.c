/* Idle timeouts and the loop: uvctx_reset_timeout() and uvctx_keepalive().
 *
 * uvctx_reset_timeout() moves a deadline context's own deadline to
 * uvctx_now() + timeout, later or earlier, while it is not done; the moved
 * deadline still never fires early. uvctx_keepalive() lets a deadline timer
 * keep its loop alive, which contexts otherwise never do.
 *
 * Waiting for a deadline is done with a ref'd polling timer of the test's own
 * (poll_until), except in the keepalive tests, where the point is that
 * nothing else keeps the loop alive; there an unref'd guard timer turns a
 * hang into a failure. Nothing asserts how late a deadline fires. A check
 * that needs the loop to have run on time (a loaded machine can stall it for
 * longer than a test's margin) is made when it can be, and counted and
 * reported on stderr when a stall made it impossible (stall_count_t), never
 * skipped in silence. */
#include <stdint.h>
#include <stdlib.h>

#include "helpers.h"
#include "test.h"

static int key_a;
static char val_a[] = "a";

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

/* r's watch runs once, with UV_ETIMEDOUT and cause, not before dl. */
static void assert_fires_at(rec_t *r, uint64_t dl, int cause, const char *row) {
  ck_assert_msg(poll_until(&loop, rec_called, r, dl + EVENTUALLY_MS), "%s",
                row);
  ck_assert_msg(r->calls == 1, "%s: %d calls", row, r->calls);
  ck_assert_msg(r->err == UV_ETIMEDOUT, "%s: err %d", row, r->err);
  ck_assert_msg(r->cause == cause, "%s: cause %d", row, r->cause);
  ck_assert_msg(r->now >= dl, "%s: fired at %llu, before its deadline %llu",
                row, (unsigned long long)r->now, (unsigned long long)dl);
}

/* Runs the loop, which must end by itself well before the guard's ms. The
 * guard outlives the call: its closing ends in the test's last uv_run. */
static stop_guard_t guard;

static void assert_loop_ends(uint64_t ms, const char *why) {
  stop_guard_start(&loop, &guard, ms);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_msg(!guard.fired, "%s", why);
  stop_guard_close(&guard);
}

/* --- uvctx_reset_timeout: moving the deadline --- */

/* The deadline of a timeout or an absolute deadline context moved later or
 * earlier, once or after many resets: the watch runs once, at the last
 * deadline set and never before, with the cause given when it was made. */
static const struct {
  const char *name;
  int absolute; /* uvctx_with_deadline(), else uvctx_with_timeout[_cause]() */
  uint64_t made_ms, moved_ms;
  int cause; /* given when made; 0: none */
  int churn; /* resets before the last one */
} moves[] = {
    {"later", 0, 10, 100, 0, 0},
    {"earlier, keeping its cause", 0, 60000, 10, UV_EPIPE, 0},
    {"earlier, an absolute deadline", 1, 60000, 5, 0, 0},
    {"after 1000 resets", 0, 5, 10, 0, 1000},
};

START_TEST(reset_moves_the_deadline_and_fires_once_at_the_last) {
  const char *row = moves[_i].name;
  rec_t r;
  uvctx_t *c;
  if (moves[_i].absolute)
    c = mk_deadline(&loop, uvctx_background(), uvctx_now() + moves[_i].made_ms);
  else if (moves[_i].cause != 0)
    c = mk_timeout_cause(&loop, uvctx_background(), moves[_i].made_ms,
                         moves[_i].cause);
  else
    c = mk_timeout(&loop, uvctx_background(), moves[_i].made_ms);
  uint64_t old = deadline_of(c);
  rec_watch(&r, NULL, c);
  for (int i = 0; i < moves[_i].churn; i++)
    ck_assert_int_eq(uvctx_reset_timeout(c, (i % 2) ? 1000 : 100000), 0);
  uint64_t moved = reset(c, moves[_i].moved_ms);

  if (moves[_i].moved_ms > moves[_i].made_ms + 20) {
    /* well past the old deadline, 70 ms before the new one */
    run_until_time(&loop, old + 20);
    stall_count_t sc;
    stall_count_init(&sc, "reset_moves_the_deadline_and_fires_once_at_the_last",
                     "not-fired-before-the-new-deadline");
    uint64_t now = uvctx_now();
    if (stall_check(&sc, now >= moved ? now - moved + 1 : 0)) {
      ck_assert_msg(r.calls == 0, "%s", row);
      assert_not_done(c);
    }
    stall_report(&sc);
  }
  assert_fires_at(&r, moved, moves[_i].cause ? moves[_i].cause : UV_ETIMEDOUT,
                  row);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_NOWAIT), 0);
  ck_assert_msg(r.calls == 1, "%s", row);

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
  stale_t s;
  rec_t r;
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
  uvctx_t *c = mk_timeout(&loop, uvctx_background(), 30000);
  uvctx_t *v = mk_value(c, &key_a, val_a);
  uvctx_t *own = mk_timeout(&loop, v, 20000);

  uint64_t earlier = reset(c, 10000);
  ck_assert_uint_eq(deadline_of(v), earlier);
  ck_assert_uint_eq(deadline_of(own), earlier); /* now the earliest */
  uint64_t later = reset(c, 50000);
  ck_assert_uint_eq(deadline_of(v), later);
  ck_assert_uint_lt(deadline_of(own), later); /* its own is earlier again */

  release_all(own, v, c);
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
  idle_t id = {0};
  stall_count_init(&id.stalls,
                   "reset_while_active_keeps_an_idle_timeout_from_firing",
                   "read-in-time");
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
  assert_fires_at(&id.rec, id.deadline, UV_ETIMEDOUT, "idle");

  uvctx_release(id.ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Only the context reset and its descendants finish, with its own cause. */
START_TEST(reset_to_zero_finishes_at_once) {
  rec_t r;
  uvctx_t *parent = mk_timeout(&loop, uvctx_background(), 60000);
  uint64_t parent_dl = deadline_of(parent);
  uvctx_t *c = mk_timeout_cause(&loop, parent, 50000, UV_EPROTO);
  uvctx_t *child = mk_cancel(&loop, c);
  uvctx_t *sibling = mk_timeout(&loop, parent, 50000);
  rec_watch(&r, NULL, c);

  ck_assert_int_eq(uvctx_reset_timeout(c, 0), 0);
  assert_done(c, UV_ETIMEDOUT, UV_EPROTO);
  assert_done(child, UV_ETIMEDOUT, UV_EPROTO);
  ck_assert_int_eq(r.calls, 0); /* never inside the call */
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(r.calls, 1);
  ck_assert_int_eq(r.err, UV_ETIMEDOUT);
  assert_not_done(parent);
  assert_not_done(sibling);
  ck_assert_uint_eq(deadline_of(parent), parent_dl);

  release_all(sibling, child, c, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(reset_after_done_is_ealready_and_changes_nothing) {
  rec_t r;
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *done[] = {mk_timeout(&loop, uvctx_background(), 60000),
                     mk_timeout(&loop, parent, 60000),
                     mk_timeout(&loop, uvctx_background(), 2),
                     mk_timeout(&loop, uvctx_background(), 0)};
  static const int errs[] = {UV_ECANCELED, UV_ECANCELED, UV_ETIMEDOUT,
                             UV_ETIMEDOUT};
  static const int causes[] = {UV_EIO, UV_EPIPE, UV_ETIMEDOUT, UV_ETIMEDOUT};
  uint64_t dls[4];
  for (int i = 0; i < 4; i++)
    dls[i] = deadline_of(done[i]);
  rec_watch(&r, NULL, done[2]);
  ck_assert_int_eq(uvctx_cancel_cause(done[0], UV_EIO), 0);
  ck_assert_int_eq(uvctx_cancel_cause(parent, UV_EPIPE), 0);
  ck_assert(poll_until(&loop, rec_called, &r, uvctx_now() + EVENTUALLY_MS));

  for (int i = 0; i < 4; i++) {
    ck_assert_msg(uvctx_reset_timeout(done[i], 10) == UV_EALREADY, "%d", i);
    ck_assert_msg(uvctx_reset_timeout(done[i], 0) == UV_EALREADY, "%d", i);
    ck_assert_msg(uvctx_reset_timeout(done[i], 10000) == UV_EALREADY, "%d", i);
    assert_done(done[i], errs[i], causes[i]);
    ck_assert_uint_eq(deadline_of(done[i]), dls[i]);
  }
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(r.calls, 1);

  release_all(done[3], done[2], done[1], done[0], parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Neither call applies to a context without a deadline timer of its own,
 * even one below a deadline: each is UV_EINVAL, moves no deadline, finishes
 * nothing and holds no loop. */
START_TEST(reset_and_keepalive_reject_contexts_without_a_timer_of_their_own) {
  uvctx_t *t = mk_timeout(&loop, uvctx_background(), 60000);
  uint64_t dl = deadline_of(t);
  uvctx_t *cancel = mk_cancel(&loop, t);
  uvctx_t *value = mk_value(t, &key_a, val_a); /* has t's deadline, no timer */
  uvctx_t *without = mk_without(t);
  uvctx_t *any = mk_any(&loop, t, cancel);
  uvctx_t *const no_timer[] = {NULL,   uvctx_background(), uvctx_todo(), cancel,
                               value, without,            any};

  for (size_t i = 0; i < sizeof no_timer / sizeof no_timer[0]; i++) {
    ck_assert_msg(uvctx_reset_timeout(no_timer[i], 10) == UV_EINVAL, "%zu", i);
    ck_assert_msg(uvctx_reset_timeout(no_timer[i], 0) == UV_EINVAL, "%zu", i);
    ck_assert_msg(uvctx_keepalive(no_timer[i], 1) == UV_EINVAL, "%zu", i);
    ck_assert_msg(uvctx_keepalive(no_timer[i], 0) == UV_EINVAL, "%zu", i);
  }
  ck_assert_uint_eq(deadline_of(t), dl);
  ck_assert_uint_eq(deadline_of(value), dl);
  assert_not_done(t);
  assert_not_done(cancel);
  assert_not_done(any);
  assert_loop_ends(EVENTUALLY_MS, "a rejected keepalive held the loop");

  release_all(any, without, value, cancel, t);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(resetting_a_parent_later_leaves_a_childs_own_deadline_alone) {
  rec_t rp, rc;
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

  /* its own deadline and cause, not the parent's */
  assert_fires_at(&rc, child_dl, UV_ENOBUFS, "child");
  ck_assert_int_eq(rp.calls, 0);
  assert_not_done(parent);
  ck_assert_int_eq(uvctx_unwatch(&rp.w), 0);

  release_all(child, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(resetting_a_parent_earlier_reaches_children_by_cancellation) {
  rec_t rp, rc;
  uvctx_t *parent = mk_timeout_cause(&loop, uvctx_background(), 60000, UV_EIO);
  uvctx_t *child = mk_timeout_cause(&loop, parent, 50000, UV_ENOBUFS);
  uint64_t child_own = deadline_of(child);
  rec_watch(&rp, NULL, parent);
  rec_watch(&rc, NULL, child);
  uint64_t parent_dl = reset(parent, 10);
  ck_assert_uint_eq(deadline_of(child), parent_dl); /* the earliest */

  assert_fires_at(&rc, parent_dl, UV_EIO, "child"); /* the parent's cause */
  ck_assert_int_eq(rp.calls, 1);
  ck_assert_uint_gt(child_own, parent_dl);

  release_all(child, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(reset_allocates_nothing) {
  ck_assert_int_eq(uvctx_replace_allocator(counting_malloc, free), 0);
  uvctx_t *c = mk_timeout(&loop, uvctx_background(), 60000);
  uvctx_t *v = mk_value(c, &key_a, val_a);
  ck_assert_ptr_nonnull(uvctx_done_async(c));
  long before = counting_allocs;
  for (int i = 0; i < 100; i++)
    ck_assert_int_eq(uvctx_reset_timeout(c, 1000 + (uint64_t)i), 0);
  ck_assert_int_eq(uvctx_reset_timeout(c, 0), 0);
  ck_assert_int_eq(counting_allocs, before);

  release_all(v, c);
  ASSERT_LOOP_CLOSES(&loop);
  ck_assert_int_eq(uvctx_replace_allocator(malloc, free), 0);
}
END_TEST

/* --- uvctx_keepalive: a deadline that holds the loop --- */

/* A deadline 60 s away does not hold the loop without keepalive, nor with
 * it turned off again, nor once the context or its parent was cancelled, nor
 * when the context was done before keepalive, nor once it is released. */
enum { NO_KEEPALIVE, TURNED_OFF, CANCELLED, PARENT_CANCELLED, DONE_FIRST,
       RELEASED, NLOOSE };
static const char *const loose[NLOOSE] = {
    "without keepalive", "turned off", "cancelled", "parent cancelled",
    "done before keepalive", "released"};

START_TEST(keepalive_lets_the_loop_end_unless_on_and_pending) {
  rec_t r;
  uvctx_t *p = mk_cancel(&loop, uvctx_background());
  uvctx_t *c = mk_timeout(&loop, p, 60000);
  uvctx_t *born_done = mk_timeout(&loop, uvctx_background(), 0);
  if (_i != RELEASED) /* a watch would hold c */
    rec_watch(&r, NULL, c);
  if (_i == DONE_FIRST) {
    ck_assert_int_eq(uvctx_cancel(c), 0);
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    /* Only UV_EINVAL is documented; a done context has nothing to keep. */
    int rc = uvctx_keepalive(c, 1);
    ck_assert(rc == 0 || rc == UV_EALREADY);
    rc = uvctx_keepalive(born_done, 1);
    ck_assert(rc == 0 || rc == UV_EALREADY);
  } else if (_i != NO_KEEPALIVE) {
    ck_assert_int_eq(uvctx_keepalive(c, 1), 0);
  }
  if (_i == TURNED_OFF) {
    ck_assert_int_eq(uvctx_keepalive(c, 1), 0); /* not counted */
    ck_assert_int_eq(uvctx_keepalive(c, 0), 0);
  }
  if (_i == CANCELLED || _i == PARENT_CANCELLED)
    ck_assert_int_eq(uvctx_cancel(_i == CANCELLED ? c : p), 0);
  if (_i == RELEASED)
    uvctx_release(c);

  assert_loop_ends(EVENTUALLY_MS, loose[_i]);
  if (_i < CANCELLED)
    assert_not_done(c);
  if (_i != RELEASED) {
    ck_assert_msg(r.calls == (_i >= CANCELLED), "%s", loose[_i]);
    if (r.calls == 0)
      ck_assert_int_eq(uvctx_unwatch(&r.w), 0);
    uvctx_release(c);
  }
  release_all(born_done, p);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Rows: the deadline as made; moved later by a reset after keepalive. */
START_TEST(keepalive_runs_the_loop_until_the_deadline_fires) {
  rec_t r;
  uvctx_t *c = mk_timeout(&loop, uvctx_background(), _i == 0 ? 20 : 5);
  uint64_t dl = deadline_of(c);
  rec_watch(&r, NULL, c);
  ck_assert_int_eq(uvctx_keepalive(c, 1), 0);
  if (_i == 1)
    dl = reset(c, 30);

  assert_loop_ends(30 + EVENTUALLY_MS,
                   "the loop stayed alive after the deadline");
  ck_assert_int_eq(r.calls, 1); /* the loop ran until its callback ran */
  ck_assert_int_eq(r.err, UV_ETIMEDOUT);
  ck_assert_uint_ge(r.now, dl);

  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

Suite *reset_suite(void) {
  return SUITE(
      "reset",
      {"reset_timeout", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           reset_never_fires_before_the_new_deadline,
           reset_is_reported_by_deadline_below_it,
           reset_while_active_keeps_an_idle_timeout_from_firing,
           reset_to_zero_finishes_at_once,
           reset_after_done_is_ealready_and_changes_nothing,
           reset_and_keepalive_reject_contexts_without_a_timer_of_their_own,
           resetting_a_parent_later_leaves_a_childs_own_deadline_alone,
           resetting_a_parent_earlier_reaches_children_by_cancellation,
           reset_allocates_nothing),
       .loops = LOOPS({reset_moves_the_deadline_and_fires_once_at_the_last, 0,
                       sizeof moves / sizeof moves[0]})},
      {"keepalive", TIMEOUT_LOOP_S, loop_setup, NULL,
       .loops = LOOPS(
           {keepalive_lets_the_loop_end_unless_on_and_pending, 0, NLOOSE},
           {keepalive_runs_the_loop_until_the_deadline_fires, 0, 2})});
}
