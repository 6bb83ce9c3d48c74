#!/usr/bin/env bash
# The Check suite on a kernel without membarrier(2): test/no-membarrier.c,
# preloaded, refuses it, so every thread takes the tree locks' spin lock
# (treelock.c). The suite must pass as it does with the barrier (the cancels,
# releases and links from other threads of test_threads.c, test_remote.c and
# test_crossloop.c then meet the loop thread at the spin lock), and the
# library must have asked for the barrier and gone on without it: a use of
# the barrier after the refusal would abort.
#
# One process (CK_FORK=no), so that the shim's count at exit is the whole
# run's; `timeout` bounds a hang, as Check's own timeouts need the fork.
set -euo pipefail

build=$PWD
shim=$build/test/.libs/libnomembarrier.so
log=$(mktemp "${TMPDIR:-/tmp}/uvctx-nomembarrier.XXXXXX")
trap 'rm -f "$log"' EXIT

[[ -f $shim ]] || { echo "no-membarrier: $shim missing (make check builds it)" >&2; exit 1; }
rc=0
UVCTX_SHIM_LOG=$log CK_FORK=no LD_PRELOAD=$shim timeout 600 \
  "$build/test/uvctx_test" || rc=$?
# The libtool wrapper is a shell script: the shim reports from each process
# it was preloaded in; the test program's line is the one that asked.
echo "no-membarrier: $(grep -c . "$log") processes; $(sort -u "$log" | tr '\n' ';')"
if [[ $rc -ne 0 ]]; then
  echo "no-membarrier: FAIL: the suite failed without the barrier (exit $rc)" >&2
  exit 1
fi
if ! grep -Eq '^membarrier refused [1-9]' "$log"; then
  echo "no-membarrier: FAIL: the library never asked for membarrier" >&2
  exit 1
fi
echo "no-membarrier: ok: the suite passed with membarrier refused"
