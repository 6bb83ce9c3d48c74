/* Helpers shared by the test files; see helpers.h. */
#include "helpers.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

uv_loop_t loop;

void loop_setup(void) { ck_assert_int_eq(uv_loop_init(&loop), 0); }

Suite *suite_of(const char *name, const case_row_t *rows, size_t n) {
  Suite *s = suite_create(name);
  for (const case_row_t *r = rows; r < rows + n; r++) {
    TCase *tc = tcase_create(r->name);
    tcase_set_timeout(tc, r->timeout_s);
    if (r->setup != NULL || r->teardown != NULL)
      tcase_add_checked_fixture(tc, r->setup, r->teardown);
    for (const TTest *const *t = r->tests; t != NULL && *t != NULL; t++)
      tcase_add_test(tc, *t);
    for (const loop_row_t *l = r->loops; l != NULL && l->test != NULL; l++)
      tcase_add_loop_test(tc, l->test, l->start, l->end);
    suite_add_tcase(s, tc);
  }
  return s;
}

void release_n(uvctx_t *const *ctxs, size_t n) {
  for (size_t i = 0; i < n; i++)
    uvctx_release(ctxs[i]);
}

uvctx_t *mk_cancel(uv_loop_t *loop, uvctx_t *parent) {
  uvctx_t *c = NULL;
  ck_assert_int_eq(uvctx_with_cancel(loop, parent, &c), 0);
  ck_assert_ptr_nonnull(c);
  return c;
}

uvctx_t *mk_deadline(uv_loop_t *loop, uvctx_t *parent, uint64_t dl) {
  uvctx_t *c = NULL;
  ck_assert_int_eq(uvctx_with_deadline(loop, parent, dl, &c), 0);
  ck_assert_ptr_nonnull(c);
  return c;
}

uvctx_t *mk_timeout(uv_loop_t *loop, uvctx_t *parent, uint64_t ms) {
  uvctx_t *c = NULL;
  ck_assert_int_eq(uvctx_with_timeout(loop, parent, ms, &c), 0);
  ck_assert_ptr_nonnull(c);
  return c;
}

uvctx_t *mk_timeout_cause(uv_loop_t *loop, uvctx_t *parent, uint64_t ms,
                          int cause) {
  uvctx_t *c = NULL;
  ck_assert_int_eq(uvctx_with_timeout_cause(loop, parent, ms, cause, &c), 0);
  ck_assert_ptr_nonnull(c);
  return c;
}

uvctx_t *mk_value(uvctx_t *parent, const void *key, void *value) {
  uvctx_t *c = NULL;
  ck_assert_int_eq(uvctx_with_value(parent, key, value, &c), 0);
  ck_assert_ptr_nonnull(c);
  return c;
}

uvctx_t *mk_without(uvctx_t *parent) {
  uvctx_t *c = NULL;
  ck_assert_int_eq(uvctx_without_cancel(parent, &c), 0);
  ck_assert_ptr_nonnull(c);
  return c;
}

/* A key of the value contexts that mk_uncancellable() makes. */
static char uncancellable_key;

uvctx_t *mk_uncancellable(int kind, uvctx_t *parent, uvctx_t *made[2]) {
  made[0] = made[1] = NULL;
  switch (kind) {
  case U_NULL: return NULL;
  case U_BACKGROUND: return uvctx_background();
  case U_TODO: return uvctx_todo();
  case U_VALUE_OF_CANCEL:
    return made[0] = mk_value(parent, &uncancellable_key, NULL);
  case U_VALUE_OF_ROOT:
    return made[0] = mk_value(uvctx_background(), &uncancellable_key, NULL);
  case U_WITHOUT: return made[0] = mk_without(parent);
  default:
    made[0] = mk_without(parent);
    return made[1] = mk_value(made[0], &uncancellable_key, NULL);
  }
}

static void run_for_done(uv_timer_t *t) { uv_close((uv_handle_t *)t, NULL); }

void run_for(uv_loop_t *loop, uint64_t ms) {
  uv_timer_t t;
  ck_assert_int_eq(uv_timer_init(loop, &t), 0);
  ck_assert_int_eq(uv_timer_start(&t, run_for_done, ms, 0), 0);
  ck_assert_int_eq(uv_run(loop, UV_RUN_DEFAULT), 0);
  ck_assert(uv_is_closing((uv_handle_t *)&t));
}

static void catcher_cb(uv_signal_t *h, int signum) {
  catcher_t *c = h->data;
  (void)signum;
  c->got++;
}

void catcher_start(catcher_t *c, uv_loop_t *loop, int signum) {
  memset(c, 0, sizeof *c);
  ck_assert_int_eq(uv_signal_init(loop, &c->h), 0);
  c->h.data = c;
  ck_assert_int_eq(uv_signal_start(&c->h, catcher_cb, signum), 0);
  uv_unref((uv_handle_t *)&c->h);
}

void catcher_close(catcher_t *c) { uv_close((uv_handle_t *)&c->h, NULL); }

void send_signal(int signum) {
  ck_assert_int_eq(uv_kill(uv_os_getpid(), signum), 0);
}

static void stop_guard_cb(uv_timer_t *t) {
  stop_guard_t *g = t->data;
  g->fired = 1;
  if (g->refd != NULL)
    uv_unref(g->refd);
  uv_stop(t->loop);
}

void stop_guard_start(uv_loop_t *loop, stop_guard_t *g, uint64_t ms) {
  g->fired = 0;
  g->refd = NULL;
  ck_assert_int_eq(uv_timer_init(loop, &g->timer), 0);
  g->timer.data = g;
  ck_assert_int_eq(uv_timer_start(&g->timer, stop_guard_cb, ms, 0), 0);
  uv_unref((uv_handle_t *)&g->timer);
}

void stop_guard_close(stop_guard_t *g) {
  uv_close((uv_handle_t *)&g->timer, NULL);
}

/* How long past limit_ms poll_until lets the loop run before calling it
 * stuck: only reached when something is broken. */
#define POLL_STUCK_MS 1000

/* The waiting behind poll_until and run_until. A ref'd prepare handle asks
 * pred each time the loop is about to block, that is after every callback
 * the loop ran, so a wait ends as soon as its event has been handled and
 * costs nothing in between (no timer ticking every millisecond). A ref'd
 * timer ends the wait at limit_ms. Neither handle stays: once pred holds or
 * the limit is reached both are closed, and a closing handle makes the loop
 * poll without blocking, so uv_run goes on only while something else keeps
 * the loop alive. */
typedef struct {
  uv_prepare_t prepare;
  uv_timer_t limit;
  int (*pred)(void *);
  void *arg;
  uint64_t limit_ms;
  int closed;
} pred_wait_t;

static void pred_wait_close(pred_wait_t *p) {
  if (p->closed)
    return;
  p->closed = 1;
  uv_close((uv_handle_t *)&p->prepare, NULL);
  uv_close((uv_handle_t *)&p->limit, NULL);
}

static void pred_wait_prepare_cb(uv_prepare_t *h) {
  pred_wait_t *p = h->data;
  if (p->pred(p->arg))
    pred_wait_close(p);
}

static uint64_t ms_until(uint64_t at_ms) {
  uint64_t now = uvctx_now();
  return at_ms > now ? at_ms - now : 0;
}

/* libuv's loop clock may lag uvctx_now() by a millisecond or a few (a cached
 * time, a coarse clock): when the timer comes early, it is armed again for
 * what is left. */
static void pred_wait_limit_cb(uv_timer_t *t) {
  pred_wait_t *p = t->data;
  uint64_t left = ms_until(p->limit_ms);
  if (left > 0 && !p->pred(p->arg))
    ck_assert_int_eq(uv_timer_start(t, pred_wait_limit_cb, left, 0), 0);
  else
    pred_wait_close(p);
}

/* Starts the wait on loop; uv_run then runs it. */
static void pred_wait_start(pred_wait_t *p, uv_loop_t *loop,
                            int (*pred)(void *), void *arg,
                            uint64_t limit_ms) {
  memset(p, 0, sizeof *p);
  p->pred = pred;
  p->arg = arg;
  p->limit_ms = limit_ms;
  ck_assert_int_eq(uv_prepare_init(loop, &p->prepare), 0);
  p->prepare.data = p;
  ck_assert_int_eq(uv_prepare_start(&p->prepare, pred_wait_prepare_cb), 0);
  ck_assert_int_eq(uv_timer_init(loop, &p->limit), 0);
  p->limit.data = p;
  uv_update_time(loop);
  ck_assert_int_eq(
      uv_timer_start(&p->limit, pred_wait_limit_cb, ms_until(limit_ms), 0), 0);
}

typedef struct {
  const int *counter;
  int target;
} counter_pred_t;

static int counter_reached(void *arg) {
  counter_pred_t *c = arg;
  return *c->counter >= c->target;
}

/* How long run_until waits: only reached when something is broken. */
#define RUN_UNTIL_LIMIT_MS 3000

int run_until(uv_loop_t *loop, const int *counter, int target) {
  counter_pred_t c = {counter, target};
  pred_wait_t p;
  pred_wait_start(&p, loop, counter_reached, &c,
                  uvctx_now() + RUN_UNTIL_LIMIT_MS);
  uv_run(loop, UV_RUN_DEFAULT);
  ck_assert(p.closed);
  return counter_reached(&c);
}

int poll_until(uv_loop_t *loop, int (*pred)(void *), void *arg,
               uint64_t limit_ms) {
  stop_guard_t guard;
  pred_wait_t p;
  int r;

  pred_wait_start(&p, loop, pred, arg, limit_ms);
  stop_guard_start(loop, &guard, ms_until(limit_ms) + POLL_STUCK_MS);
  r = uv_run(loop, UV_RUN_DEFAULT);
  ck_assert_msg(!guard.fired, "the loop stayed alive after the wait ended");
  ck_assert_int_eq(r, 0);
  ck_assert(p.closed);
  stop_guard_close(&guard);
  ck_assert_int_eq(uv_run(loop, UV_RUN_DEFAULT), 0);
  return pred(arg);
}

char sentinel_storage;

uint64_t deadline_of(const uvctx_t *ctx) {
  uint64_t dl = 0;
  ck_assert_int_eq(uvctx_deadline(ctx, &dl), 1);
  return dl;
}

void rec_cb(uvctx_watch_t *w, int err) {
  rec_t *r = w->data;
  r->calls++;
  r->err = err;
  if (r->ctx != NULL) {
    r->err_inside = uvctx_err(r->ctx);
    r->cause = uvctx_cause(r->ctx);
  }
  r->now = uvctx_now();
  r->thread = uv_thread_self();
  if (r->j != NULL)
    r->seq = ++r->j->ran;
  if (r->action != NULL)
    r->action(r);
}

void rec_init(rec_t *r, journal_t *j, uvctx_t *ctx) {
  memset(r, 0, sizeof *r);
  r->ctx = ctx;
  r->j = j;
  r->w.data = r;
}

void rec_watch(rec_t *r, journal_t *j, uvctx_t *ctx) {
  rec_init(r, j, ctx);
  ck_assert_int_eq(uvctx_watch(ctx, &r->w, rec_cb), 0);
  ck_assert_int_eq(r->calls, 0); /* never synchronously */
}

void rec_drain(rec_t *r, journal_t *j, uvctx_t *ctx) {
  rec_init(r, j, ctx);
  ck_assert_int_eq(uvctx_drain(ctx, &r->w, rec_cb), 0);
  ck_assert_int_eq(r->calls, 0);
}

int rec_called(void *arg) { return ((rec_t *)arg)->calls > 0; }

int rec_ran_here(const rec_t *r) {
  uv_thread_t self = uv_thread_self();
  return r->calls > 0 && uv_thread_equal(&self, &r->thread);
}

atomic_long counting_allocs;
atomic_long counting_outstanding;
long counting_refused;
long counting_allowed = -1;
int counting_fail_all;
int counting_one_shot;

void *counting_malloc(size_t size) {
  void *ptr;
  if (counting_fail_all || counting_allowed == 0) {
    counting_refused++;
    if (counting_one_shot && !counting_fail_all)
      counting_allowed = -1;
    return NULL;
  }
  if (counting_allowed > 0)
    counting_allowed--;
  ptr = malloc(size);
  if (ptr != NULL) {
    atomic_fetch_add(&counting_allocs, 1);
    atomic_fetch_add(&counting_outstanding, 1);
  }
  return ptr;
}

void counting_free(void *ptr) {
  if (ptr != NULL)
    atomic_fetch_sub(&counting_outstanding, 1);
  free(ptr);
}

void counting_install(void) {
  atomic_store(&counting_allocs, 0);
  atomic_store(&counting_outstanding, 0);
  counting_refused = 0;
  counting_allowed = -1;
  counting_fail_all = 0;
  counting_one_shot = 0;
  ck_assert_int_eq(uvctx_replace_allocator(counting_malloc, counting_free), 0);
}

void counting_uninstall(void) {
  ck_assert_int_eq(uvctx_replace_allocator(malloc, free), 0);
}

void tally_init(tally_t *t) {
  ck_assert_int_eq(uv_mutex_init(&t->lock), 0);
  ck_assert_int_eq(uv_cond_init(&t->cond), 0);
  t->count = 0;
}

void tally_destroy(tally_t *t) {
  uv_cond_destroy(&t->cond);
  uv_mutex_destroy(&t->lock);
}

void tally_add(tally_t *t, int n) {
  uv_mutex_lock(&t->lock);
  t->count += n;
  uv_cond_broadcast(&t->cond);
  uv_mutex_unlock(&t->lock);
}

int tally_get(tally_t *t) {
  uv_mutex_lock(&t->lock);
  int n = t->count;
  uv_mutex_unlock(&t->lock);
  return n;
}

int tally_wait(tally_t *t, int target, uint64_t ms) {
  uint64_t end = uv_hrtime() + ms * 1000000;
  uv_mutex_lock(&t->lock);
  while (t->count < target) {
    uint64_t now = uv_hrtime();
    if (now >= end)
      break;
    (void)uv_cond_timedwait(&t->cond, &t->lock, end - now); /* or woken */
  }
  int reached = t->count >= target;
  uv_mutex_unlock(&t->lock);
  return reached;
}

void stall_count_init(stall_count_t *s, const char *test, const char *what) {
  memset(s, 0, sizeof *s);
  s->test = test;
  s->what = what;
}

int stall_check(stall_count_t *s, uint64_t late_ms) {
  s->made++;
  if (late_ms == 0)
    return 1;
  s->skipped++;
  if (late_ms > s->worst_ms)
    s->worst_ms = late_ms;
  return 0;
}

void stall_report(const stall_count_t *s) {
  if (s->skipped == 0)
    return;
  fprintf(stderr,
          "%s: skipped %d of %d %s checks: the loop stalled (up to %llu ms "
          "late)\n",
          s->test, s->skipped, s->made, s->what,
          (unsigned long long)s->worst_ms);
}

/* --- random schedules, dump text --- */

uint32_t xorshift32(uint32_t *state) {
  uint32_t x = *state;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return *state = x;
}

uint32_t rng_below(uint32_t *state, uint32_t n) {
  return xorshift32(state) % n;
}

int dump_split(dump_text_t *t, const uvctx_t *ctx) {
  memset(t, 0, sizeof *t);
  FILE *f = open_memstream(&t->buf, &t->len);
  ck_assert_ptr_nonnull(f);
  int rc = uvctx_dump(ctx, f);
  ck_assert_int_eq(fclose(f), 0);
  for (char *s = t->buf, *nl; *s != '\0'; s = nl + 1) {
    nl = strchr(s, '\n');
    ck_assert_msg(nl != NULL, "line without a newline: \"%s\"", s);
    ck_assert_int_lt(t->n, DUMP_MAX_LINES);
    *nl = '\0';
    t->line[t->n++] = s;
  }
  return rc;
}

int dump_line_of(const dump_text_t *t, const uvctx_t *ctx) {
  char addr[32];
  snprintf(addr, sizeof addr, " %p ", (const void *)ctx);
  for (int i = 0; i < t->n; i++)
    if (strstr(t->line[i], addr) != NULL)
      return i;
  return -1;
}

/* --- table tests, loop threads, bad signal numbers --- */

/* Not POSIX; glibc's value (signals 1..64). */
#ifndef NSIG
#define NSIG 65
#endif

const int bad_signums[NBAD_SIGNUMS] = {0,    -1,   -SIGUSR1, NSIG,   NSIG + 1,
                                       65, 1000, SIGKILL,  SIGSTOP};

const size_t bad_list_counts[NBAD_LISTS] = {1, 2, 3, 3};

void bad_signum_lists(int bad, int lists[NBAD_LISTS][3]) {
  const int made[NBAD_LISTS][3] = {{bad},
                                   {SIGUSR1, bad},
                                   {SIGUSR1, SIGUSR2, bad},
                                   {SIGUSR1, bad, SIGUSR2}};
  memcpy(lists, made, sizeof made);
}

static void loop_thread_async_cb(uv_async_t *a) {
  loop_thread_t *t = a->data;
  ck_assert_int_eq(uv_thread_join(&t->tid), 0);
  t->joined = 1;
  uv_close((uv_handle_t *)a, NULL);
}

static void loop_thread_main(void *arg) {
  loop_thread_t *t = arg;
  t->fn(t->arg);
  uv_async_send(&t->async);
}

void loop_thread_start(loop_thread_t *t, uv_loop_t *loop, void (*fn)(void *),
                       void *arg) {
  memset(t, 0, sizeof *t);
  t->fn = fn;
  t->arg = arg;
  ck_assert_int_eq(uv_async_init(loop, &t->async, loop_thread_async_cb), 0);
  t->async.data = t;
  ck_assert_int_eq(uv_thread_create(&t->tid, loop_thread_main, t), 0);
}

static void remote_cancel_main(void *arg) {
  remote_cancel_t *r = arg;
  snprintf(r->site, sizeof r->site, "%s:%d", __FILE__, __LINE__ + 2);
  r->before = uvctx_now();
  r->rc = uvctx_cancel(r->ctx);
  r->after = uvctx_now();
}

void remote_cancel(uv_loop_t *loop, remote_cancel_t *r, rec_t *rec) {
  loop_thread_t t;

  loop_thread_start(&t, loop, remote_cancel_main, r);
  ck_assert(run_until(loop, &t.joined, 1));
  ck_assert(run_until(loop, &rec->calls, 1));
}

/* --- formats, counts --- */

const char *format_ok(const uvctx_t *ctx, char *buf, size_t len) {
  int n = uvctx_format(ctx, buf, len);
  ck_assert_int_ge(n, 0);
  ck_assert_uint_lt((size_t)n, len);
  ck_assert_uint_eq(strlen(buf), (size_t)n);
  return buf;
}

int has_prefix(const char *s, const char *prefix) {
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

int poll_count(uv_loop_t *loop, const int *count, int want) {
  counter_pred_t c = {count, want};
  return poll_until(loop, counter_reached, &c, uvctx_now() + EVENTUALLY_MS);
}

/* --- any-contexts, waiting for a time --- */

uvctx_t *mk_any_n(uv_loop_t *loop, uvctx_t **parents, size_t n) {
  uvctx_t *c = NULL;
  ck_assert_int_eq(uvctx_with_any(loop, parents, n, &c), 0);
  ck_assert_ptr_nonnull(c);
  return c;
}

static int never(void *arg) {
  (void)arg;
  return 0;
}

void run_until_time(uv_loop_t *loop, uint64_t until_ms) {
  poll_until(loop, never, NULL, until_ms);
  ck_assert_uint_ge(uvctx_now(), until_ms);
}

/* --- contexts of every kind, live counts --- */

int live_contexts(const uv_loop_t *loop) {
  FILE *devnull = fopen("/dev/null", "w");
  ck_assert_ptr_nonnull(devnull);
  int n = uvctx_dump_loop(loop, devnull);
  fclose(devnull);
  ck_assert_int_ge(n, 0);
  return n;
}

const char mk_kind_key;

int mk_kind(int kind, uv_loop_t *loop, uvctx_t *parent, int bad,
            uvctx_t **out, uvctx_t **out2) {
  static const int signums[] = {SIGUSR1, SIGUSR2, SIGHUP};
  int cause = bad == 1 ? 1 : bad == 2 ? INT_MAX : UV_EPIPE;
  uint64_t dl = uvctx_now() + 60000;
  uvctx_t *parents[3] = {uvctx_todo(), parent, parent};
  switch (kind) {
  case MK_CANCEL: return uvctx_with_cancel(loop, parent, out);
  case MK_DEADLINE: return uvctx_with_deadline(loop, parent, dl, out);
  case MK_DEADLINE_PAST: return uvctx_with_deadline(loop, parent, 0, out);
  case MK_DEADLINE_CAUSE:
    return uvctx_with_deadline_cause(loop, parent, dl, cause, out);
  case MK_DEADLINE_CAUSE_PAST:
    return uvctx_with_deadline_cause(loop, parent, 0, cause, out);
  case MK_TIMEOUT: return uvctx_with_timeout(loop, parent, 60000, out);
  case MK_TIMEOUT_ZERO: return uvctx_with_timeout(loop, parent, 0, out);
  case MK_TIMEOUT_CAUSE:
    return uvctx_with_timeout_cause(loop, parent, 60000, cause, out);
  case MK_TIMEOUT_CAUSE_ZERO:
    return uvctx_with_timeout_cause(loop, parent, 0, cause, out);
  case MK_GRPC_TIMEOUT:
    return uvctx_with_grpc_timeout(loop, parent, "4999972u", 8, out);
  case MK_GRPC_TIMEOUT_ZERO:
    return uvctx_with_grpc_timeout(loop, parent, "0n", 2, out);
  case MK_SIGNAL: return uvctx_with_signal(loop, parent, signums, 3, out);
  case MK_ANY: return uvctx_with_any(loop, parents, 3, out);
  case MK_SHUTDOWN:
    return uvctx_with_shutdown(loop, parent, signums, 1, 5000, out2, out);
  case MK_VALUE:
    return uvctx_with_value(parent, bad ? NULL : &mk_kind_key,
                            (void *)&mk_kind_key, out);
  default: return uvctx_without_cancel(parent, out);
  }
}

int mk_kind_bad_values(int kind) {
  switch (kind) {
  case MK_DEADLINE_CAUSE:
  case MK_DEADLINE_CAUSE_PAST:
  case MK_TIMEOUT_CAUSE:
  case MK_TIMEOUT_CAUSE_ZERO: return 2;
  case MK_VALUE: return 1;
  default: return 0;
  }
}
