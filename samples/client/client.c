/* An HTTP client whose whole exchange runs under ONE deadline:
 *
 *   resolve (uv_getaddrinfo)  ->  connect  ->  send a GET  ->  read the answer
 *
 * One context, uvctx_with_timeout(TIMEOUT_MS), covers all four steps. When
 * its deadline passes, whichever step is running stops: the pending
 * getaddrinfo is uv_cancel'ed (uvctx_cancel_on_done) and the socket is closed
 * (uvctx_close_on_done), which fails a pending connect, write or read with
 * UV_ECANCELED. The end of the exchange, good or bad, is also "the context is
 * done": finish() cancels it, and the same close_on_done closes the socket.
 *
 * Usage: client HOST PORT PATH TIMEOUT_MS
 * Prints "HTTP <status> after <n> ms" and the body, or "timed out after N ms".
 * Exits 0 with a response, 2 on timeout, 1 on any other error. */
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uvctx.h"

static uv_loop_t loop;
static uvctx_t *ctx; /* the one deadline */
static uint64_t timeout_ms, start_ms;

static uv_getaddrinfo_t resolve_req;
static uvctx_watch_t resolve_watch; /* uvctx_cancel_on_done(ctx, resolve_req) */
static uv_tcp_t sock;
static uvctx_watch_t sock_watch; /* uvctx_close_on_done(ctx, sock) */
static uv_connect_t connect_req;
static uv_write_t write_req;
static char request[1024];

static http_parser parser;
static int status_code, complete;
static char body[65536];
static size_t body_len;

static int finished, result; /* result: 0, or why it failed */

/* The exchange is over: record why and finish the context, which closes the
 * socket. The first reason wins. */
static void finish(int err) {
  if (finished)
    return;
  finished = 1;
  result = err;
  uvctx_cancel_cause(ctx, err);
}

/* ---- the response ---------------------------------------------------------- */

static int on_body(http_parser *p, const char *at, size_t len) {
  (void)p;
  if (len > sizeof(body) - 1 - body_len)
    len = sizeof(body) - 1 - body_len;
  memcpy(body + body_len, at, len);
  body_len += len;
  return 0;
}

static int on_message_complete(http_parser *p) {
  status_code = p->status_code;
  complete = 1;
  return 0;
}

static const http_parser_settings settings = {
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static char read_buf[65536];

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)h;
  (void)hint;
  *buf = uv_buf_init(read_buf, sizeof(read_buf));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  (void)s;
  if (nread < 0) {
    if (nread == UV_EOF)
      http_parser_execute(&parser, &settings, NULL, 0); /* end of body */
    finish(complete ? 0 : (int)nread);
    return;
  }
  http_parser_execute(&parser, &settings, buf->base, (size_t)nread);
  if (complete)
    finish(0);
  else if (HTTP_PARSER_ERRNO(&parser) != HPE_OK)
    finish(UV_EPROTO);
}

/* ---- connect and send ------------------------------------------------------- */

static void on_written(uv_write_t *req, int status) {
  (void)req;
  if (status < 0)
    finish(status); /* UV_ECANCELED if the deadline closed the socket */
}

static void on_connected(uv_connect_t *req, int status) {
  uv_buf_t buf = uv_buf_init(request, (unsigned)strlen(request));

  (void)req;
  if (status < 0) {
    finish(status);
    return;
  }
  http_parser_init(&parser, HTTP_RESPONSE);
  uv_write(&write_req, (uv_stream_t *)&sock, &buf, 1, on_written);
  uv_read_start((uv_stream_t *)&sock, on_alloc, on_read);
}

static void on_resolved(uv_getaddrinfo_t *req, int status,
                        struct addrinfo *res) {
  int rc;

  (void)req;
  uvctx_unwatch(&resolve_watch); /* done: nothing left to cancel */
  if (status < 0 || uvctx_err(ctx) != 0) {
    finish(status < 0 ? status : UV_ECANCELED); /* UV_ECANCELED: deadline */
    uv_freeaddrinfo(res);
    return;
  }
  rc = uv_tcp_connect(&connect_req, &sock, res->ai_addr, on_connected);
  uv_freeaddrinfo(res);
  if (rc != 0)
    finish(rc);
}

/* ---- main ------------------------------------------------------------------- */

int main(int argc, char **argv) {
  struct addrinfo hints;
  int rc;

  if (argc != 5) {
    fprintf(stderr, "usage: %s HOST PORT PATH TIMEOUT_MS\n", argv[0]);
    return 1;
  }
  timeout_ms = strtoull(argv[4], NULL, 10);
  snprintf(request, sizeof(request),
           "GET %s HTTP/1.1\r\n"
           "Host: %s:%s\r\n"
           "User-Agent: uvctx-client\r\n"
           "Connection: close\r\n"
           "\r\n",
           argv[3], argv[1], argv[2]);

  start_ms = uvctx_now();
  uv_loop_init(&loop);
  /* The one deadline for resolve + connect + send + receive. */
  uvctx_with_timeout(&loop, uvctx_background(), timeout_ms, &ctx);

  uv_tcp_init(&loop, &sock);
  uvctx_close_on_done(ctx, (uv_handle_t *)&sock, &sock_watch, NULL);

  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  rc = uv_getaddrinfo(&loop, &resolve_req, on_resolved, argv[1], argv[2],
                      &hints);
  if (rc == 0)
    uvctx_cancel_on_done(ctx, (uv_req_t *)&resolve_req, &resolve_watch);
  else
    finish(rc);

  uv_run(&loop, UV_RUN_DEFAULT);

  /* Only a deadline finishes the context without finish(). */
  if (!finished || uvctx_err(ctx) == UV_ETIMEDOUT)
    result = UV_ETIMEDOUT;
  uvctx_release(ctx);
  uv_run(&loop, UV_RUN_DEFAULT);
  rc = uv_loop_close(&loop);
  if (rc != 0)
    fprintf(stderr, "client: uv_loop_close() = %s\n", uv_err_name(rc));

  if (result == UV_ETIMEDOUT) {
    printf("timed out after %llu ms\n", (unsigned long long)timeout_ms);
    return 2;
  }
  if (result != 0) {
    printf("error: %s after %llu ms\n", uv_strerror(result),
           (unsigned long long)(uvctx_now() - start_ms));
    return 1;
  }
  body[body_len] = '\0';
  printf("HTTP %d after %llu ms\n%s", status_code,
         (unsigned long long)(uvctx_now() - start_ms), body);
  return rc == 0 ? 0 : 1;
}
