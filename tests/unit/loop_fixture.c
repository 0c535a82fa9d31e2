/* The loop per test: see loop_fixture.h. */
#include "loop_fixture.h"

coil_loop loop;

int loop_setup(void **state)
{
    (void)state;
    harness_loop_init(&loop, NULL);
    return 0;
}

int loop_teardown(void **state)
{
    (void)state;
    harness_loop_exit(&loop);
    return 0;
}

coil_loop_stats loop_stats(void)
{
    coil_loop_stats st;
    coil_loop_stats_get(&loop, &st);
    return st;
}
