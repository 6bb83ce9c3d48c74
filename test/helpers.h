/* Helpers shared by the test files: the ones every suite had grown its own
 * identical copy of. What is particular to one suite stays in its file.
 *
 * Constructors here assert success, so that a test reads as the tree it
 * builds; a test about a constructor's failure calls uvctx_with_*() itself. */
#ifndef UVCTX_TEST_HELPERS_H
#define UVCTX_TEST_HELPERS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "test.h"

/* The loop of each test in a tcase with the checked fixture
 * tcase_add_checked_fixture(tc, loop_setup, NULL): initialised afresh before
 * each test (a checked fixture runs around every test, with CK_FORK=no too).
 * The test still ends with ASSERT_LOOP_CLOSES(&loop) itself, while what it
 * registered with the loop on its stack is alive. */
extern uv_loop_t loop;
void loop_setup(void);

/* Releases each context given, in the order given (NULL does nothing): the
 * usual end of a test in one line. */
#define release_all(...)                                                       \
  release_n((uvctx_t *[]){__VA_ARGS__},                                        \
            sizeof((uvctx_t *[]){__VA_ARGS__}) / sizeof(uvctx_t *))
void release_n(uvctx_t *const *ctxs, size_t n);

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

/* Contexts that cannot be cancelled, for tables of tests: NULL, the two
 * roots, a value context of parent (which is cancellable), of a root and of
 * a without-cancel context, and a without-cancel context (of parent). All but
 * U_VALUE_OF_CANCEL can never be done. mk_uncancellable() stores what it made
 * in made[0..1] (NULL when nothing): release_all(made[1], made[0]). */
enum {
  U_NULL,
  U_BACKGROUND,
  U_TODO,
  U_VALUE_OF_CANCEL,
  U_VALUE_OF_ROOT,
  U_WITHOUT,
  U_VALUE_OF_WITHOUT,
  NUNCANCELLABLE
};

uvctx_t *mk_uncancellable(int kind, uvctx_t *parent, uvctx_t *made[2]);

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
 * unref'd it does not keep the loop alive itself. `fired` says it stopped it;
 * it then also un-refs `refd`, if the test set it (a handle the test ref'd),
 * so that the failing test can still close its loop. */
typedef struct {
  uv_timer_t timer;
  uv_handle_t *refd;
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

/* Generous bound for "eventually": only reached when something is broken,
 * not when a loaded machine stalls the loop for a second. */
#define EVENTUALLY_MS 5000

/* An address that no constructor would ever store in *out: a failing
 * constructor must leave *out as it was. */
extern char sentinel_storage;
#define SENTINEL ((uvctx_t *)(void *)&sentinel_storage)

/* Macros rather than functions, so that a failure names the caller's line. */
#define assert_not_done(ctx)                                                   \
  do {                                                                         \
    ck_assert_int_eq(uvctx_err(ctx), 0);                                       \
    ck_assert_int_eq(uvctx_cause(ctx), 0);                                     \
  } while (0)

#define assert_done(ctx, err, cause)                                           \
  do {                                                                         \
    ck_assert_int_eq(uvctx_err(ctx), (err));                                   \
    ck_assert_int_eq(uvctx_cause(ctx), (cause));                               \
  } while (0)

/* uvctx_deadline() that must report one: returns it. */
uint64_t deadline_of(const uvctx_t *ctx);

/* The recorder: a watch (or drain) that records each call of its callback.
 * The recs of one test may share a journal, which numbers their calls in the
 * order they ran. A rec's action, if set, runs inside the callback after the
 * record is taken (arg and the action_rc fields are the action's own). A
 * pending watch holds a reference to ctx, so the callback may read it; a rec
 * set up without its context (ctx NULL) records no reading of it. */
typedef struct {
  int ran; /* callbacks run so far, all recs of the journal */
} journal_t;

typedef struct rec_s rec_t;
struct rec_s {
  uvctx_watch_t w;
  uvctx_t *ctx;
  journal_t *j; /* may be NULL */
  int calls;
  int err;           /* err argument of the last call */
  int err_inside;    /* uvctx_err(ctx) read inside the callback */
  int cause;         /* uvctx_cause(ctx) read inside the callback */
  int seq;           /* 1-based position in the journal */
  uint64_t now;      /* uvctx_now() inside the callback */
  uv_thread_t thread; /* the thread it ran on */
  void (*action)(rec_t *r);
  void *arg;
  int action_rc;
  int action_rc2;
};

/* Clears r and points it at ctx and j, without watching anything: for a test
 * that calls uvctx_watch()/uvctx_drain() with rec_cb itself. */
void rec_init(rec_t *r, journal_t *j, uvctx_t *ctx);
void rec_cb(uvctx_watch_t *w, int err);

/* rec_init(), then uvctx_watch() / uvctx_drain(), asserting success and that
 * the callback did not run inside the call. */
void rec_watch(rec_t *r, journal_t *j, uvctx_t *ctx);
void rec_drain(rec_t *r, journal_t *j, uvctx_t *ctx);

/* For poll_until(): the rec was called. */
int rec_called(void *arg);

/* Whether the rec's last call ran on the calling thread (the loop's, when a
 * test asks after uv_run). */
int rec_ran_here(const rec_t *r);

/* A counting allocator for uvctx_replace_allocator(), safe from any thread:
 * counts the allocations made and those not yet freed, and can refuse them.
 * counting_install() resets everything and installs it; counting_uninstall()
 * puts malloc/free back. */
extern atomic_long counting_allocs;      /* allocations made */
extern atomic_long counting_outstanding; /* made and not yet freed */
extern long counting_refused;            /* allocations refused */
extern long counting_allowed; /* allowed before one fails; -1: no limit */
extern int counting_fail_all; /* refuse every allocation */
extern int counting_one_shot; /* after the refusal, no limit again */

void *counting_malloc(size_t size);
void counting_free(void *ptr);
void counting_install(void);
void counting_uninstall(void);
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

/* A small deterministic PRNG (xorshift32) for random schedules, shuffles and
 * tree shapes: the same seed gives the same test on every run. *state must
 * not be 0. xorshift32 advances it and returns the new value; rng_below
 * returns that modulo n (n > 0). */
uint32_t xorshift32(uint32_t *state);
uint32_t rng_below(uint32_t *state, uint32_t n);

/* The text uvctx_dump(ctx) writes, split in place into its lines (each must
 * end with a newline; no more than DUMP_MAX_LINES). Returns uvctx_dump()'s
 * result; the caller frees t->buf. */
enum { DUMP_MAX_LINES = 64 };

typedef struct {
  char *buf;
  size_t len;
  char *line[DUMP_MAX_LINES];
  int n;
} dump_text_t;

int dump_split(dump_text_t *t, const uvctx_t *ctx);

/* The number of the line of t that names ctx (uvctx_dump() prints each
 * context's address), or -1. */
int dump_line_of(const dump_text_t *t, const uvctx_t *ctx);

/* --- table tests, loop threads, bad signal numbers --- */

/* ck_assert of `X OP Y` on integers, for a table test: the failure names the
 * row (Check itself prints only the index _i). X and Y are read once. */
#define ck_row(row, X, OP, Y)                                                  \
  do {                                                                         \
    intmax_t x_ = (intmax_t)(X), y_ = (intmax_t)(Y);                           \
    ck_assert_msg(x_ OP y_, "row \"%s\": %s %s %s failed (%jd, %jd)", (row),   \
                  #X, #OP, #Y, x_, y_);                                        \
  } while (0)

/* The number of rows of a table (an array). */
#define NROWS(rows) (int)(sizeof(rows) / sizeof((rows)[0]))

/* assert_done() for a row of a table test. */
#define ck_row_done(row, ctx, err, cause)                                      \
  do {                                                                         \
    ck_row(row, uvctx_err(ctx), ==, err);                                      \
    ck_row(row, uvctx_cause(ctx), ==, cause);                                  \
  } while (0)

/* A thread of the test's own that runs fn(arg) and then wakes the loop with a
 * ref'd uv_async_t, which keeps the loop polling until then; the async's
 * callback joins the thread, sets joined and closes the async. */
typedef struct {
  uv_async_t async;
  uv_thread_t tid;
  void (*fn)(void *arg);
  void *arg;
  int joined;
} loop_thread_t;

void loop_thread_start(loop_thread_t *t, uv_loop_t *loop, void (*fn)(void *),
                       void *arg);

/* A cancel of ctx from another thread, and what that thread saw: the call's
 * return value, its site as uvctx_cancel records it ("file:line" in
 * helpers.c) and uvctx_now() just before and after it. */
typedef struct {
  uvctx_t *ctx;
  int rc;
  char site[64];
  uint64_t before, after;
} remote_cancel_t;

/* Cancels r->ctx from a loop_thread_t and runs loop until the thread has
 * joined and rec (a watch the caller set on something r->ctx finishes) has
 * been called. */
void remote_cancel(uv_loop_t *loop, remote_cancel_t *r, rec_t *rec);

/* Signal numbers that uvctx_with_signal and uvctx_with_shutdown refuse
 * (UV_EINVAL): out of range, and the two that cannot be caught. Each is
 * tried in NBAD_LISTS lists: alone, and after or between good ones (where
 * what was set up for those must be undone); bad_signum_lists() fills them,
 * and list i has bad_list_counts[i] numbers. */
extern const int bad_signums[];
enum { NBAD_SIGNUMS = 9, NBAD_LISTS = 4 };
extern const size_t bad_list_counts[NBAD_LISTS];
void bad_signum_lists(int bad, int lists[NBAD_LISTS][3]);


/* --- formats, counts, recorders --- */

/* uvctx_format() into buf, asserting that it fit and that its snprintf-like
 * result is the length written; returns buf. */
const char *format_ok(const uvctx_t *ctx, char *buf, size_t len);

int has_prefix(const char *s, const char *prefix);

/* poll_until() for a count that loop callbacks raise: runs the loop until
 * *count >= want, for at most EVENTUALLY_MS. Returns whether it got there. */
int poll_count(uv_loop_t *loop, const int *count, int want);

/* The rec's callback ran exactly once, with err. */
#define assert_called_once(r, e)                                               \
  do {                                                                         \
    ck_assert_int_eq((r)->calls, 1);                                           \
    ck_assert_int_eq((r)->err, (e));                                           \
  } while (0)

/* --- any-contexts, waiting for a time --- */

/* uvctx_with_any() of the parents given, asserting it succeeded. */
#define mk_any(loop, ...)                                                      \
  mk_any_n((loop), (uvctx_t *[]){__VA_ARGS__},                                 \
           sizeof((uvctx_t *[]){__VA_ARGS__}) / sizeof(uvctx_t *))
uvctx_t *mk_any_n(uv_loop_t *loop, uvctx_t **parents, size_t n);

/* Runs the loop until the uvctx clock has reached at least until_ms (a ref'd
 * timer of our own, as poll_until). */
void run_until_time(uv_loop_t *loop, uint64_t until_ms);

/* --- contexts of every kind, live counts --- */

/* How many cancellable contexts are alive on loop: uvctx_dump_loop()'s count,
 * its text thrown away. */
int live_contexts(const uv_loop_t *loop);

/* Every constructor through one signature, for tables of tests: mk_kind()
 * makes a context of the kind under parent (a shutdown makes two: stopping
 * in *out2), with arguments that allocate all they can (a deadline a minute
 * away, three signals, three parents) and a value of mk_kind_key. bad = 1 or
 * 2 makes one of the kind's own arguments bad (a NULL key; a cause of 1, of
 * INT_MAX), for the kinds of mk_kind_bad_values() > 0. The _PAST and _ZERO
 * kinds are born done. */
enum {
  MK_CANCEL,
  MK_DEADLINE,
  MK_DEADLINE_PAST,
  MK_DEADLINE_CAUSE,
  MK_DEADLINE_CAUSE_PAST,
  MK_TIMEOUT,
  MK_TIMEOUT_ZERO,
  MK_TIMEOUT_CAUSE,
  MK_TIMEOUT_CAUSE_ZERO,
  MK_GRPC_TIMEOUT,
  MK_GRPC_TIMEOUT_ZERO,
  MK_SIGNAL,
  MK_ANY,
  MK_SHUTDOWN,
  MK_VALUE,   /* takes no loop */
  MK_WITHOUT, /* takes no loop */
  NMK_KINDS
};

extern const char mk_kind_key;
int mk_kind(int kind, uv_loop_t *loop, uvctx_t *parent, int bad,
            uvctx_t **out, uvctx_t **out2);
int mk_kind_bad_values(int kind);

#endif
