/* The tree lock's way in for threads other than the loop's, and the barrier
 * that makes the loop thread's way a plain store and load (uvctx-int.h).
 *
 * A thread that wants the tree of a loop it does not run takes the spin lock
 * `remote` (which also queues it behind other such threads), says so in
 * remote_in, and runs membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED): every CPU
 * that runs a thread of this process executes a full memory barrier before the
 * call returns. After it, either the loop thread's "inside" store is seen
 * here, and this thread waits for it to go, or the loop thread's next look at
 * remote_in sees this thread and takes the slow way (the spin lock). A
 * cancel, release or link from another thread costs a system call for it:
 * a few microseconds, against a locked instruction saved on each of the
 * loop thread's many. */
/* syscall(2) is not POSIX. */
#define _DEFAULT_SOURCE
#include <unistd.h>

#include "uvctx-int.h"

#if defined(__linux__)
#include <linux/membarrier.h>
#include <sys/syscall.h>
#endif

#if defined(__linux__) && defined(__NR_membarrier)
static int membarrier(int cmd) {
  return (int)syscall(__NR_membarrier, cmd, 0, 0);
}

static uv_once_t barrier_once = UV_ONCE_INIT;
static int barrier_ready;

/* Once per process: the private expedited barrier must be registered before
 * it is used (Linux 4.14). Without it (an older kernel, a seccomp filter),
 * both sides take the spin lock. */
static void barrier_register(void) {
  int cmds = membarrier(MEMBARRIER_CMD_QUERY);

  barrier_ready =
      cmds >= 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
      membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
}

static int barrier_available(void) {
  uv_once(&barrier_once, barrier_register);
  return barrier_ready;
}

/* Registered, it cannot fail (EINVAL and EPERM are for unregistered or
 * unknown commands), so a failure is a broken promise of the kernel's. */
static void barrier_run(void) {
  if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0)
    abort();
}
#else
static int barrier_available(void) { return 0; }
static void barrier_run(void) {}
#endif

void uvctx__tree_lock_init(uvctx__tree_lock_t *t) {
  atomic_flag_clear(&t->remote);
  atomic_init(&t->loop_in, 0);
  t->asymmetric = barrier_available();
  /* Without the barrier, another thread is always said to be inside: the
   * loop thread then always takes the spin lock, with no test of its own. */
  atomic_init(&t->remote_in, t->asymmetric ? 0 : 1);
}

void uvctx__tree_lock_remote(uvctx__tree_lock_t *t) {
  uvctx__lock(&t->remote);
  if (!t->asymmetric)
    return;
  atomic_store_explicit(&t->remote_in, 1, memory_order_seq_cst);
  barrier_run();
  /* The loop thread is inside for a few list operations at most. */
  while (atomic_load_explicit(&t->loop_in, memory_order_acquire))
    sched_yield();
}
