/* A reference model of uvctx's semantics, for the model-based fuzzer
 * (fuzz_model.c). It is written from the manual (include/uvctx.h), not from
 * the library's sources: plain arrays, no threads, no handles, every rule
 * spelled out where it applies. The fuzzer runs each API call on uvctx and on
 * the model and compares what they say.
 *
 * Nodes are numbered in creation order (0 is background, 1 is todo), so a
 * parent always has a smaller number than its children. A node's references
 * are counted as the manual describes them: the user's handles, one per
 * child link (an any-context holds one per parent it was given), and one per
 * watch or drain that can still run. A node whose count reaches 0 is
 * destroyed: it leaves its parents, which may drain.
 *
 * Time. The fuzzer never waits: deadlines are either already past (0, 1) or
 * out of reach (>= 2^62), and the calls that finish a context "now"
 * (uvctx_with_timeout(…, 0, …), uvctx_reset_timeout(ctx, 0), a shutdown
 * with a grace period of 0) finish it inside the call. So the real clock
 * never decides anything; a deadline set to "now" is recorded as such
 * (M_NOW) and only checked to lie between the start of the input and the
 * moment it is read. */
#ifndef UVCTX_FUZZ_MODEL_H
#define UVCTX_FUZZ_MODEL_H

#include <stddef.h>
#include <stdint.h>

enum {
  M_MAX_NODES = 256,
  M_MAX_WATCHES = 16,
  M_MAX_PARENTS = 4,
  M_MAX_KEYS = 8 /* distinct keys looked up per input */
};

enum m_kind {
  M_BACKGROUND,
  M_TODO,
  M_CANCEL,
  M_DEADLINE,
  M_VALUE,
  M_WITHOUT,
  M_ANY,
  M_SHUTDOWN
};

/* A deadline "now": set by the call itself, value unknown to the model but
 * later than any past deadline and earlier than any out-of-reach one. */
#define M_NOW ((uint64_t)1 << 40)

typedef struct {
  int kind;
  int nparents;
  int parents[M_MAX_PARENTS];
  int err, cause; /* both 0 while not done */
  int event;      /* the event that finished it */
  int root_of_event; /* it is the node that event started from */
  /* Deadline and shutdown contexts. */
  int has_deadline;
  uint64_t deadline; /* M_NOW, or the exact value */
  int timer_cause;
  /* Value contexts. */
  const void *key;
  void *value;
  /* Shutdown contexts: phase 0 running, 1 stopping, 2 stopped. */
  int phase;
  int stopping; /* its stopping child */
  uint64_t grace;
  /* References and liveness. */
  int refs;
  int kids; /* live children links */
  int alive;
  /* What uvctx_value() and uvctx_deadline() give, kept once known (see
   * m_value()): a node's values never change, its deadline only when one of
   * an ancestor's does (M.deadline_epoch). */
  int nknown;
  struct {
    const void *key;
    void *value;
    int found;
  } known[M_MAX_KEYS];
  unsigned deadline_epoch; /* 0: not known */
  int deadline_found;
  uint64_t deadline_earliest;
} m_node;

typedef enum {
  MW_IDLE,     /* never registered, or finished */
  MW_PENDING,  /* waiting for its context */
  MW_NEVER,    /* on a context that can never be done */
  MW_DRAINING, /* a drain waiting for done and no children */
  MW_DUE       /* its callback is due */
} m_wstate;

typedef struct {
  m_wstate state;
  int node;
  int is_drain;
  long reg_seq;   /* registration order */
  int due_event;  /* the event that made it due */
  int ancestry;   /* ancestor-before-descendant applies within due_event */
  int holds_ref;
} m_wrec;

typedef struct {
  m_node nodes[M_MAX_NODES];
  int nnodes;
  m_wrec watches[M_MAX_WATCHES];
  int event;      /* last event number */
  unsigned deadline_epoch; /* moves on when any deadline changes */
  long reg_seq;
  int strict_fifo; /* callbacks run in the order they became due */
} m_model;

extern m_model M;

/* Reports a difference between uvctx and the model, then aborts. */
void m_fail(const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 1, 2), noreturn))
#endif
    ;

void m_init(void);

/* Queries. */
int m_can_be_done(int n);   /* has a cancellable owner */
int m_owner(int n);         /* the cancellable node n reports, or -1 */
int m_is_cancellable(int n);
/* uvctx_deadline(): 1 and the earliest deadline (M_NOW possible), or 0. */
int m_deadline(int n, uint64_t *out);
/* uvctx_value(): 1 and the value of the nearest definition, or 0. */
int m_value(int n, const void *key, void **out);

/* Constructors: the new node, with one handle, born done if it must be.
 * parents[] are node numbers. */
int m_new_cancel(int parent);
int m_new_deadline(int parent, uint64_t deadline, int cause);
int m_new_value(int parent, const void *key, void *value);
int m_new_without(int parent);
int m_new_any(const int *parents, int count);
/* Makes the shutdown node and its stopping child; returns the shutdown
 * node (stopping is nodes[returned].stopping). */
int m_new_shutdown(int parent, uint64_t grace);

/* Calls: return what uvctx must return. */
int m_cancel(int n, int cause);
int m_shutdown(int n, int cause);
int m_reset_timeout(int n, int zero); /* zero: timeout 0, else UINT64_MAX */
void m_retain(int n);
void m_release(int n);
int m_watch(int w, int n);
int m_drain(int w, int n);
int m_unwatch(int w);

/* Delivery. m_run_begin() before uv_run, m_callback() as a callback starts
 * (checks that it may run now, with that err), m_callback_end() after the
 * library has let go of it (the fuzzer calls it when the next callback
 * starts or uv_run returns), m_run_end() after uv_run (checks that nothing
 * due was left behind). */
void m_run_begin(void);
void m_callback(int w, int err);
void m_callback_end(void);
void m_run_end(int nowait);

/* The format template of n: uvctx_format() must match it, '*' standing for
 * any text up to the next ')', and a '*' that ends the template for the
 * rest of the text. */
void m_format_template(int n, char *buf, size_t len);
int m_format_match(const char *tmpl, const char *s);

#endif
