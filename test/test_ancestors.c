/* Lookups through chains of any-contexts whose parents share ancestors
 * (src/ancestors.c).
 *
 * The shapes are the ones a service builds call after call: a diamond
 * (b = with_cancel(a), m = with_any({a, b})) stacked level on level, and the
 * same parent listed twice. Searched path by path, the graph above the top
 * context holds 2^depth paths: depth 40 would take hours and 1,000 longer
 * than anyone waits, so each test here passing in milliseconds is the proof
 * that every distinct ancestor is visited once. The answers are today's:
 * the first definition of a key in depth-first order, parents in order, and
 * the earliest deadline. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "test.h"

enum shape {
  DIAMOND,          /* m_k = any({m_k-1, b_k}): the shared ancestor first */
  DIAMOND_REVERSED, /* m_k = any({b_k, m_k-1}): the shared ancestor last */
  SAME_PARENT_TWICE /* m_k = any({v_k, v_k}) */
};

static int key, root_key, missing_key; /* keys compare by address */
static char root_value[] = "root";

/* The value stored at level k: k itself, as a pointer. */
#define LEVEL(k) ((void *)(uintptr_t)(k))

/* A graph of `depth` levels on one loop, and every reference its building
 * took, to release. Level k (1..depth) adds a value context v_k defining key
 * as k, a deadline context at far + |k - depth/2| (so the earliest is in the
 * middle), and an any-context m_k over it and the level below. */
typedef struct {
  uv_loop_t loop;
  int depth;
  uint64_t far;
  uvctx_t *bottom; /* m_0 */
  uvctx_t *top;    /* m_depth */
  uvctx_t **refs;
  size_t nrefs;
} chain_t;

static uvctx_t *keep(chain_t *c, uvctx_t *ctx) {
  c->refs[c->nrefs++] = ctx;
  return ctx;
}

static uint64_t level_deadline(const chain_t *c, int k) {
  int half = c->depth / 2;
  return c->far + (uint64_t)(k > half ? k - half : half - k);
}

static void chain_build(chain_t *c, enum shape shape, int depth) {
  uvctx_t *below;
  int k;

  ck_assert_int_eq(uv_loop_init(&c->loop), 0);
  c->depth = depth;
  c->far = uvctx_now() + 3600 * 1000;
  c->refs = calloc((size_t)depth * 4 + 2, sizeof(*c->refs));
  ck_assert_ptr_nonnull(c->refs);
  c->nrefs = 0;
  below = keep(c, mk_value(uvctx_background(), &root_key, root_value));
  below = keep(c, mk_cancel(&c->loop, below));
  c->bottom = below;
  for (k = 1; k <= depth; k++) {
    uvctx_t *v = keep(c, mk_value(below, &key, LEVEL(k)));
    uvctx_t *d = keep(c, mk_deadline(&c->loop, v, level_deadline(c, k)));
    uvctx_t *parents[2];
    uvctx_t *m = NULL;

    switch (shape) {
    case DIAMOND:
      parents[0] = below;
      parents[1] = d;
      break;
    case DIAMOND_REVERSED:
      parents[0] = d;
      parents[1] = below;
      break;
    default:
      parents[0] = d;
      parents[1] = d;
      break;
    }
    ck_assert_int_eq(uvctx_with_any(&c->loop, parents, 2, &m), 0);
    below = keep(c, m);
  }
  c->top = below;
}

static void chain_free(chain_t *c) {
  while (c->nrefs > 0)
    uvctx_release(c->refs[--c->nrefs]);
  free(c->refs);
  ASSERT_LOOP_CLOSES(&c->loop);
}

/* The level whose definition of key the top finds first: depth first,
 * parents in order, reaches level 1's value first when the shared ancestor
 * comes first, the top level's otherwise. */
static uintptr_t expected_level(enum shape shape, int depth) {
  return shape == DIAMOND ? 1 : (uintptr_t)depth;
}

static const struct {
  enum shape shape;
  int depth;
} cases[] = {
    {DIAMOND, 40},          {DIAMOND, 1000},
    {DIAMOND_REVERSED, 40}, {DIAMOND_REVERSED, 1000},
    {SAME_PARENT_TWICE, 40}, {SAME_PARENT_TWICE, 1000},
};

START_TEST(value_through_the_chain_finds_the_first_definition_in_order) {
  chain_t c;

  chain_build(&c, cases[_i].shape, cases[_i].depth);
  ck_assert_ptr_eq(uvctx_value(c.top, &key),
                   LEVEL(expected_level(cases[_i].shape, cases[_i].depth)));
  ck_assert_ptr_eq(uvctx_value(c.top, &root_key), root_value);
  /* A miss is the whole graph searched: the worst case of the old walk. */
  ck_assert_ptr_null(uvctx_value(c.top, &missing_key));
  /* The same answers again: the first walks left no mark behind. */
  ck_assert_ptr_eq(uvctx_value(c.top, &root_key), root_value);
  ck_assert_ptr_null(uvctx_value(c.top, &missing_key));
  chain_free(&c);
}
END_TEST

START_TEST(deadline_through_the_chain_is_the_earliest_of_all_levels) {
  chain_t c;
  uint64_t dl = 0;

  chain_build(&c, cases[_i].shape, cases[_i].depth);
  ck_assert_int_eq(uvctx_deadline(c.top, &dl), 1);
  ck_assert_uint_eq(dl, c.far);
  dl = 0;
  ck_assert_int_eq(uvctx_deadline(c.top, &dl), 1);
  ck_assert_uint_eq(dl, c.far);
  chain_free(&c);
}
END_TEST

/* A without-cancel context hides the deadlines above it on its path only:
 * the same deadline reached by another path still counts. */
START_TEST(without_cancel_hides_a_shared_deadline_on_one_path_only) {
  uv_loop_t loop;
  uvctx_t *d, *hidden, *visible, *m = NULL, *m2 = NULL, *parents[2];
  uint64_t dl = 0, at;

  ck_assert_int_eq(uv_loop_init(&loop), 0);
  at = uvctx_now() + 60000;
  d = mk_deadline(&loop, uvctx_background(), at);
  hidden = mk_without(d);
  visible = mk_cancel(&loop, d);
  parents[0] = hidden; /* d is met first behind the without-cancel */
  parents[1] = visible;
  ck_assert_int_eq(uvctx_with_any(&loop, parents, 2, &m), 0);
  ck_assert_int_eq(uvctx_deadline(m, &dl), 1);
  ck_assert_uint_eq(dl, at);
  parents[1] = hidden;
  ck_assert_int_eq(uvctx_with_any(&loop, parents, 2, &m2), 0);
  ck_assert_int_eq(uvctx_deadline(m2, &dl), 0);
  uvctx_release(m2);
  uvctx_release(m);
  uvctx_release(visible);
  uvctx_release(hidden);
  uvctx_release(d);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* uvctx_dump() walks down the same graph: each any-context is printed in
 * full once and as a one-line reference after, so the output grows with
 * the depth, not with the number of paths. */
START_TEST(dump_of_the_bottom_prints_each_context_once) {
  chain_t c;
  FILE *f = tmpfile();
  int lines = 0, again = 0, ch;
  char *line = NULL;
  size_t cap = 0;

  ck_assert_ptr_nonnull(f);
  chain_build(&c, cases[_i].shape, cases[_i].depth);
  ck_assert_int_eq(uvctx_dump(c.bottom, f), 0);
  rewind(f);
  /* getline: a line is indented by its depth, 2,000 columns at the top. */
  while (getline(&line, &cap, f) != -1) {
    lines++;
    if (strstr(line, "(shown above)") != NULL)
      again++;
  }
  free(line);
  fclose(f);
  /* m_0, then per level its deadline context and its any-context; a
   * diamond's any-context also hangs under the deadline context, where it
   * is a reference; one listed twice hangs twice in the same list. */
  ck_assert_int_eq(lines - again, 1 + 2 * c.depth);
  ck_assert_int_eq(again, c.depth);
  /* Nothing left marked: a second dump prints the same. */
  f = tmpfile();
  ck_assert_ptr_nonnull(f);
  ck_assert_int_eq(uvctx_dump(c.bottom, f), 0);
  rewind(f);
  while ((ch = fgetc(f)) != EOF)
    if (ch == '\n')
      lines--;
  fclose(f);
  ck_assert_int_eq(lines, 0);
  chain_free(&c);
}
END_TEST

/* Cancelling the bottom finishes every level once, and the top's watch runs
 * once, after the loop has delivered every level. */
static void count_cb(uvctx_watch_t *w, int err) {
  ck_assert_int_eq(err, UV_ECANCELED);
  (*(int *)w->data)++;
}

START_TEST(cancel_of_the_bottom_finishes_every_level_once) {
  chain_t c;
  uvctx_watch_t w = {0};
  int calls = 0;

  chain_build(&c, cases[_i].shape, cases[_i].depth);
  w.data = &calls;
  ck_assert_int_eq(uvctx_watch(c.top, &w, count_cb), 0);
  ck_assert_int_eq(uvctx_cancel(c.bottom), 0);
  ck_assert_int_eq(uvctx_err(c.top), UV_ECANCELED);
  ck_assert_int_eq(uv_run(&c.loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(calls, 1);
  chain_free(&c);
}
END_TEST

/* More lookups at once than a walk has marks for (eight): the extra ones
 * wait for a mark, and every thread gets the right answers. */
enum { THREADS = 12 };

typedef struct {
  chain_t *chain;
  uv_barrier_t *start;
  int wrong;
} reader_t;

static void reader(void *arg) {
  reader_t *r = arg;
  int i, n = test_scaled(200);

  uv_barrier_wait(r->start);
  for (i = 0; i < n; i++) {
    uint64_t dl = 0;
    if (uvctx_value(r->chain->top, &key) != LEVEL(1) ||
        uvctx_value(r->chain->top, &missing_key) != NULL ||
        uvctx_deadline(r->chain->top, &dl) != 1 || dl != r->chain->far)
      r->wrong++;
  }
}

START_TEST(lookups_from_many_threads_at_once_agree) {
  chain_t c;
  uv_barrier_t start;
  uv_thread_t threads[THREADS];
  reader_t readers[THREADS];
  int i;

  chain_build(&c, DIAMOND, 40);
  ck_assert_int_eq(uv_barrier_init(&start, THREADS), 0);
  for (i = 0; i < THREADS; i++) {
    readers[i].chain = &c;
    readers[i].start = &start;
    readers[i].wrong = 0;
    ck_assert_int_eq(uv_thread_create(&threads[i], reader, &readers[i]), 0);
  }
  for (i = 0; i < THREADS; i++) {
    ck_assert_int_eq(uv_thread_join(&threads[i]), 0);
    ck_assert_int_eq(readers[i].wrong, 0);
  }
  uv_barrier_destroy(&start);
  chain_free(&c);
}
END_TEST

Suite *ancestors_suite(void) {
  int n = (int)(sizeof(cases) / sizeof(cases[0]));
  return SUITE(
      "ancestors",
      /* Chains of up to a thousand levels: milliseconds each alone, up to 5 s
       * beside 20 busy loops; the old walk would not end in any timeout. */
      {"chains", TIMEOUT_BIG_S, NULL, NULL,
       .tests = TESTS(
           without_cancel_hides_a_shared_deadline_on_one_path_only),
       .loops = LOOPS(
           {value_through_the_chain_finds_the_first_definition_in_order, 0, n},
           {deadline_through_the_chain_is_the_earliest_of_all_levels, 0, n},
           {dump_of_the_bottom_prints_each_context_once, 0, n},
           {cancel_of_the_bottom_finishes_every_level_once, 0, n})},
      {"threads", TIMEOUT_THREADS_S, NULL, NULL,
       .tests = TESTS(
           lookups_from_many_threads_at_once_agree)});
}
