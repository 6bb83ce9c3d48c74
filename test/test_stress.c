/* Placeholder: the tests of this area are being written. */
#include "test.h"

Suite *stress_suite(void) { return suite_create("stress"); }
