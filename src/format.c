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

/* ".with_signal(2, 15)": the first few signal numbers, then "...". */
static int format_signals(const uvctx__signals_t *s, char seg[SEGMENT_MAX]) {
  int n = snprintf(seg, SEGMENT_MAX, ".with_signal(");
  unsigned int i;

  for (i = 0; i < s->count && i < 6; i++)
    n += snprintf(seg + n, (size_t)(SEGMENT_MAX - n), "%s%d", i ? ", " : "",
                  s->signums[i]);
  n += snprintf(seg + n, (size_t)(SEGMENT_MAX - n), "%s)",
                s->count > 6 ? ", ..." : "");
  return n;
}

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
  case UVCTX__WITHOUT_CANCEL:
    return snprintf(seg, SEGMENT_MAX, ".without_cancel");
  case UVCTX__SIGNAL:
    return format_signals(uvctx__signals_of(ctx), seg);
  case UVCTX__ANY:
    /* Its first parent's ancestry is the one written before it. */
    return snprintf(seg, SEGMENT_MAX, ".with_any(%zu)",
                    uvctx__as_any(ctx)->count);
  default:
    return snprintf(seg, SEGMENT_MAX, ".with_shutdown(%" PRIu64 "ms)",
                    uvctx__as_shutdown(ctx)->grace_ms);
  }
}

static const char *const event_names[UVCTX_DONE_REASON_COUNT] = {
    "?", "cancel", "deadline", "signal", "shutdown began",
    "grace period over", "shutdown asked again", "shutdown over early"};

static const char *const via_names[UVCTX_VIA_COUNT] = {"self", "parent",
                                                       "any", "loop"};

/* What follows the chain of a context but a root: " #17", and once done
 * " done 53ms ago: cancel at server.c:210 of #3 (via parent)". Written as
 * snprintf does, at most len bytes. */
static int format_tail(const uvctx_t *ctx, uint64_t now, char *buf,
                       size_t len) {
  uvctx_done_info_t info;
  int n;

  if (uvctx_done_info(ctx, &info) != 0)
    return snprintf(buf, len, " #%" PRIu64, ctx->id);
  n = snprintf(buf, len, " #%" PRIu64 " done %" PRIu64 "ms ago: %s%s%s",
               ctx->id, now > info.when_ms ? now - info.when_ms : 0,
               event_names[info.reason], info.site != NULL ? " at " : "",
               info.site != NULL ? info.site : "");
  if (info.via != UVCTX_VIA_SELF)
    n += snprintf((size_t)n < len ? buf + n : NULL,
                  (size_t)n < len ? len - (size_t)n : 0,
                  " of #%" PRIu64 " (via %s)", info.origin_id,
                  via_names[info.via]);
  return n;
}

int uvctx_format(const uvctx_t *ctx, char *buf, size_t len) {
  char seg[SEGMENT_MAX];
  uint64_t now = uvctx_now();
  size_t total = 0;
  size_t chain;
  size_t end;
  const uvctx_t *c;

  if (ctx == NULL || (buf == NULL && len != 0))
    return UV_EINVAL;
  for (c = ctx; c != NULL; c = c->parent)
    total += (size_t)format_segment(c, now, seg);
  chain = total;
  /* A root is its name alone: its id is fixed. */
  if (!uvctx__is_root(ctx)) /* measured: a size of 0 writes nothing */
    total += (size_t)format_tail(ctx, now, seg, 0);
  /* Only a chain of tens of millions of contexts gets here (some 43 million
   * value contexts, 2.7 GB and over a minute): checked once by hand, not in
   * the test suite. */
  if (total > INT32_MAX)
    return UV_E2BIG;
  if (len == 0)
    return (int)total;

  end = chain;
  for (c = ctx; c != NULL; c = c->parent) {
    size_t n = (size_t)format_segment(c, now, seg);
    size_t start = end - n;

    if (start < len - 1)
      memcpy(buf + start, seg, (n < len - 1 - start ? n : len - 1 - start));
    end = start;
  }
  if (chain < len && !uvctx__is_root(ctx))
    format_tail(ctx, now, buf + chain, len - chain);
  buf[total < len - 1 ? total : len - 1] = '\0';
  return (int)total;
}
