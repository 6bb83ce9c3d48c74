/* Values and the contexts that only carry things: uvctx_with_value(),
 * uvctx_value(), uvctx_without_cancel(), the roots, uvctx_loop() for every kind
 * of context, and uvctx_format(). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "helpers.h"
#include "test.h"

/* ---------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------- */

/* uvctx_format() into a buffer that must be large enough. */
static const char *fmt(const uvctx_t *ctx, char *buf, size_t len) {
  int n = uvctx_format(ctx, buf, len);
  ck_assert_int_ge(n, 0);
  ck_assert_uint_lt((size_t)n, len);
  ck_assert_uint_eq(strlen(buf), (size_t)n);
  return buf;
}

static int starts_with(const char *s, const char *prefix) {
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int ends_with(const char *s, const char *suffix) {
  size_t ls = strlen(s), lx = strlen(suffix);
  return ls >= lx && strcmp(s + ls - lx, suffix) == 0;
}

static const char key_user;
static const char key_request;
static char value_alice[] = "alice";
static char value_bob[] = "bob";
static char value_req[] = "req-42";

/* ---------------------------------------------------------------------------
 * uvctx_with_value() and uvctx_value()
 * ------------------------------------------------------------------------- */

START_TEST(test_value_is_found_on_the_context_that_defines_it) {
  uvctx_t *ctx = mk_value(uvctx_background(), &key_user, value_alice);

  ck_assert_ptr_eq(uvctx_value(ctx, &key_user), value_alice);

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_value_of_unknown_key_is_null) {
  uvctx_t *ctx = mk_value(uvctx_background(), &key_user, value_alice);

  ck_assert_ptr_null(uvctx_value(ctx, &key_request));
  ck_assert_ptr_null(uvctx_value(uvctx_background(), &key_user));
  ck_assert_ptr_null(uvctx_value(uvctx_todo(), &key_user));

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_value_nearest_definition_wins) {
  uvctx_t *outer = mk_value(uvctx_background(), &key_user, value_alice);
  uvctx_t *inner = mk_value(outer, &key_user, value_bob);
  uvctx_t *below = mk_value(inner, &key_request, value_req);

  ck_assert_ptr_eq(uvctx_value(below, &key_user), value_bob);
  ck_assert_ptr_eq(uvctx_value(inner, &key_user), value_bob);
  /* The shadowing child does not change what its parent sees. */
  ck_assert_ptr_eq(uvctx_value(outer, &key_user), value_alice);

  release_all(below, inner, outer);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_value_nearest_definition_wins_even_when_it_is_null) {
  uvctx_t *outer = mk_value(uvctx_background(), &key_user, value_alice);
  uvctx_t *inner = mk_value(outer, &key_user, NULL);

  ck_assert_ptr_null(uvctx_value(inner, &key_user));
  ck_assert_ptr_eq(uvctx_value(outer, &key_user), value_alice);

  release_all(inner, outer);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_value_keys_compare_by_address_not_contents) {
  /* Two distinct objects with equal contents are two different keys. */
  static char key_a[] = "key";
  static char key_b[] = "key";
  ck_assert_str_eq(key_a, key_b);
  uvctx_t *ctx = mk_value(uvctx_background(), key_a, value_alice);

  ck_assert_ptr_eq(uvctx_value(ctx, key_a), value_alice);
  ck_assert_ptr_null(uvctx_value(ctx, key_b));

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_value_lookup_walks_through_cancel_deadline_and_without_cancel) {
  uvctx_t *user = mk_value(uvctx_background(), &key_user, value_alice);
  uvctx_t *cancel = mk_cancel(&loop, user);
  uvctx_t *request = mk_value(cancel, &key_request, value_req);
  uvctx_t *timed = mk_deadline(&loop, request, uvctx_now() + 60000);
  uvctx_t *detached = mk_without(timed);
  uvctx_t *leaf = mk_cancel(&loop, detached);

  ck_assert_ptr_eq(uvctx_value(cancel, &key_user), value_alice);
  ck_assert_ptr_eq(uvctx_value(timed, &key_user), value_alice);
  ck_assert_ptr_eq(uvctx_value(timed, &key_request), value_req);
  ck_assert_ptr_eq(uvctx_value(detached, &key_user), value_alice);
  ck_assert_ptr_eq(uvctx_value(detached, &key_request), value_req);
  ck_assert_ptr_eq(uvctx_value(leaf, &key_user), value_alice);
  ck_assert_ptr_eq(uvctx_value(leaf, &key_request), value_req);
  ck_assert_ptr_null(uvctx_value(cancel, &key_request));

  release_all(leaf, detached, timed, request, cancel, user);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_value_context_of_root_is_never_done) {
  uvctx_t *ctx = mk_value(uvctx_background(), &key_user, value_alice);
  uint64_t dl = 5;

  assert_not_done(ctx);
  ck_assert_int_eq(uvctx_deadline(ctx, &dl), 0);
  ck_assert_uint_eq(dl, 5);
  ck_assert_ptr_null(uvctx_done_async(ctx));

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * uvctx_without_cancel()
 * ------------------------------------------------------------------------- */

START_TEST(test_without_cancel_keeps_values_of_parent) {
  uvctx_t *cancel = mk_cancel(&loop, uvctx_background());
  uvctx_t *user = mk_value(cancel, &key_user, value_alice);
  uvctx_t *detached = mk_without(user);

  ck_assert_ptr_eq(uvctx_value(detached, &key_user), value_alice);
  ck_assert_ptr_null(uvctx_value(detached, &key_request));

  release_all(detached, user, cancel);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_without_cancel_child_is_not_cancelled_with_parent) {
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *detached = mk_without(parent);
  uvctx_t *value = mk_value(detached, &key_user, value_alice);
  uvctx_t *leaf = mk_cancel(&loop, value);
  rec_t detached_watch, leaf_watch;
  rec_watch(&detached_watch, NULL, detached);
  rec_watch(&leaf_watch, NULL, leaf);

  ck_assert_int_eq(uvctx_cancel_cause(parent, UV_EPIPE), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);

  assert_not_done(detached);
  assert_not_done(value);
  assert_not_done(leaf);
  ck_assert_int_eq(detached_watch.calls, 0);
  ck_assert_int_eq(leaf_watch.calls, 0);
  ck_assert_ptr_eq(uvctx_value(leaf, &key_user), value_alice);

  /* A watch on a context that can never be done never runs: unwatch is 0. */
  ck_assert_int_eq(uvctx_unwatch(&detached_watch.w), 0);
  ck_assert_int_eq(uvctx_unwatch(&leaf_watch.w), 0);
  release_all(leaf, value, detached, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_without_cancel_of_done_parent_is_not_done) {
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *user = mk_value(parent, &key_user, value_alice);
  ck_assert_int_eq(uvctx_cancel(parent), 0);

  uvctx_t *detached = mk_without(user);
  uvctx_t *leaf = mk_cancel(&loop, detached);

  assert_not_done(detached);
  assert_not_done(leaf);
  ck_assert_ptr_eq(uvctx_value(leaf, &key_user), value_alice);

  release_all(leaf, detached, user, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_without_cancel_drops_the_deadline_of_its_ancestors) {
  uvctx_t *timed = mk_deadline(&loop, uvctx_background(), uvctx_now() + 60000);
  uvctx_t *detached = mk_without(timed);
  uint64_t dl = 9;

  ck_assert_int_eq(uvctx_deadline(detached, &dl), 0);
  ck_assert_uint_eq(dl, 9);

  release_all(detached, timed);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_without_cancel_is_not_cancellable_and_has_no_done_signal) {
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *detached = mk_without(parent);

  ck_assert_int_eq(uvctx_cancel(detached), UV_EINVAL);
  ck_assert_ptr_null(uvctx_done_async(detached));
  assert_not_done(detached);
  assert_not_done(parent);

  release_all(detached, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_cancel_child_of_without_cancel_can_still_be_cancelled_itself) {
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  uvctx_t *detached = mk_without(parent);
  uvctx_t *child = mk_cancel(&loop, detached);
  uvctx_t *grandchild = mk_cancel(&loop, child);
  rec_t watch;
  rec_watch(&watch, NULL, child);
  ck_assert_int_eq(uvctx_cancel(parent), 0);
  assert_not_done(child);

  ck_assert_int_eq(uvctx_cancel_cause(child, UV_ECONNABORTED), 0);
  ck_assert_int_eq(uvctx_err(child), UV_ECANCELED);
  ck_assert_int_eq(uvctx_cause(child), UV_ECONNABORTED);
  ck_assert_int_eq(uvctx_err(grandchild), UV_ECANCELED);
  ck_assert_int_eq(uvctx_cause(grandchild), UV_ECONNABORTED);
  assert_not_done(detached);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(watch.calls, 1);

  release_all(grandchild, child, detached, parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Roots
 * ------------------------------------------------------------------------- */

START_TEST(test_roots_are_two_distinct_static_contexts) {
  ck_assert_ptr_nonnull(uvctx_background());
  ck_assert_ptr_nonnull(uvctx_todo());
  ck_assert_ptr_eq(uvctx_background(), uvctx_background());
  ck_assert_ptr_eq(uvctx_todo(), uvctx_todo());
  ck_assert_ptr_ne(uvctx_background(), uvctx_todo());
}
END_TEST

START_TEST(test_roots_are_never_done_and_have_no_deadline_or_values) {
  uvctx_t *roots[] = {uvctx_background(), uvctx_todo()};
  for (size_t i = 0; i < 2; i++) {
    uint64_t dl = 3;
    assert_not_done(roots[i]);
    ck_assert_int_eq(uvctx_deadline(roots[i], &dl), 0);
    ck_assert_uint_eq(dl, 3);
    ck_assert_ptr_null(uvctx_value(roots[i], &key_user));
    ck_assert_ptr_null(uvctx_done_async(roots[i]));
  }
}
END_TEST

/* ---------------------------------------------------------------------------
 * uvctx_loop()
 * ------------------------------------------------------------------------- */

START_TEST(test_loop_of_each_kind_of_context) {
  uvctx_t *cancel = mk_cancel(&loop, uvctx_background());
  uvctx_t *timed = mk_deadline(&loop, uvctx_background(), uvctx_now() + 60000);
  uvctx_t *value_of_cancel = mk_value(cancel, &key_user, value_alice);
  uvctx_t *value_of_value = mk_value(value_of_cancel, &key_request, value_req);
  uvctx_t *value_of_timed = mk_value(timed, &key_user, value_alice);
  uvctx_t *value_of_root = mk_value(uvctx_background(), &key_user, value_alice);
  uvctx_t *detached = mk_without(cancel);
  uvctx_t *value_of_detached = mk_value(detached, &key_user, value_alice);
  uvctx_t *cancel_of_detached = mk_cancel(&loop, value_of_detached);

  ck_assert_ptr_null(uvctx_loop(uvctx_background()));
  ck_assert_ptr_null(uvctx_loop(uvctx_todo()));
  ck_assert_ptr_eq(uvctx_loop(cancel), &loop);
  ck_assert_ptr_eq(uvctx_loop(timed), &loop);
  ck_assert_ptr_eq(uvctx_loop(value_of_cancel), &loop);
  ck_assert_ptr_eq(uvctx_loop(value_of_value), &loop);
  ck_assert_ptr_eq(uvctx_loop(value_of_timed), &loop);
  ck_assert_ptr_null(uvctx_loop(value_of_root));
  ck_assert_ptr_null(uvctx_loop(detached));
  ck_assert_ptr_null(uvctx_loop(value_of_detached));
  ck_assert_ptr_eq(uvctx_loop(cancel_of_detached), &loop);

  release_all(cancel_of_detached, value_of_detached, detached, value_of_root,
              value_of_timed, value_of_value, value_of_cancel, timed, cancel);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * uvctx_format()
 * ------------------------------------------------------------------------- */

START_TEST(test_format_of_roots_is_background_and_todo) {
  char buf[64];
  ck_assert_str_eq(fmt(uvctx_background(), buf, sizeof(buf)), "background");
  ck_assert_str_eq(fmt(uvctx_todo(), buf, sizeof(buf)), "todo");
}
END_TEST

START_TEST(test_format_of_cancel_context_appends_with_cancel) {
  uv_loop_t loop;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *ctx = mk_cancel(&loop, uvctx_background());
  uvctx_t *todo_ctx = mk_cancel(&loop, uvctx_todo());
  uvctx_t *nested = mk_cancel(&loop, ctx);
  char buf[128];

  ck_assert_str_eq(fmt(ctx, buf, sizeof(buf)), "background.with_cancel");
  ck_assert_str_eq(fmt(todo_ctx, buf, sizeof(buf)), "todo.with_cancel");
  ck_assert_str_eq(fmt(nested, buf, sizeof(buf)),
                   "background.with_cancel.with_cancel");

  release_all(nested, todo_ctx, ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_format_of_deadline_context_shows_its_deadline) {
  uv_loop_t loop;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uint64_t dl = uvctx_now() + 60000;
  uvctx_t *ctx = mk_deadline(&loop, uvctx_background(), dl);
  char buf[256], prefix[64];
  snprintf(prefix, sizeof(prefix), "background.with_deadline(%llu",
           (unsigned long long)dl);

  fmt(ctx, buf, sizeof(buf));
  ck_assert_msg(starts_with(buf, prefix), "\"%s\" does not start with \"%s\"",
                buf, prefix);
  ck_assert_msg(ends_with(buf, ")"), "\"%s\" does not end with \")\"", buf);

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_format_of_value_context_appends_with_value) {
  uv_loop_t loop;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *ctx = mk_value(uvctx_background(), &key_user, value_alice);
  char buf[256];

  fmt(ctx, buf, sizeof(buf));
  ck_assert_msg(starts_with(buf, "background.with_value("),
                "\"%s\" does not start with \"background.with_value(\"", buf);
  ck_assert_msg(ends_with(buf, ")"), "\"%s\" does not end with \")\"", buf);

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_format_of_without_cancel_context_appends_without_cancel) {
  uv_loop_t loop;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *cancel = mk_cancel(&loop, uvctx_background());
  uvctx_t *detached = mk_without(cancel);
  uvctx_t *todo_detached = mk_without(uvctx_todo());
  char buf[128];

  ck_assert_str_eq(fmt(detached, buf, sizeof(buf)),
                   "background.with_cancel.without_cancel");
  ck_assert_str_eq(fmt(todo_detached, buf, sizeof(buf)), "todo.without_cancel");

  release_all(todo_detached, detached, cancel);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_format_lists_the_whole_ancestry_root_first) {
  uv_loop_t loop;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *cancel = mk_cancel(&loop, uvctx_background());
  uvctx_t *timed = mk_deadline(&loop, cancel, uvctx_now() + 60000);
  uvctx_t *value = mk_value(timed, &key_user, value_alice);
  uvctx_t *detached = mk_without(value);
  uvctx_t *leaf = mk_cancel(&loop, detached);
  char buf[512];

  fmt(leaf, buf, sizeof(buf));
  const char *p = buf;
  ck_assert_msg(starts_with(p, "background.with_cancel.with_deadline("),
                "unexpected \"%s\"", buf);
  p = strstr(p, ").with_value(");
  ck_assert_msg(p != NULL, "no \").with_value(\" in \"%s\"", buf);
  ck_assert_msg(ends_with(p, ").without_cancel.with_cancel"),
                "\"%s\" does not end with \").without_cancel.with_cancel\"",
                buf);

  release_all(leaf, detached, value, timed, cancel);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_format_with_null_buffer_and_zero_len_returns_needed_length) {
  uv_loop_t loop;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *cancel = mk_cancel(&loop, uvctx_background());
  uvctx_t *value = mk_value(cancel, &key_user, value_alice);
  char buf[256];

  ck_assert_int_eq(uvctx_format(uvctx_background(), NULL, 0),
                   (int)strlen("background"));
  ck_assert_int_eq(uvctx_format(cancel, NULL, 0),
                   (int)strlen("background.with_cancel"));
  ck_assert_int_eq(uvctx_format(value, NULL, 0),
                   (int)strlen(fmt(value, buf, sizeof(buf))));

  release_all(value, cancel);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_format_truncates_to_len_and_nul_terminates) {
  uv_loop_t loop;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *ctx = mk_cancel(&loop, uvctx_background());
  const char *full = "background.with_cancel";
  int full_len = (int)strlen(full);
  char buf[32];

  memset(buf, 'X', sizeof(buf));
  ck_assert_int_eq(uvctx_format(ctx, buf, 8), full_len);
  ck_assert_str_eq(buf, "backgro");
  /* Nothing written past len. */
  for (size_t i = 8; i < sizeof(buf); i++)
    ck_assert_int_eq(buf[i], 'X');

  memset(buf, 'X', sizeof(buf));
  ck_assert_int_eq(uvctx_format(ctx, buf, 1), full_len);
  ck_assert_int_eq(buf[0], '\0');
  ck_assert_int_eq(buf[1], 'X');

  /* len == length: one byte short, the last character is dropped. */
  memset(buf, 'X', sizeof(buf));
  ck_assert_int_eq(uvctx_format(ctx, buf, (size_t)full_len), full_len);
  ck_assert_str_eq(buf, "background.with_cance");

  /* len == length + 1: exactly fits. */
  memset(buf, 'X', sizeof(buf));
  ck_assert_int_eq(uvctx_format(ctx, buf, (size_t)full_len + 1), full_len);
  ck_assert_str_eq(buf, full);

  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_format_with_zero_len_writes_nothing) {
  char buf[4] = {'X', 'X', 'X', 'X'};

  ck_assert_int_eq(uvctx_format(uvctx_todo(), buf, 0), (int)strlen("todo"));
  for (size_t i = 0; i < sizeof(buf); i++)
    ck_assert_int_eq(buf[i], 'X');
}
END_TEST

Suite *value_suite(void) {
  return SUITE(
      "value",
      {"with_value", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           test_value_is_found_on_the_context_that_defines_it,
           test_value_of_unknown_key_is_null,
           test_value_nearest_definition_wins,
           test_value_nearest_definition_wins_even_when_it_is_null,
           test_value_keys_compare_by_address_not_contents,
           test_value_lookup_walks_through_cancel_deadline_and_without_cancel,
           test_value_context_of_root_is_never_done)},
      {"without_cancel", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           test_without_cancel_keeps_values_of_parent,
           test_without_cancel_child_is_not_cancelled_with_parent,
           test_without_cancel_of_done_parent_is_not_done,
           test_without_cancel_drops_the_deadline_of_its_ancestors,
           test_without_cancel_is_not_cancellable_and_has_no_done_signal,
           test_cancel_child_of_without_cancel_can_still_be_cancelled_itself)},
      {"roots", TIMEOUT_LOOP_S, NULL, NULL,
       .tests = TESTS(
           test_roots_are_two_distinct_static_contexts,
           test_roots_are_never_done_and_have_no_deadline_or_values)},
      {"loop", TIMEOUT_LOOP_S, loop_setup, NULL,
       .tests = TESTS(
           test_loop_of_each_kind_of_context)},
      {"format", TIMEOUT_LOOP_S, NULL, NULL,
       .tests = TESTS(
           test_format_of_roots_is_background_and_todo,
           test_format_of_cancel_context_appends_with_cancel,
           test_format_of_deadline_context_shows_its_deadline,
           test_format_of_value_context_appends_with_value,
           test_format_of_without_cancel_context_appends_without_cancel,
           test_format_lists_the_whole_ancestry_root_first,
           test_format_with_null_buffer_and_zero_len_returns_needed_length,
           test_format_truncates_to_len_and_nul_terminates,
           test_format_with_zero_len_writes_nothing)});
}
