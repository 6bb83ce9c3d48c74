/* uvctx_loop_stats(): the counters of a loop after known sequences of
 * events, its errors, and its extensible struct. */
#include <stddef.h>
#include <string.h>

#include "helpers.h"
#include "test.h"

static uvctx_stats_t stats_of(const uv_loop_t *l) {
  uvctx_stats_t st;
  memset(&st, 0xa5, sizeof st);
  st.size = sizeof st;
  ck_assert_int_eq(uvctx_loop_stats(l, &st), 0);
  ck_assert_uint_eq(st.size, sizeof st);
  return st;
}

static uint64_t sum(const uint64_t *a, int n) {
  uint64_t s = 0;
  for (int i = 0; i < n; i++)
    s += a[i];
  return s;
}

START_TEST(stats_errors) {
  uvctx_stats_t st = {.size = sizeof st};
  ck_assert_int_eq(uvctx_loop_stats(NULL, &st), UV_EINVAL);
  ck_assert_int_eq(uvctx_loop_stats(&loop, NULL), UV_EINVAL);
  /* A loop uvctx never saw. */
  ck_assert_int_eq(uvctx_loop_stats(&loop, &st), UV_ENOENT);
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  st.size = offsetof(uvctx_stats_t, live) + sizeof st.live - 1;
  ck_assert_int_eq(uvctx_loop_stats(&loop, &st), UV_EINVAL);
  uvctx_release(c);
  /* Gone with the loop's last context: counting starts again. */
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  st.size = sizeof st;
  ck_assert_int_eq(uvctx_loop_stats(&loop, &st), UV_ENOENT);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* A caller built with a smaller struct gets that many bytes, no more; a
 * bigger size is answered with the size filled. */
START_TEST(stats_fill_no_more_than_size) {
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  size_t small = offsetof(uvctx_stats_t, live) + sizeof(uint64_t[UVCTX_KIND_COUNT]);
  struct {
    uvctx_stats_t st;
    char after[64];
  } big;
  memset(&big, 0x5a, sizeof big);
  big.st.size = small;
  ck_assert_int_eq(uvctx_loop_stats(&loop, &big.st), 0);
  ck_assert_uint_eq(big.st.size, small);
  ck_assert_uint_eq(big.st.live[UVCTX_KIND_CANCEL], 1);
  for (size_t i = small; i < sizeof big; i++)
    ck_assert_int_eq(((unsigned char *)&big)[i], 0x5a);
  big.st.size = sizeof big;
  ck_assert_int_eq(uvctx_loop_stats(&loop, &big.st), 0);
  ck_assert_uint_eq(big.st.size, sizeof(uvctx_stats_t));
  ck_assert_uint_eq(big.st.created, 1);
  for (size_t i = 0; i < sizeof big.after; i++)
    ck_assert_int_eq((unsigned char)big.after[i], 0x5a);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Live by kind, created, finished by reason and by path, released, watches:
 * each after a known step. */
START_TEST(stats_count_a_known_sequence) {
  static const int sigs[] = {SIGUSR1};
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  uvctx_t *d = mk_timeout(&loop, c, 60000);
  uvctx_t *v = mk_value(d, &loop, NULL); /* not counted: no loop */
  uvctx_t *s, *stopping, *sd;
  ck_assert_int_eq(uvctx_with_signal(&loop, c, sigs, 1, &s), 0);
  uvctx_t *parents[] = {d, s};
  uvctx_t *any = mk_any_n(&loop, parents, 2);
  ck_assert_int_eq(uvctx_with_shutdown(&loop, uvctx_background(), NULL, 0,
                                       60000, &stopping, &sd),
                   0);
  uvctx_stats_t st = stats_of(&loop);
  const uint64_t live[UVCTX_KIND_COUNT] = {2, 1, 1, 1, 1};
  for (int k = 0; k < UVCTX_KIND_COUNT; k++)
    ck_assert_uint_eq(st.live[k], live[k]);
  ck_assert_uint_eq(st.created, 6);
  ck_assert_uint_eq(st.finished, 0);
  ck_assert_uint_eq(st.released, 0);

  rec_t r[2];
  rec_watch(&r[0], NULL, v);
  rec_watch(&r[1], NULL, any);
  ck_assert_int_eq(uvctx_cancel(c), 0); /* c, d, s, any */
  st = stats_of(&loop);
  ck_assert_uint_eq(st.finished, 4);
  ck_assert_uint_eq(st.finished_by_reason[UVCTX_DONE_CANCEL], 4);
  ck_assert_uint_eq(st.finished_via[UVCTX_VIA_SELF], 1);
  ck_assert_uint_eq(st.finished_via[UVCTX_VIA_PARENT], 2);
  ck_assert_uint_eq(st.finished_via[UVCTX_VIA_ANY], 1);
  ck_assert_uint_eq(st.watches_run, 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_uint_eq(stats_of(&loop).watches_run, 2);

  /* Shutdown with a request in flight: phase 1 (stopping), then asked
   * again (sd, req). A child of a done context is born done and counted as
   * finished at once. */
  uvctx_t *req = mk_cancel(&loop, sd);
  ck_assert_int_eq(uvctx_shutdown(sd, 0), 0);
  ck_assert_int_eq(uvctx_shutdown(sd, 0), 0);
  uvctx_t *born = mk_cancel(&loop, sd);
  st = stats_of(&loop);
  ck_assert_uint_eq(st.created, 8);
  ck_assert_uint_eq(st.finished, 8);
  ck_assert_uint_eq(st.finished_by_reason[UVCTX_DONE_SHUTDOWN_BEGAN], 1);
  ck_assert_uint_eq(st.finished_by_reason[UVCTX_DONE_SHUTDOWN_AGAIN], 3);
  ck_assert_uint_eq(st.finished_via[UVCTX_VIA_SELF], 3);
  ck_assert_uint_eq(st.finished_via[UVCTX_VIA_PARENT], 4);
  ck_assert_uint_eq(sum(st.finished_by_reason, UVCTX_DONE_REASON_COUNT),
                    st.finished);
  ck_assert_uint_eq(sum(st.finished_via, UVCTX_VIA_COUNT), st.finished);

  release_all(born, any, s, v, d);
  st = stats_of(&loop);
  ck_assert_uint_eq(st.released, 4); /* v is not counted */
  ck_assert_uint_eq(st.live[UVCTX_KIND_CANCEL], 3); /* c, stopping, req */
  ck_assert_uint_eq(st.live[UVCTX_KIND_DEADLINE], 0);
  ck_assert_uint_eq(st.live[UVCTX_KIND_SIGNAL], 0);
  ck_assert_uint_eq(st.live[UVCTX_KIND_ANY], 0);
  release_all(req, stopping, sd, c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* A deadline that fired goes in the deadline lag histogram, measured from
 * the deadline: one count, in a bucket no lower than the time the loop
 * took, which is at least 0. */
START_TEST(stats_deadline_lag) {
  rec_t r;
  uvctx_t *d = mk_timeout(&loop, uvctx_background(), 2);
  rec_watch(&r, NULL, d);
  ck_assert(run_until(&loop, &r.calls, 1));
  uvctx_stats_t st = stats_of(&loop);
  ck_assert_uint_eq(sum(st.deadline_lag, UVCTX_LAG_BUCKETS), 1);
  ck_assert_uint_eq(sum(st.cancel_lag, UVCTX_LAG_BUCKETS), 0);
  ck_assert_uint_eq(st.finished_by_reason[UVCTX_DONE_DEADLINE], 1);
  /* The lag is within the bucket it is counted in. */
  static const uint64_t bounds_us[] = UVCTX_LAG_BOUNDS_US;
  int b = 0;
  while (st.deadline_lag[b] == 0)
    b++;
  if (b < UVCTX_LAG_BUCKETS - 1)
    ck_assert_uint_le(st.deadline_lag_sum_ns, bounds_us[b] * 1000);
  if (b > 0)
    ck_assert_uint_gt(st.deadline_lag_sum_ns, bounds_us[b - 1] * 1000);
  /* Born past its deadline: finished, but no timer was late. */
  uvctx_t *past = mk_deadline(&loop, uvctx_background(), uvctx_now() - 5);
  ck_assert_uint_eq(sum(stats_of(&loop).deadline_lag, UVCTX_LAG_BUCKETS), 1);
  release_all(past, d);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

static void release_remotely(void *arg) { uvctx_release(arg); }

/* A cancel from another thread is a hand-off, with its lag; so is a last
 * release there. */
START_TEST(stats_cross_thread_handoffs_and_cancel_lag) {
  remote_cancel_t r = {0};
  rec_t rec;
  loop_thread_t t;
  r.ctx = mk_cancel(&loop, uvctx_background());
  uvctx_t *child = mk_cancel(&loop, r.ctx);
  rec_watch(&rec, NULL, child);
  remote_cancel(&loop, &r, &rec);
  ck_assert_int_eq(r.rc, 0);
  uvctx_stats_t st = stats_of(&loop);
  ck_assert_uint_eq(st.handoffs, 1);
  ck_assert_uint_eq(st.handoff_cancels, 1);
  ck_assert_uint_eq(sum(st.cancel_lag, UVCTX_LAG_BUCKETS), 1);
  ck_assert_uint_gt(st.cancel_lag_sum_ns, 0);

  uvctx_t *other = mk_cancel(&loop, uvctx_background());
  uvctx_t *gone = mk_cancel(&loop, other);
  loop_thread_start(&t, &loop, release_remotely, gone);
  ck_assert(run_until(&loop, &t.joined, 1));
  st = stats_of(&loop);
  ck_assert_uint_eq(st.handoffs, 2);
  ck_assert_uint_eq(st.handoff_cancels, 1);
  ck_assert_uint_eq(st.released, 1);
  release_all(other, child, r.ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

Suite *stats_suite(void) {
  return SUITE("stats",
               {"counts", TIMEOUT_LOOP_S, loop_setup, NULL,
                .tests = TESTS(stats_errors, stats_fill_no_more_than_size,
                               stats_count_a_known_sequence,
                               stats_deadline_lag)},
               {"threads", TIMEOUT_THREADS_S, loop_setup, NULL,
                .tests = TESTS(stats_cross_thread_handoffs_and_cancel_lag)});
}
