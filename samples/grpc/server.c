/* A gRPC server on libuv + libnghttp2 whose deadlines, cancellations and
 * shutdown are uvctx contexts.
 *
 *   root        uvctx_with_shutdown: SIGINT/SIGTERM begin a two-phase shutdown
 *   +- stopping done at the first signal: close the listener, send GOAWAY
 *   +- conn     one per HTTP/2 connection (uvctx_with_cancel)
 *      +- call  one per stream: uvctx_with_grpc_timeout when the client sent a
 *               grpc-timeout header, uvctx_with_cancel when it did not
 *
 * Unary calls over h2c (cleartext HTTP/2, prior knowledge). A message is raw
 * bytes behind gRPC's 5-byte prefix (a compressed flag and a length): no
 * protobuf. Methods:
 *
 *   /uvctx.Test/Echo   answers the request message at once
 *   /uvctx.Test/Sleep  the request message is a number of milliseconds of
 *                      work (a uv_timer_t); answers "slept N ms"
 *
 * How a call ends, and what its context has to do with it:
 *   - the work is done in time: grpc-status 0 with the answer;
 *   - the call's deadline passes first: the work stops, trailers-only
 *     grpc-status 4 (DEADLINE_EXCEEDED);
 *   - the client sends RST_STREAM (a cancel): the call's context is cancelled
 *     with cause UV_ECONNRESET and the work stops; nothing can be answered;
 *   - the grace period of a shutdown ends first: the work stops, trailers-only
 *     grpc-status 1 (CANCELLED);
 *   - the connection drops: the context is cancelled through the tree.
 *
 * Every call's end is logged with its context's err and cause, the budget
 * that was left when it arrived, and wall-clock times (ms since the epoch),
 * so that a test can read deadline skew and cancel latency from the log:
 *
 *   conn 1 stream 3: start /uvctx.Test/Sleep grpc-timeout=999870u
 *     budget=999.8ms deadline_wall=1764842400999.873
 *   conn 1 stream 3: RST_STREAM(CANCEL) from the peer: cancelling the call
 *     wall=1764842400300.112
 *   conn 1 stream 3: end /uvctx.Test/Sleep: cancelled by the peer, work
 *     stopped err=ECANCELED cause=ECONNRESET budget=999.8ms lived=300.2ms
 *     wall=1764842400300.140
 *
 * (each on one line). Shutdown: the first signal closes the listener and
 * sends GOAWAY in two steps, as RFC 9113 section 6.8 suggests: a notice
 * (last stream 2^31-1) with a PING, then, when the PING comes back and so
 * every stream the client had sent before the notice has arrived, the final
 * GOAWAY with the last stream accepted. Streams accepted finish during the
 * grace period; when it ends the rest are answered CANCELLED. Exits 0 once
 * everything is released and uv_loop_close() returns 0.
 *
 * Usage: server [-a ADDR] [-p PORT] [-g GRACE_MS] [-m MAX_MS] [-q]
 * (defaults 127.0.0.1, 50051, 5000, no limit; -p 0 picks a free port; -m
 * gives each call at most MAX_MS, an earlier deadline than its client's; -q
 * logs only the calls that did not end OK). One line per event goes to
 * stderr. */
#include <nghttp2/nghttp2.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "uvctx.h"

/* ---- options and state ---------------------------------------------------- */

static struct {
  const char *addr;
  int port;
  uint64_t grace_ms; /* how long calls in flight get at shutdown */
  uint64_t max_ms;   /* the longest a call may take, whatever its client
                        allows; 0: no limit of our own */
  int quiet;         /* log only calls that did not end OK */
} opt = {"127.0.0.1", 50051, 5000, 0, 0};

/* A request message larger than this is refused (RESOURCE_EXHAUSTED). */
#define MAX_REQUEST 65536

/* The longest work /uvctx.Test/Sleep accepts, in ms. */
#define MAX_SLEEP_MS 600000

static struct {
  uv_loop_t loop;
  uv_tcp_t listener;
  uvctx_t *root;     /* done at the end of the grace period: cancel all */
  uvctx_t *stopping; /* done at the first signal: stop accepting */
  uvctx_watch_t listener_watch, stopping_watch, root_watch, drain_watch;
  int is_stopping;
  uint64_t start_ms, stop_ms;
  unsigned next_conn_id, conns_open, in_flight;
  unsigned long calls, ok, deadline, peer_cancel, shutdown_cancel, lost,
      other;
} srv;

/* Wall-clock time in ms since the epoch: comparable with the times a client
 * on the same machine prints, which the monotonic clock is not. */
static double wall_ms(void) {
  struct timespec ts;

  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void say(const char *fmt, ...) {
  char line[512];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  fprintf(stderr, "[%6llu ms] grpc-server: %s\n",
          (unsigned long long)(uvctx_now() - srv.start_ms), line);
}

/* uv_err_name() of an error, "0" for none. */
static const char *errname(int err) { return err == 0 ? "0" : uv_err_name(err); }

typedef struct conn_s conn_t;
typedef struct stream_s stream_t;

struct conn_s {
  uv_tcp_t tcp;
  unsigned id;
  uvctx_t *ctx;             /* child of root: cancelled, the connection goes */
  uvctx_watch_t done_watch; /* on ctx */
  uvctx_watch_t stop_watch; /* on srv.stopping: send GOAWAY */
  int done_watching, stop_watching;
  nghttp2_session *session;
  stream_t *streams; /* every stream nghttp2 told us of and we still hold */
  unsigned live;     /* calls whose end is not logged yet */
  unsigned writes;   /* uv_write()s in flight */
  int dead;          /* closing: nothing more is read or written */
  int hard;          /* the root is done: answer, flush and close */
  int notice_sent, goaway_sent;
  const char *reason; /* why it was closed, for the log */
  unsigned ncalls;
  int refs; /* the socket, each stream, each write */
};

enum stream_state { S_RECV, S_WORK, S_ANSWERED };

struct stream_s {
  conn_t *conn;
  stream_t *next, *prev;
  int32_t id;
  enum stream_state state;
  int closed;       /* nghttp2 has closed the stream */
  uint32_t rst;     /* its error code, when it was closed by RST_STREAM */
  int logged;       /* its end is logged */
  uvctx_t *ctx;     /* child of conn->ctx, from end of headers to the end */
  uvctx_watch_t watch;
  int watching;
  uv_timer_t work; /* the work of /uvctx.Test/Sleep, made for it only */
  int has_work;
  uint64_t work_ms;
  char path[128];
  char timeout[16]; /* the grpc-timeout header, NUL-terminated */
  size_t timeout_len;
  int bad_timeout; /* too long to be valid */
  uint64_t start_ns; /* uv_hrtime() when its context was made */
  double start_wall;
  uint8_t *body; /* the request, prefix included */
  size_t body_len;
  int too_big;
  uint8_t *resp; /* the answer's DATA, prefix included */
  size_t resp_len, resp_off;
};

static void conn_flush(conn_t *conn);
static void conn_close(conn_t *conn, int cause, const char *reason);

static void conn_unref(conn_t *conn) {
  if (--conn->refs == 0)
    free(conn);
}

/* ---- streams -------------------------------------------------------------- */

static void stream_delete(stream_t *s) {
  conn_t *conn = s->conn;

  free(s->body);
  free(s->resp);
  free(s);
  conn_unref(conn);
}

static void on_work_closed(uv_handle_t *h) { stream_delete(h->data); }

static void work_stop(stream_t *s) {
  if (s->has_work)
    uv_timer_stop(&s->work);
}

/* Forgets a stream: nghttp2 no longer knows it or will never be asked about
 * it again. */
static void stream_free(stream_t *s) {
  conn_t *conn = s->conn;

  if (s->watching)
    uvctx_unwatch(&s->watch);
  s->watching = 0;
  uvctx_release(s->ctx);
  s->ctx = NULL;
  if (s->prev != NULL)
    s->prev->next = s->next;
  else
    conn->streams = s->next;
  if (s->next != NULL)
    s->next->prev = s->prev;
  if (s->has_work)
    uv_close((uv_handle_t *)&s->work, on_work_closed);
  else
    stream_delete(s);
}

/* The time its context had left when it was made, in ms; < 0 without a
 * deadline. Asked only for a log line: a quiet server does not look it up. */
static double stream_budget(const stream_t *s) {
  uint64_t deadline;

  if (s->ctx == NULL || uvctx_deadline(s->ctx, &deadline) != 1)
    return -1;
  return (double)deadline - (double)s->start_ns / 1e6;
}

/* One line per call at its end, with what its context says. */
static void stream_log_end(stream_t *s, int always, const char *fmt, ...) {
  char what[160], budget[32];
  va_list ap;
  int err = uvctx_err(s->ctx), cause = uvctx_cause(s->ctx);

  if (s->logged)
    return;
  s->logged = 1;
  s->conn->live--;
  srv.in_flight--;
  if (opt.quiet && !always)
    return;
  va_start(ap, fmt);
  vsnprintf(what, sizeof(what), fmt, ap);
  va_end(ap);
  if (stream_budget(s) >= 0)
    snprintf(budget, sizeof(budget), "%.1fms", stream_budget(s));
  else
    snprintf(budget, sizeof(budget), "none");
  say("conn %u stream %d: end %s: %s err=%s cause=%s budget=%s lived=%.1fms "
      "wall=%.3f",
      s->conn->id, s->id, s->path, what, errname(err), errname(cause), budget,
      wall_ms() - s->start_wall, wall_ms());
}

static const char *status_name(int code) {
  switch (code) {
  case 0: return "OK";
  case 1: return "CANCELLED";
  case 3: return "INVALID_ARGUMENT";
  case 4: return "DEADLINE_EXCEEDED";
  case 8: return "RESOURCE_EXHAUSTED";
  case 12: return "UNIMPLEMENTED";
  case 13: return "INTERNAL";
  default: return "?";
  }
}

#define NV(name, value)                                                        \
  {                                                                            \
    (uint8_t *)(name), (uint8_t *)(value), sizeof(name) - 1, strlen(value),    \
        NGHTTP2_NV_FLAG_NO_COPY_NAME                                           \
  }

/* The answer's DATA, then the trailers with grpc-status 0. */
static ssize_t read_answer(nghttp2_session *session, int32_t id, uint8_t *buf,
                           size_t length, uint32_t *flags,
                           nghttp2_data_source *source, void *user_data) {
  stream_t *s = source->ptr;
  size_t n = s->resp_len - s->resp_off;
  const nghttp2_nv trailers[] = {NV("grpc-status", "0")};

  (void)user_data;
  if (n > length)
    n = length;
  memcpy(buf, s->resp + s->resp_off, n);
  s->resp_off += n;
  if (s->resp_off == s->resp_len) {
    *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
    if (nghttp2_submit_trailer(session, id, trailers, 1) != 0)
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }
  return (ssize_t)n;
}

/* Ends the call: with code 0, an answer carrying msg; otherwise a
 * trailers-only response with that grpc-status and text. The call's context
 * goes: whatever happens to the stream now, the call is over. */
static void stream_answer(stream_t *s, int code, const char *text,
                          const void *msg, size_t msg_len) {
  nghttp2_data_provider answer = {.source.ptr = s, .read_callback = read_answer};
  char status[4];
  int rc;

  snprintf(status, sizeof(status), "%d", code);
  if (s->watching)
    uvctx_unwatch(&s->watch);
  s->watching = 0;
  work_stop(s);
  s->state = S_ANSWERED;
  if (code == 0) {
    const nghttp2_nv hdrs[] = {NV(":status", "200"),
                               NV("content-type", "application/grpc")};

    s->resp = malloc(5 + msg_len);
    if (s->resp == NULL)
      abort();
    s->resp[0] = 0; /* not compressed */
    s->resp[1] = (uint8_t)(msg_len >> 24);
    s->resp[2] = (uint8_t)(msg_len >> 16);
    s->resp[3] = (uint8_t)(msg_len >> 8);
    s->resp[4] = (uint8_t)msg_len;
    memcpy(s->resp + 5, msg, msg_len);
    s->resp_len = 5 + msg_len;
    rc = nghttp2_submit_response(s->conn->session, s->id, hdrs, 2, &answer);
  } else {
    const nghttp2_nv hdrs[] = {NV(":status", "200"),
                               NV("content-type", "application/grpc"),
                               NV("grpc-status", status),
                               NV("grpc-message", text)};

    rc = nghttp2_submit_response(s->conn->session, s->id, hdrs, 4, NULL);
  }
  if (code == 0)
    srv.ok++;
  else if (code == 4)
    srv.deadline++;
  else if (code == 1)
    srv.shutdown_cancel++;
  else
    srv.other++;
  stream_log_end(s, code != 0, "%s (grpc-status %d)%s", status_name(code),
                 code, rc != 0 ? " not sent: stream closed" : "");
  uvctx_release(s->ctx);
  s->ctx = NULL;
}

/* The work of /uvctx.Test/Sleep is done, before the call's context. */
static void on_work_done(uv_timer_t *t) {
  stream_t *s = t->data;
  char msg[64];
  int n;

  if (s->state != S_WORK || uvctx_err(s->ctx) != 0)
    return; /* done at the same time: on_call_done answers */
  n = snprintf(msg, sizeof(msg), "slept %llu ms",
               (unsigned long long)s->work_ms);
  stream_answer(s, 0, NULL, msg, (size_t)n);
  conn_flush(s->conn);
}

/* The call's context is done before the call: say why, stop the work, answer
 * if there is still someone to answer. */
static void on_call_done(uvctx_watch_t *w, int err) {
  stream_t *s = w->data;
  conn_t *conn = s->conn;

  s->watching = 0;
  work_stop(s);
  if (s->closed) {
    srv.peer_cancel++;
    stream_log_end(s, 1, "cancelled by the peer (RST_STREAM %s), work stopped",
                   nghttp2_http2_strerror(s->rst));
    stream_free(s);
  } else if (conn->dead) {
    srv.lost++;
    stream_log_end(s, 1, "connection lost (%s), work stopped",
                   conn->reason ? conn->reason : "?");
    stream_free(s);
  } else if (uvctx_err(srv.root) != 0) {
    stream_answer(s, 1, "server shutting down", NULL, 0);
    conn_flush(conn);
  } else if (err == UV_ETIMEDOUT) {
    stream_answer(s, 4, "deadline exceeded", NULL, 0);
    conn_flush(conn);
  } else {
    stream_answer(s, 1, "cancelled", NULL, 0);
    conn_flush(conn);
  }
}

/* The request's headers are in: the call's context is born, from the
 * client's grpc-timeout if it sent one. */
static void stream_start(stream_t *s) {
  conn_t *conn = s->conn;
  int rc;

  s->start_wall = wall_ms();
  conn->ncalls++;
  conn->live++;
  srv.calls++;
  srv.in_flight++;
  if (s->timeout_len > 0 || s->bad_timeout) {
    rc = s->bad_timeout ? UV_EINVAL
                        : uvctx_with_grpc_timeout(&srv.loop, conn->ctx,
                                                  s->timeout, s->timeout_len,
                                                  &s->ctx);
    if (rc == UV_EINVAL) {
      say("conn %u stream %d: malformed grpc-timeout '%s'", conn->id, s->id,
          s->timeout);
      stream_answer(s, 13, "malformed grpc-timeout", NULL, 0);
      return;
    }
  } else {
    rc = uvctx_with_cancel(&srv.loop, conn->ctx, &s->ctx);
  }
  if (rc == 0 && opt.max_ms > 0) {
    /* The server's own limit: the earlier of the two deadlines counts. */
    uvctx_t *client_ctx = s->ctx;

    rc = uvctx_with_timeout(&srv.loop, client_ctx, opt.max_ms, &s->ctx);
    uvctx_release(client_ctx);
    if (rc != 0)
      s->ctx = NULL;
  }
  if (rc != 0) {
    stream_answer(s, 8, "out of memory", NULL, 0);
    return;
  }
  s->start_ns = uv_hrtime();
  if (!opt.quiet) {
    double budget_ms = stream_budget(s);
    if (budget_ms >= 0)
      say("conn %u stream %d: start %s grpc-timeout=%s budget=%.1fms "
          "deadline_wall=%.3f",
          conn->id, s->id, s->path,
          s->timeout_len > 0 ? s->timeout : "none", budget_ms,
          s->start_wall + budget_ms);
    else
      say("conn %u stream %d: start %s (no grpc-timeout)", conn->id, s->id,
          s->path);
  }
  s->watch.data = s;
  s->watching = uvctx_watch(s->ctx, &s->watch, on_call_done) == 0;
}

/* The whole request is in: route it. */
static void stream_dispatch(stream_t *s) {
  const uint8_t *msg = s->body + 5;
  size_t len;

  if (s->state != S_RECV || uvctx_err(s->ctx) != 0)
    return; /* answered already, or on_call_done is on its way */
  if (s->too_big) {
    stream_answer(s, 8, "request too large", NULL, 0);
    return;
  }
  if (s->body_len < 5 || s->body[0] != 0 ||
      ((size_t)s->body[1] << 24 | (size_t)s->body[2] << 16 |
       (size_t)s->body[3] << 8 | s->body[4]) != s->body_len - 5) {
    stream_answer(s, 13, "expected one uncompressed message", NULL, 0);
    return;
  }
  len = s->body_len - 5;
  if (strcmp(s->path, "/uvctx.Test/Echo") == 0) {
    stream_answer(s, 0, NULL, msg, len);
  } else if (strcmp(s->path, "/uvctx.Test/Sleep") == 0) {
    char digits[16];
    char *end;

    if (len == 0 || len >= sizeof(digits)) {
      stream_answer(s, 3, "expected a number of milliseconds", NULL, 0);
      return;
    }
    memcpy(digits, msg, len);
    digits[len] = '\0';
    s->work_ms = strtoull(digits, &end, 10);
    if (*end != '\0' || digits[0] < '0' || digits[0] > '9' ||
        s->work_ms > MAX_SLEEP_MS) {
      stream_answer(s, 3, "expected a number of milliseconds", NULL, 0);
      return;
    }
    s->state = S_WORK;
    s->work.data = s;
    uv_timer_init(&srv.loop, &s->work);
    s->has_work = 1;
    uv_timer_start(&s->work, on_work_done, s->work_ms, 0);
  } else {
    stream_answer(s, 12, "unknown method", NULL, 0);
  }
}

/* ---- nghttp2 callbacks (inside nghttp2_session_mem_recv) ------------------ */

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame,
                            void *user_data) {
  conn_t *conn = user_data;
  stream_t *s;

  if (frame->hd.type != NGHTTP2_HEADERS ||
      frame->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0;
  s = calloc(1, sizeof(*s));
  if (s == NULL)
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  s->conn = conn;
  s->id = frame->hd.stream_id;
  s->next = conn->streams;
  if (conn->streams != NULL)
    conn->streams->prev = s;
  conn->streams = s;
  conn->refs++;
  nghttp2_session_set_stream_user_data(session, s->id, s);
  return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame,
                     const uint8_t *name, size_t namelen, const uint8_t *value,
                     size_t valuelen, uint8_t flags, void *user_data) {
  stream_t *s = nghttp2_session_get_stream_user_data(session,
                                                     frame->hd.stream_id);

  (void)flags;
  (void)user_data;
  if (s == NULL || s->ctx != NULL)
    return 0; /* not a request, or its trailers */
  if (namelen == 5 && memcmp(name, ":path", 5) == 0) {
    if (valuelen >= sizeof(s->path))
      valuelen = sizeof(s->path) - 1; /* unknown method anyway */
    memcpy(s->path, value, valuelen);
    s->path[valuelen] = '\0';
  } else if (namelen == 12 && memcmp(name, "grpc-timeout", 12) == 0) {
    if (valuelen >= sizeof(s->timeout) || valuelen == 0) {
      s->bad_timeout = 1;
      valuelen = 0;
    }
    memcpy(s->timeout, value, valuelen);
    s->timeout[valuelen] = '\0';
    s->timeout_len = valuelen;
  }
  return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags,
                         int32_t stream_id, const uint8_t *data, size_t len,
                         void *user_data) {
  stream_t *s = nghttp2_session_get_stream_user_data(session, stream_id);
  uint8_t *p;

  (void)flags;
  (void)user_data;
  if (s == NULL || s->state != S_RECV || s->too_big)
    return 0;
  if (s->body_len + len > MAX_REQUEST + 5) {
    s->too_big = 1;
    return 0;
  }
  p = realloc(s->body, s->body_len + len);
  if (p == NULL)
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  memcpy(p + s->body_len, data, len);
  s->body = p;
  s->body_len += len;
  return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame,
                         void *user_data) {
  conn_t *conn = user_data;
  stream_t *s;

  switch (frame->hd.type) {
  case NGHTTP2_PING:
    /* The PING sent with the shutdown notice is back: every stream the
     * client opened before it saw the notice has arrived. */
    if ((frame->hd.flags & NGHTTP2_FLAG_ACK) && conn->notice_sent &&
        !conn->goaway_sent) {
      nghttp2_submit_goaway(session, NGHTTP2_FLAG_NONE,
                            nghttp2_session_get_last_proc_stream_id(session),
                            NGHTTP2_NO_ERROR, NULL, 0);
      conn->goaway_sent = 1;
    }
    return 0;
  case NGHTTP2_HEADERS:
  case NGHTTP2_DATA:
    break;
  default:
    return 0;
  }
  s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
  if (s == NULL)
    return 0;
  if (frame->hd.type == NGHTTP2_HEADERS && s->ctx == NULL &&
      s->state == S_RECV)
    stream_start(s);
  if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
    stream_dispatch(s);
  return 0;
}

/* The stream is closed: answered and sent, reset by the client, or refused.
 * A call still running was cancelled by the client: cancel its context, and
 * on_call_done logs it and stops the work. */
static int on_stream_close(nghttp2_session *session, int32_t stream_id,
                           uint32_t error_code, void *user_data) {
  conn_t *conn = user_data;
  stream_t *s = nghttp2_session_get_stream_user_data(session, stream_id);

  if (s == NULL)
    return 0;
  s->closed = 1;
  s->rst = error_code;
  if (s->ctx != NULL && !s->logged && uvctx_err(s->ctx) == 0) {
    say("conn %u stream %d: RST_STREAM(%s) from the peer: cancelling the call "
        "wall=%.3f",
        conn->id, stream_id, nghttp2_http2_strerror(error_code), wall_ms());
    uvctx_cancel_cause(s->ctx, UV_ECONNRESET);
  } else if (!s->watching) {
    stream_free(s); /* no callback on its way will do it */
  }
  return 0;
}

static nghttp2_session_callbacks *callbacks;

/* ---- connections ----------------------------------------------------------- */

typedef struct {
  uv_write_t req;
  conn_t *conn;
  uv_buf_t buf;
} write_t;

/* Closes the connection once there is nothing left to say: nghttp2 wants
 * neither to read nor to write (GOAWAY exchanged, no stream open), or the
 * root is done and every call has been answered. */
static void conn_maybe_finish(conn_t *conn) {
  if (conn->dead || conn->writes > 0)
    return;
  if (!nghttp2_session_want_read(conn->session) &&
      !nghttp2_session_want_write(conn->session))
    conn_close(conn, UV_EOF, "GOAWAY done, no stream open");
  else if (conn->hard && conn->live == 0 &&
           !nghttp2_session_want_write(conn->session))
    conn_close(conn, UV_ECANCELED, "shutdown phase 2, calls answered");
}

static void on_written(uv_write_t *w, int status) {
  write_t *wr = (write_t *)w;
  conn_t *conn = wr->conn;

  free(wr->buf.base);
  free(wr);
  conn->writes--;
  if (status < 0)
    conn_close(conn, status, "write failed");
  else
    conn_maybe_finish(conn);
  conn_unref(conn);
}

/* Sends what nghttp2 has to send, in one write. Never called from inside an
 * nghttp2 callback. */
static void conn_flush(conn_t *conn) {
  write_t *wr;
  const uint8_t *data;
  ssize_t n;
  size_t cap = 0;

  if (conn->dead)
    return;
  wr = calloc(1, sizeof(*wr));
  if (wr == NULL)
    abort();
  while ((n = nghttp2_session_mem_send(conn->session, &data)) > 0) {
    if (wr->buf.len + (size_t)n > cap) {
      cap = (wr->buf.len + (size_t)n) * 2;
      wr->buf.base = realloc(wr->buf.base, cap);
      if (wr->buf.base == NULL)
        abort();
    }
    memcpy(wr->buf.base + wr->buf.len, data, (size_t)n);
    wr->buf.len += (size_t)n;
  }
  if (n < 0) {
    free(wr->buf.base);
    free(wr);
    say("conn %u: nghttp2: %s", conn->id, nghttp2_strerror((int)n));
    conn_close(conn, UV_EPROTO, "HTTP/2 error");
    return;
  }
  if (wr->buf.len == 0) {
    free(wr);
    conn_maybe_finish(conn);
    return;
  }
  wr->conn = conn;
  conn->refs++;
  conn->writes++;
  if (uv_write(&wr->req, (uv_stream_t *)&conn->tcp, &wr->buf, 1,
               on_written) != 0) {
    free(wr->buf.base);
    free(wr);
    conn->writes--;
    conn_close(conn, UV_EPIPE, "write failed");
    conn_unref(conn);
  }
}

/* The socket is closed. nghttp2_session_del() calls no on_stream_close, so
 * the calls still open are ended here by hand. */
static void on_conn_closed(uv_handle_t *handle) {
  conn_t *conn = handle->data;

  while (conn->streams != NULL) {
    stream_t *s = conn->streams;

    if (s->ctx != NULL && !s->logged) {
      srv.lost++;
      stream_log_end(s, 1, "connection lost (%s), work stopped",
                     conn->reason);
    }
    stream_free(s);
  }
  nghttp2_session_del(conn->session);
  conn->session = NULL;
  say("conn %u: closed: %s (%u calls)", conn->id, conn->reason, conn->ncalls);
  if (conn->stop_watching)
    uvctx_unwatch(&conn->stop_watch);
  conn->stop_watching = 0;
  uvctx_release(conn->ctx);
  conn->ctx = NULL;
  srv.conns_open--;
  conn_unref(conn);
}

/* Closing a connection is cancelling its context: the calls under it are
 * cancelled through the tree, and on_conn_done closes the socket. */
static void conn_close(conn_t *conn, int cause, const char *reason) {
  if (conn->dead)
    return;
  conn->dead = 1;
  conn->reason = reason;
  uv_read_stop((uv_stream_t *)&conn->tcp);
  if (uvctx_cancel_cause(conn->ctx, cause) == UV_EALREADY &&
      !conn->done_watching)
    uv_close((uv_handle_t *)&conn->tcp, on_conn_closed);
}

/* The connection's context is done: we closed it (conn_close), or the root
 * is (the grace period is over): then the calls' own callbacks answer
 * CANCELLED, and the connection closes once that is sent. */
static void on_conn_done(uvctx_watch_t *w, int err) {
  conn_t *conn = w->data;

  (void)err;
  conn->done_watching = 0;
  if (conn->dead) {
    uv_close((uv_handle_t *)&conn->tcp, on_conn_closed);
    return;
  }
  conn->hard = 1;
  if (!conn->goaway_sent) {
    nghttp2_submit_goaway(conn->session, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(
                              conn->session),
                          NGHTTP2_NO_ERROR, NULL, 0);
    conn->goaway_sent = 1;
  }
  conn_flush(conn);
}

/* Shutdown has begun: the GOAWAY notice, and a PING whose answer tells when
 * the final GOAWAY may go. */
static void on_conn_stopping(uvctx_watch_t *w, int err) {
  conn_t *conn = w->data;

  (void)err;
  conn->stop_watching = 0;
  if (conn->dead || conn->hard)
    return;
  nghttp2_submit_shutdown_notice(conn->session);
  nghttp2_submit_ping(conn->session, NGHTTP2_FLAG_NONE, NULL);
  conn->notice_sent = 1;
  conn_flush(conn);
}

static char read_buf[65536];

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)h;
  (void)hint;
  *buf = uv_buf_init(read_buf, sizeof(read_buf));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  conn_t *conn = stream->data;
  ssize_t rv;

  if (conn->dead)
    return;
  if (nread < 0) {
    conn_close(conn, (int)nread,
               nread == UV_EOF ? "peer closed the connection"
                               : uv_strerror((int)nread));
    return;
  }
  rv = nghttp2_session_mem_recv(conn->session, (const uint8_t *)buf->base,
                                (size_t)nread);
  if (rv < 0) {
    say("conn %u: nghttp2: %s", conn->id, nghttp2_strerror((int)rv));
    conn_close(conn, UV_EPROTO, "HTTP/2 error");
    return;
  }
  conn_flush(conn);
}

/* ---- shutdown --------------------------------------------------------------- */

static void on_listener_closed(uv_handle_t *h) {
  (void)h;
  say("listener closed: no new connections");
}

static void on_stopping(uvctx_watch_t *w, int err) {
  int sig = uvctx_signal_received(srv.root);

  (void)w;
  (void)err;
  srv.is_stopping = 1;
  srv.stop_ms = uvctx_now();
  say("shutdown phase 1 (%s): GOAWAY, no new streams; %u connections open, "
      "%u calls in flight; grace period %llu ms",
      sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "uvctx_shutdown",
      srv.conns_open, srv.in_flight, (unsigned long long)opt.grace_ms);
  uvctx_release(srv.stopping); /* the pending watches on it keep it alive */
  srv.stopping = NULL;
}

static void on_drained(uvctx_watch_t *w, int err) {
  (void)w;
  (void)err;
  say("drained: every context under the root is released");
  uvctx_release(srv.root);
  srv.root = NULL;
}

/* root is done: the grace period is over (UV_ETIMEDOUT), a second signal
 * came, or everything below it finished in time. */
static void on_root_done(uvctx_watch_t *w, int err) {
  (void)w;
  if (srv.conns_open == 0)
    say("shutdown phase 2: every connection finished %llu ms into the grace "
        "period, nothing to cancel",
        (unsigned long long)(uvctx_now() - srv.stop_ms));
  else
    say("shutdown phase 2 (%s): cancelling %u calls on %u connections",
        err == UV_ETIMEDOUT ? "grace period over" : "second signal",
        srv.in_flight, srv.conns_open);
  uvctx_drain(srv.root, &srv.drain_watch, on_drained);
}

/* ---- accepting -------------------------------------------------------------- */

static void free_handle(uv_handle_t *h) { free(h->data); }

static void on_connection(uv_stream_t *listener, int status) {
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1000}};
  conn_t *conn;

  if (status < 0) {
    say("accept failed: %s", uv_strerror(status));
    return;
  }
  conn = calloc(1, sizeof(*conn));
  if (conn == NULL)
    abort();
  uv_tcp_init(&srv.loop, &conn->tcp);
  conn->tcp.data = conn;
  conn->refs = 1;
  if (uv_accept(listener, (uv_stream_t *)&conn->tcp) != 0 ||
      uvctx_with_cancel(&srv.loop, srv.root, &conn->ctx) != 0 ||
      nghttp2_session_server_new(&conn->session, callbacks, conn) != 0) {
    uvctx_release(conn->ctx);
    uv_close((uv_handle_t *)&conn->tcp, free_handle);
    return;
  }
  /* Without it Nagle's algorithm holds a small answer back until the
   * client's delayed ACK: ~40 ms on every call. */
  uv_tcp_nodelay(&conn->tcp, 1);
  conn->id = ++srv.next_conn_id;
  conn->reason = "?";
  srv.conns_open++;
  conn->done_watch.data = conn;
  conn->done_watching =
      uvctx_watch(conn->ctx, &conn->done_watch, on_conn_done) == 0;
  conn->stop_watch.data = conn;
  conn->stop_watching =
      uvctx_watch(srv.stopping, &conn->stop_watch, on_conn_stopping) == 0;
  if (!opt.quiet)
    say("conn %u: accepted", conn->id);
  nghttp2_submit_settings(conn->session, NGHTTP2_FLAG_NONE, settings, 1);
  uv_read_start((uv_stream_t *)&conn->tcp, on_alloc, on_read);
  conn_flush(conn);
}

/* ---- main ------------------------------------------------------------------- */

static int usage(const char *argv0) {
  fprintf(stderr,
          "usage: %s [-a ADDR] [-p PORT] [-g GRACE_MS] [-m MAX_MS] [-q]\n"
          "  -a  address to listen on (default 127.0.0.1)\n"
          "  -p  port (default 50051; 0 picks a free one)\n"
          "  -g  grace period at shutdown (default 5000 ms)\n"
          "  -m  a call's longest time, whatever its grpc-timeout (default: "
          "no limit)\n"
          "  -q  log only the calls that do not end OK\n",
          argv0);
  return 2;
}

int main(int argc, char **argv) {
  static const int stop_signals[] = {SIGINT, SIGTERM};
  struct sockaddr_storage addr;
  int len = sizeof(addr), c, rc, port;

  while ((c = getopt(argc, argv, "a:p:g:m:qh")) != -1) {
    switch (c) {
    case 'a': opt.addr = optarg; break;
    case 'p': opt.port = atoi(optarg); break;
    case 'g': opt.grace_ms = strtoull(optarg, NULL, 10); break;
    case 'm': opt.max_ms = strtoull(optarg, NULL, 10); break;
    case 'q': opt.quiet = 1; break;
    default: return usage(argv[0]);
    }
  }
  if (optind != argc || opt.port < 0 || opt.port > 65535)
    return usage(argv[0]);

  signal(SIGPIPE, SIG_IGN);
  srv.start_ms = uvctx_now();
  uv_loop_init(&srv.loop);
  if (nghttp2_session_callbacks_new(&callbacks) != 0)
    return 1;
  nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks,
                                                          on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks,
                                                            on_data_chunk);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks,
                                                       on_frame_recv);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks,
                                                         on_stream_close);

  rc = uvctx_with_shutdown(&srv.loop, uvctx_background(), stop_signals, 2,
                           opt.grace_ms, &srv.stopping, &srv.root);
  if (rc != 0) {
    fprintf(stderr, "uvctx_with_shutdown: %s\n", uv_strerror(rc));
    return 1;
  }

  uv_tcp_init(&srv.loop, &srv.listener);
  if ((rc = uv_ip4_addr(opt.addr, opt.port, (struct sockaddr_in *)&addr)) !=
          0 &&
      (rc = uv_ip6_addr(opt.addr, opt.port, (struct sockaddr_in6 *)&addr)) != 0)
    goto fail;
  if ((rc = uv_tcp_bind(&srv.listener, (struct sockaddr *)&addr, 0)) != 0 ||
      (rc = uv_listen((uv_stream_t *)&srv.listener, 511, on_connection)) != 0)
    goto fail;
  uv_tcp_getsockname(&srv.listener, (struct sockaddr *)&addr, &len);
  port = ntohs(((struct sockaddr_in *)&addr)->sin_port);
  say("listening on %s:%d (h2c; grace period %llu ms, pid %d)", opt.addr, port,
      (unsigned long long)opt.grace_ms, (int)getpid());

  /* Phase 1 closes the listener; the watches run in this order. */
  uvctx_close_on_done(srv.stopping, (uv_handle_t *)&srv.listener,
                      &srv.listener_watch, on_listener_closed);
  uvctx_watch(srv.stopping, &srv.stopping_watch, on_stopping);
  uvctx_watch(srv.root, &srv.root_watch, on_root_done);

  uv_run(&srv.loop, UV_RUN_DEFAULT);

  nghttp2_session_callbacks_del(callbacks);
  rc = uv_loop_close(&srv.loop);
  say("loop closed: uv_loop_close() = %d; %lu calls: %lu OK, %lu deadline "
      "exceeded, %lu cancelled by the peer, %lu cancelled by shutdown, %lu "
      "lost with their connection, %lu other",
      rc, srv.calls, srv.ok, srv.deadline, srv.peer_cancel,
      srv.shutdown_cancel, srv.lost, srv.other);
  return rc == 0 ? 0 : 1;

fail:
  fprintf(stderr, "grpc-server: cannot listen on %s:%d: %s\n", opt.addr,
          opt.port, uv_strerror(rc));
  uv_close((uv_handle_t *)&srv.listener, NULL);
  uvctx_release(srv.stopping);
  uvctx_release(srv.root);
  uv_run(&srv.loop, UV_RUN_DEFAULT);
  nghttp2_session_callbacks_del(callbacks);
  uv_loop_close(&srv.loop);
  return 1;
}
