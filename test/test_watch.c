/* Being told that a context is done: uvctx_watch / uvctx_unwatch (Go's
 * AfterFunc and its stop function) and uvctx_done_async (Go's Done channel).
 *
 * Each test states one rule of the contract in its name. A rec (helpers.h) is
 * a watch that records how its callback was called: how many times, with which
 * err, on which thread, and in which position among all the callbacks of the
 * test. */
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "test.h"

static int key_a; /* keys compare by address */

/* --- When and where the callback runs --- */

START_TEST(watch_callback_never_runs_inside_watch) {
  journal_t j = {0};
  rec_t first, second;
  uvctx_t *c = mk_cancel(&loop, uvctx_background());

  rec_watch(&first, &j, c);
  ck_assert_int_eq(uvctx_cancel(c), 0);
  /* first is due; watching again must deliver neither of them. */
  rec_watch(&second, &j, c);
  ck_assert_int_eq(j.ran, 0);

  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(first.calls, 1);
  ck_assert_int_eq(second.calls, 1);

  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(watch_callback_never_runs_inside_constructor) {
  journal_t j = {0};
  rec_t p;
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  rec_watch(&p, &j, parent);
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

  release_all(c1, c2, c3, c4, c5, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* --- The err argument --- */

/* The watch error matrix: how the watched context is made (the context that
 * finishes itself, a cancel child of it, a value context two levels below it,
 * or an any of another live context and it) x how it finishes (cancel,
 * cancel with a cause, its deadline (uvctx_with_timeout_cause() with cause
 * 0), its deadline with a cause (uvctx_with_deadline_cause()), done before
 * the watch, born done). Until then it is not done (a 5 ms deadline may
 * pass before it is asked, on a slow machine). The callback runs exactly
 * once, on the loop thread, never inside the call that finished the context,
 * with the context's err and the cause given (a deadline's without one:
 * UV_ETIMEDOUT); a deadline is never early; the context then refuses a
 * cancel; the other parent of an any is left alone. */
enum { OWN, CHILD, VALUE, ANY, NMADE };
enum {
  BY_CANCEL,
  BY_CAUSE,
  BY_DEADLINE,
  BY_DEADLINE_CAUSE,
  DONE_BEFORE,
  BORN_DONE,
  NFINISH
};

START_TEST(watch_err_is_how_the_context_finished) {
  static const int causes[NFINISH] = {UV_ECANCELED, UV_EPIPE,     UV_ETIMEDOUT,
                                      UV_EHOSTDOWN, UV_ECANCELED, UV_ECONNRESET};
  int made = _i / NFINISH, finish = _i % NFINISH;
  int by_deadline = finish == BY_DEADLINE || finish == BY_DEADLINE_CAUSE;
  int err = by_deadline ? UV_ETIMEDOUT : UV_ECANCELED;
  int cause = causes[finish];
  rec_t p;
  uvctx_t *chain[3] = {NULL, NULL, NULL}, *other = NULL;
  if (finish == BY_DEADLINE)
    chain[0] = mk_timeout_cause(&loop, uvctx_background(), 5, 0);
  else if (finish == BY_DEADLINE_CAUSE)
    ck_assert_int_eq(uvctx_with_deadline_cause(&loop, uvctx_background(),
                                               uvctx_now() + 5, cause,
                                               &chain[0]),
                     0);
  else
    chain[0] = mk_cancel(&loop, uvctx_background());
  uint64_t deadline = by_deadline ? deadline_of(chain[0]) : 0;
  if (finish == BORN_DONE && made != OWN)
    ck_assert_int_eq(uvctx_cancel_cause(chain[0], cause), 0);
  if (made == CHILD)
    chain[1] = mk_cancel(&loop, chain[0]);
  if (made == VALUE) {
    chain[1] = mk_value(chain[0], &key_a, NULL);
    chain[2] = mk_value(chain[1], &key_a, &p);
  }
  if (made == ANY) {
    uvctx_t *parents[2];
    parents[0] = other = mk_cancel(&loop, uvctx_background());
    parents[1] = chain[0];
    ck_assert_int_eq(uvctx_with_any(&loop, parents, 2, &chain[1]), 0);
  }
  uvctx_t *c = chain[made == OWN ? 0 : made == VALUE ? 2 : 1];
  if (finish == BORN_DONE && made == OWN) { /* born timed out */
    c = chain[1] = mk_timeout(&loop, uvctx_background(), 0);
    err = cause = UV_ETIMEDOUT;
  }
  if (finish == DONE_BEFORE) {
    ck_assert_int_eq(uvctx_cancel(chain[0]), 0);
    uv_run(&loop, UV_RUN_DEFAULT); /* the cancel is old news */
  }

  if (finish < DONE_BEFORE) /* not done yet, unless its deadline has come */
    ck_assert(uvctx_err(c) == 0 || (by_deadline && uvctx_now() >= deadline));
  rec_watch(&p, NULL, c);
  if (finish == BY_CANCEL || finish == BY_CAUSE) {
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(p.calls, 0);
    ck_assert_int_eq(finish == BY_CAUSE ? uvctx_cancel_cause(chain[0], cause)
                                        : uvctx_cancel(chain[0]),
                     0);
    assert_done(c, err, cause);
    ck_assert_int_eq(p.calls, 0); /* never inside the cancel */
  }
  if (by_deadline)
    ck_assert(poll_until(&loop, rec_called, &p, deadline + EVENTUALLY_MS));
  else /* the due callback alone keeps the loop alive until it has run */
    uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(p.calls, 1);
  ck_assert_int_eq(p.err, err);
  ck_assert_int_eq(p.err_inside, err);
  ck_assert_int_eq(p.cause, cause);
  ck_assert(rec_ran_here(&p));
  if (by_deadline)
    ck_assert_uint_ge(p.now, deadline);
  ck_assert_int_eq(uvctx_cancel(c), made == VALUE ? UV_EINVAL : UV_EALREADY);
  assert_done(c, err, cause);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_run(&loop, UV_RUN_NOWAIT);
  ck_assert_int_eq(p.calls, 1); /* exactly once */
  if (other != NULL) {
    assert_not_done(other);
    uvctx_release(other);
  }

  for (int i = 2; i >= 0; i--)
    if (chain[i] != NULL)
      uvctx_release(chain[i]);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* --- Order --- */

/* parent -> child -> grandchild, plus sibling under parent. Watches are
 * registered in a scrambled order across contexts; ids say which context and
 * which registration: P1 P2 P3, C1 C2, G1 G2 G3, S1 S2. */
enum { P1, P2, P3, C1, C2, G1, G2, G3, S1, S2, NPROBES };

static void watch_scrambled(rec_t *pr, journal_t *j, uvctx_t *p, uvctx_t *c,
                            uvctx_t *g, uvctx_t *s) {
  rec_watch(&pr[G1], j, g);
  rec_watch(&pr[S1], j, s);
  rec_watch(&pr[C1], j, c);
  rec_watch(&pr[P1], j, p);
  rec_watch(&pr[G2], j, g);
  rec_watch(&pr[P2], j, p);
  rec_watch(&pr[S2], j, s);
  rec_watch(&pr[C2], j, c);
  rec_watch(&pr[G3], j, g);
  rec_watch(&pr[P3], j, p);
}

static void assert_tree_order(const rec_t *pr, int err) {
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

/* Rows: the parent is cancelled; the parent's deadline finishes the tree
 * (the grandchild has a later one of its own). */
START_TEST(watch_order_ancestor_first_then_registration_order) {
  journal_t j = {0};
  rec_t pr[NPROBES];
  uvctx_t *p = _i == 0 ? mk_cancel(&loop, uvctx_background())
                       : mk_timeout(&loop, uvctx_background(), 5);
  uvctx_t *c = mk_cancel(&loop, p);
  uvctx_t *g = _i == 0 ? mk_cancel(&loop, c) : mk_timeout(&loop, c, 60000);
  uvctx_t *s = mk_cancel(&loop, p);
  watch_scrambled(pr, &j, p, c, g, s);

  if (_i == 0) {
    ck_assert_int_eq(uvctx_cancel(p), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
  } else {
    ck_assert(run_until(&loop, &j.ran, NPROBES));
  }
  assert_tree_order(pr, _i == 0 ? UV_ECANCELED : UV_ETIMEDOUT);

  release_all(g, s, c, p);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(watch_order_value_context_after_its_cancellable_ancestor) {
  journal_t j = {0};
  rec_t v1, p1, v2, c1, p2;
  uvctx_t *p = mk_cancel(&loop, uvctx_background());
  uvctx_t *v = mk_value(p, &key_a, NULL);
  uvctx_t *c = mk_cancel(&loop, v);
  /* registered: v, p, v, c, p */
  rec_watch(&v1, &j, v);
  rec_watch(&p1, &j, p);
  rec_watch(&v2, &j, v);
  rec_watch(&c1, &j, c);
  rec_watch(&p2, &j, p);

  ck_assert_int_eq(uvctx_cancel(p), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(j.ran, 5);
  /* p's, then the value context's, then c's */
  ck_assert_int_lt(p1.seq, p2.seq);
  ck_assert_int_lt(p2.seq, v1.seq);
  ck_assert_int_lt(v1.seq, v2.seq);
  ck_assert_int_lt(v2.seq, c1.seq);

  release_all(c, v, p);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* --- Watching a context that is already done --- */

/* Inside first's callback, watch the (done) context with second and record
 * whether second ran inside that uvctx_watch call. */
static void action_watch_second(rec_t *p) {
  rec_t *second = p->arg;
  rec_init(second, p->j, p->ctx);
  p->action_rc = uvctx_watch(p->ctx, &second->w, rec_cb);
  p->action_rc2 = second->calls;
}

START_TEST(watch_of_done_context_from_a_callback_runs_on_a_later_callback) {
  journal_t j = {0};
  rec_t first, second;
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  rec_watch(&first, &j, c);
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

/* --- Unwatch --- */

/* Unwatch of a watch or a drain at each stage: before its context is done,
 * done with a child still alive (a drain waits for it), due but not yet run,
 * after it ran. It returns 0 and the callback never runs, until it ran:
 * then, and on a second call, UV_EALREADY. Another watch of the same context
 * is not affected. (test_drain.c and test_badinput.c test drains and bad
 * input further.) */
enum { BEFORE_DONE, CHILD_ALIVE, DUE, RAN };
static const struct {
  int drain;
  int stage;
} unwatch_rows[] = {{0, BEFORE_DONE}, {0, DUE},         {0, RAN},
                    {1, BEFORE_DONE}, {1, CHILD_ALIVE}, {1, DUE},
                    {1, RAN}};

START_TEST(unwatch_returns_0_and_the_callback_never_runs_until_it_ran) {
  int drain = unwatch_rows[_i].drain, stage = unwatch_rows[_i].stage;
  rec_t r, other;
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  uvctx_t *child = stage == CHILD_ALIVE ? mk_cancel(&loop, c) : NULL;
  if (drain)
    rec_drain(&r, NULL, c);
  else
    rec_watch(&r, NULL, c);
  rec_watch(&other, NULL, c);
  if (stage != BEFORE_DONE)
    ck_assert_int_eq(uvctx_cancel(c), 0);
  if (stage == CHILD_ALIVE || stage == RAN)
    uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(r.calls, stage == RAN);

  ck_assert_int_eq(uvctx_unwatch(&r.w), stage == RAN ? UV_EALREADY : 0);
  ck_assert_int_eq(uvctx_unwatch(&r.w), UV_EALREADY);
  if (stage == BEFORE_DONE)
    ck_assert_int_eq(uvctx_cancel(c), 0);
  if (child != NULL)
    uvctx_release(child);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_run(&loop, UV_RUN_NOWAIT);
  ck_assert_int_eq(r.calls, stage == RAN);
  ck_assert_int_eq(other.calls, 1);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Unwatch from inside a callback, of: the callback's own watch (it ran:
 * UV_EALREADY); another watch of the same context, due in the same batch;
 * the watch of a descendant, due after the ancestor's. Either of the last
 * two is then never run. */
enum { OWN_WATCH, SAME_BATCH, DESCENDANTS, NUNWATCH_FROM };

static void action_unwatch_arg(rec_t *p) {
  rec_t *target = p->arg;
  p->action_rc = uvctx_unwatch(&target->w);
}

START_TEST(unwatch_from_a_callback_prevents_the_watch_unless_it_ran) {
  rec_t first, other;
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *child = mk_cancel(&loop, parent);
  if (_i == DESCENDANTS)
    rec_watch(&other, NULL, child);
  rec_watch(&first, NULL, parent);
  if (_i == SAME_BATCH)
    rec_watch(&other, NULL, parent);
  first.action = action_unwatch_arg;
  first.arg = _i == OWN_WATCH ? &first : &other;
  first.action_rc = 12345;
  ck_assert_int_eq(uvctx_cancel(parent), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(first.calls, 1);
  ck_assert_int_eq(first.action_rc, _i == OWN_WATCH ? UV_EALREADY : 0);
  if (_i != OWN_WATCH)
    ck_assert_int_eq(other.calls, 0);
  release_all(child, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(unwatched_watch_struct_can_be_reused) {
  rec_t p;
  uvctx_t *a = mk_cancel(&loop, uvctx_background());
  uvctx_t *b = mk_cancel(&loop, uvctx_background());
  rec_watch(&p, NULL, a);
  ck_assert_int_eq(uvctx_unwatch(&p.w), 0);
  p.ctx = b;
  ck_assert_int_eq(uvctx_watch(b, &p.w, rec_cb), 0);
  ck_assert_int_eq(uvctx_cancel(a), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(p.calls, 0);
  ck_assert_int_eq(uvctx_cancel(b), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(p.calls, 1);
  release_all(a, b);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* --- A pending watch keeps its context alive --- */

/* The watch holds the last reference to c, with its timer and its signal:
 * it keeps c alive and readable until its callback has run; or the callback
 * releases c itself (it can still read it: the watch's reference goes when
 * the callback returns); or unwatch drops it. Either way c is then freed, or
 * uv_loop_close would be UV_EBUSY. */
enum { RELEASED_BEFORE, RELEASED_IN_CALLBACK, UNWATCHED, NHOLDERS };

static void action_release_ctx(rec_t *p) {
  uvctx_release(p->ctx);
  p->action_rc = uvctx_err(p->ctx);
}

START_TEST(a_pending_watch_keeps_its_context_alive) {
  rec_t p;
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *c = mk_timeout(&loop, parent, 60000);
  ck_assert_ptr_nonnull(uvctx_done_async(c));
  rec_watch(&p, NULL, c);
  if (_i == RELEASED_IN_CALLBACK)
    p.action = action_release_ctx;
  else
    uvctx_release(c);
  uv_run(&loop, UV_RUN_DEFAULT);
  if (_i == UNWATCHED) {
    ck_assert_int_eq(uvctx_unwatch(&p.w), 0);
  } else {
    ck_assert_int_eq(uvctx_cancel(parent), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  ck_assert_int_eq(p.calls, _i != UNWATCHED);
  if (_i == RELEASED_BEFORE) {
    ck_assert_int_eq(p.err, UV_ECANCELED);
    ck_assert_int_eq(p.err_inside, UV_ECANCELED);
  }
  if (_i == RELEASED_IN_CALLBACK)
    ck_assert_int_eq(p.action_rc, UV_ECANCELED);

  uvctx_release(parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* --- Contexts that can never be done, and value contexts --- */

/* Each context that cannot be cancelled (helpers.h), from the background on:
 * the watch succeeds, but only a value context of a cancellable parent ever
 * runs it (when that parent is cancelled); on the others it stays pending
 * and unwatch returns 0. */
START_TEST(watch_of_an_uncancellable_context_runs_only_if_an_ancestor_can) {
  journal_t j = {0};
  rec_t p;
  uvctx_t *made[2];
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *c = mk_uncancellable(_i, parent, made);
  rec_watch(&p, &j, c);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(uvctx_cancel(parent), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  if (_i == U_VALUE_OF_CANCEL) {
    ck_assert_int_eq(p.calls, 1);
    ck_assert_int_eq(p.err, UV_ECANCELED);
    ck_assert_int_eq(uvctx_unwatch(&p.w), UV_EALREADY);
  } else {
    ck_assert_int_eq(p.calls, 0);
    ck_assert_int_eq(uvctx_unwatch(&p.w), 0);
  }
  release_all(made[1], made[0]);
  uvctx_release(parent);
  ASSERT_LOOP_CLOSES(&loop);
  ck_assert_int_eq(j.ran, _i == U_VALUE_OF_CANCEL);
}
END_TEST

/* --- What a callback may do --- */

static int freed_calls;

static void free_self_cb(uvctx_watch_t *w, int err) {
  (void)err;
  freed_calls++;
  memset(w, 0xa5, sizeof *w); /* whatever uvctx reads afterwards is garbage */
  free(w);
}

START_TEST(callback_may_free_its_watch) {
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
  release_all(c, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Watches again with the same struct, once: p->arg if set (a live context),
 * else the same (done) context. */
static void action_rewatch(rec_t *p) {
  if (p->calls == 1) {
    if (p->arg != NULL)
      p->ctx = p->arg;
    p->action_rc = uvctx_watch(p->ctx, &p->w, rec_cb);
    p->action_rc2 = p->calls; /* still 1: not run inside uvctx_watch */
  }
}

/* Rows: the same context again; another context. */
START_TEST(callback_may_watch_again_with_the_same_watch_struct) {
  rec_t p;
  uvctx_t *a = mk_cancel(&loop, uvctx_background());
  uvctx_t *b = mk_cancel(&loop, uvctx_background());
  rec_watch(&p, NULL, a);
  p.action = action_rewatch;
  p.arg = _i == 0 ? NULL : b;
  ck_assert_int_eq(uvctx_cancel(a), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(p.action_rc, 0);
  ck_assert_int_eq(p.action_rc2, 1);
  if (_i == 1) {
    ck_assert_int_eq(p.calls, 1);
    ck_assert_int_eq(uvctx_cancel_cause(b, UV_EIO), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  ck_assert_int_eq(p.calls, 2);
  ck_assert_int_eq(p.err, UV_ECANCELED);
  ck_assert_int_eq(p.cause, _i == 0 ? UV_ECANCELED : UV_EIO);
  ck_assert_int_eq(uvctx_unwatch(&p.w), UV_EALREADY);
  release_all(a, b);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

static void action_cancel_arg(rec_t *p) {
  p->action_rc = uvctx_cancel(p->arg);
}

START_TEST(callback_may_cancel_another_context_whose_watches_then_run) {
  journal_t j = {0};
  rec_t pa, pb;
  uvctx_t *a = mk_cancel(&loop, uvctx_background());
  uvctx_t *b = mk_cancel(&loop, uvctx_background());
  rec_watch(&pb, &j, b);
  rec_watch(&pa, &j, a);
  pa.action = action_cancel_arg;
  pa.arg = b;
  ck_assert_int_eq(uvctx_cancel(a), 0);
  uv_run(&loop, UV_RUN_DEFAULT); /* b's callback became due in a callback */
  ck_assert_int_eq(pa.calls, 1);
  ck_assert_int_eq(pa.action_rc, 0);
  ck_assert_int_eq(pb.calls, 1);
  ck_assert_int_gt(pb.seq, pa.seq);
  release_all(a, b);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* --- uvctx_done_async --- */

/* One signal per cancellable context, the same on each call; a value
 * context's is its cancellable ancestor's, even when asked for through the
 * value context first. It is unref'd, and closed by uvctx on release
 * (uv_loop_close would be UV_EBUSY otherwise). */
START_TEST(done_async_is_one_unrefd_handle_per_context_closed_on_release) {
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  uvctx_t *v1 = mk_value(c, &key_a, NULL);
  uvctx_t *v2 = mk_value(v1, &key_a, NULL);
  uvctx_t *t = mk_timeout(&loop, c, 60000);
  uvctx_t *vt = mk_value(t, &key_a, NULL);
  uv_async_t *h = uvctx_done_async(v2);
  ck_assert_ptr_nonnull(h);
  ck_assert_ptr_eq(uvctx_done_async(c), h);
  ck_assert_ptr_eq(uvctx_done_async(c), h);
  ck_assert_ptr_eq(uvctx_done_async(v1), h);
  uv_async_t *ht = uvctx_done_async(vt);
  ck_assert_ptr_nonnull(ht);
  ck_assert_ptr_ne(ht, h);
  ck_assert_ptr_eq(uvctx_done_async(t), ht);
  ck_assert_ptr_eq(h->loop, &loop);
  ck_assert_int_eq(uv_has_ref((uv_handle_t *)h), 0);
  ck_assert_int_eq(uv_has_ref((uv_handle_t *)ht), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0); /* returns at once */
  assert_not_done(c);
  release_all(vt, t, v2, v1, c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Refs c's done signal and runs the loop, which must then end by itself: the
 * signal alone keeps it alive, until uvctx has sent it and unref'd it again
 * (or closed it). The guard turns a hang into a failure; it outlives the
 * call, its closing ending in the test's last uv_run. Returns the signal. */
static stop_guard_t g;

static uv_async_t *run_with_done_signal_refd(uvctx_t *c) {
  uv_async_t *h = uvctx_done_async(c);
  ck_assert_ptr_nonnull(h);
  uv_ref((uv_handle_t *)h);
  stop_guard_start(&loop, &g, EVENTUALLY_MS);
  g.refd = (uv_handle_t *)h;
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_msg(!g.fired, "the loop did not end once the signal was due");
  stop_guard_close(&g);
  return h;
}

START_TEST(done_async_refd_keeps_the_loop_running_until_the_deadline) {
  uint64_t deadline = uvctx_now() + 10;
  uvctx_t *c = mk_deadline(&loop, uvctx_background(), deadline);
  uv_async_t *h = run_with_done_signal_refd(c);
  assert_done(c, UV_ETIMEDOUT, UV_ETIMEDOUT);
  ck_assert_uint_ge(uvctx_now(), deadline);
  ck_assert_int_eq(uv_has_ref((uv_handle_t *)h), 0); /* unref'd again */
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
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *c = mk_cancel(&loop, parent);
  /* An unref'd timer of ours cancels the parent: only c's signal keeps the
   * loop up. */
  canceller_t k = {.ctx = parent};
  ck_assert_int_eq(uv_timer_init(&loop, &k.t), 0);
  k.t.data = &k;
  ck_assert_int_eq(uv_timer_start(&k.t, canceller_fire, 5, 0), 0);
  uv_unref((uv_handle_t *)&k.t);

  uv_async_t *h = run_with_done_signal_refd(c);
  ck_assert_int_eq(k.fired, 1);
  ck_assert_int_eq(uvctx_err(c), UV_ECANCELED);
  ck_assert_int_eq(uv_has_ref((uv_handle_t *)h), 0);

  uv_close((uv_handle_t *)&k.t, NULL);
  release_all(c, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Rows: a context cancelled before its signal was first asked for; a context
 * born done. The signal is sent all the same. */
START_TEST(done_async_is_sent_for_a_context_already_done) {
  uvctx_t *c;
  if (_i == 0) {
    c = mk_cancel(&loop, uvctx_background());
    ck_assert_int_eq(uvctx_cancel(c), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
  } else {
    c = mk_timeout(&loop, uvctx_background(), 0);
  }
  uv_async_t *h = run_with_done_signal_refd(c);
  ck_assert_int_eq(uv_has_ref((uv_handle_t *)h), 0);
  uvctx_release(c);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(done_async_refd_is_closed_by_uvctx_on_release) {
  uvctx_t *c = mk_cancel(&loop, uvctx_background());
  uv_async_t *h = uvctx_done_async(c);
  ck_assert_ptr_nonnull(h);
  uv_ref((uv_handle_t *)h);
  stop_guard_start(&loop, &g, EVENTUALLY_MS);
  g.refd = (uv_handle_t *)h;
  uvctx_release(c); /* never done: the closing is what lets uv_run return */
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(g.fired, 0);
  stop_guard_close(&g);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

Suite *watch_suite(void) {
  return SUITE(
      "watch",
      {"delivery", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           watch_callback_never_runs_inside_watch,
           watch_callback_never_runs_inside_constructor)},
      {"err", TIMEOUT_LOOP_S, loop_setup, NULL,
       .loops = LOOPS(
           {watch_err_is_how_the_context_finished, 0, NMADE * NFINISH})},
      {"order", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           watch_order_value_context_after_its_cancellable_ancestor),
       .loops = LOOPS(
           {watch_order_ancestor_first_then_registration_order, 0, 2})},
      {"already_done", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           watch_of_done_context_from_a_callback_runs_on_a_later_callback)},
      {"unwatch", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           unwatched_watch_struct_can_be_reused),
       .loops = LOOPS(
           {unwatch_returns_0_and_the_callback_never_runs_until_it_ran, 0,
            sizeof unwatch_rows / sizeof unwatch_rows[0]},
           {unwatch_from_a_callback_prevents_the_watch_unless_it_ran, 0,
            NUNWATCH_FROM})},
      {"keeps_alive", TIMEOUT_LOOP_S, loop_setup, NULL,
       .loops = LOOPS({a_pending_watch_keeps_its_context_alive, 0, NHOLDERS})},
      {"never_done_and_values", TIMEOUT_LOOP_S, loop_setup, NULL,
       .loops = LOOPS(
           {watch_of_an_uncancellable_context_runs_only_if_an_ancestor_can, U_BACKGROUND, NUNCANCELLABLE})},
      {"in_callback", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           callback_may_free_its_watch,
           callback_may_cancel_another_context_whose_watches_then_run),
       .loops = LOOPS(
           {callback_may_watch_again_with_the_same_watch_struct, 0, 2})},
      {"done_async", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           done_async_is_one_unrefd_handle_per_context_closed_on_release,
           done_async_refd_keeps_the_loop_running_until_the_deadline,
           done_async_refd_keeps_the_loop_running_until_cancelled,
           done_async_refd_is_closed_by_uvctx_on_release),
       .loops = LOOPS({done_async_is_sent_for_a_context_already_done, 0, 2})});
}
