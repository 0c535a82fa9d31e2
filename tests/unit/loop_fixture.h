/*
 * A loop per test, on the backend under test (harness.h), for the tests
 * that need nothing more from their fixture than the loop itself.
 */
#ifndef COIL_TEST_LOOP_FIXTURE_H
#define COIL_TEST_LOOP_FIXTURE_H

#include "harness.h"

/* The test's loop: loop_setup() initialises it, loop_teardown() exits it. */
extern coil_loop loop;

/* cmocka setup/teardown: a fresh loop per test; teardown fails the test if
 * the loop was left with work (harness_loop_exit). */
int loop_setup(void **state);
int loop_teardown(void **state);
/* A cmocka test f with that fixture. */
#define LOOP_TEST(f) cmocka_unit_test_setup_teardown(f, loop_setup, loop_teardown)

/* The loop's counters now. */
coil_loop_stats loop_stats(void);

#endif
