/* Value and without-cancel contexts: no loop, no handles, never cancelled
 * themselves; they only add a link to the chain that uvctx_value() walks. */
#include "uvctx-int.h"

static int new_plain(uvctx_t *parent, int kind, size_t size, uvctx_t **out) {
  uvctx_t *ctx = uvctx__malloc(size);

  if (ctx == NULL)
    return UV_ENOMEM;
  atomic_init(&ctx->state, 0);
  atomic_init(&ctx->refs, 1);
  ctx->kind = (uint8_t)kind;
  ctx->flags = 0;
  ctx->parent = uvctx_retain(parent);
  uvctx__adopt(parent);
  /* A value context reports its parent's state; a without-cancel context,
   * and everything below it that is not cancellable, is never done. */
  ctx->owner = kind == UVCTX__VALUE ? parent->owner : NULL;
  *out = ctx;
  return 0;
}

int uvctx_with_value(uvctx_t *parent, const void *key, void *value,
                     uvctx_t **out) {
  uvctx__value_t *v;
  uvctx_t *ctx;
  int err;

  if (parent == NULL || key == NULL || out == NULL)
    return UV_EINVAL;
  err = new_plain(parent, UVCTX__VALUE, sizeof(uvctx__value_t), &ctx);
  if (err != 0)
    return err;
  v = (uvctx__value_t *)ctx;
  v->key = key;
  v->value = value;
  *out = ctx;
  return 0;
}

int uvctx_without_cancel(uvctx_t *parent, uvctx_t **out) {
  if (parent == NULL || out == NULL)
    return UV_EINVAL;
  return new_plain(parent, UVCTX__WITHOUT_CANCEL, sizeof(uvctx_t), out);
}

/* The nearest definition of key up from ctx: an iterative walk, except that
 * an any-context looks in each of its parents in turn. */
static int lookup(const uvctx_t *ctx, const void *key, void **value) {
  for (; ctx != NULL; ctx = ctx->parent) {
    if (ctx->kind == UVCTX__VALUE && uvctx__as_value(ctx)->key == key) {
      *value = uvctx__as_value(ctx)->value;
      return 1;
    }
    if (ctx->kind == UVCTX__ANY) {
      const uvctx__any_t *any = uvctx__as_any(ctx);
      size_t i;
      for (i = 0; i < any->count; i++)
        if (lookup(any->parents[i], key, value))
          return 1;
      return 0;
    }
  }
  return 0;
}

void *uvctx_value(const uvctx_t *ctx, const void *key) {
  void *value = NULL;

  if (key != NULL)
    lookup(ctx, key, &value);
  return value;
}
