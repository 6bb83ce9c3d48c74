/* Children on another loop, at the edges the crossloop suite does not reach:
 * a cancel that finds such a child while it is being torn down, and
 * uvctx_dump() of a tree that has some.
 *
 * Loop A is the test's thread's; loop B is run by a peer thread which takes
 * each step only when the test posts a semaphore, so each interleaving below
 * is forced, not hoped for. The peer never calls Check's asserts (they may
 * not run off the test's thread): it records return codes, asserted after it
 * is joined. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

typedef struct {
  uv_loop_t b;
  uv_thread_t thread;
  uv_async_t quit;    /* ref'd: B polls its mailbox until the test sends it */
  uv_sem_t made;      /* posted by the peer: its contexts exist */
  uv_sem_t go;        /* posted by the test: the peer's step */
  uv_async_t stepped; /* ref'd, on A: loop A runs until the peer stepped */

  uvctx_t *kid_parent[2]; /* on A, made by the test */
  uvctx_t *kid[2];        /* on B, their children, made by the peer */
  uvctx_t *grandkid;      /* on B, a child of kid[0] */
  int run_once;     /* the step: run B once (something is in its mailbox) */
  int release_kids; /* the step: release kid[] too */
  int rc_init;
  int rc_kid[2];
  int rc_grandkid;
  int grandkid_err; /* after the step */
  int grandkid_cause;
  int rc_run;
  int rc_close;
} peer_t;

static void close_cb(uv_async_t *a) { uv_close((uv_handle_t *)a, NULL); }

static void peer_main(void *arg) {
  peer_t *p = arg;

  p->rc_init = uv_loop_init(&p->b);
  if (p->rc_init == 0)
    p->rc_init = uv_async_init(&p->b, &p->quit, close_cb);
  if (p->rc_init != 0) {
    uv_sem_post(&p->made);
    return;
  }
  for (int i = 0; i < 2; i++)
    p->rc_kid[i] = uvctx_with_cancel(&p->b, p->kid_parent[i], &p->kid[i]);
  p->rc_grandkid = p->rc_kid[0] == 0
                       ? uvctx_with_cancel(&p->b, p->kid[0], &p->grandkid)
                       : p->rc_kid[0];
  uv_sem_post(&p->made);

  uv_sem_wait(&p->go);
  /* What the test's thread posted to B's mailbox is pending, so one turn of
   * the loop acts on it (without it, that turn would wait for quit). */
  if (p->run_once)
    uv_run(&p->b, UV_RUN_ONCE);
  p->grandkid_err = uvctx_err(p->grandkid);
  p->grandkid_cause = uvctx_cause(p->grandkid);
  uvctx_release(p->grandkid);
  if (p->release_kids)
    release_all(p->kid[0], p->kid[1]);
  uv_async_send(&p->stepped);

  p->rc_run = uv_run(&p->b, UV_RUN_DEFAULT);
  p->rc_close = uv_loop_close(&p->b);
}

/* Starts the peer, which makes kid[i] under parent i (of loop a) and
 * grandkid under kid[0] on B; returns once they exist. */
static void peer_start(peer_t *p, uv_loop_t *a, uvctx_t *parent0,
                       uvctx_t *parent1) {
  ck_assert_int_eq(uv_sem_init(&p->made, 0), 0);
  ck_assert_int_eq(uv_sem_init(&p->go, 0), 0);
  ck_assert_int_eq(uv_async_init(a, &p->stepped, close_cb), 0);
  p->kid_parent[0] = parent0;
  p->kid_parent[1] = parent1;
  ck_assert_int_eq(uv_thread_create(&p->thread, peer_main, p), 0);
  uv_sem_wait(&p->made);
  ck_assert_int_eq(p->rc_init, 0);
  ck_assert_int_eq(p->rc_kid[0], 0);
  ck_assert_int_eq(p->rc_kid[1], 0);
  ck_assert_int_eq(p->rc_grandkid, 0);
}

/* Lets the peer take its step, runs loop A until it has, then has B quit
 * and checks that B closed. */
static void peer_finish(peer_t *p, uv_loop_t *a) {
  uv_sem_post(&p->go);
  ck_assert_int_eq(uv_run(a, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(uv_async_send(&p->quit), 0);
  ck_assert_int_eq(uv_thread_join(&p->thread), 0);
  ck_assert_int_eq(p->rc_run, 0);
  ck_assert_int_eq(p->rc_close, 0);
  uv_sem_destroy(&p->made);
  uv_sem_destroy(&p->go);
}

/* kid[1]'s last reference, one B's thread took, is dropped on the test's
 * thread: it goes back to B in B's mailbox (src/refs.c), and kid[1] stays in
 * parent's list of children until B has dropped it. The cancel of parent
 * finds it there and hands it to B, with a reference of its own. kid[0],
 * still referenced by grandkid, is handed to B as usual, which carries the
 * cancel down to grandkid. B then tears kid[1] down once, when both
 * references are gone; parent is left with no child (its drain runs), and
 * both loops close. (A child whose teardown has begun is passed over instead:
 * edges' shutdown test forces that window.) */
START_TEST(cancel_passes_over_a_child_on_another_loop_being_torn_down) {
  uv_loop_t a;
  peer_t p = {0};
  rec_t d;

  ck_assert_int_eq(uv_loop_init(&a), 0);
  uvctx_t *parent = mk_cancel(&a, uvctx_background());
  peer_start(&p, &a, parent, parent);
  p.run_once = 1;
  release_all(p.kid[0], p.kid[1]); /* kid[1]'s last reference */

  ck_assert_int_eq(uvctx_cancel_cause(parent, UV_EPIPE), 0);
  ck_assert_int_eq(uvctx_err(parent), UV_ECANCELED);
  ck_assert_int_eq(uvctx_cause(parent), UV_EPIPE);
  rec_drain(&d, NULL, parent);

  peer_finish(&p, &a);
  ck_assert_int_eq(p.grandkid_err, UV_ECANCELED);
  ck_assert_int_eq(p.grandkid_cause, UV_EPIPE);
  ck_assert_int_eq(d.calls, 1);
  ck_assert_int_eq(d.err, UV_ECANCELED);
  uvctx_release(parent);
  ASSERT_LOOP_CLOSES(&a);
}
END_TEST

static int indent_of(const char *line) {
  int n = 0;
  while (line[n] == ' ')
    n++;
  return n;
}

/* Children on B are listed as leaves where they fall among their parent's
 * children (first, or after the last child on A), one level deeper than
 * their parent, saying they are on another loop and not reading their watch
 * lists (B's thread's); what hangs below them on B is B's to show. The tree:
 *
 *   parent (A)
 *     kid[0] (B)        - parent's first child (children are listed newest
 *       grandkid (B)      first), with a child of its own on B
 *     local (A)
 *       local_kid (A)
 *       kid[1] (B)      - local's last child
 */
START_TEST(dump_lists_children_on_another_loop_as_leaves) {
  uv_loop_t a;
  peer_t p = {0};
  dump_text_t t;
  char loop_b[32];

  ck_assert_int_eq(uv_loop_init(&a), 0);
  uvctx_t *parent = mk_cancel(&a, uvctx_background());
  uvctx_t *local = mk_cancel(&a, parent);
  peer_start(&p, &a, parent, local);
  p.release_kids = 1;
  uvctx_t *local_kid = mk_cancel(&a, local);

  /* each line in order: its context, its indent, whether it is on B */
  const struct {
    const uvctx_t *ctx;
    int indent;
    int remote;
  } want[] = {{parent, 0, 0},
              {p.kid[0], 2, 1},
              {local, 2, 0},
              {local_kid, 4, 0},
              {p.kid[1], 4, 1}};
  ck_assert_int_eq(dump_split(&t, parent), 0);
  snprintf(loop_b, sizeof(loop_b), "loop=%p ", (void *)&p.b);
  ck_assert_int_eq(t.n, 5);
  for (int i = 0; i < t.n; i++) {
    ck_assert_int_eq(dump_line_of(&t, want[i].ctx), i);
    ck_assert_int_eq(indent_of(t.line[i]), want[i].indent);
    ck_assert_ptr_nonnull(strstr(t.line[i], "with_cancel"));
    ck_assert_int_eq(strstr(t.line[i], loop_b) != NULL, want[i].remote);
    ck_assert_int_eq(strstr(t.line[i], "(another loop)") != NULL,
                     want[i].remote);
    ck_assert_int_eq(strstr(t.line[i], "watches=") == NULL, want[i].remote);
  }
  ck_assert_int_eq(dump_line_of(&t, p.grandkid), -1);
  /* kid[0] is referenced by the peer and by grandkid. */
  ck_assert_ptr_nonnull(strstr(t.line[1], "refs=2 "));
  ck_assert_ptr_nonnull(strstr(t.line[4], "refs=1 "));
  free(t.buf);

  peer_finish(&p, &a); /* the peer releases its contexts on B */
  release_all(local_kid, local, parent);
  ASSERT_LOOP_CLOSES(&a);
}
END_TEST

Suite *remote_suite(void) {
  /* Two threads, two loops, a handful of contexts: milliseconds. */
  return SUITE("remote",
               {"teardown", TIMEOUT_THREADS_S, NULL, NULL,
                .tests = TESTS(
                    cancel_passes_over_a_child_on_another_loop_being_torn_down)},
               {"dump", TIMEOUT_THREADS_S, NULL, NULL,
                .tests = TESTS(dump_lists_children_on_another_loop_as_leaves)});
}
