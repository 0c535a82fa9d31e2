/* The access log's sink: a writer thread takes the write(2) off the cores.
 * A reader that stalls must never stall the caller: what does not fit is
 * dropped and counted, what fit is written whole and in order once the
 * reader drains. */
#include "harness.h"

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include "coil/http.h"

#define LINE 1024

static void *stop_sink(void *arg)
{
    coil_http_log_sink_stop(arg);
    return NULL;
}

static void test_put_never_waits_for_a_stalled_reader(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    fcntl(p[1], F_SETPIPE_SZ, 4096); /* the writer thread soon blocks in write(2) */
    coil_http_log_sink *s;
    assert_int_equal(coil_http_log_sink_start(p[1], 64 * 1024, &s), 0);
    char line[LINE];
    memset(line, '.', sizeof(line) - 1);
    line[sizeof(line) - 1] = '\n';
    int queued = 0, dropped = 0;
    for (int i = 0; i < 1000; i++) {
        char num[16];
        snprintf(num, sizeof(num), "%06d ", i);
        memcpy(line, num, 7);
        int r = coil_http_log_sink_put(s, line, sizeof(line));
        if (r == 0) {
            queued++;
        } else {
            assert_int_equal(r, -ENOBUFS);
            dropped++;
        }
    }
    /* 1000 KiB offered to 64 KiB of room and a stalled pipe: most was
     * dropped, and every put returned. */
    assert_true(dropped > 0);
    assert_true(queued > 0);
    assert_int_equal(coil_http_log_sink_dropped(s), (uint64_t)dropped * LINE);

    /* stop writes what was queued; drain the pipe meanwhile. */
    pthread_t stopper;
    assert_int_equal(pthread_create(&stopper, NULL, stop_sink, s), 0);
    static char got[1100 * LINE];
    size_t total = 0;
    for (;;) {
        ssize_t n = read(p[0], got + total, sizeof(got) - total);
        if (n <= 0)
            break;
        total += (size_t)n;
        if (total == (size_t)queued * LINE) {
            /* all there: the stopper finishes, then the pipe reports EOF */
            pthread_join(stopper, NULL);
            close(p[1]);
            p[1] = -1;
        }
    }
    if (p[1] >= 0) {
        pthread_join(stopper, NULL);
        close(p[1]);
    }
    close(p[0]);
    assert_int_equal(total, (size_t)queued * LINE);
    int prev = -1;
    for (size_t off = 0; off < total; off += LINE) {
        int num = atoi(got + off);
        assert_true(num > prev); /* in order, whole lines */
        assert_int_equal(got[off + LINE - 1], '\n');
        prev = num;
    }
}

static void test_stop_writes_everything(void **state)
{
    (void)state;
    char path[] = "/tmp/coil-log-sink-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    coil_http_log_sink *s;
    assert_int_equal(coil_http_log_sink_start(fd, 0, &s), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(coil_http_log_sink_put(s, "0123456789\n", 11), 0);
    assert_int_equal(coil_http_log_sink_put(s, "", 0), 0);
    coil_http_log_sink_stop(s);
    coil_http_log_sink_stop(NULL);
    assert_int_equal(lseek(fd, 0, SEEK_END), 1100);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_never_waits_for_a_stalled_reader),
        cmocka_unit_test(test_stop_writes_everything),
    };
    return HARNESS_RUN(tests);
}
