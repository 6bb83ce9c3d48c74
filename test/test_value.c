/* Values and the contexts that only carry things: uvctx_with_value(),
 * uvctx_value(), uvctx_without_cancel(), the roots, uvctx_loop() for every kind
 * of context, and uvctx_format() of every kind. */
#include <fnmatch.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "helpers.h"
#include "test.h"

static const char key_user;
static const char key_request;
static char value_alice[] = "alice";
static char value_bob[] = "bob";
static char value_req[] = "req-42";

/* --- uvctx_with_value(), uvctx_value(), uvctx_loop() --- */

/* Two distinct objects with equal contents: two different keys. */
static char key_a[] = "key";
static char key_b[] = "key";

/* A lookup finds the nearest definition of the key (a NULL value too), keys
 * compare by address, and the walk goes through every kind of context. A
 * context's loop is its own, or its parent's for a value context; roots and
 * without-cancel contexts have none. */
START_TEST(test_value_and_loop_of_each_kind_of_context) {
  /* user, a value context of a root, shadowed below it by inner and by
   * nulled; the chain from user through a cancel, a deadline and a
   * without-cancel context down to leaf, with a value context (a tag) below
   * each kind. */
  uvctx_t *user = mk_value(uvctx_background(), &key_user, value_alice);
  uvctx_t *inner = mk_value(user, &key_user, value_bob);
  uvctx_t *below = mk_value(inner, &key_request, value_req);
  uvctx_t *nulled = mk_value(user, &key_user, NULL);
  uvctx_t *by_addr = mk_value(uvctx_background(), key_a, value_alice);
  uvctx_t *cancel = mk_cancel(&loop, user);
  uvctx_t *request = mk_value(cancel, &key_request, value_req);
  uvctx_t *request_tag = mk_value(request, key_a, value_bob);
  uvctx_t *timed = mk_deadline(&loop, request, uvctx_now() + 60000);
  uvctx_t *timed_tag = mk_value(timed, key_b, value_bob);
  uvctx_t *detached = mk_without(timed);
  uvctx_t *detached_tag = mk_value(detached, key_b, value_bob);
  uvctx_t *leaf = mk_cancel(&loop, detached_tag);
  ck_assert_str_eq(key_a, key_b);
#define LOOKUP(ctx, key, want) {#ctx ", " #key, ctx, key, want}
  const struct {
    const char *name;
    uvctx_t *ctx;
    const void *key;
    void *want;
  } rows[] = {
      LOOKUP(user, &key_user, value_alice),
      LOOKUP(user, &key_request, NULL),
      LOOKUP(uvctx_background(), &key_user, NULL),
      LOOKUP(uvctx_todo(), &key_user, NULL),
      LOOKUP(inner, &key_user, value_bob),
      LOOKUP(below, &key_user, value_bob),
      LOOKUP(nulled, &key_user, NULL),
      LOOKUP(by_addr, key_a, value_alice),
      LOOKUP(by_addr, key_b, NULL),
      LOOKUP(cancel, &key_user, value_alice),
      LOOKUP(cancel, &key_request, NULL),
      LOOKUP(timed, &key_user, value_alice),
      LOOKUP(timed, &key_request, value_req),
      LOOKUP(detached, &key_user, value_alice),
      LOOKUP(detached, &key_request, value_req),
      LOOKUP(detached, key_b, NULL),
      LOOKUP(leaf, &key_user, value_alice),
      LOOKUP(leaf, &key_request, value_req),
  };
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
    ck_assert_msg(uvctx_value(rows[i].ctx, rows[i].key) == rows[i].want,
                  "uvctx_value(%s)", rows[i].name);

  const uvctx_t *none[] = {uvctx_background(), uvctx_todo(), user, detached,
                           detached_tag};
  const uvctx_t *own[] = {cancel, request, request_tag, timed, timed_tag, leaf};
  for (size_t i = 0; i < sizeof none / sizeof none[0]; i++)
    ck_assert_msg(uvctx_loop(none[i]) == NULL, "none[%zu]", i);
  for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
    ck_assert_msg(uvctx_loop(own[i]) == &loop, "own[%zu]", i);
  release_all(leaf, detached_tag, detached, timed_tag, timed, request_tag,
              request, cancel, by_addr, nulled, below, inner, user);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* --- uvctx_without_cancel() --- */

/* It cannot be cancelled, has no done signal and drops the deadline of its
 * ancestors; it is not done when its parent is cancelled, nor when it is
 * made below a done context; a cancellable context below it can still be
 * cancelled itself. */
START_TEST(test_without_cancel_context_is_not_done_with_its_parent) {
  uvctx_t *parent = mk_deadline(&loop, uvctx_background(), uvctx_now() + 60000);
  uvctx_t *detached = mk_without(parent);
  uint64_t dl = 9;
  ck_assert_int_eq(uvctx_deadline(detached, &dl), 0);
  ck_assert_uint_eq(dl, 9);
  ck_assert_int_eq(uvctx_cancel(detached), UV_EINVAL);
  ck_assert_ptr_null(uvctx_done_async(detached));
  assert_not_done(parent);
  uvctx_t *value = mk_value(detached, &key_user, value_alice);
  uvctx_t *leaf = mk_cancel(&loop, value);
  uvctx_t *leaf_child = mk_cancel(&loop, leaf);
  rec_t detached_watch, leaf_watch;
  rec_watch(&detached_watch, NULL, detached);
  rec_watch(&leaf_watch, NULL, leaf);

  ck_assert_int_eq(uvctx_cancel_cause(parent, UV_EPIPE), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  uvctx_t *parent_value = mk_value(parent, &key_request, value_req);
  uvctx_t *late = mk_without(parent_value);
  uvctx_t *late_leaf = mk_cancel(&loop, late);

  uvctx_t *not_done[] = {detached, value, leaf, leaf_child, late, late_leaf};
  for (size_t i = 0; i < 6; i++)
    assert_not_done(not_done[i]);
  ck_assert_int_eq(detached_watch.calls, 0);
  ck_assert_int_eq(leaf_watch.calls, 0);
  ck_assert_ptr_eq(uvctx_value(leaf, &key_user), value_alice);
  ck_assert_ptr_eq(uvctx_value(late_leaf, &key_request), value_req);
  /* A watch on a context that can never be done never runs: unwatch is 0. */
  ck_assert_int_eq(uvctx_unwatch(&detached_watch.w), 0);

  ck_assert_int_eq(uvctx_cancel_cause(leaf, UV_ECONNABORTED), 0);
  assert_done(leaf, UV_ECANCELED, UV_ECONNABORTED);
  assert_done(leaf_child, UV_ECANCELED, UV_ECONNABORTED);
  assert_not_done(detached);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(leaf_watch.calls, 1);

  release_all(late_leaf, late, parent_value, leaf_child, leaf, value, detached,
              parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* --- Roots --- */

/* Neither they nor a value context of one is ever done, has a deadline or
 * a done signal. */
START_TEST(test_roots_are_two_distinct_static_contexts_never_done) {
  uvctx_t *never[] = {uvctx_background(), uvctx_todo(),
                      mk_value(uvctx_background(), &key_user, value_alice)};
  ck_assert_ptr_nonnull(never[0]);
  ck_assert_ptr_nonnull(never[1]);
  ck_assert_ptr_eq(uvctx_background(), never[0]);
  ck_assert_ptr_eq(uvctx_todo(), never[1]);
  ck_assert_ptr_ne(never[0], never[1]);
  for (size_t i = 0; i < 3; i++) {
    uint64_t dl = 3;
    assert_not_done(never[i]);
    ck_assert_int_eq(uvctx_deadline(never[i], &dl), 0);
    ck_assert_uint_eq(dl, 3);
    ck_assert_ptr_null(uvctx_done_async(never[i]));
  }
  ck_assert_ptr_null(uvctx_value(never[0], &key_user));
  ck_assert_ptr_null(uvctx_value(never[1], &key_user));
  uvctx_release(never[2]);
}
END_TEST

/* --- uvctx_format() --- */

/* uvctx_format() of ctx matches pattern (fnmatch(): "*" stands for what
 * varies) followed by the context's id, " #17" (but for a root: its name
 * alone), and returns its length. For contexts that are not done. */
static void assert_format(const uvctx_t *ctx, const char *pattern) {
  char buf[256], want[256];
  if (ctx == uvctx_background() || ctx == uvctx_todo())
    snprintf(want, sizeof want, "%s", pattern);
  else
    snprintf(want, sizeof want, "%s #%" PRIu64, pattern, uvctx_id(ctx));
  ck_assert_msg(fnmatch(want, format_ok(ctx, buf, sizeof buf), 0) == 0,
                "\"%s\" is not \"%s\"", buf, want);
}

START_TEST(test_format_of_each_kind_of_context) {
  const int sigs[] = {SIGHUP, SIGUSR1, SIGUSR2, SIGALRM,
                      SIGTERM, SIGWINCH, SIGPIPE};
  uint64_t dl = uvctx_now() + 60000;
  uvctx_t *cancel = mk_cancel(&loop, uvctx_background());
  uvctx_t *todo_cancel = mk_cancel(&loop, uvctx_todo());
  uvctx_t *nested = mk_cancel(&loop, cancel);
  uvctx_t *timed = mk_deadline(&loop, cancel, dl);
  uvctx_t *value = mk_value(timed, &key_user, value_alice);
  uvctx_t *root_value = mk_value(uvctx_background(), &key_user, value_alice);
  uvctx_t *detached = mk_without(value);
  uvctx_t *todo_detached = mk_without(uvctx_todo());
  uvctx_t *cancel_detached = mk_without(cancel);
  uvctx_t *leaf = mk_cancel(&loop, detached);
  uvctx_t *parents[] = {todo_cancel, cancel, uvctx_background()};
  uvctx_t *sig3, *sig7, *any, *sd, *stopping;
  ck_assert_int_eq(uvctx_with_signal(&loop, uvctx_background(), sigs + 1, 3,
                                     &sig3),
                   0);
  ck_assert_int_eq(uvctx_with_signal(&loop, uvctx_background(), sigs, 7, &sig7),
                   0);
  ck_assert_int_eq(uvctx_with_any(&loop, parents, 3, &any), 0);
  ck_assert_int_eq(uvctx_with_shutdown(&loop, uvctx_background(), NULL, 0,
                                       2500, &stopping, &sd),
                   0);
  char want_dl[64], want_sig3[64], want_sig7[128];
  snprintf(want_dl, sizeof want_dl,
           "background.with_cancel.with_deadline(%" PRIu64 "*)", dl);
  snprintf(want_sig3, sizeof want_sig3, "background.with_signal(%d, %d, %d)",
           SIGUSR1, SIGUSR2, SIGALRM);
  /* A bounded segment: six numbers, then "...". */
  snprintf(want_sig7, sizeof want_sig7,
           "background.with_signal(%d, %d, %d, %d, %d, %d, ...)", sigs[0],
           sigs[1], sigs[2], sigs[3], sigs[4], sigs[5]);

  assert_format(uvctx_background(), "background");
  assert_format(uvctx_todo(), "todo");
  assert_format(cancel, "background.with_cancel");
  assert_format(todo_cancel, "todo.with_cancel");
  assert_format(nested, "background.with_cancel.with_cancel");
  assert_format(timed, want_dl);
  assert_format(root_value, "background.with_value(*)");
  assert_format(todo_detached, "todo.without_cancel");
  assert_format(cancel_detached, "background.with_cancel.without_cancel");
  /* The whole ancestry, root first. */
  assert_format(leaf, "background.with_cancel.with_deadline(*)"
                      ".with_value(*).without_cancel.with_cancel");
  assert_format(sig3, want_sig3);
  assert_format(sig7, want_sig7);
  /* After its first parent's ancestry, with how many parents it has. */
  assert_format(any, "todo.with_cancel.with_any(3)");
  /* The grace period; stopping is a cancel child. */
  assert_format(sd, "background.with_shutdown(2500ms)");
  assert_format(stopping, "background.with_shutdown(2500ms).with_cancel");

  /* A deadline in the past is shown with how long ago it passed, "[-Nms]". */
  char buf[128], rest[128], tail[128];
  uint64_t shown, ago, id, done_ago, before = uvctx_now();
  ck_assert_uint_gt(before, 1000);
  uvctx_t *passed = mk_deadline(&loop, uvctx_background(), before - 1000);
  ck_assert_int_eq(uvctx_err(passed), UV_ETIMEDOUT); /* born done */
  int n = uvctx_format(passed, buf, sizeof(buf));
  uint64_t after = uvctx_now();
  ck_assert_int_eq(n, (int)strlen(buf));
  /* Then its id, and how it ended: its own deadline, at once. */
  ck_assert_int_eq(sscanf(buf, "background.with_deadline(%" SCNu64
                               " [-%" SCNu64 "ms%127s #%" SCNu64
                               " done %" SCNu64 "ms ago: %127[^\n]",
                          &shown, &ago, rest, &id, &done_ago, tail),
                   6);
  ck_assert_str_eq(rest, "])");
  ck_assert_uint_eq(shown, before - 1000);
  ck_assert_uint_ge(ago, 1000);
  ck_assert_uint_le(ago, after - (before - 1000));
  ck_assert_uint_eq(id, uvctx_id(passed));
  ck_assert_uint_le(done_ago, after - before);
  ck_assert_str_eq(tail, "deadline");

  release_all(passed, stopping, sd, any, sig7, sig3, leaf, cancel_detached,
              todo_detached, detached, root_value, value, timed, nested,
              todo_cancel, cancel);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* The return value is the whole length, whatever len is: with no buffer at
 * all, or a buffer too short, which gets what fits and a NUL, and nothing
 * written past len. */
START_TEST(test_format_returns_the_full_length_and_truncates_to_len) {
  uvctx_t *ctx = mk_cancel(&loop, uvctx_background());
  uvctx_t *value = mk_value(ctx, &key_user, value_alice);
  char full[64], cut[64];
  int full_len = snprintf(full, sizeof full, "background.with_cancel #%" PRIu64,
                          uvctx_id(ctx));
  char buf[256];

  ck_assert_int_eq(uvctx_format(uvctx_background(), NULL, 0),
                   (int)strlen("background"));
  ck_assert_int_eq(uvctx_format(ctx, NULL, 0), full_len);
  ck_assert_int_eq(uvctx_format(value, NULL, 0),
                   uvctx_format(value, buf, sizeof buf));
  ck_assert_int_eq((int)strlen(buf), uvctx_format(value, NULL, 0));

  /* len, and what it leaves in buf: len == length + 1 exactly fits. */
  const struct {
    size_t len;
    const char *want;
  } rows[] = {{0, NULL},
              {1, ""},
              {8, "backgro"},
              {24, "background.with_cancel "},
              {(size_t)full_len, cut},
              {(size_t)full_len + 1, full}};
  snprintf(cut, sizeof cut, "%.*s", full_len - 1, full);
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    memset(buf, 'X', sizeof(buf));
    ck_assert_int_eq(uvctx_format(ctx, buf, rows[i].len), full_len);
    if (rows[i].want != NULL)
      ck_assert_str_eq(buf, rows[i].want);
    for (size_t k = rows[i].len; k < sizeof(buf); k++)
      ck_assert_msg(buf[k] == 'X', "len %zu: buf[%zu] written", rows[i].len, k);
  }

  release_all(value, ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* A signal context's numbers stay in its description once it is done: libuv
 * forgets a stopped handle's number, and a context born done never starts
 * its handles. */
START_TEST(test_format_of_a_done_signal_context_keeps_its_signals) {
  const int sigs[] = {SIGUSR1, SIGUSR2};
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *sig, *born_done;
  char want[128], buf[256];

  ck_assert_int_eq(uvctx_with_signal(&loop, parent, sigs, 2, &sig), 0);
  ck_assert_int_eq(uvctx_cancel(parent), 0);
  ck_assert_int_eq(uvctx_with_signal(&loop, parent, sigs + 1, 1, &born_done),
                   0);
  uv_run(&loop, UV_RUN_NOWAIT); /* delivered: the handles are stopped */
  ck_assert_int_eq(uvctx_err(sig), UV_ECANCELED);

  snprintf(want, sizeof want,
           "background.with_cancel.with_signal(%d, %d) #%" PRIu64 " done *",
           SIGUSR1, SIGUSR2, uvctx_id(sig));
  ck_assert_msg(fnmatch(want, format_ok(sig, buf, sizeof buf), 0) == 0,
                "\"%s\" is not \"%s\"", buf, want);
  snprintf(want, sizeof want,
           "background.with_cancel.with_signal(%d) #%" PRIu64 " done *",
           SIGUSR2, uvctx_id(born_done));
  ck_assert_msg(fnmatch(want, format_ok(born_done, buf, sizeof buf), 0) == 0,
                "\"%s\" is not \"%s\"", buf, want);

  release_all(born_done, sig, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

Suite *value_suite(void) {
  return SUITE(
      "value",
      {"value", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           test_value_and_loop_of_each_kind_of_context,
           test_without_cancel_context_is_not_done_with_its_parent,
           test_format_of_each_kind_of_context,
           test_format_of_a_done_signal_context_keeps_its_signals,
           test_format_returns_the_full_length_and_truncates_to_len)},
      {"roots", TIMEOUT_LOOP_S, NULL, NULL,
       .tests = TESTS(test_roots_are_two_distinct_static_contexts_never_done)});
}
