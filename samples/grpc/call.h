/* One unary gRPC call over h2c (libuv + libnghttp2) under a uvctx context:
 * the client side of the gRPC samples, shared by samples/grpc/client and the
 * HTTP server's /grpc and /hedge endpoints (samples/http-server).
 *
 * A call opens its own connection (one per call keeps it simple: a real
 * client would keep one per backend and open a stream per call). Right
 * before the request's headers go out, uvctx_grpc_timeout() turns what is
 * left of the context into the grpc-timeout header, so the server knows its
 * budget with the time spent before the call (and connecting) taken off.
 * When the context is done before the answer (its deadline passed, or it was
 * cancelled, for example by its parent), the call sends RST_STREAM(CANCEL),
 * so the server's work stops too, and reports DEADLINE_EXCEEDED or CANCELLED
 * at once, without waiting for the server. */
#ifndef SAMPLES_GRPC_CALL_H
#define SAMPLES_GRPC_CALL_H

#include <stddef.h>
#include <stdint.h>

#include "uvctx.h"

/* The gRPC status codes the samples name. */
enum {
  GRPC_OK = 0,
  GRPC_CANCELLED = 1,
  GRPC_UNKNOWN = 2,
  GRPC_DEADLINE_EXCEEDED = 4,
  GRPC_INTERNAL = 13,
  GRPC_UNAVAILABLE = 14
};

/* How a call ended. Valid during the done callback only. */
typedef struct {
  int status;          /* the gRPC status code */
  int local;           /* 1: the context was done first, we gave up */
  const char *message; /* the server's grpc-message, or what went wrong */
  const uint8_t *body; /* the answer's message (OK only; no 5-byte prefix) */
  size_t body_len;
} grpc_result_t;

/* Called once per call, on the loop thread, never inside grpc_call_start().
 * After it returns the call frees itself once its socket is closed. */
typedef void (*grpc_done_cb)(const grpc_result_t *result, void *arg);

/* Called with one line per event of the call (what grpc-timeout went out,
 * RST_STREAM sent), for logs; may be NULL. */
typedef void (*grpc_log_cb)(const char *line, void *arg);

/* Starts a unary call of `method` (a path such as /uvctx.Test/Sleep) with
 * the raw message msg/len to the h2c server at addr, under ctx (retained
 * until the call is over: the caller may release its reference). authority
 * is the :authority header ("host:port"). done is called exactly once, also
 * when ctx is already done. Returns 0, or UV_ENOMEM / a uv_tcp_connect error
 * (then done is never called). Loop thread (ctx's loop). */
int grpc_call_start(uv_loop_t *loop, uvctx_t *ctx, const struct sockaddr *addr,
                    const char *authority, const char *method, const void *msg,
                    size_t len, grpc_done_cb done, grpc_log_cb log, void *arg);

/* The name of a gRPC status code ("DEADLINE_EXCEEDED"), "?" if unknown. */
const char *grpc_status_name(int code);

/* Wall-clock time in ms since the epoch, for logs that tests compare across
 * processes on one machine. */
double grpc_wall_ms(void);

#endif
