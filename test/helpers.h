/* Helpers shared by the test files: the ones every suite had grown its own
 * identical copy of. What is particular to one suite stays in its file.
 *
 * Constructors here assert success, so that a test reads as the tree it
 * builds; a test about a constructor's failure calls uvctx_with_*() itself. */
#ifndef UVCTX_TEST_HELPERS_H
#define UVCTX_TEST_HELPERS_H

#include <stddef.h>
#include <stdint.h>

#include "test.h"

/* uvctx_with_cancel(), asserting it succeeded; returns the child. */
uvctx_t *mk_cancel(uv_loop_t *loop, uvctx_t *parent);

/* uvctx_with_deadline() at the absolute uvctx_now() time dl. */
uvctx_t *mk_deadline(uv_loop_t *loop, uvctx_t *parent, uint64_t dl);

/* uvctx_with_timeout(), ms from now. */
uvctx_t *mk_timeout(uv_loop_t *loop, uvctx_t *parent, uint64_t ms);

/* uvctx_with_timeout_cause(): as mk_timeout, and cause once it expires. */
uvctx_t *mk_timeout_cause(uv_loop_t *loop, uvctx_t *parent, uint64_t ms,
                          int cause);

/* uvctx_with_value(). */
uvctx_t *mk_value(uvctx_t *parent, const void *key, void *value);

/* uvctx_without_cancel(). */
uvctx_t *mk_without(uvctx_t *parent);

/* Runs the loop until *counter (changed by loop callbacks) reaches target, or
 * about 3 s have passed; returns 1 if it was reached. The counter is looked
 * at each time the loop is about to block (a ref'd prepare handle of our own,
 * which also keeps the loop running: a context's timer never does), and a
 * ref'd timer of our own ends the wait at the limit. */
int run_until(uv_loop_t *loop, const int *counter, int target);

/* Runs the loop for about ms milliseconds (a ref'd one-shot timer of our
 * own): the chance for a callback that must not come to come anyway. Asserts
 * that the loop then ran dry, so nothing of uvctx kept it alive. */
void run_for(uv_loop_t *loop, uint64_t ms);

/* An unref'd uv_signal_t of the test's own, counting the signals it got: it
 * keeps the default action (death) away while a test sends itself one. */
typedef struct {
  uv_signal_t h;
  int got;
} catcher_t;

void catcher_start(catcher_t *c, uv_loop_t *loop, int signum);
void catcher_close(catcher_t *c);

/* Sends signum to this process, asserting uv_kill() succeeded. */
void send_signal(int signum);

/* An unref'd timer that stops the loop if uv_run has not returned after ms:
 * it turns "uv_run never returns" into a failure instead of a hang, and being
 * unref'd it does not keep the loop alive itself. `fired` says it stopped it. */
typedef struct {
  uv_timer_t timer;
  int fired;
} stop_guard_t;

void stop_guard_start(uv_loop_t *loop, stop_guard_t *g, uint64_t ms);
void stop_guard_close(stop_guard_t *g);

/* Runs the loop until pred holds or the uvctx clock reaches limit_ms, asking
 * pred each time the loop is about to block (as run_until does); then closes
 * its handles. Returns whether pred holds. Fails if the loop stays alive after
 * the wait has ended (something of uvctx kept it alive). pred must only look
 * at what loop callbacks change: a thread that changes it must also wake the
 * loop (a uv_async_send). */
int poll_until(uv_loop_t *loop, int (*pred)(void *), void *arg,
               uint64_t limit_ms);

/* A count that threads raise and other threads wait for: how a test hands
 * off between threads without spinning. tally_wait blocks (a condition
 * variable) until the count reaches target, or ms milliseconds have passed;
 * it returns whether the count got there. The bound only matters when
 * something is broken: a wait that blocked forever would hang a run made
 * without fork (CK_FORK=no, as under valgrind), where Check's own timeout
 * does not act. */
typedef struct {
  uv_mutex_t lock;
  uv_cond_t cond;
  int count;
} tally_t;

void tally_init(tally_t *t);
void tally_destroy(tally_t *t);
void tally_add(tally_t *t, int n);
int tally_get(tally_t *t);
int tally_wait(tally_t *t, int target, uint64_t ms);

/* Generous bound for a hand-off between threads: only reached when something
 * is broken, never on a slow or loaded machine. */
#define HANDOFF_LIMIT_MS 30000

/* A check that holds only if the loop was not stalled for longer than the
 * test's margin (a loaded machine can stall a thread for tens of
 * milliseconds): when it cannot be made, the test says so on stderr rather
 * than skipping it in silence. Counts the checks a test meant to make and the
 * ones a stall made impossible; stall_report prints one line if any was
 * skipped: "<test>: skipped N of M <what> checks: the loop stalled (up to L
 * ms late)". */
typedef struct {
  const char *test;
  const char *what;
  int made;
  int skipped;
  uint64_t worst_ms;
} stall_count_t;

void stall_count_init(stall_count_t *s, const char *test, const char *what);
/* Records one check: returns 1 if it can be made (late_ms == 0), else counts
 * it as skipped, late_ms being how far past the margin the loop was. */
int stall_check(stall_count_t *s, uint64_t late_ms);
void stall_report(const stall_count_t *s);

#endif
