/* Placeholder: the tests of this area are being written. */
#include "test.h"

Suite *signal_suite(void) { return suite_create("signal"); }
