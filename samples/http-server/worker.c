/* One worker of the HTTP server sample: a loop on its own thread with its own
 * listener, serving the connections the kernel gives it (SO_REUSEPORT spreads
 * them over the workers' sockets). Its contexts hang under main's through two
 * cross-loop children (see server.h):
 *
 *   root        (main's, uvctx_with_shutdown)
 *   +- w->root  this loop's, a uvctx_with_cancel child on this loop
 *      +- conn  one per connection, uvctx_with_timeout: the idle timeout,
 *         |     reset on every read; the socket is closed when it is done
 *         +- req one per request, uvctx_with_timeout: the request deadline;
 *               when it passes before the work is done the answer is 504
 *   stopping    (main's) +- w->stopping: closes this loop's listener
 *   +- closing  (main's) +- w->closing: every listener is closed, so the
 *                           connections close after their response
 *
 * Closing a connection, for whatever reason, is cancelling its context (with
 * a cause that says why): uvctx_close_on_done then closes the socket, and the
 * request under it, if any, is cancelled through the tree.
 *
 * Endpoints:  /            200, a short greeting
 *             /slow?ms=N   200 after N ms of simulated work (a uv_timer_t),
 *                          or 504 when the request deadline passes first
 *             /grpc?ms=N   calls /uvctx.Test/Sleep N on the gRPC backend (-b)
 *                          under the request's context (samples/grpc/call.c):
 *                          what is left of the request's budget goes out as
 *                          grpc-timeout, and when the client goes away the
 *                          call is cancelled with RST_STREAM(CANCEL). OK is
 *                          200, DEADLINE_EXCEEDED 504, anything else 502.
 *             /hedge?ms=N  the same call to both backends at once (a hedged
 *                          request), each under its own child context of the
 *                          request's: the first OK answers, the other call is
 *                          cancelled. ms2=M gives the second backend M instead
 *                          (so that a test can make one of them slower).
 *             before=B     (/grpc, /hedge) B ms of simulated work before the
 *                          call, taken from the request's budget
 *             /metrics     every loop's counters, in Prometheus' text format
 *                          (metrics.c) */
#include <http_parser.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "call.h"
#include "server.h"

/* At shutdown an idle keep-alive connection gets this long (or its idle
 * timeout, if shorter) for a request that is already on its way, then it is
 * closed. Closing it at once would reset a client whose request crossed our
 * decision on the wire. */
#define STOP_LINGER_MS 100

static void leave_if_finished(worker_t *w);

typedef struct request_s request_t;

typedef struct {
  uv_tcp_t tcp;
  worker_t *w; /* the loop it lives on */
  unsigned id;
  uvctx_t *ctx;              /* child of w->root; deadline: idle timeout */
  uvctx_watch_t close_watch; /* uvctx_close_on_done(ctx, tcp) */
  uvctx_watch_t stop_watch;  /* on w->closing: time to close */
  int stop_watching;
  http_parser parser;
  char url[2048];
  size_t url_len;
  request_t *req;  /* the request being worked on, if any */
  int busy;        /* from a request's end of headers to its response written */
  int parsing;     /* feed() is parsing: it goes on once a response is out */
  int close_after; /* the client asked for Connection: close */
  char *pending;   /* bytes read while busy (pipelined requests) */
  size_t pending_len;
  const char *reason; /* why we closed it, for the log */
  unsigned nreq;
  int refs; /* the socket, a request, writes in flight */
} conn_t;

enum { ROUTE_SLOW, ROUTE_GRPC, ROUTE_HEDGE };

/* One gRPC call of a request (/grpc makes one, /hedge two). */
typedef struct {
  request_t *req;
  int n;        /* which backend: 0 or 1 */
  uvctx_t *ctx; /* the call's context: the request's, or a child (/hedge) */
  int own_ctx;  /* ctx is the child, ours to release */
  uint64_t ms;  /* the Sleep asked for */
  int status;   /* its gRPC status, once it is over */
  int over;
} leg_t;

struct request_s {
  conn_t *conn;
  unsigned id;
  uvctx_t *ctx;        /* child of conn->ctx; its deadline is the request's */
  uvctx_watch_t watch; /* the deadline passed, or the connection went away */
  int watching;
  uv_timer_t work; /* the simulated work of /slow, or before a gRPC call */
  int has_work;    /* work was initialized (not for GET /, answered at once) */
  uint64_t start_ms, work_ms;
  double start_wall;
  int head;
  int route;
  leg_t legs[2];
  int nlegs;
  int answered; /* a response is on its way, or the request was abandoned */
  int refs;     /* itself until it ends (or its work timer's close), and
                 * each call until its callback */
};

typedef struct {
  uv_write_t req;
  conn_t *conn;
  uv_buf_t buf;
  int said_close; /* the response said "Connection: close" */
} write_t;

/* How long a connection may wait for its next request. */
static uint64_t idle_timeout(const worker_t *w) {
  if (w->is_closing && opt.idle_ms > STOP_LINGER_MS)
    return STOP_LINGER_MS;
  return opt.idle_ms;
}

/* A connection whose context is not done yet: it may still be answered. */
static int conn_alive(const conn_t *conn) {
  return conn->ctx != NULL && uvctx_err(conn->ctx) == 0;
}

/* ---- connections ---------------------------------------------------------- */

static void conn_unref(conn_t *conn) {
  if (--conn->refs == 0) {
    free(conn->pending);
    free(conn);
  }
}

/* Closing a connection is cancelling its context: uvctx_close_on_done closes
 * the socket, and the request under it, if any, is cancelled with it. */
static void close_conn(conn_t *conn, int cause, const char *reason) {
  if (!conn_alive(conn))
    return;
  conn->reason = reason;
  uvctx_cancel_cause(conn->ctx, cause);
}

/* The socket's close callback (given to uvctx_close_on_done). */
static void on_conn_closed(uv_handle_t *handle) {
  conn_t *conn = handle->data;
  const char *why = conn->reason;
  char buf[96];

  if (why == NULL) {
    if (uvctx_err(conn->w->root) != 0)
      why = "cancelled by shutdown phase 2";
    else if (uvctx_err(conn->ctx) == UV_ETIMEDOUT && conn->w->is_closing)
      why = "idle at shutdown";
    else if (uvctx_err(conn->ctx) == UV_ETIMEDOUT) {
      snprintf(buf, sizeof(buf), "idle timeout (%llu ms without a request)",
               (unsigned long long)opt.idle_ms);
      why = buf;
    } else
      why = uv_err_name(uvctx_cause(conn->ctx));
  }
  say(conn->w, "conn %u: closed: %s (%u requests)", conn->id, why, conn->nreq);
  if (conn->stop_watching)
    uvctx_unwatch(&conn->stop_watch);
  uvctx_release(conn->ctx);
  conn->ctx = NULL;
  conn->w->conns_open--;
  leave_if_finished(conn->w);
  conn_unref(conn);
}

/* ---- responses -------------------------------------------------------------- */

static void request_unref(request_t *req) {
  conn_t *conn = req->conn;

  if (--req->refs == 0) {
    free(req);
    conn_unref(conn);
  }
}

static void on_work_closed(uv_handle_t *handle) { request_unref(handle->data); }

/* The request is over (answered or abandoned): its context goes. */
static void end_request(request_t *req) {
  conn_t *conn = req->conn;

  if (req->watching)
    uvctx_unwatch(&req->watch);
  req->watching = 0;
  req->answered = 1;
  uvctx_release(req->ctx);
  req->ctx = NULL;
  conn->req = NULL;
  conn->w->in_flight--;
  if (req->has_work)
    uv_close((uv_handle_t *)&req->work, on_work_closed);
  else
    request_unref(req);
}

static void resume(conn_t *conn);

/* The response is out: the connection closes if it said so, or waits for
 * its next request, which may be in what came in meanwhile. */
static void response_sent(conn_t *conn, int said_close) {
  if (!conn_alive(conn))
    return;
  conn->busy = 0;
  if (said_close) {
    close_conn(conn, UV_EOF, conn->w->is_closing
                                 ? "response sent, server stopping"
                                 : "response sent, Connection: close");
    return;
  }
  /* The idle clock restarts now that the response is out (and is short if
   * shutdown began after the response promised keep-alive). */
  uvctx_reset_timeout(conn->ctx, idle_timeout(conn->w));
  /* feed() parses on by itself when the response went out from its parse. */
  if (!conn->parsing)
    resume(conn);
}

static void on_written(uv_write_t *w, int status) {
  write_t *wr = (write_t *)w;
  conn_t *conn = wr->conn;
  int said_close = wr->said_close;

  free(wr);
  if (status < 0)
    close_conn(conn, status, "write failed");
  else
    response_sent(conn, said_close);
  conn_unref(conn);
}

static const char *status_text(int status) {
  switch (status) {
  case 200: return "OK";
  case 400: return "Bad Request";
  case 404: return "Not Found";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  default: return "Unknown";
  }
}

/* Sends the whole response at once: until then nothing has been sent, so a
 * request whose deadline passes can always still be answered 504.
 *
 * uv_try_write first: a response almost always fits the socket's buffer, and
 * then it needs no write request, no callback on a later turn of the loop
 * and no epoll_ctl (libuv stops watching for POLLOUT when a uv_write queue
 * empties, one system call per response). What the socket does not take
 * goes with uv_write, from a copy. */
static void respond_as(request_t *req, int status, const char *type,
                       const char *body) {
  conn_t *conn = req->conn;
  char small[512];
  size_t body_len = strlen(body), cap = 256 + body_len;
  char *text = cap <= sizeof(small) ? small : malloc(cap);
  int said_close, n, sent;
  uv_buf_t buf;

  if (text == NULL)
    abort();
  /* Keep-alive ends with this response if the client asked so or the server
   * is stopping. */
  said_close = conn->close_after || conn->w->is_closing;
  n = snprintf(text, cap,
               "HTTP/1.1 %d %s\r\n"
               "Server: uvctx-sample\r\n"
               "Content-Type: %s\r\n"
               "Content-Length: %zu\r\n"
               "Connection: %s\r\n"
               "\r\n"
               "%s",
               status, status_text(status), type, body_len,
               said_close ? "close" : "keep-alive", req->head ? "" : body);
  if (!opt.quiet)
    say(conn->w, "conn %u req %u: end %d %s (%llu ms)%s", conn->id, req->id,
        status, status_text(status),
        (unsigned long long)(uvctx_now() - req->start_ms),
        conn->w->is_stopping ? " [during shutdown]" : "");
  conn->w->stats.responses++;
  conn->w->stats.by_code[http_code_slot(status)]++;
  if (conn->w->is_stopping)
    conn->w->stats.during_shutdown++;
  end_request(req);

  buf = uv_buf_init(text, (unsigned int)n);
  sent = uv_try_write((uv_stream_t *)&conn->tcp, &buf, 1);
  if (sent == n) {
    response_sent(conn, said_close);
  } else if (sent < 0 && sent != UV_EAGAIN) {
    close_conn(conn, sent, "write failed");
  } else {
    size_t done = sent > 0 ? (size_t)sent : 0, rest = (size_t)n - done;
    write_t *wr = malloc(sizeof(*wr) + rest);

    if (wr == NULL)
      abort();
    memcpy(wr + 1, text + done, rest);
    wr->buf = uv_buf_init((char *)(wr + 1), (unsigned int)rest);
    wr->conn = conn;
    wr->said_close = said_close;
    conn->refs++;
    if (uv_write(&wr->req, (uv_stream_t *)&conn->tcp, &wr->buf, 1,
                 on_written) != 0) {
      free(wr);
      close_conn(conn, UV_EPIPE, "write failed");
      conn_unref(conn);
    }
  }
  if (text != small)
    free(text);
}

static void respond(request_t *req, int status, const char *body) {
  respond_as(req, status, "text/plain", body);
}

/* ---- requests -------------------------------------------------------------- */

static void start_calls(request_t *req);

/* The work of /slow (or the work before a gRPC call) finished before the
 * request's context was done. */
static void on_work_done(uv_timer_t *t) {
  request_t *req = t->data;
  char body[64];

  if (uvctx_err(req->ctx) != 0)
    return; /* done at the same time: on_request_done answers */
  if (req->route != ROUTE_SLOW) {
    start_calls(req);
    return;
  }
  snprintf(body, sizeof(body), "slept %llu ms\n",
           (unsigned long long)req->work_ms);
  respond(req, 200, body);
}

/* ---- gRPC calls (/grpc, /hedge) ---------------------------------------------- */

static void on_leg_log(const char *line, void *arg) {
  leg_t *leg = arg;

  say(leg->req->conn->w, "conn %u req %u: grpc %s: %s", leg->req->conn->id,
      leg->req->id, opt.backend[leg->n].authority, line);
}

/* A call is over. The first OK answers the request (and cancels the other
 * call of a hedge); a failure answers only once no call is left. */
static void on_leg_done(const grpc_result_t *r, void *arg) {
  leg_t *leg = arg;
  request_t *req = leg->req;
  conn_t *conn = req->conn;
  int i, left = 0, deadline = 0;
  char body[320];

  leg->over = 1;
  leg->status = r->status;
  say(conn->w, "conn %u req %u: grpc %s: %s%s%s%s wall=%.3f", conn->id, req->id,
      opt.backend[leg->n].authority, grpc_status_name(r->status),
      r->local ? " (local)" : "", r->status != GRPC_OK ? ": " : "",
      r->status != GRPC_OK ? r->message : "", grpc_wall_ms());
  for (i = 0; i < req->nlegs; i++) {
    left += !req->legs[i].over;
    deadline |= req->legs[i].over &&
                req->legs[i].status == GRPC_DEADLINE_EXCEEDED;
  }
  if (!req->answered && r->status == GRPC_OK && conn_alive(conn)) {
    for (i = 0; i < req->nlegs; i++) /* the hedge is won: stop the other */
      if (!req->legs[i].over) {
        say(conn->w, "conn %u req %u: cancelling the call to %s wall=%.3f",
            conn->id, req->id, opt.backend[req->legs[i].n].authority,
            grpc_wall_ms());
        uvctx_cancel(req->legs[i].ctx);
      }
    if (req->route == ROUTE_HEDGE)
      snprintf(body, sizeof(body), "%s: %.*s\n", opt.backend[leg->n].authority,
               (int)r->body_len, (const char *)r->body);
    else
      snprintf(body, sizeof(body), "%.*s\n", (int)r->body_len,
               (const char *)r->body);
    respond(req, 200, body);
  } else if (!req->answered && left == 0) {
    if (!conn_alive(conn)) {
      say(conn->w, "conn %u req %u: cancelled (%s), no response", conn->id,
          req->id, uv_err_name(uvctx_cause(req->ctx)));
      conn->w->stats.cancelled++;
      end_request(req);
    } else {
      snprintf(body, sizeof(body), "grpc: %s: %s\n",
               grpc_status_name(r->status), r->message);
      if (deadline)
        conn->w->stats.timeouts++;
      respond(req, deadline ? 504 : 502, body);
    }
  }
  if (leg->own_ctx)
    uvctx_release(leg->ctx);
  leg->ctx = NULL;
  leg->own_ctx = 0;
  request_unref(req);
}

/* The work before the call is done: call the backend(s). */
static void start_calls(request_t *req) {
  conn_t *conn = req->conn;
  char msg[24];
  int i, rc;

  /* From here the calls' contexts carry the request's deadline and its
   * cancel to the backends; their callbacks answer. */
  if (req->watching)
    uvctx_unwatch(&req->watch);
  req->watching = 0;
  for (i = 0; i < req->nlegs; i++) {
    leg_t *leg = &req->legs[i];

    if (req->route == ROUTE_HEDGE)
      leg->own_ctx = (rc = uvctx_with_cancel(&conn->w->loop, req->ctx,
                                             &leg->ctx)) == 0;
    else
      rc = 0, leg->ctx = req->ctx;
    if (rc == 0) {
      snprintf(msg, sizeof(msg), "%llu", (unsigned long long)leg->ms);
      say(conn->w,
          "conn %u req %u: grpc %s: calling /uvctx.Test/Sleep %s, %.1f ms "
          "after the request's start wall=%.3f",
          conn->id, req->id, opt.backend[leg->n].authority, msg,
          grpc_wall_ms() - req->start_wall, grpc_wall_ms());
      rc = grpc_call_start(&conn->w->loop, leg->ctx,
                           (struct sockaddr *)&opt.backend[leg->n].addr,
                           opt.backend[leg->n].authority, "/uvctx.Test/Sleep",
                           msg, strlen(msg), on_leg_done, on_leg_log, leg);
    }
    if (rc != 0) { /* reported like a failed call, from here */
      grpc_result_t r = {.status = GRPC_UNAVAILABLE, .message = uv_strerror(rc)};

      req->refs++;
      on_leg_done(&r, leg);
    } else {
      req->refs++;
    }
  }
}

/* The request's context is done before its work: stop the work. If the
 * connection is still there, it was the request's own deadline: 504. */
static void on_request_done(uvctx_watch_t *w, int err) {
  request_t *req = w->data;
  conn_t *conn = req->conn;

  req->watching = 0;
  if (req->has_work) /* the work is cancelled through the context */
    uv_timer_stop(&req->work);
  if (conn_alive(conn)) {
    say(conn->w,
        "conn %u req %u: deadline of %llu ms passed (%s), work cancelled",
        conn->id, req->id, (unsigned long long)opt.request_ms,
        uv_err_name(err));
    conn->w->stats.timeouts++;
    respond(req, 504, "gateway timeout: the request deadline passed\n");
  } else {
    say(conn->w, "conn %u req %u: cancelled (%s), no response", conn->id,
        req->id, uv_err_name(uvctx_cause(req->ctx)));
    conn->w->stats.cancelled++;
    end_request(req);
  }
}

/* The value of NAME=N in the query q (N ms, at most 10 minutes), or def. */
static uint64_t query_ms(const char *q, const char *name, uint64_t def) {
  size_t n = strlen(name);
  const char *p = q;
  uint64_t v;

  while (p != NULL && *p != '\0') {
    if (strncmp(p, name, n) == 0 && p[n] == '=') {
      v = strtoull(p + n + 1, NULL, 10);
      return v > 600000 ? 600000 : v;
    }
    p = strchr(p, '&');
    if (p != NULL)
      p++;
  }
  return def;
}

/* The simulated work of a request: work_ms on its timer. */
static void start_work(request_t *req) {
  req->has_work = 1;
  req->work.data = req;
  uv_timer_init(&req->conn->w->loop, &req->work);
  uv_timer_start(&req->work, on_work_done, req->work_ms, 0);
}

/* Called with a whole request parsed: makes its context and routes it. */
static void start_request(conn_t *conn) {
  struct http_parser_url u;
  request_t *req = calloc(1, sizeof(*req));
  const char *path = "", *query = "";
  size_t path_len = 0, query_len = 0;
  char q[128] = "";
  int rc;

  if (req == NULL)
    abort();
  conn->busy = 1;
  conn->req = req;
  conn->refs++;
  req->conn = conn;
  req->id = ++conn->nreq;
  req->refs = 1; /* itself, until end_request() */
  req->head = conn->parser.method == HTTP_HEAD;
  req->watch.data = req;
  conn->w->stats.requests++;
  conn->w->in_flight++;
  if (!http_should_keep_alive(&conn->parser))
    conn->close_after = 1;

  /* The request's deadline is a grandchild of the loop's root; while it
   * runs the connection is not idle: its own timer waits for the request's. */
  rc = uvctx_with_timeout(&conn->w->loop, conn->ctx, opt.request_ms, &req->ctx);
  /* For the log lines only: clock reads a quiet server does without. */
  if (!opt.quiet) {
    req->start_ms = uvctx_now();
    req->start_wall = grpc_wall_ms(); /* the budget's start */
    say(conn->w, "conn %u req %u: start %s %.*s (deadline %llu ms) wall=%.3f",
        conn->id, req->id,
        http_method_str((enum http_method)conn->parser.method),
        (int)conn->url_len, conn->url, (unsigned long long)opt.request_ms,
        req->start_wall);
  }
  if (rc != 0) {
    respond(req, 503, "out of memory\n");
    return;
  }
  uvctx_reset_timeout(conn->ctx, opt.request_ms + opt.idle_ms);

  http_parser_url_init(&u);
  if (http_parser_parse_url(conn->url, conn->url_len, 0, &u) == 0) {
    if (u.field_set & (1 << UF_PATH)) {
      path = conn->url + u.field_data[UF_PATH].off;
      path_len = u.field_data[UF_PATH].len;
    }
    if (u.field_set & (1 << UF_QUERY)) {
      query = conn->url + u.field_data[UF_QUERY].off;
      query_len = u.field_data[UF_QUERY].len;
    }
  }

  if (query_len < sizeof(q))
    memcpy(q, query, query_len), q[query_len] = '\0';
  if (path_len == 1 && path[0] == '/') {
    respond(req, 200, "hello from uvctx\n");
  } else if (path_len == 8 && memcmp(path, "/metrics", 8) == 0) {
    char *body = metrics_render(conn->w);

    if (body == NULL)
      respond(req, 503, "out of memory\n");
    else
      respond_as(req, 200, "text/plain; version=0.0.4", body);
    free(body);
  } else if (path_len == 5 && memcmp(path, "/slow", 5) == 0) {
    req->route = ROUTE_SLOW;
    req->work_ms = query_ms(q, "ms", 1000);
    req->watching = uvctx_watch(req->ctx, &req->watch, on_request_done) == 0;
    start_work(req);
  } else if ((path_len == 5 && memcmp(path, "/grpc", 5) == 0) ||
             (path_len == 6 && memcmp(path, "/hedge", 6) == 0)) {
    int hedge = path_len == 6;

    if (opt.nbackends < (hedge ? 2 : 1)) {
      respond(req, 503, hedge ? "no backends: give two -b HOST:PORT\n"
                              : "no backend: give -b HOST:PORT\n");
      return;
    }
    req->route = hedge ? ROUTE_HEDGE : ROUTE_GRPC;
    req->nlegs = hedge ? 2 : 1;
    req->legs[0].ms = query_ms(q, "ms", 1000);
    req->legs[1].ms = query_ms(q, "ms2", req->legs[0].ms);
    req->legs[0].req = req->legs[1].req = req;
    req->legs[1].n = 1;
    /* The work before the call (before=B) runs under the request's deadline
     * like /slow's; then the calls take over (start_calls). */
    req->work_ms = query_ms(q, "before", 0);
    req->watching = uvctx_watch(req->ctx, &req->watch, on_request_done) == 0;
    start_work(req);
  } else {
    respond(req, 404, "not found\n");
  }
}

/* ---- parsing ---------------------------------------------------------------- */

static int on_message_begin(http_parser *p) {
  conn_t *conn = p->data;
  conn->url_len = 0;
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t len) {
  conn_t *conn = p->data;
  if (len > sizeof(conn->url) - conn->url_len)
    return 1; /* too long: a parse error, the connection is closed */
  memcpy(conn->url + conn->url_len, at, len);
  conn->url_len += len;
  return 0;
}

static int on_message_complete(http_parser *p) {
  conn_t *conn = p->data;
  start_request(conn);
  http_parser_pause(p, 1); /* the next request waits for this response */
  return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_message_complete = on_message_complete,
};

static void keep_pending(conn_t *conn, const char *data, size_t len) {
  char *p;

  if (len == 0)
    return;
  if (conn->pending_len + len > 65536) {
    close_conn(conn, UV_ENOBUFS, "too much pipelined input");
    return;
  }
  p = realloc(conn->pending, conn->pending_len + len);
  if (p == NULL)
    abort();
  memcpy(p + conn->pending_len, data, len);
  conn->pending = p;
  conn->pending_len += len;
}

/* Parses data. Each request pauses the parser; one answered at once (its
 * response went out from here) lets it go on with the rest, and one still
 * on its way keeps the rest for resume(). */
static void feed(conn_t *conn, const char *data, size_t len) {
  for (;;) {
    size_t n;
    enum http_errno e;

    conn->parsing = 1;
    n = http_parser_execute(&conn->parser, &settings, data, len);
    conn->parsing = 0;
    e = HTTP_PARSER_ERRNO(&conn->parser);
    if (e == HPE_OK)
      return;
    if (e != HPE_PAUSED) {
      say(conn->w, "conn %u: bad request (%s)", conn->id, http_errno_name(e));
      close_conn(conn, UV_EPROTO, "bad request");
      return;
    }
    data += n;
    len -= n;
    if (!conn_alive(conn))
      return;
    if (conn->busy) {
      keep_pending(conn, data, len);
      return;
    }
    http_parser_pause(&conn->parser, 0);
    if (len == 0)
      return;
  }
}

/* The response is out: parse what came in meanwhile. */
static void resume(conn_t *conn) {
  char *data = conn->pending;
  size_t len = conn->pending_len;

  http_parser_pause(&conn->parser, 0);
  if (data == NULL)
    return;
  conn->pending = NULL;
  conn->pending_len = 0;
  feed(conn, data, len);
  free(data);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  conn_t *conn = h->data;

  (void)hint;
  *buf = uv_buf_init(conn->w->read_buf, sizeof(conn->w->read_buf));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn_t *conn = s->data;

  if (!conn_alive(conn))
    return; /* closing */
  if (nread < 0) {
    if (conn->req != NULL)
      say(conn->w, "conn %u: client went away during request %u wall=%.3f",
          conn->id, conn->req->id, grpc_wall_ms());
    close_conn(conn, (int)nread,
               nread == UV_EOF ? "client closed the connection"
                               : uv_strerror((int)nread));
    return;
  }
  if (nread == 0)
    return;
  if (conn->busy) {
    keep_pending(conn, buf->base, (size_t)nread);
    return;
  }
  /* The idle timeout restarts. */
  uvctx_reset_timeout(conn->ctx, idle_timeout(conn->w));
  feed(conn, buf->base, (size_t)nread);
}

/* ---- shutdown, phase 1: stop accepting, finish what runs --------------------- */

/* Every connection watches its worker's closing. */
static void on_conn_closing(uvctx_watch_t *w, int err) {
  conn_t *conn = w->data;

  (void)err;
  conn->stop_watching = 0;
  if (conn->busy)
    say(conn->w, "conn %u: request %u in flight, closing after its response",
        conn->id, conn->nreq);
  else /* idle: a short last idle timeout for a request on its way */
    uvctx_reset_timeout(conn->ctx, idle_timeout(conn->w));
}

static void on_listener_closed(uv_handle_t *h) {
  worker_t *w = h->data;

  say(w, "stopped listening");
  server_tell(NEWS_LISTENER_CLOSED);
}

static void on_stopping(uvctx_watch_t *watch, int err) {
  worker_t *w = watch->data;

  (void)err;
  w->is_stopping = 1;
  w->stop_ms = uvctx_now();
  say(w, "shutdown phase 1: stop accepting; %u connections open, %u requests "
         "in flight",
      w->conns_open, w->in_flight);
  uvctx_release(w->stopping); /* the pending watches on it keep it alive */
  w->stopping = NULL;
}

/* Every loop's listener is closed: a client whose connection we close now
 * and that connects again is refused. Closing connections earlier, while
 * another loop still listens, would send that client to the other loop's
 * queue, and a connection still queued when its listener closes is reset
 * by the kernel: a request of the client's lost without an answer. */
static void on_closing(uvctx_watch_t *watch, int err) {
  worker_t *w = watch->data;

  (void)err;
  w->is_closing = 1;
  uvctx_release(w->closing); /* the connections' watches keep it alive */
  w->closing = NULL;
  leave_if_finished(w);
}

/* During the grace period, once no loop listens and the last connection of
 * this loop is closed, the worker lets go of its root: main's root, which
 * counts its children, ends the shutdown early when every worker has let go.
 * (Watching the root holds a reference too, so the watch goes first.) */
static void leave_if_finished(worker_t *w) {
  if (!w->is_closing || w->conns_open > 0 || !w->root_watching)
    return;
  uvctx_unwatch(&w->root_watch);
  w->root_watching = 0;
  say(w, "every connection finished %llu ms into the grace period",
      (unsigned long long)(uvctx_now() - w->stop_ms));
  uvctx_release(w->root);
  w->root = NULL;
  server_tell(NEWS_FINISHED);
}

/* ---- shutdown, phase 2: cancel what is left, drain --------------------------- */

static void on_drained(uvctx_watch_t *watch, int err) {
  worker_t *w = watch->data;

  (void)err;
  say(w, "drained: every context under the loop's root is released");
  uvctx_release(w->root);
  w->root = NULL;
}

/* Main's root is done while connections of this loop are still open (the
 * grace period is over, or a second signal came), and so is this loop's
 * root: the cancel reached every connection and request below it. */
static void on_root_done(uvctx_watch_t *watch, int err) {
  worker_t *w = watch->data;

  w->root_watching = 0;
  say(w, "shutdown phase 2 (%s): cancelling %u connections, %u requests in "
         "flight",
      err == UV_ETIMEDOUT ? "grace period over" : "second signal",
      w->conns_open, w->in_flight);
  uvctx_drain(w->root, &w->drain_watch, on_drained);
}

/* ---- accepting -------------------------------------------------------------- */

/* Connection ids are unique in the process, whichever loop accepted. */
static atomic_uint next_conn_id;

static void free_handle(uv_handle_t *h) { free(h->data); }

static void on_connection(uv_stream_t *listener, int status) {
  worker_t *w = listener->data;
  struct sockaddr_storage peer;
  int peer_len = sizeof(peer);
  char host[64] = "?";
  conn_t *conn;

  if (status < 0) {
    say(w, "accept failed: %s", uv_strerror(status));
    return;
  }
  conn = calloc(1, sizeof(*conn));
  if (conn == NULL)
    abort();
  uv_tcp_init(&w->loop, &conn->tcp);
  conn->tcp.data = conn;
  conn->w = w;
  conn->refs = 1;
  if (uv_accept(listener, (uv_stream_t *)&conn->tcp) != 0 ||
      uvctx_with_timeout(&w->loop, w->root, opt.idle_ms, &conn->ctx) != 0) {
    uv_close((uv_handle_t *)&conn->tcp, free_handle);
    return;
  }
  conn->id = atomic_fetch_add(&next_conn_id, 1) + 1;
  w->conns_open++;
  w->stats.conns++;
  /* When the connection's context is done, for whatever reason, its socket
   * is closed. */
  uvctx_close_on_done(conn->ctx, (uv_handle_t *)&conn->tcp, &conn->close_watch,
                      on_conn_closed);
  conn->stop_watch.data = conn;
  conn->stop_watching =
      uvctx_watch(w->closing, &conn->stop_watch, on_conn_closing) == 0;
  http_parser_init(&conn->parser, HTTP_REQUEST);
  conn->parser.data = conn;

  if (!opt.quiet) {
    uv_tcp_getpeername(&conn->tcp, (struct sockaddr *)&peer, &peer_len);
    if (peer.ss_family == AF_INET)
      uv_ip4_name((struct sockaddr_in *)&peer, host, sizeof(host));
    else if (peer.ss_family == AF_INET6)
      uv_ip6_name((struct sockaddr_in6 *)&peer, host, sizeof(host));
    say(w, "conn %u: accepted from %s:%d (idle timeout %llu ms)", conn->id,
        host, ntohs(((struct sockaddr_in *)&peer)->sin_port),
        (unsigned long long)opt.idle_ms);
  }
  uv_read_start((uv_stream_t *)&conn->tcp, on_alloc, on_read);
}

/* ---- the worker's loop ------------------------------------------------------- */

/* On the worker's thread: its two contexts, cross-loop children of main's,
 * then its listener. */
static int worker_start(worker_t *w) {
  uv_async_t *done;
  int rc;

  uv_tcp_init(&w->loop, &w->listener);
  w->listener.data = w;
  if ((rc = uv_tcp_open(&w->listener, w->fd)) != 0) {
    close(w->fd); /* not the handle's yet */
    goto fail;
  }
  if ((rc = uvctx_with_cancel(&w->loop, w->main_stopping, &w->stopping)) != 0)
    goto fail;
  if ((rc = uvctx_with_cancel(&w->loop, w->main_closing, &w->closing)) != 0)
    goto fail;
  /* The loop runs until closing is done, even with no listener and no
   * connection left: the worker has to see it to finish. */
  if ((done = uvctx_done_async(w->closing)) == NULL) {
    rc = UV_ENOMEM;
    goto fail;
  }
  uv_ref((uv_handle_t *)done);
  if ((rc = uvctx_with_cancel(&w->loop, w->main_root, &w->root)) != 0)
    goto fail;
  if ((rc = uv_listen((uv_stream_t *)&w->listener, 511, on_connection)) != 0)
    goto fail;
  /* Phase 1 closes the listener; the watches run in this order. */
  w->stopping_watch.data = w->closing_watch.data = w;
  w->root_watch.data = w->drain_watch.data = w;
  uvctx_close_on_done(w->stopping, (uv_handle_t *)&w->listener,
                      &w->listener_watch, on_listener_closed);
  uvctx_watch(w->stopping, &w->stopping_watch, on_stopping);
  uvctx_watch(w->closing, &w->closing_watch, on_closing);
  w->root_watching = uvctx_watch(w->root, &w->root_watch, on_root_done) == 0;
  return 0;

fail:
  uv_close((uv_handle_t *)&w->listener, on_listener_closed);
  uvctx_release(w->stopping);
  uvctx_release(w->closing);
  uvctx_release(w->root);
  w->stopping = w->closing = w->root = NULL;
  return rc;
}

void worker_run(void *arg) {
  worker_t *w = arg;
  int rc;

  if ((rc = uv_loop_init(&w->loop)) != 0) {
    say(w, "uv_loop_init: %s; shutting the server down", uv_strerror(rc));
    close(w->fd);
    w->status = rc;
    uvctx_shutdown(w->main_root, rc);
    uvctx_release(w->main_stopping);
    uvctx_release(w->main_closing);
    uvctx_release(w->main_root);
    server_tell(NEWS_LISTENER_CLOSED);
    server_tell(NEWS_EXITED);
    return;
  }
  metrics_start(w);
  if ((w->status = worker_start(w)) != 0) {
    say(w, "cannot serve: %s; shutting the server down",
        uv_strerror(w->status));
    uvctx_shutdown(w->main_root, w->status);
  }
  /* Our children hold main's contexts now (or we failed). */
  uvctx_release(w->main_stopping);
  uvctx_release(w->main_closing);
  uvctx_release(w->main_root);
  w->main_stopping = w->main_closing = w->main_root = NULL;

  uv_run(&w->loop, UV_RUN_DEFAULT);
  metrics_stop(w);
  uv_run(&w->loop, UV_RUN_DEFAULT); /* its close callback */

  rc = uv_loop_close(&w->loop);
  if (w->status == 0)
    w->status = rc;
  say(w, "loop closed: uv_loop_close() = %d; %lu connections, %lu requests, "
         "%lu responses (%lu during shutdown, %lu timed out), %lu cancelled",
      rc, w->stats.conns, w->stats.requests, w->stats.responses,
      w->stats.during_shutdown, w->stats.timeouts, w->stats.cancelled);
  server_tell(NEWS_EXITED);
}
