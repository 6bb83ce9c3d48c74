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
 * epoch), for tests that compare them with the server's. The call itself
 * is call.c, which the HTTP server sample uses too. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "call.h"
#include "uvctx.h"

enum { EXIT_USAGE = 64 };

static struct {
  uv_loop_t loop;
  uv_timer_t cancel_timer;
  uvctx_t *ctx; /* the call: its deadline is the budget */
  int exit_code;
  uint64_t start_ms;
} cli;

static void say(const char *fmt, ...) {
  char line[512];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  fprintf(stderr, "[%6llu ms] grpc-client: %s\n",
          (unsigned long long)(uvctx_now() - cli.start_ms), line);
}

static void on_call_log(const char *line, void *arg) {
  (void)arg;
  say("%s", line);
}

/* The call is over: print its outcome. */
static void on_call_finished(const grpc_result_t *r, void *arg) {
  (void)arg;
  if (r->status == GRPC_OK)
    printf("OK %.*s\n", (int)r->body_len, (const char *)r->body);
  else if (r->local)
    printf("%s (local)\n", grpc_status_name(r->status));
  else
    printf("%s: %s\n", grpc_status_name(r->status), r->message);
  fflush(stdout);
  say("finished: %s wall=%.3f", grpc_status_name(r->status), grpc_wall_ms());
  cli.exit_code = r->status;
  uv_close((uv_handle_t *)&cli.cancel_timer, NULL);
}

static void on_cancel_timer(uv_timer_t *t) {
  (void)t;
  say("-c: cancelling the call wall=%.3f", grpc_wall_ms());
  uvctx_cancel(cli.ctx);
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
  const char *host, *method, *message = "";
  char authority[80];

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
  method = argv[optind + 2];
  if (argc - optind == 4)
    message = argv[optind + 3];
  if (port <= 0 || port > 65535 ||
      (uv_ip4_addr(host, port, (struct sockaddr_in *)&addr) != 0 &&
       uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr) != 0))
    return usage(argv[0]);
  snprintf(authority, sizeof(authority), "%s:%d", host, port);

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
    say("call %s: budget %llu ms deadline_wall=%.3f", method,
        (unsigned long long)budget_ms,
        grpc_wall_ms() + ((double)deadline - (double)uv_hrtime() / 1e6));
  else
    say("call %s: no deadline", method);
  uv_timer_init(&cli.loop, &cli.cancel_timer);
  if (have_cancel)
    uv_timer_start(&cli.cancel_timer, on_cancel_timer, cancel_ms, 0);
  rc = grpc_call_start(&cli.loop, cli.ctx, (struct sockaddr *)&addr, authority,
                       method, message, strlen(message), on_call_finished,
                       on_call_log, NULL);
  if (rc != 0) {
    printf("UNAVAILABLE: connect: %s\n", uv_strerror(rc));
    cli.exit_code = GRPC_UNAVAILABLE;
    uv_close((uv_handle_t *)&cli.cancel_timer, NULL);
  }

  uv_run(&cli.loop, UV_RUN_DEFAULT);

  uvctx_release(cli.ctx);
  uv_run(&cli.loop, UV_RUN_DEFAULT);
  rc = uv_loop_close(&cli.loop);
  if (rc != 0) {
    fprintf(stderr, "grpc-client: uv_loop_close() = %d\n", rc);
    return 1;
  }
  return cli.exit_code;
}
