/* Debugging: uvctx_dump (a subtree, one line per cancellable context,
 * indented by depth) and uvctx_dump_loop (every cancellable context alive on
 * a loop: a leak report). Their null arguments are rows of test_badinput's
 * table of bad calls.
 *
 * The exact layout is not part of the contract, so the tests read facts out
 * of the text: how many lines, which line mentions what, indentation (the
 * leading characters that are not letters or digits), err names as
 * uv_err_name() spells them, and counts read as the first number after a
 * word ("watch", "ref", "other"). Lines are told apart by deadlines: each
 * context of interest is a deadline context with a distinct deadline, earlier
 * than its ancestors', and the line that mentions that number is its line. */
#include <ctype.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "test.h"

static int key_a; /* keys compare by address */

enum { MAX_LINES = 64 };

typedef struct {
  char *buf;
  size_t len;
  char *line[MAX_LINES];
  int n;
  int rc;
} text_t;

/* The text of the last dump, freed by the next one and after each test. */
static text_t text;

static void text_clear(void) {
  free(text.buf);
  memset(&text, 0, sizeof text);
}

/* Dumps ctx, or if it is NULL the loop, into text, split into lines. */
static const text_t *dump_of(const uvctx_t *ctx, const uv_loop_t *loop) {
  text_clear();
  FILE *f = open_memstream(&text.buf, &text.len);
  ck_assert_ptr_nonnull(f);
  text.rc = ctx != NULL ? uvctx_dump(ctx, f) : uvctx_dump_loop(loop, f);
  ck_assert_int_eq(fclose(f), 0);
  for (char *p = text.buf; p != NULL && *p != '\0';) {
    char *nl = strchr(p, '\n');
    ck_assert_msg(nl != NULL, "line without a newline: \"%s\"", p);
    *nl = '\0';
    ck_assert_int_lt(text.n, MAX_LINES);
    text.line[text.n++] = p;
    p = nl + 1;
  }
  return &text;
}

#define dump_ctx(ctx) dump_of((ctx), NULL)
#define dump_loop(loop) dump_of(NULL, (loop))

/* The index of the one line that contains s; fails if none or several. */
static int line_with(const text_t *t, const char *s) {
  int found = -1;
  for (int i = 0; i < t->n; i++) {
    if (strstr(t->line[i], s) != NULL) {
      ck_assert_msg(found < 0, "\"%s\" on lines %d and %d", s, found, i);
      found = i;
    }
  }
  ck_assert_msg(found >= 0, "no line mentions \"%s\"", s);
  return found;
}

static int line_of_deadline(const text_t *t, uint64_t deadline) {
  char s[32];
  snprintf(s, sizeof s, "%" PRIu64, deadline);
  return line_with(t, s);
}

static int indent_of(const char *line) {
  int n = 0;
  while (line[n] != '\0' && !isalnum((unsigned char)line[n]))
    n++;
  return n;
}

/* The first number after the first occurrence of word in line, or -1. */
static long count_after(const char *line, const char *word) {
  const char *p = strstr(line, word);
  if (p == NULL)
    return -1;
  p += strlen(word);
  while (*p != '\0' && !isdigit((unsigned char)*p)) {
    if (*p == ' ' && p[1] != '\0' && isalpha((unsigned char)p[1]))
      return -1; /* the next word began: no number for this one */
    p++;
  }
  if (*p == '\0')
    return -1;
  return strtol(p, NULL, 10);
}

/* A base for distinct deadlines, a minute away. */
static uint64_t far(void) { return uvctx_now() + 60000; }

/* The tree most tests dump, of deadline contexts: r (d + 100) with a child
 * c (d + 90), its child g (d + 80), and c's sibling s (d + 70). */
enum { R, C, G, S };
static void mk_tree(uvctx_t *t[4], uint64_t d) {
  t[R] = mk_deadline(&loop, uvctx_background(), d + 100);
  t[C] = mk_deadline(&loop, t[R], d + 90);
  t[G] = mk_deadline(&loop, t[C], d + 80);
  t[S] = mk_deadline(&loop, t[R], d + 70);
}

/* --- uvctx_dump: shape --- */

START_TEST(dump_prints_one_line_per_cancellable_context_of_the_subtree) {
  uvctx_t *root = mk_cancel(&loop, uvctx_background());
  uvctx_t *a = mk_deadline(&loop, root, far());
  uvctx_t *a1 = mk_cancel(&loop, a);
  uvctx_t *b = mk_cancel(&loop, root);
  uvctx_t *bv = mk_value(b, &key_a, NULL);
  uvctx_t *v = mk_value(root, &key_a, NULL);
  uvctx_t *vc = mk_cancel(&loop, v); /* below root, through a value */
  uvctx_t *w = mk_without(root);
  uvctx_t *wc = mk_cancel(&loop, w); /* not below root: never cancelled by it */

  const text_t *t = dump_ctx(root);
  ck_assert_int_ge(t->rc, 0);
  ck_assert_int_eq(t->n, 5); /* root, a, a1, b, vc */
  /* One that is not cancellable: no crash, whatever it prints. */
  const uvctx_t *others[] = {uvctx_background(), uvctx_todo(), v, w};
  for (size_t i = 0; i < 4; i++) {
    int rc = dump_ctx(others[i])->rc;
    ck_assert(rc == 0 || rc == UV_EINVAL);
  }

  release_all(wc, w, vc, v, bv, b, a1, a, root);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(dump_is_the_subtree_in_preorder_indented_by_depth) {
  uvctx_t *n[4];
  uint64_t d = far();
  mk_tree(n, d);
  uvctx_t *sv = mk_value(n[S], &key_a, NULL);
  uvctx_t *sg = mk_deadline(&loop, sv, d + 60); /* grandchild via a value */

  const text_t *t = dump_ctx(n[R]);
  ck_assert_int_eq(t->n, 5);
  int ir = line_of_deadline(t, d + 100);
  int ic = line_of_deadline(t, d + 90);
  int ig = line_of_deadline(t, d + 80);
  int is = line_of_deadline(t, d + 70);
  int isg = line_of_deadline(t, d + 60);
  ck_assert_int_eq(ir, 0); /* the context itself first */
  ck_assert_int_eq(ig, ic + 1); /* a child right below its parent */
  ck_assert_int_eq(isg, is + 1);
  ck_assert_int_gt(indent_of(t->line[ic]), indent_of(t->line[ir]));
  ck_assert_int_gt(indent_of(t->line[ig]), indent_of(t->line[ic]));
  ck_assert_int_eq(indent_of(t->line[is]), indent_of(t->line[ic]));
  ck_assert_int_gt(indent_of(t->line[isg]), indent_of(t->line[is]));
  ck_assert_int_eq(indent_of(t->line[isg]), indent_of(t->line[ig]));

  /* A child's dump is its own subtree only. */
  t = dump_ctx(n[C]);
  ck_assert_int_eq(t->n, 2);
  ck_assert_int_eq(line_of_deadline(t, d + 90), 0);
  ck_assert_int_eq(line_of_deadline(t, d + 80), 1);
  ck_assert_int_gt(indent_of(t->line[1]), indent_of(t->line[0]));

  release_all(sg, sv, n[S], n[G], n[C], n[R]);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* --- uvctx_dump: what a line says --- */

START_TEST(dump_names_the_kind_of_each_context_and_shows_its_deadline) {
  static const int sigs[] = {SIGUSR1};
  uint64_t dl = far() + 12345;
  char s[32];
  snprintf(s, sizeof s, "%" PRIu64, dl);
  uvctx_t *r = mk_cancel(&loop, uvctx_background());
  uvctx_t *d = mk_deadline(&loop, r, dl);
  uvctx_t *sig, *stopping, *out;
  ck_assert_int_eq(uvctx_with_signal(&loop, uvctx_background(), sigs, 1, &sig),
                   0);
  ck_assert_int_eq(
      uvctx_with_shutdown(&loop, sig, NULL, 0, 1000, &stopping, &out), 0);

  const text_t *t = dump_ctx(r);
  ck_assert_int_eq(t->n, 2);
  ck_assert_ptr_nonnull(strstr(t->line[0], "with_cancel"));
  ck_assert_ptr_null(strstr(t->line[0], "with_deadline"));
  ck_assert_ptr_nonnull(strstr(t->line[1], "with_deadline"));
  ck_assert_ptr_null(strstr(t->line[1], "with_cancel"));
  ck_assert_ptr_nonnull(strstr(t->line[1], s));

  t = dump_ctx(sig);
  ck_assert_int_eq(t->n, 3); /* sig, out, stopping */
  ck_assert_int_eq(line_with(t, "with_signal"), 0);
  ck_assert_int_eq(line_with(t, "with_shutdown"), 1);
  ck_assert_int_eq(line_with(t, "with_cancel"), 2); /* stopping */
  ck_assert_int_gt(indent_of(t->line[2]), indent_of(t->line[1]));

  release_all(stopping, out, sig, d, r);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* And UV_ETIMEDOUT once a deadline has passed. */
START_TEST(dump_shows_the_err_and_cause_of_done_contexts) {
  uvctx_t *n[4];
  uint64_t d = far();
  rec_t p;
  mk_tree(n, d);
  uvctx_t *expiring = mk_timeout(&loop, n[S], 2);
  rec_watch(&p, NULL, expiring);
  ck_assert_int_eq(uvctx_cancel_cause(n[C], UV_EPIPE), 0);
  ck_assert(run_until(&loop, &p.calls, 1));

  const text_t *t = dump_ctx(n[R]);
  ck_assert_int_eq(t->n, 5);
  int lines_done[] = {line_of_deadline(t, d + 90), line_of_deadline(t, d + 80)};
  int lines_live[] = {line_of_deadline(t, d + 100),
                      line_of_deadline(t, d + 70)};
  /* Each done line names the event and its origin's id: the cancel of C. */
  char by_cancel[48], by_deadline[48], id[32];
  snprintf(by_cancel, sizeof by_cancel, " by=cancel#%" PRIu64 " ",
           uvctx_id(n[C]));
  snprintf(by_deadline, sizeof by_deadline, " by=deadline#%" PRIu64 " ",
           uvctx_id(expiring));
  for (int i = 0; i < 2; i++) {
    ck_assert_ptr_nonnull(strstr(t->line[lines_done[i]], "ECANCELED"));
    ck_assert_ptr_nonnull(strstr(t->line[lines_done[i]], "EPIPE"));
    ck_assert_ptr_nonnull(strstr(t->line[lines_done[i]], by_cancel));
    ck_assert_ptr_null(strstr(t->line[lines_live[i]], "ECANCELED"));
    ck_assert_ptr_null(strstr(t->line[lines_live[i]], "EPIPE"));
    ck_assert_ptr_null(strstr(t->line[lines_live[i]], " by="));
  }
  const char *timed_out = t->line[line_of_deadline(t, deadline_of(expiring))];
  ck_assert_ptr_nonnull(strstr(timed_out, "ETIMEDOUT"));
  ck_assert_ptr_null(strstr(timed_out, "ECANCELED"));
  ck_assert_ptr_nonnull(strstr(timed_out, by_deadline));
  /* Every line starts with its context's kind and id. */
  const struct {
    uvctx_t *ctx;
    uint64_t deadline;
  } ids[] = {{n[R], d + 100}, {n[C], d + 90}, {n[S], d + 70},
             {expiring, deadline_of(expiring)}};
  for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
    snprintf(id, sizeof id, "with_deadline #%" PRIu64 " ", uvctx_id(ids[i].ctx));
    ck_assert_ptr_nonnull(
        strstr(t->line[line_of_deadline(t, ids[i].deadline)], id));
  }

  release_all(expiring, n[S], n[G], n[C], n[R]);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

START_TEST(dump_counts_pending_watches_and_references) {
  rec_t p[3];
  uvctx_t *r = mk_cancel(&loop, uvctx_background());
  long before = count_after(dump_ctx(r)->line[0], "ref");
  ck_assert_int_ge(before, 1);
  uvctx_retain(r);
  uvctx_retain(r);
  ck_assert_int_eq(count_after(dump_ctx(r)->line[0], "ref"), before + 2);

  ck_assert_int_eq(count_after(dump_ctx(r)->line[0], "watch"), 0);
  for (int i = 0; i < 3; i++)
    rec_watch(&p[i], NULL, r);
  ck_assert_int_eq(count_after(dump_ctx(r)->line[0], "watch"), 3);
  ck_assert_int_eq(uvctx_unwatch(&p[1].w), 0);
  ck_assert_int_eq(count_after(dump_ctx(r)->line[0], "watch"), 2);
  ck_assert_int_eq(uvctx_cancel(r), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  /* They have run. */
  ck_assert_int_eq(count_after(dump_ctx(r)->line[0], "watch"), 0);

  release_all(r, r, r);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* Value and without-cancel children are counted as "other" on their
 * parent's line; a cancellable context below a value child gets a line of
 * its own (under the cancellable ancestor), and the value child still counts
 * as one of that ancestor's other children. */
START_TEST(dump_counts_value_and_without_cancel_children) {
  uvctx_t *r = mk_cancel(&loop, uvctx_background());
  uvctx_t *c = mk_cancel(&loop, r); /* a cancellable child: not "other" */

  ck_assert_int_eq(count_after(dump_ctx(r)->line[0], "other"), 0);
  uvctx_t *v1 = mk_value(r, &key_a, NULL);
  uvctx_t *v2 = mk_value(r, &key_a, NULL);
  uvctx_t *w = mk_without(r);
  uvctx_t *v1v = mk_value(v1, &key_a, NULL); /* a grandchild: not counted */
  uvctx_t *v1c = mk_cancel(&loop, v1);
  const text_t *t = dump_ctx(r);
  ck_assert_int_eq(t->n, 3); /* r, c and v1c */
  ck_assert_int_eq(count_after(t->line[0], "other"), 3);

  release_all(v1c, v1v, w, v2, v1, c, r);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

/* --- uvctx_dump_loop: the leak report --- */

/* Those of its loop only. */
START_TEST(dump_loop_counts_and_lists_the_live_cancellable_contexts) {
  uint64_t d = far();
  uv_loop_t l2;
  ck_assert_int_eq(uv_loop_init(&l2), 0);
  uvctx_t *r = mk_deadline(&loop, uvctx_background(), d + 100);
  uvctx_t *v = mk_value(r, &key_a, NULL);
  uvctx_t *c = mk_deadline(&loop, v, d + 90);
  uvctx_t *w = mk_without(c);
  uvctx_t *other = mk_deadline(&loop, uvctx_background(), d + 80);
  uvctx_t *done = mk_deadline(&loop, other, d + 70);
  uvctx_t *b = mk_cancel(&l2, uvctx_background());
  uvctx_t *b2 = mk_cancel(&l2, b);
  ck_assert_int_eq(uvctx_cancel(done), 0);

  const text_t *t = dump_loop(&loop);
  ck_assert_int_eq(t->rc, 4);
  ck_assert_int_eq(t->n, 4);
  line_of_deadline(t, d + 100);
  line_of_deadline(t, d + 90);
  line_of_deadline(t, d + 80);
  ck_assert_ptr_nonnull(strstr(t->line[line_of_deadline(t, d + 70)],
                               "ECANCELED"));
  ck_assert_int_eq(dump_loop(&l2)->rc, 2);

  release_all(b2, b, done, other, w, c, v, r);
  ASSERT_LOOP_CLOSES(&loop);
  ASSERT_LOOP_CLOSES(&l2);
}
END_TEST

START_TEST(dump_loop_count_goes_down_as_contexts_are_released_to_0) {
  /* Nothing on a loop that never had a context. */
  ck_assert_int_eq(dump_loop(&loop)->rc, 0);
  ck_assert_int_eq(text.n, 0);
  uvctx_t *r = mk_cancel(&loop, uvctx_background());
  uvctx_t *c[3];
  for (int i = 0; i < 3; i++)
    c[i] = mk_cancel(&loop, r);
  for (int i = 0; i < 4; i++) {
    const text_t *t = dump_loop(&loop);
    ck_assert_int_eq(t->rc, 4 - i);
    ck_assert_int_eq(t->n, 4 - i);
    uvctx_release(i < 3 ? c[i] : r);
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  ck_assert_int_eq(dump_loop(&loop)->rc, 0);
  ck_assert_int_eq(text.n, 0);
  ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

/* A context that was released is still reported while a child holds it,
 * or a pending watch. */
START_TEST(dump_loop_reports_contexts_that_outlive_their_release) {
  uint64_t d = far();
  rec_t p;
  uvctx_t *r = mk_cancel(&loop, uvctx_background());
  uvctx_t *leak = mk_deadline(&loop, r, d);
  uvctx_t *watched = mk_deadline(&loop, uvctx_background(), d + 10);
  rec_watch(&p, NULL, watched);
  release_all(r, watched);
  uv_run(&loop, UV_RUN_DEFAULT);

  const text_t *t = dump_loop(&loop);
  ck_assert_int_eq(t->rc, 3);
  line_of_deadline(t, d);
  ck_assert_int_eq(count_after(t->line[line_of_deadline(t, d + 10)], "watch"),
                   1);
  ck_assert_int_eq(uv_loop_close(&loop), UV_EBUSY);

  ck_assert_int_eq(uvctx_unwatch(&p.w), 0);
  uvctx_release(leak);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(dump_loop(&loop)->rc, 0);
  ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

/* The line of ctx, found by its id: fails if it is not listed once. */
static void listed_once(const text_t *t, const uvctx_t *ctx) {
  char id[32];
  snprintf(id, sizeof id, " #%" PRIu64 " ", uvctx_id(ctx));
  line_with(t, id);
}

/* A loop's trees reach every context of the loop once, however its parents
 * are spread: a child of a parent on another loop and what hangs below it
 * (directly, through a value context), any-contexts with parents on both
 * loops, on the other loop only, on one parent twice, or on a root and a
 * parent. Each is listed and counted on its own loop, once, and a cancel
 * from the other loop leaves them listed until they are released. */
START_TEST(dump_loop_lists_each_context_once_on_its_own_loop) {
  uv_loop_t l2;
  ck_assert_int_eq(uv_loop_init(&l2), 0);
  uvctx_t *a = mk_cancel(&loop, uvctx_background());
  uvctx_t *b = mk_cancel(&l2, a);
  uvctx_t *b2 = mk_cancel(&l2, b);
  uvctx_t *v = mk_value(b, &key_a, NULL);
  uvctx_t *b3 = mk_cancel(&l2, v);
  uvctx_t *any_both = mk_any(&l2, a, b);
  uvctx_t *any_far = mk_any(&l2, a);
  uvctx_t *any_root = mk_any(&l2, uvctx_background(), b2);
  uvctx_t *any_twice = mk_any(&loop, a, a);
  uvctx_t *any_any = mk_any(&l2, any_both, any_far, a);

  for (int round = 0; round < 2; round++) {
    const text_t *t = dump_loop(&loop);
    ck_assert_int_eq(t->rc, 2);
    ck_assert_int_eq(t->n, 2);
    listed_once(t, a);
    listed_once(t, any_twice);
    t = dump_loop(&l2);
    ck_assert_int_eq(t->rc, 7);
    ck_assert_int_eq(t->n, 7);
    listed_once(t, b);
    listed_once(t, b2);
    listed_once(t, b3);
    listed_once(t, any_both);
    listed_once(t, any_far);
    listed_once(t, any_root);
    listed_once(t, any_any);

    uvctx_stats_t st = {.size = sizeof st};
    ck_assert_int_eq(uvctx_loop_stats(&l2, &st), 0);
    ck_assert_uint_eq(st.live[UVCTX_KIND_CANCEL], 3);
    ck_assert_uint_eq(st.live[UVCTX_KIND_ANY], 4);
    ck_assert_uint_eq(st.released, 0);
    if (round == 0) {
      ck_assert_int_eq(uvctx_cancel(a), 0);
      uv_run(&l2, UV_RUN_NOWAIT);
      ck_assert_int_eq(uvctx_err(any_any), UV_ECANCELED);
    }
  }

  release_all(any_any, any_twice, any_root, any_far, any_both, b3, v, b2);
  ck_assert_int_eq(dump_loop(&l2)->rc, 1);
  listed_once(&text, b);
  uvctx_release(b);
  ck_assert_int_eq(uv_run(&l2, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(dump_loop(&l2)->rc, 0);
  ck_assert_int_eq(dump_loop(&loop)->rc, 1);
  uvctx_release(a);
  ASSERT_LOOP_CLOSES(&l2);
  ASSERT_LOOP_CLOSES(&loop);
}
END_TEST

Suite *dump_suite(void) {
  return SUITE(
      "dump",
      {"dump", TIMEOUT_LOOP_S, loop_setup, text_clear,
       .tests = TESTS(
           dump_prints_one_line_per_cancellable_context_of_the_subtree,
           dump_is_the_subtree_in_preorder_indented_by_depth,
           dump_names_the_kind_of_each_context_and_shows_its_deadline,
           dump_shows_the_err_and_cause_of_done_contexts,
           dump_counts_pending_watches_and_references,
           dump_counts_value_and_without_cancel_children,
           dump_loop_counts_and_lists_the_live_cancellable_contexts,
           dump_loop_count_goes_down_as_contexts_are_released_to_0,
           dump_loop_reports_contexts_that_outlive_their_release,
           dump_loop_lists_each_context_once_on_its_own_loop)});
}
