/* Being told that a context is done: uvctx_watch / uvctx_unwatch (Go's
 * AfterFunc and its stop function) and uvctx_done_async (Go's Done channel).
 *
 * Each test states one rule of the contract in its name. A "probe" is a watch
 * that records how its callback was called: how many times, with which err, on
 * which thread, and in which position among all the callbacks of the test. */
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "test.h"

/* ---------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------- */

static int key_a; /* keys compare by address */

typedef struct {
  int ran; /* callbacks run so far, all probes of the test */
  uv_thread_t loop_thread;
} journal_t;

typedef struct probe_s probe_t;
struct probe_s {
  uvctx_watch_t w;
  journal_t *j;
  uvctx_t *ctx; /* the watched context */
  int calls;
  int err;            /* err argument of the last call */
  int seq;            /* 1-based position among the test's callbacks */
  int on_loop_thread; /* uv_thread_self() was the loop thread */
  int err_inside;     /* uvctx_err(ctx) read inside the callback */
  int cause_inside;   /* uvctx_cause(ctx) read inside the callback */
  void (*action)(probe_t *p); /* optional: run inside the callback */
  void *arg;
  int action_rc;
  int action_rc2;
};

static void journal_init(journal_t *j) {
  j->ran = 0;
  j->loop_thread = uv_thread_self();
}

static void probe_cb(uvctx_watch_t *w, int err) {
  probe_t *p = w->data;
  uv_thread_t self = uv_thread_self();
  p->calls++;
  p->err = err;
  p->seq = ++p->j->ran;
  p->on_loop_thread = uv_thread_equal(&self, &p->j->loop_thread);
  p->err_inside = uvctx_err(p->ctx);
  p->cause_inside = uvctx_cause(p->ctx);
  if (p->action != NULL)
    p->action(p);
}

static void probe_init(probe_t *p, journal_t *j, uvctx_t *ctx) {
  memset(p, 0, sizeof *p);
  p->j = j;
  p->ctx = ctx;
  p->w.data = p;
}

/* Initializes p and watches ctx with it; returns uvctx_watch's result. */
static int probe_watch(probe_t *p, journal_t *j, uvctx_t *ctx) {
  probe_init(p, j, ctx);
  return uvctx_watch(ctx, &p->w, probe_cb);
}

/* An unref'd timer that, if it fires, un-refs a handle the test ref'd and
 * stops the loop: it turns "the loop would hang forever" into a failure. */
typedef struct {
  uv_timer_t t;
  uv_handle_t *refd;
  int fired;
} guard_t;

static void guard_fire(uv_timer_t *t) {
  guard_t *g = t->data;
  g->fired = 1;
  if (g->refd != NULL)
    uv_unref(g->refd);
  uv_stop(t->loop);
}

static void guard_start(guard_t *g, uv_loop_t *loop, uv_handle_t *refd,
                        uint64_t ms) {
  memset(g, 0, sizeof *g);
  g->refd = refd;
  ck_assert_int_eq(uv_timer_init(loop, &g->t), 0);
  g->t.data = g;
  ck_assert_int_eq(uv_timer_start(&g->t, guard_fire, ms, 0), 0);
  uv_unref((uv_handle_t *)&g->t);
}

static void guard_close(guard_t *g) {
  uv_close((uv_handle_t *)&g->t, NULL);
}

/* ---------------------------------------------------------------------------
 * When and where the callback runs
 * ------------------------------------------------------------------------- */

START_TEST(watch_callback_runs_exactly_once) {
  uv_loop_t loop;
  journal_t j;
  probe_t p;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  journal_init(&j);
  uvctx_t *c = mk_cancel(&loop, uvctx_background());

  ck_assert_int_eq(probe_watch(&p, &j, c), 0);
  ck_assert_int_eq(uvctx_cancel(c), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(p.calls, 1);

  ck_assert_int_eq(uvctx_cancel(c), UV_EALREADY);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_run(&loop, UV_RUN_NOWAIT);
  ck_assert_int_eq(p.calls, 1);

  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(watch_callback_runs_on_loop_thread) {
  uv_loop_t loop;
  journal_t j;
  probe_t p;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  journal_init(&j);
  uvctx_t *c = mk_cancel(&loop, uvctx_background());

  ck_assert_int_eq(probe_watch(&p, &j, c), 0);
  ck_assert_int_eq(uvctx_cancel(c), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(p.calls, 1);
  ck_assert_int_eq(p.on_loop_thread, 1);

  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(watch_callback_never_runs_inside_cancel) {
  uv_loop_t loop;
  journal_t j;
  probe_t pp, pc;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  journal_init(&j);
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *child = mk_cancel(&loop, parent);

  ck_assert_int_eq(probe_watch(&pp, &j, parent), 0);
  ck_assert_int_eq(probe_watch(&pc, &j, child), 0);
  ck_assert_int_eq(uvctx_cancel(parent), 0);
  /* Both are done now (loop thread), but no callback has run. */
  ck_assert_int_eq(uvctx_err(parent), UV_ECANCELED);
  ck_assert_int_eq(uvctx_err(child), UV_ECANCELED);
  ck_assert_int_eq(j.ran, 0);

  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(pp.calls, 1);
  ck_assert_int_eq(pc.calls, 1);

  uvctx_release(child);
  uvctx_release(parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(watch_callback_never_runs_inside_watch) {
  uv_loop_t loop;
  journal_t j;
  probe_t first, second;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  journal_init(&j);
  uvctx_t *c = mk_cancel(&loop, uvctx_background());

  ck_assert_int_eq(probe_watch(&first, &j, c), 0);
  ck_assert_int_eq(uvctx_cancel(c), 0);
  /* first is due; watching again must deliver neither of them. */
  ck_assert_int_eq(probe_watch(&second, &j, c), 0);
  ck_assert_int_eq(j.ran, 0);

  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(first.calls, 1);
  ck_assert_int_eq(second.calls, 1);

  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(watch_callback_never_runs_inside_constructor) {
  uv_loop_t loop;
  journal_t j;
  probe_t p;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  journal_init(&j);
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(probe_watch(&p, &j, parent), 0);
  ck_assert_int_eq(uvctx_cancel(parent), 0);

  /* p is due. Every constructor, including ones that make a context born
   * done, must leave it for the loop. */
  uvctx_t *c1 = mk_cancel(&loop, parent);
  uvctx_t *c2 = mk_timeout(&loop, parent, 10000);
  uvctx_t *c3 = mk_timeout(&loop, uvctx_background(), 0);
  uvctx_t *c4 = mk_value(parent, &key_a, NULL);
  uvctx_t *c5 = mk_without(parent);
  ck_assert_int_eq(uvctx_err(c1), UV_ECANCELED);
  ck_assert_int_eq(uvctx_err(c3), UV_ETIMEDOUT);
  ck_assert_int_eq(j.ran, 0);

  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(p.calls, 1);

  uvctx_release(c1);
  uvctx_release(c2);
  uvctx_release(c3);
  uvctx_release(c4);
  uvctx_release(c5);
  uvctx_release(parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(due_callbacks_keep_the_loop_alive) {
  uv_loop_t loop;
  journal_t j;
  probe_t p;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  journal_init(&j);
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(probe_watch(&p, &j, c), 0);
  ck_assert_int_eq(uvctx_cancel(c), 0);

  /* Nothing of ours is alive: only the due callback. uv_run must deliver it
   * before it returns. */
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(p.calls, 1);

  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * The err argument
 * ------------------------------------------------------------------------- */

START_TEST(watch_err_is_ecanceled_after_cancel) {
  uv_loop_t loop;
  journal_t j;
  probe_t p;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  journal_init(&j);
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(probe_watch(&p, &j, c), 0);
  ck_assert_int_eq(uvctx_cancel(c), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(p.calls, 1);
  ck_assert_int_eq(p.err, UV_ECANCELED);
  ck_assert_int_eq(p.err_inside, UV_ECANCELED);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(watch_err_is_etimedout_after_deadline) {
  uv_loop_t loop;
  journal_t j;
  probe_t p;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  journal_init(&j);
  uvctx_t *c = mk_timeout(&loop, uvctx_background(), 5);
  ck_assert_int_eq(probe_watch(&p, &j, c), 0);
  ck_assert(run_until(&loop, &j.ran, 1));
  ck_assert_int_eq(p.calls, 1);
  ck_assert_int_eq(p.err, UV_ETIMEDOUT);
  ck_assert_int_eq(p.err_inside, UV_ETIMEDOUT);
  ck_assert_int_eq(p.on_loop_thread, 1);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(watch_err_is_the_err_not_the_cause) {
  uv_loop_t loop;
  journal_t j;
  probe_t p;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  journal_init(&j);
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(probe_watch(&p, &j, c), 0);
  ck_assert_int_eq(uvctx_cancel_cause(c, UV_EPIPE), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(p.calls, 1);
  ck_assert_int_eq(p.err, UV_ECANCELED);
  ck_assert_int_eq(p.cause_inside, UV_EPIPE);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(watch_err_of_descendant_is_ancestors_err) {
  uv_loop_t loop;
  journal_t j;
  probe_t p;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  journal_init(&j);
  uvctx_t *parent = mk_timeout(&loop, uvctx_background(), 5);
  uvctx_t *child = mk_cancel(&loop, parent);
  ck_assert_int_eq(probe_watch(&p, &j, child), 0);
  ck_assert(run_until(&loop, &j.ran, 1));
  ck_assert_int_eq(p.err, UV_ETIMEDOUT);
  ck_assert_int_eq(p.err_inside, UV_ETIMEDOUT);
  uvctx_release(child);
  uvctx_release(parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Order
 * ------------------------------------------------------------------------- */

/* parent -> child -> grandchild, plus sibling under parent. Watches are
 * registered in a scrambled order across contexts; ids say which context and
 * which registration: P1 P2 P3, C1 C2, G1 G2 G3, S1 S2. */
enum { P1, P2, P3, C1, C2, G1, G2, G3, S1, S2, NPROBES };

static void watch_scrambled(probe_t *pr, journal_t *j, uvctx_t *p, uvctx_t *c,
                            uvctx_t *g, uvctx_t *s) {
  ck_assert_int_eq(probe_watch(&pr[G1], j, g), 0);
  ck_assert_int_eq(probe_watch(&pr[S1], j, s), 0);
  ck_assert_int_eq(probe_watch(&pr[C1], j, c), 0);
  ck_assert_int_eq(probe_watch(&pr[P1], j, p), 0);
  ck_assert_int_eq(probe_watch(&pr[G2], j, g), 0);
  ck_assert_int_eq(probe_watch(&pr[P2], j, p), 0);
  ck_assert_int_eq(probe_watch(&pr[S2], j, s), 0);
  ck_assert_int_eq(probe_watch(&pr[C2], j, c), 0);
  ck_assert_int_eq(probe_watch(&pr[G3], j, g), 0);
  ck_assert_int_eq(probe_watch(&pr[P3], j, p), 0);
}

static void assert_tree_order(const probe_t *pr, int err) {
  for (int i = 0; i < NPROBES; i++) {
    ck_assert_int_eq(pr[i].calls, 1);
    ck_assert_int_eq(pr[i].err, err);
  }
  /* a context's own callbacks: in registration order */
  ck_assert_int_lt(pr[P1].seq, pr[P2].seq);
  ck_assert_int_lt(pr[P2].seq, pr[P3].seq);
  ck_assert_int_lt(pr[C1].seq, pr[C2].seq);
  ck_assert_int_lt(pr[G1].seq, pr[G2].seq);
  ck_assert_int_lt(pr[G2].seq, pr[G3].seq);
  ck_assert_int_lt(pr[S1].seq, pr[S2].seq);
  /* an ancestor's before its descendants' */
  ck_assert_int_lt(pr[P3].seq, pr[C1].seq);
  ck_assert_int_lt(pr[P3].seq, pr[S1].seq);
  ck_assert_int_lt(pr[C2].seq, pr[G1].seq);
}

START_TEST(watch_order_ancestor_first_then_registration_order) {
  uv_loop_t loop;
  journal_t j;
  probe_t pr[NPROBES];
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  journal_init(&j);
  uvctx_t *p = mk_cancel(&loop, uvctx_background());
  uvctx_t *c = mk_cancel(&loop, p);
  uvctx_t *g = mk_cancel(&loop, c);
  uvctx_t *s = mk_cancel(&loop, p);
  watch_scrambled(pr, &j, p, c, g, s);

  ck_assert_int_eq(uvctx_cancel(p), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_tree_order(pr, UV_ECANCELED);

  uvctx_release(g);
  uvctx_release(s);
  uvctx_release(c);
  uvctx_release(p);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(watch_order_ancestor_first_when_a_deadline_finishes_the_tree) {
  uv_loop_t loop;
  journal_t j;
  probe_t pr[NPROBES];
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  journal_init(&j);
  uvctx_t *p = mk_timeout(&loop, uvctx_background(), 5);
  uvctx_t *c = mk_cancel(&loop, p);
  uvctx_t *g = mk_timeout(&loop, c, 60000);
  uvctx_t *s = mk_cancel(&loop, p);
  watch_scrambled(pr, &j, p, c, g, s);

  ck_assert(run_until(&loop, &j.ran, NPROBES));
  assert_tree_order(pr, UV_ETIMEDOUT);

  uvctx_release(g);
  uvctx_release(s);
  uvctx_release(c);
  uvctx_release(p);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(watch_order_value_context_after_its_cancellable_ancestor) {
  uv_loop_t loop;
  journal_t j;
  probe_t v1, p1, v2, c1, p2;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  journal_init(&j);
  uvctx_t *p = mk_cancel(&loop, uvctx_background());
  uvctx_t *v = mk_value(p, &key_a, NULL);
  uvctx_t *c = mk_cancel(&loop, v);
  /* registered: v, p, v, c, p */
  ck_assert_int_eq(probe_watch(&v1, &j, v), 0);
  ck_assert_int_eq(probe_watch(&p1, &j, p), 0);
  ck_assert_int_eq(probe_watch(&v2, &j, v), 0);
  ck_assert_int_eq(probe_watch(&c1, &j, c), 0);
  ck_assert_int_eq(probe_watch(&p2, &j, p), 0);

  ck_assert_int_eq(uvctx_cancel(p), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(j.ran, 5);
  /* p's, then the value context's, then c's */
  ck_assert_int_lt(p1.seq, p2.seq);
  ck_assert_int_lt(p2.seq, v1.seq);
  ck_assert_int_lt(v1.seq, v2.seq);
  ck_assert_int_lt(v2.seq, c1.seq);

  uvctx_release(c);
  uvctx_release(v);
  uvctx_release(p);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Watching a context that is already done
 * ------------------------------------------------------------------------- */

START_TEST(watch_of_done_context_runs_later_never_synchronously) {
  uv_loop_t loop;
  journal_t j;
  probe_t p;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  journal_init(&j);
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(uvctx_cancel(c), 0);
  uv_run(&loop, UV_RUN_DEFAULT); /* the cancel is old news */

  ck_assert_int_eq(probe_watch(&p, &j, c), 0);
  ck_assert_int_eq(p.calls, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(p.calls, 1);
  ck_assert_int_eq(p.err, UV_ECANCELED);

  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(watch_of_born_done_context_runs_later) {
  uv_loop_t loop;
  journal_t j;
  probe_t pc, pt;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  journal_init(&j);
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(uvctx_cancel(parent), 0);
  uvctx_t *child = mk_cancel(&loop, parent);         /* born cancelled */
  uvctx_t *late = mk_timeout(&loop, uvctx_background(), 0); /* born timed out */

  ck_assert_int_eq(probe_watch(&pc, &j, child), 0);
  ck_assert_int_eq(probe_watch(&pt, &j, late), 0);
  ck_assert_int_eq(j.ran, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(pc.calls, 1);
  ck_assert_int_eq(pc.err, UV_ECANCELED);
  ck_assert_int_eq(pt.calls, 1);
  ck_assert_int_eq(pt.err, UV_ETIMEDOUT);

  uvctx_release(late);
  uvctx_release(child);
  uvctx_release(parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Inside first's callback, watch the (done) context with second and record
 * whether second ran inside that uvctx_watch call. */
static void action_watch_second(probe_t *p) {
  probe_t *second = p->arg;
  p->action_rc = probe_watch(second, p->j, p->ctx);
  p->action_rc2 = second->calls;
}

START_TEST(watch_of_done_context_from_a_callback_runs_on_a_later_callback) {
  uv_loop_t loop;
  journal_t j;
  probe_t first, second;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  journal_init(&j);
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(probe_watch(&first, &j, c), 0);
  first.action = action_watch_second;
  first.arg = &second;
  ck_assert_int_eq(uvctx_cancel(c), 0);

  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(first.calls, 1);
  ck_assert_int_eq(first.action_rc, 0);
  ck_assert_int_eq(first.action_rc2, 0); /* not inside uvctx_watch */
  ck_assert_int_eq(second.calls, 1);     /* but before uv_run returned */
  ck_assert_int_eq(second.err, UV_ECANCELED);
  ck_assert_int_gt(second.seq, first.seq);

  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Unwatch
 * ------------------------------------------------------------------------- */

START_TEST(unwatch_before_done_returns_0_and_callback_never_runs) {
  uv_loop_t loop;
  journal_t j;
  probe_t p;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  journal_init(&j);
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(probe_watch(&p, &j, c), 0);
  ck_assert_int_eq(uvctx_unwatch(&p.w), 0);
  ck_assert_int_eq(uvctx_cancel(c), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(p.calls, 0);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(unwatch_after_cancel_before_delivery_returns_0_and_callback_never_runs) {
  uv_loop_t loop;
  journal_t j;
  probe_t p, other;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  journal_init(&j);
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(probe_watch(&p, &j, c), 0);
  ck_assert_int_eq(probe_watch(&other, &j, c), 0);
  ck_assert_int_eq(uvctx_cancel(c), 0);
  /* due but not started */
  ck_assert_int_eq(uvctx_unwatch(&p.w), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(p.calls, 0);
  ck_assert_int_eq(other.calls, 1); /* only the unwatched one is dropped */
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(unwatch_after_callback_ran_returns_ealready) {
  uv_loop_t loop;
  journal_t j;
  probe_t p;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  journal_init(&j);
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(probe_watch(&p, &j, c), 0);
  ck_assert_int_eq(uvctx_cancel(c), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(p.calls, 1);
  ck_assert_int_eq(uvctx_unwatch(&p.w), UV_EALREADY);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

static void action_unwatch_self(probe_t *p) {
  p->action_rc = uvctx_unwatch(&p->w);
}

START_TEST(unwatch_inside_own_callback_returns_ealready) {
  uv_loop_t loop;
  journal_t j;
  probe_t p;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  journal_init(&j);
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(probe_watch(&p, &j, c), 0);
  p.action = action_unwatch_self;
  p.action_rc = 12345;
  ck_assert_int_eq(uvctx_cancel(c), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(p.calls, 1);
  ck_assert_int_eq(p.action_rc, UV_EALREADY);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(unwatch_twice_returns_ealready) {
  uv_loop_t loop;
  journal_t j;
  probe_t p;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  journal_init(&j);
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(probe_watch(&p, &j, c), 0);
  ck_assert_int_eq(uvctx_unwatch(&p.w), 0);
  ck_assert_int_eq(uvctx_unwatch(&p.w), UV_EALREADY);
  ck_assert_int_eq(uvctx_cancel(c), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(p.calls, 0);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

static void action_unwatch_other(probe_t *p) {
  probe_t *other = p->arg;
  p->action_rc = uvctx_unwatch(&other->w);
}

START_TEST(unwatch_from_another_callback_of_the_same_batch_prevents_it) {
  uv_loop_t loop;
  journal_t j;
  probe_t first, second;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  journal_init(&j);
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(probe_watch(&first, &j, c), 0);
  ck_assert_int_eq(probe_watch(&second, &j, c), 0);
  first.action = action_unwatch_other;
  first.arg = &second;
  first.action_rc = 12345;
  ck_assert_int_eq(uvctx_cancel(c), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(first.calls, 1);
  ck_assert_int_eq(first.action_rc, 0);
  ck_assert_int_eq(second.calls, 0);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(unwatch_from_an_ancestors_callback_prevents_the_descendants_watch) {
  uv_loop_t loop;
  journal_t j;
  probe_t on_child, on_parent;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  journal_init(&j);
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *child = mk_cancel(&loop, parent);
  ck_assert_int_eq(probe_watch(&on_child, &j, child), 0);
  ck_assert_int_eq(probe_watch(&on_parent, &j, parent), 0);
  on_parent.action = action_unwatch_other;
  on_parent.arg = &on_child;
  on_parent.action_rc = 12345;
  ck_assert_int_eq(uvctx_cancel(parent), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(on_parent.calls, 1);
  ck_assert_int_eq(on_parent.action_rc, 0);
  ck_assert_int_eq(on_child.calls, 0);
  uvctx_release(child);
  uvctx_release(parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(watch_with_a_pending_watch_struct_is_ebusy) {
  uv_loop_t loop;
  journal_t j;
  probe_t p;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  journal_init(&j);
  uvctx_t *a = mk_cancel(&loop, uvctx_background());
  uvctx_t *b = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(probe_watch(&p, &j, a), 0);
  ck_assert_int_eq(uvctx_watch(a, &p.w, probe_cb), UV_EBUSY);
  ck_assert_int_eq(uvctx_watch(b, &p.w, probe_cb), UV_EBUSY);
  /* nothing changed: it still watches a, once */
  ck_assert_int_eq(uvctx_cancel(b), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(p.calls, 0);
  ck_assert_int_eq(uvctx_cancel(a), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(p.calls, 1);
  uvctx_release(a);
  uvctx_release(b);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(unwatched_watch_struct_can_be_reused) {
  uv_loop_t loop;
  journal_t j;
  probe_t p;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  journal_init(&j);
  uvctx_t *a = mk_cancel(&loop, uvctx_background());
  uvctx_t *b = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(probe_watch(&p, &j, a), 0);
  ck_assert_int_eq(uvctx_unwatch(&p.w), 0);
  p.ctx = b;
  ck_assert_int_eq(uvctx_watch(b, &p.w, probe_cb), 0);
  ck_assert_int_eq(uvctx_cancel(a), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(p.calls, 0);
  ck_assert_int_eq(uvctx_cancel(b), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(p.calls, 1);
  uvctx_release(a);
  uvctx_release(b);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * A pending watch keeps its context alive
 * ------------------------------------------------------------------------- */

START_TEST(pending_watch_keeps_its_context_alive) {
  uv_loop_t loop;
  journal_t j;
  probe_t p;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  journal_init(&j);
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *child = mk_cancel(&loop, parent);
  ck_assert_int_eq(probe_watch(&p, &j, child), 0);
  uvctx_release(child); /* only the watch holds it now */
  uv_run(&loop, UV_RUN_DEFAULT);

  ck_assert_int_eq(uvctx_cancel(parent), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(p.calls, 1);
  ck_assert_int_eq(p.err, UV_ECANCELED);
  ck_assert_int_eq(p.err_inside, UV_ECANCELED); /* child still readable */

  uvctx_release(parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(unwatching_the_last_holder_frees_the_context) {
  uv_loop_t loop;
  journal_t j;
  probe_t p;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  journal_init(&j);
  uvctx_t *c = mk_timeout(&loop, uvctx_background(), 60000);
  ck_assert(uvctx_done_async(c) != NULL);
  ck_assert_int_eq(probe_watch(&p, &j, c), 0);
  uvctx_release(c);
  ck_assert_int_eq(uvctx_unwatch(&p.w), 0); /* drops the last reference */
  ASSERT_LOOP_CLOSES(&loop);
  ck_assert_int_eq(p.calls, 0);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Contexts that can never be done, and value contexts
 * ------------------------------------------------------------------------- */

START_TEST(watch_of_a_root_succeeds_never_runs_and_unwatch_returns_0) {
  uv_loop_t loop;
  journal_t j;
  probe_t pb, pt;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  journal_init(&j);
  ck_assert_int_eq(probe_watch(&pb, &j, uvctx_background()), 0);
  ck_assert_int_eq(probe_watch(&pt, &j, uvctx_todo()), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(j.ran, 0);
  ck_assert_int_eq(uvctx_unwatch(&pb.w), 0);
  ck_assert_int_eq(uvctx_unwatch(&pt.w), 0);
  ASSERT_LOOP_CLOSES(&loop);
  ck_assert_int_eq(j.ran, 0);
}
END_TEST

START_TEST(watch_of_without_cancel_succeeds_never_runs_and_unwatch_returns_0) {
  uv_loop_t loop;
  journal_t j;
  probe_t p;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  journal_init(&j);
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *wc = mk_without(parent);
  ck_assert_int_eq(probe_watch(&p, &j, wc), 0);
  ck_assert_int_eq(uvctx_cancel(parent), 0); /* does not reach wc */
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(p.calls, 0);
  ck_assert_int_eq(uvctx_unwatch(&p.w), 0);
  uvctx_release(wc);
  uvctx_release(parent);
  ASSERT_LOOP_CLOSES(&loop);
  ck_assert_int_eq(p.calls, 0);
}
END_TEST

START_TEST(watch_of_a_value_context_of_a_root_never_runs) {
  uv_loop_t loop;
  journal_t j;
  probe_t p;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  journal_init(&j);
  uvctx_t *v = mk_value(uvctx_background(), &key_a, NULL);
  ck_assert_int_eq(probe_watch(&p, &j, v), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(p.calls, 0);
  ck_assert_int_eq(uvctx_unwatch(&p.w), 0);
  uvctx_release(v);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(watch_of_a_value_context_fires_when_its_ancestor_is_cancelled) {
  uv_loop_t loop;
  journal_t j;
  probe_t p;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  journal_init(&j);
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *v1 = mk_value(parent, &key_a, NULL);
  uvctx_t *v2 = mk_value(v1, &key_a, &j);
  ck_assert_int_eq(probe_watch(&p, &j, v2), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(p.calls, 0);
  ck_assert_int_eq(uvctx_cancel_cause(parent, UV_EPIPE), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(p.calls, 1);
  ck_assert_int_eq(p.err, UV_ECANCELED);
  ck_assert_int_eq(p.cause_inside, UV_EPIPE);
  ck_assert_int_eq(p.on_loop_thread, 1);
  uvctx_release(v2);
  uvctx_release(v1);
  uvctx_release(parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(watch_of_a_value_context_fires_at_its_ancestors_deadline) {
  uv_loop_t loop;
  journal_t j;
  probe_t p;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  journal_init(&j);
  uvctx_t *parent = mk_timeout(&loop, uvctx_background(), 5);
  uvctx_t *v = mk_value(parent, &key_a, NULL);
  ck_assert_int_eq(probe_watch(&p, &j, v), 0);
  ck_assert(run_until(&loop, &j.ran, 1));
  ck_assert_int_eq(p.calls, 1);
  ck_assert_int_eq(p.err, UV_ETIMEDOUT);
  uvctx_release(v);
  uvctx_release(parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * What a callback may do
 * ------------------------------------------------------------------------- */

static int freed_calls;

static void free_self_cb(uvctx_watch_t *w, int err) {
  (void)err;
  freed_calls++;
  memset(w, 0xa5, sizeof *w); /* whatever uvctx reads afterwards is garbage */
  free(w);
}

START_TEST(callback_may_free_its_watch) {
  uv_loop_t loop;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  freed_calls = 0;
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *c = mk_cancel(&loop, parent);
  for (int i = 0; i < 3; i++) {
    uvctx_watch_t *w = calloc(1, sizeof *w);
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(uvctx_watch(i == 1 ? parent : c, w, free_self_cb), 0);
  }
  ck_assert_int_eq(uvctx_cancel(parent), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(freed_calls, 3);
  uvctx_release(c);
  uvctx_release(parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

static void action_release_ctx(probe_t *p) {
  uvctx_release(p->ctx);
  /* the watch holds its reference until the callback returns */
  p->action_rc = uvctx_err(p->ctx);
}

START_TEST(callback_may_release_its_context) {
  uv_loop_t loop;
  journal_t j;
  probe_t p;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  journal_init(&j);
  uvctx_t *c = mk_timeout(&loop, uvctx_background(), 60000);
  ck_assert(uvctx_done_async(c) != NULL);
  ck_assert_int_eq(probe_watch(&p, &j, c), 0);
  p.action = action_release_ctx;
  ck_assert_int_eq(uvctx_cancel(c), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(p.calls, 1);
  ck_assert_int_eq(p.action_rc, UV_ECANCELED);
  ASSERT_LOOP_CLOSES(&loop); /* c was freed: it had no reference left */
}
END_TEST

/* Re-watches the same (done) context with the same struct, once. */
static void action_rewatch_same(probe_t *p) {
  if (p->calls == 1) {
    p->action_rc = uvctx_watch(p->ctx, &p->w, probe_cb);
    p->action_rc2 = p->calls; /* still 1: not run inside uvctx_watch */
  }
}

START_TEST(callback_may_watch_again_with_the_same_watch_struct) {
  uv_loop_t loop;
  journal_t j;
  probe_t p;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  journal_init(&j);
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(probe_watch(&p, &j, c), 0);
  p.action = action_rewatch_same;
  ck_assert_int_eq(uvctx_cancel(c), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(p.action_rc, 0);
  ck_assert_int_eq(p.action_rc2, 1);
  ck_assert_int_eq(p.calls, 2);
  ck_assert_int_eq(p.err, UV_ECANCELED);
  ck_assert_int_eq(uvctx_unwatch(&p.w), UV_EALREADY);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Moves the watch to another, live context (p->arg). */
static void action_rewatch_other(probe_t *p) {
  if (p->calls == 1) {
    p->ctx = p->arg;
    p->action_rc = uvctx_watch(p->ctx, &p->w, probe_cb);
  }
}

START_TEST(callback_may_watch_another_context_with_the_same_watch_struct) {
  uv_loop_t loop;
  journal_t j;
  probe_t p;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  journal_init(&j);
  uvctx_t *a = mk_cancel(&loop, uvctx_background());
  uvctx_t *b = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(probe_watch(&p, &j, a), 0);
  p.action = action_rewatch_other;
  p.arg = b;
  ck_assert_int_eq(uvctx_cancel(a), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(p.calls, 1);
  ck_assert_int_eq(p.action_rc, 0);
  ck_assert_int_eq(uvctx_cancel_cause(b, UV_EIO), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(p.calls, 2);
  ck_assert_int_eq(p.cause_inside, UV_EIO);
  uvctx_release(a);
  uvctx_release(b);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

static void action_cancel_arg(probe_t *p) {
  p->action_rc = uvctx_cancel(p->arg);
}

START_TEST(callback_may_cancel_another_context_whose_watches_then_run) {
  uv_loop_t loop;
  journal_t j;
  probe_t pa, pb;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  journal_init(&j);
  uvctx_t *a = mk_cancel(&loop, uvctx_background());
  uvctx_t *b = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(probe_watch(&pb, &j, b), 0);
  ck_assert_int_eq(probe_watch(&pa, &j, a), 0);
  pa.action = action_cancel_arg;
  pa.arg = b;
  ck_assert_int_eq(uvctx_cancel(a), 0);
  uv_run(&loop, UV_RUN_DEFAULT); /* b's callback became due in a callback */
  ck_assert_int_eq(pa.calls, 1);
  ck_assert_int_eq(pa.action_rc, 0);
  ck_assert_int_eq(pb.calls, 1);
  ck_assert_int_gt(pb.seq, pa.seq);
  uvctx_release(a);
  uvctx_release(b);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * uvctx_done_async
 * ------------------------------------------------------------------------- */

START_TEST(done_async_returns_the_same_handle_on_each_call) {
  uv_loop_t loop;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  uvctx_t *t = mk_timeout(&loop, uvctx_background(), 60000);
  uv_async_t *h = uvctx_done_async(c);
  ck_assert_ptr_nonnull(h);
  ck_assert_ptr_eq(uvctx_done_async(c), h);
  ck_assert_ptr_eq(uvctx_done_async(c), h);
  uv_async_t *ht = uvctx_done_async(t);
  ck_assert_ptr_nonnull(ht);
  ck_assert_ptr_ne(ht, h);
  ck_assert_ptr_eq(uvctx_done_async(t), ht);
  ck_assert_ptr_eq(h->loop, &loop);
  uvctx_release(c);
  uvctx_release(t);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(done_async_is_null_when_the_context_can_never_be_done) {
  uv_loop_t loop;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  uvctx_t *wc = mk_without(c);
  uvctx_t *wcv = mk_value(wc, &key_a, NULL);
  uvctx_t *rv = mk_value(uvctx_background(), &key_a, NULL);
  ck_assert_ptr_null(uvctx_done_async(uvctx_background()));
  ck_assert_ptr_null(uvctx_done_async(uvctx_todo()));
  ck_assert_ptr_null(uvctx_done_async(wc));
  ck_assert_ptr_null(uvctx_done_async(wcv));
  ck_assert_ptr_null(uvctx_done_async(rv));
  ck_assert_ptr_null(uvctx_done_async(NULL));
  uvctx_release(rv);
  uvctx_release(wcv);
  uvctx_release(wc);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(done_async_of_a_value_context_is_its_cancellable_ancestors) {
  uv_loop_t loop;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  uvctx_t *v1 = mk_value(c, &key_a, NULL);
  uvctx_t *v2 = mk_value(v1, &key_a, NULL);
  /* asked through the value context first: it is still c's handle */
  uv_async_t *hv = uvctx_done_async(v2);
  ck_assert_ptr_nonnull(hv);
  ck_assert_ptr_eq(uvctx_done_async(c), hv);
  ck_assert_ptr_eq(uvctx_done_async(v1), hv);
  uvctx_release(v2);
  uvctx_release(v1);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(done_async_handle_is_unrefd) {
  uv_loop_t loop;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  uv_async_t *h = uvctx_done_async(c);
  ck_assert_ptr_nonnull(h);
  ck_assert_int_eq(uv_has_ref((uv_handle_t *)h), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0); /* returns at once */
  ck_assert_int_eq(uvctx_err(c), 0);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(done_async_refd_keeps_the_loop_running_until_the_deadline) {
  uv_loop_t loop;
  guard_t g;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uint64_t deadline = uvctx_now() + 10;
  uvctx_t *c = NULL;
  ck_assert_int_eq(uvctx_with_deadline(&loop, uvctx_background(), deadline, &c), 0);
  uv_async_t *h = uvctx_done_async(c);
  ck_assert_ptr_nonnull(h);
  uv_ref((uv_handle_t *)h);
  guard_start(&g, &loop, (uv_handle_t *)h, 2000);

  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(g.fired, 0);
  ck_assert_int_eq(uvctx_err(c), UV_ETIMEDOUT);
  ck_assert_uint_ge(uvctx_now(), deadline);
  ck_assert_int_eq(uv_has_ref((uv_handle_t *)h), 0); /* unref'd again */

  guard_close(&g);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

typedef struct {
  uv_timer_t t;
  uvctx_t *ctx;
  int fired;
} canceller_t;

static void canceller_fire(uv_timer_t *t) {
  canceller_t *k = t->data;
  k->fired = 1;
  ck_assert_int_eq(uvctx_cancel(k->ctx), 0);
}

START_TEST(done_async_refd_keeps_the_loop_running_until_cancelled) {
  uv_loop_t loop;
  guard_t g;
  canceller_t k;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *c = mk_cancel(&loop, parent);
  uv_async_t *h = uvctx_done_async(c);
  ck_assert_ptr_nonnull(h);
  uv_ref((uv_handle_t *)h);
  guard_start(&g, &loop, (uv_handle_t *)h, 2000);
  /* An unref'd timer of ours cancels the parent: only h keeps the loop up. */
  memset(&k, 0, sizeof k);
  k.ctx = parent;
  ck_assert_int_eq(uv_timer_init(&loop, &k.t), 0);
  k.t.data = &k;
  ck_assert_int_eq(uv_timer_start(&k.t, canceller_fire, 5, 0), 0);
  uv_unref((uv_handle_t *)&k.t);

  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(g.fired, 0);
  ck_assert_int_eq(k.fired, 1);
  ck_assert_int_eq(uvctx_err(c), UV_ECANCELED);
  ck_assert_int_eq(uv_has_ref((uv_handle_t *)h), 0);

  uv_close((uv_handle_t *)&k.t, NULL);
  guard_close(&g);
  uvctx_release(c);
  uvctx_release(parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(done_async_is_sent_for_a_context_already_done) {
  uv_loop_t loop;
  guard_t g;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(uvctx_cancel(c), 0);
  uv_run(&loop, UV_RUN_DEFAULT);

  uv_async_t *h = uvctx_done_async(c); /* first asked for after done */
  ck_assert_ptr_nonnull(h);
  uv_ref((uv_handle_t *)h);
  guard_start(&g, &loop, (uv_handle_t *)h, 2000);
  uv_run(&loop, UV_RUN_DEFAULT); /* returns only if h was sent */
  ck_assert_int_eq(g.fired, 0);
  ck_assert_int_eq(uv_has_ref((uv_handle_t *)h), 0);

  guard_close(&g);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(done_async_is_sent_for_a_context_born_done) {
  uv_loop_t loop;
  guard_t g;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *c = mk_timeout(&loop, uvctx_background(), 0);
  uv_async_t *h = uvctx_done_async(c);
  ck_assert_ptr_nonnull(h);
  uv_ref((uv_handle_t *)h);
  guard_start(&g, &loop, (uv_handle_t *)h, 2000);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(g.fired, 0);
  ck_assert_int_eq(uv_has_ref((uv_handle_t *)h), 0);
  guard_close(&g);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(done_async_is_closed_by_uvctx_on_release) {
  uv_loop_t loop;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  uvctx_t *t = mk_timeout(&loop, c, 60000);
  uvctx_t *v = mk_value(t, &key_a, NULL);
  ck_assert_ptr_nonnull(uvctx_done_async(c));
  ck_assert_ptr_nonnull(uvctx_done_async(v)); /* t's */
  uvctx_release(v);
  uvctx_release(t);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop); /* uv_loop_close would be UV_EBUSY otherwise */
}
END_TEST

START_TEST(done_async_refd_is_closed_by_uvctx_on_release) {
  uv_loop_t loop;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  uv_async_t *h = uvctx_done_async(c);
  ck_assert_ptr_nonnull(h);
  uv_ref((uv_handle_t *)h);
  guard_t g;
  guard_start(&g, &loop, (uv_handle_t *)h, 2000);
  uvctx_release(c); /* never done: the closing is what lets uv_run return */
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(g.fired, 0);
  guard_close(&g);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ------------------------------------------------------------------------- */

Suite *watch_suite(void) {
  Suite *s = suite_create("watch");

  TCase *tc = tcase_create("delivery");
  tcase_set_timeout(tc, TIMEOUT_LOOP_S);
  tcase_add_test(tc, watch_callback_runs_exactly_once);
  tcase_add_test(tc, watch_callback_runs_on_loop_thread);
  tcase_add_test(tc, watch_callback_never_runs_inside_cancel);
  tcase_add_test(tc, watch_callback_never_runs_inside_watch);
  tcase_add_test(tc, watch_callback_never_runs_inside_constructor);
  tcase_add_test(tc, due_callbacks_keep_the_loop_alive);
  suite_add_tcase(s, tc);

  tc = tcase_create("err");
  tcase_set_timeout(tc, TIMEOUT_LOOP_S);
  tcase_add_test(tc, watch_err_is_ecanceled_after_cancel);
  tcase_add_test(tc, watch_err_is_etimedout_after_deadline);
  tcase_add_test(tc, watch_err_is_the_err_not_the_cause);
  tcase_add_test(tc, watch_err_of_descendant_is_ancestors_err);
  suite_add_tcase(s, tc);

  tc = tcase_create("order");
  tcase_set_timeout(tc, TIMEOUT_LOOP_S);
  tcase_add_test(tc, watch_order_ancestor_first_then_registration_order);
  tcase_add_test(tc, watch_order_ancestor_first_when_a_deadline_finishes_the_tree);
  tcase_add_test(tc, watch_order_value_context_after_its_cancellable_ancestor);
  suite_add_tcase(s, tc);

  tc = tcase_create("already_done");
  tcase_set_timeout(tc, TIMEOUT_LOOP_S);
  tcase_add_test(tc, watch_of_done_context_runs_later_never_synchronously);
  tcase_add_test(tc, watch_of_born_done_context_runs_later);
  tcase_add_test(tc, watch_of_done_context_from_a_callback_runs_on_a_later_callback);
  suite_add_tcase(s, tc);

  tc = tcase_create("unwatch");
  tcase_set_timeout(tc, TIMEOUT_LOOP_S);
  tcase_add_test(tc, unwatch_before_done_returns_0_and_callback_never_runs);
  tcase_add_test(tc, unwatch_after_cancel_before_delivery_returns_0_and_callback_never_runs);
  tcase_add_test(tc, unwatch_after_callback_ran_returns_ealready);
  tcase_add_test(tc, unwatch_inside_own_callback_returns_ealready);
  tcase_add_test(tc, unwatch_twice_returns_ealready);
  tcase_add_test(tc, unwatch_from_another_callback_of_the_same_batch_prevents_it);
  tcase_add_test(tc, unwatch_from_an_ancestors_callback_prevents_the_descendants_watch);
  tcase_add_test(tc, watch_with_a_pending_watch_struct_is_ebusy);
  tcase_add_test(tc, unwatched_watch_struct_can_be_reused);
  suite_add_tcase(s, tc);

  tc = tcase_create("keeps_alive");
  tcase_set_timeout(tc, TIMEOUT_LOOP_S);
  tcase_add_test(tc, pending_watch_keeps_its_context_alive);
  tcase_add_test(tc, unwatching_the_last_holder_frees_the_context);
  suite_add_tcase(s, tc);

  tc = tcase_create("never_done_and_values");
  tcase_set_timeout(tc, TIMEOUT_LOOP_S);
  tcase_add_test(tc, watch_of_a_root_succeeds_never_runs_and_unwatch_returns_0);
  tcase_add_test(tc, watch_of_without_cancel_succeeds_never_runs_and_unwatch_returns_0);
  tcase_add_test(tc, watch_of_a_value_context_of_a_root_never_runs);
  tcase_add_test(tc, watch_of_a_value_context_fires_when_its_ancestor_is_cancelled);
  tcase_add_test(tc, watch_of_a_value_context_fires_at_its_ancestors_deadline);
  suite_add_tcase(s, tc);

  tc = tcase_create("in_callback");
  tcase_set_timeout(tc, TIMEOUT_LOOP_S);
  tcase_add_test(tc, callback_may_free_its_watch);
  tcase_add_test(tc, callback_may_release_its_context);
  tcase_add_test(tc, callback_may_watch_again_with_the_same_watch_struct);
  tcase_add_test(tc, callback_may_watch_another_context_with_the_same_watch_struct);
  tcase_add_test(tc, callback_may_cancel_another_context_whose_watches_then_run);
  suite_add_tcase(s, tc);

  tc = tcase_create("done_async");
  tcase_set_timeout(tc, TIMEOUT_LOOP_S);
  tcase_add_test(tc, done_async_returns_the_same_handle_on_each_call);
  tcase_add_test(tc, done_async_is_null_when_the_context_can_never_be_done);
  tcase_add_test(tc, done_async_of_a_value_context_is_its_cancellable_ancestors);
  tcase_add_test(tc, done_async_handle_is_unrefd);
  tcase_add_test(tc, done_async_refd_keeps_the_loop_running_until_the_deadline);
  tcase_add_test(tc, done_async_refd_keeps_the_loop_running_until_cancelled);
  tcase_add_test(tc, done_async_is_sent_for_a_context_already_done);
  tcase_add_test(tc, done_async_is_sent_for_a_context_born_done);
  tcase_add_test(tc, done_async_is_closed_by_uvctx_on_release);
  tcase_add_test(tc, done_async_refd_is_closed_by_uvctx_on_release);
  suite_add_tcase(s, tc);

  return s;
}
