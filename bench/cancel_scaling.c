/* Cost of one cancel plus the delivery of its watch callback, with 1,000 and
 * 100,000 other contexts alive on the loop, cancelled from the loop thread and
 * from another thread. Next to it, the design uvctx avoids: one always-on
 * uv_async_t per context, where one wakeup costs a scan of every async handle
 * of the loop.
 *
 * usage: bench/cancel_scaling [samples]   (default 2000)
 * Prints p50 and p99 latencies in microseconds, and the ratio of the
 * 100,000-context p50 to the 1,000-context one. */
#include <stdio.h>
#include <stdlib.h>

#include "uvctx.h"

enum { DEFAULT_SAMPLES = 2000 };

typedef struct {
  uv_loop_t loop;
  uv_timer_t keepalive;  /* holds the loop open while it waits */
  uv_sem_t go;           /* loop thread -> canceller: cancel now */
  uv_sem_t ready;        /* canceller -> loop thread: waiting */
  int stop;
  void *target;          /* the context (or async handle) to fire */
  int use_async;         /* naive design: fire a uv_async_t */
  uint64_t t_send;       /* uv_hrtime() just before the cancel/send */
  uint64_t t_recv;       /* uv_hrtime() in the callback */
  int delivered;
} bench_t;

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a;
  uint64_t y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static double percentile_us(uint64_t *v, int n, double p) {
  qsort(v, (size_t)n, sizeof(*v), cmp_u64);
  return v[(int)(p * (n - 1))] / 1000.0;
}

static void on_watch(uvctx_watch_t *w, int err) {
  bench_t *b = w->data;
  (void)err;
  b->t_recv = uv_hrtime();
  b->delivered = 1;
}

static void on_async(uv_async_t *a) {
  bench_t *b = a->data;
  b->t_recv = uv_hrtime();
  b->delivered = 1;
}

static void fire(bench_t *b) {
  b->t_send = uv_hrtime();
  if (b->use_async)
    uv_async_send(b->target);
  else
    uvctx_cancel(b->target);
}

static void canceller(void *arg) {
  bench_t *b = arg;
  for (;;) {
    uv_sem_post(&b->ready);
    uv_sem_wait(&b->go);
    if (b->stop)
      return;
    fire(b);
  }
}

static void noop_timer(uv_timer_t *t) { (void)t; }
static void noop_async(uv_async_t *a) { (void)a; }

/* One measurement: fires `target` (from this thread or the canceller) and
 * runs the loop until the callback has run. Returns nanoseconds. */
static uint64_t one(bench_t *b, int threaded) {
  b->delivered = 0;
  if (threaded) {
    uv_sem_wait(&b->ready);
    uv_sem_post(&b->go);
  } else {
    fire(b);
  }
  while (!b->delivered)
    uv_run(&b->loop, UV_RUN_ONCE);
  return b->t_recv - b->t_send;
}

static void measure_uvctx(bench_t *b, int live, int threaded, int samples,
                          double *p50, double *p99) {
  uvctx_t **others = malloc(sizeof(*others) * (size_t)live);
  uint64_t *lat = malloc(sizeof(*lat) * (size_t)samples);
  uvctx_t *root;
  int i;

  uvctx_with_cancel(&b->loop, uvctx_background(), &root);
  for (i = 0; i < live; i++)
    uvctx_with_cancel(&b->loop, root, &others[i]);
  b->use_async = 0;
  for (i = 0; i < samples; i++) {
    uvctx_watch_t w = {.data = b};
    uvctx_t *ctx;
    uvctx_with_cancel(&b->loop, root, &ctx);
    uvctx_watch(ctx, &w, on_watch);
    b->target = ctx;
    lat[i] = one(b, threaded);
    uvctx_release(ctx);
  }
  *p50 = percentile_us(lat, samples, 0.50);
  *p99 = percentile_us(lat, samples, 0.99);
  for (i = 0; i < live; i++)
    uvctx_release(others[i]);
  uvctx_release(root);
  uv_run(&b->loop, UV_RUN_NOWAIT);
  free(others);
  free(lat);
}

static void measure_naive(bench_t *b, int live, int threaded, int samples,
                          double *p50, double *p99) {
  uv_async_t *asyncs = malloc(sizeof(*asyncs) * (size_t)live);
  uint64_t *lat = malloc(sizeof(*lat) * (size_t)samples);
  int i;

  for (i = 0; i < live; i++) {
    uv_async_init(&b->loop, &asyncs[i], i == live / 2 ? on_async : noop_async);
    asyncs[i].data = b;
    uv_unref((uv_handle_t *)&asyncs[i]);
  }
  b->use_async = 1;
  b->target = &asyncs[live / 2];
  for (i = 0; i < samples; i++)
    lat[i] = one(b, threaded);
  *p50 = percentile_us(lat, samples, 0.50);
  *p99 = percentile_us(lat, samples, 0.99);
  for (i = 0; i < live; i++)
    uv_close((uv_handle_t *)&asyncs[i], NULL);
  uv_run(&b->loop, UV_RUN_NOWAIT);
  free(asyncs);
  free(lat);
}

int main(int argc, char **argv) {
  static const int lives[] = {1000, 100000};
  int samples = argc > 1 ? atoi(argv[1]) : DEFAULT_SAMPLES;
  bench_t b = {0};
  uv_thread_t thread;
  int threaded;

  if (samples < 1) {
    fprintf(stderr, "usage: %s [samples]\n", argv[0]);
    return 2;
  }
  uv_loop_init(&b.loop);
  uv_timer_init(&b.loop, &b.keepalive);
  uv_timer_start(&b.keepalive, noop_timer, 1u << 30, 0);
  uv_sem_init(&b.go, 0);
  uv_sem_init(&b.ready, 0);
  uv_thread_create(&thread, canceller, &b);

  printf("cancel + delivery latency, %d samples, microseconds\n", samples);
  printf("%-13s %-10s %10s %10s %16s %16s\n", "from", "live", "uvctx p50",
         "uvctx p99", "async-per-ctx p50", "async-per-ctx p99");
  for (threaded = 0; threaded <= 1; threaded++) {
    double u50[2], u99[2], n50[2], n99[2];
    int k;
    for (k = 0; k < 2; k++) {
      measure_uvctx(&b, lives[k], threaded, samples, &u50[k], &u99[k]);
      measure_naive(&b, lives[k], threaded, samples, &n50[k], &n99[k]);
      printf("%-13s %-10d %10.2f %10.2f %16.2f %16.2f\n",
             threaded ? "other thread" : "loop thread", lives[k], u50[k],
             u99[k], n50[k], n99[k]);
    }
    printf("%-13s ratio 100k/1k p50: uvctx %.2fx, async-per-ctx %.2fx\n",
           threaded ? "other thread" : "loop thread", u50[1] / u50[0],
           n50[1] / n50[0]);
  }

  b.stop = 1;
  uv_sem_wait(&b.ready);
  uv_sem_post(&b.go);
  uv_thread_join(&thread);
  uv_close((uv_handle_t *)&b.keepalive, NULL);
  uv_run(&b.loop, UV_RUN_DEFAULT);
  uv_sem_destroy(&b.go);
  uv_sem_destroy(&b.ready);
  return uv_loop_close(&b.loop) == 0 ? 0 : 1;
}
