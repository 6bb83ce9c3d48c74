/* The measuring harness shared by bench/uvctx_bench.c and bench/raw_libuv.c
 * (header-only: every function is static). bench/go/main.go and
 * bench/node/bench.mjs follow the same policy, so that their numbers compare:
 *
 *   - calibrate: run the workload with n = 1, 2, 4, ... ops (the warm-up)
 *     until one run takes a quarter of the target time, then size n so that
 *     one run takes the target time (default 50 ms; --smoke: 2 ms);
 *   - repeat that run --reps times (default 5; --smoke: 1) and report the
 *     median of the per-op times.
 *
 * Output: one line per result, `name<TAB>value<TAB>unit`; lines that start
 * with '#' are comments. Options: --smoke, --only NAME (a result name, or a
 * prefix of one ending at a '/'), --time MS, --reps N, --turn N (ops per
 * loop turn in the create/cancel/release workloads, default 64). */
#ifndef UVCTX_BENCH_HARNESS_H
#define UVCTX_BENCH_HARNESS_H

#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

static struct {
  int smoke;
  const char *only;
  double target_ns;
  int reps;
  unsigned int turn;
  int samples; /* latency samples per repetition (cancel + delivery) */
} opt = {0, NULL, 50e6, 5, 64, 2000};

static void usage(const char *argv0) {
  fprintf(stderr,
          "usage: %s [--smoke] [--only NAME] [--time MS] [--reps N] "
          "[--turn N] [--list]\n",
          argv0);
  exit(2);
}

static int list_only; /* --list: print the result names, measure nothing */

static void parse_args(int argc, char **argv) {
  int i;

  for (i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--smoke") == 0) {
      opt.smoke = 1;
      opt.target_ns = 2e6;
      opt.reps = 1;
      opt.samples = 100;
    } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
      opt.only = argv[++i];
    } else if (strcmp(argv[i], "--time") == 0 && i + 1 < argc) {
      opt.target_ns = atof(argv[++i]) * 1e6;
    } else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
      opt.reps = atoi(argv[++i]);
    } else if (strcmp(argv[i], "--turn") == 0 && i + 1 < argc) {
      opt.turn = (unsigned int)atoi(argv[++i]);
    } else if (strcmp(argv[i], "--list") == 0) {
      list_only = 1;
    } else {
      usage(argv[0]);
    }
  }
  if (opt.target_ns <= 0 || opt.reps < 1 || opt.turn < 1)
    usage(argv[0]);
}

/* s starts with prefix, ending at a '/' or at the end of s. */
static int has_prefix(const char *s, const char *prefix) {
  size_t n = strlen(prefix);
  return strncmp(s, prefix, n) == 0 &&
         (s[n] == '\0' || s[n] == '/' || (n > 0 && prefix[n - 1] == '/'));
}

/* Whether the result `name` is to be measured. */
static int wanted(const char *name) {
  return opt.only == NULL || has_prefix(name, opt.only);
}

/* Whether any result under `group` (a name prefix ending in '/', or a full
 * name) may be wanted: the setup of a group runs only then. */
static int group_wanted(const char *group) {
  if (list_only)
    return 1;
  return opt.only == NULL || has_prefix(group, opt.only) ||
         strncmp(opt.only, group, strlen(group)) == 0;
}

static void emit(const char *name, double value, const char *unit) {
  if (list_only) {
    printf("%s\t-\t%s\n", name, unit);
  } else if (value == (double)(int64_t)value && value > 1e5) {
    printf("%s\t%.0f\t%s\n", name, value, unit);
  } else {
    printf("%s\t%.2f\t%s\n", name, value, unit);
  }
  fflush(stdout);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a;
  double y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof(*v), cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a;
  uint64_t y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static double percentile(uint64_t *v, int n, double p) {
  qsort(v, (size_t)n, sizeof(*v), cmp_u64);
  return (double)v[(int)(p * (n - 1))];
}

typedef void (*op_fn)(void *arg, uint64_t n);

static double run_ns(op_fn fn, void *arg, uint64_t n) {
  uint64_t t0 = uv_hrtime();
  fn(arg, n);
  return (double)(uv_hrtime() - t0);
}

/* Measures fn (which runs n ops) and prints the median ns per op. after, if
 * not NULL, runs after every timed run, untimed (to let the loop finish what
 * the last few ops left, so that runs do not leak into each other). */
static void measure(const char *name, op_fn fn, void (*after)(void *),
                    void *arg) {
  double ns[64];
  double t;
  uint64_t n = 1;
  int r, reps = opt.reps > 64 ? 64 : opt.reps;

  if (!wanted(name))
    return;
  if (list_only) {
    emit(name, 0, "ns/op");
    return;
  }
  for (;;) {
    t = run_ns(fn, arg, n);
    if (after != NULL)
      after(arg);
    if (t >= opt.target_ns / 4 || n >= ((uint64_t)1 << 40))
      break;
    if (t < opt.target_ns / 400)
      n *= 16;
    else
      n *= 2;
  }
  n = (uint64_t)((double)n * opt.target_ns / (t > 1 ? t : 1));
  if (n < 1)
    n = 1;
  for (r = 0; r < reps; r++) {
    ns[r] = run_ns(fn, arg, n) / (double)n;
    if (after != NULL)
      after(arg);
  }
  emit(name, median(ns, reps), "ns/op");
}

/* Peak resident set size of this process so far, in bytes. */
static double peak_rss_bytes(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_maxrss * 1024.0;
}

/* An opaque register dependency: keeps the compiler from folding busy work
 * (Go's x /= x + 1 loops in BenchmarkCommonParentCancel) away. */
static inline int64_t busy100(int64_t x) {
  int i;
  for (i = 0; i < 100; i++) {
    __asm__ volatile("" : "+r"(x));
    x /= x + 1;
  }
  return x;
}

/* The cross-thread latency workloads pin the loop thread and the cancelling
 * thread to two different CPUs (when there are two), so that every sample
 * measures the same thing: waking a loop blocked in epoll_wait on another
 * core. Unpinned, the scheduler sometimes puts both threads on one core,
 * where the wake-up is a plain context switch, and the results move by 5x
 * from run to run. Needs _GNU_SOURCE (pthread_setaffinity_np). */
static int pin_cpus[2] = {-1, -1};

static int pick_cpus(void) {
  cpu_set_t set;
  int cpu, k = 0;

  if (pthread_getaffinity_np(pthread_self(), sizeof(set), &set) != 0)
    return 0;
  for (cpu = 0; cpu < CPU_SETSIZE && k < 2; cpu++)
    if (CPU_ISSET(cpu, &set))
      pin_cpus[k++] = cpu;
  return k == 2;
}

/* Pins the calling thread to pin_cpus[which]; saves the old mask in old. */
static void pin_self(int which, cpu_set_t *old) {
  cpu_set_t set;

  if (old != NULL)
    pthread_getaffinity_np(pthread_self(), sizeof(*old), old);
  if (pin_cpus[which] < 0)
    return;
  CPU_ZERO(&set);
  CPU_SET(pin_cpus[which], &set);
  pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static void unpin_self(const cpu_set_t *old) {
  pthread_setaffinity_np(pthread_self(), sizeof(*old), old);
}

#endif /* UVCTX_BENCH_HARNESS_H */
