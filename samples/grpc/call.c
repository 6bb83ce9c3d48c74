/* One unary gRPC call over h2c under a uvctx context (see call.h). */
#include "call.h"

#include <ctype.h>
#include <nghttp2/nghttp2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NV(name, value)                                                        \
  {                                                                            \
    (uint8_t *)(name), (uint8_t *)(value), sizeof(name) - 1, strlen(value),    \
        NGHTTP2_NV_FLAG_NO_COPY_NAME                                           \
  }

typedef struct {
  uv_tcp_t tcp;
  uv_connect_t connect;
  uvctx_t *ctx; /* the call's context, retained until the call is over */
  uvctx_watch_t watch;
  int watching;
  nghttp2_session *session;
  int32_t stream_id;
  int rst_sent; /* we reset the stream: its close is ours, not the server's */
  char authority[80];
  char *method;
  uint8_t *request; /* prefix + message */
  size_t request_len, request_off;
  uint8_t *answer; /* DATA received, prefix included */
  size_t answer_len;
  int http_status, grpc_status; /* -1 until received */
  char grpc_message[256];
  unsigned writes;
  int finished; /* done has been called */
  int closing;  /* the socket is closing or closed */
  grpc_done_cb done;
  grpc_log_cb log;
  void *arg;
} call_t;

double grpc_wall_ms(void) {
  struct timespec ts;

  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

const char *grpc_status_name(int code) {
  static const char *const names[] = {
      "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
      "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
      "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
      "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};

  return code >= 0 && code <= 16 ? names[code] : "?";
}

static void say(call_t *c, const char *fmt, ...) {
  char line[512];
  va_list ap;

  if (c->log == NULL)
    return;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  c->log(line, c->arg);
}

/* ---- the connection ------------------------------------------------------- */

static void on_closed(uv_handle_t *h) {
  call_t *c = h->data;

  nghttp2_session_del(c->session);
  free(c->method);
  free(c->request);
  free(c->answer);
  free(c);
}

/* Closes the socket once the call is over and what is queued is written (an
 * RST_STREAM). */
static void maybe_close(call_t *c) {
  if (!c->finished || c->closing || c->writes > 0)
    return;
  c->closing = 1;
  uv_close((uv_handle_t *)&c->tcp, on_closed);
}

/* The call is over: report its outcome, once. */
static void finish(call_t *c, int status, int local, const char *fmt, ...) {
  grpc_result_t r = {.status = status, .local = local};
  char text[512];
  va_list ap;

  if (c->finished)
    return;
  c->finished = 1;
  va_start(ap, fmt);
  vsnprintf(text, sizeof(text), fmt, ap);
  va_end(ap);
  r.message = text;
  if (status == GRPC_OK) {
    r.body = c->answer + 5;
    r.body_len = c->answer_len - 5;
  }
  if (c->watching)
    uvctx_unwatch(&c->watch);
  c->watching = 0;
  c->done(&r, c->arg);
  uvctx_release(c->ctx);
  c->ctx = NULL;
  maybe_close(c);
}

typedef struct {
  uv_write_t req;
  uv_buf_t buf;
} write_t;

static void on_written(uv_write_t *w, int status) {
  write_t *wr = (write_t *)w;
  call_t *c = w->data;

  free(wr->buf.base);
  free(wr);
  c->writes--;
  if (status < 0)
    finish(c, GRPC_UNAVAILABLE, 0, "write failed: %s", uv_strerror(status));
  maybe_close(c);
}

/* Sends what nghttp2 has to send, in one write. */
static void flush(call_t *c) {
  write_t *wr;
  const uint8_t *data;
  ssize_t n;
  size_t cap = 0;

  if (c->closing || c->session == NULL)
    return;
  wr = calloc(1, sizeof(*wr));
  if (wr == NULL)
    abort();
  while ((n = nghttp2_session_mem_send(c->session, &data)) > 0) {
    if (wr->buf.len + (size_t)n > cap) {
      cap = (wr->buf.len + (size_t)n) * 2;
      wr->buf.base = realloc(wr->buf.base, cap);
      if (wr->buf.base == NULL)
        abort();
    }
    memcpy(wr->buf.base + wr->buf.len, data, (size_t)n);
    wr->buf.len += (size_t)n;
  }
  if (wr->buf.len == 0 || n < 0) {
    free(wr->buf.base);
    free(wr);
    if (n < 0)
      finish(c, GRPC_INTERNAL, 0, "nghttp2: %s", nghttp2_strerror((int)n));
    maybe_close(c);
    return;
  }
  c->writes++;
  wr->req.data = c;
  if (uv_write(&wr->req, (uv_stream_t *)&c->tcp, &wr->buf, 1, on_written) !=
      0) {
    free(wr->buf.base);
    free(wr);
    c->writes--;
    finish(c, GRPC_UNAVAILABLE, 0, "write failed");
  }
}

/* ---- the call's context ---------------------------------------------------- */

/* The context is done before the answer: tell the server with
 * RST_STREAM(CANCEL) and report at once; the server's answer, if any, is not
 * waited for. */
static void on_call_done(uvctx_watch_t *w, int err) {
  call_t *c = w->data;
  const char *why = err == UV_ETIMEDOUT ? "deadline passed" : "cancelled";

  c->watching = 0;
  if (c->stream_id > 0 && c->session != NULL) {
    nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, c->stream_id,
                              NGHTTP2_CANCEL);
    c->rst_sent = 1;
    say(c, "%s: RST_STREAM(CANCEL) sent wall=%.3f", why, grpc_wall_ms());
  } else {
    say(c, "%s before the request was sent wall=%.3f", why, grpc_wall_ms());
  }
  flush(c); /* queues the RST_STREAM: the socket closes once it is out */
  if (err == UV_ETIMEDOUT)
    finish(c, GRPC_DEADLINE_EXCEEDED, 1, "deadline exceeded");
  else
    finish(c, GRPC_CANCELLED, 1, "cancelled");
}

/* ---- nghttp2 callbacks ----------------------------------------------------- */

static ssize_t read_request(nghttp2_session *session, int32_t id, uint8_t *buf,
                            size_t length, uint32_t *flags,
                            nghttp2_data_source *source, void *user_data) {
  call_t *c = user_data;
  size_t n = c->request_len - c->request_off;

  (void)session;
  (void)id;
  (void)source;
  if (n > length)
    n = length;
  memcpy(buf, c->request + c->request_off, n);
  c->request_off += n;
  if (c->request_off == c->request_len)
    *flags |= NGHTTP2_DATA_FLAG_EOF;
  return (ssize_t)n;
}

/* grpc-message is percent-encoded on the wire ("Deadline%20exceeded"). */
static void percent_decode(char *out, const char *in) {
  unsigned byte;

  while (*in != '\0') {
    if (in[0] == '%' && isxdigit((unsigned char)in[1]) &&
        isxdigit((unsigned char)in[2]) && sscanf(in + 1, "%2x", &byte) == 1) {
      *out++ = (char)byte;
      in += 3;
    } else {
      *out++ = *in++;
    }
  }
  *out = '\0';
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame,
                     const uint8_t *name, size_t namelen, const uint8_t *value,
                     size_t valuelen, uint8_t flags, void *user_data) {
  call_t *c = user_data;
  char v[256];

  (void)session;
  (void)flags;
  if (frame->hd.stream_id != c->stream_id)
    return 0;
  if (valuelen >= sizeof(v))
    valuelen = sizeof(v) - 1;
  memcpy(v, value, valuelen);
  v[valuelen] = '\0';
  if (namelen == 7 && memcmp(name, ":status", 7) == 0)
    c->http_status = atoi(v);
  else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0)
    c->grpc_status = atoi(v);
  else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0)
    percent_decode(c->grpc_message, v);
  return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags,
                         int32_t stream_id, const uint8_t *data, size_t len,
                         void *user_data) {
  call_t *c = user_data;
  uint8_t *p;

  (void)session;
  (void)flags;
  if (stream_id != c->stream_id || c->answer_len + len > (1u << 20))
    return 0;
  p = realloc(c->answer, c->answer_len + len);
  if (p == NULL)
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  memcpy(p + c->answer_len, data, len);
  c->answer = p;
  c->answer_len += len;
  return 0;
}

/* The stream is over: the server's answer is complete (or it reset it). */
static int on_stream_close(nghttp2_session *session, int32_t stream_id,
                           uint32_t error_code, void *user_data) {
  call_t *c = user_data;

  (void)session;
  if (stream_id != c->stream_id || c->finished || c->rst_sent)
    return 0;
  if (error_code != NGHTTP2_NO_ERROR && c->grpc_status < 0)
    finish(c, error_code == NGHTTP2_CANCEL ? GRPC_CANCELLED : GRPC_UNAVAILABLE,
           0, "the server reset the stream (%s)",
           nghttp2_http2_strerror(error_code));
  else if (c->grpc_status < 0)
    finish(c, GRPC_INTERNAL, 0, "no grpc-status (HTTP %d)", c->http_status);
  else if (c->grpc_status != GRPC_OK)
    finish(c, c->grpc_status, 0, "%s", c->grpc_message);
  else if (c->answer_len < 5)
    finish(c, GRPC_INTERNAL, 0, "OK without a message");
  else
    finish(c, GRPC_OK, 0, "");
  return 0;
}

/* ---- connecting and sending -------------------------------------------------- */

/* One buffer for every call of a thread (the HTTP server runs a loop per
 * thread): a read is parsed before the next one. */
static _Thread_local char read_buf[65536];

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)h;
  (void)hint;
  *buf = uv_buf_init(read_buf, sizeof(read_buf));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  call_t *c = s->data;
  ssize_t rv;

  if (c->finished)
    return; /* given up: whatever the server says now is not waited for */
  if (nread < 0) {
    finish(c, GRPC_UNAVAILABLE, 0, "connection closed: %s",
           uv_strerror((int)nread));
    return;
  }
  rv = nghttp2_session_mem_recv(c->session, (const uint8_t *)buf->base,
                                (size_t)nread);
  if (rv < 0) {
    finish(c, GRPC_INTERNAL, 0, "nghttp2: %s", nghttp2_strerror((int)rv));
    return;
  }
  flush(c);
}

static void on_connect(uv_connect_t *req, int status) {
  call_t *c = req->data;
  nghttp2_session_callbacks *cbs;
  nghttp2_data_provider body = {.read_callback = read_request};
  char timeout[UVCTX_GRPC_TIMEOUT_LEN];
  nghttp2_nv hdrs[] = {NV(":method", "POST"),
                       NV(":scheme", "http"),
                       NV(":path", c->method),
                       NV(":authority", c->authority),
                       NV("content-type", "application/grpc"),
                       NV("te", "trailers"),
                       NV("user-agent", "uvctx-grpc-client/0.1"),
                       NV("grpc-timeout", "")};
  size_t nhdrs = sizeof(hdrs) / sizeof(hdrs[0]);
  int rc;

  if (c->finished)
    return; /* the context was done first and closed the socket */
  if (status < 0) {
    finish(c, GRPC_UNAVAILABLE, 0, "connect: %s", uv_strerror(status));
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  if (nghttp2_session_callbacks_new(&cbs) != 0)
    abort();
  nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs,
                                                            on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
  rc = nghttp2_session_client_new(&c->session, cbs, c);
  nghttp2_session_callbacks_del(cbs);
  if (rc != 0)
    abort();
  nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, NULL, 0);

  /* What is left of the budget, computed now: connecting took some. */
  rc = uvctx_grpc_timeout(c->ctx, timeout, sizeof(timeout));
  if (rc == UV_ETIMEDOUT) {
    finish(c, GRPC_DEADLINE_EXCEEDED, 1, "deadline exceeded");
    return;
  }
  if (rc > 0) {
    hdrs[nhdrs - 1].value = (uint8_t *)timeout;
    hdrs[nhdrs - 1].valuelen = (size_t)rc;
    say(c, "sending grpc-timeout=%s wall=%.3f", timeout, grpc_wall_ms());
  } else {
    nhdrs--; /* no deadline: no header */
  }
  body.source.ptr = c;
  c->stream_id =
      nghttp2_submit_request(c->session, NULL, hdrs, nhdrs, &body, NULL);
  if (c->stream_id < 0) {
    finish(c, GRPC_INTERNAL, 0, "nghttp2: %s", nghttp2_strerror(c->stream_id));
    return;
  }
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  flush(c);
}

int grpc_call_start(uv_loop_t *loop, uvctx_t *ctx, const struct sockaddr *addr,
                    const char *authority, const char *method, const void *msg,
                    size_t len, grpc_done_cb done, grpc_log_cb log, void *arg) {
  call_t *c = calloc(1, sizeof(*c));
  int rc;

  if (c == NULL || (c->method = strdup(method)) == NULL ||
      (c->request = malloc(5 + len)) == NULL) {
    if (c != NULL)
      free(c->method);
    free(c);
    return UV_ENOMEM;
  }
  c->request[0] = 0; /* not compressed */
  c->request[1] = (uint8_t)(len >> 24);
  c->request[2] = (uint8_t)(len >> 16);
  c->request[3] = (uint8_t)(len >> 8);
  c->request[4] = (uint8_t)len;
  memcpy(c->request + 5, msg, len);
  c->request_len = 5 + len;
  c->http_status = c->grpc_status = -1;
  snprintf(c->authority, sizeof(c->authority), "%s", authority);
  c->done = done;
  c->log = log;
  c->arg = arg;
  c->ctx = uvctx_retain(ctx);

  uv_tcp_init(loop, &c->tcp);
  c->tcp.data = c;
  c->connect.data = c;
  rc = uv_tcp_connect(&c->connect, &c->tcp, addr, on_connect);
  if (rc != 0) {
    uvctx_release(c->ctx);
    c->closing = 1;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
    return rc;
  }
  /* A context that is already done is reported from the loop, as always. */
  c->watch.data = c;
  c->watching = uvctx_watch(c->ctx, &c->watch, on_call_done) == 0;
  return 0;
}
