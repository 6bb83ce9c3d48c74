/* Placeholder: the tests of this area are being written. */
#include "test.h"

Suite *dump_suite(void) { return suite_create("dump"); }
