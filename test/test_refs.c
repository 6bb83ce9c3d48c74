/* References taken and dropped on the loop thread and on other threads, in
 * every order that crosses the two counts of src/refs.c: the loop thread's
 * own, the other threads', a reference handed back to the loop thread when
 * the other threads' count is 0 or below, the debt that leaves paid by a
 * retain before the loop takes it back, and the count becoming shared when
 * the loop thread drops its last. Each row is a sequence of steps on one
 * context; a step on "a thread" runs on a new thread, joined before the next
 * step. After each step uvctx_dump() must show the references alive; where
 * the row says so, the loop runs, and the context must still be there (its
 * parent's drain waits for it). After the last, the drain runs and the loop
 * closes (nothing leaked: ASan, valgrind). */
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "test.h"

/* R: retain on the loop thread, r: release on it; T and t: the same on
 * another thread; '.': the loop runs (and takes what threads posted; a
 * release on the loop thread takes it first too). Every row ends with its
 * last reference dropped. */
static const struct {
  const char *steps;
  const char *why;
} rows[] = {
    {"r", "the loop thread's only reference"},
    {"Rt.r", "a thread drops a loop reference: handed back, then the last"},
    {"Rrt", "a thread drops the last reference, one of the loop's"},
    {"T.rt", "the loop's last goes first: shared, a thread ends it"},
    {"T.t.r", "a thread's own reference and back, then the loop's last"},
    {"RRt.t.r", "two references handed back, one at a time"},
    {"TT.rt.t", "shared with two left, both dropped by threads"},
    {"RT.t.rt", "a thread's own, then one of the loop's handed back"},
    {"RrT.t.t", "handed back while the other count is shared-to-be"},
    {"RRtt.r", "two handed back before the loop takes either: a debt of 2"},
    {"RRttr", "the same, taken by the loop thread's release"},
    {"RtT.tr", "the debt paid by a retain before the loop took it back"},
    {"RtTr.t", "paid, taken by a release, then handed back again"},
    {"RtTt.r", "handed back twice on one entry, a retain between"},
    {"RtTTtt.r", "paid and owed again twice over on one entry"},
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

/* The refs= that uvctx_dump() prints for ctx, on its first line. */
static int dumped_refs(const uvctx_t *ctx) {
  dump_text_t t;
  const char *at;
  int refs = -1;

  ck_assert_int_eq(dump_split(&t, ctx), 0);
  at = strstr(t.line[0], "refs=");
  if (at != NULL)
    refs = atoi(at + 5);
  free(t.buf);
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
    if (*op == '.') {
      uv_run(&loop, UV_RUN_NOWAIT);
      ck_assert_msg(drained.calls == 0, "row %s: gone with %d references",
                    steps, alive);
      continue;
    }
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
    if (alive > 0)
      ck_assert_msg(dumped_refs(ctx) == alive, "row %s (%s), after step %d",
                    steps, rows[_i].why, (int)(op - steps));
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
