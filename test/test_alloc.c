/* Allocation failure: every call that allocates, failed at each of its
 * allocations in turn, returns UV_ENOMEM (or NULL for uvctx_done_async),
 * leaves its out-pointer and the tree unchanged, and leaks nothing. */
#include <stdlib.h>

#include "test.h"

/* Allocations still allowed before the next one fails; -1: never fails. */
static long allowed = -1;
static long outstanding;

static void *counting_malloc(size_t size) {
  void *ptr;
  if (allowed == 0)
    return NULL;
  if (allowed > 0)
    allowed--;
  ptr = malloc(size);
  if (ptr != NULL)
    outstanding++;
  return ptr;
}

static void counting_free(void *ptr) {
  if (ptr != NULL)
    outstanding--;
  free(ptr);
}

static void setup(void) {
  ck_assert_int_eq(uvctx_replace_allocator(counting_malloc, counting_free), 0);
  allowed = -1;
  outstanding = 0;
}

static void teardown(void) {
  ck_assert_int_eq(uvctx_replace_allocator(malloc, free), 0);
}

static char sentinel_storage;
#define SENTINEL ((uvctx_t *)&sentinel_storage)

typedef int (*make_fn)(uv_loop_t *loop, uvctx_t *parent, uvctx_t **out);

static int make_cancel(uv_loop_t *loop, uvctx_t *parent, uvctx_t **out) {
  return uvctx_with_cancel(loop, parent, out);
}
static int make_timeout(uv_loop_t *loop, uvctx_t *parent, uvctx_t **out) {
  return uvctx_with_timeout(loop, parent, 10000, out);
}
static int make_value(uv_loop_t *loop, uvctx_t *parent, uvctx_t **out) {
  static int key;
  (void)loop;
  return uvctx_with_value(parent, &key, &key, out);
}
static int make_without_cancel(uv_loop_t *loop, uvctx_t *parent,
                               uvctx_t **out) {
  (void)loop;
  return uvctx_without_cancel(parent, out);
}

/* Sweeps the n-th allocation of make() over every n, first as the first
 * context of a loop (which also allocates the loop's state), then under a
 * live cancellable parent. */
static void sweep(make_fn make) {
  int under_parent;
  for (under_parent = 0; under_parent <= 1; under_parent++) {
    long n;
    int failures = 0;
    for (n = 0;; n++) {
      uv_loop_t loop;
      uvctx_t *parent = uvctx_background();
      uvctx_t *out = SENTINEL;
      int err;

      ck_assert_int_eq(uv_loop_init(&loop), 0);
      if (under_parent)
        ck_assert_int_eq(uvctx_with_cancel(&loop, parent, &parent), 0);
      allowed = n;
      err = make(&loop, parent, &out);
      allowed = -1;
      if (err == UV_ENOMEM) {
        failures++;
        ck_assert_ptr_eq(out, SENTINEL);
        ck_assert_int_eq(uvctx_err(parent), 0);
      } else {
        ck_assert_int_eq(err, 0);
        ck_assert_ptr_ne(out, SENTINEL);
        uvctx_release(out);
      }
      uvctx_release(parent);
      ASSERT_LOOP_CLOSES(&loop);
      ck_assert_int_eq(outstanding, 0);
      if (err == 0)
        break;
    }
    /* Each constructor allocates at least once. */
    ck_assert_int_ge(failures, 1);
  }
}

START_TEST(test_with_cancel_enomem_leaves_nothing) { sweep(make_cancel); }
END_TEST

START_TEST(test_with_timeout_enomem_leaves_nothing) { sweep(make_timeout); }
END_TEST

START_TEST(test_with_value_enomem_leaves_nothing) { sweep(make_value); }
END_TEST

START_TEST(test_without_cancel_enomem_leaves_nothing) {
  sweep(make_without_cancel);
}
END_TEST

START_TEST(test_done_async_enomem_returns_null_then_recovers) {
  uv_loop_t loop;
  uvctx_t *ctx;

  ck_assert_int_eq(uv_loop_init(&loop), 0);
  ck_assert_int_eq(uvctx_with_cancel(&loop, uvctx_background(), &ctx), 0);
  allowed = 0;
  ck_assert_ptr_null(uvctx_done_async(ctx));
  allowed = -1;
  ck_assert_ptr_nonnull(uvctx_done_async(ctx));
  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
  ck_assert_int_eq(outstanding, 0);
}
END_TEST

static int watch_runs;

static void count_watch(uvctx_watch_t *w, int err) {
  (void)w;
  ck_assert_int_eq(err, UV_ECANCELED);
  watch_runs++;
}

/* A server's worth of calls: a root, a connection with an idle timeout, a
 * request with a value and a deadline, a watch, a cancel of the root. Every
 * allocation in it fails in turn; whatever was built works and is freed. */
START_TEST(test_server_scenario_survives_each_failed_allocation) {
  static int request_id_key;
  long n;

  for (n = 0;; n++) {
    uv_loop_t loop;
    uvctx_t *root = NULL, *conn = NULL, *tagged = NULL, *req = NULL;
    uvctx_watch_t w = {0};
    int watched = 0;
    int complete;

    ck_assert_int_eq(uv_loop_init(&loop), 0);
    watch_runs = 0;
    allowed = n;
    if (uvctx_with_cancel(&loop, uvctx_background(), &root) == 0 &&
        uvctx_with_timeout(&loop, root, 60000, &conn) == 0 &&
        uvctx_with_value(conn, &request_id_key, &n, &tagged) == 0 &&
        uvctx_with_timeout(&loop, tagged, 5000, &req) == 0)
      watched = uvctx_watch(req, &w, count_watch) == 0;
    complete = allowed != 0;
    allowed = -1;

    if (root != NULL) {
      ck_assert_int_eq(uvctx_cancel(root), 0);
      if (req != NULL) {
        ck_assert_int_eq(uvctx_err(req), UV_ECANCELED);
        ck_assert_ptr_eq(uvctx_value(req, &request_id_key), &n);
      }
    }
    uvctx_release(req);
    uvctx_release(tagged);
    uvctx_release(conn);
    uvctx_release(root);
    ASSERT_LOOP_CLOSES(&loop);
    ck_assert_int_eq(watch_runs, watched);
    ck_assert_int_eq(outstanding, 0);
    if (complete)
      break;
  }
  ck_assert_int_ge(n, 4);
}
END_TEST

Suite *alloc_suite(void) {
  Suite *s = suite_create("alloc");
  TCase *tc = tcase_create("enomem");

  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_with_cancel_enomem_leaves_nothing);
  tcase_add_test(tc, test_with_timeout_enomem_leaves_nothing);
  tcase_add_test(tc, test_with_value_enomem_leaves_nothing);
  tcase_add_test(tc, test_without_cancel_enomem_leaves_nothing);
  tcase_add_test(tc, test_done_async_enomem_returns_null_then_recovers);
  tcase_add_test(tc, test_server_scenario_survives_each_failed_allocation);
  suite_add_tcase(s, tc);
  return s;
}
