/* uvctx_format(): the ancestry of a context as text, root first (Go's
 * String).
 *
 * The chain is walked from the context up, so each segment is formatted on
 * its own and placed at its offset from the end: two walks, no allocation,
 * and no recursion however deep the tree. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "uvctx-int.h"

/* Long enough for the longest segment: two pointers or two 64-bit numbers. */
#define SEGMENT_MAX 96

static int format_segment(const uvctx_t *ctx, uint64_t now,
                          char seg[SEGMENT_MAX]) {
  uint64_t deadline;

  switch (ctx->kind) {
  case UVCTX__BACKGROUND:
    return snprintf(seg, SEGMENT_MAX, "background");
  case UVCTX__TODO:
    return snprintf(seg, SEGMENT_MAX, "todo");
  case UVCTX__CANCEL:
    return snprintf(seg, SEGMENT_MAX, ".with_cancel");
  case UVCTX__DEADLINE:
    deadline = atomic_load_explicit(&uvctx__as_deadline(ctx)->deadline,
                                    memory_order_relaxed);
    if (deadline >= now)
      return snprintf(seg, SEGMENT_MAX, ".with_deadline(%" PRIu64 " [+%" PRIu64
                      "ms])", deadline, deadline - now);
    return snprintf(seg, SEGMENT_MAX, ".with_deadline(%" PRIu64 " [-%" PRIu64
                    "ms])", deadline, now - deadline);
  case UVCTX__VALUE:
    return snprintf(seg, SEGMENT_MAX, ".with_value(%p, %p)",
                    uvctx__as_value(ctx)->key, uvctx__as_value(ctx)->value);
  default:
    return snprintf(seg, SEGMENT_MAX, ".without_cancel");
  }
}

int uvctx_format(const uvctx_t *ctx, char *buf, size_t len) {
  char seg[SEGMENT_MAX];
  uint64_t now = uvctx_now();
  size_t total = 0;
  size_t end;
  const uvctx_t *c;

  if (ctx == NULL || (buf == NULL && len != 0))
    return UV_EINVAL;
  for (c = ctx; c != NULL; c = c->parent)
    total += (size_t)format_segment(c, now, seg);
  if (total > INT32_MAX)
    return UV_E2BIG;
  if (len == 0)
    return (int)total;

  end = total;
  for (c = ctx; c != NULL; c = c->parent) {
    size_t n = (size_t)format_segment(c, now, seg);
    size_t start = end - n;

    if (start < len - 1)
      memcpy(buf + start, seg, (n < len - 1 - start ? n : len - 1 - start));
    end = start;
  }
  buf[total < len - 1 ? total : len - 1] = '\0';
  return (int)total;
}
