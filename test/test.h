/* Shared helpers for the Check suite.
 *
 * Every test builds its own loop and ends the way libuv's own tests do:
 * everything released, the loop run once more, uv_loop_close() == 0. That is
 * what catches a handle left open or a context never torn down. */
#ifndef UVCTX_TEST_H
#define UVCTX_TEST_H

#include <check.h>
#include <stdlib.h>
#include <uv.h>

#include "uvctx.h"

/* Runs the loop until nothing is alive, then checks that it closes. */
#define ASSERT_LOOP_CLOSES(loop)                                              \
  do {                                                                        \
    ck_assert_int_eq(uv_run((loop), UV_RUN_DEFAULT), 0);                      \
    ck_assert_int_eq(uv_loop_close(loop), 0);                                 \
  } while (0)

/* UVCTX_TEST_SCALE (a positive number, default 1) scales the iteration
 * counts of the biggest tests: .ci/run sets 0.25 under valgrind, and a soak
 * run may set 10. Every assertion still runs; only how often changes. Never
 * less than 1. */
static inline int test_scaled(int n) {
  const char *env = getenv("UVCTX_TEST_SCALE");
  double scale = env != NULL ? strtod(env, NULL) : 1.0;
  double v = (scale > 0 ? scale : 1.0) * n;
  return v < 1 ? 1 : v > 1e9 ? 1000000000 : (int)v;
}

/* Check's timeout of a test case, in seconds (tcase_set_timeout): every case
 * sets the one for what its tests do. Each leaves room for ThreadSanitizer
 * (ten times slower, threads more so) and for a loaded machine, where a test
 * gets a small share of a core and every hand-off between threads waits for
 * a time slice: the CI step `loaded` runs the suite beside 2 x nproc busy
 * loops, and the times noted were measured beside 20 on 2 cores. Valgrind
 * runs without fork (CK_FORK=no), where Check enforces no timeout; and
 * CK_TIMEOUT_MULTIPLIER scales them all, for anything slower still. */
enum {
  /* One loop and its own thread, timers of a few milliseconds: each test
   * well under 0.1 s alone, under 0.5 s loaded. */
  TIMEOUT_LOOP_S = 20,
  /* Trees of thousands of contexts, or hundreds of rounds of one scenario,
   * on one thread: up to 0.1 s alone, 5 s loaded. */
  TIMEOUT_BIG_S = 60,
  /* Threads handing off to each other and racing, in tens to thousands of
   * rounds (the stress test's rounds are capped in time): up to 0.7 s alone,
   * 7 s loaded. */
  TIMEOUT_THREADS_S = 90
};

/* A suite is written as a table, one row per test case: its name, its
 * timeout (one of the above), a checked fixture (setup/teardown, either may
 * be NULL) run around each test, the tests run once, and the loop tests, each
 * run for _i in [start, end):
 *
 *   return SUITE("drain",
 *       {"when", TIMEOUT_LOOP_S, loop_setup, NULL,
 *        .tests = TESTS(drain_runs_once, drain_waits_for_descendants)},
 *       {"rows", TIMEOUT_LOOP_S, loop_setup, NULL,
 *        .loops = LOOPS({drain_rejects_each_uncancellable, 0, NUNCANCELLABLE})});
 */
typedef struct {
  const TTest *test;
  int start;
  int end;
} loop_row_t;

typedef struct {
  const char *name;
  double timeout_s;
  void (*setup)(void);
  void (*teardown)(void);
  const TTest *const *tests; /* NULL-terminated; may be NULL */
  const loop_row_t *loops;   /* ends with a NULL test; may be NULL */
} case_row_t;

#define TESTS(...) ((const TTest *const[]){__VA_ARGS__, NULL})
#define LOOPS(...) ((const loop_row_t[]){__VA_ARGS__, {NULL, 0, 0}})
#define SUITE(name, ...)                                                       \
  suite_of((name), (const case_row_t[]){__VA_ARGS__},                          \
           sizeof((const case_row_t[]){__VA_ARGS__}) / sizeof(case_row_t))

Suite *suite_of(const char *name, const case_row_t *rows, size_t n);

/* One suite per source file under test; test_main.c runs them all. */
Suite *cancel_suite(void);
Suite *timer_suite(void);
Suite *value_suite(void);
Suite *watch_suite(void);
Suite *lifetime_suite(void);
Suite *threads_suite(void);
Suite *badinput_suite(void);
Suite *go_port_suite(void);
Suite *alloc_suite(void);
Suite *signal_suite(void);
Suite *shutdown_suite(void);
Suite *drain_suite(void);
Suite *dump_suite(void);
Suite *any_suite(void);
Suite *reset_suite(void);
Suite *handles_suite(void);
Suite *crossloop_suite(void);
Suite *grpc_suite(void);
Suite *stress_suite(void);
Suite *ancestors_suite(void);
Suite *remote_suite(void);
Suite *mailbox_suite(void);
Suite *edges_suite(void);
Suite *refs_suite(void);
Suite *version_suite(void);
Suite *provenance_suite(void);
Suite *stats_suite(void);
Suite *observe_suite(void);

#endif
