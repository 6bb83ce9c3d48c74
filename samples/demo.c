/* A tour of uvctx in one process: a server context, a connection under it and
 * requests under the connection. One request outlives its deadline, one is
 * cancelled by its client, one finishes in time; then the server shuts down
 * and everything still running is cancelled through the tree, and the loop
 * closes with nothing left open.
 *
 * "Work" is a uv_timer_t standing in for a database call or an upstream
 * request; each request's watch stops its work when its context is done. */
#include <stdio.h>

#include "uvctx.h"

static uint64_t start_ms;

#define SAY(...)                                                              \
  do {                                                                        \
    printf("[%4llu ms] ", (unsigned long long)(uvctx_now() - start_ms));     \
    printf(__VA_ARGS__);                                                      \
    printf("\n");                                                             \
  } while (0)

typedef struct {
  const char *name;
  uvctx_t *ctx;
  uv_timer_t work;
  uvctx_watch_t on_done;
} request_t;

static void on_work_finished(uv_timer_t *work) {
  request_t *req = work->data;
  SAY("%s: work finished in time, answering 200", req->name);
  uvctx_unwatch(&req->on_done);
  uv_close((uv_handle_t *)&req->work, NULL);
}

/* The context is done before the work: stop the work and say why. */
static void on_request_done(uvctx_watch_t *w, int err) {
  request_t *req = w->data;
  int cause = uvctx_cause(req->ctx);
  SAY("%s: context done (%s, cause %s), stopping its work", req->name,
      uv_err_name(err), uv_err_name(cause));
  uv_close((uv_handle_t *)&req->work, NULL);
}

static void start_request(uv_loop_t *loop, request_t *req, uvctx_t *conn,
                          uint64_t timeout_ms, uint64_t work_ms) {
  char desc[160];
  uvctx_with_timeout(loop, conn, timeout_ms, &req->ctx);
  req->on_done.data = req;
  uvctx_watch(req->ctx, &req->on_done, on_request_done);
  req->work.data = req;
  uv_timer_init(loop, &req->work);
  uv_timer_start(&req->work, on_work_finished, work_ms, 0);
  uvctx_format(req->ctx, desc, sizeof(desc));
  SAY("%s: started, deadline in %llu ms, work takes %llu ms", req->name,
      (unsigned long long)timeout_ms, (unsigned long long)work_ms);
  SAY("%s: %s", req->name, desc);
}

static uvctx_t *server;
static request_t fast = {.name = "GET /fast"};
static request_t slow = {.name = "GET /slow"};
static request_t hangup = {.name = "GET /hangup"};
static request_t longpoll = {.name = "GET /longpoll"};

static void on_client_hangup(uv_timer_t *t) {
  SAY("GET /hangup: client went away, cancelling its request");
  uvctx_cancel_cause(hangup.ctx, UV_ECONNRESET);
  uv_close((uv_handle_t *)t, NULL);
}

static void on_shutdown(uv_timer_t *t) {
  SAY("server: shutting down, cancelling the whole tree");
  uvctx_cancel_cause(server, UV_ESHUTDOWN);
  uv_close((uv_handle_t *)t, NULL);
}

int main(void) {
  uv_loop_t loop;
  uv_timer_t hangup_timer, shutdown_timer;
  uvctx_t *conn;
  int rc;

  start_ms = uvctx_now();
  uv_loop_init(&loop);
  uvctx_with_cancel(&loop, uvctx_background(), &server);
  uvctx_with_timeout(&loop, server, 10000, &conn); /* idle timeout */

  start_request(&loop, &fast, conn, 200, 20);
  start_request(&loop, &slow, conn, 50, 1000);
  start_request(&loop, &hangup, conn, 1000, 1000);
  start_request(&loop, &longpoll, conn, 5000, 5000);

  uv_timer_init(&loop, &hangup_timer);
  uv_timer_start(&hangup_timer, on_client_hangup, 80, 0);
  uv_timer_init(&loop, &shutdown_timer);
  uv_timer_start(&shutdown_timer, on_shutdown, 150, 0);

  uv_run(&loop, UV_RUN_DEFAULT);

  uvctx_release(fast.ctx);
  uvctx_release(slow.ctx);
  uvctx_release(hangup.ctx);
  uvctx_release(longpoll.ctx);
  uvctx_release(conn);
  uvctx_release(server);
  uv_run(&loop, UV_RUN_DEFAULT);
  rc = uv_loop_close(&loop);
  SAY("server: every context released, uv_loop_close() = %d%s", rc,
      rc == 0 ? " (nothing left open)" : "");
  return rc == 0 ? 0 : 1;
}
