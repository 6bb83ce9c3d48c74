/* The version the library reports, the UVCTX_VERSION_* macros of the header
 * and configure's PACKAGE_VERSION (read from the header by scripts/version)
 * are one version. */
#include <stdio.h>
#include <string.h>

#include "test.h"

START_TEST(version_is_the_headers_hex) {
  ck_assert_uint_eq(uvctx_version(), UVCTX_VERSION_HEX);
}
END_TEST

/* Each field in its own byte, so that the number compares in version order
 * (a field that outgrew its byte would spill into the next one). */
START_TEST(version_hex_holds_major_minor_patch_a_byte_each) {
  ck_assert_uint_eq((UVCTX_VERSION_HEX >> 16) & 0xff, UVCTX_VERSION_MAJOR);
  ck_assert_uint_eq((UVCTX_VERSION_HEX >> 8) & 0xff, UVCTX_VERSION_MINOR);
  ck_assert_uint_eq(UVCTX_VERSION_HEX & 0xff, UVCTX_VERSION_PATCH);
}
END_TEST

START_TEST(version_string_is_major_minor_patch_and_suffix) {
  char want[64];
  const char *suffix = UVCTX_VERSION_SUFFIX;

  snprintf(want, sizeof(want), "%d.%d.%d%s%s", UVCTX_VERSION_MAJOR,
           UVCTX_VERSION_MINOR, UVCTX_VERSION_PATCH, suffix[0] ? "-" : "",
           suffix);
  ck_assert_str_eq(uvctx_version_string(), want);
}
END_TEST

START_TEST(version_string_is_configures_package_version) {
  /* Fails after the header's version changed until autoreconf has run. */
  ck_assert_msg(strcmp(uvctx_version_string(), PACKAGE_VERSION) == 0,
                "uvctx_version_string() is \"%s\" but configure's "
                "PACKAGE_VERSION is \"%s\": run autoreconf -fi",
                uvctx_version_string(), PACKAGE_VERSION);
}
END_TEST

Suite *version_suite(void) {
  return SUITE(
      "version",
      /* No loop, no thread: microseconds; the shortest timeout there is. */
      {"agree", TIMEOUT_LOOP_S, NULL, NULL,
       .tests = TESTS(version_is_the_headers_hex,
                      version_hex_holds_major_minor_patch_a_byte_each,
                      version_string_is_major_minor_patch_and_suffix,
                      version_string_is_configures_package_version)});
}
