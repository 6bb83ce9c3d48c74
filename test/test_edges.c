/* Edges the other suites leave: a shutdown beginning while its stopping
 * context is being torn down, signal counts too large for a context's block,
 * and a loop's first context and a done signal when the process has no file
 * descriptor left. (uvctx_format() of every kind is in test_value.c.)
 *
 * uvctx_format() returns UV_E2BIG when a description would be longer than
 * INT_MAX. That takes a chain of some 42 million contexts (the longest
 * segment, a value context's, is about 50 characters): gigabytes of memory
 * and a minute of snprintf, too much for this suite, so it is not tested. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "helpers.h"
#include "test.h"

/* --- A shutdown begins while its stopping context is being torn down --- */

/* Runs one retain or release of a context on a thread that is not its loop's
 * and joins it. */
typedef struct {
  uvctx_t *ctx;
  int retain;
} off_loop_t;

static void off_loop_main(void *arg) {
  off_loop_t *o = arg;
  if (o->retain)
    uvctx_retain(o->ctx);
  else
    uvctx_release(o->ctx);
}

static void off_loop(uvctx_t *ctx, int retain) {
  off_loop_t o = {ctx, retain};
  uv_thread_t thread;
  ck_assert_int_eq(uv_thread_create(&thread, off_loop_main, &o), 0);
  ck_assert_int_eq(uv_thread_join(&thread), 0);
}

/* stopping's last reference is dropped on another thread after its loop
 * thread dropped its own (so the count is shared: src/refs.c), so its
 * teardown waits in the loop's mailbox and it is still the shutdown's
 * stopping child, with no reference left, when uvctx_shutdown() begins phase
 * 1. Phase 1 must not take a reference to cancel it (that would bring it back
 * to life and tear it down twice). With nothing else below it, the shutdown
 * is over at once, with the cause it began with; the loop then tears stopping
 * down once and the shutdown context drains. */
START_TEST(shutdown_passes_over_a_stopping_context_being_torn_down) {
  uvctx_t *stopping = NULL, *sd = NULL;
  rec_t d;

  ck_assert_int_eq(uvctx_with_shutdown(&loop, uvctx_background(), NULL, 0,
                                       60000, &stopping, &sd),
                   0);
  off_loop(stopping, 1);
  uvctx_release(stopping); /* the loop thread's last: the count is shared */
  off_loop(stopping, 0);   /* the last of all: its teardown is posted */

  ck_assert_int_eq(uvctx_shutdown(sd, UV_EPIPE), 0);
  ck_assert_int_eq(uvctx_err(sd), UV_ECANCELED);
  ck_assert_int_eq(uvctx_cause(sd), UV_EPIPE);
  ck_assert_int_eq(uvctx_shutdown(sd, UV_EPIPE), UV_EALREADY);

  /* stopping still counts as a child until the loop has torn it down. */
  rec_drain(&d, NULL, sd);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_called_once(&d, UV_ECANCELED);
  uvctx_release(sd);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* --- Signal counts too large for a context's block --- */

/* The block holds a uv_signal_t and an int per signal, its size computed in
 * size_t: a count whose block would pass 4 GiB is refused before signums is
 * read (here it has one element) and before anything is made. */
START_TEST(signal_and_shutdown_refuse_a_count_too_large_for_their_block) {
  const int sigs[] = {SIGUSR1};
  /* Each signal takes a handle and its number in the block. */
  size_t huge = (size_t)UINT32_MAX / (sizeof(uv_signal_t) + sizeof(int)) + 1;
  uvctx_t *out = NULL, *stopping = NULL;

  ck_assert_int_eq(uvctx_with_signal(&loop, uvctx_background(), sigs, huge,
                                     &out),
                   UV_EINVAL);
  ck_assert_int_eq(uvctx_with_shutdown(&loop, uvctx_background(), sigs, huge,
                                       100, &stopping, &out),
                   UV_EINVAL);
  ck_assert_ptr_null(out);
  ck_assert_ptr_null(stopping);
  ck_assert_int_eq(uvctx_dump_loop(&loop, stderr), 0);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* --- Loops without a file descriptor to spare ---
 *
 * uvctx's per-loop state and a context's done signal are uv_async_t's. On
 * Linux every uv_async_t of a loop shares one eventfd, which uv_loop_init()
 * itself opens (for the thread pool's own uv_async_t), so a loop that was
 * initialised needs no new descriptor for uvctx, and uv_async_init() on it
 * cannot fail. The eventfd is missing only after a uv_loop_fork() that could
 * not open it again (here without a fork(): what uv_loop_fork() does to the
 * loop is the same): then uvctx's uv_async_init() fails too, and nothing may
 * be left behind.
 *
 * The file-descriptor limit is process-wide: each test restores it right
 * after the calls under test, before asserting anything, so that a failure
 * cannot leave it lowered for the tests that follow (under CK_FORK=no they
 * run in this process). */

/* The lowest free descriptor number: with the soft limit set to it, the next
 * descriptor the process opens fails with EMFILE. */
static int lowest_free_fd(void) {
  int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(close(fd), 0);
  return fd;
}

static void set_fd_limit(const struct rlimit *old, rlim_t soft) {
  struct rlimit lim = *old;
  lim.rlim_cur = soft;
  ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &lim), 0);
}

static void restore_fd_limit(const struct rlimit *old) {
  if (setrlimit(RLIMIT_NOFILE, old) != 0)
    abort(); /* the tests after this one would fail for no reason of theirs */
}

/* With no descriptor left in the process, the first context of a fresh loop
 * is made all the same, and opens none. */
START_TEST(first_context_of_a_loop_needs_no_new_file_descriptor) {
  struct rlimit old;
  uvctx_t *ctx = NULL;
  ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
  int fd_before = lowest_free_fd();
  set_fd_limit(&old, (rlim_t)fd_before);
  int rc = uvctx_with_cancel(&loop, uvctx_background(), &ctx);
  restore_fd_limit(&old);

  ck_assert_int_eq(rc, 0);
  ck_assert_int_eq(lowest_free_fd(), fd_before);
  ck_assert_int_eq(uvctx_cancel(ctx), 0);
  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Descriptors that fill every free slot below a limit. */
enum { MAX_FILL = 4096 };

typedef struct {
  struct rlimit old;
  int fd[MAX_FILL];
  int n;
} fill_t;

/* Makes uv_loop_fork() on loop fail to reopen the loop's eventfd: every slot
 * up to the loop's epoll descriptor is taken and the limit lets only that
 * one be reopened (uv_loop_fork() reopens it first, in the slot it frees,
 * then fails on the eventfd). Returns uv_loop_fork()'s result, with the
 * limit still lowered: the caller makes the calls under test, then calls
 * regain_fds() before asserting anything. */
static int lose_wakeup_fd(uv_loop_t *loop, fill_t *f) {
  int limit = uv_backend_fd(loop) + 1;
  int fd;

  ck_assert_int_gt(limit, 0);
  ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &f->old), 0);
  f->n = 0;
  while ((fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0 && fd < limit) {
    ck_assert_int_lt(f->n, MAX_FILL);
    f->fd[f->n++] = fd;
  }
  ck_assert_int_ge(fd, limit);
  ck_assert_int_eq(close(fd), 0);
  set_fd_limit(&f->old, (rlim_t)limit);
  return uv_loop_fork(loop);
}

static void regain_fds(fill_t *f) {
  restore_fd_limit(&f->old);
  while (f->n > 0)
    ck_assert_int_eq(close(f->fd[--f->n]), 0);
}

/* Without the loop's eventfd, neither the loop's first context (UV_EMFILE)
 * nor a done signal (NULL: "cannot be made") can be made, with nothing made,
 * registered or kept and the context unharmed; once descriptors are
 * available again, uv_loop_fork() restores the loop and both are made, and
 * the done signal is sent when the context is done. */
START_TEST(contexts_and_done_signals_fail_cleanly_without_the_loops_wakeup_fd) {
  static fill_t fill;
  uvctx_t *ctx = NULL;

  int fork_rc = lose_wakeup_fd(&loop, &fill);
  int rc = uvctx_with_cancel(&loop, uvctx_background(), &ctx);
  long leaked = counting_outstanding;
  regain_fds(&fill);

  ck_assert_int_eq(fork_rc, UV_EMFILE);
  ck_assert_int_eq(rc, UV_EMFILE);
  ck_assert_ptr_null(ctx);
  ck_assert_int_eq(leaked, 0);
  ck_assert_int_eq(uvctx_dump_loop(&loop, stderr), 0); /* not registered */
  ck_assert_int_eq(uv_loop_fork(&loop), 0);
  ctx = mk_cancel(&loop, uvctx_background());

  long before = counting_outstanding;
  fork_rc = lose_wakeup_fd(&loop, &fill);
  uv_async_t *done = uvctx_done_async(ctx);
  leaked = counting_outstanding - before;
  regain_fds(&fill);

  ck_assert_int_eq(fork_rc, UV_EMFILE);
  ck_assert_ptr_null(done);
  ck_assert_int_eq(leaked, 0);
  ck_assert_int_eq(uvctx_err(ctx), 0);
  ck_assert_int_eq(uv_loop_fork(&loop), 0);
  done = uvctx_done_async(ctx);
  ck_assert_ptr_nonnull(done);
  ck_assert_ptr_eq(uvctx_done_async(ctx), done);
  /* Ref'd, it keeps the loop running until it has been delivered (uvctx then
   * unrefs it): uv_run returning proves the signal was sent. */
  uv_ref((uv_handle_t *)done);
  ck_assert_int_eq(uvctx_cancel(ctx), 0);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert(!uv_has_ref((uv_handle_t *)done));
  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
  ck_assert_int_eq(counting_outstanding, 0);
}
END_TEST

static void counting_setup(void) {
  loop_setup();
  counting_install();
}

Suite *edges_suite(void) {
  return SUITE(
      "edges",
      /* One loop, one helper thread joined at once: milliseconds. */
      {"shutdown", TIMEOUT_THREADS_S, loop_setup, NULL,
       .tests = TESTS(
           shutdown_passes_over_a_stopping_context_being_torn_down)},
      /* Argument checks and a few descriptors opened and closed. */
      {"limits", TIMEOUT_LOOP_S, counting_setup, counting_uninstall,
       .tests = TESTS(
           signal_and_shutdown_refuse_a_count_too_large_for_their_block,
           first_context_of_a_loop_needs_no_new_file_descriptor,
           contexts_and_done_signals_fail_cleanly_without_the_loops_wakeup_fd)});
}
