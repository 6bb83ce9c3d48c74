/* Bad input: every invalid argument that uvctx.h documents, for every public
 * function (those of the Beyond-Go functions mostly in their own suites:
 * test_signal, test_any, test_reset, test_handles, test_drain, test_shutdown;
 * what they leave is here), and a loop that will not close. A call that
 * fails returns its documented code and changes nothing: *out keeps the
 * caller's sentinel, the parent is not done, no reference or handle is left
 * behind (the loop still closes), and the arguments that were valid can be
 * used again as if nothing had happened. */
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "test.h"

static const char key_user;
static char value_alice[] = "alice";

/* A cancellable parent that owns a handle (its done signal), so that a
 * reference wrongly kept by a failed call would keep the handle open and make
 * uv_loop_close() fail. */
static uvctx_t *mk_parent(uv_loop_t *loop) {
  uvctx_t *p = mk_cancel(loop, uvctx_background());
  ck_assert_ptr_nonnull(uvctx_done_async(p));
  return p;
}

/* The parent was not touched: not done, and still usable as a parent. */
static void assert_parent_untouched(uv_loop_t *loop, uvctx_t *parent) {
  assert_not_done(parent);
  uvctx_release(mk_cancel(loop, parent));
}

/* --- Constructors: UV_EINVAL, *out unchanged, nothing changed --- */

/* Every constructor (mk_kind()) x a live or a done parent: each NULL
 * argument and each bad value is UV_EINVAL with *out unchanged, the parent is
 * as it was, and the same call with good arguments then succeeds. A kind
 * that would be born done (_PAST, _ZERO) does not make bad arguments good,
 * and a context born done still rejects a bad cause. */
START_TEST(test_constructor_rejects_each_bad_argument_and_changes_nothing) {
  int kind = _i / 2, parent_done = _i % 2;
  uvctx_t *parent = mk_parent(&loop);
  if (parent_done)
    ck_assert_int_eq(uvctx_cancel_cause(parent, UV_EPIPE), 0);
  uvctx_t *out = SENTINEL, *out2 = SENTINEL;

  if (kind != MK_VALUE && kind != MK_WITHOUT) {
    ck_assert_int_eq(mk_kind(kind, NULL, parent, 0, &out, &out2), UV_EINVAL);
    ck_assert_ptr_eq(out, SENTINEL);
  }
  ck_assert_int_eq(mk_kind(kind, &loop, NULL, 0, &out, &out2), UV_EINVAL);
  ck_assert_ptr_eq(out, SENTINEL);
  ck_assert_int_eq(mk_kind(kind, &loop, parent, 0, NULL, &out2), UV_EINVAL);
  for (int bad = 1; bad <= mk_kind_bad_values(kind); bad++) {
    ck_assert_int_eq(mk_kind(kind, &loop, parent, bad, &out, &out2),
                     UV_EINVAL);
    ck_assert_ptr_eq(out, SENTINEL);
  }
  ck_assert_ptr_eq(out2, SENTINEL);
  ck_assert_ptr_null(uvctx_value(parent, &mk_kind_key));

  if (parent_done)
    assert_done(parent, UV_ECANCELED, UV_EPIPE);
  else
    assert_parent_untouched(&loop, parent);
  ck_assert_int_eq(mk_kind(kind, &loop, parent, 0, &out, &out2), 0);
  ck_assert_ptr_ne(out, SENTINEL);
  if (parent_done && kind != MK_VALUE && kind != MK_WITHOUT) {
    /* "Arguments are checked first, so a bad cause is UV_EINVAL even on a
     * context that is done." */
    int err = uvctx_err(out), cause = uvctx_cause(out);
    ck_assert_int_ne(err, 0);
    ck_assert_int_eq(uvctx_cancel_cause(out, 1), UV_EINVAL);
    ck_assert_int_eq(uvctx_cancel_cause(out, INT_MAX), UV_EINVAL);
    ck_assert_int_eq(uvctx_cancel_cause(out, UV_EIO), UV_EALREADY);
    assert_done(out, err, cause);
    if (kind == MK_SHUTDOWN) {
      ck_assert_int_eq(uvctx_shutdown(out, 1), UV_EINVAL);
      ck_assert_int_eq(uvctx_shutdown(out, 0), UV_EALREADY);
    }
  }
  release_all(out2 != SENTINEL ? out2 : NULL, out, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* --- Every other function: one argument wrong --- */

/* A call with one argument wrong, and what it must return; a row's name is
 * the call as written. ctx is a cancel context; below it, timed (a deadline)
 * and v, a value context of timed, a shutdown context sd (stopping its
 * child) and a signal context sig: the last two have no deadline of their
 * own that reset_timeout could move. rec.w is a free watch; buf, dl and f
 * hold what no failed call may write. */
#define BAD_CALLS(X)                                                           \
  X(uvctx_err(NULL), 0)                                                        \
  X(uvctx_cause(NULL), 0)                                                      \
  X(uvctx_value(NULL, &key_user), NULL)                                        \
  X(uvctx_value(v, NULL), NULL)                                                \
  X(uvctx_value(uvctx_background(), NULL), NULL)                               \
  X(uvctx_loop(NULL), NULL)                                                    \
  X(uvctx_done_async(NULL), NULL)                                              \
  X(uvctx_retain(NULL), NULL)                                                  \
  X(uvctx_deadline(NULL, &dl), UV_EINVAL)                                      \
  X(uvctx_deadline(timed, NULL), UV_EINVAL)                                    \
  X(uvctx_deadline(uvctx_background(), NULL), UV_EINVAL)                       \
  X(uvctx_format(NULL, buf, sizeof buf), UV_EINVAL)                            \
  X(uvctx_format(NULL, NULL, 0), UV_EINVAL)                                    \
  X(uvctx_format(ctx, NULL, 5), UV_EINVAL)                                     \
  X(uvctx_format(uvctx_background(), NULL, 1), UV_EINVAL)                      \
  X(uvctx_dump(NULL, f), UV_EINVAL)                                            \
  X(uvctx_dump(ctx, NULL), UV_EINVAL)                                          \
  X(uvctx_dump_loop(NULL, f), UV_EINVAL)                                       \
  X(uvctx_dump_loop(&loop, NULL), UV_EINVAL)                                   \
  X(uvctx_watch(NULL, &rec.w, rec_cb), UV_EINVAL)                              \
  X(uvctx_watch(ctx, NULL, rec_cb), UV_EINVAL)                                 \
  X(uvctx_watch(ctx, &rec.w, NULL), UV_EINVAL)                                 \
  X(uvctx_unwatch(NULL), UV_EINVAL)                                            \
  X(uvctx_cancel_cause(ctx, 1), UV_EINVAL)                                     \
  X(uvctx_cancel_cause(ctx, INT_MAX), UV_EINVAL)                               \
  X(uvctx_reset_timeout(sd, 0), UV_EINVAL)                                     \
  X(uvctx_reset_timeout(sd, 10), UV_EINVAL)                                    \
  X(uvctx_reset_timeout(stopping, 0), UV_EINVAL)                               \
  X(uvctx_reset_timeout(sig, 0), UV_EINVAL)                                    \
  X(uvctx_keepalive(sig, 1), UV_EINVAL)

#define NAME_OF(call, result) #call,
static const char *const bad_calls[] = {BAD_CALLS(NAME_OF)};
enum { NBAD_CALLS = sizeof bad_calls / sizeof bad_calls[0] };

START_TEST(test_call_with_a_bad_argument_fails_and_changes_nothing) {
  uvctx_t *ctx = mk_cancel(&loop, uvctx_background());
  uvctx_t *timed = mk_timeout(&loop, ctx, 60000);
  uvctx_t *v = mk_value(timed, &key_user, value_alice);
  uvctx_t *sd, *stopping, *sig;
  static const int sigs[] = {SIGUSR1};
  ck_assert_int_eq(
      uvctx_with_shutdown(&loop, ctx, NULL, 0, 60000, &stopping, &sd), 0);
  ck_assert_int_eq(uvctx_with_signal(&loop, ctx, sigs, 1, &sig), 0);
  uint64_t dl = 77;
  char buf[16], *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  rec_t rec;
  intptr_t got = 0, want = 0;
  int row = 0;
  ck_assert_ptr_nonnull(f);
  memset(buf, 'X', sizeof buf);
  rec_init(&rec, NULL, NULL);

#define CALL_ROW(call, result)                                                 \
  if (row++ == _i) {                                                           \
    got = (intptr_t)(call);                                                    \
    want = (intptr_t)(result);                                                 \
  }
  BAD_CALLS(CALL_ROW)
  ck_assert_msg(got == want, "%s is %jd, not %jd", bad_calls[_i],
                (intmax_t)got, (intmax_t)want);

  ck_assert_int_eq(fclose(f), 0);
  ck_assert_uint_eq(len, 0);
  free(text);
  for (size_t i = 0; i < sizeof buf; i++)
    ck_assert_int_eq(buf[i], 'X');
  ck_assert_uint_eq(dl, 77);
  ck_assert_int_eq(uvctx_deadline(sd, &dl), 0); /* no grace period yet */
  ck_assert_uint_eq(dl, 77);
  assert_not_done(ctx);
  assert_not_done(timed);
  assert_not_done(sd);
  assert_not_done(sig);
  ck_assert_ptr_eq(uvctx_value(v, &key_user), value_alice);
  /* Nothing was registered: the watch is free to be used, and a cancel runs
   * exactly the one good registration. */
  ck_assert_int_eq(uvctx_watch(ctx, &rec.w, rec_cb), 0);
  ck_assert_int_eq(uvctx_cancel(ctx), 0);
  assert_done(ctx, UV_ECANCELED, UV_ECANCELED);
  assert_done(timed, UV_ECANCELED, UV_ECANCELED);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_called_once(&rec, UV_ECANCELED);

  release_all(sig, stopping, sd, v, timed, ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Cancel is UV_EINVAL and changes nothing. Only the value context of a
 * cancellable context can ever be done: its done signal is its parent's;
 * the others have none. */
START_TEST(test_cancel_of_a_context_that_is_not_cancellable_is_einval) {
  uvctx_t *made[2] = {NULL, NULL};
  uvctx_t *parent = mk_parent(&loop);
  uvctx_t *c = mk_uncancellable(_i, parent, made);

  ck_assert_int_eq(uvctx_cancel(c), UV_EINVAL);
  ck_assert_int_eq(uvctx_cancel_cause(c, UV_EPIPE), UV_EINVAL);
  ck_assert_int_eq(uvctx_cancel_cause(c, 0), UV_EINVAL);
  assert_not_done(c);
  if (_i == U_VALUE_OF_CANCEL)
    ck_assert_ptr_eq(uvctx_done_async(c), uvctx_done_async(parent));
  else
    ck_assert_ptr_null(uvctx_done_async(c));

  release_all(made[1], made[0]);
  assert_parent_untouched(&loop, parent);
  uvctx_release(parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_retain_and_release_of_null_and_of_roots_do_nothing) {
  uvctx_t *roots[] = {uvctx_background(), uvctx_todo()};
  const char *names[] = {"background", "todo"};

  uvctx_release(NULL);
  for (size_t i = 0; i < 2; i++) {
    /* More releases than retains: a counted root would be freed here. */
    for (int k = 0; k < 3; k++)
      ck_assert_ptr_eq(uvctx_retain(roots[i]), roots[i]);
    for (int k = 0; k < 10; k++)
      uvctx_release(roots[i]);

    char buf[32];
    ck_assert_int_eq(uvctx_format(roots[i], buf, sizeof(buf)),
                     (int)strlen(names[i]));
    ck_assert_str_eq(buf, names[i]);
    ck_assert_int_eq(uvctx_err(roots[i]), 0);
    uvctx_release(mk_cancel(&loop, roots[i]));
  }
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* --- Gaps the other suites leave --- */

/* The allocator may only be replaced while no context is alive. */
START_TEST(test_replace_allocator_rejects_null_and_keeps_the_old_one) {
  counting_install();
  ck_assert_int_eq(uvctx_replace_allocator(NULL, free), UV_EINVAL);
  ck_assert_int_eq(uvctx_replace_allocator(malloc, NULL), UV_EINVAL);
  ck_assert_int_eq(uvctx_replace_allocator(NULL, NULL), UV_EINVAL);

  uvctx_t *ctx = mk_cancel(&loop, uvctx_background());
  uvctx_t *v = mk_value(ctx, &key_user, value_alice);
  ck_assert_int_ge(counting_allocs, 2);
  release_all(v, ctx);
  ASSERT_LOOP_CLOSES(&loop);
  counting_uninstall();
}
END_TEST

static void never_cb(uvctx_watch_t *w, int err) {
  (void)w;
  (void)err;
  ck_abort_msg("a rejected registration ran");
}

/* A watch is pending in four ways -- waiting for its context, due, on a
 * context never done, waiting as a drain -- and every function that
 * registers a watch says UV_EBUSY for each, changing nothing. */
START_TEST(test_every_registration_of_a_pending_watch_is_ebusy) {
  uv_timer_t handle;
  uv_fs_t fs;
  ck_assert_int_eq(uv_timer_init(&loop, &handle), 0);
  memset(&fs, 0, sizeof fs);
  fs.type = UV_FS;
  uvctx_t *live = mk_cancel(&loop, uvctx_background());
  uvctx_t *done = mk_cancel(&loop, uvctx_background());
  uvctx_t *never = mk_without(live);
  uvctx_t *other = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(uvctx_cancel(done), 0);
  rec_t recs[4];
  uvctx_t *own[4] = {live, done, never, live};
  rec_watch(&recs[0], NULL, live);  /* waiting */
  rec_watch(&recs[1], NULL, done);  /* due */
  rec_watch(&recs[2], NULL, never); /* never */
  rec_drain(&recs[3], NULL, live);  /* drain */

  /* Registered again, on another context or on its own (but a drain of a
   * context that cannot be cancelled is invalid anyway). */
  for (int i = 0; i < 8; i++) {
    uvctx_watch_t *w = &recs[i / 2].w;
    uvctx_t *to = i % 2 ? own[i / 2] : other;
    if (to == never)
      continue;
    ck_assert_int_eq(uvctx_watch(to, w, never_cb), UV_EBUSY);
    ck_assert_int_eq(uvctx_drain(to, w, never_cb), UV_EBUSY);
    ck_assert_int_eq(uvctx_close_on_done(to, (uv_handle_t *)&handle, w, NULL),
                     UV_EBUSY);
    ck_assert_int_eq(uvctx_cancel_on_done(to, (uv_req_t *)&fs, w), UV_EBUSY);
  }
  /* Each is still what it was. */
  ck_assert_int_eq(uvctx_cancel(other), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(recs[0].calls, 0);
  ck_assert_int_eq(recs[1].calls, 1);
  ck_assert_int_eq(uv_is_closing((uv_handle_t *)&handle), 0);
  ck_assert_int_eq(uvctx_unwatch(&recs[2].w), 0);
  ck_assert_int_eq(uvctx_unwatch(&recs[3].w), 0);
  ck_assert_int_eq(uvctx_cancel(live), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(recs[0].calls, 1);
  ck_assert_int_eq(recs[3].calls, 0);

  uv_close((uv_handle_t *)&handle, NULL);
  release_all(other, never, done, live);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* --- A loop that will not close ---
 * uv_loop_close() says UV_EBUSY while contexts (or pending watches) are alive
 * on it, changes nothing, and the contexts go on working; once they are
 * released and the loop has run once more, it closes, and the same memory
 * makes a new loop that starts afresh. */

#define ASSERT_CLOSE_IS_EBUSY(loop)                                            \
  ck_assert_int_eq(uv_loop_close(loop), UV_EBUSY)

START_TEST(test_loop_close_with_live_contexts_is_ebusy_and_they_keep_working) {
  static const int sigs[] = {SIGUSR2};
  uvctx_t *root, *t, *sig, *any, *sd, *stopping, *v, *wc, *late;
  rec_t on_t, on_any, on_stop, on_drain, on_watched;
  root = mk_cancel(&loop, uvctx_background());
  t = mk_timeout(&loop, root, 60000);
  ck_assert_int_eq(uvctx_with_signal(&loop, root, sigs, 1, &sig), 0);
  uvctx_t *parents[2] = {t, sig};
  ck_assert_int_eq(uvctx_with_any(&loop, parents, 2, &any), 0);
  ck_assert_int_eq(
      uvctx_with_shutdown(&loop, root, NULL, 0, 60000, &stopping, &sd), 0);
  v = mk_value(any, &key_user, value_alice);
  wc = mk_without(v);
  ck_assert_ptr_nonnull(uvctx_done_async(v));
  rec_watch(&on_t, NULL, t);
  rec_watch(&on_any, NULL, v);
  rec_watch(&on_stop, NULL, stopping);
  rec_drain(&on_drain, NULL, root);

  ASSERT_CLOSE_IS_EBUSY(&loop);
  ck_assert_int_eq(live_contexts(&loop), 6); /* the cancellable ones */

  /* Everything still works after the refused close. */
  ck_assert_int_eq(uvctx_reset_timeout(t, 0), 0);
  ck_assert_int_eq(uvctx_err(any), UV_ETIMEDOUT);
  ck_assert_ptr_eq(uvctx_value(wc, &key_user), value_alice);
  ck_assert_int_eq(uvctx_shutdown(sd, UV_EPIPE), 0);
  late = mk_cancel(&loop, root);
  ASSERT_CLOSE_IS_EBUSY(&loop);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(on_t.calls, 1);
  assert_called_once(&on_any, UV_ETIMEDOUT);
  ck_assert_int_eq(on_stop.calls, 1);
  ck_assert_int_eq(uvctx_cause(stopping), UV_EPIPE);
  ASSERT_CLOSE_IS_EBUSY(&loop);
  ck_assert_int_eq(uvctx_cancel_cause(root, UV_ECONNRESET), 0);
  ck_assert_int_eq(uvctx_cause(late), UV_ECONNRESET);
  ck_assert_int_eq(uvctx_err(sig), UV_ECANCELED);
  ASSERT_CLOSE_IS_EBUSY(&loop);

  release_all(late, wc, v, any, sig, t, stopping, sd);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(on_drain.calls, 1); /* the tree has drained */
  uvctx_release(root);
  /* Released, but the handles close on the next run. */
  ASSERT_CLOSE_IS_EBUSY(&loop);

  /* A pending watch keeps its context, and so the loop, from closing. */
  uvctx_t *watched = mk_cancel(&loop, uvctx_background());
  rec_watch(&on_watched, NULL, watched);
  uvctx_release(watched);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ASSERT_CLOSE_IS_EBUSY(&loop);
  ck_assert_int_eq(live_contexts(&loop), 1);
  ck_assert_int_eq(uvctx_unwatch(&on_watched.w), 0);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Contexts without handles (value, without-cancel) never hold a loop; after
 * a close, the same memory is a new loop with no trace of the old one. */
START_TEST(test_loop_memory_reused_after_close_starts_afresh) {
  uv_loop_t loop;
  rec_t r;
  for (int round = 0; round < 3; round++) {
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    uvctx_t *v = mk_value(uvctx_background(), &key_user, value_alice);
    uvctx_t *wc = mk_without(v);
    ck_assert_int_eq(uv_loop_close(&loop), 0); /* nothing of uvctx on it */
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    uvctx_t *ctx = mk_cancel(&loop, wc);
    ck_assert_ptr_eq(uvctx_loop(ctx), &loop);
    ck_assert_int_eq(live_contexts(&loop), 1);
    rec_watch(&r, NULL, ctx);
    ck_assert_int_eq(uvctx_cancel(ctx), 0);
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(r.calls, 1);
    release_all(ctx, wc, v);
    ASSERT_LOOP_CLOSES(&loop);
  }
}
END_TEST

Suite *badinput_suite(void) {
  return SUITE(
      "badinput",
      {"calls", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           test_retain_and_release_of_null_and_of_roots_do_nothing,
           test_replace_allocator_rejects_null_and_keeps_the_old_one,
           test_every_registration_of_a_pending_watch_is_ebusy,
           test_loop_close_with_live_contexts_is_ebusy_and_they_keep_working),
       .loops = LOOPS(
           {test_constructor_rejects_each_bad_argument_and_changes_nothing, 0,
            NMK_KINDS * 2},
           {test_call_with_a_bad_argument_fails_and_changes_nothing, 0,
            NBAD_CALLS},
           {test_cancel_of_a_context_that_is_not_cancellable_is_einval, 0,
            NUNCANCELLABLE})},
      {"loop_reuse", TIMEOUT_LOOP_S, NULL, NULL,
       .tests = TESTS(test_loop_memory_reused_after_close_starts_afresh)});
}
