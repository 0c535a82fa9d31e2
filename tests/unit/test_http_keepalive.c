/* Keep-alive connections and the tasks they cost, on both backends: a
 * request that arrives while the one before it is being answered is served
 * by the same task (no park, no new task), and a connection that goes quiet
 * is parked and served again by a new task. Fixture: http_fixture.h. */
#include "http_fixture.h"

static coil_http_fn_service svc;
static int runs;

static int handler(coil_http_request *req, void *data)
{
    (void)data;
    runs++;
    /* /slow answers late enough for the next request to be on its way. */
    if (path_is(req, "/slow"))
        coil_sleep(30 * MS);
    return respond_text(req, 200, path_is(req, "/slow") ? "slow" : "fast");
}

static uint64_t spawned(void)
{
    coil_loop_stats st;
    coil_loop_stats_get(&loop, &st);
    return st.tasks_spawned;
}

static int queued_main(void *arg)
{
    uint64_t *tasks = arg;
    cli c = { 0 };
    resp r;
    CHECK_EQ(cli_open(&c), 0);
    CHECK_EQ(roundtrip(&c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", &r), 0);
    CHECK_EQ(r.status, 200);
    coil_sleep(10 * MS); /* the connection is parked now */
    uint64_t before = spawned();
    /* The second request is sent while the first is being answered: it
     * waits in the socket's receive queue, not in the bytes already read. */
    CHECK_EQ(cli_send_str(&c, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    coil_sleep(10 * MS);
    CHECK_EQ(cli_send_str(&c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    CHECK_EQ(read_response(&c, &r, false, dl(5000)), 0);
    CHECK_EQ(r.status, 200);
    CHECK(body_is(&r, "slow"));
    CHECK_EQ(read_response(&c, &r, false, dl(5000)), 0);
    CHECK(body_is(&r, "fast"));
    CHECK(!r.close);
    tasks[0] = spawned() - before;
    /* Quiet again, then one more: parked in between, so a new task. */
    coil_sleep(10 * MS);
    before = spawned();
    CHECK_EQ(roundtrip(&c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", &r), 0);
    CHECK(body_is(&r, "fast"));
    tasks[1] = spawned() - before;
out:
    cli_close(&c);
    return fail_line ? -1 : 0;
}

static void test_queued_request_served_by_same_task(void **state)
{
    (void)state;
    uint64_t tasks[2] = { 0, 0 };
    runs = 0;
    coil_http_server_config cfg = base_cfg(coil_http_fn_init(&svc, handler, NULL));
    server_start(&cfg);
    run_main(queued_main, tasks);
    assert_int_equal(runs, 4);
    /* io_uring queues what its multishot receive took in; epoll learns of
     * the bytes only by asking the socket, which parking does. */
    if (harness_is_uring())
        assert_int_equal(tasks[0], 1);
    else
        assert_in_range(tasks[0], 1, 2);
    assert_int_equal(tasks[1], 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_queued_request_served_by_same_task, setup, teardown),
    };
    return HARNESS_RUN(tests);
}
