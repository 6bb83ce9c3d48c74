/* Any-of contexts (Node's AbortSignal.any, .NET's linked token sources): a
 * cancellable context with one link in each parent's list of children. It
 * leaves every list when released, so short-lived any-contexts of long-lived
 * parents leave nothing behind. */
#include "uvctx-int.h"

int uvctx_with_any(uv_loop_t *loop, uvctx_t *const *parents, size_t count,
                   uvctx_t **out) {
  uvctx__cancel_t *c;
  size_t i;
  int err;

  if (loop == NULL || parents == NULL || out == NULL || count == 0)
    return UV_EINVAL;
  for (i = 0; i < count; i++)
    if (parents[i] == NULL)
      return UV_EINVAL;
  err = uvctx__new_cancellable(loop, parents, count, UVCTX__ANY,
                               sizeof(uvctx__any_t), &c);
  if (err != 0)
    return err;
  c->lp->nany++;
  uvctx__made(c);
  *out = &c->ctx;
  return 0;
}
