/* One unary gRPC call over h2c (libuv + libnghttp2) under one uvctx context.
 *
 * The call's budget is a context (uvctx_with_timeout, -t). Right before the
 * request's headers go out, uvctx_grpc_timeout() turns what is left of it
 * into the grpc-timeout header, so the server knows its budget: the time
 * spent connecting is already taken off. When the context is done before the
 * answer (the deadline passed, or -c cancelled it), the client sends
 * RST_STREAM(CANCEL), so the server's work stops too, and reports
 * DEADLINE_EXCEEDED or CANCELLED at once, without waiting for the server.
 *
 * Usage: client [-t BUDGET_MS] [-c CANCEL_MS] ADDR PORT METHOD [MESSAGE]
 *   ADDR     a numeric IPv4 or IPv6 address
 *   METHOD   the path, for example /uvctx.Test/Sleep
 *   MESSAGE  the request message, raw bytes (default: empty)
 *   -t       the call's budget (default: none, no grpc-timeout sent)
 *   -c       cancel the call after this many ms (uvctx_cancel)
 *
 * Prints the outcome on stdout: "OK <answer>", or the status name and the
 * server's grpc-message, or "DEADLINE_EXCEEDED (local)" / "CANCELLED
 * (local)" when the client gave up first. Exits with the gRPC status code
 * (0 OK, 1 CANCELLED, 4 DEADLINE_EXCEEDED, 14 UNAVAILABLE, ...), 64 on a
 * usage error. Events go to stderr with wall-clock times (ms since the
 * epoch), for tests that compare them with the server's. */
#include <ctype.h>
#include <nghttp2/nghttp2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "uvctx.h"

#define NV(name, value)                                                        \
  {                                                                            \
    (uint8_t *)(name), (uint8_t *)(value), sizeof(name) - 1, strlen(value),    \
        NGHTTP2_NV_FLAG_NO_COPY_NAME                                           \
  }

enum {
  GRPC_OK = 0,
  GRPC_CANCELLED = 1,
  GRPC_UNKNOWN = 2,
  GRPC_DEADLINE_EXCEEDED = 4,
  GRPC_INTERNAL = 13,
  GRPC_UNAVAILABLE = 14,
  EXIT_USAGE = 64
};

static struct {
  uv_loop_t loop;
  uv_tcp_t tcp;
  uv_connect_t connect;
  uv_timer_t cancel_timer;
  uvctx_t *ctx; /* the call: its deadline is the budget */
  uvctx_watch_t watch;
  int watching;
  nghttp2_session *session;
  int32_t stream_id;
  int rst_sent; /* we reset the stream: its close is ours, not the server's */
  char authority[80];
  const char *method;
  uint8_t *request; /* prefix + message */
  size_t request_len, request_off;
  uint8_t *answer; /* DATA received, prefix included */
  size_t answer_len;
  int http_status, grpc_status; /* -1 until received */
  char grpc_message[256];
  unsigned writes;
  int finished;   /* the outcome is printed */
  int closing;    /* the socket is closing or closed */
  int exit_code;
  uint64_t start_ms;
} cli;

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
  fprintf(stderr, "[%6llu ms] grpc-client: %s\n",
          (unsigned long long)(uvctx_now() - cli.start_ms), line);
}

static const char *status_name(int code) {
  static const char *const names[] = {
      "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
      "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
      "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
      "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};

  return code >= 0 && code <= 16 ? names[code] : "?";
}

/* ---- the connection ------------------------------------------------------- */

static void on_closed(uv_handle_t *h) {
  (void)h;
  nghttp2_session_del(cli.session);
  cli.session = NULL;
}

/* Closes the socket once what is queued is written (an RST_STREAM). */
static void maybe_close(void) {
  if (!cli.finished || cli.closing || cli.writes > 0)
    return;
  cli.closing = 1;
  uv_close((uv_handle_t *)&cli.tcp, on_closed);
}

/* The call is over: print its outcome, once. */
static void finish(int code, const char *fmt, ...) {
  char text[512];
  va_list ap;

  if (cli.finished)
    return;
  cli.finished = 1;
  cli.exit_code = code;
  va_start(ap, fmt);
  vsnprintf(text, sizeof(text), fmt, ap);
  va_end(ap);
  printf("%s\n", text);
  fflush(stdout);
  say("finished: %s wall=%.3f", status_name(code), wall_ms());
  if (cli.watching)
    uvctx_unwatch(&cli.watch);
  cli.watching = 0;
  uv_close((uv_handle_t *)&cli.cancel_timer, NULL);
  maybe_close();
}

typedef struct {
  uv_write_t req;
  uv_buf_t buf;
} write_t;

static void on_written(uv_write_t *w, int status) {
  write_t *wr = (write_t *)w;

  free(wr->buf.base);
  free(wr);
  cli.writes--;
  if (status < 0)
    finish(GRPC_UNAVAILABLE, "UNAVAILABLE: write failed: %s",
           uv_strerror(status));
  maybe_close();
}

/* Sends what nghttp2 has to send, in one write. */
static void flush(void) {
  write_t *wr;
  const uint8_t *data;
  ssize_t n;
  size_t cap = 0;

  if (cli.closing || cli.session == NULL)
    return;
  wr = calloc(1, sizeof(*wr));
  if (wr == NULL)
    abort();
  while ((n = nghttp2_session_mem_send(cli.session, &data)) > 0) {
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
      finish(GRPC_INTERNAL, "INTERNAL: nghttp2: %s", nghttp2_strerror((int)n));
    maybe_close();
    return;
  }
  cli.writes++;
  if (uv_write(&wr->req, (uv_stream_t *)&cli.tcp, &wr->buf, 1, on_written) !=
      0) {
    free(wr->buf.base);
    free(wr);
    cli.writes--;
    finish(GRPC_UNAVAILABLE, "UNAVAILABLE: write failed");
  }
}

/* ---- the call's context ---------------------------------------------------- */

/* The context is done before the answer: tell the server with
 * RST_STREAM(CANCEL) and report at once; the server's answer, if any, is not
 * waited for. */
static void on_call_done(uvctx_watch_t *w, int err) {
  (void)w;
  cli.watching = 0;
  if (cli.stream_id > 0 && cli.session != NULL) {
    nghttp2_submit_rst_stream(cli.session, NGHTTP2_FLAG_NONE, cli.stream_id,
                              NGHTTP2_CANCEL);
    cli.rst_sent = 1;
    say("%s: RST_STREAM(CANCEL) sent wall=%.3f",
        err == UV_ETIMEDOUT ? "deadline passed" : "cancelled", wall_ms());
  } else {
    say("%s before the request was sent wall=%.3f",
        err == UV_ETIMEDOUT ? "deadline passed" : "cancelled", wall_ms());
  }
  flush(); /* queues the RST_STREAM: the socket closes once it is out */
  if (err == UV_ETIMEDOUT)
    finish(GRPC_DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED (local)");
  else
    finish(GRPC_CANCELLED, "CANCELLED (local)");
}

static void on_cancel_timer(uv_timer_t *t) {
  (void)t;
  say("-c: cancelling the call wall=%.3f", wall_ms());
  uvctx_cancel(cli.ctx);
}

/* ---- nghttp2 callbacks ----------------------------------------------------- */

static ssize_t read_request(nghttp2_session *session, int32_t id, uint8_t *buf,
                            size_t length, uint32_t *flags,
                            nghttp2_data_source *source, void *user_data) {
  size_t n = cli.request_len - cli.request_off;

  (void)session;
  (void)id;
  (void)source;
  (void)user_data;
  if (n > length)
    n = length;
  memcpy(buf, cli.request + cli.request_off, n);
  cli.request_off += n;
  if (cli.request_off == cli.request_len)
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
  char v[256];

  (void)session;
  (void)flags;
  (void)user_data;
  if (frame->hd.stream_id != cli.stream_id)
    return 0;
  if (valuelen >= sizeof(v))
    valuelen = sizeof(v) - 1;
  memcpy(v, value, valuelen);
  v[valuelen] = '\0';
  if (namelen == 7 && memcmp(name, ":status", 7) == 0)
    cli.http_status = atoi(v);
  else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0)
    cli.grpc_status = atoi(v);
  else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0)
    percent_decode(cli.grpc_message, v);
  return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags,
                         int32_t stream_id, const uint8_t *data, size_t len,
                         void *user_data) {
  uint8_t *p;

  (void)session;
  (void)flags;
  (void)user_data;
  if (stream_id != cli.stream_id || cli.answer_len + len > (1u << 20))
    return 0;
  p = realloc(cli.answer, cli.answer_len + len);
  if (p == NULL)
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  memcpy(p + cli.answer_len, data, len);
  cli.answer = p;
  cli.answer_len += len;
  return 0;
}

/* The stream is over: the server's answer is complete (or it reset it). */
static int on_stream_close(nghttp2_session *session, int32_t stream_id,
                           uint32_t error_code, void *user_data) {
  (void)session;
  (void)user_data;
  if (stream_id != cli.stream_id || cli.finished || cli.rst_sent)
    return 0;
  if (error_code != NGHTTP2_NO_ERROR && cli.grpc_status < 0)
    finish(error_code == NGHTTP2_CANCEL ? GRPC_CANCELLED : GRPC_UNAVAILABLE,
           "%s: the server reset the stream (%s)",
           error_code == NGHTTP2_CANCEL ? "CANCELLED" : "UNAVAILABLE",
           nghttp2_http2_strerror(error_code));
  else if (cli.grpc_status < 0)
    finish(GRPC_INTERNAL, "INTERNAL: no grpc-status (HTTP %d)",
           cli.http_status);
  else if (cli.grpc_status != GRPC_OK)
    finish(cli.grpc_status, "%s: %s", status_name(cli.grpc_status),
           cli.grpc_message);
  else if (cli.answer_len < 5)
    finish(GRPC_INTERNAL, "INTERNAL: OK without a message");
  else
    finish(GRPC_OK, "OK %.*s", (int)(cli.answer_len - 5), cli.answer + 5);
  return 0;
}

/* ---- connecting and sending -------------------------------------------------- */

static char read_buf[65536];

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)h;
  (void)hint;
  *buf = uv_buf_init(read_buf, sizeof(read_buf));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  ssize_t rv;

  (void)s;
  if (cli.finished)
    return; /* given up: whatever the server says now is not waited for */
  if (nread < 0) {
    finish(GRPC_UNAVAILABLE, "UNAVAILABLE: connection closed: %s",
           uv_strerror((int)nread));
    return;
  }
  rv = nghttp2_session_mem_recv(cli.session, (const uint8_t *)buf->base,
                                (size_t)nread);
  if (rv < 0) {
    finish(GRPC_INTERNAL, "INTERNAL: nghttp2: %s", nghttp2_strerror((int)rv));
    return;
  }
  flush();
}

static void on_connect(uv_connect_t *req, int status) {
  nghttp2_session_callbacks *cbs;
  nghttp2_data_provider body = {.read_callback = read_request};
  char timeout[UVCTX_GRPC_TIMEOUT_LEN];
  nghttp2_nv hdrs[] = {NV(":method", "POST"),
                       NV(":scheme", "http"),
                       NV(":path", cli.method),
                       NV(":authority", cli.authority),
                       NV("content-type", "application/grpc"),
                       NV("te", "trailers"),
                       NV("user-agent", "uvctx-grpc-client/0.1"),
                       NV("grpc-timeout", "")};
  size_t nhdrs = sizeof(hdrs) / sizeof(hdrs[0]);
  int rc;

  (void)req;
  if (cli.finished)
    return; /* the context was done first and closed the socket */
  if (status < 0) {
    finish(GRPC_UNAVAILABLE, "UNAVAILABLE: connect: %s", uv_strerror(status));
    return;
  }
  uv_tcp_nodelay(&cli.tcp, 1);
  if (nghttp2_session_callbacks_new(&cbs) != 0)
    abort();
  nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs,
                                                            on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
  rc = nghttp2_session_client_new(&cli.session, cbs, NULL);
  nghttp2_session_callbacks_del(cbs);
  if (rc != 0)
    abort();
  nghttp2_submit_settings(cli.session, NGHTTP2_FLAG_NONE, NULL, 0);

  /* What is left of the budget, computed now: connecting took some. */
  rc = uvctx_grpc_timeout(cli.ctx, timeout, sizeof(timeout));
  if (rc == UV_ETIMEDOUT) {
    finish(GRPC_DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED (local)");
    return;
  }
  if (rc > 0) {
    hdrs[nhdrs - 1].value = (uint8_t *)timeout;
    hdrs[nhdrs - 1].valuelen = (size_t)rc;
    say("sending grpc-timeout=%s wall=%.3f", timeout, wall_ms());
  } else {
    nhdrs--; /* no deadline: no header */
  }
  cli.stream_id =
      nghttp2_submit_request(cli.session, NULL, hdrs, nhdrs, &body, NULL);
  if (cli.stream_id < 0) {
    finish(GRPC_INTERNAL, "INTERNAL: nghttp2: %s",
           nghttp2_strerror(cli.stream_id));
    return;
  }
  uv_read_start((uv_stream_t *)&cli.tcp, on_alloc, on_read);
  flush();
}

static int usage(const char *argv0) {
  fprintf(stderr,
          "usage: %s [-t BUDGET_MS] [-c CANCEL_MS] ADDR PORT METHOD "
          "[MESSAGE]\n",
          argv0);
  return EXIT_USAGE;
}

int main(int argc, char **argv) {
  struct sockaddr_storage addr;
  uint64_t budget_ms = 0, cancel_ms = 0, deadline;
  int have_budget = 0, have_cancel = 0, c, rc, port;
  const char *host, *message = "";
  size_t msg_len;

  while ((c = getopt(argc, argv, "t:c:h")) != -1) {
    switch (c) {
    case 't': budget_ms = strtoull(optarg, NULL, 10); have_budget = 1; break;
    case 'c': cancel_ms = strtoull(optarg, NULL, 10); have_cancel = 1; break;
    default: return usage(argv[0]);
    }
  }
  if (argc - optind < 3 || argc - optind > 4)
    return usage(argv[0]);
  host = argv[optind];
  port = atoi(argv[optind + 1]);
  cli.method = argv[optind + 2];
  if (argc - optind == 4)
    message = argv[optind + 3];
  if (port <= 0 || port > 65535 ||
      (uv_ip4_addr(host, port, (struct sockaddr_in *)&addr) != 0 &&
       uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr) != 0))
    return usage(argv[0]);
  snprintf(cli.authority, sizeof(cli.authority), "%s:%d", host, port);

  msg_len = strlen(message);
  cli.request = malloc(5 + msg_len);
  if (cli.request == NULL)
    return 1;
  cli.request[0] = 0; /* not compressed */
  cli.request[1] = (uint8_t)(msg_len >> 24);
  cli.request[2] = (uint8_t)(msg_len >> 16);
  cli.request[3] = (uint8_t)(msg_len >> 8);
  cli.request[4] = (uint8_t)msg_len;
  memcpy(cli.request + 5, message, msg_len);
  cli.request_len = 5 + msg_len;
  cli.http_status = cli.grpc_status = -1;

  cli.start_ms = uvctx_now();
  uv_loop_init(&cli.loop);
  rc = have_budget ? uvctx_with_timeout(&cli.loop, uvctx_background(),
                                        budget_ms, &cli.ctx)
                   : uvctx_with_cancel(&cli.loop, uvctx_background(), &cli.ctx);
  if (rc != 0) {
    fprintf(stderr, "grpc-client: %s\n", uv_strerror(rc));
    return 1;
  }
  if (uvctx_deadline(cli.ctx, &deadline) == 1)
    say("call %s: budget %llu ms deadline_wall=%.3f", cli.method,
        (unsigned long long)budget_ms,
        wall_ms() + ((double)deadline - (double)uv_hrtime() / 1e6));
  else
    say("call %s: no deadline", cli.method);
  uv_timer_init(&cli.loop, &cli.cancel_timer);
  if (have_cancel)
    uv_timer_start(&cli.cancel_timer, on_cancel_timer, cancel_ms, 0);
  uv_tcp_init(&cli.loop, &cli.tcp);
  uv_tcp_connect(&cli.connect, &cli.tcp, (struct sockaddr *)&addr, on_connect);
  cli.watching = uvctx_watch(cli.ctx, &cli.watch, on_call_done) == 0;

  uv_run(&cli.loop, UV_RUN_DEFAULT);

  uvctx_release(cli.ctx);
  uv_run(&cli.loop, UV_RUN_DEFAULT);
  rc = uv_loop_close(&cli.loop);
  free(cli.request);
  free(cli.answer);
  if (rc != 0) {
    fprintf(stderr, "grpc-client: uv_loop_close() = %d\n", rc);
    return 1;
  }
  return cli.exit_code;
}
