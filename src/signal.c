/* Signal contexts (Go's signal.NotifyContext): one unref'd uv_signal_t per
 * signal, in the context's own block. */
#include <signal.h>

#include "uvctx-int.h"

#ifndef NSIG
#define NSIG 65
#endif

/* Rejects what uv_signal_start would fail on, and a count whose block
 * (uvctx__signals_size) would pass 4 GiB, before anything is built or
 * signums is read. */
int uvctx__signals_check(const int *signums, size_t count) {
  size_t i;

  if (count > UINT32_MAX / (sizeof(uv_signal_t) + sizeof(int)))
    return UV_EINVAL;
  if (count > 0 && signums == NULL)
    return UV_EINVAL;
  for (i = 0; i < count; i++)
    if (signums[i] <= 0 || signums[i] >= NSIG || signums[i] == SIGKILL ||
        signums[i] == SIGSTOP)
      return UV_EINVAL;
  return 0;
}

static void on_signal(uv_signal_t *handle, int signum) {
  uvctx__cancel_t *c = handle->data;
  uvctx__signals_t *s = uvctx__signals_of(&c->ctx);
  int none = 0;

  atomic_compare_exchange_strong(&s->received, &none, signum);
  if (c->ctx.kind == UVCTX__SHUTDOWN)
    uvctx__shutdown_on_signal(uvctx__as_shutdown(&c->ctx), signum);
  else
    uvctx__cancel(c, UV_ECANCELED, 0, UVCTX_DONE_SIGNAL, NULL, 0);
}

/* Loop thread, c not yet handed out. Starts listening unless c is born done;
 * signals were checked, so uv_signal_start cannot fail. */
void uvctx__signals_start(uvctx__cancel_t *c, uvctx__signals_t *s,
                          uv_signal_t *handles, const int *signums,
                          size_t count) {
  int *numbers = (int *)(handles + count);
  size_t i;

  atomic_init(&s->received, 0);
  s->count = (unsigned int)count;
  s->handles = handles;
  s->signums = numbers;
  for (i = 0; i < count; i++) {
    numbers[i] = signums[i];
    uv_signal_init(c->lp->loop, &handles[i]);
    uv_unref((uv_handle_t *)&handles[i]);
    handles[i].data = c;
    if (atomic_load_explicit(&c->ctx.state, memory_order_acquire) == 0)
      uv_signal_start(&handles[i], on_signal, signums[i]);
  }
}

int uvctx_with_signal(uv_loop_t *loop, uvctx_t *parent, const int *signums,
                      size_t count, uvctx_t **out) {
  uvctx__cancel_t *c;
  uvctx__signal_t *sc;
  int err;

  if (loop == NULL || parent == NULL || signums == NULL || out == NULL ||
      count == 0)
    return UV_EINVAL;
  err = uvctx__signals_check(signums, count);
  if (err != 0)
    return err;
  err = uvctx__new_cancellable(loop, &parent, 1, UVCTX__SIGNAL,
                               sizeof(uvctx__signal_t) +
                                   uvctx__signals_size(count),
                               &c);
  if (err != 0)
    return err;
  sc = (uvctx__signal_t *)c;
  uvctx__signals_start(c, &sc->signals, (uv_signal_t *)(sc + 1), signums,
                       count);
  uvctx__made(c);
  *out = &c->ctx;
  return 0;
}

int uvctx_signal_received(const uvctx_t *ctx) {
  uvctx__signals_t *s;

  if (ctx == NULL || (s = uvctx__signals_of(ctx)) == NULL)
    return 0;
  return atomic_load_explicit(&s->received, memory_order_acquire);
}
