/* uvctx: Go's context package for libuv.
 *
 * A uvctx_t is a node in a tree of contexts. Each node carries a cancellation
 * signal, an optional deadline and read-only values. Cancelling a node cancels
 * its whole subtree; a deadline cancels a node by itself. Code learns that a
 * context is done through an ordinary libuv callback on the context's loop.
 *
 * This header is the manual. Read it top to bottom: conventions, the kinds of
 * context, how to make them, how to cancel them, how to ask about them, how to
 * be told that they are done, and how their memory is managed.
 *
 * ---------------------------------------------------------------------------
 * Conventions
 * ---------------------------------------------------------------------------
 *
 * Errors. Every function that can fail returns int: 0 on success or a negative
 * UV_E* code. UV_EINVAL means a bad argument, UV_ENOMEM a failed allocation;
 * when a function fails, nothing has changed and nothing has leaked.
 *
 * Time. Times are milliseconds on the uvctx clock, uvctx_now(), which is
 * uv_hrtime() in milliseconds: monotonic and the same on every loop. It is not
 * libuv's cached loop time (uv_now()), which lags and differs between loops.
 *
 * Threads. Each function below states its thread rule. "Any thread" means the
 * function may be called concurrently from any thread, including threads that
 * run no loop. "Loop thread" means the thread that runs the loop of the
 * context (or the loop passed as an argument); a context is bound to the
 * thread that created it, which must be the thread that runs its loop.
 * Callbacks always run on the loop thread, never inside a uvctx call, and
 * uvctx never holds a lock while a callback of yours runs (but for an
 * observer's DONE event: see uvctx_observe).
 *
 * Cost across threads. The loop thread's own calls take no locked
 * instruction. A call on another thread that changes a loop's tree (a cancel,
 * the release of a cancellable context's last reference, a child made under a
 * parent on another loop) pays for both sides instead: on Linux 4.14 and
 * later, one membarrier(2) system call, a few microseconds. Where the kernel
 * does not offer it, every thread takes a spin lock, as before.
 *
 * Kinds. These are the kinds of context:
 *   - roots:          uvctx_background() and uvctx_todo(), never done;
 *   - cancel:         uvctx_with_cancel(), done when cancelled or its parent
 *                     is;
 *   - deadline:       uvctx_with_deadline(), uvctx_with_timeout() and
 *                     uvctx_with_grpc_timeout(), like a cancel context that
 *                     also cancels itself at a deadline;
 *   - value:          uvctx_with_value(), carries one key/value pair and is
 *                     done exactly when its parent is;
 *   - without-cancel: uvctx_without_cancel(), keeps the values of its parent
 *                     but is never done and has no deadline;
 *   - signal, any, shutdown: uvctx_with_signal(), uvctx_with_any() and
 *                     uvctx_with_shutdown(), see "Beyond Go" below.
 * All but roots, value and without-cancel contexts are "cancellable": they
 * live on a loop, and they are the ones that uvctx_cancel() accepts.
 *
 * Liveness. A context never keeps its loop alive by itself: its handles are
 * unref'd, so uv_run() returns once your own handles and requests are done.
 * Callbacks that are already due (a context is done and its watches have not
 * run yet) keep the loop alive until they have run.
 */
#ifndef UVCTX_H
#define UVCTX_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(UVCTX_BUILDING) && defined(__GNUC__)
#define UVCTX_EXTERN __attribute__((visibility("default")))
#else
#define UVCTX_EXTERN /* nothing */
#endif

typedef struct uvctx_s uvctx_t;
typedef struct uvctx_watch_s uvctx_watch_t;

/* Called once, on the context's loop thread, when the watched context is done.
 * err is uvctx_err() of the watched context: UV_ECANCELED or UV_ETIMEDOUT. The
 * callback may free w, release the context, watch again with the same w, and
 * call any uvctx function. */
typedef void (*uvctx_watch_cb)(uvctx_watch_t *w, int err);

/* A registration for a callback when a context is done: Go's AfterFunc. It is
 * owned by you, like a libuv request: zero it before its first use
 * (`uvctx_watch_t w = {0};`, calloc; in C++ `uvctx_watch_t w{};`, as -Wextra
 * warns about `= {0}` there), then keep it alive from uvctx_watch()
 * until its callback has started or uvctx_unwatch() has returned. Once its
 * callback has started or it is unwatched it may be watched again or freed.
 * Only `data` is yours to touch; every other field belongs to uvctx. */
struct uvctx_watch_s {
  void *data;
  /* private */
  uvctx_t *ctx;
  uvctx_watch_cb cb;
  uvctx_watch_t *next;
  uvctx_watch_t *prev;
  unsigned int state;
  unsigned int depth;
  union {
    uv_handle_t *handle; /* uvctx_close_on_done */
    uv_req_t *req;       /* uvctx_cancel_on_done */
  } target;
  uv_close_cb close_cb;
};

/* ---------------------------------------------------------------------------
 * Version and compatibility
 *
 * The version of this header, as libuv's UV_VERSION_*: the one place where
 * uvctx's version is written (configure reads it from here). A release has
 * UVCTX_VERSION_SUFFIX "", a build between releases "dev" for example.
 *
 * The shared library keeps its ABI for as long as its soname stays the same
 * (libuvctx.so.0): a program built against one release runs with any later
 * release of that soname. Releases of one soname only add functions, each
 * exported under the symbol version of the release that added it (UVCTX_0.1
 * for the first), and change no type of this header in a way that a program
 * built against an earlier release could notice. A program that calls a
 * function newer than the library it runs with is refused when it is loaded,
 * not when it calls. docs/RELEASING.md has the rules.
 *
 * C++ programs include this header as it is (C++11 and later); its
 * declarations have C linkage.
 * ------------------------------------------------------------------------- */

/* The version of this header, MAJOR.MINOR.PATCH, and its suffix: "" for a
 * release, "dev" for example for a build between releases. */
#define UVCTX_VERSION_MAJOR 0
#define UVCTX_VERSION_MINOR 1
#define UVCTX_VERSION_PATCH 0
#define UVCTX_VERSION_SUFFIX ""

/* MAJOR, MINOR and PATCH in one number that compares in version order:
 * 0x000100 is 0.1.0. */
#define UVCTX_VERSION_HEX                                                      \
  ((UVCTX_VERSION_MAJOR << 16) | (UVCTX_VERSION_MINOR << 8) |                  \
   (UVCTX_VERSION_PATCH))

/* The version of the library the program runs with, which may be later than
 * the header it was built against: its UVCTX_VERSION_HEX, and its version as
 * a string, "MAJOR.MINOR.PATCH" followed by "-" and UVCTX_VERSION_SUFFIX when
 * the suffix is not empty ("0.1.0", "0.2.0-dev"). The string is static.
 * Any thread. */
UVCTX_EXTERN unsigned int uvctx_version(void);
UVCTX_EXTERN const char *uvctx_version_string(void);

/* ---------------------------------------------------------------------------
 * Clock
 * ------------------------------------------------------------------------- */

/* The uvctx clock: uv_hrtime() in whole milliseconds. Any thread. */
UVCTX_EXTERN uint64_t uvctx_now(void);

/* ---------------------------------------------------------------------------
 * Memory
 * ------------------------------------------------------------------------- */

typedef void *(*uvctx_malloc_func)(size_t size);
typedef void (*uvctx_free_func)(void *ptr);

/* Makes uvctx take its memory from malloc_func and give it back to free_func
 * instead of malloc() and free(), like uv_replace_allocator(). Call it before
 * any other uvctx function, or while no context is alive; it is not
 * thread-safe. malloc_func may fail (return NULL): uvctx then returns
 * UV_ENOMEM with nothing half-built. Errors: UV_EINVAL if either is NULL. */
UVCTX_EXTERN int uvctx_replace_allocator(uvctx_malloc_func malloc_func,
                                         uvctx_free_func free_func);

/* ---------------------------------------------------------------------------
 * Roots (Go's Background and TODO)
 * ------------------------------------------------------------------------- */

/* Static roots: never done, no deadline, no values, no loop. Retaining and
 * releasing them does nothing, and they are never freed. uvctx_todo() is the
 * same as uvctx_background() but says "this code has not been given a context
 * yet"; uvctx_format() tells them apart. Any thread. */
UVCTX_EXTERN uvctx_t *uvctx_background(void);
UVCTX_EXTERN uvctx_t *uvctx_todo(void);

/* ---------------------------------------------------------------------------
 * Making contexts
 *
 * Every constructor stores in *out a new context that holds a reference to
 * its parent, and gives you one reference to it (release it with
 * uvctx_release). A child of a parent that is already done is born done, with
 * the parent's err and cause. On error, *out is left unchanged.
 *
 * Constructors that take a loop make a cancellable context that lives on that
 * loop: they must be called on the thread that runs that loop. Its parent may
 * live on another loop (a cross-loop tree): cancelling the parent then cancels
 * the child, and the child's callbacks still run on its own loop.
 * ------------------------------------------------------------------------- */

/* A context that is done when uvctx_cancel() is called on it or its parent is
 * done (Go's WithCancel and WithCancelCause: pass the cause to
 * uvctx_cancel_cause).
 * Errors: UV_EINVAL if loop, parent or out is NULL; UV_ENOMEM.
 * Loop thread. */
UVCTX_EXTERN int uvctx_with_cancel(uv_loop_t *loop, uvctx_t *parent,
                                   uvctx_t **out);

/* A cancellable context that also becomes done, with err UV_ETIMEDOUT, when
 * uvctx_now() reaches deadline_ms (Go's WithDeadline). Its deadline is a
 * uv_timer_t on loop; it never fires before uvctx_now() >= deadline_ms, even
 * though libuv's cached loop time lags. A deadline at or before uvctx_now()
 * gives a context that is born done with UV_ETIMEDOUT. A deadline later than an
 * ancestor's changes nothing observable but uvctx_deadline(), which reports the
 * earliest. The _cause variant records cause (a negative code, or 0 for none)
 * as the context's cause when the deadline is what finishes it.
 * Errors: UV_EINVAL if loop, parent or out is NULL or cause > 0; UV_ENOMEM.
 * Loop thread. */
UVCTX_EXTERN int uvctx_with_deadline(uv_loop_t *loop, uvctx_t *parent,
                                     uint64_t deadline_ms, uvctx_t **out);
UVCTX_EXTERN int uvctx_with_deadline_cause(uv_loop_t *loop, uvctx_t *parent,
                                           uint64_t deadline_ms, int cause,
                                           uvctx_t **out);

/* uvctx_with_deadline(loop, parent, uvctx_now() + timeout_ms, out) (Go's
 * WithTimeout). A timeout of 0 gives a context born done with UV_ETIMEDOUT; a
 * timeout so large that the sum overflows saturates at UINT64_MAX, a deadline
 * that never comes.
 * Errors and thread rule: as uvctx_with_deadline. */
UVCTX_EXTERN int uvctx_with_timeout(uv_loop_t *loop, uvctx_t *parent,
                                    uint64_t timeout_ms, uvctx_t **out);
UVCTX_EXTERN int uvctx_with_timeout_cause(uv_loop_t *loop, uvctx_t *parent,
                                          uint64_t timeout_ms, int cause,
                                          uvctx_t **out);

/* A context that carries value under key and is otherwise its parent: done
 * when the parent is, same deadline (Go's WithValue). Keys compare by address,
 * so use the address of a static variable of your own as a key. The value is
 * not copied or freed: it must outlive the context.
 * Errors: UV_EINVAL if parent, key or out is NULL; UV_ENOMEM.
 * Any thread. */
UVCTX_EXTERN int uvctx_with_value(uvctx_t *parent, const void *key,
                                  void *value, uvctx_t **out);

/* A context that keeps the values of parent but is never done, has no
 * deadline and is not cancelled when parent is (Go's WithoutCancel).
 * Errors: UV_EINVAL if parent or out is NULL; UV_ENOMEM.
 * Any thread. */
UVCTX_EXTERN int uvctx_without_cancel(uvctx_t *parent, uvctx_t **out);

/* ---------------------------------------------------------------------------
 * Cancelling (Go's CancelFunc and CancelCauseFunc)
 * ------------------------------------------------------------------------- */

/* Cancels ctx and all its descendants with err UV_ECANCELED. The _cause
 * variant records cause (a negative code, 0 for none) as their cause.
 *
 * When it returns, ctx and every descendant on ctx's loop are done, seen from
 * every thread, whichever thread called it (descendants on other loops follow
 * when their loop takes the hand-off). Watch callbacks never run inside this
 * call: they run later as callbacks of the loop, right away when it is called
 * on the loop thread, and when the loop next polls when it is called from
 * another thread.
 *
 * Returns 0 if this call cancelled ctx, UV_EALREADY if it was already done.
 * Errors: UV_EINVAL if ctx is NULL or not cancellable (a root, a value or a
 * without-cancel context), or if cause > 0; arguments are checked first, so a
 * bad cause is UV_EINVAL even on a context that is done.
 * Any thread. */
UVCTX_EXTERN int uvctx_cancel(uvctx_t *ctx);
UVCTX_EXTERN int uvctx_cancel_cause(uvctx_t *ctx, int cause);

/* ---------------------------------------------------------------------------
 * Asking about a context
 * ------------------------------------------------------------------------- */

/* 0 while ctx is not done, then UV_ECANCELED or UV_ETIMEDOUT forever (Go's
 * Err). One atomic load. 0 for NULL. Any thread. */
UVCTX_EXTERN int uvctx_err(const uvctx_t *ctx);

/* The cause given to the cancel that finished ctx, inherited from the
 * ancestor whose cancel reached it; if that cancel gave none, uvctx_err(ctx).
 * 0 while ctx is not done (Go's context.Cause). 0 for NULL. Any thread. */
UVCTX_EXTERN int uvctx_cause(const uvctx_t *ctx);

/* Stores in *deadline_ms the earliest deadline of ctx and its ancestors and
 * returns 1, or returns 0 (and leaves *deadline_ms alone) when there is none
 * (Go's Deadline). UV_EINVAL if ctx or deadline_ms is NULL. Any thread. */
UVCTX_EXTERN int uvctx_deadline(const uvctx_t *ctx, uint64_t *deadline_ms);

/* The value of the nearest context up the tree, ctx included, whose key is
 * key; NULL if there is none or ctx or key is NULL (Go's Value). Any thread. */
UVCTX_EXTERN void *uvctx_value(const uvctx_t *ctx, const void *key);

/* The loop on which ctx's callbacks run: its own for a cancellable context,
 * its nearest cancellable ancestor's for a value context, NULL for a root, a
 * without-cancel context and their value children. Any thread. */
UVCTX_EXTERN uv_loop_t *uvctx_loop(const uvctx_t *ctx);

/* Writes a description of ctx and its ancestry, for logs and debugging (Go's
 * String), for example
 *   background.with_cancel.with_deadline(1234567 [+250ms]).with_value(0x55f0, 0x55f8)
 * Like snprintf: writes at most len bytes including the terminating NUL and
 * returns the length of the whole description (without the NUL), so a return
 * value >= len means it was truncated; buf may be NULL when len is 0.
 * Errors: UV_EINVAL if ctx is NULL, or buf is NULL and len is not 0.
 * Loop thread (of ctx's loop, if it has one). */
UVCTX_EXTERN int uvctx_format(const uvctx_t *ctx, char *buf, size_t len);

/* ---------------------------------------------------------------------------
 * Being told that a context is done
 * ------------------------------------------------------------------------- */

/* Registers cb to run once ctx is done (Go's AfterFunc). cb runs on ctx's loop
 * thread as a loop callback, exactly once, never inside uvctx_watch() or
 * uvctx_cancel(). When one cancel finishes several contexts, the callbacks of
 * an ancestor run before those of its descendants, and those of one context
 * in the order they were registered. Watching a context that is already done
 * runs cb on a later loop callback. A pending watch holds a reference to ctx,
 * dropped once cb has returned or the watch is unwatched. Watching a context
 * that can never be done (a root, a without-cancel context) succeeds; cb never
 * runs, and the watch holds its reference until it is unwatched.
 * Errors: UV_EINVAL if ctx, w or cb is NULL; UV_EBUSY if w is still pending.
 * Loop thread. */
UVCTX_EXTERN int uvctx_watch(uvctx_t *ctx, uvctx_watch_t *w,
                             uvctx_watch_cb cb);

/* Cancels a watch (Go's stop). Returns 0 if its callback had not started and
 * now never will, UV_EALREADY if it has run, is running or the watch was
 * already unwatched. UV_EINVAL if w is NULL. Loop thread. */
UVCTX_EXTERN int uvctx_unwatch(uvctx_watch_t *w);

/* The uv_async_t that is ctx's done signal (Go's Done channel): uvctx sends it
 * on ctx's loop when ctx is done. It is made on the first call, unref'd, owned
 * and closed by uvctx: do not close it, init it or change its data or callback.
 * You may uv_ref() it so that the loop keeps running until ctx is done; once
 * the signal has been delivered uvctx unrefs it again. A value context gives
 * its nearest cancellable ancestor's. Returns NULL when ctx can never be done
 * (a root, a without-cancel context), when ctx is NULL, and when the handle
 * cannot be made (out of memory). Watches are the way to be called back.
 * Loop thread. */
UVCTX_EXTERN uv_async_t *uvctx_done_async(uvctx_t *ctx);

/* ---------------------------------------------------------------------------
 * Lifetime (reference counting stands in for Go's garbage collector)
 * ------------------------------------------------------------------------- */

/* Adds a reference to ctx and returns ctx. NULL gives NULL; roots are not
 * counted. Any thread, as long as the caller already holds a reference.
 *
 * Cost: a cancellable context's loop thread counts its references without
 * atomic read-modify-writes (most references are taken and dropped there:
 * the user's, each child's, each pending watch's); other threads count
 * theirs atomically. Value contexts are counted atomically. */
UVCTX_EXTERN uvctx_t *uvctx_retain(uvctx_t *ctx);

/* Drops a reference. When the last one goes, the context leaves its parent,
 * stops its timer, closes its handles and drops its reference to its parent;
 * its memory is freed in the handles' close callbacks. Releasing never cancels
 * anything. NULL and roots are ignored.
 *
 * Any thread. On the loop thread it first acts on what other threads handed
 * to the loop (their cancels hold references until then). When the last
 * reference to a cancellable context is dropped on another thread than its
 * loop's, the teardown is handed to the loop and done the next time the loop
 * polls for events, which needs something alive on the loop (uv_run() with
 * nothing alive returns at once); so is a reference that the loop thread took
 * and another thread drops while the other threads hold none. To close a loop
 * cleanly, drop the last references on the loop thread, or keep a handle of
 * your own alive until the releasing thread is done.
 *
 * After every context of a loop has been released (on its thread) and the loop
 * has run once more, uv_loop_close(loop) returns 0. */
UVCTX_EXTERN void uvctx_release(uvctx_t *ctx);

/* ===========================================================================
 * Beyond Go: libuv integration
 * ======================================================================== */

/* ---------------------------------------------------------------------------
 * Signals (Go's signal.NotifyContext)
 * ------------------------------------------------------------------------- */

/* A cancellable context that is done, with err UV_ECANCELED, when one of the
 * count signals in signums arrives (or its parent is done). It listens with
 * one uv_signal_t per signal, unref'd; releasing the context stops listening.
 * Only the first signal counts: read it back with uvctx_signal_received().
 * Errors: UV_EINVAL if loop, parent, signums or out is NULL, count is 0, or a
 * signal number is not one that can be caught (0, negative, >= NSIG, SIGKILL,
 * SIGSTOP); UV_ENOMEM. Loop thread. */
UVCTX_EXTERN int uvctx_with_signal(uv_loop_t *loop, uvctx_t *parent,
                                   const int *signums, size_t count,
                                   uvctx_t **out);

/* The first of its signals that arrived for ctx: for a context from
 * uvctx_with_signal the one that finished it; for the *out context of
 * uvctx_with_shutdown the first signal, whether it began the shutdown or
 * came after a uvctx_shutdown() call. 0 when none has (yet), or ctx is NULL
 * or of another kind. Any thread. */
UVCTX_EXTERN int uvctx_signal_received(const uvctx_t *ctx);

/* ---------------------------------------------------------------------------
 * Any of several parents (Node's AbortSignal.any)
 * ------------------------------------------------------------------------- */

/* A cancellable context that is done as soon as any of the count parents is,
 * with that parent's err and cause (if several already are, the first in
 * order). uvctx_value() looks in parents in order, each parent's whole
 * ancestry before the next parent's (depth first); uvctx_deadline() is the
 * earliest of all. Parents may share ancestors, at any depth (an "any" of a
 * connection and a per-call context, call after call): lookups visit each
 * distinct ancestor once, so they cost time linear in the number of
 * ancestors, never in the number of paths to them. They allocate nothing;
 * they recurse once per nested any-context on the way up, and up to eight
 * lookups through any-contexts run at once in a process (a ninth waits for
 * one of them to end). It holds a reference to each parent and sits in each
 * parent's list of children until it is released, so a short-lived "any" of
 * long-lived parents leaves nothing behind. Parents may live on other loops.
 * Errors: UV_EINVAL if loop, parents, an entry of parents or out is NULL, or
 * count is 0; UV_ENOMEM. Loop thread. */
UVCTX_EXTERN int uvctx_with_any(uv_loop_t *loop, uvctx_t *const *parents,
                                size_t count, uvctx_t **out);

/* ---------------------------------------------------------------------------
 * Idle timeouts and the loop
 * ------------------------------------------------------------------------- */

/* Moves the deadline of ctx, a context made by uvctx_with_deadline,
 * uvctx_with_timeout or uvctx_with_grpc_timeout, to uvctx_now() + timeout_ms,
 * later or earlier: an idle timeout that is reset on every read. O(log n) in
 * the loop's timers, no allocation. A timeout of 0 finishes ctx at once
 * (UV_ETIMEDOUT).
 * Returns UV_EALREADY once ctx is done. Errors: UV_EINVAL if ctx is NULL or
 * has no timer of its own. Loop thread. */
UVCTX_EXTERN int uvctx_reset_timeout(uvctx_t *ctx, uint64_t timeout_ms);

/* By default a context never keeps its loop alive. With on != 0, the
 * deadline timer of ctx (a deadline or shutdown context) keeps the loop alive
 * until it fires or ctx is done; on == 0 restores the default. On a context
 * that is done it succeeds and holds nothing, as its timer is stopped.
 * Errors: UV_EINVAL if ctx is NULL or has no timer of its own. Loop thread. */
UVCTX_EXTERN int uvctx_keepalive(uvctx_t *ctx, int on);

/* ---------------------------------------------------------------------------
 * Across the wire: gRPC deadlines
 *
 * gRPC sends a call's deadline in the grpc-timeout request header as the time
 * left, not as a time of day, so that the clocks of caller and callee never
 * need to agree: relative on the wire, absolute locally. A client writes what
 * is left of its context's deadline with uvctx_grpc_timeout(); a server makes
 * each call's context from the header it got with uvctx_with_grpc_timeout().
 * Rounding always keeps the callee inside the caller's budget: the client
 * rounds down, so a downstream call ends no later than its caller's; the
 * server rounds up to the millisecond, so it never gives up before its
 * client.
 *
 * A value (gRPC over HTTP/2: TimeoutValue TimeoutUnit) is 1 to 8 ASCII digits
 * and one unit: H hours, M minutes, S seconds, m milliseconds, u microseconds,
 * n nanoseconds. uvctx_with_grpc_timeout() takes, byte for byte:
 *
 *   value                           result
 *   ------------------------------  -----------------------------------------
 *   "81m" "4999972u" "99978499n"    a deadline context, deadline uvctx_now()
 *   "30S" "5M" "1H" "99999999H"     plus the value (to the nanosecond from
 *                                   uv_hrtime()), a sub-millisecond
 *                                   remainder rounded up
 *   "007S" (leading zeros)          as "7S"
 *   "0n" "0H" "00000000m"           born done with UV_ETIMEDOUT: no time left
 *   "" "m" "250"                    UV_EINVAL: no digit, or no unit
 *   "123456789m"                    UV_EINVAL: more than 8 digits
 *   "+5m" "-5m" " 5m" "5 m" "5m "   UV_EINVAL: a sign or a space
 *   "5s" "5x" "5.0S" "5ms" "5mm"    UV_EINVAL: not a unit, bytes after it
 *   "5\0m" (a NUL inside)           UV_EINVAL
 *
 * Zero. The spec asks for a positive value, but grpc-go's decoder takes "0n"
 * as a zero timeout, whose context is past its deadline at once. A peer that
 * sends 0 means "no time left", and the answer it expects is
 * DEADLINE_EXCEEDED, which a context born done with UV_ETIMEDOUT leads a
 * server to give; rejecting the header would turn it into a protocol error.
 * uvctx_grpc_timeout() never writes 0: with nothing left it says
 * UV_ETIMEDOUT.
 * ------------------------------------------------------------------------- */

/* Bytes that always suffice for uvctx_grpc_timeout(): 8 digits, the unit and
 * the terminating NUL. */
#define UVCTX_GRPC_TIMEOUT_LEN 10

/* Writes to buf the time left until ctx's deadline (uvctx_deadline(): the
 * earliest of ctx and its ancestors) as a grpc-timeout value, NUL-terminated,
 * and returns its length without the NUL: the header to send with a call made
 * under ctx. The value never promises more time than is left: what is left is
 * computed to the nanosecond, uv_hrtime() against the deadline, and rounded
 * down, in the finest unit whose count fits 8 digits, so that little is lost:
 * "99978499n" below 0.1 s, "4999972u" below 100 s, "81m" below about 27.7
 * hours, then S, M and H; more than 99999999 hours left gives "99999999H".
 *
 * Returns 0 when ctx has no deadline: send no header. Returns UV_ETIMEDOUT
 * when ctx is done or its deadline has passed (uvctx_now() has reached it,
 * even if ctx's loop has not yet finished ctx): do not make the call.
 * Returns UV_ENOBUFS when len is too short for the value
 * (UVCTX_GRPC_TIMEOUT_LEN always suffices). Unless it returns a length, buf
 * holds "" when len > 0. Errors: UV_EINVAL if ctx or buf is NULL.
 * Any thread. */
UVCTX_EXTERN int uvctx_grpc_timeout(const uvctx_t *ctx, char *buf, size_t len);

/* A deadline context for an incoming call, from the grpc-timeout value it
 * came with: the len bytes at value, as an HTTP/2 library hands a header
 * value over (not NUL-terminated). It is a context of uvctx_with_deadline()
 * with the deadline uvctx_now() + value, rounded up to the millisecond
 * (ceil((uv_hrtime() + value in ns) / 1e6)); uvctx_reset_timeout(),
 * uvctx_keepalive() and uvctx_cancel() work on it as on any deadline context.
 * Every unit is accepted (see the section's table); 0 gives a context born done
 * with UV_ETIMEDOUT. The largest values are kept exactly: "99999999H", about
 * 11,400 years, is counted in milliseconds and overflows nothing. Its
 * deadline as uvctx_deadline() reports it is never later than parent's: a
 * server's own budget (its request's, its shutdown's) still bounds the call.
 * Errors: UV_EINVAL if loop, parent, value or out is NULL or value is not a
 * grpc-timeout value (nothing is made); UV_ENOMEM. Loop thread. */
UVCTX_EXTERN int uvctx_with_grpc_timeout(uv_loop_t *loop, uvctx_t *parent,
                                         const char *value, size_t len,
                                         uvctx_t **out);

/* ---------------------------------------------------------------------------
 * Handles and requests
 *
 * These register a watch that, instead of calling you, acts on a libuv
 * handle or request when ctx is done. The watch is yours (see uvctx_watch_t):
 * keep it and the handle or request alive until then, or uvctx_unwatch() it
 * first, typically in the request's callback or before closing the handle
 * yourself. Watching a context that can never be done succeeds and does
 * nothing.
 * ------------------------------------------------------------------------- */

/* Calls uv_close(handle, close_cb) when ctx is done, unless the handle is
 * closing by then. close_cb may be NULL. Errors: UV_EINVAL if ctx, handle or
 * w is NULL, the handle is already closing or belongs to another loop than
 * ctx's; UV_EBUSY if w is pending. Loop thread. */
UVCTX_EXTERN int uvctx_close_on_done(uvctx_t *ctx, uv_handle_t *handle,
                                     uvctx_watch_t *w, uv_close_cb close_cb);

/* Calls uv_cancel(req) when ctx is done. Only the kinds libuv can cancel are
 * accepted: UV_FS, UV_WORK, UV_GETADDRINFO, UV_GETNAMEINFO and UV_RANDOM; the
 * request's callback then sees libuv's cancel status if it was still queued
 * (UV_ECANCELED; UV_EAI_CANCELED for getaddrinfo and getnameinfo), and a
 * request already running on the thread pool finishes as usual.
 * Errors: UV_EINVAL if ctx, req or w is NULL or req is of another kind;
 * UV_EBUSY if w is pending. Loop thread. */
UVCTX_EXTERN int uvctx_cancel_on_done(uvctx_t *ctx, uv_req_t *req,
                                      uvctx_watch_t *w);

/* ---------------------------------------------------------------------------
 * Draining and graceful shutdown
 * ------------------------------------------------------------------------- */

/* Registers cb to run once ctx is done AND every context below it (children,
 * grandchildren, of every kind) has been released: the tree has drained. A
 * server calls it on its root after cancelling it, and closes its listener in
 * cb. Same delivery rules as uvctx_watch(); cb's err is uvctx_err(ctx).
 * uvctx_unwatch() cancels it. Errors: UV_EINVAL if ctx, w or cb is NULL or
 * ctx is not cancellable; UV_EBUSY if w is pending; UV_ENOMEM the first time
 * a context is drained or given a done signal (uvctx_done_async), which
 * takes a small block that few contexts need. Loop thread. */
UVCTX_EXTERN int uvctx_drain(uvctx_t *ctx, uvctx_watch_t *w,
                             uvctx_watch_cb cb);

/* Two-phase shutdown for a server, as one pair of contexts:
 *
 *   *stopping  is done (UV_ECANCELED) when shutdown begins: stop accepting
 *              new work, let what runs finish. It is a child of *out.
 *   *out       is done when the grace period grace_ms after the beginning
 *              has passed (UV_ETIMEDOUT: cancel everything still running),
 *              or shutdown is asked for a second time (UV_ECANCELED), or its
 *              parent is done. It is also done (UV_ECANCELED) as soon as,
 *              during the grace period, nothing is left below it but
 *              *stopping (and what hangs under *stopping): everything
 *              finished in time, the shutdown is over.
 *              Make connections and requests its children.
 *
 * Shutdown begins with uvctx_shutdown(), or when one of the count signals in
 * signums arrives (count may be 0); a second signal, or a second
 * uvctx_shutdown(), ends the grace period at once. The cause given to the
 * call that began it is the cause of *stopping, and of *out when the grace
 * period ends it or it ends early. A typical server closes its listener when
 * *stopping is done, releases *stopping, and exits from a uvctx_drain() of
 * *out. Release both contexts.
 * Errors: as uvctx_with_signal (signums may be NULL when count is 0), and
 * UV_EINVAL if stopping is NULL. Loop thread. */
UVCTX_EXTERN int uvctx_with_shutdown(uv_loop_t *loop, uvctx_t *parent,
                                     const int *signums, size_t count,
                                     uint64_t grace_ms, uvctx_t **stopping,
                                     uvctx_t **out);

/* Begins the shutdown of ctx (the *out of uvctx_with_shutdown) with cause
 * (negative, or 0 for none): the first call finishes the stopping context and
 * starts the grace period, the second finishes ctx. Returns 0 when this call
 * moved the shutdown on a phase, UV_EALREADY when ctx is done.
 * Errors: UV_EINVAL if ctx is NULL or not a shutdown context, or cause > 0.
 * Any thread. */
UVCTX_EXTERN int uvctx_shutdown(uvctx_t *ctx, int cause);

/* ---------------------------------------------------------------------------
 * Debugging
 * ------------------------------------------------------------------------- */

/* Prints ctx and the cancellable contexts below it, one per line, indented
 * by depth: kind, loop, err and cause, deadline and time left, pending
 * watches, references, and how many other (value, without-cancel) children it
 * has. An any-context below ctx through several of its parents is printed
 * in full under the first one met, and as "with_any <address> (shown above)"
 * under the others. Errors: UV_EINVAL if ctx or out is NULL. Loop thread. */
UVCTX_EXTERN int uvctx_dump(const uvctx_t *ctx, FILE *out);

/* Prints every cancellable context still alive on loop, one per line as
 * uvctx_dump() does, and returns how many there are (0: nothing would keep
 * uv_loop_close() from succeeding on uvctx's account): a leak report.
 * Errors: UV_EINVAL if loop or out is NULL. Loop thread. */
UVCTX_EXTERN int uvctx_dump_loop(const uv_loop_t *loop, FILE *out);

/* ---------------------------------------------------------------------------
 * Cross-loop trees
 *
 * A cancellable child may live on another loop (run by another thread) than
 * its parent: make it on its own loop's thread, with its parent from the
 * other loop, while that loop runs. Cancelling the parent finishes the child
 * at once and hands the rest (its own descendants, its callbacks) to the
 * child's loop, which carries it out on its thread. Either may be released
 * first, from its own thread. A loop with contexts or pending watches alive
 * cannot close: uv_loop_close() returns UV_EBUSY until they are released and
 * the loop has run once more.
 * ------------------------------------------------------------------------- */


/* ---------------------------------------------------------------------------
 * Observability: ids, provenance, statistics and a trace hook
 *
 * Every context has an id, small and unique in the process, for logs. A done
 * context knows how it was finished: which context's event did it (the
 * origin), what the event was (the reason), how it travelled to this context
 * (via), when, and for a cancel call, where in the source the call was made.
 * Each loop counts its contexts and events (uvctx_loop_stats), and an
 * observer may be told of each event as it happens (uvctx_observe).
 *
 * Cost: ids are handed to each thread in blocks, so a constructor takes one
 * without a locked instruction; the provenance of a context finished from
 * above costs nothing but a few bits of its state word, and the origin
 * records its event in two fields. The counters are plain increments on the
 * loop thread, and with no observer set each event costs one branch.
 * ------------------------------------------------------------------------- */

/* The id of ctx: never 0, never reused in the process, the same for the
 * context's whole life. uvctx_background() is 1 and uvctx_todo() is 2; others
 * are given out in blocks per thread, so they grow with time on one thread,
 * but the ids of contexts made on different threads interleave. Every kind of
 * context has one. 0 for NULL. Any thread. */
UVCTX_EXTERN uint64_t uvctx_id(const uvctx_t *ctx);

/* The event that finished the origin: the context at which it happened. */
typedef enum {
  /* A cancel call: uvctx_cancel() or uvctx_cancel_cause() on the origin
   * (site says where, when the call went through the macros below). */
  UVCTX_DONE_CANCEL = 1,
  /* The origin's own deadline came: uvctx_with_deadline/_timeout/
   * _grpc_timeout (born past it, or fired), or uvctx_reset_timeout(ctx, 0). */
  UVCTX_DONE_DEADLINE,
  /* One of the origin's signals arrived: uvctx_with_signal(). */
  UVCTX_DONE_SIGNAL,
  /* Shutdown, phase 1: the origin is the *stopping context of
   * uvctx_with_shutdown(), finished as the shutdown began (uvctx_shutdown()
   * or a signal). */
  UVCTX_DONE_SHUTDOWN_BEGAN,
  /* Shutdown, phase 2, the origin being the shutdown context (*out): its
   * grace period ended, ... */
  UVCTX_DONE_SHUTDOWN_GRACE,
  /* ... shutdown was asked for a second time (call or signal), ... */
  UVCTX_DONE_SHUTDOWN_AGAIN,
  /* ... or nothing was left below it but the stopping context: everything
   * finished within the grace period. */
  UVCTX_DONE_SHUTDOWN_IDLE,
  UVCTX_DONE_REASON_COUNT /* 1 + the last reason: the size of stats' array */
} uvctx_done_reason_t;

/* How the event reached the context asked about. */
typedef enum {
  UVCTX_VIA_SELF,   /* it happened to this very context: it is the origin */
  /* From its parent on the same loop: a cancel coming down the tree, or a
   * parent already done when the context was made (born done). */
  UVCTX_VIA_PARENT,
  /* From one of the parents of this any-context (uvctx_with_any). */
  UVCTX_VIA_ANY,
  /* From its parent on another loop (a cross-loop tree): handed over to this
   * context's loop. */
  UVCTX_VIA_LOOP,
  UVCTX_VIA_COUNT
} uvctx_via_t;

typedef struct {
  int err;                    /* uvctx_err() */
  int cause;                  /* uvctx_cause() */
  uvctx_done_reason_t reason; /* the event at the origin */
  uvctx_via_t via;            /* how it came to this context */
  uint64_t origin_id;         /* uvctx_id() of the origin */
  /* When the event happened, on the uvctx clock (ms). A deadline's is the
   * time its timer acted (at or after the deadline); a cancel call's on
   * another thread than the origin's loop's is read from the clock; an
   * event on the loop thread takes the loop's time (uv_now(), the same
   * clock, cached at the start of the loop iteration: earlier by as much as
   * the iteration has run), as reading the clock on every cancel would be a
   * large part of a short-lived context's cost. */
  uint64_t when_ms;
  /* For UVCTX_DONE_CANCEL through the macros below: "file.c:123", the
   * source file and line of the call, as a string literal of the caller's
   * program (valid while that is loaded); NULL for every other event, and
   * for a call through the function itself, (uvctx_cancel)(ctx). */
  const char *site;
} uvctx_done_info_t;

/* Stores in *info how ctx was finished. A value context reports the one of
 * its nearest cancellable ancestor (the context whose state it shares), and
 * via is that ancestor's. Returns UV_EAGAIN while ctx is not done, and
 * forever for a context that can never be done (a root, a without-cancel
 * context). The information is fixed once ctx is done: every thread reads
 * the same. Errors: UV_EINVAL if ctx or info is NULL. Any thread. */
UVCTX_EXTERN int uvctx_done_info(const uvctx_t *ctx, uvctx_done_info_t *info);

/* uvctx_cancel() and uvctx_cancel_cause() record the call site of a cancel:
 * they are macros over uvctx_cancel_at(), which takes it as a third
 * argument. The functions uvctx_cancel and uvctx_cancel_cause exist as well
 * (call them as (uvctx_cancel)(ctx), or through a pointer): they record no
 * site. Define UVCTX_NO_SITE before including this header to keep the
 * macros out. uvctx_cancel_at(ctx, cause, site) is uvctx_cancel_cause(ctx,
 * cause) with site (a string that outlives ctx, or NULL) recorded as the
 * call site if this call is the one that finishes ctx. Any thread. */
UVCTX_EXTERN int uvctx_cancel_at(uvctx_t *ctx, int cause, const char *site);

#define UVCTX__STRINGIFY_(x) #x
#define UVCTX__STRINGIFY(x) UVCTX__STRINGIFY_(x)
/* "file.c:123" of where the macro is expanded. */
#define UVCTX_SITE __FILE__ ":" UVCTX__STRINGIFY(__LINE__)
#ifndef UVCTX_NO_SITE
#define uvctx_cancel(ctx) uvctx_cancel_at((ctx), 0, UVCTX_SITE)
#define uvctx_cancel_cause(ctx, cause)                                       \
  uvctx_cancel_at((ctx), (cause), UVCTX_SITE)
#endif

/* The kinds of cancellable context, the ones a loop counts. */
typedef enum {
  UVCTX_KIND_CANCEL,   /* uvctx_with_cancel (and a shutdown's *stopping) */
  UVCTX_KIND_DEADLINE, /* uvctx_with_deadline/_timeout/_grpc_timeout */
  UVCTX_KIND_SIGNAL,   /* uvctx_with_signal */
  UVCTX_KIND_ANY,      /* uvctx_with_any */
  UVCTX_KIND_SHUTDOWN, /* uvctx_with_shutdown's *out */
  UVCTX_KIND_COUNT
} uvctx_kind_t;

/* The delivery lag histograms' buckets: a lag falls in the first bucket
 * whose upper bound (in microseconds, inclusive) is at least the lag; the
 * last bucket has no bound (+Inf). Counts are per bucket, not cumulative. */
#define UVCTX_LAG_BUCKETS 8
#define UVCTX_LAG_BOUNDS_US {100, 500, 1000, 5000, 10000, 50000, 100000}

/* What a loop has counted, since uvctx's state for it was made (with its
 * first cancellable context, or uvctx_observe): that state goes when the last
 * context of the loop is freed and no observer is set, and the counts start
 * from 0 with the next one. Only cancellable contexts are counted (value and
 * without-cancel contexts belong to no loop).
 *
 * Extensible: set size to sizeof(uvctx_stats_t) before the call. A later
 * version only appends fields; it fills no more than size bytes and sets
 * size to how many it filled, so a program built against an older header
 * keeps working, and one built against a newer header reads size to know
 * which fields a older library left alone (they are zeroed). */
typedef struct {
  size_t size;
  uint64_t live[UVCTX_KIND_COUNT]; /* by uvctx_kind_t: made, not released */
  uint64_t created;                /* made, in all */
  uint64_t released;               /* torn down (last reference dropped) */
  /* Became done, in all, born done included; then by the reason of their
   * origin's event (indexed by uvctx_done_reason_t, [0] unused) and by how
   * it came to them (uvctx_via_t: VIA_SELF counts the origins). */
  uint64_t finished;
  uint64_t finished_by_reason[UVCTX_DONE_REASON_COUNT];
  uint64_t finished_via[UVCTX_VIA_COUNT];
  uint64_t watches_run; /* callbacks of watches, drains, close/cancel_on_done */
  /* Hand-offs from other threads (and loops) the loop has taken from its
   * mailbox: cancels to deliver, releases, drains, shutdowns; and the
   * cancels among them. */
  uint64_t handoffs;
  uint64_t handoff_cancels;
  /* Delivery lag: from a deadline (the time it was due) to when the loop
   * acted on it, queueing its callbacks, which run later in the same loop
   * iteration ... */
  uint64_t deadline_lag[UVCTX_LAG_BUCKETS];
  uint64_t deadline_lag_sum_ns;
  /* ... and from a cancel call on another thread (which reads the clock) to
   * when the loop acted on it. */
  uint64_t cancel_lag[UVCTX_LAG_BUCKETS];
  uint64_t cancel_lag_sum_ns;
} uvctx_stats_t;

/* Copies loop's counters into *st (see uvctx_stats_t for size). The live
 * counts are taken by a walk of the loop's trees of contexts, under its
 * tree lock, which costs time linear in their number (the constructors and
 * releases count nothing for them).
 * Errors: UV_EINVAL if loop or st is NULL or st->size is less than
 * offsetof(uvctx_stats_t, live) + sizeof(st->live), the fields every version
 * has; UV_ENOENT if uvctx has no state for loop (no context made on it yet,
 * or all freed). Loop thread. */
UVCTX_EXTERN int uvctx_loop_stats(const uv_loop_t *loop, uvctx_stats_t *st);

typedef enum {
  /* A cancellable context was made (after it is complete). */
  UVCTX_EVENT_MADE,
  /* It became done: uvctx_done_info() tells how. Born done contexts have it
   * right after their MADE. */
  UVCTX_EVENT_DONE,
  /* Its last reference is gone: it is being torn down (still readable). */
  UVCTX_EVENT_RELEASED,
  /* A watch's callback is about to run (a watch, a drain, close_on_done or
   * cancel_on_done); ctx is the context it watched, which may be a value
   * context. */
  UVCTX_EVENT_WATCH
} uvctx_event_t;

/* An observer: called on the loop thread, once per event, in the order
 * events happen; ctx is valid during the call only. A DONE event comes while
 * uvctx holds the loop's tree lock (it is a step of a cancel), so the
 * observer may only read: uvctx_id, uvctx_err, uvctx_cause, uvctx_done_info,
 * uvctx_deadline, uvctx_value, uvctx_loop, uvctx_signal_received and
 * uvctx_format, on ctx and its ancestors. Making, cancelling, watching,
 * retaining or releasing contexts, uvctx_dump and uvctx_observe from an
 * observer is undefined (a deadlock, at best). */
typedef void (*uvctx_observe_cb)(uvctx_event_t event, const uvctx_t *ctx,
                                 void *data);

/* Sets loop's observer to cb with data (replacing the one before), or
 * removes it when cb is NULL. While one is set, uvctx keeps its state for
 * the loop (three unref'd handles, which keep uv_loop_close() from
 * succeeding) even when no context is left: remove it before closing the
 * loop. Errors: UV_EINVAL if loop is NULL; UV_ENOMEM. Loop thread.
 *
 * The same events, at the same points, are also USDT probes for perf,
 * bpftrace or SystemTap, observer or not, when the library was built with
 * sys/sdt.h (configure --enable-usdt; the Debian package is): provider uvctx,
 * made(id, uvctx_kind_t, loop), done(id, err, uvctx_done_reason_t,
 * uvctx_via_t), released(id) and watch(id, uvctx_watch_t *). */
UVCTX_EXTERN int uvctx_observe(uv_loop_t *loop, uvctx_observe_cb cb,
                               void *data);

#ifdef __cplusplus
}
#endif
#endif /* UVCTX_H */
