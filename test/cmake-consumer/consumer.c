/* Built by test/cmake-consumer/CMakeLists.txt: a child context cancelled
 * with its parent, seen by a watch on the loop. uv_loop_init() and uv_run()
 * come from libuv, which uvctx::uvctx must bring along. */
#include <stdio.h>
#include <uvctx.h>

static int seen;

static void on_done(uvctx_watch_t *w, int err) {
  (void)w;
  seen = err;
}

int main(void) {
  uv_loop_t loop;
  uvctx_t *parent, *child;
  uvctx_watch_t w = {0};
  int rc;

  if (uv_loop_init(&loop) != 0 ||
      uvctx_with_cancel(&loop, uvctx_background(), &parent) != 0 ||
      uvctx_with_timeout(&loop, parent, 60000, &child) != 0 ||
      uvctx_watch(child, &w, on_done) != 0)
    return 1;
  uvctx_cancel(parent);
  uv_run(&loop, UV_RUN_DEFAULT);
  uvctx_release(child);
  uvctx_release(parent);
  uv_run(&loop, UV_RUN_DEFAULT);
  rc = uv_loop_close(&loop);
  printf("consumer: child done with %s, uv_loop_close() = %d\n",
         seen ? uv_err_name(seen) : "nothing", rc);
  return seen == UV_ECANCELED && rc == 0 ? 0 : 1;
}
