/* Placeholder: the tests of this area are being written. */
#include "test.h"

Suite *reset_suite(void) { return suite_create("reset"); }
