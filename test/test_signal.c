/* Signals: uvctx_with_signal and uvctx_signal_received (Go's
 * signal.NotifyContext).
 *
 * The tests send SIGUSR1, SIGUSR2 and SIGHUP to this process, whose default
 * action would end it: the fixture keeps a catcher (an unref'd uv_signal_t)
 * on each, which a test can also wait on. A context's handles are unref'd
 * too, so a test waits for a callback with run_until(). */
#include <signal.h>

#include "helpers.h"
#include "test.h"

static int key_a; /* keys compare by address */

static uvctx_t *mk_signal(uvctx_t *parent, const int *signums, size_t count) {
  uvctx_t *c = NULL;
  ck_assert_int_eq(uvctx_with_signal(&loop, parent, signums, count, &c), 0);
  ck_assert_ptr_nonnull(c);
  return c;
}

static uvctx_t *mk_signal1(int signum) {
  return mk_signal(uvctx_background(), &signum, 1);
}

/* The fixture: the loop and a catcher on each signal sent. sig_end() closes
 * them and checks that the loop closes. */
static const int sent_signals[3] = {SIGUSR1, SIGUSR2, SIGHUP};
static catcher_t own[3];

static void sig_setup(void) {
  loop_setup();
  for (int i = 0; i < 3; i++)
    catcher_start(&own[i], &loop, sent_signals[i]);
}

static void sig_end(void) {
  for (int i = 0; i < 3; i++)
    catcher_close(&own[i]);
  ASSERT_LOOP_CLOSES(&loop);
}

/* Sends signum; waits until our catcher has it, and so every listener. */
static int send_and_wait(int signum) {
  catcher_t *c = &own[signum == SIGUSR1 ? 0 : signum == SIGUSR2 ? 1 : 2];
  int got = c->got;
  send_signal(signum);
  return run_until(&loop, &c->got, got + 1);
}

/* Rec actions: action_rc is the signal its context reports in the callback;
 * the second then drops the context's last reference. */
static void read_signal(rec_t *r) {
  r->action_rc = uvctx_signal_received(r->ctx);
}

static void read_signal_and_release(rec_t *r) {
  read_signal(r);
  uvctx_release(r->ctx);
}

/* ---------------------------------------------------------------------------
 * What finishes the context: a signal, a cancel, the parent
 * ------------------------------------------------------------------------- */

/* A context listening for sigs is sent the signals of `sent` in turn (0
 * ends them): the first it listens for finishes it with UV_ECANCELED and is
 * what uvctx_signal_received() reports, already in the watch callback;
 * later ones change nothing. Cancelled first, it records none. */
typedef struct {
  const char *name;
  int sigs[3];
  size_t count;
  int cancel_first;
  int sent[3];
  int received;
} sigrow_t;

static const sigrow_t sigrows[] = {
    {"none sent", {SIGUSR1}, 1, 0, {0}, 0},
    {"the one listened for", {SIGUSR1}, 1, 0, {SIGUSR1}, SIGUSR1},
    {"one of three listened for", {SIGUSR1, SIGUSR2, SIGHUP}, 3, 0, {SIGUSR2},
     SIGUSR2},
    {"only the first counts", {SIGUSR1, SIGUSR2}, 2, 0,
     {SIGUSR2, SIGUSR1, SIGUSR2}, SIGUSR2},
    {"one not listened for", {SIGUSR1}, 1, 0, {SIGUSR2}, 0},
    {"one after a cancel", {SIGUSR1}, 1, 1, {SIGUSR1}, 0},
};

START_TEST(the_first_signal_listened_for_finishes_the_context) {
  const sigrow_t *q = &sigrows[_i];
  const int done = q->received != 0 || q->cancel_first;
  rec_t p;
  uvctx_t *c = mk_signal(uvctx_background(), q->sigs, q->count);
  rec_watch(&p, NULL, c);
  p.action = read_signal;
  ck_row(q->name, uvctx_signal_received(c), ==, 0);
  run_for(&loop, 5);
  ck_row(q->name, uvctx_err(c), ==, 0);
  ck_row(q->name, uvctx_cause(c), ==, 0);
  ck_row(q->name, uvctx_signal_received(c), ==, 0);
  if (q->cancel_first) {
    ck_row(q->name, uvctx_cancel(c), ==, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_row(q->name, p.calls, ==, 1);
    ck_row(q->name, uvctx_signal_received(c), ==, 0);
  }

  for (size_t k = 0; k < 3 && q->sent[k] != 0; k++) {
    ck_row(q->name, send_and_wait(q->sent[k]), ==, 1);
    if (k == 0 && done)
      ck_row(q->name, run_until(&loop, &p.calls, 1), ==, 1);
  }
  uv_run(&loop, UV_RUN_NOWAIT);
  ck_row(q->name, p.calls, ==, done);
  ck_row(q->name, uvctx_err(c), ==, done ? UV_ECANCELED : 0);
  if (done) {
    ck_row(q->name, p.err, ==, UV_ECANCELED);
    ck_row(q->name, uvctx_cause(c), !=, 0);
    ck_row(q->name, p.action_rc, ==, q->received); /* in the callback */
  }
  ck_row(q->name, uvctx_signal_received(c), ==, q->received);
  if (!done) /* the pending watch holds c */
    ck_row(q->name, uvctx_unwatch(&p.w), ==, 0);
  uvctx_release(c);
  sig_end();
}
END_TEST

/* The signal finishes every context listening for it (s and b), except
 * one released before it came; s's watches run in order, then those of its
 * descendants. */
START_TEST(signal_finishes_every_context_on_it_and_their_descendants_in_order) {
  journal_t j = {0};
  rec_t ps, pc, pv, ps2, pb;
  uvctx_t *s = mk_signal1(SIGHUP);
  uvctx_t *c = mk_cancel(&loop, s);
  uvctx_t *v = mk_value(c, &key_a, NULL);
  uvctx_t *b = mk_signal1(SIGHUP);
  uvctx_release(mk_signal1(SIGHUP));
  uv_run(&loop, UV_RUN_NOWAIT);
  rec_watch(&pv, &j, v);
  rec_watch(&pc, &j, c);
  rec_watch(&ps, &j, s);
  rec_watch(&ps2, &j, s);
  rec_watch(&pb, NULL, b);

  send_signal(SIGHUP);
  ck_assert(run_until(&loop, &j.ran, 4));
  ck_assert(run_until(&loop, &pb.calls, 1));
  ck_assert_int_eq(uvctx_signal_received(s), SIGHUP);
  ck_assert_int_eq(uvctx_signal_received(b), SIGHUP);
  ck_assert_int_eq(uvctx_err(c), UV_ECANCELED);
  ck_assert_int_eq(uvctx_err(v), UV_ECANCELED);
  ck_assert_int_eq(ps.calls, 1);
  ck_assert_int_eq(ps2.calls, 1);
  ck_assert_int_eq(pc.calls, 1);
  ck_assert_int_eq(pv.calls, 1);
  ck_assert_int_eq(pc.err, UV_ECANCELED);
  ck_assert_int_lt(ps.seq, ps2.seq);
  ck_assert_int_lt(ps2.seq, pc.seq);
  ck_assert_int_lt(pc.seq, pv.seq);
  release_all(b, v, c, s);
  sig_end();
}
END_TEST

/* A parent done before or after the context is made finishes it at once,
 * with the parent's cause, and no signal is recorded. */
START_TEST(parent_done_finishes_it_with_signal_received_0) {
  const char *row = _i == 0 ? "done before" : "done after";
  const int cause = _i == 0 ? UV_EIO : UV_EPIPE;
  rec_t p;
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  if (_i == 0)
    ck_row(row, uvctx_cancel_cause(parent, cause), ==, 0);
  uvctx_t *c = mk_signal(parent, sent_signals, 1);
  rec_watch(&p, NULL, c);
  if (_i == 1)
    ck_row(row, uvctx_cancel_cause(parent, cause), ==, 0);
  ck_row_done(row, c, UV_ECANCELED, cause); /* at once, loop thread */
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_row(row, p.calls, ==, 1);
  ck_row(row, p.err, ==, UV_ECANCELED);
  ck_row(row, uvctx_signal_received(c), ==, 0);
  release_all(c, parent);
  sig_end();
}
END_TEST

START_TEST(signal_received_is_0_for_null_and_other_kinds) {
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(uvctx_cancel(c), 0);
  ck_assert_int_eq(uvctx_signal_received(NULL), 0);
  ck_assert_int_eq(uvctx_signal_received(uvctx_background()), 0);
  ck_assert_int_eq(uvctx_signal_received(uvctx_todo()), 0);
  ck_assert_int_eq(uvctx_signal_received(c), 0);
  uvctx_release(c);
  sig_end();
}
END_TEST

/* ---------------------------------------------------------------------------
 * Liveness and release
 * ------------------------------------------------------------------------- */

START_TEST(signal_context_does_not_keep_the_loop_alive) {
  stop_guard_t g;
  uvctx_t *c = mk_signal(uvctx_background(), sent_signals, 2);
  stop_guard_start(&loop, &g, 100);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(g.fired, 0);
  ck_assert_int_eq(uvctx_err(c), 0);
  stop_guard_close(&g);
  uvctx_release(c);
  sig_end();
}
END_TEST

/* Released before its signal came, after, or in its watch's callback, the
 * context stops listening: the next signal reaches only our catcher, and the
 * loop closes. */
static const char *const releases[] = {"before its signal", "after its signal",
                                       "in its own watch callback"};

START_TEST(release_stops_listening) {
  const char *row = releases[_i];
  rec_t p;
  uvctx_t *c = mk_signal1(SIGUSR2);
  if (_i > 0) {
    rec_watch(&p, NULL, c);
    if (_i == 2)
      p.action = read_signal_and_release;
    send_signal(SIGUSR2);
    ck_row(row, run_until(&loop, &p.calls, 1), ==, 1);
  }
  if (_i == 2)
    ck_row(row, p.action_rc, ==, SIGUSR2);
  else
    uvctx_release(c);
  uv_run(&loop, UV_RUN_DEFAULT); /* its handles close */
  ck_row(row, send_and_wait(SIGUSR2), ==, 1);
  ck_row(row, own[1].got, ==, 1 + (_i > 0));
  sig_end();
}
END_TEST

/* ---------------------------------------------------------------------------
 * Bad input: UV_EINVAL, *out untouched, nothing leaked
 * ------------------------------------------------------------------------- */

static void expect_einval(uv_loop_t *loop, uvctx_t *parent, const int *signums,
                          size_t count, int with_out) {
  uvctx_t *out = SENTINEL;
  ck_assert_int_eq(uvctx_with_signal(loop, parent, signums, count,
                                     with_out ? &out : NULL),
                   UV_EINVAL);
  ck_assert_ptr_eq(out, SENTINEL);
}

START_TEST(null_arguments_and_zero_count_are_einval) {
  int sig = SIGUSR1;
  expect_einval(NULL, uvctx_background(), &sig, 1, 1);
  expect_einval(&loop, NULL, &sig, 1, 1);
  expect_einval(&loop, uvctx_background(), NULL, 1, 1);
  expect_einval(&loop, uvctx_background(), &sig, 1, 0);
  expect_einval(&loop, uvctx_background(), &sig, 0, 1);
  sig_end();
}
END_TEST

/* Each number that cannot be caught, in each list of helpers.h: nothing is
 * left (no handle open, no memory leaked), and the parent is as it was. */
START_TEST(signal_numbers_that_cannot_be_caught_are_einval) {
  int lists[NBAD_LISTS][3];
  rec_t p;
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  bad_signum_lists(bad_signums[_i], lists);
  rec_watch(&p, NULL, parent);
  expect_einval(&loop, uvctx_background(), lists[0], 1, 1);
  for (size_t i = 0; i < NBAD_LISTS; i++)
    expect_einval(&loop, parent, lists[i], bad_list_counts[i], 1);
  ck_assert_int_eq(uvctx_err(parent), 0);
  ck_assert_int_eq(uvctx_cancel(parent), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(p.calls, 1);
  uvctx_release(parent);
  sig_end();
}
END_TEST

Suite *signal_suite(void) {
  return SUITE(
      "signal",
      {"finish", TIMEOUT_LOOP_S, sig_setup, NULL,
       .tests = TESTS(
           signal_finishes_every_context_on_it_and_their_descendants_in_order,
           signal_received_is_0_for_null_and_other_kinds),
       .loops = LOOPS({the_first_signal_listened_for_finishes_the_context, 0,
                       NROWS(sigrows)},
                      {parent_done_finishes_it_with_signal_received_0, 0, 2})},
      {"liveness_release", TIMEOUT_LOOP_S, sig_setup, NULL,
       .tests = TESTS(signal_context_does_not_keep_the_loop_alive),
       .loops = LOOPS({release_stops_listening, 0, 3})},
      {"bad_input", TIMEOUT_LOOP_S, sig_setup, NULL,
       .tests = TESTS(null_arguments_and_zero_count_are_einval),
       .loops = LOOPS({signal_numbers_that_cannot_be_caught_are_einval, 0,
                       NBAD_SIGNUMS})});
}
