/* The grpc-timeout codec: a deadline carried across the wire the way gRPC
 * carries it (uvctx_grpc_timeout, uvctx_with_grpc_timeout).
 *
 * On the wire a deadline is relative, "time left", so that the clocks of two
 * machines never need to agree: the sender turns its absolute deadline into
 * what is left now, the receiver adds that to its own clock. Each side rounds
 * in the direction that keeps the callee inside the caller's budget: the
 * encoder rounds down (a downstream call never ends later than ours), the
 * decoder rounds up to the millisecond (a server never gives up before its
 * client does).
 *
 * Arithmetic is split so that nothing overflows for any input the grammar
 * allows: "99999999H" is 3.6e14 ms, which fits 64 bits easily, but 3.6e20 ns
 * would not. Nanoseconds are used only for the remainder below the
 * millisecond and for the fine units (u, n), whose largest values are 1e11
 * ns; the rest is counted in milliseconds. */
#include "uvctx-int.h"

#define NS_PER_MS 1000000u

/* The largest TimeoutValue: "at most 8 digits" in the gRPC over HTTP/2
 * spec. */
#define GRPC_MAX_COUNT 99999999u
#define GRPC_MAX_DIGITS 8

_Static_assert(UVCTX_GRPC_TIMEOUT_LEN == GRPC_MAX_DIGITS + 2,
               "UVCTX_GRPC_TIMEOUT_LEN: 8 digits, the unit and the NUL");

/* The units of a millisecond and coarser, and their length in ms; the
 * encoder tries them finest first. */
static const struct {
  char unit;
  uint64_t ms;
} coarse_units[] = {{'m', 1}, {'S', 1000}, {'M', 60000}, {'H', 3600000}};

#define NCOARSE (sizeof(coarse_units) / sizeof(coarse_units[0]))

/* Writes count (at most 8 digits) and unit to buf, NUL-terminated; returns
 * the length, or UV_ENOBUFS (buf then holds "" when len > 0, as the caller
 * already wrote). */
static int put(char *buf, size_t len, uint64_t count, char unit) {
  char digits[GRPC_MAX_DIGITS];
  size_t n = 0, i;

  do {
    digits[n++] = (char)('0' + count % 10);
    count /= 10;
  } while (count > 0);
  if (len < n + 2)
    return UV_ENOBUFS;
  for (i = 0; i < n; i++)
    buf[i] = digits[n - 1 - i];
  buf[n] = unit;
  buf[n + 1] = '\0';
  return (int)n + 1;
}

int uvctx_grpc_timeout(const uvctx_t *ctx, char *buf, size_t len) {
  uint64_t deadline, now_ns, now_ms, sub_ns, left_ms;
  size_t i;

  if (ctx == NULL || buf == NULL)
    return UV_EINVAL;
  /* Whatever follows, a caller that ignores the result sends no garbage. */
  if (len > 0)
    buf[0] = '\0';
  if (uvctx_err(ctx) != 0)
    return UV_ETIMEDOUT;
  if (uvctx_deadline(ctx, &deadline) != 1)
    return 0;

  /* Time left in ns is deadline * 1e6 - now_ns. With now_ns = now_ms * 1e6 +
   * sub_ns it is (deadline - now_ms) * 1e6 - sub_ns, which needs no product
   * that can overflow (deadline * 1e6 can: a deadline 600 years away). */
  now_ns = uv_hrtime();
  now_ms = now_ns / NS_PER_MS;
  sub_ns = now_ns % NS_PER_MS;
  if (deadline <= now_ms)
    return UV_ETIMEDOUT; /* nothing left (deadline * 1e6 <= now_ns) */

  /* Up to 1e5 ms left, the nanoseconds fit: the fine units. One more digit
   * of u would take 1e11 ns, and from there m keeps 8 digits. */
  if (deadline - now_ms <= 100000) {
    uint64_t left_ns = (deadline - now_ms) * NS_PER_MS - sub_ns; /* >= 1 */
    if (left_ns <= GRPC_MAX_COUNT)
      return put(buf, len, left_ns, 'n');
    if (left_ns / 1000 <= GRPC_MAX_COUNT)
      return put(buf, len, left_ns / 1000, 'u');
  }

  /* Whole milliseconds left, rounded down; floor(floor(x / a) / b) is
   * floor(x / (a * b)), so the coarser units round down from here exactly
   * as they would from the nanoseconds. */
  left_ms = deadline - now_ms - (sub_ns != 0);
  for (i = 0; i < NCOARSE; i++)
    if (left_ms / coarse_units[i].ms <= GRPC_MAX_COUNT)
      return put(buf, len, left_ms / coarse_units[i].ms, coarse_units[i].unit);
  /* More than 99999999 hours (11,400 years) left: say the most the header
   * can, which is less than what is left. */
  return put(buf, len, GRPC_MAX_COUNT, 'H');
}

/* value parsed as a TimeoutValue and TimeoutUnit: 0 and *count and *unit, or
 * UV_EINVAL for anything else (a byte that is not a digit in front, among
 * them a sign, a space or a NUL; no digit; more than 8; an unknown unit). */
static int parse(const char *value, size_t len, uint64_t *count, char *unit) {
  uint64_t n = 0;
  size_t i;

  if (value == NULL || len < 2 || len > GRPC_MAX_DIGITS + 1)
    return UV_EINVAL;
  for (i = 0; i < len - 1; i++) {
    if (value[i] < '0' || value[i] > '9')
      return UV_EINVAL;
    n = n * 10 + (uint64_t)(value[i] - '0');
  }
  switch (value[len - 1]) {
  case 'H':
  case 'M':
  case 'S':
  case 'm':
  case 'u':
  case 'n':
    break;
  default:
    return UV_EINVAL;
  }
  *count = n;
  *unit = value[len - 1];
  return 0;
}

int uvctx_with_grpc_timeout(uv_loop_t *loop, uvctx_t *parent,
                            const char *value, size_t len, uvctx_t **out) {
  uint64_t count, now_ns, now_ms, sub_ns, deadline;
  char unit;
  size_t i;
  int err;

  err = parse(value, len, &count, &unit);
  if (err != 0)
    return err;

  now_ns = uv_hrtime();
  now_ms = now_ns / NS_PER_MS;
  sub_ns = now_ns % NS_PER_MS;
  if (count == 0) {
    /* No time left: born done, as grpc-go's decoder gives a zero timeout. */
    deadline = now_ms;
  } else if (unit == 'n' || unit == 'u') {
    /* ceil((now_ns + d) / 1e6), as now_ms + ceil((sub_ns + d) / 1e6): the
     * sum stays below 1e11 + 1e6. */
    uint64_t d = unit == 'n' ? count : count * 1000;
    deadline = now_ms + (sub_ns + d + NS_PER_MS - 1) / NS_PER_MS;
  } else {
    /* Whole milliseconds: ceil(now_ns / 1e6) + d_ms. This cannot overflow:
     * d_ms is at most 3.6e14 ("99999999H", 11,400 years, kept exactly) and
     * now_ms below 1.9e13 (uv_hrtime() / 1e6). */
    uint64_t unit_ms = 0;
    for (i = 0; i < NCOARSE; i++)
      if (coarse_units[i].unit == unit)
        unit_ms = coarse_units[i].ms;
    deadline = now_ms + (sub_ns != 0) + count * unit_ms;
  }
  return uvctx__new_deadline(loop, parent, deadline, 0, now_ms, out);
}
