/* The grpc-timeout codec: uvctx_grpc_timeout() writes what is left of a
 * context's deadline as a grpc-timeout value, uvctx_with_grpc_timeout() makes
 * a deadline context from one.
 *
 * The clock runs while a test runs, so every assertion about a value is made
 * against uv_hrtime() read just before (t0) and just after (t1) the call under
 * test: an encoded value is never more than the time left at t0 and loses
 * less than one of its units against the time left at t1; a parsed deadline
 * lies between t0 and t1 plus the value, rounded up to the millisecond.
 * The deadlines of the tables sit at least a factor of two away from the
 * boundaries between units, so that a stalled test cannot change the unit.
 * Nothing asserts speed.
 *
 * Values are compared in nanoseconds as unsigned __int128: "99999999H" is
 * 3.6e20 ns, more than 64 bits hold. UV_ENOMEM is swept in test_alloc.c,
 * with every other constructor, under every kind of parent. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "helpers.h"
#include "test.h"

typedef unsigned __int128 u128;

#define NS_PER_MS 1000000u
#define MAX_COUNT 99999999u
#define HOUR_MS (3600u * 1000u)
/* 99999999 hours, the longest time a value can say. */
#define MAX_VALUE_MS ((uint64_t)MAX_COUNT * HOUR_MS)

/* ---------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------- */

/* Nanoseconds in one of unit; 0 for anything that is not a unit. */
static uint64_t unit_ns(char unit) {
  switch (unit) {
  case 'H':
    return 3600000000000u;
  case 'M':
    return 60000000000u;
  case 'S':
    return 1000000000u;
  case 'm':
    return 1000000u;
  case 'u':
    return 1000u;
  case 'n':
    return 1u;
  default:
    return 0;
  }
}

/* The test's own reading of a well-formed value of n bytes: 1 to 8 digits
 * and a unit. Returns the value in ns; stores the count and the unit. */
static u128 wire_value(const char *s, size_t n, uint64_t *count, char *unit) {
  uint64_t c = 0;
  size_t i;

  ck_assert_uint_ge(n, 2);
  ck_assert_uint_le(n, 9);
  for (i = 0; i + 1 < n; i++) {
    ck_assert_msg(s[i] >= '0' && s[i] <= '9', "not a digit in \"%s\"", s);
    c = c * 10 + (uint64_t)(s[i] - '0');
  }
  ck_assert_uint_ne(unit_ns(s[n - 1]), 0);
  *count = c;
  *unit = s[n - 1];
  return (u128)c * unit_ns(s[n - 1]);
}

static u128 ms_to_ns(uint64_t ms) { return (u128)ms * NS_PER_MS; }

/* ns / 1e6, rounded up. */
static u128 ceil_ms(u128 ns) { return (ns + NS_PER_MS - 1) / NS_PER_MS; }

/* uvctx_with_grpc_timeout() on a NUL-terminated value, asserting success. */
static uvctx_t *mk_grpc(uv_loop_t *loop, uvctx_t *parent, const char *value) {
  uvctx_t *c = NULL;
  ck_assert_int_eq(
      uvctx_with_grpc_timeout(loop, parent, value, strlen(value), &c), 0);
  ck_assert_ptr_nonnull(c);
  return c;
}

/* A deadline offset_ms from now, saturating: UINT64_MAX is "never". */
static uint64_t deadline_in(uint64_t offset_ms) {
  uint64_t now = uvctx_now();
  return offset_ms > UINT64_MAX - now ? UINT64_MAX : now + offset_ms;
}

static int never(void *arg) {
  (void)arg;
  return 0;
}

/* ---------------------------------------------------------------------------
 * Encoding: uvctx_grpc_timeout()
 * ------------------------------------------------------------------------- */

/* Time left, and the unit it must be written in: the finest whose count fits
 * 8 digits. Each unit twice, near both ends of its range (a factor of two
 * inside), then past the largest value. */
static const struct {
  uint64_t offset_ms;
  char unit;
} encode_table[] = {
    {50, 'n'},                 /* n: below 0.1 s */
    {1000, 'u'},               /* u: below 100 s (900 ms to stall) */
    {50000, 'u'},
    {200000, 'm'},             /* m: below 99999999 ms, 27.8 hours */
    {20 * HOUR_MS, 'm'},
    {60 * HOUR_MS, 'S'},       /* S: below 99999999 s, 3.2 years */
    {50000000000u, 'S'},
    {200000000000u, 'M'},      /* M: below 99999999 min, 190 years */
    {3000000000000u, 'M'},
    {12000000000000u, 'H'},    /* H: below 99999999 h, 11,400 years */
    {300000000000000u, 'H'},
    {400000000000000u, 'H'},   /* more than 99999999 h: 99999999H */
    {UINT64_MAX, 'H'},         /* a deadline that never comes: the same */
};

#define ENCODE_ROWS ((int)(sizeof(encode_table) / sizeof(encode_table[0])))

/* The value is the time left rounded down, in the finest unit that fits:
 * never more than was left before the call, and less than one unit short of
 * what was left after it (but for the largest value, which is short of what
 * is left by design). */
START_TEST(test_encode_rounds_down_in_the_finest_unit_that_fits) {
  uv_loop_t loop;
  char buf[UVCTX_GRPC_TIMEOUT_LEN];
  uint64_t dl, t0, t1, count;
  char unit;
  u128 v, u;
  int n;

  ck_assert_int_eq(uv_loop_init(&loop), 0);
  dl = deadline_in(encode_table[_i].offset_ms);
  uvctx_t *ctx = mk_deadline(&loop, uvctx_background(), dl);
  t0 = uv_hrtime();
  n = uvctx_grpc_timeout(ctx, buf, sizeof buf);
  t1 = uv_hrtime();
  ck_assert_int_gt(n, 0);
  ck_assert_uint_eq(strlen(buf), (size_t)n);
  v = wire_value(buf, (size_t)n, &count, &unit);
  u = unit_ns(unit);
  ck_assert_msg(unit == encode_table[_i].unit, "%s for %llu ms left", buf,
                (unsigned long long)encode_table[_i].offset_ms);
  ck_assert_msg(v <= ms_to_ns(dl) - t0, "%s promises more than is left", buf);
  if (count < MAX_COUNT)
    ck_assert_msg(v + u > ms_to_ns(dl) - t1, "%s lost a unit or more", buf);
  else
    ck_assert_msg(unit == 'H' && encode_table[_i].offset_ms > MAX_VALUE_MS,
                  "%s with less than that left", buf);
  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Every len below what the value needs is UV_ENOBUFS, with "" written (when
 * there is room for it) and nothing past it; the needed len works, and
 * UVCTX_GRPC_TIMEOUT_LEN is needed by the longest value.
 *
 * Time passes during the sweep, and the value it measures can change length
 * meanwhile (50 ms left is "50000000n", 8 digits, until 10 ms are left): a
 * sweep is only valid if the needed length was the same at both ends, so a
 * sweep that saw it change is done again, three times at most. */
static int enobufs_sweep(const uvctx_t *ctx, char *full) {
  char buf[UVCTX_GRPC_TIMEOUT_LEN + 4];
  size_t len, k;
  int n = uvctx_grpc_timeout(ctx, full, UVCTX_GRPC_TIMEOUT_LEN);

  ck_assert_int_gt(n, 0);
  for (len = 0; len <= (size_t)n; len++) {
    int r;
    memset(buf, 'X', sizeof buf);
    r = uvctx_grpc_timeout(ctx, buf, len);
    if (r > 0)
      return 0; /* shorter now: fits in len after all */
    ck_assert_int_eq(r, UV_ENOBUFS);
    if (len > 0)
      ck_assert_int_eq(buf[0], '\0');
    for (k = len > 0 ? 1 : 0; k < sizeof buf; k++)
      ck_assert_int_eq(buf[k], 'X');
  }
  memset(buf, 'X', sizeof buf);
  if (uvctx_grpc_timeout(ctx, buf, (size_t)n + 1) != n)
    return 0; /* its length changed */
  ck_assert_int_eq(buf[n], '\0');
  ck_assert_int_eq(buf[n + 1], 'X');
  return n;
}

START_TEST(test_encode_is_enobufs_for_every_len_below_the_needed_one) {
  uv_loop_t loop;
  char full[UVCTX_GRPC_TIMEOUT_LEN];
  int n = 0, tries;

  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *ctx = mk_deadline(&loop, uvctx_background(),
                             deadline_in(encode_table[_i].offset_ms));
  for (tries = 0; tries < 3 && n == 0; tries++)
    n = enobufs_sweep(ctx, full);
  ck_assert_msg(n > 0, "the value changed length during each of 3 sweeps");
  if (strcmp(full, "99999999H") == 0)
    ck_assert_int_eq(n + 1, UVCTX_GRPC_TIMEOUT_LEN);
  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* No deadline anywhere up the tree: 0 and "", the caller sends no header;
 * with len 0 nothing is written at all. */
START_TEST(test_encode_without_a_deadline_is_0_and_empty) {
  static int key;
  uv_loop_t loop;
  char buf[UVCTX_GRPC_TIMEOUT_LEN];

  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *cancel = mk_cancel(&loop, uvctx_background());
  uvctx_t *value = mk_value(cancel, &key, &key);
  uvctx_t *timed = mk_timeout(&loop, uvctx_background(), 60000);
  uvctx_t *without = mk_without(timed);
  uvctx_t *ctxs[] = {uvctx_background(), uvctx_todo(), cancel, value,
                     without};
  for (size_t i = 0; i < sizeof ctxs / sizeof ctxs[0]; i++) {
    memset(buf, 'X', sizeof buf);
    ck_assert_int_eq(uvctx_grpc_timeout(ctxs[i], buf, sizeof buf), 0);
    ck_assert_int_eq(buf[0], '\0');
    ck_assert_int_eq(buf[1], 'X');
    memset(buf, 'X', sizeof buf);
    ck_assert_int_eq(uvctx_grpc_timeout(ctxs[i], buf, 0), 0);
    ck_assert_int_eq(buf[0], 'X');
  }
  uvctx_release(without);
  uvctx_release(timed);
  uvctx_release(value);
  uvctx_release(cancel);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Done, for whatever reason, with or without a deadline: UV_ETIMEDOUT and
 * "", even with no room for a value (the call must not be made). */
START_TEST(test_encode_once_done_is_etimedout) {
  static int key;
  uv_loop_t loop;
  char buf[UVCTX_GRPC_TIMEOUT_LEN];
  rec_t fired;

  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *cancelled_deadline = mk_timeout(&loop, uvctx_background(), 60000);
  ck_assert_int_eq(uvctx_cancel(cancelled_deadline), 0);
  uvctx_t *cancelled = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(uvctx_cancel_cause(cancelled, UV_EPIPE), 0);
  uvctx_t *under_cancelled = mk_value(cancelled, &key, &key);
  uvctx_t *born_done = mk_timeout(&loop, uvctx_background(), 0);
  uvctx_t *expired = mk_timeout(&loop, uvctx_background(), 2);
  rec_watch(&fired, NULL, expired);
  ck_assert(poll_until(&loop, rec_called, &fired, uvctx_now() + EVENTUALLY_MS));
  ck_assert_int_eq(fired.err, UV_ETIMEDOUT);

  uvctx_t *ctxs[] = {cancelled_deadline, cancelled, under_cancelled,
                     born_done, expired};
  for (size_t i = 0; i < sizeof ctxs / sizeof ctxs[0]; i++) {
    ck_assert_int_ne(uvctx_err(ctxs[i]), 0);
    memset(buf, 'X', sizeof buf);
    ck_assert_int_eq(uvctx_grpc_timeout(ctxs[i], buf, sizeof buf),
                     UV_ETIMEDOUT);
    ck_assert_int_eq(buf[0], '\0');
    ck_assert_int_eq(uvctx_grpc_timeout(ctxs[i], buf, 0), UV_ETIMEDOUT);
  }
  for (size_t i = 0; i < sizeof ctxs / sizeof ctxs[0]; i++)
    uvctx_release(ctxs[i]);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* A deadline that has passed is UV_ETIMEDOUT even while its context is not
 * done yet: here its loop has not run since, so its timer has not fired. */
START_TEST(test_encode_past_deadline_is_etimedout_before_the_loop_acts) {
  uv_loop_t loop, other;
  char buf[UVCTX_GRPC_TIMEOUT_LEN];
  uint64_t dl;

  ck_assert_int_eq(uv_loop_init(&loop), 0);
  ck_assert_int_eq(uv_loop_init(&other), 0);
  dl = uvctx_now() + 50;
  uvctx_t *ctx = mk_deadline(&loop, uvctx_background(), dl);
  /* Let the time pass on another loop, so that ctx's own never runs. */
  poll_until(&other, never, NULL, dl);
  ck_assert_uint_ge(uvctx_now(), dl);
  ck_assert_int_eq(uvctx_err(ctx), 0);
  ck_assert_int_eq(uvctx_grpc_timeout(ctx, buf, sizeof buf), UV_ETIMEDOUT);
  ck_assert_int_eq(buf[0], '\0');
  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&other);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* The deadline written is uvctx_deadline()'s: the earliest of the context
 * and its ancestors, through value and cancel contexts. The parent's is 10 s
 * away (an hour before the child's), so that a loaded machine never reaches
 * it during the test; that many microseconds take the 'u' unit. */
START_TEST(test_encode_writes_the_earliest_deadline_of_the_ancestry) {
  static int key;
  uv_loop_t loop;
  char buf[UVCTX_GRPC_TIMEOUT_LEN];
  uint64_t t0, count, pdl;
  char unit;
  int n;

  ck_assert_int_eq(uv_loop_init(&loop), 0);
  pdl = uvctx_now() + 10000;
  uvctx_t *parent = mk_deadline(&loop, uvctx_background(), pdl);
  uvctx_t *child = mk_timeout(&loop, parent, HOUR_MS);
  uvctx_t *value = mk_value(child, &key, &key);
  uvctx_t *leaf = mk_cancel(&loop, value);
  uvctx_t *ctxs[] = {child, value, leaf};
  for (size_t i = 0; i < sizeof ctxs / sizeof ctxs[0]; i++) {
    t0 = uv_hrtime();
    n = uvctx_grpc_timeout(ctxs[i], buf, sizeof buf);
    ck_assert_int_gt(n, 0);
    ck_assert(wire_value(buf, (size_t)n, &count, &unit) <= ms_to_ns(pdl) - t0);
    ck_assert_int_eq(unit, 'u');
  }
  uvctx_release(leaf);
  uvctx_release(value);
  uvctx_release(child);
  uvctx_release(parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_encode_null_ctx_or_buf_is_einval) {
  uv_loop_t loop;
  char buf[UVCTX_GRPC_TIMEOUT_LEN];

  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *ctx = mk_timeout(&loop, uvctx_background(), 60000);
  memset(buf, 'X', sizeof buf);
  ck_assert_int_eq(uvctx_grpc_timeout(NULL, buf, sizeof buf), UV_EINVAL);
  ck_assert_int_eq(buf[0], 'X');
  ck_assert_int_eq(uvctx_grpc_timeout(ctx, NULL, sizeof buf), UV_EINVAL);
  ck_assert_int_eq(uvctx_grpc_timeout(ctx, NULL, 0), UV_EINVAL);
  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Any thread: another thread encodes a context of this loop while it
 * lives (ThreadSanitizer sees the reads). The thread only records; the
 * checks run here. */
typedef struct {
  const uvctx_t *ctx;
  uint64_t t0;
  int n;
  char buf[UVCTX_GRPC_TIMEOUT_LEN];
} enc_job_t;

static void encode_on_thread(void *arg) {
  enc_job_t *job = arg;

  job->t0 = uv_hrtime();
  job->n = uvctx_grpc_timeout(job->ctx, job->buf, sizeof job->buf);
}

START_TEST(test_encode_from_another_thread) {
  uv_loop_t loop;
  uv_thread_t thread;
  enc_job_t job = {0};
  uint64_t dl, count;
  char unit;

  ck_assert_int_eq(uv_loop_init(&loop), 0);
  dl = uvctx_now() + 60000;
  uvctx_t *ctx = mk_deadline(&loop, uvctx_background(), dl);
  job.ctx = ctx;
  ck_assert_int_eq(uv_thread_create(&thread, encode_on_thread, &job), 0);
  ck_assert_int_eq(uv_thread_join(&thread), 0);
  ck_assert_int_gt(job.n, 0);
  ck_assert(wire_value(job.buf, (size_t)job.n, &count, &unit) <=
            ms_to_ns(dl) - job.t0);
  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Decoding: uvctx_with_grpc_timeout()
 * ------------------------------------------------------------------------- */

/* Values a peer may send: every unit at 1, at typical values (grpc-go sends
 * "99978499n" and "4999972u", grpc-js "81m") and at 8 digits; hours past
 * what 64 bits of nanoseconds hold (5124096H and up); leading zeros. */
static const char *const accepted[] = {
    "1n",        "999999n",   "1000001n",  "99978499n", "99999999n",
    "1u",        "4999972u",  "99999999u", "1m",        "81m",
    "99999999m", "1S",        "30S",       "99999999S", "1M",
    "5M",        "99999999M", "1H",        "5124095H",  "5124096H",
    "99999999H", "007S",      "00000001m", "0000001n",
};

#define ACCEPTED_ROWS ((int)(sizeof(accepted) / sizeof(accepted[0])))

/* The deadline is uv_hrtime() plus the value, rounded up to the millisecond
 * (between the readings before and after the call): the server never gives
 * up before its client. Even "1n" leaves the context alive until the next
 * millisecond. It is a deadline context of the loop, not done. */
START_TEST(test_parse_gives_now_plus_the_value_rounded_up_to_the_ms) {
  const char *value = accepted[_i];
  uv_loop_t loop;
  uint64_t t0, t1, dl, count;
  char unit;
  u128 v;

  ck_assert_int_eq(uv_loop_init(&loop), 0);
  v = wire_value(value, strlen(value), &count, &unit);
  t0 = uv_hrtime();
  uvctx_t *ctx = mk_grpc(&loop, uvctx_background(), value);
  t1 = uv_hrtime();
  dl = deadline_of(ctx);
  ck_assert_msg(ceil_ms(t0 + v) <= dl && dl <= ceil_ms(t1 + v),
                "%s: deadline %llu ms", value, (unsigned long long)dl);
  ck_assert(ms_to_ns(dl) >= t0 + v);
  ck_assert_int_eq(uvctx_err(ctx), 0);
  ck_assert_ptr_eq(uvctx_loop(ctx), &loop);
  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* 99999999H is 3.6e20 ns: counted in milliseconds it is kept exactly, and
 * neither wraps nor saturates. */
START_TEST(test_parse_hours_beyond_64_bits_of_ns_keep_their_order) {
  uv_loop_t loop;

  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *a = mk_grpc(&loop, uvctx_background(), "5124095H");
  uvctx_t *b = mk_grpc(&loop, uvctx_background(), "5124096H");
  uvctx_t *c = mk_grpc(&loop, uvctx_background(), "99999999H");
  ck_assert_uint_ge(deadline_of(b) - deadline_of(a), HOUR_MS);
  ck_assert_uint_ge(deadline_of(c) - deadline_of(b),
                    (uint64_t)(99999999 - 5124096) * HOUR_MS);
  ck_assert_uint_lt(deadline_of(c), UINT64_MAX);
  uvctx_release(c);
  uvctx_release(b);
  uvctx_release(a);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* 0 in any unit: no time left, born done with UV_ETIMEDOUT (as grpc-go's
 * decoder makes it); its watch runs on the loop, and it encodes as
 * UV_ETIMEDOUT. */
static const char *const zeros[] = {"0n", "0u", "0m",        "0S",
                                    "0M", "0H", "00000000H", "0000n"};

START_TEST(test_parse_zero_is_born_done_with_etimedout) {
  uv_loop_t loop;
  char buf[UVCTX_GRPC_TIMEOUT_LEN];
  rec_t r;

  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *ctx = mk_grpc(&loop, uvctx_background(), zeros[_i]);
  ck_assert_int_eq(uvctx_err(ctx), UV_ETIMEDOUT);
  ck_assert_int_eq(uvctx_cause(ctx), UV_ETIMEDOUT);
  ck_assert_uint_le(deadline_of(ctx), uvctx_now());
  ck_assert_int_eq(uvctx_grpc_timeout(ctx, buf, sizeof buf), UV_ETIMEDOUT);
  rec_watch(&r, NULL, ctx);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(r.calls, 1);
  ck_assert_int_eq(r.err, UV_ETIMEDOUT);
  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Everything but 1-8 digits and a unit, byte for byte (len counts the bytes
 * given, so NULs inside count too). */
static const struct {
  const char *value;
  size_t len;
  const char *why;
} rejected[] = {
    {"", 0, "empty"},
    {"m", 1, "no digit"},
    {"5", 1, "no unit"},
    {"250", 3, "no unit"},
    {"50m", 2, "no unit in the len given"},
    {"123456789m", 10, "9 digits"},
    {"000000000m", 10, "9 digits, zeros"},
    {"1234567890n", 11, "10 digits"},
    {"+5m", 3, "a plus sign"},
    {"-5m", 3, "a minus sign"},
    {" 5m", 3, "a leading space"},
    {"5 m", 3, "a space inside"},
    {"5m ", 3, "a trailing space"},
    {"\t5m", 3, "a tab"},
    {"5m\r\n", 4, "a line end"},
    {"5s", 2, "lower-case s"},
    {"5h", 2, "lower-case h"},
    {"5U", 2, "upper-case U"},
    {"5N", 2, "upper-case N"},
    {"5x", 2, "an unknown unit"},
    {"5ms", 3, "a two-letter unit"},
    {"5mm", 3, "two units"},
    {"5M5S", 4, "two values"},
    {"5m5", 3, "digits after the unit"},
    {"m5", 2, "the unit first"},
    {"5.0S", 4, "a decimal point"},
    {"0x5m", 4, "hexadecimal"},
    {"5e3m", 4, "an exponent"},
    {"5\0m", 3, "a NUL inside"},
    {"5m\0", 3, "a NUL after the unit"},
    {"\0" "5m", 3, "a NUL in front"},
    {"\xd9\xa1m", 3, "a non-ASCII digit (U+0661)"},
    {"\xef\xbc\x95m", 4, "a full-width digit (U+FF15)"},
};

#define REJECTED_ROWS ((int)(sizeof(rejected) / sizeof(rejected[0])))

START_TEST(test_parse_rejects_anything_else_and_makes_nothing) {
  uv_loop_t loop;
  uvctx_t *out = SENTINEL;
  FILE *devnull = fopen("/dev/null", "w");

  ck_assert_ptr_nonnull(devnull);
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  ck_assert_msg(uvctx_with_grpc_timeout(&loop, uvctx_background(),
                                        rejected[_i].value, rejected[_i].len,
                                        &out) == UV_EINVAL,
                "accepted: %s", rejected[_i].why);
  ck_assert_ptr_eq(out, SENTINEL);
  ck_assert_int_eq(counting_allocs, 0);
  ck_assert_int_eq(uvctx_dump_loop(&loop, devnull), 0);
  fclose(devnull);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(test_parse_null_arguments_are_einval_and_make_nothing) {
  uv_loop_t loop;
  uvctx_t *out = SENTINEL;

  ck_assert_int_eq(uv_loop_init(&loop), 0);
  ck_assert_int_eq(
      uvctx_with_grpc_timeout(&loop, uvctx_background(), NULL, 2, &out),
      UV_EINVAL);
  ck_assert_int_eq(
      uvctx_with_grpc_timeout(&loop, uvctx_background(), NULL, 0, &out),
      UV_EINVAL);
  ck_assert_int_eq(
      uvctx_with_grpc_timeout(NULL, uvctx_background(), "5m", 2, &out),
      UV_EINVAL);
  ck_assert_int_eq(uvctx_with_grpc_timeout(&loop, NULL, "5m", 2, &out),
                   UV_EINVAL);
  ck_assert_int_eq(
      uvctx_with_grpc_timeout(&loop, uvctx_background(), "5m", 2, NULL),
      UV_EINVAL);
  ck_assert_ptr_eq(out, SENTINEL);
  ck_assert_int_eq(counting_allocs, 0);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Encoding allocates nothing, whatever it returns. */
START_TEST(test_encode_allocates_nothing) {
  uv_loop_t loop;
  char buf[UVCTX_GRPC_TIMEOUT_LEN];
  long before;

  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *ctx = mk_timeout(&loop, uvctx_background(), 60000);
  uvctx_t *done = mk_timeout(&loop, uvctx_background(), 0);
  before = counting_allocs;
  ck_assert_int_gt(uvctx_grpc_timeout(ctx, buf, sizeof buf), 0);
  ck_assert_int_eq(uvctx_grpc_timeout(ctx, buf, 1), UV_ENOBUFS);
  ck_assert_int_eq(uvctx_grpc_timeout(done, buf, sizeof buf), UV_ETIMEDOUT);
  ck_assert_int_eq(uvctx_grpc_timeout(uvctx_background(), buf, sizeof buf), 0);
  ck_assert_int_eq(counting_allocs, before);
  uvctx_release(done);
  uvctx_release(ctx);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* A call's deadline is never later than the server's own budget: a later
 * value leaves the parent's deadline in force (and the parent's timer
 * finishes the call), an earlier one is the call's own. */
START_TEST(test_parse_deadline_is_never_later_than_parents) {
  static int key;
  uv_loop_t loop;
  uint64_t pdl;
  rec_t r;

  ck_assert_int_eq(uv_loop_init(&loop), 0);
  pdl = uvctx_now() + 100;
  uvctx_t *parent = mk_deadline(&loop, uvctx_background(), pdl);
  uvctx_t *tagged = mk_value(parent, &key, &key);
  uvctx_t *later = mk_grpc(&loop, tagged, "10S");
  uvctx_t *earlier = mk_grpc(&loop, parent, "5m");
  ck_assert_uint_eq(deadline_of(later), pdl);
  ck_assert_uint_lt(deadline_of(earlier), pdl);
  rec_watch(&r, NULL, later);
  ck_assert(poll_until(&loop, rec_called, &r, pdl + EVENTUALLY_MS));
  ck_assert_int_eq(r.err, UV_ETIMEDOUT);
  ck_assert_uint_ge(r.now, pdl);
  ck_assert_int_eq(uvctx_err(parent), UV_ETIMEDOUT);
  uvctx_release(earlier);
  uvctx_release(later);
  uvctx_release(tagged);
  uvctx_release(parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Under a parent that is done, the call is born done with its err and
 * cause, whatever the value. */
START_TEST(test_parse_under_a_done_parent_is_born_done_with_its_cause) {
  uv_loop_t loop;

  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *parent = mk_cancel(&loop, uvctx_background());
  ck_assert_int_eq(uvctx_cancel_cause(parent, UV_ESHUTDOWN), 0);
  uvctx_t *call = mk_grpc(&loop, parent, "99999999H");
  ck_assert_int_eq(uvctx_err(call), UV_ECANCELED);
  ck_assert_int_eq(uvctx_cause(call), UV_ESHUTDOWN);
  uvctx_release(call);
  uvctx_release(parent);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* The result is an ordinary deadline context: its timer finishes it, never
 * before its deadline; uvctx_reset_timeout(), uvctx_keepalive() and
 * uvctx_cancel() work on it. */
START_TEST(test_parse_makes_an_ordinary_deadline_context) {
  uv_loop_t loop;
  uint64_t dl;
  rec_t fired, reset;

  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uvctx_t *short_call = mk_grpc(&loop, uvctx_background(), "20000u");
  uvctx_t *long_call = mk_grpc(&loop, uvctx_background(), "60S");
  uvctx_t *cancelled = mk_grpc(&loop, uvctx_background(), "60S");
  dl = deadline_of(short_call);
  rec_watch(&fired, NULL, short_call);
  ck_assert(poll_until(&loop, rec_called, &fired, dl + EVENTUALLY_MS));
  ck_assert_int_eq(fired.err, UV_ETIMEDOUT);
  ck_assert_uint_ge(fired.now, dl);

  ck_assert_int_eq(uvctx_keepalive(long_call, 1), 0);
  ck_assert_int_eq(uvctx_keepalive(long_call, 0), 0);
  ck_assert_int_eq(uvctx_reset_timeout(long_call, 5), 0);
  dl = deadline_of(long_call);
  ck_assert_uint_le(dl, uvctx_now() + 5);
  rec_watch(&reset, NULL, long_call);
  ck_assert(poll_until(&loop, rec_called, &reset, dl + EVENTUALLY_MS));
  ck_assert_int_eq(reset.err, UV_ETIMEDOUT);
  ck_assert_uint_ge(reset.now, dl);

  ck_assert_int_eq(uvctx_cancel(cancelled), 0);
  ck_assert_int_eq(uvctx_err(cancelled), UV_ECANCELED);
  uvctx_release(cancelled);
  uvctx_release(long_call);
  uvctx_release(short_call);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Round trip: a client encodes, a server on the same clock decodes
 * ------------------------------------------------------------------------- */

/* The server's time left right after the decode is never more than the
 * client's time left right before the encode, but for less than the
 * millisecond of the decoder's round-up; and never less than the value
 * on the wire (the server does not give up first). */
START_TEST(test_round_trip_never_extends_the_budget) {
  uv_loop_t loop;
  char buf[UVCTX_GRPC_TIMEOUT_LEN];
  uint64_t dl, t0, t1, count;
  char unit;
  u128 v;
  int n;

  ck_assert_int_eq(uv_loop_init(&loop), 0);
  dl = deadline_in(encode_table[_i].offset_ms);
  uvctx_t *client = mk_deadline(&loop, uvctx_background(), dl);
  t0 = uv_hrtime();
  n = uvctx_grpc_timeout(client, buf, sizeof buf);
  ck_assert_int_gt(n, 0);
  uvctx_t *server = NULL;
  ck_assert_int_eq(uvctx_with_grpc_timeout(&loop, uvctx_background(), buf,
                                           (size_t)n, &server),
                   0);
  t1 = uv_hrtime();
  v = wire_value(buf, (size_t)n, &count, &unit);
  ck_assert_msg(ms_to_ns(deadline_of(server)) - t1 <
                    ms_to_ns(dl) - t0 + NS_PER_MS,
                "%s: the server has more time than the client had", buf);
  ck_assert(ms_to_ns(deadline_of(server)) >= t0 + v);
  ck_assert_int_eq(uvctx_err(server), 0);
  uvctx_release(server);
  uvctx_release(client);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

Suite *grpc_suite(void) {
  return SUITE(
      "grpc",
      {"encode", TIMEOUT_LOOP_S, NULL, NULL,
       .tests = TESTS(
           test_encode_without_a_deadline_is_0_and_empty,
           test_encode_once_done_is_etimedout,
           test_encode_past_deadline_is_etimedout_before_the_loop_acts,
           test_encode_writes_the_earliest_deadline_of_the_ancestry,
           test_encode_null_ctx_or_buf_is_einval,
           test_encode_from_another_thread),
       .loops = LOOPS(
           {test_encode_rounds_down_in_the_finest_unit_that_fits, 0, ENCODE_ROWS},
           {test_encode_is_enobufs_for_every_len_below_the_needed_one, 0, ENCODE_ROWS})},
      {"parse", TIMEOUT_LOOP_S, NULL, NULL,
       .tests = TESTS(
           test_parse_hours_beyond_64_bits_of_ns_keep_their_order,
           test_parse_deadline_is_never_later_than_parents,
           test_parse_under_a_done_parent_is_born_done_with_its_cause,
           test_parse_makes_an_ordinary_deadline_context),
       .loops = LOOPS(
           {test_parse_gives_now_plus_the_value_rounded_up_to_the_ms, 0, ACCEPTED_ROWS},
           {test_parse_zero_is_born_done_with_etimedout, 0, (int)(sizeof(zeros) / sizeof(zeros[0]))})},
      /* Counting uvctx's allocations: input that is rejected is rejected before
       * anything is made. */
      {"nothing_made", TIMEOUT_LOOP_S, counting_install, counting_uninstall,
       .tests = TESTS(
           test_parse_null_arguments_are_einval_and_make_nothing,
           test_encode_allocates_nothing),
       .loops = LOOPS(
           {test_parse_rejects_anything_else_and_makes_nothing, 0, REJECTED_ROWS})},
      {"round_trip", TIMEOUT_LOOP_S, NULL, NULL,
       .loops = LOOPS(
           {test_round_trip_never_extends_the_budget, 0, ENCODE_ROWS})});
}
