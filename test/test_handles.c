/* Placeholder: the tests of this area are being written. */
#include "test.h"

Suite *handles_suite(void) { return suite_create("handles"); }
