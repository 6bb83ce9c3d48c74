/* The loop's mailbox (src/loop.c) when other threads post more between two
 * of its turns than its array holds: the posts that find it full are found
 * by a walk of the loop's trees, so each is acted on once, none is lost, and
 * the loop closes with every byte given back. Whether the array could grow
 * (the loop allocates, after the overflow) or not (every allocation refused
 * while the loop drains) changes how many walks that takes, not what comes
 * of it.
 *
 * The thread does all its work, and is joined, before the loop runs: so
 * every post is pending at once, well over the 64 the mailbox starts with.
 * The rows differ in how the loop first finds them (see the enum). */
#include <stdlib.h>

#include "helpers.h"

#define NCTX 1000 /* half under one parent, half tops of the loop */

typedef struct {
  uvctx_t *ctx[NCTX];
  int cancel; /* the thread cancels each; else it drops each one's last */
} batch_t;

static void thread_main(void *arg) {
  batch_t *b = arg;

  for (int i = 0; i < NCTX; i++)
    if (b->cancel)
      uvctx_cancel(b->ctx[i]);
    else
      uvctx_release(b->ctx[i]);
}

static void on_thread(batch_t *b) {
  uv_thread_t t;

  ck_assert_int_eq(uv_thread_create(&t, thread_main, b), 0);
  ck_assert_int_eq(uv_thread_join(&t), 0);
}

static void setup(void) {
  counting_install();
  loop_setup();
}

/* How the loop finds the posts waiting. */
enum {
  GROWS,         /* its async callback drains, and grows the arrays */
  NO_MEMORY,     /* the same, every allocation refused: no growth */
  HALF_GROWN,    /* the first new array made, the second refused */
  RELEASE_FIRST  /* a release on the loop thread drains first, which must
                    not allocate (the loop grows the arrays later) */
};

START_TEST(posts_past_the_mailbox_array_are_each_acted_on_once) {
  static batch_t b;
  static rec_t rec[NCTX];
  int mode = _i;
  journal_t j = {0};
  rec_t drained;
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *spare = mk_cancel(&loop, uvctx_background());
  long allocs;

  for (int i = 0; i < NCTX; i++) {
    b.ctx[i] = mk_cancel(&loop, i % 2 ? parent : uvctx_background());
    rec_watch(&rec[i], &j, b.ctx[i]);
  }
  rec_drain(&drained, NULL, parent);

  allocs = counting_allocs;
  counting_fail_all = mode == NO_MEMORY;
  if (mode == HALF_GROWN) {
    counting_allowed = 1;
    counting_one_shot = 1;
  }
  b.cancel = 1;
  on_thread(&b);
  if (mode == RELEASE_FIRST) {
    uvctx_release(spare);
    spare = NULL;
    ck_assert_int_eq(counting_allocs, allocs);
    ck_assert_int_eq(j.ran, 0); /* due, delivered by the loop's idle */
  }
  ck_assert(run_until(&loop, &j.ran, NCTX));
  for (int i = 0; i < NCTX; i++) {
    ck_assert_msg(rec[i].calls == 1, "context %d: %d calls", i, rec[i].calls);
    ck_assert_int_eq(rec[i].err, UV_ECANCELED);
  }
  ck_assert_int_eq(uvctx_err(parent), 0);
  ck_assert_int_eq(uvctx_cancel(parent), 0); /* its drain waits for them */

  /* The last reference of each was taken on the loop thread: each comes
   * back to it through the mailbox (src/refs.c). */
  b.cancel = 0;
  on_thread(&b);
  ck_assert(run_until(&loop, &drained.calls, 1));
  counting_fail_all = 0;
  /* Nothing but the loop's growing the arrays allocates here: proof that
   * posts found them full. */
  if (mode == NO_MEMORY || mode == HALF_GROWN)
    ck_assert_int_gt(counting_refused, 0);
  if (mode != NO_MEMORY)
    ck_assert_int_gt(counting_allocs, allocs);
  ck_assert_int_eq(live_contexts(&loop), 1 + (spare != NULL));
  release_all(parent, spare);
  ASSERT_LOOP_CLOSES(&loop);
  ck_assert_int_eq(counting_outstanding, 0);
}
END_TEST

/* Two threads each cancel and drop the last reference of their own half of
 * the contexts while the loop runs: posts race the drains, and whether and
 * where the arrays fill up, grow and are walked is left to the scheduler
 * (this is the case for ASan and TSan). Each watch is still called once and
 * every context goes. */
#define NTHREADS 2

static batch_t halves[NTHREADS];

static void cancel_then_release(void *arg) {
  batch_t *b = arg;

  for (int i = 0; i < NCTX; i++) {
    uvctx_cancel(b->ctx[i]);
    uvctx_release(b->ctx[i]);
  }
}

START_TEST(posts_racing_the_drains_are_each_acted_on_once) {
  static rec_t rec[NTHREADS][NCTX];
  loop_thread_t threads[NTHREADS];
  journal_t j = {0};
  rec_t drained;
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());

  for (int t = 0; t < NTHREADS; t++)
    for (int i = 0; i < NCTX; i++) {
      halves[t].ctx[i] = mk_cancel(&loop, i % 2 ? parent : uvctx_background());
      rec_watch(&rec[t][i], &j, halves[t].ctx[i]);
    }
  ck_assert_int_eq(uvctx_cancel(parent), 0);
  rec_drain(&drained, NULL, parent);
  /* parent's children, done with it */
  ck_assert(run_until(&loop, &j.ran, NTHREADS * NCTX / 2));

  for (int t = 0; t < NTHREADS; t++)
    loop_thread_start(&threads[t], &loop, cancel_then_release, &halves[t]);
  for (int t = 0; t < NTHREADS; t++)
    ck_assert(run_until(&loop, &threads[t].joined, 1));
  ck_assert(run_until(&loop, &j.ran, NTHREADS * NCTX)); /* the tops too */
  ck_assert(run_until(&loop, &drained.calls, 1));
  for (int t = 0; t < NTHREADS; t++)
    for (int i = 0; i < NCTX; i++)
      ck_assert_msg(rec[t][i].calls == 1, "thread %d, context %d: %d calls", t,
                    i, rec[t][i].calls);
  ck_assert_int_eq(live_contexts(&loop), 1);
  uvctx_release(parent);
  ASSERT_LOOP_CLOSES(&loop);
  ck_assert_int_eq(counting_outstanding, 0);
}
END_TEST

Suite *mailbox_suite(void) {
  return SUITE(
      "mailbox",
      /* Threads and a few thousand posts per test: well under a second. */
      {"overflow", TIMEOUT_THREADS_S, setup, counting_uninstall,
       .loops = LOOPS({posts_past_the_mailbox_array_are_each_acted_on_once,
                       GROWS, RELEASE_FIRST + 1},
                      {posts_racing_the_drains_are_each_acted_on_once, 0, 1})});
}
