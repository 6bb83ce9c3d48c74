/* uvctx_observe(): one event per made, done, released context and per watch
 * run, in the order they happen, on the loop thread; nothing once removed. */
#include <string.h>

#include "helpers.h"
#include "test.h"

enum { MAX_EVENTS = 32 };

typedef struct {
  int n;
  struct {
    uvctx_event_t event;
    uint64_t id;
    int reason; /* of a DONE event, read in the observer */
    int via;
    uv_thread_t thread;
  } e[MAX_EVENTS];
} log_t;

static void observer(uvctx_event_t event, const uvctx_t *ctx, void *data) {
  log_t *log = data;
  uvctx_done_info_t info = {0};

  if (log->n == MAX_EVENTS)
    return;
  if (event == UVCTX_EVENT_DONE)
    uvctx_done_info(ctx, &info);
  log->e[log->n].event = event;
  log->e[log->n].id = uvctx_id(ctx);
  log->e[log->n].reason = (int)info.reason;
  log->e[log->n].via = (int)info.via;
  log->e[log->n].thread = uv_thread_self();
  log->n++;
}

/* Event i of the log is event on the context whose id is id (ids are taken
 * while the contexts are alive). */
static void assert_event(const log_t *log, int i, uvctx_event_t event,
                         uint64_t id) {
  ck_assert_int_lt(i, log->n);
  ck_assert_msg(log->e[i].event == event && log->e[i].id == id,
                "event %d: %d on #%llu, want %d on #%llu", i,
                (int)log->e[i].event, (unsigned long long)log->e[i].id,
                (int)event, (unsigned long long)id);
}

/* A request's life: made under its parent, done when the parent is
 * cancelled (the parent first), its watch, its release, the parent's. */
START_TEST(observer_sees_a_life_in_order) {
  log_t log = {0};
  rec_t r;
  uv_thread_t self = uv_thread_self();
  ck_assert_int_eq(uvctx_observe(&loop, observer, &log), 0);
  uvctx_t *p = mk_cancel(&loop, uvctx_background());
  uvctx_t *c = mk_timeout(&loop, p, 60000);
  uvctx_t *v = mk_value(c, &log, NULL); /* no loop: no event */
  uint64_t id_p = uvctx_id(p), id_c = uvctx_id(c), id_v = uvctx_id(v);
  rec_watch(&r, NULL, v);
  ck_assert_int_eq(uvctx_cancel(p), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(r.calls, 1);
  release_all(v, c, p);

  ck_assert_int_eq(log.n, 7);
  assert_event(&log, 0, UVCTX_EVENT_MADE, id_p);
  assert_event(&log, 1, UVCTX_EVENT_MADE, id_c);
  assert_event(&log, 2, UVCTX_EVENT_DONE, id_p);
  ck_assert_int_eq(log.e[2].reason, UVCTX_DONE_CANCEL);
  ck_assert_int_eq(log.e[2].via, UVCTX_VIA_SELF);
  assert_event(&log, 3, UVCTX_EVENT_DONE, id_c);
  ck_assert_int_eq(log.e[3].reason, UVCTX_DONE_CANCEL);
  ck_assert_int_eq(log.e[3].via, UVCTX_VIA_PARENT);
  assert_event(&log, 4, UVCTX_EVENT_WATCH, id_v);
  assert_event(&log, 5, UVCTX_EVENT_RELEASED, id_c);
  assert_event(&log, 6, UVCTX_EVENT_RELEASED, id_p);
  for (int i = 0; i < log.n; i++)
    ck_assert(uv_thread_equal(&log.e[i].thread, &self));
  ck_assert_int_eq(uvctx_observe(&loop, NULL, NULL), 0);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Born done: made, then done at once. A shutdown context before its
 * stopping child. */
START_TEST(observer_sees_born_done_and_shutdown_pairs) {
  log_t log = {0};
  uvctx_t *stopping, *sd;
  ck_assert_int_eq(uvctx_observe(&loop, observer, &log), 0);
  uvctx_t *d = mk_deadline(&loop, uvctx_background(), uvctx_now() - 1);
  uvctx_t *c = mk_cancel(&loop, d);
  ck_assert_int_eq(uvctx_with_shutdown(&loop, uvctx_background(), NULL, 0,
                                       10, &stopping, &sd),
                   0);
  uint64_t id_d = uvctx_id(d), id_c = uvctx_id(c), id_sd = uvctx_id(sd),
           id_stopping = uvctx_id(stopping);
  ck_assert_int_eq(log.n, 6);
  assert_event(&log, 0, UVCTX_EVENT_MADE, id_d);
  assert_event(&log, 1, UVCTX_EVENT_DONE, id_d);
  ck_assert_int_eq(log.e[1].reason, UVCTX_DONE_DEADLINE);
  assert_event(&log, 2, UVCTX_EVENT_MADE, id_c);
  assert_event(&log, 3, UVCTX_EVENT_DONE, id_c);
  ck_assert_int_eq(log.e[3].via, UVCTX_VIA_PARENT);
  assert_event(&log, 4, UVCTX_EVENT_MADE, id_sd);
  assert_event(&log, 5, UVCTX_EVENT_MADE, id_stopping);
  release_all(stopping, sd, c, d);
  ck_assert_int_eq(uvctx_observe(&loop, NULL, NULL), 0);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Removed, it hears nothing; replaced, only the new one hears. */
START_TEST(observer_removed_or_replaced_hears_nothing_more) {
  log_t first = {0}, second = {0};
  ck_assert_int_eq(uvctx_observe(NULL, observer, &first), UV_EINVAL);
  ck_assert_int_eq(uvctx_observe(&loop, NULL, NULL), 0); /* none yet: fine */
  ck_assert_int_eq(uvctx_observe(&loop, observer, &first), 0);
  uvctx_t *a = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(uvctx_observe(&loop, observer, &second), 0);
  uvctx_t *b = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(uvctx_observe(&loop, NULL, NULL), 0);
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  uint64_t id_a = uvctx_id(a), id_b = uvctx_id(b);
  release_all(c, b, a);
  ck_assert_int_eq(first.n, 1);
  assert_event(&first, 0, UVCTX_EVENT_MADE, id_a);
  ck_assert_int_eq(second.n, 1);
  assert_event(&second, 0, UVCTX_EVENT_MADE, id_b);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* An observer keeps uvctx's state of the loop, and its counts, with no
 * context alive; the loop closes once it is removed. */
START_TEST(observer_keeps_the_loop_state_until_removed) {
  log_t log = {0};
  uvctx_stats_t st = {.size = sizeof st};
  ck_assert_int_eq(uvctx_observe(&loop, observer, &log), 0);
  ck_assert_int_eq(uvctx_loop_stats(&loop, &st), 0);
  ck_assert_uint_eq(st.created, 0);
  uvctx_release(mk_cancel(&loop, uvctx_background()));
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(uvctx_loop_stats(&loop, &st), 0);
  ck_assert_uint_eq(st.created, 1);
  ck_assert_uint_eq(st.released, 1);
  ck_assert_int_eq(uv_loop_close(&loop), UV_EBUSY);
  ck_assert_int_eq(uvctx_observe(&loop, NULL, NULL), 0);
  ck_assert_int_eq(uvctx_loop_stats(&loop, &st), UV_ENOENT);
  ck_assert_int_eq(log.n, 2);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

Suite *observe_suite(void) {
  return SUITE("observe",
               {"events", TIMEOUT_LOOP_S, loop_setup, NULL,
                .tests = TESTS(observer_sees_a_life_in_order,
                               observer_sees_born_done_and_shutdown_pairs,
                               observer_removed_or_replaced_hears_nothing_more,
                               observer_keeps_the_loop_state_until_removed)});
}
