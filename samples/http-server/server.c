/* An HTTP/1.1 server on libuv whose timeouts and shutdown are uvctx contexts,
 * with a loop per core: main (this file) owns the options, the listening
 * sockets, the signals and the two-phase shutdown, on the main loop; each
 * worker (worker.c) runs a loop on its own thread with its own listener, and
 * its contexts are cross-loop children of main's (the tree is in server.h).
 *
 *   root        uvctx_with_shutdown: SIGINT/SIGTERM begin a two-phase shutdown
 *   +- stopping done at the first signal: every worker closes its listener
 *   +- closing  done once every listener is closed (by main, or in phase 2
 *   |           with the rest): connections close after their response
 *   +- (each worker's root, its connections and their requests)
 *
 * Shutdown. The first signal finishes stopping: every worker closes its
 * listener and lets its requests finish; once every listener is closed, main
 * finishes closing, and the workers close each connection after its next
 * response (or a short linger, if it is idle). A worker whose last
 * connection has closed lets go of its root; once every worker has, uvctx
 * ends main's root early: nothing is left to wait for. Otherwise the grace
 * period or a second signal finishes main's root, and the cancel reaches
 * every worker's connections and requests, on their own loops. Main waits
 * until every worker's loop is closed, then closes its own and exits 0.
 *
 * Usage: server [-a ADDR] [-p PORT] [-i IDLE_MS] [-r REQUEST_MS] [-g GRACE_MS]
 *               [-t THREADS] [-q] [-b HOST:PORT [-b HOST:PORT]]
 * (defaults 127.0.0.1, 8080, 5000, 1000, 5000, one worker per core; -p 0
 * picks a free port; -q logs only the first line (where it listens), the
 * last (how it ended) and errors; -b the gRPC backends,
 * numeric addresses). One line per event goes to stderr, saying which loop
 * (server[main], server[w1], ...), with wall-clock times (ms since the epoch)
 * where tests compare them with a backend's. Exits 0 once everything is
 * released and every uv_loop_close() returns 0. */
/* SO_REUSEPORT is not POSIX: glibc declares it with its default features. */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server.h"

options_t opt = {.addr = "127.0.0.1",
                 .port = 8080,
                 .idle_ms = 5000,
                 .request_ms = 1000,
                 .grace_ms = 5000};

static uint64_t start_ms;

static struct {
  uv_loop_t loop;
  uvctx_t *root;     /* done at the end of the grace period: cancel all */
  uvctx_t *stopping; /* done at the first signal: stop accepting */
  uvctx_t *closing;  /* done once no loop listens: close the connections */
  uvctx_watch_t stopping_watch, root_watch, drain_watch;
  uint64_t stop_ms;
  worker_t *workers;
  /* The workers' news (server_tell): counted under lock, and wake sent
   * under it too, so that main closes wake only after the last send. */
  uv_async_t wake;
  uv_mutex_t lock;
  unsigned listeners_closed, finished, exited;
  int said_closed, wake_closed;
} srv;

static void vsay(const worker_t *w, const char *fmt, va_list ap) {
  char line[512];

  vsnprintf(line, sizeof(line), fmt, ap);
  /* One call per line: stdio's lock keeps the threads' lines whole. */
  fprintf(stderr, "[%6llu ms] server[%s]: %s\n",
          (unsigned long long)(uvctx_now() - start_ms),
          w != NULL ? w->name : "main", line);
}

void say(const worker_t *w, const char *fmt, ...) {
  va_list ap;

  if (opt.quiet)
    return;
  va_start(ap, fmt);
  vsay(w, fmt, ap);
  va_end(ap);
}

/* Main's first and last lines, -q or not: where to connect, and how it
 * ended. */
static void say_always(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static void say_always(const char *fmt, ...) {
  va_list ap;

  va_start(ap, fmt);
  vsay(NULL, fmt, ap);
  va_end(ap);
}

/* ---- the workers' news --------------------------------------------------------- */

void server_tell(int news) {
  uv_mutex_lock(&srv.lock);
  if (news == NEWS_LISTENER_CLOSED)
    srv.listeners_closed++;
  else if (news == NEWS_FINISHED)
    srv.finished++;
  else
    srv.exited++;
  uv_async_send(&srv.wake);
  uv_mutex_unlock(&srv.lock);
}

/* Main's loop runs until every worker has exited and main's root is
 * released: wake is what keeps it alive (uvctx's handles never do). */
static void end_if_done(void) {
  unsigned exited;

  uv_mutex_lock(&srv.lock);
  exited = srv.exited;
  uv_mutex_unlock(&srv.lock);
  if (exited == opt.threads && srv.root == NULL && !srv.wake_closed) {
    srv.wake_closed = 1;
    uv_close((uv_handle_t *)&srv.wake, NULL);
  }
}

static void on_wake(uv_async_t *a) {
  unsigned closed;

  (void)a;
  uv_mutex_lock(&srv.lock);
  closed = srv.listeners_closed;
  uv_mutex_unlock(&srv.lock);
  if (closed == opt.threads && !srv.said_closed) {
    srv.said_closed = 1;
    say(NULL, "listener closed on every loop: no new connections");
    uvctx_cancel(srv.closing);
    uvctx_release(srv.closing);
    srv.closing = NULL;
  }
  end_if_done();
}

/* ---- shutdown ------------------------------------------------------------------ */

static void on_stopping(uvctx_watch_t *w, int err) {
  int sig = uvctx_signal_received(srv.root);

  (void)w;
  (void)err;
  srv.stop_ms = uvctx_now();
  say(NULL, "shutdown phase 1 (%s): stop accepting on %u loops; grace period "
            "%llu ms",
      sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "uvctx_shutdown",
      opt.threads, (unsigned long long)opt.grace_ms);
  uvctx_release(srv.stopping); /* the pending watches on it keep it alive */
  srv.stopping = NULL;
}

static void on_drained(uvctx_watch_t *w, int err) {
  (void)w;
  (void)err;
  say(NULL, "drained: every context under the root is released, on every "
            "loop");
  uvctx_release(srv.root);
  srv.root = NULL;
  end_if_done();
}

/* root is done: the grace period is over (UV_ETIMEDOUT), a second signal
 * came, or, during the grace period, every worker let go of its root: every
 * connection finished in time and uvctx ends the shutdown early. */
static void on_root_done(uvctx_watch_t *w, int err) {
  unsigned finished;

  (void)w;
  uv_mutex_lock(&srv.lock);
  finished = srv.finished;
  uv_mutex_unlock(&srv.lock);
  if (finished == opt.threads)
    say(NULL, "shutdown phase 2: every connection finished %llu ms into the "
              "grace period, nothing to cancel",
        (unsigned long long)(uvctx_now() - srv.stop_ms));
  else
    say(NULL, "shutdown phase 2 (%s): cancelling what is left on %u of %u "
              "loops",
        err == UV_ETIMEDOUT ? "grace period over" : "second signal",
        opt.threads - finished, opt.threads);
  uvctx_drain(srv.root, &srv.drain_watch, on_drained);
}

/* ---- the listening sockets ----------------------------------------------------- */

/* A listening socket for one worker. With several workers each has its own,
 * all bound to the same address with SO_REUSEPORT: the kernel spreads new
 * connections over them (by a hash of the client's address and port) and
 * each worker accepts from its own only, so no two loops wake for one
 * connection. libuv 1.44 has no flag for it (UV_TCP_REUSEPORT came in 1.49),
 * so the socket is made here and handed to the worker's loop (uv_tcp_open).
 * It listens before any worker runs: a client that connects as soon as the
 * server says "listening" waits in the backlog, it is not refused.
 * (SO_REUSEPORT lets any process of the same user bind the same port too; a
 * fixed port is then shared with it without an error, as with every server
 * that uses it.) */
static int open_listener(const struct sockaddr *addr, int reuseport,
                         uv_os_sock_t *out) {
  socklen_t len = addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                               : sizeof(struct sockaddr_in);
  int on = 1, rc;
  int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

  if (fd < 0)
    return -errno;
  /* SO_REUSEADDR as uv_tcp_bind sets it: a restarted server binds its port
   * while connections of the last one are in TIME_WAIT. */
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
      (reuseport &&
       setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0) ||
      bind(fd, addr, len) != 0 || listen(fd, 511) != 0) {
    rc = -errno;
    close(fd);
    return rc;
  }
  *out = fd;
  return 0;
}

/* Every worker's socket, on one port: with -p 0 the first one's, which the
 * kernel picks. Returns the port, or an error with nothing left open. */
static int open_listeners(struct sockaddr_storage *addr) {
  socklen_t len = sizeof(*addr);
  int rc;
  unsigned i;

  for (i = 0; i < opt.threads; i++) {
    rc = open_listener((struct sockaddr *)addr, opt.threads > 1,
                       &srv.workers[i].fd);
    if (rc != 0) {
      while (i-- > 0)
        close(srv.workers[i].fd);
      return rc;
    }
    if (i == 0 &&
        getsockname(srv.workers[0].fd, (struct sockaddr *)addr, &len) != 0) {
      rc = -errno;
      close(srv.workers[0].fd);
      return rc;
    }
  }
  return ntohs(((struct sockaddr_in *)addr)->sin_port);
}

/* ---- main ------------------------------------------------------------------- */

static int usage(const char *argv0) {
  fprintf(stderr,
          "usage: %s [-a ADDR] [-p PORT] [-i IDLE_MS] [-r REQUEST_MS] "
          "[-g GRACE_MS]\n"
          "       [-t THREADS] [-q] [-b HOST:PORT [-b HOST:PORT]]\n"
          "  -a  address to listen on (default 127.0.0.1)\n"
          "  -p  port (default 8080; 0 picks a free one)\n"
          "  -i  idle timeout of a connection (default 5000 ms)\n"
          "  -r  deadline of a request (default 1000 ms)\n"
          "  -g  grace period at shutdown (default 5000 ms)\n"
          "  -t  worker loops, one thread each (default: one per core, %u)\n"
          "  -q  quiet: no log line per event, only the first and the last\n"
          "  -b  a gRPC backend of /grpc (the first) and /hedge (both)\n",
          argv0, uv_available_parallelism());
  return 2;
}

/* -b HOST:PORT (IPv6 as [ADDR]:PORT). */
static int add_backend(const char *arg) {
  char host[64];
  const char *colon = strrchr(arg, ':');
  const char *h = arg;
  size_t hlen;
  int port;

  if (colon == NULL)
    return UV_EINVAL;
  hlen = (size_t)(colon - arg);
  if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']')
    h++, hlen -= 2;
  if (hlen >= sizeof(host))
    return UV_EINVAL;
  memcpy(host, h, hlen);
  host[hlen] = '\0';
  port = atoi(colon + 1);
  if (port <= 0 || port > 65535 ||
      (uv_ip4_addr(host, port,
                   (struct sockaddr_in *)&opt.backend[opt.nbackends].addr) !=
           0 &&
       uv_ip6_addr(host, port,
                   (struct sockaddr_in6 *)&opt.backend[opt.nbackends].addr) !=
           0))
    return UV_EINVAL;
  snprintf(opt.backend[opt.nbackends].authority,
           sizeof(opt.backend[0].authority), "%s", arg);
  opt.nbackends++;
  return 0;
}

int main(int argc, char **argv) {
  static const int stop_signals[] = {SIGINT, SIGTERM};
  struct sockaddr_storage addr;
  stats_t total = {0};
  int c, rc, port, clean = 1;
  unsigned i;

  opt.threads = uv_available_parallelism();
  while ((c = getopt(argc, argv, "a:p:i:r:g:t:qb:h")) != -1) {
    switch (c) {
    case 'a': opt.addr = optarg; break;
    case 'p': opt.port = atoi(optarg); break;
    case 'i': opt.idle_ms = strtoull(optarg, NULL, 10); break;
    case 'r': opt.request_ms = strtoull(optarg, NULL, 10); break;
    case 'g': opt.grace_ms = strtoull(optarg, NULL, 10); break;
    case 't': opt.threads = (unsigned)atoi(optarg); break;
    case 'q': opt.quiet = 1; break;
    case 'b':
      if (opt.nbackends == 2 || add_backend(optarg) != 0)
        return usage(argv[0]);
      break;
    default: return usage(argv[0]);
    }
  }
  if (optind != argc || opt.port < 0 || opt.port > 65535 ||
      opt.threads < 1 || opt.threads > 1024)
    return usage(argv[0]);

  signal(SIGPIPE, SIG_IGN);
  start_ms = uvctx_now();
  uv_loop_init(&srv.loop);
  srv.workers = calloc(opt.threads, sizeof(*srv.workers));
  if (srv.workers == NULL || uv_mutex_init(&srv.lock) != 0)
    abort();
  metrics_init(srv.workers, opt.threads);

  /* The root: the first SIGINT/SIGTERM finishes `stopping`, the grace period
   * or a second signal finishes `root` and so, through every worker's own
   * root, every connection and request. */
  rc = uvctx_with_shutdown(&srv.loop, uvctx_background(), stop_signals, 2,
                           opt.grace_ms, &srv.stopping, &srv.root);
  if (rc == 0)
    rc = uvctx_with_cancel(&srv.loop, srv.root, &srv.closing);
  if (rc != 0) {
    fprintf(stderr, "uvctx_with_shutdown: %s\n", uv_strerror(rc));
    return 1;
  }

  if ((rc = uv_ip4_addr(opt.addr, opt.port, (struct sockaddr_in *)&addr)) !=
          0 &&
      (rc = uv_ip6_addr(opt.addr, opt.port, (struct sockaddr_in6 *)&addr)) != 0)
    goto fail;
  if ((port = rc = open_listeners(&addr)) < 0)
    goto fail;
  uv_async_init(&srv.loop, &srv.wake, on_wake);
  say_always("listening on http://%s:%d/ (%u loops, idle timeout %llu ms, "
            "request deadline %llu ms, grace period %llu ms, pid %d)",
      opt.addr, port, opt.threads, (unsigned long long)opt.idle_ms,
      (unsigned long long)opt.request_ms, (unsigned long long)opt.grace_ms,
      (int)getpid());

  uvctx_watch(srv.stopping, &srv.stopping_watch, on_stopping);
  uvctx_watch(srv.root, &srv.root_watch, on_root_done);

  /* Each worker gets a reference to main's two contexts, so that they are
   * there for its children however soon a signal comes. */
  for (i = 0; i < opt.threads; i++) {
    worker_t *w = &srv.workers[i];

    w->index = i + 1;
    snprintf(w->name, sizeof(w->name), "w%u", w->index);
    w->main_root = uvctx_retain(srv.root);
    w->main_stopping = uvctx_retain(srv.stopping);
    w->main_closing = uvctx_retain(srv.closing);
    if ((rc = uv_thread_create(&w->thread, worker_run, w)) != 0) {
      say(NULL, "cannot start %s: %s; shutting down", w->name,
          uv_strerror(rc));
      close(w->fd);
      uvctx_release(w->main_root);
      uvctx_release(w->main_stopping);
      uvctx_release(w->main_closing);
      w->status = rc;
      w->index = 0; /* not started: not joined */
      server_tell(NEWS_LISTENER_CLOSED);
      server_tell(NEWS_EXITED);
      uvctx_shutdown(srv.root, rc);
    }
  }

  uv_run(&srv.loop, UV_RUN_DEFAULT);

  for (i = 0; i < opt.threads; i++) {
    worker_t *w = &srv.workers[i];

    if (w->index != 0)
      uv_thread_join(&w->thread);
    clean = clean && w->status == 0;
    total.conns += w->stats.conns;
    total.requests += w->stats.requests;
    total.responses += w->stats.responses;
    total.during_shutdown += w->stats.during_shutdown;
    total.timeouts += w->stats.timeouts;
    total.cancelled += w->stats.cancelled;
  }
  rc = uv_loop_close(&srv.loop);
  say_always("loop closed: uv_loop_close() = %d, %s; %lu connections, "
            "%lu requests, %lu responses (%lu during shutdown, %lu timed "
            "out), %lu cancelled",
      rc, clean ? "every worker's too" : "a worker failed", total.conns,
      total.requests, total.responses, total.during_shutdown, total.timeouts,
      total.cancelled);
  uv_mutex_destroy(&srv.lock);
  metrics_destroy();
  free(srv.workers);
  return rc == 0 && clean ? 0 : 1;

fail:
  fprintf(stderr, "server: cannot listen on %s:%d: %s\n", opt.addr, opt.port,
          uv_strerror(rc));
  uvctx_release(srv.closing);
  uvctx_release(srv.stopping);
  uvctx_release(srv.root);
  uv_run(&srv.loop, UV_RUN_DEFAULT);
  uv_loop_close(&srv.loop);
  metrics_destroy();
  free(srv.workers);
  return 1;
}
