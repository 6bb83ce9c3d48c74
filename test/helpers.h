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

/* Runs the loop, with a ref'd 1 ms polling timer of our own, until *counter
 * reaches target (or about 3 s have passed). Returns 1 if it was reached.
 * Needed for deadlines: a context's timer never keeps the loop alive. */
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

/* Runs the loop, polling pred every millisecond with a ref'd timer of our
 * own, until pred holds or the uvctx clock reaches limit_ms; then closes the
 * timer. Returns whether pred holds. Fails if the loop stays alive after the
 * polling timer has stopped (something of uvctx kept it alive). */
int poll_until(uv_loop_t *loop, int (*pred)(void *), void *arg,
               uint64_t limit_ms);

#endif
