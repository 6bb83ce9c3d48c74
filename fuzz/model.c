/* The reference model: see model.h. Every rule below quotes, or follows
 * from, a sentence of include/uvctx.h; where the manual leaves something
 * open, the comment says what the model assumes. */
#include "model.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

m_model M;

void m_fail(const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "\nuvctx differs from the model: ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n");
  abort();
}

static int is_root(int n) {
  return M.nodes[n].kind == M_BACKGROUND || M.nodes[n].kind == M_TODO;
}

void m_init(void) {
  /* The header and the two roots only: new_node() clears each node it hands
   * out, and clearing all M_MAX_NODES nodes for every input was a measurable
   * share of the fuzzer's time. */
  memset(M.nodes, 0, 2 * sizeof M.nodes[0]);
  memset(M.watches, 0, sizeof M.watches);
  M.event = 0;
  M.deadline_epoch = 1; /* a node's 0 is "not known" */
  M.reg_seq = 0;
  /* "the callbacks of an ancestor run before those of its descendants, and
   * those of one context in the order they were registered": that is all
   * the manual promises about order. uvctx delivers through one queue per
   * loop, in the order callbacks became due; the model checks that too
   * (strict_fifo), as users of a single-threaded loop come to rely on it. */
  M.strict_fifo = 1;
  M.nodes[0].kind = M_BACKGROUND;
  M.nodes[1].kind = M_TODO;
  M.nodes[0].alive = M.nodes[1].alive = 1;
  M.nnodes = 2;
}

int m_is_cancellable(int n) {
  int k = M.nodes[n].kind;
  return k == M_CANCEL || k == M_DEADLINE || k == M_ANY || k == M_SHUTDOWN;
}

/* "a value context gives its nearest cancellable ancestor's"; roots and
 * without-cancel contexts (and value contexts below them) have none. */
int m_owner(int n) {
  for (;;) {
    if (m_is_cancellable(n))
      return n;
    if (M.nodes[n].kind != M_VALUE)
      return -1;
    n = M.nodes[n].parents[0];
  }
}

int m_can_be_done(int n) { return m_owner(n) >= 0; }

/* "the earliest deadline of ctx and its ancestors"; a without-cancel context
 * "has no deadline" (and hides its parent's); an any-context's "is the
 * earliest of all" its parents'. Computed from the parents' answers, each
 * kept until a deadline changes anywhere: through stacked diamonds (an
 * ancestor reached by 2^levels paths) every node is worked out once. */
int m_deadline(int n, uint64_t *out) {
  m_node *x = &M.nodes[n];

  if (x->deadline_epoch != M.deadline_epoch) {
    int found = 0;
    uint64_t best = 0, t;

    if ((x->kind == M_DEADLINE || x->kind == M_SHUTDOWN) && x->has_deadline) {
      best = x->deadline;
      found = 1;
    }
    if (x->kind == M_ANY) {
      for (int i = 0; i < x->nparents; i++)
        if (m_deadline(x->parents[i], &t) && (!found || t < best)) {
          best = t;
          found = 1;
        }
    } else if (x->kind != M_WITHOUT && !is_root(n) &&
               m_deadline(x->parents[0], &t) && (!found || t < best)) {
      best = t;
      found = 1;
    }
    x->deadline_found = found;
    x->deadline_earliest = best;
    x->deadline_epoch = M.deadline_epoch;
  }
  if (x->deadline_found)
    *out = x->deadline_earliest;
  return x->deadline_found;
}

/* "nearest definition up the tree"; an any-context "looks in parents in
 * order". Depth first, parents in order, the first match: its own, else the
 * first of its parents' answers that has one. A node's answer never changes
 * (the graph above it is fixed when it is made), so it is kept once known:
 * every node is worked out once per key however many paths reach it. */
int m_value(int n, const void *key, void **out) {
  m_node *x = &M.nodes[n];
  void *value = NULL;
  int found = 0;

  for (int k = 0; k < x->nknown; k++)
    if (x->known[k].key == key) {
      if (x->known[k].found)
        *out = x->known[k].value;
      return x->known[k].found;
    }
  if (x->kind == M_VALUE && x->key == key) {
    value = x->value;
    found = 1;
  } else if (x->kind == M_ANY) {
    for (int i = 0; i < x->nparents && !found; i++)
      found = m_value(x->parents[i], key, &value);
  } else if (!is_root(n)) {
    found = m_value(x->parents[0], key, &value);
  }
  if (x->nknown == M_MAX_KEYS)
    m_fail("model: more than %d keys looked up", M_MAX_KEYS);
  x->known[x->nknown].key = key;
  x->known[x->nknown].value = value;
  x->known[x->nknown].found = found;
  x->nknown++;
  if (found)
    *out = value;
  return found;
}

/* ---------------------------------------------------------------------------
 * Done, due, and references
 * ------------------------------------------------------------------------- */

static void make_due(m_wrec *w, int event, int ancestry) {
  w->state = MW_DUE;
  w->due_event = event;
  w->ancestry = ancestry;
}

/* uvctx_drain(): "cb runs once ctx is done AND every context below it ...
 * has been released". */
static void drain_check(int n, int event) {
  m_node *x = &M.nodes[n];
  if (x->err == 0 || x->kids != 0)
    return;
  for (int w = 0; w < M_MAX_WATCHES; w++)
    if (M.watches[w].state == MW_DRAINING && M.watches[w].node == n)
      make_due(&M.watches[w], event, 0);
}

/* n is done with err and (reported) cause, by event; so is everything below
 * it that is not done yet, except below a without-cancel context ("not
 * cancelled when parent is"): "Cancelling a context cancels all its
 * descendants, with the same cause." */
static void finish(int n, int err, int cause, int event, int is_root_of) {
  m_node *x = &M.nodes[n];

  x->err = err;
  x->cause = cause;
  x->event = event;
  x->root_of_event = is_root_of;
  for (int w = 0; w < M_MAX_WATCHES; w++)
    if (M.watches[w].state == MW_PENDING && M.watches[w].node == n)
      make_due(&M.watches[w], event, 1);
  for (int c = n + 1; c < M.nnodes; c++) {
    m_node *y = &M.nodes[c];
    if (!y->alive || y->kind == M_WITHOUT || y->err != 0)
      continue;
    for (int i = 0; i < y->nparents; i++)
      if (y->parents[i] == n) {
        finish(c, err, cause, event, 0);
        break;
      }
  }
  drain_check(n, event);
}

static void unref(int n);

/* A shutdown context "is also done (UV_ECANCELED) as soon as, during the
 * grace period, nothing is left below it but *stopping (and what hangs under
 * *stopping)", with "the cause given to the call that began it". */
static void shutdown_check_idle(int s) {
  m_node *x = &M.nodes[s];
  int stopping_alive = x->stopping >= 0 && M.nodes[x->stopping].alive;

  if (x->phase != 1 || x->err != 0 || x->kids > stopping_alive)
    return;
  x->phase = 2;
  finish(s, UV_ECANCELED,
         x->timer_cause != 0 ? x->timer_cause : UV_ECANCELED, ++M.event, 1);
}

/* A child of p is gone ("every context below it has been released"). */
static void leave(int p) {
  if (is_root(p))
    return;
  M.nodes[p].kids--;
  if (M.nodes[p].kind == M_SHUTDOWN)
    shutdown_check_idle(p);
  if (M.nodes[p].kids == 0)
    drain_check(p, ++M.event);
}

/* "When the last reference is released the context leaves its parent":
 * uvctx leaves the other parents of an any-context first, then the first. */
static void destroy(int n) {
  m_node *x = &M.nodes[n];
  x->alive = 0;
  for (int i = 1; i < x->nparents; i++) {
    leave(x->parents[i]);
    unref(x->parents[i]);
  }
  if (x->nparents > 0) {
    leave(x->parents[0]);
    unref(x->parents[0]);
  }
}

static void ref(int n) {
  if (!is_root(n))
    M.nodes[n].refs++;
}

static void unref(int n) {
  if (is_root(n))
    return;
  if (M.nodes[n].refs <= 0)
    m_fail("model: node %d released more than retained", n);
  if (--M.nodes[n].refs == 0)
    destroy(n);
}

void m_retain(int n) { ref(n); }

void m_release(int n) { unref(n); }

/* ---------------------------------------------------------------------------
 * Constructors
 * ------------------------------------------------------------------------- */

static int new_node(int kind, const int *parents, int count) {
  int n = M.nnodes;
  m_node *x = &M.nodes[n];

  if (n == M_MAX_NODES)
    m_fail("model: too many nodes");
  M.nnodes++;
  memset(x, 0, sizeof *x);
  x->kind = kind;
  x->nparents = count;
  for (int i = 0; i < count; i++) {
    x->parents[i] = parents[i];
    ref(parents[i]); /* "A child holds a reference to its parent." */
    if (!is_root(parents[i]))
      M.nodes[parents[i]].kids++;
  }
  x->alive = 1;
  x->refs = 1; /* the creator's */
  x->stopping = -1;
  /* "A child of a parent that is already done is born done, with the
   * parent's err and cause"; an any-context takes "the first in order". */
  if (kind != M_WITHOUT)
    for (int i = 0; i < count; i++) {
      int o = m_owner(parents[i]);
      if (o >= 0 && M.nodes[o].err != 0) {
        x->err = M.nodes[o].err;
        x->cause = M.nodes[o].cause;
        x->event = M.nodes[o].event;
        break;
      }
    }
  return n;
}

int m_new_cancel(int parent) { return new_node(M_CANCEL, &parent, 1); }

/* "A deadline at or before uvctx_now() gives a context that is born done
 * with UV_ETIMEDOUT"; the _cause variant's cause is its cause. */
int m_new_deadline(int parent, uint64_t deadline, int cause) {
  int n = new_node(M_DEADLINE, &parent, 1);
  m_node *x = &M.nodes[n];

  x->has_deadline = 1;
  x->deadline = deadline;
  x->timer_cause = cause;
  if (x->err == 0 && deadline <= M_NOW) {
    x->err = UV_ETIMEDOUT;
    x->cause = cause != 0 ? cause : UV_ETIMEDOUT;
    x->event = ++M.event;
    x->root_of_event = 1;
  }
  return n;
}

int m_new_value(int parent, const void *key, void *value) {
  int n = new_node(M_VALUE, &parent, 1);
  M.nodes[n].key = key;
  M.nodes[n].value = value;
  return n;
}

int m_new_without(int parent) { return new_node(M_WITHOUT, &parent, 1); }

int m_new_any(const int *parents, int count) {
  return new_node(M_ANY, parents, count);
}

/* "*stopping ... is a child of *out." */
int m_new_shutdown(int parent, uint64_t grace) {
  int s = new_node(M_SHUTDOWN, &parent, 1);
  M.nodes[s].grace = grace;
  M.nodes[s].stopping = new_node(M_CANCEL, &s, 1);
  return s;
}

/* ---------------------------------------------------------------------------
 * Calls
 * ------------------------------------------------------------------------- */

/* "0 if this call cancelled it, UV_EALREADY if it was already done,
 * UV_EINVAL if it is not a cancellable context ... or if cause > 0;
 * arguments are checked first". */
int m_cancel(int n, int cause) {
  if (cause > 0 || !m_is_cancellable(n))
    return UV_EINVAL;
  if (M.nodes[n].err != 0)
    return UV_EALREADY;
  finish(n, UV_ECANCELED, cause != 0 ? cause : UV_ECANCELED, ++M.event, 1);
  return 0;
}

/* uvctx_shutdown(): "the first call finishes the stopping context and
 * starts the grace period, the second finishes ctx. Returns 0 when this call
 * moved the shutdown on a phase, UV_EALREADY when ctx is done." The grace
 * period is 0 (over at once) or UINT64_MAX (never over). */
int m_shutdown(int n, int cause) {
  m_node *x = &M.nodes[n];

  if (x->kind != M_SHUTDOWN || cause > 0)
    return UV_EINVAL;
  if (x->err != 0)
    return UV_EALREADY;
  if (x->phase == 0) {
    x->phase = 1;
    x->has_deadline = 1;
    x->deadline = x->grace == 0 ? M_NOW : UINT64_MAX;
    M.deadline_epoch++;
    x->timer_cause = cause;
    if (x->stopping >= 0 && M.nodes[x->stopping].alive)
      m_cancel(x->stopping, cause);
    if (x->grace == 0)
      finish(n, UV_ETIMEDOUT, cause != 0 ? cause : UV_ETIMEDOUT, ++M.event, 1);
    shutdown_check_idle(n);
    return 0;
  }
  x->phase = 2;
  return m_cancel(n, cause);
}

/* uvctx_reset_timeout(): "UV_EALREADY once ctx is done; UV_EINVAL on a
 * context with no timer of its own"; "A timeout of 0 finishes ctx at once". */
int m_reset_timeout(int n, int zero) {
  m_node *x = &M.nodes[n];

  if (x->kind != M_DEADLINE)
    return UV_EINVAL;
  if (x->err != 0)
    return UV_EALREADY;
  x->deadline = zero ? M_NOW : UINT64_MAX;
  M.deadline_epoch++;
  if (zero)
    finish(n, UV_ETIMEDOUT,
           x->timer_cause != 0 ? x->timer_cause : UV_ETIMEDOUT, ++M.event, 1);
  return 0;
}

/* uvctx_watch(): "UV_EBUSY if w is still pending"; "A pending watch holds a
 * reference to ctx"; "Watching a context that is already done runs cb on a
 * later loop callback"; "Watching a context that can never be done ...
 * succeeds; cb never runs, and the watch holds its reference until it is
 * unwatched". */
int m_watch(int w, int n) {
  m_wrec *mw = &M.watches[w];

  if (mw->state != MW_IDLE)
    return UV_EBUSY;
  mw->node = n;
  mw->is_drain = 0;
  mw->reg_seq = ++M.reg_seq;
  mw->holds_ref = 1;
  ref(n);
  if (!m_can_be_done(n)) {
    mw->state = MW_NEVER;
    return 0;
  }
  if (M.nodes[n].err != 0)
    make_due(mw, ++M.event, 0);
  else
    mw->state = MW_PENDING;
  return 0;
}

/* uvctx_drain(): "UV_EINVAL if ... ctx is not cancellable; UV_EBUSY if w
 * is pending"; same delivery rules as uvctx_watch(). */
int m_drain(int w, int n) {
  m_wrec *mw = &M.watches[w];

  if (!m_is_cancellable(n))
    return UV_EINVAL;
  if (mw->state != MW_IDLE)
    return UV_EBUSY;
  mw->node = n;
  mw->is_drain = 1;
  mw->reg_seq = ++M.reg_seq;
  mw->holds_ref = 1;
  ref(n);
  mw->state = MW_DRAINING;
  drain_check(n, ++M.event);
  return 0;
}

/* uvctx_unwatch(): "0 if its callback had not started and now never will,
 * UV_EALREADY if it has run, is running or the watch was already
 * unwatched". */
int m_unwatch(int w) {
  m_wrec *mw = &M.watches[w];

  switch (mw->state) {
  case MW_IDLE:
    return UV_EALREADY;
  default:
    mw->state = MW_IDLE;
    if (mw->holds_ref)
      unref(mw->node);
    return 0;
  }
}

/* ---------------------------------------------------------------------------
 * Delivery
 * ------------------------------------------------------------------------- */

static long due_at_start[M_MAX_WATCHES]; /* reg_seq of what was due */
static int finished_node = -1;           /* to let go of after a callback */

static int cleared(int p, int event);

/* A callback of node n due by event may run once every ancestor finished
 * by the same event has had its callbacks run: "the callbacks of an
 * ancestor run before those of its descendants" -- for an any-context, of
 * each of its parents. */
static int ok_to_run(int n, int event) {
  const m_node *x = &M.nodes[n];
  int reached = 0;

  if (x->event == event && x->root_of_event)
    return 1;
  for (int i = 0; i < x->nparents; i++) {
    const m_node *p = &M.nodes[x->parents[i]];
    if (p->err != 0 && p->event == event) {
      if (!cleared(x->parents[i], event))
        return 0;
      reached = 1;
    }
  }
  return reached;
}

/* Answers of cleared() kept for one callback's check (new_walk() first):
 * through stacked diamonds an ancestor is asked about once per path. A check
 * takes a new generation number instead of clearing the marks. */
static unsigned walk_gen, walked[M_MAX_NODES];
static signed char cleared_memo[M_MAX_NODES];

static void new_walk(void) {
  if (++walk_gen == 0) {
    memset(walked, 0, sizeof walked);
    walk_gen = 1;
  }
}

/* Every callback of p due by event has run, and so have those of its
 * ancestors. */
static int cleared(int p, int event) {
  if (walked[p] == walk_gen)
    return cleared_memo[p];
  walked[p] = walk_gen;
  cleared_memo[p] = 0;
  for (int w = 0; w < M_MAX_WATCHES; w++) {
    const m_wrec *a = &M.watches[w];
    if (a->state == MW_DUE && !a->is_drain && a->ancestry && a->node == p &&
        a->due_event == event)
      return 0;
  }
  cleared_memo[p] = (signed char)ok_to_run(p, event);
  return cleared_memo[p];
}

void m_run_begin(void) {
  m_callback_end();
  for (int w = 0; w < M_MAX_WATCHES; w++)
    due_at_start[w] = M.watches[w].state == MW_DUE ? M.watches[w].reg_seq : 0;
}

void m_callback(int w, int err) {
  m_wrec *mw = &M.watches[w];
  const m_node *x;

  m_callback_end();
  if (mw->state != MW_DUE)
    m_fail("watch %d ran, but it is %s", w,
           mw->state == MW_PENDING    ? "waiting for a context not done"
           : mw->state == MW_DRAINING ? "a drain not due"
           : mw->state == MW_NEVER    ? "on a context never done"
                                      : "finished (unwatched or ran)");
  x = &M.nodes[mw->node];
  if (err == 0 || err != x->err)
    m_fail("watch %d of node %d ran with err %d, the node's is %d", w,
           mw->node, err, x->err);
  for (int v = 0; v < M_MAX_WATCHES; v++) {
    const m_wrec *a = &M.watches[v];
    if (v == w || a->state != MW_DUE)
      continue;
    if (M.strict_fifo && a->due_event < mw->due_event)
      m_fail("watch %d (due at event %d) ran before watch %d (due at event "
             "%d)",
             w, mw->due_event, v, a->due_event);
    if (a->due_event == mw->due_event && a->node == mw->node &&
        !a->is_drain && !mw->is_drain && a->reg_seq < mw->reg_seq)
      m_fail("watches %d and %d of node %d ran out of registration order", w,
             v, mw->node);
  }
  new_walk();
  if (mw->ancestry && !mw->is_drain && !ok_to_run(mw->node, mw->due_event))
    m_fail("watch %d of node %d ran before a watch of an ancestor finished "
           "by the same cancel (event %d)",
           w, mw->node, mw->due_event);
  /* "Finished before the call": it may be watched again from inside. The
   * reference goes once the callback has returned. */
  mw->state = MW_IDLE;
  finished_node = mw->node;
}

void m_callback_end(void) {
  if (finished_node >= 0) {
    int n = finished_node;
    finished_node = -1;
    unref(n);
  }
}

/* UV_RUN_NOWAIT: what was due when it began has run. UV_RUN_DEFAULT:
 * "uv_run never returns with a due callback undelivered". */
void m_run_end(int nowait) {
  m_callback_end();
  for (int w = 0; w < M_MAX_WATCHES; w++) {
    const m_wrec *a = &M.watches[w];
    if (a->state != MW_DUE)
      continue;
    if (!nowait)
      m_fail("uv_run returned with watch %d of node %d still due", w, a->node);
    if (due_at_start[w] == a->reg_seq)
      m_fail("watch %d of node %d was due and did not run in UV_RUN_NOWAIT",
             w, a->node);
  }
}

/* ---------------------------------------------------------------------------
 * Format
 * ------------------------------------------------------------------------- */

static int segment(int n, char *buf, size_t len) {
  const m_node *x = &M.nodes[n];
  switch (x->kind) {
  case M_BACKGROUND:
    return snprintf(buf, len, "background");
  case M_TODO:
    return snprintf(buf, len, "todo");
  case M_CANCEL:
    return snprintf(buf, len, ".with_cancel");
  case M_DEADLINE:
    return snprintf(buf, len, ".with_deadline(*)");
  case M_VALUE:
    return snprintf(buf, len, ".with_value(%p, %p)", x->key, x->value);
  case M_WITHOUT:
    return snprintf(buf, len, ".without_cancel");
  case M_ANY:
    return snprintf(buf, len, ".with_any(%d)", x->nparents);
  default:
    return snprintf(buf, len, ".with_shutdown(%" PRIu64 "ms)", x->grace);
  }
}

/* Root first, each context's first parent before it. */
void m_format_template(int n, char *buf, size_t len) {
  int chain[M_MAX_NODES];
  int depth = 0;
  size_t used = 0;

  for (;;) {
    chain[depth++] = n;
    if (is_root(n))
      break;
    n = M.nodes[n].parents[0];
  }
  buf[0] = '\0';
  while (depth > 0 && used < len) {
    int k = segment(chain[--depth], buf + used, len - used);
    used += (size_t)k;
  }
}

int m_format_match(const char *t, const char *s) {
  for (; *t != '\0'; t++) {
    if (*t == '*' && t[1] == '\0') /* a last "*" stands for the rest */
      return 1;
    if (*t == '*') {
      while (*s != '\0' && *s != ')')
        s++;
      continue;
    }
    if (*s++ != *t)
      return 0;
  }
  return *s == '\0';
}
