/* The Check runner: one binary, one suite per area. Set CK_FORK=no to run
 * every test in one process (for valgrind), CK_RUN_SUITE / CK_RUN_CASE to pick
 * tests. */
#include <stdlib.h>

#include "test.h"

int main(void) {
  SRunner *sr = srunner_create(cancel_suite());
  srunner_add_suite(sr, timer_suite());
  srunner_add_suite(sr, value_suite());
  srunner_add_suite(sr, watch_suite());
  srunner_add_suite(sr, lifetime_suite());
  srunner_add_suite(sr, threads_suite());
  srunner_add_suite(sr, badinput_suite());
  srunner_add_suite(sr, go_port_suite());
  srunner_add_suite(sr, alloc_suite());
  srunner_add_suite(sr, signal_suite());
  srunner_add_suite(sr, shutdown_suite());
  srunner_add_suite(sr, drain_suite());
  srunner_add_suite(sr, dump_suite());
  srunner_add_suite(sr, any_suite());
  srunner_add_suite(sr, reset_suite());
  srunner_add_suite(sr, handles_suite());
  srunner_add_suite(sr, crossloop_suite());
  srunner_add_suite(sr, grpc_suite());
  srunner_add_suite(sr, stress_suite());
  srunner_add_suite(sr, ancestors_suite());
  srunner_add_suite(sr, remote_suite());
  srunner_add_suite(sr, edges_suite());
  srunner_add_suite(sr, refs_suite());
  srunner_add_suite(sr, mailbox_suite());
  srunner_add_suite(sr, version_suite());
  srunner_add_suite(sr, provenance_suite());
  srunner_add_suite(sr, stats_suite());
  srunner_add_suite(sr, observe_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
