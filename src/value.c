/* Value and without-cancel contexts: no loop, no handles, never cancelled
 * themselves; they only add a link to the chain that uvctx_value() walks. */
#include "uvctx-int.h"

static int new_plain(uvctx_t *parent, int kind, size_t size, uvctx_t **out) {
  uvctx_t *ctx = uvctx__malloc(size);

  if (ctx == NULL)
    return UV_ENOMEM;
  atomic_init(&ctx->state, 0);
  ctx->kind = (uint8_t)kind;
  ctx->id = uvctx__next_id();
  uvctx__refs_init(ctx);
  ctx->flags = 0;
  atomic_init(&ctx->seen, 0);
  ctx->parent = uvctx__retain(parent);
  uvctx__adopt(parent);
  /* A value context reports its parent's state; a without-cancel context,
   * and everything below it that is not cancellable, is never done. */
  if (kind == UVCTX__VALUE)
    ((uvctx__value_t *)ctx)->owner = uvctx__owner(parent);
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

struct lookup {
  const void *key;
  void *value;
};

static int match(const uvctx_t *ctx, void *arg) {
  struct lookup *l = arg;

  if (ctx->kind == UVCTX__VALUE && uvctx__as_value(ctx)->key == l->key) {
    l->value = uvctx__as_value(ctx)->value;
    return UVCTX__WALK_STOP;
  }
  return UVCTX__WALK_UP;
}

/* The nearest definition of key up from ctx, in the order of
 * uvctx__walk_up(): each distinct ancestor once (ancestors.c). */
void *uvctx_value(const uvctx_t *ctx, const void *key) {
  struct lookup l = {key, NULL};

  if (ctx != NULL && key != NULL)
    uvctx__walk_up(ctx, match, &l);
  return l.value;
}
