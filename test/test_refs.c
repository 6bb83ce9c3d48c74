/* References taken and dropped on the loop thread and on other threads, in
 * every order that crosses the two counts of src/refs.c: the loop thread's
 * own, the other threads', a reference handed back to the loop thread when
 * the other threads' count is 0, and the count becoming shared when the loop
 * thread drops its last. Each row is a sequence of steps on one context; a
 * step on "a thread" runs on a new thread, joined before the next step. After
 * each step uvctx_dump() must show the references alive, and the context
 * must still be there (its parent's drain waits for it); after the last, the
 * drain runs and the loop closes (nothing leaked: ASan, valgrind). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "test.h"

/* R: retain on the loop thread, r: release on it; T and t: the same on
 * another thread. Every row ends with its last reference dropped. */
static const struct {
  const char *steps;
  const char *why;
} rows[] = {
    {"r", "the loop thread's only reference"},
    {"Rtr", "a thread drops a loop reference: handed back, then the last"},
    {"Rrt", "a thread drops the last reference, one of the loop's"},
    {"Trt", "the loop's last goes first: shared, a thread ends it"},
    {"Ttr", "a thread's own reference and back, then the loop's last"},
    {"RRttr", "two references handed back"},
    {"TTrtt", "shared with two left, both dropped by threads"},
    {"RTtrt", "a thread's own, then one of the loop's handed back"},
    {"RrTtt", "handed back while the other count is shared-to-be"},
};

typedef struct {
  uvctx_t *ctx;
  char op;
} step_t;

static void thread_step(void *arg) {
  step_t *s = arg;

  if (s->op == 'T')
    uvctx_retain(s->ctx);
  else
    uvctx_release(s->ctx);
}

/* The refs= that uvctx_dump() prints for ctx, the first line. */
static int dumped_refs(const uvctx_t *ctx) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  const char *at;
  int refs = -1;

  ck_assert_ptr_nonnull(f);
  ck_assert_int_eq(uvctx_dump(ctx, f), 0);
  fclose(f);
  at = strstr(buf, "refs=");
  if (at != NULL && at < strchr(buf, '\n'))
    refs = atoi(at + 5);
  free(buf);
  return refs;
}

START_TEST(references_from_both_sides_end_the_context_once_at_the_last) {
  const char *steps = rows[_i].steps;
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *ctx = mk_cancel(&loop, parent);
  int alive = 1;
  rec_t drained;

  /* Done, so that the parent's drain waits only for ctx to go. */
  ck_assert_int_eq(uvctx_cancel(parent), 0);
  rec_drain(&drained, NULL, parent);
  for (const char *op = steps; *op != '\0'; op++) {
    if (*op == 'R') {
      ck_assert_ptr_eq(uvctx_retain(ctx), ctx);
    } else if (*op == 'r') {
      uvctx_release(ctx);
    } else {
      step_t s = {ctx, *op};
      uv_thread_t t;
      ck_assert_int_eq(uv_thread_create(&t, thread_step, &s), 0);
      ck_assert_int_eq(uv_thread_join(&t), 0);
    }
    alive += *op == 'R' || *op == 'T' ? 1 : -1;
    if (alive > 0) {
      ck_assert_msg(dumped_refs(ctx) == alive, "row %s (%s), after step %d",
                    steps, rows[_i].why, (int)(op - steps));
      uv_run(&loop, UV_RUN_NOWAIT);
      ck_assert_msg(drained.calls == 0, "row %s: gone with %d references",
                    steps, alive);
    }
  }
  ck_assert_int_eq(alive, 0);
  ck_assert_msg(run_until(&loop, &drained.calls, 1), "row %s never ended",
                steps);
  ck_assert_int_eq(drained.calls, 1);
  uvctx_release(parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

Suite *refs_suite(void) {
  return SUITE(
      "refs",
      /* A few threads made and joined per row: milliseconds. */
      {"both_sides", TIMEOUT_THREADS_S, loop_setup, NULL,
       .loops = LOOPS(
           {references_from_both_sides_end_the_context_once_at_the_last, 0, NROWS(rows)})});
}
