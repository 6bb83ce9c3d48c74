/* The version of the library itself, for a program to compare with the
 * UVCTX_VERSION_* macros of the header it was built against (as libuv's
 * uv_version() and uv_version_string()). */
#include "uvctx-int.h"

#define UVCTX__STR(x) #x
#define UVCTX__XSTR(x) UVCTX__STR(x)
#define UVCTX__VERSION_BASE                                                    \
  UVCTX__XSTR(UVCTX_VERSION_MAJOR)                                             \
  "." UVCTX__XSTR(UVCTX_VERSION_MINOR) "." UVCTX__XSTR(UVCTX_VERSION_PATCH)

unsigned int uvctx_version(void) { return UVCTX_VERSION_HEX; }

const char *uvctx_version_string(void) {
  /* The suffix is a string literal, so which of the two constant strings is
   * returned is known when this is compiled. */
  return sizeof(UVCTX_VERSION_SUFFIX) > 1
             ? UVCTX__VERSION_BASE "-" UVCTX_VERSION_SUFFIX
             : UVCTX__VERSION_BASE;
}
