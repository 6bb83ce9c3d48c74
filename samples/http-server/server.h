/* What the two halves of the HTTP server sample share: server.c (main: the
 * options, the listening sockets, the worker threads and the shutdown, on
 * the main loop) and worker.c (one loop per thread: accept, parse, answer).
 *
 *   main loop   root, stopping: uvctx_with_shutdown (owns the signals)
 *   +- closing  main's, done once every listener is closed
 *   worker wN   its own loop on its own thread, its own listener (one
 *               SO_REUSEPORT socket per worker, all on one address):
 *     root      a cross-loop child of main's root: its connections' parent
 *     stopping  a cross-loop child of main's stopping: closes the listener
 *     closing   a cross-loop child of main's closing: from then on its
 *               connections close after their response
 *
 * Main's contexts never touch a worker's loop: cancelling main's stopping or
 * root reaches each worker's children through uvctx's cross-loop trees, and
 * each worker's loop carries the cancel on to its connections on its own
 * thread. */
#ifndef SAMPLES_HTTP_SERVER_H
#define SAMPLES_HTTP_SERVER_H

#include <stdint.h>

#include "uvctx.h"

typedef struct {
  const char *addr;
  int port;
  uint64_t idle_ms;    /* a connection with nothing to do closes after this */
  uint64_t request_ms; /* a request not answered by then gets a 504 */
  uint64_t grace_ms;   /* how long in-flight requests get at shutdown */
  unsigned threads;    /* worker loops (-t) */
  int quiet;           /* -q: no log line per event */
  struct {
    struct sockaddr_storage addr;
    char authority[80];
  } backend[2]; /* the gRPC backends of /grpc and /hedge (-b) */
  int nbackends;
} options_t;

extern options_t opt;

/* The response codes the server sends, counted one by one (metrics.c);
 * http_code_slot() gives a code's index in stats_t.by_code. */
#define HTTP_CODES {200, 400, 404, 502, 503, 504}
#define HTTP_NCODES 6
int http_code_slot(int code);

/* A loop's counters. Only the worker's own thread writes them; main reads
 * them after joining the thread, and GET /metrics reads the copy each
 * worker publishes (metrics.c). */
typedef struct {
  unsigned long conns, requests, responses, during_shutdown, timeouts,
      cancelled;
  unsigned long by_code[HTTP_NCODES]; /* responses, by http_code_slot() */
} stats_t;

/* What a worker publishes for GET /metrics (metrics.c): a copy of its loop's
 * uvctx statistics and of its own counters, taken on its own thread. */
typedef struct {
  uvctx_stats_t ctx; /* uvctx_loop_stats(); zero before the first copy */
  stats_t http;
  unsigned conns_open, in_flight;
} snapshot_t;

typedef struct worker_s {
  unsigned index; /* 1..opt.threads */
  char name[12];  /* "w1": says which loop in every log line */
  uv_thread_t thread;
  uv_loop_t loop;
  uv_os_sock_t fd; /* bound and listening, opened by main; the worker's */
  uv_tcp_t listener;
  /* Main's three contexts, a reference to each handed to the worker by main
   * (so that they outlive the worker's start); dropped once the worker's
   * own children hold them. */
  uvctx_t *main_root, *main_stopping, *main_closing;
  uvctx_t *root;     /* child of main's root: done in phase 2 */
  uvctx_t *stopping; /* child of main's stopping: done in phase 1 */
  uvctx_t *closing;  /* child of main's closing: every listener is closed */
  uvctx_watch_t listener_watch, stopping_watch, closing_watch, root_watch,
      drain_watch;
  int root_watching; /* root_watch is pending */
  int is_stopping;   /* phase 1: this loop's listener is closed */
  int is_closing;    /* every loop's listener is closed */
  uint64_t stop_ms;
  unsigned conns_open, in_flight;
  stats_t stats;
  /* GET /metrics: every publish_ms the worker copies its counters into
   * published, under published_lock, where any worker reads them. */
  uv_timer_t publish_timer;
  uv_mutex_t published_lock;
  snapshot_t published;
  int status; /* 0, or what stopped it: an error, or uv_loop_close()'s */
  char read_buf[65536]; /* a read is parsed before the next one */
} worker_t;

/* One line on stderr, "[  ms] server[w1]: ..." (w NULL: main), unless -q. */
void say(const worker_t *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Runs a worker: its loop, from the listener to uv_loop_close(). The thread
 * function of uv_thread_create. */
void worker_run(void *arg);

/* A worker's news for main, from the worker's thread. */
enum {
  NEWS_LISTENER_CLOSED, /* it accepts no more connections */
  NEWS_FINISHED, /* shutdown: its last connection closed, it left its root */
  NEWS_EXITED    /* its loop is closed; it touches nothing of main's now */
};
void server_tell(int news);

/* GET /metrics (metrics.c). Every worker publishes a snapshot of its
 * counters into its own slot on a short timer; a scrape, on whichever worker
 * got it, takes a fresh one of its own loop and adds the others' last ones
 * (at most METRICS_PUBLISH_MS old), each copied under its worker's lock. */
#define METRICS_PUBLISH_MS 100
/* Main, before any worker runs: every worker's lock. */
void metrics_init(worker_t *workers, unsigned n);
/* Main, after every worker is joined. */
void metrics_destroy(void);
/* The worker's thread, its loop initialised: starts publishing (an unref'd
 * timer, so it does not keep the loop alive). */
void metrics_start(worker_t *w);
/* The worker's thread, once its loop has stopped: closes the timer (the
 * loop has to run once more for its close callback). */
void metrics_stop(worker_t *w);
/* The worker's thread: the exposition of every worker's counters summed, in
 * Prometheus' text format 0.0.4, as a string to free(); NULL if out of
 * memory. */
char *metrics_render(worker_t *w);

#endif /* SAMPLES_HTTP_SERVER_H */
