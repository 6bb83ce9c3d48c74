/* Placeholder: the tests of this area are being written. */
#include "test.h"

Suite *shutdown_suite(void) { return suite_create("shutdown"); }
