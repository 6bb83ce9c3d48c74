/* Placeholder: the tests of this area are being written. */
#include "test.h"

Suite *crossloop_suite(void) { return suite_create("crossloop"); }
