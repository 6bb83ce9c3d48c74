/* Acting on libuv handles and requests when a context is done: watches
 * whose callback closes a handle or cancels a request instead of calling
 * the user. */
#include "uvctx-int.h"

static void close_when_done(uvctx_watch_t *w, int err) {
  (void)err;
  if (!uv_is_closing(w->target.handle))
    uv_close(w->target.handle, w->close_cb);
}

int uvctx_close_on_done(uvctx_t *ctx, uv_handle_t *handle, uvctx_watch_t *w,
                        uv_close_cb close_cb) {
  if (ctx == NULL || handle == NULL || w == NULL || uv_is_closing(handle))
    return UV_EINVAL;
  if (uvctx__owner(ctx) != NULL && handle->loop != uvctx__owner(ctx)->lp->loop)
    return UV_EINVAL;
  if (uvctx__watch_pending(w))
    return UV_EBUSY;
  w->target.handle = handle;
  w->close_cb = close_cb;
  return uvctx_watch(ctx, w, close_when_done);
}

static void cancel_when_done(uvctx_watch_t *w, int err) {
  (void)err;
  /* UV_EBUSY when the request already runs or is done: nothing to do. */
  uv_cancel(w->target.req);
}

int uvctx_cancel_on_done(uvctx_t *ctx, uv_req_t *req, uvctx_watch_t *w) {
  if (ctx == NULL || req == NULL || w == NULL)
    return UV_EINVAL;
  switch (req->type) {
  case UV_FS:
  case UV_WORK:
  case UV_GETADDRINFO:
  case UV_GETNAMEINFO:
  case UV_RANDOM:
    break;
  default:
    return UV_EINVAL;
  }
  if (uvctx__watch_pending(w))
    return UV_EBUSY;
  w->target.req = req;
  return uvctx_watch(ctx, w, cancel_when_done);
}
