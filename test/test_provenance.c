/* Provenance: uvctx_id() and uvctx_done_info(), one test per reason and per
 * way a cancel travels (self, parent, any-context, another loop), with the
 * call site the uvctx_cancel macros record, from this thread and another.
 *
 * The expected site is built from __FILE__ and the line of the call, so a
 * test checks the exact string. */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "test.h"

static int key_a;

/* The site the macros record for a call on the line `line` of this file. */
static const char *site_at(int line) {
  static char buf[256];
  snprintf(buf, sizeof buf, "%s:%d", __FILE__, line);
  return buf;
}

/* uvctx_done_info(ctx) succeeds and says reason, via and origin. */
#define assert_info(ctx, reason_, via_, origin)                                \
  do {                                                                         \
    uvctx_done_info_t i_;                                                      \
    ck_assert_int_eq(uvctx_done_info((ctx), &i_), 0);                          \
    ck_assert_int_eq(i_.err, uvctx_err(ctx));                                  \
    ck_assert_int_eq(i_.cause, uvctx_cause(ctx));                              \
    ck_assert_int_eq(i_.reason, (reason_));                                    \
    ck_assert_int_eq(i_.via, (via_));                                          \
    ck_assert_uint_eq(i_.origin_id, uvctx_id(origin));                         \
  } while (0)

static uvctx_done_info_t info_of(const uvctx_t *ctx) {
  uvctx_done_info_t info;
  ck_assert_int_eq(uvctx_done_info(ctx, &info), 0);
  return info;
}

/* --- ids --- */

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

enum { NIDS = 3000 };
static uint64_t thread_ids[NIDS];

/* Value contexts may be made on any thread: ids from another block. */
static void make_values(void *arg) {
  (void)arg;
  for (int i = 0; i < NIDS; i++) {
    uvctx_t *v;
    if (uvctx_with_value(uvctx_background(), &key_a, NULL, &v) != 0)
      abort();
    thread_ids[i] = uvctx_id(v);
    uvctx_release(v);
  }
}

START_TEST(ids_are_fixed_for_roots_unique_and_growing_on_a_thread) {
  static uint64_t ids[2 * NIDS];
  loop_thread_t t;

  ck_assert_uint_eq(uvctx_id(NULL), 0);
  ck_assert_uint_eq(uvctx_id(uvctx_background()), 1);
  ck_assert_uint_eq(uvctx_id(uvctx_todo()), 2);
  loop_thread_start(&t, &loop, make_values, NULL);
  /* Every kind has one, ids grow on one thread (blocks of ids included). */
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  uvctx_t *d = mk_timeout(&loop, c, 60000);
  uvctx_t *v = mk_value(d, &key_a, NULL);
  uvctx_t *w = mk_without(v);
  uvctx_t *made[] = {c, d, v, w};
  for (int i = 0; i < 4; i++) {
    ck_assert_uint_gt(uvctx_id(made[i]), 2);
    if (i > 0)
      ck_assert_uint_gt(uvctx_id(made[i]), uvctx_id(made[i - 1]));
  }
  uint64_t before = uvctx_id(w);
  for (int i = 0; i < NIDS; i++) {
    uvctx_t *x = mk_cancel(&loop, c);
    ids[i] = uvctx_id(x);
    ck_assert_uint_gt(ids[i], i > 0 ? ids[i - 1] : before);
    uvctx_release(x);
  }
  ck_assert(run_until(&loop, &t.joined, 1));
  /* No id given twice across the two threads. */
  memcpy(ids + NIDS, thread_ids, sizeof thread_ids);
  qsort(ids, 2 * NIDS, sizeof ids[0], cmp_u64);
  for (int i = 1; i < 2 * NIDS; i++)
    ck_assert_uint_ne(ids[i], ids[i - 1]);
  /* Stable: the same after a cancel. */
  uint64_t id = uvctx_id(c);
  ck_assert_int_eq(uvctx_cancel(c), 0);
  ck_assert_uint_eq(uvctx_id(c), id);
  release_all(w, v, d, c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* --- uvctx_done_info: bad input, not done --- */

START_TEST(done_info_is_einval_on_null_and_eagain_until_done) {
  uvctx_done_info_t info;
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  uvctx_t *v = mk_value(c, &key_a, NULL);
  uvctx_t *w = mk_without(c);

  ck_assert_int_eq(uvctx_done_info(NULL, &info), UV_EINVAL);
  ck_assert_int_eq(uvctx_done_info(c, NULL), UV_EINVAL);
  ck_assert_int_eq(uvctx_done_info(c, &info), UV_EAGAIN);
  ck_assert_int_eq(uvctx_done_info(v, &info), UV_EAGAIN);
  ck_assert_int_eq(uvctx_cancel(c), 0);
  ck_assert_int_eq(uvctx_done_info(v, &info), 0);
  /* Never done: roots and without-cancel contexts. */
  ck_assert_int_eq(uvctx_done_info(uvctx_background(), &info), UV_EAGAIN);
  ck_assert_int_eq(uvctx_done_info(uvctx_todo(), &info), UV_EAGAIN);
  ck_assert_int_eq(uvctx_done_info(w, &info), UV_EAGAIN);
  release_all(w, v, c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* --- cancel calls --- */

/* On the loop thread: the site of the macro, the loop's time, self for the
 * context cancelled; parent for its child, whose value context reports the
 * same. A second cancel changes nothing. */
START_TEST(cancel_call_records_its_site_and_time_and_reaches_children) {
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  uvctx_t *child = mk_timeout(&loop, c, 60000);
  uvctx_t *v = mk_value(child, &key_a, NULL);
  uv_update_time(&loop);

  int line = __LINE__ + 1;
  ck_assert_int_eq(uvctx_cancel_cause(c, UV_EPIPE), 0);
  uvctx_done_info_t info = info_of(c);
  ck_assert_int_eq(info.err, UV_ECANCELED);
  ck_assert_int_eq(info.cause, UV_EPIPE);
  ck_assert_int_eq(info.reason, UVCTX_DONE_CANCEL);
  ck_assert_int_eq(info.via, UVCTX_VIA_SELF);
  ck_assert_uint_eq(info.origin_id, uvctx_id(c));
  ck_assert_str_eq(info.site, site_at(line));
  ck_assert_uint_eq(info.when_ms, uv_now(&loop));

  uvctx_done_info_t below = info_of(child);
  ck_assert_int_eq(below.reason, UVCTX_DONE_CANCEL);
  ck_assert_int_eq(below.via, UVCTX_VIA_PARENT);
  ck_assert_uint_eq(below.origin_id, uvctx_id(c));
  ck_assert_str_eq(below.site, site_at(line));
  ck_assert_uint_eq(below.when_ms, info.when_ms);
  assert_info(v, UVCTX_DONE_CANCEL, UVCTX_VIA_PARENT, c);

  ck_assert_int_eq(uvctx_cancel(child), UV_EALREADY);
  assert_info(child, UVCTX_DONE_CANCEL, UVCTX_VIA_PARENT, c);
  ck_assert_str_eq(info_of(child).site, site_at(line));
  release_all(v, child, c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* The functions, named in parentheses, record no site; the macro without a
 * cause, and uvctx_cancel_at with a site of the caller's, do. */
START_TEST(cancel_functions_record_no_site) {
  uvctx_t *c[4];
  for (int i = 0; i < 4; i++)
    c[i] = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq((uvctx_cancel)(c[0]), 0);
  ck_assert_int_eq((uvctx_cancel_cause)(c[1], UV_EIO), 0);
  int line = __LINE__ + 1;
  ck_assert_int_eq(uvctx_cancel(c[2]), 0);
  ck_assert_int_eq(uvctx_cancel_at(c[3], UV_EIO, "mine:7"), 0);
  ck_assert_ptr_null(info_of(c[0]).site);
  ck_assert_ptr_null(info_of(c[1]).site);
  ck_assert_int_eq(info_of(c[1]).cause, UV_EIO);
  ck_assert_str_eq(info_of(c[2]).site, site_at(line));
  ck_assert_str_eq(info_of(c[3]).site, "mine:7");
  for (int i = 0; i < 4; i++)
    assert_info(c[i], UVCTX_DONE_CANCEL, UVCTX_VIA_SELF, c[i]);
  ck_assert_int_eq(uvctx_cancel_at(c[0], 1, NULL), UV_EINVAL);
  ck_assert_int_eq(uvctx_cancel_at(NULL, 0, NULL), UV_EINVAL);
  release_all(c[3], c[2], c[1], c[0]);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* From another thread: the site of that thread's call, and the clock read
 * then; seen the same on the loop thread once its watch has run. */
START_TEST(cancel_from_another_thread_records_its_site_and_the_clock) {
  remote_cancel_t r = {0};
  rec_t rec;
  r.ctx = mk_cancel(&loop, uvctx_background());
  uvctx_t *child = mk_cancel(&loop, r.ctx);
  rec_watch(&rec, NULL, child);
  remote_cancel(&loop, &r, &rec);
  ck_assert_int_eq(r.rc, 0);
  uvctx_done_info_t info = info_of(child);
  ck_assert_int_eq(info.reason, UVCTX_DONE_CANCEL);
  ck_assert_int_eq(info.via, UVCTX_VIA_PARENT);
  ck_assert_uint_eq(info.origin_id, uvctx_id(r.ctx));
  ck_assert_str_eq(info.site, r.site);
  ck_assert_uint_ge(info.when_ms, r.before);
  ck_assert_uint_le(info.when_ms, r.after);
  assert_info(r.ctx, UVCTX_DONE_CANCEL, UVCTX_VIA_SELF, r.ctx);
  release_all(child, r.ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* --- deadlines --- */

/* Its own deadline, fired by its timer (at or after the deadline), and an
 * ancestor's for its child; born past the deadline, and reset to 0. */
START_TEST(deadline_is_own_for_it_and_an_ancestors_for_its_children) {
  rec_t rec;
  uvctx_t *d = mk_timeout(&loop, uvctx_background(), 5);
  uvctx_t *child = mk_cancel(&loop, d);
  uint64_t deadline = deadline_of(d);
  rec_watch(&rec, NULL, child);
  ck_assert(run_until(&loop, &rec.calls, 1));
  uvctx_done_info_t info = info_of(d);
  ck_assert_int_eq(info.err, UV_ETIMEDOUT);
  ck_assert_int_eq(info.reason, UVCTX_DONE_DEADLINE);
  ck_assert_int_eq(info.via, UVCTX_VIA_SELF);
  ck_assert_ptr_null(info.site);
  ck_assert_uint_ge(info.when_ms, deadline);
  ck_assert_uint_le(info.when_ms, rec.now);
  assert_info(child, UVCTX_DONE_DEADLINE, UVCTX_VIA_PARENT, d);
  ck_assert_uint_eq(info_of(child).when_ms, info.when_ms);

  uvctx_t *past = mk_deadline(&loop, uvctx_background(), uvctx_now() - 1);
  assert_info(past, UVCTX_DONE_DEADLINE, UVCTX_VIA_SELF, past);
  uvctx_t *born = mk_cancel(&loop, d); /* born done, from its parent */
  assert_info(born, UVCTX_DONE_DEADLINE, UVCTX_VIA_PARENT, d);
  uvctx_t *reset = mk_timeout(&loop, uvctx_background(), 60000);
  ck_assert_int_eq(uvctx_reset_timeout(reset, 0), 0);
  assert_info(reset, UVCTX_DONE_DEADLINE, UVCTX_VIA_SELF, reset);
  release_all(reset, born, past, child, d);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* --- signals --- */

START_TEST(signal_context_is_finished_by_its_signal) {
  static const int sigs[] = {SIGUSR2};
  catcher_t own;
  rec_t rec;
  uvctx_t *s;
  catcher_start(&own, &loop, SIGUSR2);
  ck_assert_int_eq(uvctx_with_signal(&loop, uvctx_background(), sigs, 1, &s),
                   0);
  uvctx_t *child = mk_cancel(&loop, s);
  rec_watch(&rec, NULL, child);
  send_signal(SIGUSR2);
  ck_assert(run_until(&loop, &rec.calls, 1));
  assert_info(s, UVCTX_DONE_SIGNAL, UVCTX_VIA_SELF, s);
  assert_info(child, UVCTX_DONE_SIGNAL, UVCTX_VIA_PARENT, s);
  catcher_close(&own);
  release_all(child, s);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* --- shutdown phases --- */

/* Phase 1 finishes stopping (its own event); phase 2 by the grace period
 * reaches the requests below the shutdown context. */
START_TEST(shutdown_began_then_grace_period_over) {
  uvctx_t *stopping, *sd;
  rec_t rec;
  ck_assert_int_eq(uvctx_with_shutdown(&loop, uvctx_background(), NULL, 0, 5,
                                       &stopping, &sd),
                   0);
  uvctx_t *req = mk_cancel(&loop, sd);
  uvctx_t *under = mk_cancel(&loop, stopping);
  rec_watch(&rec, NULL, req);
  ck_assert_int_eq(uvctx_shutdown(sd, UV_EIO), 0);
  assert_info(stopping, UVCTX_DONE_SHUTDOWN_BEGAN, UVCTX_VIA_SELF, stopping);
  assert_info(under, UVCTX_DONE_SHUTDOWN_BEGAN, UVCTX_VIA_PARENT, stopping);
  uvctx_done_info_t info;
  ck_assert_int_eq(uvctx_done_info(sd, &info), UV_EAGAIN);
  ck_assert(run_until(&loop, &rec.calls, 1));
  assert_info(sd, UVCTX_DONE_SHUTDOWN_GRACE, UVCTX_VIA_SELF, sd);
  assert_info(req, UVCTX_DONE_SHUTDOWN_GRACE, UVCTX_VIA_PARENT, sd);
  ck_assert_int_eq(info_of(req).cause, UV_EIO);
  release_all(under, req, stopping, sd);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Asked twice: phase 2 at once. */
START_TEST(shutdown_asked_again) {
  uvctx_t *stopping, *sd;
  ck_assert_int_eq(uvctx_with_shutdown(&loop, uvctx_background(), NULL, 0,
                                       60000, &stopping, &sd),
                   0);
  uvctx_t *req = mk_cancel(&loop, sd);
  ck_assert_int_eq(uvctx_shutdown(sd, 0), 0);
  ck_assert_int_eq(uvctx_shutdown(sd, 0), 0);
  assert_info(sd, UVCTX_DONE_SHUTDOWN_AGAIN, UVCTX_VIA_SELF, sd);
  assert_info(req, UVCTX_DONE_SHUTDOWN_AGAIN, UVCTX_VIA_PARENT, sd);
  release_all(req, stopping, sd);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Nothing in flight: phase 2 ends early; by a signal, phase 1 too. */
START_TEST(shutdown_over_early_and_begun_by_a_signal) {
  static const int sigs[] = {SIGUSR1};
  catcher_t own;
  uvctx_t *stopping, *sd;
  rec_t rec;
  catcher_start(&own, &loop, SIGUSR1);
  ck_assert_int_eq(uvctx_with_shutdown(&loop, uvctx_background(), sigs, 1,
                                       60000, &stopping, &sd),
                   0);
  rec_watch(&rec, NULL, sd);
  send_signal(SIGUSR1);
  ck_assert(run_until(&loop, &rec.calls, 1));
  assert_info(stopping, UVCTX_DONE_SHUTDOWN_BEGAN, UVCTX_VIA_SELF, stopping);
  assert_info(sd, UVCTX_DONE_SHUTDOWN_IDLE, UVCTX_VIA_SELF, sd);
  catcher_close(&own);
  release_all(stopping, sd);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* --- any-contexts --- */

/* Through the parent that finished it, not its first; born done, through
 * the first parent that is done. */
START_TEST(any_context_reports_the_parent_it_came_through) {
  uvctx_t *a = mk_cancel(&loop, uvctx_background());
  uvctx_t *b = mk_timeout(&loop, uvctx_background(), 60000);
  uvctx_t *bv = mk_value(b, &key_a, NULL);
  uvctx_t *parents[] = {a, bv};
  uvctx_t *any = mk_any_n(&loop, parents, 2);
  uvctx_t *below = mk_cancel(&loop, any);
  ck_assert_int_eq(uvctx_reset_timeout(b, 0), 0);
  assert_info(any, UVCTX_DONE_DEADLINE, UVCTX_VIA_ANY, b);
  assert_info(below, UVCTX_DONE_DEADLINE, UVCTX_VIA_PARENT, b);
  uvctx_t *born = mk_any_n(&loop, parents, 2);
  assert_info(born, UVCTX_DONE_DEADLINE, UVCTX_VIA_ANY, b);
  release_all(born, below, any, bv, b, a);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* --- across loops --- */

typedef struct {
  uvctx_t *parent; /* on the test's loop */
  uv_sem_t made, cancelled;
  uvctx_done_info_t info;
  int info_rc, run_rc, close_rc, watch_calls;
} xloop_t;

static void xloop_watch_cb(uvctx_watch_t *w, int err) {
  xloop_t *x = w->data;
  (void)err;
  x->watch_calls++;
}

/* Loop B's thread: a child of the parent on A. Once A has cancelled, the
 * info is there; the watch, made then, takes B's hand-off first (a watch
 * catches up with its loop's mailbox) and runs. */
static void xloop_main(void *arg) {
  xloop_t *x = arg;
  uv_loop_t b;
  uvctx_t *c;
  uvctx_watch_t w = {0};
  uv_loop_init(&b);
  if (uvctx_with_cancel(&b, x->parent, &c) != 0)
    abort();
  uv_sem_post(&x->made);
  uv_sem_wait(&x->cancelled);
  x->info_rc = uvctx_done_info(c, &x->info);
  w.data = x;
  uvctx_watch(c, &w, xloop_watch_cb);
  x->run_rc = uv_run(&b, UV_RUN_DEFAULT);
  uvctx_release(c);
  uv_run(&b, UV_RUN_DEFAULT);
  x->close_rc = uv_loop_close(&b);
}

START_TEST(cross_loop_child_is_finished_via_the_other_loop) {
  xloop_t x = {0};
  uv_thread_t tid;
  x.parent = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(uv_sem_init(&x.made, 0), 0);
  ck_assert_int_eq(uv_sem_init(&x.cancelled, 0), 0);
  ck_assert_int_eq(uv_thread_create(&tid, xloop_main, &x), 0);
  uv_sem_wait(&x.made);
  int line = __LINE__ + 1;
  ck_assert_int_eq(uvctx_cancel(x.parent), 0);
  uv_sem_post(&x.cancelled);
  ck_assert_int_eq(uv_thread_join(&tid), 0);
  ck_assert_int_eq(x.watch_calls, 1);
  ck_assert_int_eq(x.info_rc, 0);
  ck_assert_int_eq(x.info.reason, UVCTX_DONE_CANCEL);
  ck_assert_int_eq(x.info.via, UVCTX_VIA_LOOP);
  ck_assert_uint_eq(x.info.origin_id, uvctx_id(x.parent));
  ck_assert_str_eq(x.info.site, site_at(line));
  ck_assert_int_eq(x.close_rc, 0);
  uv_sem_destroy(&x.made);
  uv_sem_destroy(&x.cancelled);
  uvctx_release(x.parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* --- uvctx_format --- */

/* uvctx_format(ctx) is the chain (which starts with prefix), " #id",
 * " done Nms ago: ", tail, where N is how long ago ctx was done by the clock
 * read around the call. */
static void assert_done_format(const uvctx_t *ctx, const char *prefix,
                               const char *tail) {
  char buf[1024], id[32];
  uint64_t when = info_of(ctx).when_ms, ago = 0;
  int used = 0;
  uint64_t lo = uvctx_now() - when;
  format_ok(ctx, buf, sizeof buf);
  uint64_t hi = uvctx_now() - when;
  ck_assert_msg(has_prefix(buf, prefix), "\"%s\" does not start with \"%s\"",
                buf, prefix);
  snprintf(id, sizeof id, " #%" PRIu64 " done ", uvctx_id(ctx));
  char *at = strstr(buf, id);
  ck_assert_msg(at != NULL, "no \"%s\" in \"%s\"", id, buf);
  size_t hn = (size_t)(at - buf) + strlen(id) - strlen(" done ");
  ck_assert_int_eq(sscanf(buf + hn, " done %" SCNu64 "ms ago: %n", &ago, &used),
                   1);
  ck_assert_int_gt(used, 0);
  ck_assert_uint_ge(ago, lo);
  ck_assert_uint_le(ago, hi);
  ck_assert_str_eq(buf + hn + used, tail);
}

/* Truncated to cap bytes: what fits of the whole, and the whole length.
 * The "Nms ago" of two calls may differ (in length or digits): the pair is
 * taken again then; a truncation that is wrong stays wrong. */
static void assert_truncates(const uvctx_t *ctx, size_t cut_from_end) {
  char full[1024], buf[1024];
  for (int tries = 0; tries < 100; tries++) {
    int n = uvctx_format(ctx, full, sizeof full);
    size_t cap = (size_t)n - cut_from_end;
    int rc = uvctx_format(ctx, buf, cap);
    if (rc != n || strlen(buf) != cap - 1 || strncmp(buf, full, cap - 1) != 0)
      continue;
    return;
  }
  ck_abort_msg("\"%s\" is not the start of \"%s\"", buf, full);
}

START_TEST(format_tells_how_and_when_a_context_ended) {
  char head[64], tail[512];
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  uvctx_t *child = mk_cancel(&loop, c);
  uvctx_t *d = mk_deadline(&loop, uvctx_background(), uvctx_now() - 1);
  int line = __LINE__ + 1;
  ck_assert_int_eq(uvctx_cancel(c), 0);
  snprintf(head, sizeof head, "background.with_cancel #");
  snprintf(tail, sizeof tail, "cancel at %s", site_at(line));
  assert_done_format(c, head, tail);
  snprintf(head, sizeof head, "background.with_cancel.with_cancel #");
  snprintf(tail, sizeof tail, "cancel at %s of #%" PRIu64 " (via parent)",
           site_at(line), uvctx_id(c));
  assert_done_format(child, head, tail);
  snprintf(head, sizeof head, "background.with_deadline(");
  assert_done_format(d, head, "deadline");
  /* Truncated inside the tail: in "(via parent)", and before it. */
  assert_truncates(child, 3);
  assert_truncates(child, strlen(tail));
  release_all(d, child, c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

Suite *provenance_suite(void) {
  return SUITE(
      "provenance",
      {"ids", TIMEOUT_THREADS_S, loop_setup, NULL,
       .tests = TESTS(ids_are_fixed_for_roots_unique_and_growing_on_a_thread)},
      {"done_info", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           done_info_is_einval_on_null_and_eagain_until_done,
           cancel_call_records_its_site_and_time_and_reaches_children,
           cancel_functions_record_no_site,
           deadline_is_own_for_it_and_an_ancestors_for_its_children,
           signal_context_is_finished_by_its_signal,
           shutdown_began_then_grace_period_over, shutdown_asked_again,
           shutdown_over_early_and_begun_by_a_signal,
           any_context_reports_the_parent_it_came_through,
           format_tells_how_and_when_a_context_ended)},
      {"threads", TIMEOUT_THREADS_S, loop_setup, NULL,
       .tests = TESTS(cancel_from_another_thread_records_its_site_and_the_clock,
                      cross_loop_child_is_finished_via_the_other_loop)});
}
