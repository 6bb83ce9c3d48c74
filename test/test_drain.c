/* Placeholder: the tests of this area are being written. */
#include "test.h"

Suite *drain_suite(void) { return suite_create("drain"); }
