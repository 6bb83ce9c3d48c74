/* An LD_PRELOAD shim for test/no-membarrier.sh: the process sees a kernel
 * without membarrier(2), as under an older kernel or a seccomp filter that
 * refuses it, so libuvctx's tree locks take their other way (treelock.c).
 * Every other system call goes through. At exit it writes to the file named
 * by UVCTX_SHIM_LOG how many times membarrier was asked for. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>

static long refused;

long syscall(long number, ...) {
  static long (*real)(long, ...);
  long a[6];
  va_list ap;
  int i;

  if (number == SYS_membarrier) {
    __atomic_add_fetch(&refused, 1, __ATOMIC_RELAXED);
    errno = ENOSYS;
    return -1;
  }
  if (real == NULL)
    real = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
  va_start(ap, number);
  for (i = 0; i < 6; i++)
    a[i] = va_arg(ap, long);
  va_end(ap);
  return real(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}

__attribute__((destructor)) static void report(void) {
  const char *path = getenv("UVCTX_SHIM_LOG");
  FILE *f;

  if (path == NULL || (f = fopen(path, "a")) == NULL)
    return;
  fprintf(f, "membarrier refused %ld\n", refused);
  fclose(f);
}
